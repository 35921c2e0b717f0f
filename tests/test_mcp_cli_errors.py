"""`hermes mcp` errors a newcomer meets by mistake: one clear line, never a traceback.

Found by following the README as a new user.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Runner
from test_mcp_client import EVERYTHING, http_everything  # noqa: F401

pytestmark = [
    pytest.mark.peer("mcp"),
    pytest.mark.skipif(not EVERYTHING.exists(), reason="npm MCP peers not installed"),
]


def test_auth_oauth_on_a_server_without_oauth_is_one_clear_line(
    hermes: Runner,
    hermes_home: Path,
    http_everything: str,  # noqa: F811
) -> None:
    # A server with no OAuth at all: /register answers an HTML 404 page.
    result = hermes("mcp", "add", "noauth", "--url", http_everything, "--auth", "oauth")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "<html" not in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    config = hermes_home / "config.yaml"
    assert not config.exists() or "noauth" not in config.read_text()


def test_add_saves_even_when_the_reader_of_its_output_leaves(hermes_home: Path) -> None:
    """`hermes mcp add ... | head -1`: stdout closes while the tools print; exit 0 means saved."""
    import subprocess

    from conftest import HERMES, clean_env

    proc = subprocess.Popen(
        [str(HERMES), "mcp", "add", "ev", "--command", str(EVERYTHING), "--args", "stdio"],
        env=clean_env(hermes_home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # Like `head` after its lines: every later write is a broken pipe.
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "ev:" in (hermes_home / "config.yaml").read_text()


def test_logout_of_a_name_that_is_not_a_server_name_is_bad_input(hermes: Runner) -> None:
    from helpers import assert_clean_failure

    for bad in ("../x", "../../etc/passwd", "a/b"):
        result = hermes("mcp", "logout", bad)
        assert_clean_failure(result, 2)
        assert "not a valid MCP server name" in result.stderr
