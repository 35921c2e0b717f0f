"""Where MCP OAuth tokens and client registrations live, and how they are written.

``mcp-tokens/NAME.json`` holds the tokens of server ``NAME`` and
``mcp-tokens/NAME.client.json`` the client registration hermes obtained from
its authorization server (RFC 7591), both 0600 in a 0700 directory, written
atomically under the HERMES_HOME lock. Both are keyed by the authorization
server's issuer: a server that moves to another authorization server never
gets the old one's credentials, and moving back finds them again.

Why the files hold so little: :mod:`hermes_agent.redact` treats *every* string
in ``mcp-tokens/`` as a secret and masks it wherever it appears. Storing a
client name, grant types or endpoint URLs there would mask those words in
every log line and tool result, so only credentials, the granted scope and
numbers are kept; the endpoints are discovered again when a process needs them.
The issuer is a JSON key, never a value, for the same reason.

Expiry is stored as an absolute time (``expires_at``, seconds since the epoch)
next to when the token was obtained: the SDK's own storage keeps only
``expires_in`` and so treats a token restored after a restart as fresh
(python-sdk #3250).

A refresh is serialised across processes by ``flock`` on ``NAME.lock``: the
gateway, a cron job and a `hermes chat` that find the same token about to
expire do one refresh between them, and the others read its result. With a
rotating refresh token, two refreshes at once would make the second one fail
(the first consumed the token) and log the user out.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from hermes_agent import home
from hermes_agent.errors import HermesError
from hermes_agent.fsutil import write_secret
from hermes_agent.home_lock import home_lock

log = logging.getLogger(__name__)

#: How long a process waits for another one's refresh before giving up.
REFRESH_LOCK_TIMEOUT = 60.0
#: The longest token lifetime believed (ten years).
MAX_LIFETIME = 10 * 365 * 86400

_TOKEN_FIELDS = ("access_token", "refresh_token", "scope")
_CLIENT_FIELDS = (
    "client_id",
    "client_secret",
    "client_id_issued_at",
    "client_secret_expires_at",
    "token_endpoint_auth_method",
    "redirect_uris",
)


@dataclass
class StoredToken:
    """A token as stored: the SDK's model plus when it was obtained and when it expires."""

    issuer: str
    token: OAuthToken
    obtained_at: float
    #: Absolute expiry (epoch seconds), or None when the server gave no ``expires_in``.
    expires_at: float | None

    def lifetime(self) -> float | None:
        if self.expires_at is None:
            return None
        return max(self.expires_at - self.obtained_at, 0.0)


class TokenStore:
    """The token and client files of one MCP server, in one HERMES_HOME."""

    def __init__(self, server_name: str, root: Path | None = None) -> None:
        self.name = server_name
        self.root = root
        self.token_path = home.mcp_token_path(server_name, root)
        self.client_path = home.mcp_client_path(server_name, root)
        self.lock_path = home.mcp_refresh_lock_path(server_name, root)

    # --- reading -----------------------------------------------------------------

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise HermesError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("%s is not valid JSON; ignoring it (log in again to replace it)", path)
            return {}
        issuers = data.get("issuers") if isinstance(data, dict) else None
        return issuers if isinstance(issuers, dict) else {}

    @staticmethod
    def _current(issuers: dict[str, Any], issuer: str | None) -> tuple[str, dict[str, Any]] | None:
        if issuer is not None:
            record = issuers.get(issuer)
            return (issuer, record) if isinstance(record, dict) else None
        for key, record in issuers.items():
            if isinstance(record, dict) and record.get("current") is True:
                return key, record
        return None

    def load_token(self, issuer: str | None = None) -> StoredToken | None:
        """The token of ``issuer``, or of the issuer used last when ``issuer`` is None."""
        found = self._current(self._read(self.token_path), issuer)
        if found is None:
            return None
        key, record = found
        try:
            token = OAuthToken.model_validate(
                {k: record[k] for k in (*_TOKEN_FIELDS, "expires_in") if record.get(k) is not None}
            )
        except ValueError:
            log.warning("the stored token of MCP server %s is malformed; ignoring it", self.name)
            return None
        expires_at = record.get("expires_at")
        obtained_at = record.get("obtained_at")
        return StoredToken(
            issuer=key,
            token=token,
            obtained_at=float(obtained_at) if isinstance(obtained_at, (int, float)) else 0.0,
            expires_at=float(expires_at) if isinstance(expires_at, (int, float)) else None,
        )

    def load_client(
        self, issuer: str | None = None
    ) -> tuple[str, OAuthClientInformationFull] | None:
        """The dynamic registration for ``issuer`` (or the one used last)."""
        found = self._current(self._read(self.client_path), issuer)
        if found is None:
            return None
        key, record = found
        try:
            info = OAuthClientInformationFull.model_validate(
                {k: record[k] for k in _CLIENT_FIELDS if record.get(k) is not None}
            )
        except ValueError:
            log.warning("the stored client of MCP server %s is malformed; ignoring it", self.name)
            return None
        info.issuer = key
        return key, info

    # --- writing -----------------------------------------------------------------

    def _update(self, path: Path, issuer: str, record: dict[str, Any] | None) -> None:
        """Read-modify-write ``path`` under the HERMES_HOME lock: ``issuer`` becomes current."""
        self._ensure_dir()
        with home_lock(f"mcp oauth {self.name}", root=self.root):
            issuers = self._read(path)
            for other in issuers.values():
                if isinstance(other, dict):
                    other.pop("current", None)
            if record is None:
                issuers.pop(issuer, None)
            else:
                issuers[issuer] = {**record, "current": True}
            if issuers:
                write_secret(path, json.dumps({"issuers": issuers}, indent=2) + "\n")
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def save_token(
        self, issuer: str, token: OAuthToken, *, now: float | None = None
    ) -> StoredToken:
        """Store ``token`` for ``issuer`` with its absolute expiry; returns what was stored."""
        obtained = time.time() if now is None else now
        expires_at = None
        if token.expires_in is not None:
            # A server's number, bounded: a negative or absurd value must not break the store.
            expires_at = obtained + min(max(int(token.expires_in), 0), MAX_LIFETIME)
        record: dict[str, Any] = {k: getattr(token, k) for k in _TOKEN_FIELDS if getattr(token, k)}
        record.update(expires_in=token.expires_in, expires_at=expires_at, obtained_at=obtained)
        self._update(self.token_path, issuer, record)
        return StoredToken(issuer=issuer, token=token, obtained_at=obtained, expires_at=expires_at)

    def drop_token(self, issuer: str) -> None:
        """Forget ``issuer``'s token (refused by the server: it cannot be used again)."""
        self._update(self.token_path, issuer, None)

    def save_client(self, issuer: str, info: OAuthClientInformationFull) -> None:
        dumped = info.model_dump(mode="json", exclude_none=True)
        self._update(
            self.client_path, issuer, {k: dumped[k] for k in _CLIENT_FIELDS if k in dumped}
        )

    def drop_client(self, issuer: str) -> None:
        self._update(self.client_path, issuer, None)

    def clear(self) -> bool:
        """Remove every token and registration of this server; True if something was there."""
        removed = False
        with home_lock(f"mcp logout {self.name}", root=self.root):
            for path in (self.token_path, self.client_path, self.lock_path):
                try:
                    path.unlink()
                    removed = removed or path != self.lock_path
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise HermesError(f"cannot remove {path}: {exc.strerror or exc}") from None
        return removed

    def _ensure_dir(self) -> None:
        directory = home.ensure_dir(self.token_path.parent)
        try:
            if stat.S_IMODE(directory.stat().st_mode) & 0o077:
                directory.chmod(home.DIR_MODE)  # Tokens: nobody but the owner lists them.
        except OSError as exc:
            raise HermesError(f"cannot secure {directory}: {exc.strerror or exc}") from None

    # --- serialising refreshes ---------------------------------------------------

    @contextlib.asynccontextmanager
    async def refresh_lock(self, timeout: float = REFRESH_LOCK_TIMEOUT) -> AsyncIterator[None]:
        """Hold ``NAME.lock`` (flock) while refreshing; other processes wait for it.

        Not the HERMES_HOME lock: a refresh is a network round trip, and that lock
        is for milliseconds of file I/O (and may not be held across an ``await``).
        The wait polls without blocking the event loop.
        """
        self._ensure_dir()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise HermesError(f"cannot open {self.lock_path}: {exc.strerror or exc}") from None
        try:
            deadline = time.monotonic() + timeout
            pause = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise HermesError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise HermesError(
                        f"another process has been refreshing the token of MCP server "
                        f"{self.name} for more than {timeout:g}s ({self.lock_path})"
                    )
                await anyio.sleep(pause)
                pause = min(pause * 2, 0.1)
            yield
        finally:
            os.close(fd)  # Releases the flock.
