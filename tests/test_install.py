"""The README's install command, on a copy of this checkout, as a new user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".venv", ".cache", ".git", "__pycache__", "node_modules", "*.pyc")


def _real_cache(var: str, default: Path) -> str:
    return os.environ.get(var) or str(default)


def test_install_then_first_commands(tmp_path: Path) -> None:
    checkout = tmp_path / "hermes-agent"
    shutil.copytree(ROOT, checkout, ignore=SKIP)
    user_home = tmp_path / "user"
    user_home.mkdir()
    # The user's own environment (proxies, CA bundles...) with a new, empty HOME.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    env |= {
        "HOME": str(user_home),
        # Reuse the machine's download caches: the test checks the install, not the network.
        "UV_CACHE_DIR": _real_cache("UV_CACHE_DIR", Path.home() / ".cache" / "uv"),
        "PIP_CACHE_DIR": _real_cache("PIP_CACHE_DIR", Path.home() / ".cache" / "pip"),
    }
    env.pop("XDG_BIN_HOME", None)
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        ["./install.sh"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Next: hermes setup" in result.stderr
    hermes = user_home / ".local" / "bin" / "hermes"
    assert hermes.is_symlink()
    for name in ("hermes-agent", "hermes-acp"):  # The README's one-shot and editor commands.
        assert (user_home / ".local" / "bin" / name).is_symlink(), name

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(hermes), *args],
            env=env | {"OPENROUTER_API_KEY": "sk-or-x"},
            capture_output=True,
            text=True,
            cwd=user_home,
            check=False,
        )

    version = run("version")
    assert version.returncode == 0, version.stderr
    assert f"HERMES_HOME  {user_home / '.hermes'}" in version.stdout
    setup = run("setup", "--non-interactive", "--provider", "openrouter")
    assert setup.returncode == 0, setup.stderr
    assert run("config", "set", "max_turns", "12").returncode == 0
    assert run("config", "get", "max_turns").stdout == "12\n"
    assert run("config", "unset", "max_turns").returncode == 0
    check = run("config", "check")
    assert check.returncode == 0, check.stdout
    assert (user_home / ".hermes" / ".env").read_text() == "OPENROUTER_API_KEY=sk-or-x\n"
