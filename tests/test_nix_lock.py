"""flake.lock pins every input, at the revisions CI evaluates with.

`nix flake metadata` reads the committed lock offline (Nix 2.8 can: it
fetches nothing to print the inputs) and must show each input locked to a
revision, with no lock update needed (`--no-write-lock-file` fails on a lock
that does not match flake.nix's inputs). The structure is checked in Python
too: nixpkgs on a release branch with its narHash, the three pyproject inputs
at the revisions of ../shared/nix-inputs/README.md, and every input's nixpkgs
following the root one (so a system flake's single
`inputs.hermes-agent.inputs.nixpkgs.follows = "nixpkgs"` moves them all).
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
LOCK = json.loads((ROOT / "flake.lock").read_text())
EXPECTED = {  # input name -> (owner/repo, folder in nix-inputs)
    "pyproject-nix": ("pyproject-nix/pyproject.nix", "pyproject.nix"),
    "uv2nix": ("pyproject-nix/uv2nix", "uv2nix"),
    "pyproject-build-systems": ("pyproject-nix/build-system-pkgs", "build-system-pkgs"),
}


def node(name: str) -> dict[str, Any]:
    root = LOCK["nodes"][LOCK["root"]]
    found = LOCK["nodes"][root["inputs"][name]]
    assert isinstance(found, dict)
    return found


def test_lock_structure() -> None:
    assert LOCK["version"] == 7
    root = LOCK["nodes"][LOCK["root"]]
    assert set(root["inputs"]) == {"nixpkgs", *EXPECTED}
    nixpkgs = node("nixpkgs")
    assert re.fullmatch(r"nixos-\d\d\.\d\d", nixpkgs["original"]["ref"])
    assert re.fullmatch(r"[0-9a-f]{40}", nixpkgs["locked"]["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", nixpkgs["locked"]["narHash"])
    for name in EXPECTED:
        entry = node(name)
        assert re.fullmatch(r"[0-9a-f]{40}", entry["locked"]["rev"]), name
        # every input's nixpkgs (and pyproject-nix/uv2nix) follow the root's
        for dep, target in entry.get("inputs", {}).items():
            assert target == [dep], f"{name}.{dep} must follow the root input {dep}"
    flake = (ROOT / "flake.nix").read_text()
    assert f'nixpkgs.url = "github:NixOS/nixpkgs/{nixpkgs["original"]["ref"]}"' in flake


def test_pyproject_inputs_are_pinned_to_the_revisions_ci_evaluates() -> None:
    raw = os.environ.get("HERMES_NIX_INPUTS")
    if not raw:
        pytest.skip("HERMES_NIX_INPUTS is not set (../shared/nix-inputs): no revisions to compare")
    readme = (Path(raw) / "README.md").read_text()
    for name, (repo, folder) in EXPECTED.items():
        found = re.search(
            rf"\| `{re.escape(folder)}/` \| {re.escape(repo)} \| ([0-9a-f]{{40}}) \|", readme
        )
        assert found, f"{folder} is not in {raw}/README.md"
        locked = node(name)["locked"]
        assert f"{locked['owner']}/{locked['repo']}" == repo
        assert locked["rev"] == found.group(1), name


def test_nix_flake_metadata_shows_every_input_pinned(tmp_path: Path) -> None:
    nix = shutil.which("nix")
    if nix is None:
        pytest.fail("nix is not installed: run tests/peers/install.sh as root (nix-bin)")
    for name in ("flake.nix", "flake.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        [
            nix,
            "--extra-experimental-features",
            "nix-command flakes",
            "flake",
            "metadata",
            "--json",
            "--offline",
            "--no-write-lock-file",
            f"path:{tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)
    nodes = meta["locks"]["nodes"]
    for name in ("nixpkgs", *EXPECTED):
        locked = nodes[name]["locked"]
        assert locked["type"] == "github" and re.fullmatch(r"[0-9a-f]{40}", locked["rev"]), name


def test_flake_outputs_evaluate_with_the_pinned_trees(tmp_path: Path) -> None:
    """flake.nix itself evaluates: its inputs overridden with the pinned source trees
    (nixpkgs by nixpkgs.lib, whose flake has the `lib` the outputs use)."""
    raw = os.environ.get("HERMES_NIX_INPUTS")
    if not raw:
        pytest.skip(
            "HERMES_NIX_INPUTS is not set (../shared/nix-inputs): no inputs to evaluate with"
        )
    nix = shutil.which("nix")
    if nix is None:
        pytest.fail("nix is not installed: run tests/peers/install.sh as root (nix-bin)")
    flake = tmp_path / "flake"
    flake.mkdir()
    for name in ("flake.nix", "flake.lock", "pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, flake / name)
    shutil.copytree(ROOT / "nix", flake / "nix")
    overrides = []
    for name, folder in [("nixpkgs", "nixpkgs.lib")] + [(n, f) for n, (_, f) in EXPECTED.items()]:
        overrides += ["--override-input", name, f"path:{Path(raw) / folder}"]

    def attr_names(output: str) -> list[str]:
        result = subprocess.run(
            [
                nix,
                "--extra-experimental-features",
                "nix-command flakes",
                "eval",
                "--offline",
                "--no-write-lock-file",
                "--json",
                f"path:{flake}#{output}",
                "--apply",
                "builtins.attrNames",
                *overrides,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        names = json.loads(result.stdout)
        assert isinstance(names, list)
        return names

    assert attr_names("nixosModules") == ["default", "hermes-agent"]
    assert attr_names("homeManagerModules") == ["default", "hermes-agent"]
    assert attr_names("packages") == ["aarch64-darwin", "aarch64-linux", "x86_64-linux"]
    assert attr_names("devShells") == [
        "aarch64-darwin",
        "aarch64-linux",
        "x86_64-darwin",
        "x86_64-linux",
    ]


def test_a_system_flake_on_another_release_follows_with_one_line(tmp_path: Path) -> None:
    """The guide's example: a system flake on its own nixpkgs (nixos-24.11 there; the
    pinned nixpkgs.lib tree stands in for it here) writes
    `inputs.hermes-agent.inputs.nixpkgs.follows = "nixpkgs"`, and every input of the
    hermes-agent flake then uses that one nixpkgs; the flake's modules still evaluate."""
    raw = os.environ.get("HERMES_NIX_INPUTS")
    if not raw:
        pytest.skip(
            "HERMES_NIX_INPUTS is not set (../shared/nix-inputs): no inputs to evaluate with"
        )
    nix = shutil.which("nix")
    if nix is None:
        pytest.fail("nix is not installed: run tests/peers/install.sh as root (nix-bin)")
    hermes = tmp_path / "hermes-agent"
    hermes.mkdir()
    for name in ("flake.nix", "flake.lock", "pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, hermes / name)
    shutil.copytree(ROOT / "nix", hermes / "nix")
    system = tmp_path / "system"
    system.mkdir()
    (system / "flake.nix").write_text(
        "{\n"
        f'  inputs.nixpkgs.url = "path:{Path(raw) / "nixpkgs.lib"}";  # stands in for nixos-24.11\n'
        "  inputs.hermes-agent = {\n"
        f'    url = "path:{hermes}";\n'
        '    inputs.nixpkgs.follows = "nixpkgs";\n'
        "  };\n"
        "  outputs = { nixpkgs, hermes-agent, ... }: {\n"
        "    modules = builtins.attrNames hermes-agent.nixosModules;\n"
        "  };\n"
        "}\n"
    )
    # The github inputs cannot be fetched here: the pinned trees stand in for them.
    overrides = []
    for name, (_, folder) in EXPECTED.items():
        overrides += ["--override-input", f"hermes-agent/{name}", f"path:{Path(raw) / folder}"]
    base = [nix, "--extra-experimental-features", "nix-command flakes"]
    common = ["--offline", "--no-write-lock-file", *overrides]
    meta = subprocess.run(
        [*base, "flake", "metadata", "--json", f"path:{system}", *common],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert meta.returncode == 0, meta.stderr
    nodes = json.loads(meta.stdout)["locks"]["nodes"]
    assert nodes["hermes-agent"]["inputs"]["nixpkgs"] == ["nixpkgs"]
    for name in EXPECTED:  # each resolves to hermes-agent's nixpkgs, i.e. the system's
        assert nodes[name]["inputs"]["nixpkgs"] == ["hermes-agent", "nixpkgs"], name
    evaluated = subprocess.run(
        [*base, "eval", "--json", f"path:{system}#modules", *common],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout) == ["default", "hermes-agent"]
