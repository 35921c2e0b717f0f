"""Bare `hermes` in a terminal, `hermes version`'s install method, and the workspace setup picks."""

from __future__ import annotations

from pathlib import Path

import pexpect
import pytest

from conftest import HERMES, Runner, clean_env
from hermes_agent.cli.version import install_method
from peers.llm_server import Reply, ScriptedLLM
from test_chat_cli import PROMPT


@pytest.mark.peer("scripted")
def test_bare_hermes_in_a_terminal_starts_chat(hermes_home: Path, tmp_path: Path) -> None:
    with ScriptedLLM([Reply("Hello from chat.")]) as llm:
        hermes_home.mkdir()
        (hermes_home / "config.yaml").write_text(
            "model:\n  provider: custom\n  default: test-model\n"
            f"  base_url: {llm.openai_base_url}\n"
        )
        child = pexpect.spawn(
            str(HERMES),
            [],
            env=clean_env(hermes_home, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1"),
            cwd=str(tmp_path),
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 120),
        )
        child.expect_exact("test-model via custom")
        child.expect_exact(PROMPT)
        child.sendline("hi")
        child.expect_exact("Hello from chat.")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0


def test_bare_hermes_without_a_terminal_prints_help(hermes: Runner) -> None:
    result = hermes()  # stdin and stdout are pipes here
    assert result.returncode == 0
    assert result.stdout.startswith("usage: hermes")


@pytest.mark.peer("scripted")
def test_bare_hermes_takes_chat_options(hermes: Runner, hermes_home: Path) -> None:
    with ScriptedLLM([Reply("Asked once."), Reply("With a model.")]) as llm:
        hermes_home.mkdir()
        (hermes_home / "config.yaml").write_text(
            "model:\n  provider: custom\n  default: test-model\n"
            f"  base_url: {llm.openai_base_url}\n"
        )
        once = hermes("-q", "hi")
        chosen = hermes("--model=other-model", "--query", "again")
        models = [r.body["model"] for r in llm.requests]
    assert (once.returncode, once.stdout) == (0, "Asked once.\n"), once.stderr
    assert (chosen.returncode, chosen.stdout) == (0, "With a model.\n"), chosen.stderr
    assert models == ["test-model", "other-model"]
    # Without a terminal and without -q: chat's own clear error, not argparse's "invalid choice".
    interactive = hermes("--model", "x")
    assert interactive.returncode == 2
    assert interactive.stderr == (
        "hermes: an interactive chat needs a terminal; use -q TEXT (or -q - to read stdin)\n"
    )
    # An option neither hermes nor chat has is still a usage error, without a traceback.
    unknown = hermes("--no-such-option")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --no-such-option" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    # hermes' own options keep their meaning, abbreviated too.
    assert hermes("--vers").stdout.startswith("hermes-agent ")
    assert hermes("-h").stdout.startswith("usage: hermes [-h] [--version] COMMAND")


def _dist_info(site: Path, installer: str | None) -> Path:
    from hermes_agent import __version__

    info = site / f"hermes_agent-{__version__}.dist-info"
    info.mkdir(parents=True)
    if installer is not None:
        (info / "INSTALLER").write_text(installer + "\n")
    return site


def test_install_method_reads_the_installer_file(tmp_path: Path) -> None:
    uv_site = _dist_info(tmp_path / "uv", "uv")
    pip_site = _dist_info(tmp_path / "pip", "pip")
    bare_site = _dist_info(tmp_path / "bare", None)
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nuv = 0.13.8\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert install_method([str(uv_site)], prefix=str(plain)) == "uv"
    assert install_method([str(pip_site)], prefix=str(venv)) == "pip"  # The file wins.
    assert install_method([str(bare_site)], prefix=str(venv)) == "uv"
    assert install_method([str(bare_site)], prefix=str(plain)) == "pip"
    (bare_site / next(bare_site.iterdir()).name / "INSTALLER").write_text("$(rm -rf)\n")
    assert install_method([str(bare_site)], prefix=str(plain)) == "pip"  # Never echoed.


SETUP = ("setup", "--non-interactive", "--provider", "custom", "--model", "m", "--base-url")


def test_setup_says_which_workspace_it_chose(hermes: Runner, tmp_path: Path) -> None:
    work = tmp_path / "somewhere"
    work.mkdir()
    result = hermes(*SETUP, "http://127.0.0.1:9/v1", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"workspace  {work} (the current directory; choose another with --workspace" in (
        result.stdout
    )
    assert "warning" not in result.stderr
    again = hermes(*SETUP, "http://127.0.0.1:9/v1", cwd=tmp_path)
    assert f"workspace  {work} (kept from config.yaml;" in again.stdout
    given = hermes(*SETUP, "http://127.0.0.1:9/v1", "--workspace", str(tmp_path))
    assert f"workspace  {tmp_path}\n" in given.stdout


def test_setup_warns_when_the_workspace_is_a_hermes_checkout(
    hermes: Runner, tmp_path: Path
) -> None:
    checkout = tmp_path / "hermes-agent"
    (checkout / "src" / "hermes_agent").mkdir(parents=True)
    (checkout / "src" / "hermes_agent" / "__init__.py").write_text("")
    result = hermes(*SETUP, "http://127.0.0.1:9/v1", cwd=checkout)
    assert result.returncode == 0, result.stderr
    assert "the workspace is hermes' own source checkout" in result.stderr
    assert "hermes setup --workspace DIR" in result.stderr
