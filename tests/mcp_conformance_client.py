"""The client the MCP conformance suite drives: `python tests/mcp_conformance_client.py URL`.

The suite (tests/peers/conformance) starts a mock server per scenario and runs
this program with its URL; the scenario's name is in
``MCP_CONFORMANCE_SCENARIO`` and credentials, where a scenario has them, in
``MCP_CONFORMANCE_CONTEXT`` (JSON). Everything that matters is hermes' own
code: the OAuth flow is :mod:`hermes_agent.mcp.oauth` with its token store in
a throw-away HERMES_HOME; what this file adds is only what the suite expects a
*user* to do: approve in the "browser" (the suite's /authorize redirects at
once, so the redirect is read without following it), answer an elicitation
with the schema's defaults, and call the tools the server lists.

Exit status 0 when the session ran, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.auth.utils import build_protected_resource_metadata_discovery_urls
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult

from hermes_agent.mcp import oauth
from mcp import Client

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


async def settings_for(url: str, context: dict[str, Any]) -> oauth.OAuthSettings:
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
    return oauth.OAuthSettings.from_mapping(raw)


async def elicit(context: Any, params: Any) -> Any:
    """Accept, filling each field from the schema's default (SEP-1034)."""
    from mcp.types import ElicitResult

    schema = getattr(params, "requested_schema", None) or getattr(params, "requestedSchema", {})
    properties = (schema or {}).get("properties", {})
    content = {key: spec["default"] for key, spec in properties.items() if "default" in spec}
    return ElicitResult(action="accept", content=content)


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
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    context.setdefault("name", scenario)
    auth = None
    if scenario.startswith("auth/"):
        auth = oauth.auth_for(
            "conformance", url, home, settings=await settings_for(url, context), authorizer=browser
        )
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", elicitation_callback=elicit) as client:
            listed = await client.list_tools()
            for tool in listed.tools:
                schema = tool.input_schema or {}
                arguments = {
                    key: argument_for(spec)
                    for key, spec in (schema.get("properties") or {}).items()
                }
                await client.call_tool(tool.name, arguments)
                _trace(f"called {tool.name}")
            _trace("closing")
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
