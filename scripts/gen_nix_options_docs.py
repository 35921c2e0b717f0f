"""Regenerate the options reference of docs/nixos.md from nix/module.nix.

    HERMES_NIXPKGS_LIB=/path/to/nixpkgs.lib .venv/bin/python scripts/gen_nix_options_docs.py
    HERMES_NIXPKGS_LIB=... .venv/bin/python scripts/gen_nix_options_docs.py --check

The module is evaluated with nixpkgs' lib by tests/nix/eval-module.nix (needs
nix-instantiate and a checkout of nix-community/nixpkgs.lib); the table
between the BEGIN/END markers of docs/nixos.md is replaced by one row per
option: name, type, default, description. ``--check`` exits 1 when the file is
stale. tests/test_nix_module.py runs ``--check``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "nixos.md"
EVAL = ROOT / "tests" / "nix" / "eval-module.nix"
BEGIN = "<!-- BEGIN nix-options (scripts/gen_nix_options_docs.py) -->"
END = "<!-- END nix-options -->"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(lib: Path) -> str:
    nix = shutil.which("nix-instantiate")
    if nix is None:
        raise SystemExit("gen_nix_options_docs: nix-instantiate is not installed (Debian: nix-bin)")
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
            str(lib),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"gen_nix_options_docs: evaluating the module failed:\n{result.stderr}")
    options = json.loads(result.stdout)["optionDocs"]
    rows = ["| option | type | default | description |", "| --- | --- | --- | --- |"]
    for o in options:
        default = "—" if o["default"] is None else f"`{cell(o['default'])}`"
        rows.append(f"| `{o['name']}` | {cell(o['type'])} | {default} | {cell(o['description'])} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    raw = os.environ.get("HERMES_NIXPKGS_LIB")
    if not raw:
        print(
            "gen_nix_options_docs: set HERMES_NIXPKGS_LIB to a nixpkgs.lib checkout",
            file=sys.stderr,
        )
        return 2
    lib = Path(raw)
    if (lib / "lib" / "default.nix").is_file():
        lib = lib / "lib"
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        print(f"gen_nix_options_docs: {DOC} lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(lib)}{END}{tail}"
    if "--check" in argv:
        if new != text:
            print(f"{DOC} is stale: run scripts/gen_nix_options_docs.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
