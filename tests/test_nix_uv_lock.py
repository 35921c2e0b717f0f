"""uv.lock as the flake's package sees it: loaded by uv2nix, evaluated with nixpkgs' lib.

tests/nix/eval-uv-lock.nix loads the uv2nix workspace of uv.lock with the
pinned pyproject.nix and uv2nix (../shared/nix-inputs, through
$HERMES_NIX_INPUTS) and reports (1) any drift between uv.lock and
pyproject.toml and (2) any runtime dependency that does not resolve to a
wheel on x86_64-linux, aarch64-linux or aarch64-darwin (the flake's systems).
Without $HERMES_NIX_INPUTS these tests are reported SKIPPED, not passed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "nix" / "eval-uv-lock.nix"
SYSTEMS = ("x86_64-linux", "aarch64-linux", "aarch64-darwin")


def inputs() -> Path:
    raw = os.environ.get("HERMES_NIX_INPUTS")
    if not raw:
        pytest.skip(
            "HERMES_NIX_INPUTS is not set: point it at ../shared/nix-inputs (nixpkgs.lib, "
            "pyproject.nix, uv2nix) to load uv.lock with uv2nix"
        )
    path = Path(raw)
    for folder in ("nixpkgs.lib/lib/default.nix", "pyproject.nix/default.nix", "uv2nix/lib"):
        if not (path / folder).exists():
            pytest.fail(f"HERMES_NIX_INPUTS={raw}: {folder} is missing")
    return path


def evaluate(workspace: Path, *extra: str) -> dict[str, Any]:
    src = inputs()
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.fail("nix-instantiate is not installed: run tests/peers/install.sh as root")
    result = subprocess.run(
        [
            nix,
            "--eval",
            "--strict",
            "--json",
            "--readonly-mode",
            str(EVAL),
            "--arg",
            "libPath",
            str(src / "nixpkgs.lib" / "lib"),
            "--arg",
            "pyprojectNix",
            str(src / "pyproject.nix"),
            "--arg",
            "uv2nix",
            str(src / "uv2nix"),
            "--arg",
            "workspaceRoot",
            str(workspace),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def workspace(tmp_path: Path, pyproject: str | None = None) -> Path:
    """uv.lock and pyproject.toml alone (uv2nix reads nothing else for this)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    (tmp_path / "pyproject.toml").write_text(
        pyproject if pyproject is not None else (ROOT / "pyproject.toml").read_text()
    )
    return tmp_path


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return evaluate(workspace(tmp_path_factory.mktemp("ws")))


def test_lock_agrees_with_pyproject_and_every_dependency_has_a_wheel(
    locked: dict[str, Any],
) -> None:
    assert locked["driftProblems"] == []
    assert locked["wheelProblems"] == []
    assert set(locked["wheels"]) == set(SYSTEMS)
    for system, wheels in locked["wheels"].items():
        # core dependencies and the extras' (pillow is core; mcp and acp are extras)
        for name in ("pillow", "pyyaml", "openai", "mcp", "agent-client-protocol", "aiohttp"):
            assert name in wheels, (system, name)
            assert wheels[name].endswith(".whl"), (system, name, wheels[name])
        assert ("landlockpy" in wheels) == system.endswith("-linux")  # a linux-only marker
        assert "pytest" not in wheels and "mypy" not in wheels  # the dev group is not shipped
    arch = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64", "aarch64-darwin": "arm64"}
    for system, tag in arch.items():
        assert re.search(tag, locked["wheels"][system]["pillow"]), locked["wheels"][system]


def test_a_dependency_added_without_relocking_is_drift(tmp_path: Path) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    drifted = text.replace('"pyyaml>=6.0.1",', '"pyyaml>=6.0.1",\n    "leftpad>=1.0",', 1)
    assert drifted != text
    out = evaluate(workspace(tmp_path / "a", drifted))
    assert any("dependencies" in p and "leftpad" in p for p in out["driftProblems"]), out
    respecified = text.replace('"pillow>=11"', '"pillow>=12"', 1)
    assert respecified != text
    out = evaluate(workspace(tmp_path / "b", respecified))
    assert any(p.startswith("pillow:") for p in out["driftProblems"]), out
    new_extra = text.replace(
        'mcp = ["mcp>=2.3,<3"]', 'mcp = ["mcp>=2.3,<3"]\nvoice = ["pyyaml>=6.0.1"]', 1
    )
    assert new_extra != text
    out = evaluate(workspace(tmp_path / "c", new_extra))
    assert any(p.startswith("extras:") for p in out["driftProblems"]), out


def test_intel_macos_has_no_wheel_for_cryptography(tmp_path: Path) -> None:
    """Why the flake offers no x86_64-darwin: say so, and notice when that changes."""
    out = evaluate(workspace(tmp_path), "--arg", "systems", '[ "x86_64-darwin" ]')
    assert [p for p in out["wheelProblems"] if p.startswith("cryptography ")], out["wheelProblems"]
    flake = (ROOT / "flake.nix").read_text()
    assert '"x86_64-darwin"' not in flake.split("systems = [", 1)[1].split("]", 1)[0]
