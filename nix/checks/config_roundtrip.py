"""The flake's config-roundtrip check: seven merge scenarios through `hermes deploy apply`.

    python nix/checks/config_roundtrip.py HERMES_BINARY

Runs the real CLI against fresh HERMES_HOMEs in a temporary directory and exits
non-zero naming the first scenario that fails. tests/test_nix_checks.py runs it
with the development venv; the flake runs it with the built package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml


def apply(hermes: str, state: Path, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec = {"version": 1, "stateDir": str(state), "settings": settings, **extra}
    spec_file = state / "spec.json"
    spec_file.write_text(json.dumps(spec))
    home = state / ".hermes"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    result = subprocess.run(
        [hermes, "deploy", "apply", str(spec_file), "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"hermes deploy apply exited {result.returncode}: {result.stderr}")
    loaded = yaml.safe_load((home / "config.yaml").read_text()) or {}
    assert isinstance(loaded, dict)
    return loaded


def user_config(state: Path, data: dict[str, Any]) -> None:
    home = state / ".hermes"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(data))


def snapshot(home: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the home but the lock file (its holder's pid changes each run)."""
    return {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(home.rglob("*"))
        if p.is_file() and p.name != "home.lock"
    }


def main(hermes: str) -> int:
    scenarios = []

    def scenario(fn: Any) -> Any:
        scenarios.append(fn)
        return fn

    @scenario
    def fresh_install(state: Path) -> None:
        cfg = apply(hermes, state, {"model": {"default": "nix/model"}})
        assert cfg == {"model": {"default": "nix/model"}}, cfg
        assert (state / ".hermes" / ".managed").read_text().strip() == "nixos"

    @scenario
    def nix_override(state: Path) -> None:
        user_config(state, {"model": {"default": "user/model"}})
        cfg = apply(hermes, state, {"model": {"default": "nix/model"}})
        assert cfg["model"]["default"] == "nix/model", cfg

    @scenario
    def user_key_preservation(state: Path) -> None:
        user_config(state, {"max_turns": 12})
        cfg = apply(hermes, state, {"model": {"default": "nix/model"}})
        assert cfg["max_turns"] == 12, cfg

    @scenario
    def mixed_merge(state: Path) -> None:
        user_config(state, {"model": {"provider": "anthropic", "default": "user/model"}})
        cfg = apply(hermes, state, {"model": {"default": "nix/model", "timeout": 30}})
        assert cfg["model"] == {"provider": "anthropic", "default": "nix/model", "timeout": 30}, cfg
        cfg = apply(hermes, state, {"model": {"default": "nix/model"}})
        assert cfg["model"] == {"provider": "anthropic", "default": "nix/model"}, cfg

    @scenario
    def mcp_additive_merge(state: Path) -> None:
        user_config(state, {"mcp_servers": {"mine": {"command": "my-server"}}})
        fs = {"command": "npx", "args": ["-y", "server-filesystem"]}
        cfg = apply(hermes, state, {}, mcpServers={"fs": fs})
        assert cfg["mcp_servers"] == {"mine": {"command": "my-server"}, "fs": fs}, cfg
        cfg = apply(hermes, state, {}, mcpServers={})
        assert cfg["mcp_servers"] == {"mine": {"command": "my-server"}}, cfg

    @scenario
    def nested_deep_merge(state: Path) -> None:
        user_config(state, {"terminal": {"ssh": {"user": "me"}, "timeout": 60}})
        cfg = apply(hermes, state, {"terminal": {"ssh": {"host": "build.lan"}}})
        assert cfg["terminal"] == {"ssh": {"user": "me", "host": "build.lan"}, "timeout": 60}, cfg

    @scenario
    def idempotency(state: Path) -> None:
        settings = {"model": {"default": "nix/model"}, "terminal": {"timeout": 90}}
        apply(
            hermes, state, settings, environment={"LOG_LEVEL": "info"}, documents={"SOUL.md": "x\n"}
        )
        before = snapshot(state / ".hermes")
        apply(
            hermes, state, settings, environment={"LOG_LEVEL": "info"}, documents={"SOUL.md": "x\n"}
        )
        assert snapshot(state / ".hermes") == before, "a second apply changed files"

    for fn in scenarios:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fn(Path(tmp))
            except AssertionError as exc:
                print(f"config-roundtrip: {fn.__name__} FAILED: {exc}", file=sys.stderr)
                return 1
        print(f"config-roundtrip: {fn.__name__} ok")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: config_roundtrip.py HERMES_BINARY", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
