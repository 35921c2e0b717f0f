"""The flake's cli-commands check: the commands the module and the docs use exist.

    python nix/checks/cli_commands.py HERMES_BINARY

Runs ``HERMES <command> --help`` for every command path the NixOS and
home-manager modules run (``gateway run``, ``deploy apply``, ``deploy
identity``) and the guide tells people to type. argparse exits 0 for a known
command and 2 ("invalid choice") for an unknown one, so this checks command
*names*, whatever the layout of the help text. Exits 1 naming each missing
command. tests/test_nix_checks.py runs it against the development venv and a
broken binary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

#: Command paths the modules run (first three) and docs/nixos.md tells people to use.
COMMANDS = (
    ("gateway", "run"),
    ("deploy", "apply"),
    ("deploy", "identity"),
    ("config", "show"),
    ("config", "set"),
    ("setup",),
    ("chat",),
    ("sessions", "list"),
    ("version",),
)


def main(hermes: str) -> int:
    missing = []
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
        env["HERMES_HOME"] = home
        for path in COMMANDS:
            result = subprocess.run(
                [hermes, *path, "--help"], capture_output=True, text=True, env=env, check=False
            )
            if result.returncode != 0:
                why = (result.stderr.strip().splitlines() or ["no output"])[-1]
                missing.append(f"`hermes {' '.join(path)}` (exit {result.returncode}: {why})")
    for item in missing:
        print(f"cli-commands: missing command {item}", file=sys.stderr)
    if missing:
        return 1
    print(f"cli-commands: ok ({len(COMMANDS)} commands)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: cli_commands.py HERMES_BINARY", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
