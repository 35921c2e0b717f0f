"""OAuth 2.1 for MCP servers over HTTP: the auth object, `hermes mcp login` and `logout`.

The connection manager asks :func:`auth_for` for an ``httpx2.Auth`` and hands
it to the SDK's Streamable HTTP transport. `hermes mcp login NAME` calls
:func:`login` (a person at a terminal, or a service user bootstrapping a
NixOS host over SSH), `hermes mcp logout NAME` calls :func:`logout`.

Built on the SDK's ``OAuthClientProvider`` (discovery from the 401's
``resource_metadata`` or RFC 9728 well-known URLs, RFC 8414 / OIDC metadata
with the issuer checked, ``state`` and RFC 9207 ``iss`` checked, registration
as pre-registered client, Client ID Metadata Document or RFC 7591, step-up on
403 ``insufficient_scope``), with what it gets wrong or leaves out put right
here:

- **Expiry that survives a restart.** The SDK computes expiry from
  ``expires_in`` when a token arrives and forgets it: a token loaded from
  storage counts as valid for ever (python-sdk #3250). The store keeps the
  absolute expiry and :meth:`_HermesAuthMixin._initialize` restores it.
- **Refresh ahead of expiry, once across processes.** The SDK refreshes only
  after expiry, inside one process. Here a token is refreshed when a quarter
  of its life (at most a minute) is left, under a file lock, and a process
  that waited for the lock reads the token the other one obtained instead of
  spending the (possibly rotated) refresh token again. A refresh token the
  server does not rotate is kept. After a restart the endpoints are
  discovered again, and the refresh token is only sent to the issuer that
  issued it.
- **Refresh before any re-login.** A 401 for a token that has a refresh
  token is answered with a refresh and a retry before a login is started,
  and :func:`login` refreshes instead of asking the user when it can.
- **RFC 8707 ``resource`` on every request**, not only when the SDK guesses
  the server's protocol era.
- **PKCE S256 required**: an authorization server whose metadata does not
  advertise S256 is refused (only the 2025-03-26 fallback without any
  metadata proceeds, as that revision prescribes).
- **No login behind the user's back.** Without a person to ask (the agent's
  own connections), a server that needs a login raises
  :class:`OAuthLoginRequired`, which the manager shows as "needs login".

Tokens never reach logs or output: they are written only to
``mcp-tokens/`` (which :mod:`hermes_agent.redact` reads, so every value in it
is masked wherever it appears, and which the sandbox keeps from the agent's
commands), and messages shown to the user pass :func:`redact.redact`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.exceptions import OAuthFlowError
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.auth.oauth2 import OAuthContext
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    create_oauth_metadata_request,
    extract_field_from_www_auth,
    extract_scope_from_www_auth,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    issuers_match,
)
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl, ValidationError

from hermes_agent import redact
from hermes_agent.errors import ConfigError, HermesError
from hermes_agent.mcp.oauth_settings import (
    GRANTS,
    ID_JAG_TYPE,
    ID_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    OAuthSettings,
    settings_for,
)
from hermes_agent.mcp.oauth_store import StoredToken, TokenStore

__all__ = [
    "GRANTS",
    "OAuthLoginRequired",
    "OAuthSettings",
    "auth_for",
    "configured_settings",
    "login",
    "login_async",
    "logout",
    "set_person",
    "settings_for",
    "status",
]

log = logging.getLogger(__name__)
# The SDK logs a failed flow with ``logger.exception``: with no handler configured (any CLI
# command) Python's last-resort handler would print its traceback and the server's whole
# answer on stderr. hermes reports the failure itself, in one redacted line (_describe).
_sdk_log = logging.getLogger("mcp.client.auth")
_sdk_log.propagate = False
_sdk_log.addHandler(logging.NullHandler())

#: How long `hermes mcp login` waits for the user to approve in the browser.
DEFAULT_LOGIN_TIMEOUT = 300.0
#: A token is refreshed when this share of its lifetime is left...
REFRESH_SHARE = 0.25
#: ...but never earlier than this many seconds before it expires.
REFRESH_MAX_AHEAD = 60.0
CALLBACK_PATH = "/callback"
CLIENT_NAME = "hermes-agent"
_HTTP_TIMEOUT = 30.0

#: Given the authorization URL, obtain the redirect's ``code``/``state``/``iss``.
Authorizer = Callable[[str], Awaitable[AuthorizationCodeResult]]


class OAuthLoginRequired(HermesError):
    """The server needs a login (or more scope) and nobody is there to give it."""


# --- the SDK's context, corrected ------------------------------------------------------


class _Context(OAuthContext):
    """The SDK's flow state, with RFC 8707 ``resource`` always sent."""

    def should_include_resource_param(self, protocol_version: str | None = None) -> bool:
        # The SDK sends `resource` only with protected resource metadata or a
        # 2025-06-18+ header on the request being authorised; after a restart a
        # refresh has neither. The MCP spec requires it on every request.
        return True

    def prepare_token_auth(
        self, data: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        info = self.client_info
        if info is not None and info.client_secret and info.token_endpoint_auth_method is None:
            # A pre-registered client given only an id and a secret: use what the server
            # supports (basic is RFC 6749's default).
            supported = (
                self.oauth_metadata.token_endpoint_auth_methods_supported
                if self.oauth_metadata is not None
                else None
            ) or ["client_secret_basic"]
            method = (
                "client_secret_basic"
                if "client_secret_basic" in supported
                else "client_secret_post"
            )
            info = info.model_copy(update={"token_endpoint_auth_method": method})
            self.client_info = info
        return super().prepare_token_auth(data, headers)


class _Storage:
    """The SDK's TokenStorage protocol over :class:`TokenStore`, for one provider."""

    def __init__(self, owner: _HermesAuthMixin) -> None:
        self.owner = owner

    async def get_tokens(self) -> OAuthToken | None:
        stored = self.owner._store.load_token()
        return stored.token if stored else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.owner._remember(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.owner._client_info()

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.owner._save_client(client_info)


class _HermesAuthMixin:
    """What hermes adds to each of the SDK's providers (see the module docstring).

    Mixed in before the SDK class, so ``super()`` is the SDK's flow.
    """

    context: OAuthContext
    _initialized: bool
    _store: TokenStore
    _settings: OAuthSettings
    _authorizer: Authorizer | None
    _server_name: str
    _obtained_at: float
    _token_issuer: str | None
    _refresh_guard: anyio.Lock
    #: How many refreshes this object sent (for tests and `hermes mcp list`).
    refreshes: int
    #: Set by :func:`login_async`: authorise even if the server does not ask for it yet.
    _force_login: bool = False

    def _setup(self, name: str, store: TokenStore, settings: OAuthSettings) -> None:
        old = self.context
        self.context = _Context(
            server_url=old.server_url,
            client_metadata=old.client_metadata,
            storage=_Storage(self),
            redirect_handler=old.redirect_handler,
            callback_handler=old.callback_handler,
            client_metadata_url=old.client_metadata_url,
        )
        self._server_name = name
        self._store = store
        self._settings = settings
        self._obtained_at = 0.0
        self._token_issuer = None
        self._refresh_guard = anyio.Lock()
        self.refreshes = 0

    # --- storage ---------------------------------------------------------------

    def _issuer_now(self) -> str:
        if self.context.oauth_metadata is not None:
            return str(self.context.oauth_metadata.issuer)
        return cast(OAuthClientProvider, self)._expected_issuer()

    def _remember(self, tokens: OAuthToken) -> None:
        """Store tokens just obtained (by the SDK's flow or a refresh here)."""
        issuer = self._issuer_now()
        stored = self._store.save_token(issuer, tokens)
        self._adopt(stored)

    def _adopt(self, stored: StoredToken) -> None:
        self.context.current_tokens = stored.token
        self.context.token_expiry_time = stored.expires_at
        self._obtained_at = stored.obtained_at
        self._token_issuer = stored.issuer

    def _fixed_client(self) -> OAuthClientInformationFull | None:
        fixed = getattr(self, "_fixed_client_info", None)
        if isinstance(fixed, OAuthClientInformationFull):
            return fixed
        settings = self._settings
        if settings.client_id:
            return OAuthClientInformationFull(
                client_id=settings.client_id,
                client_secret=settings.client_secret,
                token_endpoint_auth_method=settings.token_endpoint_auth_method,
                redirect_uris=self.context.client_metadata.redirect_uris,
            )
        return None

    def _client_info(self) -> OAuthClientInformationFull | None:
        fixed = self._fixed_client()
        if fixed is not None:
            return fixed
        found = self._store.load_client()
        if found is None:
            return None
        _issuer, info = found
        wanted = self.context.client_metadata.redirect_uris
        if (
            wanted
            and info.redirect_uris
            and [str(u) for u in info.redirect_uris] != [str(u) for u in wanted]
        ):
            # Registered for another callback address (its port was taken): register anew.
            return None
        return info

    def _save_client(self, info: OAuthClientInformationFull) -> None:
        cimd = self.context.client_metadata_url
        if self._fixed_client() is not None or (cimd is not None and info.client_id == cimd):
            return  # From config: nothing to remember.
        self._store.save_client(info.issuer or self._issuer_now(), info)

    async def _initialize(self) -> None:
        stored = self._store.load_token()
        if stored is not None:
            self._adopt(stored)  # With the absolute expiry (python-sdk #3250).
        else:
            self.context.current_tokens = None
            self.context.token_expiry_time = None
        self.context.client_info = self._client_info()
        self._initialized = True

    # --- refresh ---------------------------------------------------------------

    def needs_refresh(self, now: float | None = None) -> bool:
        """Whether the token is close enough to expiry to be refreshed now."""
        expiry = self.context.token_expiry_time
        if self.context.current_tokens is None or expiry is None:
            return False
        lifetime = max(expiry - self._obtained_at, 0.0) if self._obtained_at else REFRESH_MAX_AHEAD
        ahead = min(REFRESH_MAX_AHEAD, lifetime * REFRESH_SHARE)
        return (time.time() if now is None else now) >= expiry - ahead

    async def refresh(self, *, force: bool = False) -> bool:
        """Refresh the token if due (or ``force``); True when a usable new token is held.

        Serialised within the process by a lock and across processes by the
        token file's flock; a token another process obtained meanwhile is
        adopted instead of refreshing again.
        """
        async with self._refresh_guard:
            if not self._initialized:
                await self._initialize()
            held = self.context.current_tokens
            if held is None or (not force and not self.needs_refresh()):
                return False
            async with self._store.refresh_lock():
                stored = self._store.load_token(self._token_issuer)
                if stored is not None and stored.token.access_token != held.access_token:
                    self._adopt(stored)  # Another process refreshed while we waited.
                    return True
                if not held.refresh_token or self.context.client_info is None:
                    return False
                try:
                    found = await self._discover_for_refresh()
                except httpx2.HTTPError as exc:
                    log.warning(
                        "MCP server %s: cannot reach its authorization server to refresh: %s",
                        self._server_name,
                        type(exc).__name__,
                    )
                    return False
                if not found:
                    return False
                return await self._send_refresh()

    async def _discover_for_refresh(self) -> bool:
        """Find the token endpoint again after a restart; only the token's own issuer."""
        ctx = self.context
        if ctx.oauth_metadata is None:
            async with httpx2.AsyncClient(timeout=_HTTP_TIMEOUT) as client:
                prm = None
                for url in build_protected_resource_metadata_discovery_urls(None, ctx.server_url):
                    response = await client.send(create_oauth_metadata_request(url))
                    prm = await handle_protected_resource_response(response)
                    if prm is not None:
                        break
                if prm is not None and prm.authorization_servers:
                    ctx.protected_resource_metadata = prm
                    ctx.auth_server_url = str(prm.authorization_servers[0])
                for url in build_oauth_authorization_server_metadata_discovery_urls(
                    ctx.auth_server_url, ctx.server_url
                ):
                    response = await client.send(create_oauth_metadata_request(url))
                    ok, asm = await handle_auth_metadata_response(response)
                    if not ok:
                        break
                    if asm is not None:
                        ctx.oauth_metadata = asm
                        break
        issuer = str(ctx.oauth_metadata.issuer) if ctx.oauth_metadata is not None else None
        if (
            issuer is None
            or self._token_issuer is None
            or not issuers_match(issuer, self._token_issuer)
        ):
            # Never send a refresh token to an authorization server that did not issue it.
            log.warning(
                "MCP server %s: its authorization server (%s) is not the one that issued the "
                "stored token; not refreshing",
                self._server_name,
                issuer or "not found",
            )
            return False
        return True

    async def _send_refresh(self) -> bool:
        request = await cast(OAuthClientProvider, self)._refresh_token()
        held = self.context.current_tokens
        assert held is not None
        try:
            async with httpx2.AsyncClient(timeout=_HTTP_TIMEOUT) as client:
                response = await client.send(request)
                body = await response.aread()
        except httpx2.HTTPError as exc:
            log.warning(
                "MCP server %s: token refresh failed: %s", self._server_name, type(exc).__name__
            )
            return False
        self.refreshes += 1
        if response.status_code != 200:
            log.warning(
                "MCP server %s: the authorization server refused the refresh (HTTP %d)",
                self._server_name,
                response.status_code,
            )
            if 400 <= response.status_code < 500 and self._token_issuer is not None:
                # invalid_grant and friends: the refresh token is dead; forget it.
                self._store.drop_token(self._token_issuer)
                self.context.clear_tokens()
            return False
        try:
            fresh = OAuthToken.model_validate_json(body)
        except ValidationError:
            log.warning(
                "MCP server %s: the refresh answer is not a token response", self._server_name
            )
            return False
        if fresh.refresh_token is None:
            fresh.refresh_token = held.refresh_token  # Not rotated: the old one stays valid.
        if fresh.scope is None:
            fresh.scope = held.scope
        self._remember(fresh)
        return True

    # --- the flow --------------------------------------------------------------

    def _needs_person(self) -> bool:
        return self._settings.grant == "authorization_code" and self._authorizer is None

    async def _auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await self.refresh()
        refreshed_after_401 = False
        sdk_flow = cast(
            Callable[[httpx2.Request], AsyncGenerator[httpx2.Request, httpx2.Response]],
            super()._auth_flow,  # type: ignore[misc]
        )
        inner = sdk_flow(request)
        try:
            outgoing = await inner.__anext__()
            while True:
                response = yield outgoing
                if (
                    outgoing is request
                    and self._force_login
                    and self.context.current_tokens is None
                    and response.status_code < 400
                ):
                    # `hermes mcp login` for a server whose handshake is open and whose
                    # tools are not: log in now, as if the handshake had been refused.
                    await response.aread()
                    response = httpx2.Response(401, request=request)
                if outgoing is request:
                    status = response.status_code
                    step_up = (
                        status == 403
                        and extract_field_from_www_auth(response, "error") == "insufficient_scope"
                    )
                    if (
                        status == 401
                        and not refreshed_after_401
                        and self.context.current_tokens is not None
                        and self.context.current_tokens.refresh_token
                    ):
                        # Refresh before any re-login: the server may have revoked the
                        # access token early, or the clock may be off.
                        refreshed_after_401 = True
                        await inner.aclose()
                        await self.refresh(force=True)
                        inner = sdk_flow(request)
                        outgoing = await inner.__anext__()
                        continue
                    if (status == 401 or step_up) and self._needs_person():
                        await response.aread()
                        name = self._server_name
                        if step_up:
                            wanted = _printable(extract_scope_from_www_auth(response) or "")[:200]
                            raise OAuthLoginRequired(
                                f"MCP server {name} asks for more access (scope {wanted!r}): "
                                f"run `hermes mcp logout {name}` and `hermes mcp login {name}`"
                            )
                        raise OAuthLoginRequired(
                            f"MCP server {name} needs a login: run `hermes mcp login {name}`"
                        )
                outgoing = await inner.asend(response)
        except StopAsyncIteration:
            return
        finally:
            await inner.aclose()

    async def _perform_authorization_code_grant(self) -> tuple[str, str]:
        metadata = self.context.oauth_metadata
        if metadata is not None and "S256" not in (metadata.code_challenge_methods_supported or []):
            raise OAuthFlowError(
                f"the authorization server {metadata.issuer} does not advertise PKCE S256 "
                "(code_challenge_methods_supported); refusing to log in without it"
            )
        grant = cast(
            Callable[[], Awaitable[tuple[str, str]]],
            super()._perform_authorization_code_grant,  # type: ignore[misc]
        )
        return await grant()


class HermesOAuth(_HermesAuthMixin, OAuthClientProvider):
    """Authorization-code flow (PKCE S256) for one MCP server, with hermes' token store."""

    def __init__(
        self,
        server_name: str,
        url: str,
        store: TokenStore,
        settings: OAuthSettings,
        authorizer: Authorizer | None,
        redirect_uri: str,
    ) -> None:
        pending: dict[str, str] = {}

        async def on_redirect(authorization_url: str) -> None:
            pending["url"] = authorization_url

        async def on_callback() -> AuthorizationCodeResult:
            if authorizer is None:
                raise OAuthLoginRequired(
                    f"MCP server {server_name} needs a login: run `hermes mcp login {server_name}`"
                )
            return await authorizer(pending.pop("url"))

        metadata = OAuthClientMetadata(
            redirect_uris=[AnyUrl(redirect_uri)],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            client_name=CLIENT_NAME,
            scope=settings.scope,
        )
        super().__init__(
            url,
            metadata,
            _Storage(self),
            on_redirect,
            on_callback,
            client_metadata_url=settings.client_metadata_url,
        )
        self._authorizer = authorizer
        self._setup(server_name, store, settings)


class _ClientCredentials(_HermesAuthMixin, ClientCredentialsOAuthProvider):
    """client_credentials grant with a client secret (no user, no browser)."""


class _PrivateKeyJWT(_HermesAuthMixin, PrivateKeyJWTOAuthProvider):
    """client_credentials grant authenticated by a signed JWT (RFC 7523)."""


#: Who approves a login that starts in the middle of a session (see :func:`set_person`).
_person: Authorizer | None = None


def set_person(authorizer: Authorizer | None) -> None:
    """Let logins that a running connection needs (a 401, a step-up) ask ``authorizer``.

    Nothing in hermes sets it: the agent's connections report
    :class:`OAuthLoginRequired` and the user runs `hermes mcp login`. A front
    end that has a person at hand (and the conformance harness, which plays
    one) may register one for the whole process.
    """
    global _person
    _person = authorizer


def _redirect_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}{CALLBACK_PATH}"


def _root(home: Path | None) -> Path | None:
    return Path(home) if home is not None else None


def configured_settings(server_name: str, home: Path | None = None) -> OAuthSettings:
    """The ``oauth`` block of ``mcp_servers.NAME`` in config.yaml (defaults when absent).

    What :func:`auth_for` and :func:`login` use when no settings are given, so
    the connection manager and `hermes mcp login` need not know about them.
    """
    from hermes_agent import home as home_paths
    from hermes_agent.config.loader import read_user_config
    from hermes_agent.mcp.config import parse_server

    config, _text = read_user_config(home_paths.path(home_paths.CONFIG_FILE, _root(home)))
    raw = (config.get("mcp_servers") or {}).get(server_name)
    if not isinstance(raw, dict) or not raw.get("oauth"):
        return OAuthSettings()
    server, problems = parse_server(server_name, raw)
    if server is None:
        raise ConfigError([f"{key}: {problem}" for key, problem in problems])
    return settings_for(server)


def auth_for(
    server_name: str,
    url: str,
    home: Path | None = None,
    *,
    settings: OAuthSettings | None = None,
    authorizer: Authorizer | None = None,
    redirect_uri: str | None = None,
) -> httpx2.Auth:
    """The ``httpx2.Auth`` for MCP server ``server_name`` at ``url``.

    ``home`` is the HERMES_HOME to keep tokens in (default: the current one).
    Without ``authorizer`` (the agent's own connections) a server that needs a
    person raises :class:`OAuthLoginRequired` instead of starting a login;
    tokens are refreshed on their own. Pass it as
    ``httpx2.AsyncClient(auth=...)`` to the SDK's transport. Build one per
    process and server and keep it: it holds the token in memory.
    """
    return _build(
        server_name, url, home, settings=settings, authorizer=authorizer, redirect_uri=redirect_uri
    )


def _build(
    server_name: str,
    url: str,
    home: Path | None = None,
    *,
    settings: OAuthSettings | None = None,
    authorizer: Authorizer | None = None,
    redirect_uri: str | None = None,
) -> httpx2.Auth:
    settings = settings or configured_settings(server_name, home)
    authorizer = authorizer or _person
    store = TokenStore(server_name, _root(home))
    if settings.grant == "identity_assertion":
        return _identity_assertion(url, settings)
    if settings.grant == "client_credentials":
        provider: _HermesAuthMixin
        if settings.private_key:
            assert settings.client_id is not None
            jwt = SignedJWTParameters(
                issuer=settings.client_id,
                subject=settings.client_id,
                signing_key=settings.private_key,
                signing_algorithm=settings.signing_algorithm,
            )
            provider = _PrivateKeyJWT(
                url,
                _NullStorage(),
                settings.client_id,
                jwt.create_assertion_provider(),
                scope=settings.scope,
            )
        else:
            assert settings.client_id is not None and settings.client_secret is not None
            method = settings.token_endpoint_auth_method or "client_secret_basic"
            if method not in ("client_secret_basic", "client_secret_post"):
                raise ConfigError(
                    f"token_endpoint_auth_method {method!r} does not suit client_credentials"
                )
            provider = _ClientCredentials(
                url,
                _NullStorage(),
                settings.client_id,
                settings.client_secret,
                token_endpoint_auth_method=method,  # type: ignore[arg-type]
                scope=settings.scope,
            )
        provider._authorizer = None
        provider._setup(server_name, store, settings)
        return cast(httpx2.Auth, provider)
    if redirect_uri is None:
        redirect_uri = _registered_redirect(store, settings) or _redirect_uri(
            settings.callback_port or 0
        )
    return cast(
        httpx2.Auth, HermesOAuth(server_name, url, store, settings, authorizer, redirect_uri)
    )


def _identity_assertion(url: str, settings: OAuthSettings) -> httpx2.Auth:
    """SEP-990: exchange the user's ID token at the IdP for an ID-JAG, then the ID-JAG for a token.

    No user interaction and nothing stored: the ID token (from the enterprise
    login, usually through ``${VAR}``) is the credential, and a new access
    token is one exchange away.
    """
    from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

    assert settings.idp_token_endpoint and settings.id_token
    idp_endpoint, id_token = settings.idp_token_endpoint, settings.id_token

    async def fetch_id_jag(audience: str, resource: str) -> str:
        data = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": id_token,
            "subject_token_type": ID_TOKEN_TYPE,
            "requested_token_type": ID_JAG_TYPE,
            "audience": audience,
            "resource": resource,
        }
        if settings.idp_client_id:
            data["client_id"] = settings.idp_client_id
        if settings.idp_client_secret:
            data["client_secret"] = settings.idp_client_secret
        async with httpx2.AsyncClient(timeout=_HTTP_TIMEOUT) as client:
            response = await client.post(idp_endpoint, data=data)
        if response.status_code != 200:
            raise OAuthFlowError(
                f"the identity provider refused the token exchange (HTTP {response.status_code})"
            )
        issued = response.json().get("access_token")
        if not isinstance(issued, str) or not issued:
            raise OAuthFlowError("the identity provider's answer carries no ID-JAG")
        return issued

    assert settings.client_id and settings.client_secret and settings.issuer
    provider = IdentityAssertionOAuthProvider(
        url,
        _NullStorage(),
        settings.client_id,
        settings.client_secret,
        settings.issuer,
        fetch_id_jag,
        scope=settings.scope,
        token_endpoint_auth_method=(
            "client_secret_basic"
            if settings.token_endpoint_auth_method == "client_secret_basic"
            else "client_secret_post"
        ),
    )
    return provider


class _NullStorage:
    """Placeholder storage for the SDK constructors; :meth:`_HermesAuthMixin._setup` replaces it."""

    async def get_tokens(self) -> OAuthToken | None:
        return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        return None

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        return None


def _registered_redirect(store: TokenStore, settings: OAuthSettings) -> str | None:
    """The callback address the stored registration was made for, if any."""
    if settings.callback_port:
        return _redirect_uri(settings.callback_port)
    found = store.load_client()
    if found is None or not found[1].redirect_uris:
        return None
    return str(found[1].redirect_uris[0])


# --- status and logout ----------------------------------------------------------------


@dataclass(frozen=True)
class TokenStatus:
    """What `hermes mcp list` shows about a server's login (never a token)."""

    logged_in: bool
    issuer: str | None = None
    expires_at: float | None = None
    refreshable: bool = False

    def describe(self) -> str:
        if not self.logged_in:
            return "not logged in"
        if self.issuer is None:
            return "no login needed (tokens obtained on demand)"
        parts = [f"logged in at {self.issuer}"]
        if self.expires_at is not None:
            when = (
                datetime.fromtimestamp(self.expires_at)
                .astimezone()
                .strftime("%Y-%m-%d %H:%M:%S %Z")
            )
            expired = " (expired)" if self.expires_at <= time.time() else ""
            parts.append(f"token valid until {when}{expired}")
        parts.append("refreshable" if self.refreshable else "no refresh token")
        return ", ".join(parts)


def status(server_name: str, home: Path | None = None) -> TokenStatus:
    """Whether ``server_name`` can be connected without asking anyone."""
    stored = TokenStore(server_name, _root(home)).load_token()
    if stored is None:
        try:
            grant = configured_settings(server_name, home).grant
        except HermesError:
            grant = "authorization_code"
        # A client_credentials or identity_assertion server gets its token by itself.
        return TokenStatus(logged_in=grant != "authorization_code")
    usable = stored.expires_at is None or stored.expires_at > time.time()
    return TokenStatus(
        logged_in=usable or bool(stored.token.refresh_token),
        issuer=stored.issuer,
        expires_at=stored.expires_at,
        refreshable=bool(stored.token.refresh_token),
    )


def logout(server_name: str, home: Path | None = None) -> bool:
    """Forget ``server_name``'s tokens and client registration; True if there were any.

    Local only: few authorization servers offer revocation to public clients,
    and a token kept by the server expires on its own.
    """
    return TokenStore(server_name, _root(home)).clear()


# --- login: the browser, the callback listener, the paste fallback ---------------------


def has_browser() -> bool:
    """Whether a browser can be opened here: a desktop session, not SSH or a service."""
    if sys.platform == "darwin":
        return not os.environ.get("SSH_CONNECTION")
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def parse_redirect(text: str) -> dict[str, str]:
    """The query of a redirected URL (or a bare query string) pasted by the user."""
    text = text.strip()
    if "?" in text:
        text = text.split("?", 1)[1]
    text = text.split("#", 1)[0]
    pairs = urllib.parse.parse_qs(text, keep_blank_values=True)
    return {key: values[0] for key, values in pairs.items() if values}


class _CallbackListener:
    """A one-shot HTTP listener on 127.0.0.1 for the authorization redirect.

    Answers only ``GET /callback`` carrying the ``state`` of the login in
    progress; anything else gets 400/404 and the wait goes on, so a stray or
    hostile page that calls the port cannot end the login or feed it a code.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.expected_state: str | None = None
        self.result: asyncio.Future[dict[str, str]] | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self.result = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        except OSError:
            if self.port == 0:
                raise
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # asyncio.timeout, not wait_for (Python 3.11's drops a cancel that comes with
            # a line): closing the callback server must end this handler.
            async with asyncio.timeout(10):
                line = await reader.readline()
            while True:  # Skip the headers.
                async with asyncio.timeout(10):
                    header = await reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            target = parts[1] if len(parts) >= 2 and parts[0] == "GET" else ""
            path, _, query = target.partition("?")
            if path != CALLBACK_PATH:
                await self._answer(writer, 404, "Not found.")
                return
            params = parse_redirect("?" + query)
            if self.expected_state is None or not secrets.compare_digest(
                params.get("state", ""), self.expected_state
            ):
                await self._answer(writer, 400, "This is not the login hermes is waiting for.")
                return
            if params.get("error"):
                await self._answer(writer, 200, "The authorization was refused; see the terminal.")
            else:
                await self._answer(writer, 200, "hermes is logged in. You can close this tab.")
            if self.result is not None and not self.result.done():
                self.result.set_result(params)
        except Exception:  # A broken or hostile caller of the port never ends the login.
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status_code: int, text: str) -> None:
        body = f"<!doctype html><title>hermes</title><p>{text}</p>\n".encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status_code]
        head = (
            f"HTTP/1.1 {status_code} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()


@dataclass
class TerminalAuthorizer:
    """Asks the person at the terminal: browser if there is one, else the printed URL.

    Waits for the redirect on the 127.0.0.1 listener, or for the user to paste
    the address the browser was sent to (a browser on another machine cannot
    reach this one's 127.0.0.1), until ``deadline`` (monotonic).
    """

    server_name: str
    listener: _CallbackListener
    deadline: float
    out: IO[str]
    paste: IO[str] | None = None
    open_browser: bool = False
    shown: list[str] = field(default_factory=list)

    async def __call__(self, authorization_url: str) -> AuthorizationCodeResult:
        state = parse_redirect(authorization_url).get("state")
        if not state:
            raise OAuthFlowError("the authorization URL carries no state")
        self.listener.expected_state = state
        self.shown.append(authorization_url)
        # From the server's metadata: printed without control characters.
        authorization_url = _printable(authorization_url).replace("\n", "?")
        left = max(int(self.deadline - time.monotonic()), 0)
        print(
            f"To log hermes in to MCP server {self.server_name}, "
            "open this address in a browser:\n\n"
            f"  {authorization_url}\n\n"
            f"Waiting up to {left}s for the browser to come back to "
            f"http://127.0.0.1:{self.listener.port}{CALLBACK_PATH}.",
            file=self.out,
        )
        if self.paste is not None:
            print(
                "If the browser runs on another machine, it will show an error page after you "
                "approve: copy that page's address from the address bar and paste it here.",
                file=self.out,
            )
        self.out.flush()
        if self.open_browser:
            import webbrowser

            await asyncio.to_thread(webbrowser.open, authorization_url)
        params = await self._wait(state)
        if params.get("error"):
            detail = params.get("error_description") or params["error"]
            raise OAuthFlowError(f"the authorization server refused: {detail}")
        if not params.get("code"):
            raise OAuthFlowError("the redirect carries no authorization code")
        return AuthorizationCodeResult(
            code=params["code"], state=params.get("state"), iss=params.get("iss")
        )

    async def _wait(self, state: str) -> dict[str, str]:
        assert self.listener.result is not None
        waits: list[asyncio.Future[dict[str, str]]] = [self.listener.result]
        pasted: asyncio.Future[dict[str, str]] | None = None
        if self.paste is not None:
            pasted = asyncio.get_running_loop().create_future()
            _read_pastes(self.paste, state, pasted, self.out)
            waits.append(pasted)
        timeout = self.deadline - time.monotonic()
        try:
            done, _ = await asyncio.wait(
                waits, timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if pasted is not None and not pasted.done():
                pasted.cancel()
        if not done:
            raise OAuthFlowError(
                "no authorization arrived within the login deadline "
                f"for MCP server {self.server_name}"
            )
        return next(iter(done)).result()


def _read_pastes(
    stream: IO[str], state: str, result: asyncio.Future[dict[str, str]], out: IO[str]
) -> None:
    """Read pasted lines in a thread until one is the redirect of this login."""
    loop = asyncio.get_running_loop()

    def settle(params: dict[str, str]) -> None:
        if not result.done():
            result.set_result(params)

    def run() -> None:
        while not result.done():
            try:
                line = stream.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            if not line.strip():
                continue
            params = parse_redirect(line)
            if not secrets.compare_digest(params.get("state", ""), state):
                print(
                    "That is not the address of this login (its state differs); try again.",
                    file=out,
                )
                out.flush()
                continue
            loop.call_soon_threadsafe(settle, params)
            return

    threading.Thread(target=run, name="oauth-paste", daemon=True).start()


@dataclass(frozen=True)
class LoginResult:
    """What :func:`login` did: ``how`` is ``"valid"``, ``"refreshed"`` or ``"authorized"``."""

    how: str
    status: TokenStatus


_MCP_PROBE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": CLIENT_NAME, "version": "1"},
    },
}


async def login_async(
    server_name: str,
    url: str,
    home: Path | None = None,
    *,
    settings: OAuthSettings | None = None,
    timeout: float = DEFAULT_LOGIN_TIMEOUT,
    open_browser: bool | None = None,
    out: IO[str] | None = None,
    paste: IO[str] | None = None,
    authorizer: Authorizer | None = None,
) -> LoginResult:
    """Make sure hermes holds a working token for ``server_name``; ask the user if needed.

    A valid token is kept, an expiring or refused one is refreshed first; only
    when that fails is the user asked: the authorization URL is opened in a
    browser (``open_browser``, default: when there is a desktop) and printed
    on ``out``, and the redirect is awaited on a 127.0.0.1 listener or pasted
    on ``paste`` (default: stdin when it is a terminal), for at most
    ``timeout`` seconds. Raises :class:`HermesError` with a clear reason.
    """
    settings = settings or configured_settings(server_name, home)
    out = out or sys.stderr
    if paste is None and sys.stdin is not None and sys.stdin.isatty():
        paste = sys.stdin
    browser = has_browser() if open_browser is None else open_browser
    store = TokenStore(server_name, _root(home))
    before = store.load_token()
    deadline = time.monotonic() + timeout
    listener = _CallbackListener(
        settings.callback_port or _port_of(_registered_redirect(store, settings))
    )
    await listener.start()
    try:
        person = authorizer or TerminalAuthorizer(
            server_name, listener, deadline, out, paste=paste, open_browser=browser
        )
        asked: list[str] = []

        async def asker(authorization_url: str) -> AuthorizationCodeResult:
            asked.append(authorization_url)
            return await person(authorization_url)

        auth = _build(
            server_name,
            url,
            home,
            settings=settings,
            authorizer=asker,
            redirect_uri=_redirect_uri(listener.port),
        )
        if isinstance(auth, HermesOAuth):
            auth._force_login = True
        try:
            with anyio.fail_after(max(deadline - time.monotonic(), 0.001)):
                code = await _probe(url, auth)
        except TimeoutError:
            raise HermesError(
                f"login to MCP server {server_name} timed out after {timeout:g}s"
            ) from None
        except HermesError:
            raise
        except Exception as exc:  # The server's words, shown safely: no traceback, no secret.
            raise HermesError(
                f"login to MCP server {server_name} failed: {_describe(exc)}"
            ) from None
        after = store.load_token()
        if after is None and settings.grant == "authorization_code":
            raise HermesError(
                f"MCP server {server_name} at {url} answered HTTP {code} and no token was issued"
            )
        if code in (401, 403):
            raise HermesError(f"MCP server {server_name} still refuses the token (HTTP {code})")
        if after is None:
            how = "authorized"  # identity_assertion: nothing stored, a token on demand
        elif before is not None and after.token.access_token == before.token.access_token:
            how = "valid"
        elif asked:
            how = "authorized"
        else:
            how = "refreshed"
        return LoginResult(how=how, status=status(server_name, home))
    finally:
        await listener.close()


def _printable(text: str) -> str:
    """``text`` without control characters: a hostile server's escape sequences stay inert."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)


def _describe(exc: BaseException) -> str:
    """One line about a failed login, from inside an exception group if need be."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, HermesError):
        text = str(exc)
    elif isinstance(exc, httpx2.HTTPError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    # A server's error page (HTML, a stack trace) is not a reason: keep the first line and
    # cut where markup starts.
    lowered = text.lower()
    cut = min((i for i in (lowered.find("<html"), lowered.find("<!doctype")) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut].rstrip(" :") + " (the server answered with a web page)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return _printable(redact.redact(first))[:500]


def _port_of(redirect: str | None) -> int:
    if not redirect:
        return 0
    port = urllib.parse.urlsplit(redirect).port
    return port or 0


async def _probe(url: str, auth: httpx2.Auth) -> int:
    """An MCP ``initialize`` through ``auth``: it triggers the login when one is needed."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(auth=auth, timeout=_HTTP_TIMEOUT) as client:
        async with client.stream("POST", url, json=_MCP_PROBE, headers=headers) as response:
            code = response.status_code
            session = response.headers.get("mcp-session-id")
        if session:
            with contextlib.suppress(httpx2.HTTPError):
                await client.delete(url, headers={"mcp-session-id": session})
    return code


def login(server_name: str, url: str, home: Path | None = None, **kwargs: Any) -> LoginResult:
    """:func:`login_async` for synchronous callers (the CLI)."""
    return asyncio.run(login_async(server_name, url, home, **kwargs))
