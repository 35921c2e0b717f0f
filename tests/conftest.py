"""Shared fixtures: a fresh HERMES_HOME per test and a runner for the real CLI.

CLI tests run the installed ``hermes`` console script in a subprocess, so
they see what a user sees: stdout, stderr, the exit status, and the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERMES = Path(sys.executable).with_name("hermes")

# Variables from the developer's shell that would change what a test sees.
_SCRUB = ("HERMES_HOME", "HERMES_MANAGED", "HERMES_DEBUG", "VISUAL", "EDITOR")
_KEY_SUFFIXES = ("_API_KEY", "_TOKEN")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.endswith(_KEY_SUFFIXES)}
    env["HERMES_HOME"] = str(home)
    env.update(extra)
    return env


@pytest.fixture
def hermes_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A HERMES_HOME that does not exist yet, set in this process's environment."""
    home = tmp_path / "hermes-home"
    for name in _SCRUB:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.endswith(_KEY_SUFFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HERMES_HOME", str(home))
    yield home


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hermes(hermes_home: Path, tmp_path: Path) -> Runner:
    """Run ``hermes ARGS`` against the test's HERMES_HOME; returns the completed process."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HERMES), *args],
            env=clean_env(hermes_home, **(env or {})),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd or workdir,
        )

    return run
