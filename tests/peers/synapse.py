"""A real Matrix homeserver (Synapse) on 127.0.0.1, and a plain-HTTP Matrix user to drive it.

Synapse is installed from PyPI into its own virtualenv by tests/peers/install.sh
(``tests/peers/.cache/synapse-venv``, version pinned there and in
:data:`SYNAPSE_VERSION`). :class:`Synapse` writes a configuration of its own
into a directory (no ``--generate-config``: that costs three seconds and
picks port 8008): one HTTP listener on 127.0.0.1 at a free port, SQLite, no
federation keys (``trusted_key_servers: []``), no open registration but a
registration shared secret, and rate limits high enough that tests never hit
them by accident. It starts ``python -m synapse.app.homeserver -c FILE`` in
the foreground and waits for ``/_matrix/client/versions`` to answer::

    with Synapse(tmp_path) as hs:
        hs.register("admin", "secret", admin=True)   # register_new_matrix_user
        alice = hs.login("admin", "secret")          # a MatrixUser
        alice.create_user("bob", "pw")               # Synapse's admin API (fast)

:meth:`Synapse.stop` and :meth:`Synapse.start` again keep the database and
the port, so a test can take the homeserver away and bring it back.

:class:`MatrixUser` speaks the client-server API over HTTP (httpx) the way a
person's client would: create rooms, invite, send text (also in threads),
read a room's messages and watch ``/sync`` for typing notifications.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .daemons import Daemon, free_port, port_open, stop_process

__all__ = [
    "SYNAPSE_VENV",
    "SYNAPSE_VERSION",
    "MatrixError",
    "MatrixUser",
    "Synapse",
    "SynapseError",
]

#: Keep in step with the Synapse section of tests/peers/install.sh.
SYNAPSE_VERSION = "1.163.2"
SYNAPSE_VENV = Path(__file__).resolve().parent / ".cache" / "synapse-venv"
SERVER_NAME = "localhost"
START_TIMEOUT = 60.0

#: Limits no test reaches by accident (a test that wants one sets it per user).
_HIGH = {"per_second": 10000, "burst_count": 10000}


class SynapseError(RuntimeError):
    """The homeserver could not be installed, started or stopped; says why."""


class MatrixError(RuntimeError):
    """A client-server API request failed: ``status``, ``errcode`` and the server's words."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.errcode = body.get("errcode", "") if isinstance(body, dict) else ""
        super().__init__(f"HTTP {status}: {body}")


class Synapse(Daemon):
    """One Synapse process with its data in ``directory``."""

    def __init__(self, directory: Path, venv: Path = SYNAPSE_VENV) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = venv / "bin" / "python"
        self.register_script = venv / "bin" / "register_new_matrix_user"
        self.config = self.dir / "homeserver.yaml"
        self.log = self.dir / "homeserver.log"
        self.server_name = SERVER_NAME
        self.port = free_port()
        self.shared_secret = secrets.token_urlsafe(24)
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def user_id(self, name: str) -> str:
        return f"@{name}:{self.server_name}"

    # --- lifetime -------------------------------------------------------------------

    def _write_config(self) -> None:
        key = self.dir / f"{SERVER_NAME}.signing.key"
        if not key.exists():
            # The signing key format: "ed25519 <key id> <unpadded base64 of a 32-byte seed>".
            seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
            key.write_text(f"ed25519 a_test {seed}\n")
        log_config = self.dir / "log.config"
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {
                        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
                    },
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "formatter": "plain",
                            "filename": str(self.log),
                        }
                    },
                    "root": {"level": "INFO", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        config = {
            "server_name": SERVER_NAME,
            "pid_file": str(self.dir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.dir / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(self.dir / "media_store"),
            "signing_key_path": str(key),
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": "test-macaroon-" + self.shared_secret,
            "form_secret": "test-form-" + self.shared_secret,
            "report_stats": False,
            # The fewest bcrypt rounds Synapse accepts: every login and account hashes.
            "bcrypt_rounds": 4,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "rc_message": _HIGH,
            "rc_registration": _HIGH,
            "rc_login": {"address": _HIGH, "account": _HIGH, "failed_attempts": _HIGH},
            "rc_joins": {"local": _HIGH, "remote": _HIGH},
            "rc_invites": {"per_room": _HIGH, "per_user": _HIGH, "per_issuer": _HIGH},
            "rc_room_creation": _HIGH,
            "rc_admin_redaction": _HIGH,
        }
        # JSON is YAML: no yaml dependency for the peer.
        self.config.write_text(json.dumps(config, indent=1))

    def start(self) -> Synapse:
        if not self.python.exists():
            raise SynapseError(
                f"Synapse is not installed at {self.python.parent.parent}; "
                "run tests/peers/install.sh"
            )
        if self._proc is not None and self._proc.poll() is None:
            return self
        deadline = time.monotonic() + 10
        while port_open(self.port):  # A previous run of ours is still going away.
            if time.monotonic() > deadline:
                raise SynapseError(f"port {self.port} is still in use")
            time.sleep(0.05)
        self._write_config()
        self._out = (self.dir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config)],
            cwd=self.dir,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SynapseError(f"Synapse exited with {self._proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/_matrix/client/versions", timeout=1).is_success:
                    return
            time.sleep(0.05)
        self.stop()
        raise SynapseError(f"Synapse did not answer within {START_TIMEOUT:.0f} s:\n{self.output()}")

    def output(self) -> str:
        parts = []
        for path in (self.dir / "stdout.log", self.log):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, wait (SIGKILL after 15 s) and wait for the port to close."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout=15)
        if self._out is not None:
            self._out.close()
            self._out = None
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- users ----------------------------------------------------------------------

    def register(self, name: str, password: str, *, admin: bool = False) -> str:
        """Register a user with Synapse's own ``register_new_matrix_user`` (shared secret)."""
        result = subprocess.run(
            [
                str(self.register_script),
                "-c",
                str(self.config),
                "-u",
                name,
                "-p",
                password,
                "--admin" if admin else "--no-admin",
                self.base_url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise SynapseError(f"register_new_matrix_user {name} failed:\n{result.stderr}")
        return self.user_id(name)

    def login(self, name: str, password: str) -> MatrixUser:
        """Log in with a password and return that user's client."""
        answer = httpx.post(
            f"{self.base_url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": name},
                "password": password,
            },
            timeout=30,
        )
        if not answer.is_success:
            raise MatrixError(answer.status_code, answer.json())
        body = answer.json()
        return MatrixUser(self, body["user_id"], body["access_token"], body["device_id"])


class MatrixUser:
    """A person's Matrix client, in plain HTTP: what the tests do as the human."""

    _txn = itertools.count(1)

    def __init__(self, server: Synapse, user_id: str, access_token: str, device_id: str) -> None:
        self.server = server
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self._since: str | None = None

    def request(self, method: str, path: str, *, timeout: float = 30, **kwargs: Any) -> Any:
        answer = httpx.request(
            method,
            f"{self.server.base_url}{path}",
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout=timeout,
            **kwargs,
        )
        body = answer.json() if answer.content else {}
        if not answer.is_success:
            raise MatrixError(answer.status_code, body)
        return body

    # --- the admin API (the first user is an admin) -------------------------------------

    def create_user(self, name: str, password: str) -> str:
        """Create an account through Synapse's admin API (``PUT /_synapse/admin/v2/users``)."""
        user_id = self.server.user_id(name)
        self.request(
            "PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", json={"password": password}
        )
        return user_id

    def override_ratelimit(self, user_id: str, per_second: int, burst_count: int) -> None:
        """Give ``user_id`` its own message rate limit (Synapse admin API)."""
        self.request(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit",
            json={"messages_per_second": per_second, "burst_count": burst_count},
        )

    # --- rooms ----------------------------------------------------------------------

    def create_room(
        self, *, invite: tuple[str, ...] = (), encrypted: bool = False, name: str = ""
    ) -> str:
        body: dict[str, Any] = {"preset": "private_chat", "invite": list(invite)}
        if name:
            body["name"] = name
        if encrypted:
            body["initial_state"] = [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        room_id: str = self.request("POST", "/_matrix/client/v3/createRoom", json=body)["room_id"]
        return room_id

    def invite(self, room_id: str, user_id: str) -> None:
        self.request(
            "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite", json={"user_id": user_id}
        )

    def join(self, room_id: str) -> None:
        self.request("POST", f"/_matrix/client/v3/join/{quote(room_id)}", json={})

    def joined_members(self, room_id: str) -> list[str]:
        body = self.request("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members")
        return sorted(body.get("joined", {}))

    def membership(self, room_id: str, user_id: str) -> str:
        """The membership of ``user_id`` in the room (``invite``, ``join``, ``leave``...)."""
        try:
            body = self.request(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.member/{quote(user_id)}",
            )
        except MatrixError as exc:
            if exc.status == 404:
                return ""
            raise
        membership: str = body.get("membership", "")
        return membership

    def set_state(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/",
            json=content,
        )

    def state(self, room_id: str, event_type: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/"
        )
        return body

    # --- messages -------------------------------------------------------------------

    def send(
        self, room_id: str, text: str, *, thread: str | None = None, msgtype: str = "m.text"
    ) -> str:
        """Send a text message (in the thread rooted at ``thread``); returns its event id."""
        content: dict[str, Any] = {"msgtype": msgtype, "body": text}
        if thread is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": thread},
            }
        return self.send_event(room_id, "m.room.message", content)

    def send_image(
        self, room_id: str, data: bytes, *, filename: str, mimetype: str, caption: str = ""
    ) -> str:
        """Upload ``data`` to the media repository and send it as ``m.image`` (with a
        caption in ``body`` when given, as clients do since Matrix 1.10)."""
        uploaded = httpx.post(
            f"{self.server.base_url}/_matrix/media/v3/upload",
            params={"filename": filename},
            content=data,
            headers={"Authorization": f"Bearer {self.access_token}", "Content-Type": mimetype},
            timeout=30,
        ).json()
        content: dict[str, Any] = {
            "msgtype": "m.image",
            "body": caption or filename,
            "url": uploaded["content_uri"],
            "info": {"mimetype": mimetype, "size": len(data)},
        }
        if caption:
            content["filename"] = filename
        return self.send_event(room_id, "m.room.message", content)

    def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        txn = f"t{os.getpid()}-{time.monotonic_ns()}-{next(self._txn)}"
        body = self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{quote(event_type)}/{txn}",
            json=content,
        )
        event_id: str = body["event_id"]
        return event_id

    def messages(self, room_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The room's ``m.room.message`` events (and undecryptable ones), oldest first."""
        body = self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
            params={"dir": "b", "limit": limit},
        )
        events = [e for e in body.get("chunk", []) if e.get("type") == "m.room.message"]
        return list(reversed(events))

    def messages_from(self, room_id: str, sender: str) -> list[dict[str, Any]]:
        return [e for e in self.messages(room_id) if e.get("sender") == sender]

    def wait_for_messages(
        self,
        room_id: str,
        sender: str,
        count: int = 1,
        timeout: float = 30,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
    ) -> list[dict[str, Any]]:
        """Poll until ``sender`` has at least ``count`` matching messages in the room."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.messages_from(room_id, sender) if where(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    # --- sync -----------------------------------------------------------------------

    def sync(self, timeout_ms: int = 0) -> dict[str, Any]:
        """One ``/sync`` from where the last one ended (the first is a full one)."""
        params: dict[str, Any] = {"timeout": timeout_ms}
        if self._since is not None:
            params["since"] = self._since
        body: dict[str, Any] = self.request(
            "GET", "/_matrix/client/v3/sync", params=params, timeout=timeout_ms / 1000 + 30
        )
        self._since = body["next_batch"]
        return body

    def typing_events(self, body: dict[str, Any], room_id: str) -> Iterator[list[str]]:
        """The ``user_ids`` of each m.typing event for ``room_id`` in a sync response."""
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        for event in room.get("ephemeral", {}).get("events", []):
            if event.get("type") == "m.typing":
                yield list(event.get("content", {}).get("user_ids", []))
