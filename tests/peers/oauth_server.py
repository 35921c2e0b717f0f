"""A small OAuth 2.1 authorization server with a protected MCP endpoint, on 127.0.0.1.

The TypeScript SDK's demo server issues no refresh tokens, so refresh (ahead
of expiry, across processes, with and without rotation) is tested against
this one. It is strict where a client could be sloppy and records every
request so tests can check what the client sent:

- ``/mcp`` answers 401 with ``resource_metadata`` without a valid token, and
  a minimal MCP ``initialize``/``tools/list`` with one;
- RFC 9728 and RFC 8414 metadata (``code_challenge_methods_supported`` and the
  RFC 9207 ``iss`` flag configurable), RFC 7591 registration;
- ``/authorize`` approves at once with a 302 carrying ``code``, ``state`` and
  ``iss`` (a wrong ``iss`` on request);
- ``/token``: authorization code with PKCE S256 checked, refresh tokens
  (rotating or not; a used rotating one is refused, as real servers do),
  ``resource`` required on every request, an optional delay to make two
  refreshes overlap.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from peers.aio_server import LoopThread


@dataclass
class Issued:
    token: str
    expires_at: float
    scope: str


@dataclass
class OAuthServer:
    """Configure, :meth:`start`, then read :attr:`requests` and :attr:`refreshes`."""

    token_lifetime: int = 3600
    rotate_refresh: bool = True
    challenge_methods: tuple[str, ...] = ("S256",)
    wrong_iss: bool = False
    refresh_delay: float = 0.0
    #: Answer ``initialize`` without a token (only the tools need one).
    open_handshake: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: (time of the refresh, expiry of the token being replaced) per refresh grant.
    refreshes: list[tuple[float, float]] = field(default_factory=list)
    access: dict[str, Issued] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh -> its access token
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    clients: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        app = web.Application()
        app.router.add_post("/mcp", self._mcp)
        app.router.add_delete("/mcp", self._mcp_delete)
        app.router.add_get("/.well-known/oauth-protected-resource/mcp", self._prm)
        app.router.add_get("/.well-known/oauth-protected-resource", self._prm)
        app.router.add_get("/.well-known/oauth-authorization-server", self._asm)
        app.router.add_post("/register", self._register)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self.thread = LoopThread(app)

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> OAuthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.thread.stop()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.thread.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def issuer(self) -> str:
        return self.base

    def issued_secrets(self) -> set[str]:
        """Every access and refresh token handed out (for the leak checks)."""
        return set(self.access) | set(self.refresh_tokens)

    def revoke_access(self) -> None:
        """Make every access token invalid now (a server revoking early)."""
        for issued in self.access.values():
            issued.expires_at = 0.0

    # --- the protected resource ------------------------------------------------

    def _challenge(self) -> web.Response:
        header = (
            'Bearer error="invalid_token", '
            f'resource_metadata="{self.base}/.well-known/oauth-protected-resource/mcp"'
        )
        return web.json_response(
            {"error": "invalid_token"}, status=401, headers={"WWW-Authenticate": header}
        )

    async def _mcp(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        issued = self.access.get(token)
        self.requests.append({"path": "/mcp", "token": token, "at": time.time()})
        body = await request.json()
        handshake = isinstance(body, dict) and body.get("method") == "initialize"
        if (issued is None or issued.expires_at <= time.time()) and not (
            self.open_handshake and handshake
        ):
            return self._challenge()
        if "id" not in body:
            return web.Response(status=202)
        if body.get("method") == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": body["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "oauth-peer", "version": "1"},
            }
        elif body.get("method") == "tools/list":
            result = {"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}
        else:
            return web.json_response(
                {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32601, "message": "no"}}
            )
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    async def _mcp_delete(self, request: web.Request) -> web.Response:
        return web.Response(status=405)

    async def _prm(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resource": self.url,
                "authorization_servers": [self.issuer],
                "scopes_supported": ["mcp"],
            }
        )

    async def _asm(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "registration_endpoint": f"{self.base}/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": list(self.challenge_methods),
                "token_endpoint_auth_methods_supported": ["none"],
                "authorization_response_iss_parameter_supported": True,
                "scopes_supported": ["mcp"],
            }
        )

    # --- the authorization server ----------------------------------------------

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        client_id = "client-" + secrets.token_hex(6)
        self.clients.add(client_id)
        self.requests.append({"path": "/register", "body": body})
        return web.json_response(
            {
                "client_id": client_id,
                "redirect_uris": body["redirect_uris"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            },
            status=201,
        )

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append({"path": "/authorize", "params": query})
        if query.get("client_id") not in self.clients:
            return web.json_response({"error": "unauthorized_client"}, status=400)
        if query.get("code_challenge_method") not in self.challenge_methods:
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        iss = "http://attacker.invalid" if self.wrong_iss else self.issuer
        location = (
            query["redirect_uri"]
            + "?"
            + urllib.parse.urlencode({"code": code, "state": query.get("state", ""), "iss": iss})
        )
        raise web.HTTPFound(location)

    def _issue(self, scope: str) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self.access[access] = Issued(access, time.time() + self.token_lifetime, scope)
        self.refresh_tokens[refresh] = access
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "refresh_token": refresh,
            "scope": scope,
        }

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        params = {k: str(v) for k, v in form.items()}
        self.requests.append({"path": "/token", "params": params, "at": time.time()})
        if params.get("resource") != self.url:
            return web.json_response(
                {"error": "invalid_target", "error_description": "resource required"}, status=400
            )
        grant = params.get("grant_type")
        if grant == "authorization_code":
            asked = self.codes.pop(params.get("code", ""), None)
            if asked is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            verifier = params.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if digest.decode().rstrip("=") != asked.get("code_challenge"):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "pkce"}, 400
                )
            if asked.get("resource") != self.url:
                return web.json_response({"error": "invalid_target"}, status=400)
            return web.json_response(self._issue(asked.get("scope", "mcp")))
        if grant == "refresh_token":
            if self.refresh_delay:
                await asyncio.sleep(self.refresh_delay)
            old = params.get("refresh_token", "")
            access = self.refresh_tokens.get(old)
            if access is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            previous = self.access[access]
            self.refreshes.append((time.time(), previous.expires_at))
            answer = self._issue(previous.scope)
            if self.rotate_refresh:
                del self.refresh_tokens[old]
            else:
                # Not rotated: the old refresh token stays valid and none is returned.
                del self.refresh_tokens[answer.pop("refresh_token")]
                self.refresh_tokens[old] = answer["access_token"]
            return web.json_response(answer)
        return web.json_response({"error": "unsupported_grant_type"}, status=400)


def dump(server: OAuthServer) -> str:
    """The recorded requests, for a failing assertion's message."""
    return json.dumps(server.requests, indent=1, default=str)[:4000]
