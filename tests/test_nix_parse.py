"""Every .nix file of the repository parses (`nix-instantiate --parse`).

Catches syntax errors, undefined variables and duplicate attributes in the
flake, the NixOS module, its checks and the VM test, none of which can be
built here. nix-instantiate comes from Debian's nix-bin (tests/peers/install.sh).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".venv", ".git", "node_modules", "__pycache__"}


def nix_files() -> list[Path]:
    return sorted(
        p for p in ROOT.rglob("*.nix") if not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
    )


def nix_instantiate() -> str:
    found = shutil.which("nix-instantiate")
    if found is None:
        pytest.fail(
            "nix-instantiate is not installed: run tests/peers/install.sh as root "
            "(Debian package nix-bin)"
        )
    return found


def test_the_nix_files_exist() -> None:
    names = {str(p.relative_to(ROOT)) for p in nix_files()}
    assert {
        "flake.nix",
        "nix/module.nix",
        "nix/package.nix",
        "nix/checks.nix",
        "nix/tests/vm.nix",
        "tests/nix/eval-module.nix",
    } <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nix_file_parses(path: Path) -> None:
    result = subprocess.run(
        [nix_instantiate(), "--parse", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{path.relative_to(ROOT)}: {result.stderr}"


def test_envrc_uses_the_flake() -> None:
    assert (ROOT / ".envrc").read_text().strip() == "use flake"


def test_nixos_docs_exist_and_are_linked() -> None:
    docs = (ROOT / "docs" / "nixos.md").read_text()
    for heading in (
        "## Quick start",
        "## Options reference",
        "## Secrets",
        "### sops-nix",
        "### agenix",
        "## Container mode",
        "## Troubleshooting",
    ):
        assert heading in docs
    # the reference table is filled (regenerated and checked by tests/test_nix_module.py)
    table = docs.split("<!-- BEGIN nix-options")[1].split("<!-- END nix-options -->")[0]
    for option in (
        "enable",
        "package",
        "settings",
        "environmentFiles",
        "container.image",
        "mcpServers.<name>.sampling.max_rpm",
        "restartSec",
    ):
        assert f"| `services.hermes-agent.{option}` |" in table
    readme = (ROOT / "README.md").read_text()
    assert "## Deployment on NixOS" in readme and "(docs/nixos.md)" in readme
