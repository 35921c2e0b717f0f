"""HERMES_HOME: where it is, and how its directories are created."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hermes_agent import home
from hermes_agent.errors import HermesError


def test_default_is_dot_hermes_in_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HERMES_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home.hermes_home() == tmp_path / ".hermes"
    monkeypatch.setenv("HERMES_HOME", "")
    assert home.hermes_home() == tmp_path / ".hermes", "an empty variable means unset"


def test_variable_overrides_and_expands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HERMES_HOME", "~/elsewhere")
    assert home.hermes_home() == tmp_path / "elsewhere"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERMES_HOME", "rel")
    assert home.hermes_home() == tmp_path / "rel"


def test_layout_names(hermes_home: Path) -> None:
    assert home.config_path() == hermes_home / "config.yaml"
    assert home.env_path() == hermes_home / ".env"
    assert home.auth_path() == hermes_home / "auth.json"
    assert home.managed_marker_path() == hermes_home / ".managed"
    assert home.gateway_pid_path() == hermes_home / "gateway.pid"
    assert home.state_db_path() == hermes_home / "state.db"
    assert home.mcp_tokens_dir() == hermes_home / "mcp-tokens"


def test_layout_is_created_0700(hermes_home: Path) -> None:
    assert not hermes_home.exists()
    home.ensure_layout()
    for path in [hermes_home, *(hermes_home / name for name in home.LAYOUT_DIRS)]:
        assert path.is_dir()
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert {p.name for p in hermes_home.iterdir()} == set(home.LAYOUT_DIRS)


def test_existing_directory_keeps_its_mode(hermes_home: Path) -> None:
    hermes_home.mkdir(mode=0o750)
    hermes_home.chmod(0o750)
    home.ensure_layout()
    assert stat.S_IMODE(hermes_home.stat().st_mode) == 0o750


def test_unwritable_home_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HERMES_HOME", str(blocker / "home"))
    with pytest.raises(HermesError, match=f"cannot create directory {blocker}/home"):
        home.ensure_layout()
