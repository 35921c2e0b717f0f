"""Managed mode: guarded commands refuse (exit 3, one clear message); reading still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Runner
from helpers import assert_clean_failure

GUARDED = [
    ("setup", "--non-interactive"),
    ("setup",),
    ("config", "set", "max_turns", "5"),
    ("config", "set", "OPENROUTER_API_KEY", "sk-x"),
    ("config", "unset", "max_turns"),
    ("config", "edit"),
]
READ_ONLY = [
    ("version",),
    ("config",),
    ("config", "show"),
    ("config", "get", "max_turns"),
    ("config", "check"),
    ("config", "path"),
    ("config", "env-path"),
]


def _name(args: tuple[str, ...]) -> str:
    return "hermes " + " ".join(args[:2] if args[0] == "config" else args[:1])


@pytest.mark.parametrize("args", GUARDED, ids=" ".join)
@pytest.mark.parametrize("value", ["true", "1", "yes", "nixos", "TRUE"])
def test_variable_nixos_refuses(
    hermes: Runner, hermes_home: Path, args: tuple[str, ...], value: str
) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("max_turns: 7\n")
    result = hermes(*args, env={"HERMES_MANAGED": value, "EDITOR": "false"})
    assert_clean_failure(result, 3)
    assert result.stderr == (
        f"hermes: `{_name(args)}` is disabled: this installation is managed by NixOS.\n"
        "Change services.hermes-agent.settings (secrets: services.hermes-agent.environmentFiles)"
        " in configuration.nix, then run: sudo nixos-rebuild switch\n"
    )
    assert (hermes_home / "config.yaml").read_text() == "max_turns: 7\n"
    assert sorted(p.name for p in hermes_home.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("args", GUARDED, ids=" ".join)
def test_marker_file_refuses(hermes: Runner, hermes_home: Path, args: tuple[str, ...]) -> None:
    hermes_home.mkdir()
    (hermes_home / ".managed").write_text("nixos\n")
    result = hermes(*args, env={"EDITOR": "false"})
    assert_clean_failure(result, 3)
    assert "managed by NixOS" in result.stderr
    assert "sudo nixos-rebuild switch" in result.stderr
    assert not (hermes_home / "config.yaml").exists()


def test_other_manager_is_named(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("config", "set", "max_turns", "5", env={"HERMES_MANAGED": "homebrew"})
    assert_clean_failure(result, 3)
    assert result.stderr == (
        "hermes: `hermes config set` is disabled: this installation is managed by homebrew.\n"
        "Change the configuration through homebrew instead.\n"
    )
    hermes_home.mkdir(exist_ok=True)
    (hermes_home / ".managed").write_text("homebrew\n")
    result = hermes("config", "unset", "max_turns")
    assert_clean_failure(result, 3)
    assert "managed by homebrew" in result.stderr


@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_empty_marker_means_nixos(hermes: Runner, hermes_home: Path, content: str) -> None:
    # The NixOS activation may leave the marker empty; its message points to configuration.nix.
    hermes_home.mkdir(exist_ok=True)
    (hermes_home / ".managed").write_text(content)
    result = hermes("config", "unset", "max_turns")
    assert_clean_failure(result, 3)
    assert "managed by NixOS" in result.stderr
    assert "configuration.nix" in result.stderr and "nixos-rebuild switch" in result.stderr


@pytest.mark.parametrize("value", ["false", "0", "no", "off", ""])
def test_false_values_are_not_managed(hermes: Runner, hermes_home: Path, value: str) -> None:
    result = hermes("config", "set", "max_turns", "5", env={"HERMES_MANAGED": value})
    assert result.returncode == 0, result.stderr
    # Not managed: the installer of the test venv (uv) is named, not a manager.
    assert "install      uv" in hermes("version", env={"HERMES_MANAGED": value}).stdout


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_work_when_managed(
    hermes: Runner, hermes_home: Path, args: tuple[str, ...]
) -> None:
    hermes_home.mkdir()
    (hermes_home / ".managed").write_text("nixos\n")
    (hermes_home / "config.yaml").write_text("max_turns: 7\n")
    result = hermes(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_version_reports_the_manager(hermes: Runner, hermes_home: Path) -> None:
    assert "install      nixos" in hermes("version", env={"HERMES_MANAGED": "true"}).stdout
    hermes_home.mkdir()
    (hermes_home / ".managed").write_text("homebrew")
    assert "install      homebrew" in hermes("version").stdout
