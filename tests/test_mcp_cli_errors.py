"""`hermes mcp` errors a newcomer meets by mistake: one clear line, never a traceback.

Found by following the README as a new user; the fix belongs to the MCP OAuth module
(src/hermes_agent/mcp/oauth.py), so the test is here and marked strict xfail until then.
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


@pytest.mark.xfail(
    strict=True,
    reason="mcp/oauth.py: the SDK's logger.exception('OAuth flow error') reaches stderr as a "
    "traceback, and the registration error quotes the server's whole HTML 404 page",
)
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
