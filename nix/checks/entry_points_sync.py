"""The flake's entry-points-sync check: [project.scripts] of pyproject.toml against bin/.

    python nix/checks/entry_points_sync.py PYPROJECT_TOML BIN_DIR

Reads the ``[project.scripts]`` table of PYPROJECT_TOML itself (so a script a
contributor adds there, such as ``hermes-acp``, is checked without anyone
updating a list) and compares it with the executables in BIN_DIR: the built
package's ``bin/``, whose wrappers nix/package.nix makes from the console
scripts the *built wheel* declares. Every entry must have an executable and
every executable an entry; exits 1 naming each difference.
tests/test_nix_checks.py runs it against good and broken directories.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path


def declared(pyproject: Path) -> set[str]:
    """The names of ``[project.scripts]``: what `pip install` would put on PATH."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    scripts = data.get("project", {}).get("scripts", {})
    if not isinstance(scripts, dict):
        raise SystemExit(f"{pyproject}: [project.scripts] is not a table")
    return set(scripts)


def built(bin_dir: Path) -> set[str]:
    """The executables in ``bin_dir``."""
    return {p.name for p in bin_dir.iterdir() if p.is_file() and os.access(p, os.X_OK)}


def main(pyproject: Path, bin_dir: Path) -> int:
    want, have = declared(pyproject), built(bin_dir)
    problems = [
        f"[project.scripts] entry {name!r} has no executable in {bin_dir}"
        for name in sorted(want - have)
    ] + [
        f"{bin_dir}/{name} is not a [project.scripts] entry of {pyproject}"
        for name in sorted(have - want)
    ]
    if not want:
        problems.append(f"{pyproject}: [project.scripts] is empty")
    for problem in problems:
        print(f"entry-points-sync: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"entry-points-sync: ok ({', '.join(sorted(want))})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: entry_points_sync.py PYPROJECT_TOML BIN_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
