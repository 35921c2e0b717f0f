"""Assertions shared by the CLI tests."""

from __future__ import annotations

import subprocess


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    """A refused command: the expected status, a message, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("hermes: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
