"""The README's configuration reference is generated from the schema and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hermes_agent.config.schema import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_readme_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.key}` |" in readme


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "```sh\nscripts/test\n```" in readme
    assert "exec scripts/test\n" in (ROOT / ".ci" / "run").read_text()


def test_readme_command_table_is_what_hermes_help_lists() -> None:
    """The table at the top of the README names every command of `hermes --help`, and no other."""
    import re

    from hermes_agent.cli.main import COMMANDS

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Quick start", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `hermes ")]
    listed = {name for row in rows for name in re.findall(r"`hermes ([a-z-]+)`", row.split("|")[1])}
    assert listed == set(COMMANDS)
