"""Regenerate nix/config-keys.json: the sorted leaf keys of DEFAULT_CONFIG.

    .venv/bin/python scripts/gen_config_keys.py          # rewrite nix/config-keys.json
    .venv/bin/python scripts/gen_config_keys.py --check  # exit 1 if it is stale

The flake's ``config-drift`` check compares this file with the keys of the
package it builds, and ``tests/test_config_keys.py`` runs ``--check``, so a
Setting added to ``hermes_agent.config.schema`` without regenerating this
file fails before it reaches a NixOS user. Run it after adding a Setting
(next to ``scripts/gen_config_docs.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hermes_agent.config.merge import leaf_keys
from hermes_agent.config.schema import DEFAULT_CONFIG

KEYS_FILE = Path(__file__).resolve().parent.parent / "nix" / "config-keys.json"


def render() -> str:
    return json.dumps(sorted(leaf_keys(DEFAULT_CONFIG)), indent=2) + "\n"


def main() -> int:
    new = render()
    if "--check" in sys.argv[1:]:
        try:
            old = KEYS_FILE.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = ""
        if old != new:
            print(
                f"{KEYS_FILE} is stale: run .venv/bin/python scripts/gen_config_keys.py",
                file=sys.stderr,
            )
            return 1
        return 0
    KEYS_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEYS_FILE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
