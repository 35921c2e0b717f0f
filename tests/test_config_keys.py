"""nix/config-keys.json lists DEFAULT_CONFIG's leaf keys (the flake's config-drift check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hermes_agent.config.merge import leaf_keys
from hermes_agent.config.schema import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
KEYS_FILE = ROOT / "nix" / "config-keys.json"
SCRIPT = ROOT / "scripts" / "gen_config_keys.py"


def test_config_keys_file_matches_the_schema() -> None:
    listed = json.loads(KEYS_FILE.read_text(encoding="utf-8"))
    expected = sorted(leaf_keys(DEFAULT_CONFIG))
    missing = sorted(set(expected) - set(listed))
    stale = sorted(set(listed) - set(expected))
    assert (missing, stale) == ([], []), (
        f"nix/config-keys.json is stale (missing {missing}, no longer keys {stale}): "
        "run .venv/bin/python scripts/gen_config_keys.py"
    )
    assert listed == expected, "keys must be sorted: run scripts/gen_config_keys.py"


def test_generator_check_mode_reports_staleness(tmp_path: Path) -> None:
    current = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert current.returncode == 0, current.stderr
    # The same script against a copy of the tree whose keys file lacks a key: exit 1.
    copy_root = tmp_path / "tree"
    (copy_root / "scripts").mkdir(parents=True)
    (copy_root / "nix").mkdir()
    (copy_root / "scripts" / SCRIPT.name).write_text(SCRIPT.read_text())
    stale = json.loads(KEYS_FILE.read_text())[1:]
    (copy_root / "nix" / "config-keys.json").write_text(json.dumps(stale, indent=2) + "\n")
    result = subprocess.run(
        [sys.executable, str(copy_root / "scripts" / SCRIPT.name), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "config-keys.json is stale" in result.stderr
    # Without --check it rewrites the file to the current keys.
    subprocess.run([sys.executable, str(copy_root / "scripts" / SCRIPT.name)], check=True)
    rewritten = json.loads((copy_root / "nix" / "config-keys.json").read_text())
    assert rewritten == sorted(leaf_keys(DEFAULT_CONFIG))
