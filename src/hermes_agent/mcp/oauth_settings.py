"""``mcp_servers.NAME.oauth``: how hermes identifies itself to a server's authorization server.

Kept apart from :mod:`hermes_agent.mcp.oauth` so that `hermes config check`
can validate the block without importing the ``mcp`` SDK.

All keys are optional: by default hermes registers itself dynamically
(RFC 7591) and logs in with the authorization code flow. In the order the
MCP specification gives:

- ``client_id`` (and ``client_secret``): a client registered beforehand with
  the server's operator; used first.
- ``client_metadata_url``: an https URL where hermes' Client ID Metadata
  Document is published; used when the authorization server supports it.
- otherwise dynamic registration, remembered in ``mcp-tokens/NAME.client.json``.

``scope`` asks for particular scopes; ``callback_port`` fixes the port of
the 127.0.0.1 redirect (a pre-registered client's redirect URI needs one).
``grant: client_credentials`` (with ``client_secret``, or ``private_key`` for
``private_key_jwt``) and ``grant: identity_assertion`` (SEP-990: an ID token
from the enterprise IdP, exchanged for an ID-JAG at ``idp_token_endpoint``,
then for an access token at ``issuer``) need no person. Secret values belong
in ``HERMES_HOME/.env`` and are written ``${VAR}``; they are resolved when
hermes connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hermes_agent.errors import ConfigError

GRANTS = ("authorization_code", "client_credentials", "identity_assertion")
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
_IDENTITY_ASSERTION_NEEDS = (
    "client_id",
    "client_secret",
    "issuer",
    "idp_token_endpoint",
    "id_token",
)


@dataclass(frozen=True)
class OAuthSettings:
    """The checked ``oauth`` block of one server (``${VAR}`` resolved)."""

    client_id: str | None = None
    client_secret: str | None = None
    client_metadata_url: str | None = None
    scope: str | None = None
    callback_port: int | None = None
    grant: str = "authorization_code"
    private_key: str | None = None
    signing_algorithm: str = "RS256"
    token_endpoint_auth_method: str | None = None
    issuer: str | None = None
    idp_token_endpoint: str | None = None
    idp_client_id: str | None = None
    idp_client_secret: str | None = None
    id_token: str | None = None

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "oauth") -> OAuthSettings:
        """Parse a config mapping; every problem is reported in one :class:`ConfigError`."""
        found = problems(raw, where)
        if found:
            raise ConfigError([f"{key}: {problem}" for key, problem in found])
        if not raw:
            return cls()
        return cls(**{k: v for k, v in raw.items() if v is not None})


KEYS = tuple(OAuthSettings.__dataclass_fields__)


def problems(raw: Any, where: str = "oauth") -> list[tuple[str, str]]:
    """What is wrong with an ``oauth`` block, as ``(dotted key, problem)`` pairs."""
    if raw is None or raw == {}:
        return []
    if not isinstance(raw, Mapping):
        return [(where, "must be a mapping (client_id, client_secret, scope, grant...)")]
    found: list[tuple[str, str]] = []
    for key in sorted(set(raw) - set(KEYS), key=str):
        found.append((f"{where}.{key}", f"unknown key (known: {', '.join(KEYS)})"))
    for key, value in raw.items():
        if key not in KEYS or value is None:
            continue
        if key == "callback_port":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                found.append((f"{where}.{key}", "must be a port number (1-65535)"))
        elif not isinstance(value, str) or not value:
            found.append((f"{where}.{key}", "must be a non-empty string"))
    if found:
        return found
    grant = raw.get("grant") or "authorization_code"
    if grant not in GRANTS:
        found.append((f"{where}.grant", f"must be one of {', '.join(GRANTS)}"))
    method = raw.get("token_endpoint_auth_method")
    if method is not None and method not in AUTH_METHODS:
        found.append(
            (f"{where}.token_endpoint_auth_method", f"must be one of {', '.join(AUTH_METHODS)}")
        )
    if grant == "identity_assertion":
        missing = [key for key in _IDENTITY_ASSERTION_NEEDS if not raw.get(key)]
        if missing:
            found.append((where, f"grant identity_assertion needs {', '.join(missing)}"))
    if grant == "client_credentials":
        if not raw.get("client_id"):
            found.append((where, "grant client_credentials needs client_id"))
        if not (raw.get("client_secret") or raw.get("private_key")):
            found.append((where, "grant client_credentials needs client_secret or private_key"))
    cimd = raw.get("client_metadata_url")
    if cimd and "${" not in cimd and not cimd.startswith("https://"):
        found.append((f"{where}.client_metadata_url", "must be an https:// URL"))
    if raw.get("client_secret") and not raw.get("client_id"):
        found.append((where, "client_secret needs the client_id it belongs to"))
    return found


def settings_for(server: Any, environ: Mapping[str, str] | None = None) -> OAuthSettings:
    """The settings of configured server ``server`` (a ``ServerConfig``), ``${VAR}`` resolved.

    Raises :class:`ConfigError` naming an unset variable and the server.
    """
    from hermes_agent.mcp import config as mcp_config

    raw = dict(getattr(server, "oauth", None) or {})
    if not raw:
        return OAuthSettings()
    env = mcp_config.variables() if environ is None else environ
    resolved = {
        key: mcp_config.resolve_vars(value, server.name, f"oauth.{key}", env)
        if isinstance(value, str)
        else value
        for key, value in raw.items()
    }
    return OAuthSettings.from_mapping(resolved, f"mcp_servers.{server.name}.oauth")
