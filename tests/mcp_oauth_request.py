"""One authorised MCP request from a fresh process: `python tests/mcp_oauth_request.py NAME URL`.

With ``--wait`` it prints ``ready`` once imported and sends the request when a
line arrives on stdin, so a test can time the request itself, not the
interpreter's start-up.

Used by tests/test_mcp_oauth.py to show what a restarted hermes (or a second
process at the same time) does with the tokens in ``$HERMES_HOME/mcp-tokens``:
it builds the auth object the connection manager builds (no person to ask),
sends an MCP ``initialize`` and prints ``{"status": N}``. Exit 3 when the
server needs a login.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx2

from hermes_agent.mcp import oauth

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


async def request(name: str, url: str) -> int:
    auth = oauth.auth_for(name, url)
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(auth=auth, timeout=30) as client:
        response = await client.post(url, json=INITIALIZE, headers=headers)
    return response.status_code


def main() -> int:
    if "--wait" in sys.argv:
        print("ready", flush=True)
        sys.stdin.readline()
    try:
        status = asyncio.run(request(sys.argv[1], sys.argv[2]))
    except oauth.OAuthLoginRequired as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print(json.dumps({"status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
