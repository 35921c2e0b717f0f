"""The flake's config-roundtrip check, run here with the development venv.

`nix flake check` runs nix/checks/config_roundtrip.py against the built
package; this runs the same script against `.venv/bin/hermes`, so the seven
merge scenarios are known to pass before a machine with Nix sees them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERMES = Path(sys.executable).with_name("hermes")
SCENARIOS = (
    "fresh_install",
    "nix_override",
    "user_key_preservation",
    "mixed_merge",
    "mcp_additive_merge",
    "nested_deep_merge",
    "idempotency",
)


def test_config_roundtrip_check_passes_its_seven_scenarios() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "nix" / "checks" / "config_roundtrip.py"), str(HERMES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"config-roundtrip: {name} ok" for name in SCENARIOS]


def test_config_roundtrip_check_fails_against_a_broken_binary(tmp_path: Path) -> None:
    fake = tmp_path / "hermes"
    fake.write_text("#!/bin/sh\necho 'not applied' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, str(ROOT / "nix" / "checks" / "config_roundtrip.py"), str(fake)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "fresh_install FAILED" in result.stderr and "not applied" in result.stderr
