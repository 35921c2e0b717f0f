"""The `hermes` entry point: help, version, errors, and what it does not import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Runner, clean_env
from helpers import assert_clean_failure
from hermes_agent import __version__


def test_help_lists_only_commands_that_exist(hermes: Runner) -> None:
    result = hermes("--help")
    assert result.returncode == 0
    listed = [
        line.split()[0]
        for line in result.stdout.split("commands:")[1].splitlines()[2:]
        if line.startswith("    ") and not line.startswith("     ")  # Not a wrapped help line.
    ]
    assert listed == [
        "chat",
        "gateway",
        "acp",
        "setup",
        "config",
        "sessions",
        "skills",
        "cron",
        "tools",
        "mcp",
        "checkpoints",
        "sandbox",
        "deploy",
        "doctor",
        "status",
        "logs",
        "version",
    ]


def test_no_command_prints_help(hermes: Runner) -> None:
    result = hermes()
    assert result.returncode == 0
    assert result.stdout.startswith("usage: hermes")


def test_version_command(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("version")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"hermes-agent {__version__}"
    assert lines[1].startswith(f"python       {sys.version.split()[0]} (")
    assert lines[2] == f"HERMES_HOME  {hermes_home}"
    assert lines[3] == "install      uv"  # The test venv is uv's (scripts/test runs uv sync).
    assert not hermes_home.exists(), "reading the version creates nothing"
    assert hermes("--version").stdout == f"hermes-agent {__version__}\n"


def test_unknown_command_and_option(hermes: Runner) -> None:
    result = hermes("fly")
    assert result.returncode == 2
    assert "invalid choice: 'fly'" in result.stderr
    assert "Traceback" not in result.stderr
    result = hermes("config", "set", "only-key")
    assert result.returncode == 2
    assert "the following arguments are required: value" in result.stderr


def test_unwritable_home_is_reported_by_path(hermes: Runner, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    home = blocker / "home"
    result = hermes("config", "set", "max_turns", "3", env={"HERMES_HOME": str(home)})
    assert_clean_failure(result, 1)
    assert f"cannot create directory {home}" in result.stderr


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hermes_agent", "version"],
        env=clean_env(tmp_path / "h"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("hermes-agent ")


def _modules_loaded_by(argv: list[str], home: Path) -> set[str]:
    code = (
        "import sys\n"
        "from hermes_agent.cli.main import run\n"
        f"run({argv!r})\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stderr.split())


def test_version_and_help_import_no_heavy_modules(tmp_path: Path) -> None:
    heavy = {
        "yaml",
        "dotenv",
        "shutil",
        "openai",
        "anthropic",
        "mcp",
        "rich",
        "prompt_toolkit",
        "asyncio",
        "json",
        "logging",
        "subprocess",
        "typing",
    }
    for argv in (["version"], ["--help"]):
        try:
            loaded = _modules_loaded_by(argv, tmp_path / "h")
        except subprocess.CalledProcessError as exc:  # --help exits through SystemExit(0)
            loaded = set(exc.stderr.split())
        assert loaded & heavy == set(), f"hermes {argv[0]} imported {sorted(loaded & heavy)}"
