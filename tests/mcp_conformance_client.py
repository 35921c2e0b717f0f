"""The client the MCP conformance suite drives: `python tests/mcp_conformance_client.py URL`.

The suite (tests/peers/conformance) starts a mock server per scenario and runs
this program with its URL; the scenario's name is in
``MCP_CONFORMANCE_SCENARIO`` and credentials, where a scenario has them, in
``MCP_CONFORMANCE_CONTEXT`` (JSON). It does what a user of hermes does: writes
the server into ``config.yaml`` of a throw-away HERMES_HOME (with the
``oauth`` block the scenario's credentials call for), runs `hermes mcp login`'s
code when the server needs a login, then connects through hermes' connection
manager (the one `hermes chat` uses) and calls every tool it lists. The
"person" approves in the "browser": the suite's /authorize redirects at once,
so the redirect is read without following it; :func:`oauth.set_person` lets
a step-up in the middle of the session ask the same person.

A server's question (elicitation) is answered as a hermes user can: accept the
values the server proposed (its schema's defaults, SEP-1034).

Exit status 0 when the session ran, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx2
import yaml
from mcp.client.auth.utils import build_protected_resource_metadata_discovery_urls
from mcp.shared.auth import AuthorizationCodeResult

from hermes_agent.mcp import oauth

#: The Client ID Metadata Document URL the suite's CIMD scenario recognises.
CIMD_URL = "https://conformance-test.local/client-metadata.json"


async def browser(authorization_url: str) -> AuthorizationCodeResult:
    """Play the user's browser: GET /authorize, read the redirect's query."""
    async with httpx2.AsyncClient(timeout=10) as client:
        response = await client.get(authorization_url)
    location = response.headers.get("location")
    if response.status_code not in (301, 302, 303, 307, 308) or not location:
        raise RuntimeError(f"/authorize answered {response.status_code} without a redirect")
    params = oauth.parse_redirect(location)
    if "code" not in params:
        raise RuntimeError(f"the redirect carries no code: {params.get('error', '?')}")
    return AuthorizationCodeResult(
        code=params["code"], state=params.get("state"), iss=params.get("iss")
    )


async def authorization_server_of(url: str) -> str:
    """What an administrator looks up once: the MCP server's authorization server (RFC 9728)."""
    async with httpx2.AsyncClient(timeout=10) as client:
        for candidate in build_protected_resource_metadata_discovery_urls(None, url):
            response = await client.get(candidate)
            if response.status_code == 200:
                return str(response.json()["authorization_servers"][0])
    raise RuntimeError("no protected resource metadata")


async def oauth_block(url: str, context: dict[str, Any]) -> dict[str, Any]:
    """The `mcp_servers.NAME.oauth` block a user would write for this scenario."""
    raw: dict[str, Any] = {"client_metadata_url": CIMD_URL}
    if context.get("idp_id_token"):
        raw.update(
            grant="identity_assertion",
            client_id=context["client_id"],
            client_secret=context["client_secret"],
            token_endpoint_auth_method="client_secret_basic",
            issuer=await authorization_server_of(url),
            idp_token_endpoint=context["idp_token_endpoint"],
            idp_client_id=context.get("idp_client_id"),
            id_token=context["idp_id_token"],
        )
    elif context.get("private_key_pem"):
        raw.update(
            grant="client_credentials",
            client_id=context["client_id"],
            private_key=context["private_key_pem"],
            signing_algorithm=context.get("signing_algorithm") or "RS256",
        )
    elif context.get("client_id") and "client-credentials" in context.get("name", ""):
        raw.update(
            grant="client_credentials",
            client_id=context["client_id"],
            client_secret=context["client_secret"],
        )
    elif context.get("client_id"):
        raw.update(client_id=context["client_id"], client_secret=context.get("client_secret"))
    oauth.OAuthSettings.from_mapping(raw)  # As `hermes config check` would.
    return raw


async def accept_proposed(question: str, choices: Sequence[str]) -> str:
    """The user's answer to a server's question: accept the values it proposed."""
    from hermes_agent.mcp import elicitation

    assert elicitation.ACCEPT in choices, choices
    return elicitation.ACCEPT


def argument_for(spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if "default" in spec:
        return spec["default"]
    return {"number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}.get(
        str(kind), "x"
    )


def _trace(what: str) -> None:
    if os.environ.get("HERMES_CONFORMANCE_TRACE"):
        print(f"{time.monotonic():.2f} {what}", file=sys.stderr)


async def run(url: str, home: Path) -> None:
    """Connect the way `hermes chat` does: config.yaml, the connection manager, its tools."""
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    context.setdefault("name", scenario)
    os.environ["HERMES_HOME"] = str(home)
    server: dict[str, Any] = {"url": url, "protocol": "legacy", "connect_timeout": 60}
    if scenario.startswith("auth/"):
        server.update(auth="oauth", oauth=await oauth_block(url, context))
    (home / "config.yaml").write_text(
        yaml.safe_dump({"mcp_servers": {"conformance": server}, "mcp": {"connect_wait": 60}})
    )
    from hermes_agent.config.loader import load_config
    from hermes_agent.mcp import config as mcp_config
    from hermes_agent.mcp.manager import READY, get_manager

    # The person at the browser, for the login and any step-up in the session.
    oauth.set_person(browser)
    config = load_config()
    if server.get("auth") and not oauth.status("conformance").logged_in:
        await oauth.login_async("conformance", url, authorizer=browser, out=sys.stderr)
    servers = mcp_config.parse_servers(config.get("mcp_servers"))
    scope = get_manager().open_scope(servers, config=config, cwd=home, include_global=False)
    try:
        await scope.prepare()
        connection = scope.find("conformance")
        assert connection is not None
        if connection.state != READY:
            raise RuntimeError(connection.status().line())
        _trace("ready")
        connection.askers.append(accept_proposed)  # The person at the prompt (elicitation).
        for tool in list(connection.tools):
            schema = tool.input_schema or {}
            arguments = {
                key: argument_for(spec) for key, spec in (schema.get("properties") or {}).items()
            }
            await connection.call_tool(tool.name, arguments)
            _trace(f"called {tool.name}")
    finally:
        await scope.aclose()
    _trace("closed")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: mcp_conformance_client.py URL", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hermes-conformance-") as tmp:
        try:
            asyncio.run(run(sys.argv[1], Path(tmp)))
        except Exception as exc:
            print(f"conformance client: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
