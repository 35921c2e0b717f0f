"""The flake's checks, run here as far as they can be without building anything.

`nix flake check` runs nix/checks/config_roundtrip.py, entry_points_sync.py and
cli_commands.py against the built package; this runs the same scripts against
`.venv/bin/hermes` (and against broken inputs, to show each can fail), and
evaluates nix/checks.nix itself with stand-ins for nixpkgs: the guide's seven
checks keep their names, `module-eval`'s assertions hold, and a drifted
uv.lock makes it fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def _bin(tmp_path: Path, names: list[str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for name in names:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _scripts(tmp_path: Path, names: list[str]) -> Path:
    pyproject = tmp_path / f"pyproject-{len(names)}.toml"
    lines = [f'{n} = "m:f"' for n in names]
    pyproject.write_text('[project]\nname = "x"\n\n[project.scripts]\n' + "\n".join(lines) + "\n")
    return pyproject


def entry_points_sync(pyproject: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "nix" / "checks" / "entry_points_sync.py"),
            str(pyproject),
            str(bin_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_entry_points_sync_follows_pyproject_not_a_list(tmp_path: Path) -> None:
    """The check reads [project.scripts] itself: an entry added there (hermes-acp) and
    missing from bin/ fails it; so does a binary no entry declares."""
    import tomllib

    declared = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    ok = entry_points_sync(ROOT / "pyproject.toml", _bin(tmp_path / "a", declared))
    assert ok.returncode == 0, ok.stderr
    added = entry_points_sync(
        _scripts(tmp_path, ["hermes", "hermes-agent", "hermes-acp"]),
        _bin(tmp_path / "b", ["hermes", "hermes-agent"]),
    )
    assert added.returncode == 1
    assert "'hermes-acp' has no executable" in added.stderr
    extra = entry_points_sync(
        _scripts(tmp_path, ["hermes"]), _bin(tmp_path / "c", ["hermes", "hermes-agent"])
    )
    assert extra.returncode == 1 and "hermes-agent is not a [project.scripts] entry" in extra.stderr


def test_cli_commands_checks_names(tmp_path: Path) -> None:
    script = ROOT / "nix" / "checks" / "cli_commands.py"
    ok = subprocess.run(
        [sys.executable, str(script), str(HERMES)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    # a hermes whose argparse knows every command but `deploy`: only that is reported
    fake = tmp_path / "hermes"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "if sys.argv[1] == 'deploy':\n"
        "    print(\"hermes: error: invalid choice: 'deploy'\", file=sys.stderr)\n"
        "    sys.exit(2)\n"
    )
    fake.chmod(0o755)
    broken = subprocess.run(
        [sys.executable, str(script), str(fake)], capture_output=True, text=True, check=False
    )
    assert broken.returncode == 1
    missing = [line for line in broken.stderr.splitlines() if "missing command" in line]
    assert len(missing) == 2 and all("`hermes deploy " in line for line in missing), missing


GUIDE_CHECKS = {
    "package-contents",
    "entry-points-sync",
    "cli-commands",
    "managed-guard",
    "bundled-skills",
    "config-drift",
    "config-roundtrip",
}


def _eval_checks(tmp_path: Path, *, is_linux: bool, pyproject: str | None = None) -> Any:
    """nix/checks.nix evaluated by tests/nix/eval-checks.nix over a copy of the Nix sources."""
    raw = os.environ.get("HERMES_NIX_INPUTS")
    if not raw:
        pytest.skip(
            "HERMES_NIX_INPUTS is not set (../shared/nix-inputs): cannot evaluate checks.nix"
        )
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.fail("nix-instantiate is not installed: run tests/peers/install.sh as root")
    root = tmp_path / "src"
    root.mkdir(parents=True)
    shutil.copytree(ROOT / "nix", root / "nix")
    shutil.copytree(ROOT / "tests" / "nix", root / "tests" / "nix")
    shutil.copy(ROOT / "uv.lock", root / "uv.lock")
    (root / "pyproject.toml").write_text(
        pyproject if pyproject is not None else (ROOT / "pyproject.toml").read_text()
    )
    return subprocess.run(
        [
            nix,
            "--eval",
            "--strict",
            "--json",
            "--readonly-mode",
            str(ROOT / "tests" / "nix" / "eval-checks.nix"),
            "--arg",
            "root",
            str(root),
            "--arg",
            "inputsDir",
            raw,
            "--arg",
            "isLinux",
            "true" if is_linux else "false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_flake_checks_keep_the_guides_names_and_module_eval_holds(tmp_path: Path) -> None:
    darwin = _eval_checks(tmp_path / "darwin", is_linux=False)
    assert darwin.returncode == 0, darwin.stderr
    scripts = json.loads(darwin.stdout)
    assert set(scripts) == GUIDE_CHECKS | {"module-eval"}
    linux = _eval_checks(tmp_path / "linux", is_linux=True)
    assert linux.returncode == 0, linux.stderr
    assert set(json.loads(linux.stdout)) == GUIDE_CHECKS | {"module-eval", "vm"}
    # the honest checks run the scripts tested above, on pyproject.toml and the built bin/
    assert re.search(
        r"/nix/checks/entry_points_sync\.py \S+/pyproject\.toml \S+-hermes-agent/bin\n",
        scripts["entry-points-sync"],
    )
    assert re.search(
        r"/nix/checks/cli_commands\.py \S+-hermes-agent/bin/hermes\n", scripts["cli-commands"]
    )
    assert "--help" not in scripts["cli-commands"]
    # module-eval ran its assertions (NixOS, home-manager, uv.lock) to produce this
    assert json.loads(scripts["module-eval"])["ExecStart"].endswith("/bin/hermes gateway run")


def test_module_eval_check_fails_on_a_drifted_lock(tmp_path: Path) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    drifted = text.replace('"pyyaml>=6.0.1",', '"pyyaml>=6.0.1",\n    "leftpad>=1.0",', 1)
    result = _eval_checks(tmp_path, is_linux=False, pyproject=drifted)
    assert result.returncode != 0
    assert "assertion" in result.stderr and "uvLock.problems" in result.stderr
