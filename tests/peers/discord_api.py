"""A loopback Discord: the REST API and the Gateway websocket, as discord.py uses them.

No Discord server runs outside Discord, so this is one of our own, written from
Discord's developer documentation (API v10: "Gateway", "Gateway Events",
"Opcodes and Status Codes", "Rate Limits", the Message/Channel/Guild/User
resources). The real discord.py client logs in, connects and sends against it.

REST (``{url}/api/v10``, ``Authorization: Bot TOKEN``, else 401):

- ``GET /users/@me``, ``GET /oauth2/applications/@me`` (login),
  ``GET /gateway/bot`` (the websocket URL), ``GET /gateway``;
- ``POST /channels/{id}/messages``: content of at most 2000 characters (else
  400, code 50035), a known channel (else 404, code 10003), not empty (50006),
  an optional ``message_reference``, an optional ``nonce`` (at most 25
  characters; with ``enforce_nonce`` a nonce the same author used in the last
  ``NONCE_SECONDS`` returns that message instead of creating another); the
  message is then dispatched to the bot as MESSAGE_CREATE too, as Discord does;
- ``POST /channels/{id}/typing`` (204).
- Every answer has ``Via`` and the ``X-RateLimit-*`` headers of its bucket;
  a channel's message bucket allows 5 messages per 5 seconds, and
  :meth:`DiscordAPI.rate_limit_next` answers the next sends with 429 (body
  ``retry_after``, ``global``; headers ``Retry-After``, ``X-RateLimit-Scope``).

Gateway (``ws://.../?v=10&encoding=json[&compress=zlib-stream]``): HELLO with
``heartbeat_interval``; HEARTBEAT answered by HEARTBEAT_ACK; IDENTIFY checked
(token: close 4004; privileged intents not enabled for the app: 4014) and
answered by READY (``session_id``, ``resume_gateway_url``) and a GUILD_CREATE
per guild; dispatches carry increasing sequence numbers per session, and
only reach a session whose intents ask for them (guild messages without the
Message Content intent lose their content unless they mention the bot, as on
Discord). Events dispatched while a session has no connection are kept, and
RESUME replays every event after the client's sequence number, then RESUMED;
an unknown or invalidated session gets INVALID_SESSION (``d: false``).
``zlib-stream`` transport compression is implemented (``zstd-stream`` too when
a zstd module is importable; otherwise frames go uncompressed).

Test hooks: :meth:`user`, :meth:`dm`, :meth:`say` (inject messages),
:meth:`create_thread`, :meth:`drop` (cut the websocket; ``rewind=N`` makes
the next RESUME also replay N events the client had already received, as an
at-least-once gateway may), :meth:`request_reconnect` (op 7),
:meth:`invalidate` (INVALID_SESSION), :meth:`rate_limit_next`,
:meth:`sent`/:meth:`wait_sent` (what the bot posted), counters
``identifies``/``resumes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from peers.aio_server import LoopThread

API_VERSION = 10
DISCORD_EPOCH_MS = 1420070400000
#: A token of Discord's shape: base64 of the bot's id, a timestamp part and an HMAC part.
BOT_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhJkLm.hermes-loopback-discord-token-0123456789"
MAX_CONTENT = 2000
#: The per-channel message bucket: this many messages per window.
MESSAGES_PER_WINDOW = 5
WINDOW_SECONDS = 5.0
#: How long a nonce sent with enforce_nonce is remembered ("the past few minutes").
NONCE_SECONDS = 300.0

# Gateway opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = (
    6,
    7,
    8,
    9,
    10,
    11,
)

# Intents.
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
ALL_INTENTS = (1 << 26) - 1

# Channel types.
GUILD_TEXT, DM, PUBLIC_THREAD = 0, 1, 11

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def _iso(ts: float | None = None) -> str:
    return dt.datetime.fromtimestamp(ts or time.time(), dt.UTC).isoformat()


@dataclass(frozen=True)
class SentMessage:
    """A message the bot created through ``POST /channels/{id}/messages``."""

    id: str
    channel_id: str
    content: str
    #: The ``message_id`` of its ``message_reference`` (the message it replies to), or None.
    reply_to: str | None
    allowed_mentions: dict[str, Any] | None
    time: float


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    path: str
    compress: str | None
    session: _Session | None = None
    zlib_ctx: Any = None
    zstd_ctx: Any = None

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        if self.compress == "zlib-stream":
            if self.zlib_ctx is None:
                self.zlib_ctx = zlib.compressobj()
            await self.ws.send_bytes(
                self.zlib_ctx.compress(data) + self.zlib_ctx.flush(zlib.Z_SYNC_FLUSH)
            )
            return
        if self.compress == "zstd-stream":
            framed = self._zstd(data)
            if framed is not None:
                await self.ws.send_bytes(framed)
                return
        await self.ws.send_str(data.decode())

    def _zstd(self, data: bytes) -> bytes | None:
        """``data`` as one flushed block of the connection's zstd stream (None: no zstd here).

        discord.py asks for zstd-stream only when it can import zstandard (or Python's
        compression.zstd) itself, so in the same environment this finds it too.
        """
        if self.zstd_ctx is None:
            self.zstd_ctx = False
            try:
                import zstandard  # type: ignore[import-not-found]

                cobj = zstandard.ZstdCompressor().compressobj()
                flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
                self.zstd_ctx = lambda d: cobj.compress(d) + cobj.flush(flush)
            except ImportError:
                try:
                    from compression import zstd  # type: ignore[import-not-found]

                    comp = zstd.ZstdCompressor()
                    mode = zstd.ZstdCompressor.FLUSH_BLOCK
                    self.zstd_ctx = lambda d: comp.compress(d, mode=mode)
                except ImportError:
                    pass
        return self.zstd_ctx(data) if self.zstd_ctx else None


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    conn: _Conn | None = None
    #: False between IDENTIFY/RESUME and READY/RESUMED being queued: dispatches wait.
    live: bool = False
    invalid: bool = False
    #: The next RESUME also replays this many events the client had received.
    rewind: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class DiscordAPI:
    """A Discord with one bot, one server ("guild") with a #general channel, and DMs."""

    def __init__(
        self,
        *,
        token: str = BOT_TOKEN,
        heartbeat_interval: float = 41.25,
        privileged_intents: int = 0,
    ) -> None:
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        #: Privileged intents switched on for the app in the developer portal.
        self.privileged_intents = privileged_intents
        self._ids = threading.Lock()
        self._last_ms = 0
        self._increment = 0
        self.bot = self._new_user("hermes", bot=True)
        self.owner = self._new_user("owner")
        self.application = {
            "id": self.bot["id"],
            "name": "hermes",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.owner,
            "team": None,
            "verify_key": secrets.token_hex(32),
            "flags": 0,
            "summary": "",
        }
        self.users: dict[str, dict[str, Any]] = {self.bot["id"]: self.bot}
        self.guild_id = self._snowflake()
        self.bot_role_id = self._snowflake()
        self.general_id = self._snowflake()
        self.channels: dict[str, dict[str, Any]] = {
            self.general_id: {
                "id": self.general_id,
                "type": GUILD_TEXT,
                "guild_id": self.guild_id,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "parent_id": None,
                "flags": 0,
            }
        }
        self._dm_of: dict[str, str] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self._sent: list[SentMessage] = []
        self.typing: list[str] = []
        #: (method, path, status, time.monotonic()) of every REST request.
        self.requests: list[tuple[str, str, int, float]] = []
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        #: The path of every websocket connection (``/`` or ``/resume``).
        self.connections: list[str] = []
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._buckets: dict[str, deque[float]] = {}
        self._forced_429: list[tuple[float, bool]] = []
        self._cut_answers = 0
        #: (author id, nonce) -> (time.monotonic(), the message it created).
        self._nonces: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._changed = threading.Condition()
        app = web.Application()
        app.router.add_get("/", self._gateway)
        app.router.add_get("/resume", self._gateway)
        app.router.add_route("*", r"/api/v{version:\d+}/{path:.*}", self._rest)
        #: Files attached to users' messages, served as Discord's CDN serves them.
        self.files: dict[str, bytes] = {}
        app.router.add_get("/attachments/{channel}/{id}/{filename}", self._cdn)
        self._server = LoopThread(app)
        self._open = asyncio.Event()  # Cleared while the test holds new connections.
        self._open.set()

    # --- lifetime ---------------------------------------------------------------------

    def __enter__(self) -> DiscordAPI:
        self._server.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._server.call(self._close_all)
        finally:
            self._server.stop()

    async def _close_all(self) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=1001)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def api_base(self) -> str:
        """What ``gateway.platforms.discord.api_base`` is set to."""
        return f"{self.url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._server.port}"

    # --- the world ----------------------------------------------------------------------

    def _snowflake(self) -> str:
        """A new id: milliseconds since Discord's epoch, then an increment (ids grow)."""
        with self._ids:
            now = int(time.time() * 1000)
            if now <= self._last_ms:
                self._increment += 1
                if self._increment > 0xFFF:
                    self._last_ms, self._increment = self._last_ms + 1, 0
            else:
                self._last_ms, self._increment = now, 0
            return str(((self._last_ms - DISCORD_EPOCH_MS) << 22) | self._increment)

    def _new_user(self, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": self._snowflake(),
            "username": name,
            "discriminator": "0",
            "global_name": name.title(),
            "avatar": None,
            "bot": bot,
            "system": False,
            "flags": 0,
            "public_flags": 0,
        }

    def user(self, name: str) -> dict[str, Any]:
        """A new (human) user who shares the server with the bot."""
        user = self._new_user(name)
        self.users[user["id"]] = user
        return user

    def _guild_payload(self) -> dict[str, Any]:
        everyone = {
            "id": self.guild_id,
            "name": "@everyone",
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": 0,
            "permissions": "1071698660929",
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        bot_role = {
            **everyone,
            "id": self.bot_role_id,
            "name": "hermes",
            "position": 1,
            "managed": True,
            "tags": {"bot_id": self.bot["id"]},
        }
        channels = [
            {k: v for k, v in c.items() if k != "guild_id"}
            for c in self.channels.values()
            if c.get("guild_id") == self.guild_id and c["type"] == GUILD_TEXT
        ]
        threads = [
            c
            for c in self.channels.values()
            if c.get("guild_id") == self.guild_id and c["type"] == PUBLIC_THREAD
        ]
        return {
            "id": self.guild_id,
            "name": "Hermes Test",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": self.owner["id"],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [everyone, bot_role],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": self.general_id,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "stickers": [],
            # GUILD_CREATE's extra fields.
            "joined_at": _iso(),
            "large": False,
            "unavailable": False,
            "member_count": len(self.users),
            "voice_states": [],
            "members": [self._member(self.bot)],
            "channels": channels,
            "threads": threads,
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _member(self, user: dict[str, Any]) -> dict[str, Any]:
        roles = [self.bot_role_id] if user["id"] == self.bot["id"] else []
        return {
            "user": user,
            "nick": None,
            "roles": roles,
            "joined_at": _iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        }

    # --- hooks: what users do ---------------------------------------------------------

    def dm(self, user: dict[str, Any], text: str) -> str:
        """``user`` writes ``text`` to the bot in a direct message; returns the message id."""
        return self._server.call(self._user_message, None, user, text)

    def dm_file(
        self,
        user: dict[str, Any],
        text: str,
        data: bytes,
        filename: str,
        content_type: str,
        size: tuple[int, int] | None = None,
    ) -> str:
        """``user`` sends the bot a direct message with one attached file."""
        return self._server.call(
            self._user_message, None, user, text, [(data, filename, content_type, size)]
        )

    async def _cdn(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["id"])
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    def say(self, channel_id: str, user: dict[str, Any], text: str) -> str:
        """``user`` writes ``text`` in a server channel or thread; returns the message id.

        Mention the bot with ``f"<@{api.bot['id']}>"`` in ``text``.
        """
        return self._server.call(self._user_message, channel_id, user, text)

    def create_thread(self, channel_id: str, name: str, owner: dict[str, Any]) -> str:
        """``owner`` starts a public thread in ``channel_id``; returns the thread's id."""
        return self._server.call(self._create_thread, channel_id, name, owner)

    async def _create_thread(self, channel_id: str, name: str, owner: dict[str, Any]) -> str:
        thread_id = self._snowflake()
        thread = {
            "id": thread_id,
            "type": PUBLIC_THREAD,
            "guild_id": self.guild_id,
            "parent_id": channel_id,
            "owner_id": owner["id"],
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "total_message_sent": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _iso(),
                "locked": False,
                "create_timestamp": _iso(),
            },
        }
        self.channels[thread_id] = thread
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True}, GUILDS)
        return thread_id

    async def _user_message(
        self,
        channel_id: str | None,
        user: dict[str, Any],
        text: str,
        files: list[tuple[bytes, str, str, tuple[int, int] | None]] | None = None,
    ) -> str:
        if channel_id is None:
            channel_id = self._dm_of.get(user["id"])
            if channel_id is None:
                channel_id = self._snowflake()
                self._dm_of[user["id"]] = channel_id
                self.channels[channel_id] = {
                    "id": channel_id,
                    "type": DM,
                    "last_message_id": None,
                    "recipients": [user],
                    "flags": 0,
                }
        message = self._message(self.channels[channel_id], user, text)
        for data, filename, content_type, size in files or ():
            file_id = self._snowflake()
            self.files[file_id] = data
            url = f"{self.url}/attachments/{channel_id}/{file_id}/{filename}"
            attachment = {
                "id": file_id,
                "filename": filename,
                "size": len(data),
                "url": url,
                "proxy_url": url,
                "content_type": content_type,
            }
            if size is not None:
                attachment["width"], attachment["height"] = size
            message["attachments"].append(attachment)
        await self._dispatch_message(message)
        return str(message["id"])

    def _message(
        self,
        channel: dict[str, Any],
        author: dict[str, Any],
        content: str,
        reference: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        mentions = [
            self.users[i] for i in dict.fromkeys(_USER_MENTION.findall(content)) if i in self.users
        ]
        message: dict[str, Any] = {
            "id": self._snowflake(),
            "channel_id": channel["id"],
            "author": author,
            "content": content,
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": mentions,
            "mention_roles": list(dict.fromkeys(_ROLE_MENTION.findall(content))),
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if reference is not None:
            message["type"] = 19  # REPLY
            message["message_reference"] = {"type": 0, **reference}
            message["referenced_message"] = self.messages.get(str(reference.get("message_id")))
        channel["last_message_id"] = message["id"]
        if channel["type"] == PUBLIC_THREAD:
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        self.messages[message["id"]] = message
        return message

    async def _dispatch_message(self, message: dict[str, Any]) -> None:
        channel = self.channels[message["channel_id"]]
        event = dict(message)
        if "guild_id" in channel:
            event["guild_id"] = channel["guild_id"]
            event["member"] = {
                k: v for k, v in self._member(message["author"]).items() if k != "user"
            }
            await self._dispatch("MESSAGE_CREATE", event, GUILD_MESSAGES)
        else:
            await self._dispatch("MESSAGE_CREATE", event, DIRECT_MESSAGES)

    # --- hooks: what Discord does ---------------------------------------------------

    def drop(self, *, rewind: int = 0, code: int | None = None, hold: bool = False) -> None:
        """Cut every websocket: abruptly (no close frame) unless ``code`` is given.

        ``rewind``: the next RESUME replays that many already received events too.
        ``hold``: new connections get no HELLO until :meth:`release` (Discord unreachable
        for a while), so what is injected meanwhile is surely missed and replayed.
        """
        self._server.call(self._drop, rewind, code, hold)

    def release(self) -> None:
        """Let held connections go on (see :meth:`drop`)."""
        self._server.call(self._release)

    async def _release(self) -> None:
        self._open.set()

    async def _drop(self, rewind: int, code: int | None, hold: bool) -> None:
        if hold:
            self._open.clear()
        for conn in list(self._conns):
            if conn.session is not None:
                conn.session.rewind = rewind
                conn.session.live = False
                conn.session.conn = None
            if code is None:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
            else:
                await conn.ws.close(code=code, message=b"dropped by the test")

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connection (the client should resume)."""
        self._server.call(self._send_all, {"op": RECONNECT, "d": None, "s": None, "t": None})

    def invalidate(self, *, now: bool = True) -> None:
        """Invalidate every session: INVALID_SESSION (``d: false``) now or on RESUME."""
        for session in self._sessions.values():
            session.invalid = True
        if now:
            self._server.call(
                self._send_all, {"op": INVALID_SESSION, "d": False, "s": None, "t": None}
            )

    async def _send_all(self, payload: dict[str, Any]) -> None:
        for conn in list(self._conns):
            await conn.send(payload)

    def rate_limit_next(
        self, retry_after: float = 1.0, *, count: int = 1, global_: bool = False
    ) -> None:
        """Answer the next ``count`` message sends with 429 and this ``retry_after``."""
        self._forced_429.extend([(retry_after, global_)] * count)

    def cut_answers(self, count: int = 1) -> None:
        """Create the next ``count`` messages, then cut the connection before answering."""
        self._cut_answers += count

    # --- hooks: looking -------------------------------------------------------------

    def connected(self) -> bool:
        """Whether a session is established (READY or RESUMED sent) on an open connection."""
        return any(s.live and s.conn is not None for s in self._sessions.values())

    def dm_channel(self, user: dict[str, Any]) -> str | None:
        """The id of the DM channel of ``user`` with the bot (after their first DM)."""
        return self._dm_of.get(user["id"])

    def sent(self, channel_id: str | None = None) -> list[SentMessage]:
        with self._changed:
            return [m for m in self._sent if channel_id is None or m.channel_id == channel_id]

    def wait_sent(
        self, count: int, channel_id: str | None = None, timeout: float = 20
    ) -> list[SentMessage]:
        """Wait until the bot sent at least ``count`` messages (to ``channel_id``)."""
        self.wait_for(lambda: len(self.sent(channel_id)) >= count, timeout, f"{count} sent")
        return self.sent(channel_id)

    def wait_for(self, check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what or check}")
                self._changed.wait(min(left, 0.1))

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- the Gateway ------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4096)
        await ws.prepare(request)
        conn = _Conn(ws, request, request.path, request.query.get("compress"))
        self.connections.append(request.path)
        self._conns.add(conn)
        self._notify()
        try:
            if request.query.get("v") not in ("9", "10"):
                await ws.close(code=4012, message=b"Invalid API version")
                return ws
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=4002, message=b"Decode error")
                return ws
            await self._open.wait()
            await conn.send(
                {"op": HELLO, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}}
                | {"s": None, "t": None}
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Decode error")
                    break
                try:
                    payload = json.loads(msg.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=4002, message=b"Decode error")
                    break
                data = payload.get("d")
                if op == HEARTBEAT:
                    self.heartbeats += 1
                    await conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
                elif op == IDENTIFY:
                    await self._identify(conn, data or {})
                elif op == RESUME:
                    await self._resume(conn, data or {})
                elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE, REQUEST_GUILD_MEMBERS):
                    if conn.session is None:
                        await ws.close(code=4003, message=b"Not authenticated")
                else:
                    await ws.close(code=4001, message=b"Unknown opcode")
        finally:
            self._conns.discard(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                session.live = False
            self._notify()
        return ws

    async def _identify(self, conn: _Conn, data: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated")
            return
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~ALL_INTENTS:
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        if intents & PRIVILEGED & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = _Session(id=secrets.token_hex(16), intents=intents)
        self._sessions[session.id] = session
        self.identifies += 1
        async with session.lock:
            conn.session, session.conn = session, conn
            ready = {
                "v": API_VERSION,
                "user": {**self.bot, "verified": True, "mfa_enabled": False, "email": None},
                "guilds": [{"id": self.guild_id, "unavailable": True}],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": f"{self.gateway_url}/resume",
                "application": {"id": self.application["id"], "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["local"],
                "auth": {},
                "user_settings": {},
            }
            if "shard" in data:
                ready["shard"] = data["shard"]
            await self._emit(session, "READY", ready)
            if intents & GUILDS:
                await self._emit(session, "GUILD_CREATE", self._guild_payload())
            session.live = True
        self._notify()

    async def _resume(self, conn: _Conn, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or session.invalid or conn.session is not None:
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        seq = data.get("seq") or 0
        if not isinstance(seq, int) or seq > session.seq:
            await conn.ws.close(code=4007, message=b"Invalid seq")
            return
        self.resumes += 1
        async with session.lock:
            old = session.conn
            conn.session, session.conn = session, conn
            if old is not None and old is not conn:
                await old.ws.close(code=4000, message=b"Session resumed elsewhere")
            start = max(0, seq - session.rewind)
            session.rewind = 0
            for event in session.events:
                if event["s"] > start:
                    await conn.send(event)
            await self._emit(session, "RESUMED", {})
            session.live = True
        self._notify()

    async def _emit(self, session: _Session, name: str, data: dict[str, Any]) -> None:
        """Record a dispatch in the session and send it (the caller holds the lock)."""
        session.seq += 1
        event = {"op": DISPATCH, "d": data, "s": session.seq, "t": name}
        session.events.append(event)
        if session.conn is not None:
            # On a failed send it stays in events: the client gets it when it resumes.
            with contextlib.suppress(ConnectionError):
                await session.conn.send(event)

    async def _dispatch(self, name: str, data: dict[str, Any], intent: int) -> None:
        for session in list(self._sessions.values()):
            if session.invalid or not session.intents & intent:
                continue
            event = data
            if name == "MESSAGE_CREATE":
                event = self._visible_content(session, data)
            async with session.lock:
                if session.conn is not None and not session.live:
                    continue  # Being (re)established: it replays from the recorded events.
                await self._emit(session, name, event)

    def _visible_content(self, session: _Session, message: dict[str, Any]) -> dict[str, Any]:
        """A guild message as a session without the Message Content intent sees it."""
        if session.intents & MESSAGE_CONTENT or "guild_id" not in message:
            return message
        if message["author"]["id"] == self.bot["id"]:
            return message
        if any(u["id"] == self.bot["id"] for u in message["mentions"]):
            return message
        return {**message, "content": "", "embeds": [], "attachments": [], "components": []}

    # --- REST -----------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        response = await self._route(request)
        response.headers.setdefault("Via", "1.1 google")
        self.requests.append((request.method, request.path, response.status, time.monotonic()))
        self._notify()
        return response

    async def _route(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        method = request.method
        if request.match_info["version"] not in ("9", "10"):
            return _error(404, "404: Not Found", 0)
        if (method, path) == ("GET", "/gateway"):
            return _json({"url": self.gateway_url})
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, "401: Unauthorized", 0)
        if (method, path) == ("GET", "/users/@me"):
            return _json({**self.bot, "verified": True, "mfa_enabled": False, "email": None})
        if (method, path) == ("GET", "/oauth2/applications/@me"):
            return _json(self.application)
        if (method, path) == ("GET", "/gateway/bot"):
            return _json(
                {
                    "url": self.gateway_url,
                    "shards": 1,
                    "session_start_limit": {
                        "total": 1000,
                        "remaining": 1000 - self.identifies,
                        "reset_after": 86_400_000,
                        "max_concurrency": 1,
                    },
                }
            )
        match = re.fullmatch(r"/channels/(\d+)/(messages|typing)", path)
        if match and method == "POST":
            channel = self.channels.get(match.group(1))
            if channel is None:
                return _error(404, "Unknown Channel", 10003)
            if match.group(2) == "typing":
                self.typing.append(channel["id"])
                return web.Response(status=204)
            return await self._create_message(request, channel)
        return _error(404, "404: Not Found", 0)

    async def _create_message(self, request: web.Request, channel: dict[str, Any]) -> web.Response:
        bucket = f"messages:{channel['id']}"
        if self._forced_429:
            retry_after, is_global = self._forced_429.pop(0)
            return _rate_limited(bucket, retry_after, is_global)
        window = self._buckets.setdefault(bucket, deque())
        now = time.monotonic()
        while window and now - window[0] >= WINDOW_SECONDS:
            window.popleft()
        if len(window) >= MESSAGES_PER_WINDOW:
            return _rate_limited(bucket, WINDOW_SECONDS - (now - window[0]), False)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _error(400, "400: Bad Request", 0)
        content = body.get("content") or ""
        if not isinstance(content, str):
            return _invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
        if len(content) > MAX_CONTENT:
            return _invalid_form(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        if not content.strip() and not body.get("embeds"):
            return _error(400, "Cannot send an empty message", 50006)
        nonce = body.get("nonce")
        if nonce is not None and (
            not isinstance(nonce, str | int) or isinstance(nonce, bool) or len(str(nonce)) > 25
        ):
            return _invalid_form("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if nonce is not None and body.get("enforce_nonce"):
            known = self._nonces.get((self.bot["id"], str(nonce)))
            if known is not None and now - known[0] < NONCE_SECONDS:
                return _json(known[1])  # Created before: returned, not created again.
        reference = body.get("message_reference")
        if reference is not None:
            target = self.messages.get(str(reference.get("message_id")))
            if target is None and reference.get("fail_if_not_exists", True):
                return _invalid_form(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            if target is None:
                reference = None
        window.append(now)
        message = self._message(channel, self.bot, content, reference)
        if nonce is not None:
            message["nonce"] = nonce
            self._nonces[(self.bot["id"], str(nonce))] = (now, message)
        with self._changed:
            self._sent.append(
                SentMessage(
                    id=message["id"],
                    channel_id=channel["id"],
                    content=content,
                    reply_to=str(reference["message_id"]) if reference else None,
                    allowed_mentions=body.get("allowed_mentions"),
                    time=time.monotonic(),
                )
            )
        await self._dispatch_message(message)  # Bots see their own messages too.
        if self._cut_answers:
            self._cut_answers -= 1
            if request.transport is not None:
                request.transport.abort()  # Created; the client never hears of it.
        remaining = MESSAGES_PER_WINDOW - len(window)
        reset_after = WINDOW_SECONDS - (now - window[0])
        return _json(message, headers=_bucket_headers(bucket, remaining, reset_after))


def _bucket_headers(bucket: str, remaining: int, reset_after: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(MESSAGES_PER_WINDOW),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": hashlib.sha1(bucket.split(":")[0].encode()).hexdigest()[:32],
    }


def _rate_limited(bucket: str, retry_after: float, is_global: bool) -> web.Response:
    headers = _bucket_headers(bucket, 0, retry_after)
    headers["Retry-After"] = str(max(1, round(retry_after + 0.5)))
    headers["X-RateLimit-Scope"] = "global" if is_global else "user"
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": is_global,
    }
    return _json(body, status=429, headers=headers)


def _error(status: int, message: str, code: int) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


def _invalid_form(field_name: str, code: str, message: str) -> web.Response:
    return _json(
        {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field_name: {"_errors": [{"code": code, "message": message}]}},
        },
        status=400,
    )


def _json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer as Discord sends it: ``Content-Type: application/json``, no charset.

    (discord.py parses a body as JSON only when the header is exactly that.)
    """
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )
