"""A loopback Slack: the Web API methods and the Socket Mode websocket a Bolt app uses.

Slack runs nowhere but at Slack, so this is one of our own, written from
Slack's documentation ("Using Socket Mode", "Events API", the method pages of
``auth.test``, ``apps.connections.open``, ``chat.postMessage``,
``users.info``, "Rate limits"). The real slack_sdk/slack_bolt clients talk to it.

Web API (``{url}/api/METHOD``; the token in ``Authorization: Bearer`` or a
``token`` parameter; arguments as JSON, form or query; HTTP 200 with
``{"ok": false, "error": ...}`` for errors, as Slack does):

- ``auth.test`` with the bot token (``xoxb-``): the bot's ``user_id``,
  ``bot_id``, ``team_id``; a wrong token ``invalid_auth``, none ``not_authed``,
  an app token ``not_allowed_token_type``.
- ``apps.connections.open`` with the app-level token (``xapp-``): a one-time
  ``ws://.../link/?ticket=...`` URL.
- ``chat.postMessage``: ``channel`` (``channel_not_found``), ``text``
  (``no_text``; over 40,000 characters it is truncated, as on Slack),
  ``thread_ts``; the message is then delivered as a ``message`` event to the
  app too (with ``bot_id``), as Slack does. :meth:`SlackAPI.rate_limit_next`
  answers the next calls with HTTP 429, ``Retry-After`` and ``ratelimited``.
- ``users.info``.
- ``chat.postMessage`` keeps ``metadata`` (``event_type``, ``event_payload``);
  ``conversations.history`` (top-level messages, newest first) and
  ``conversations.replies`` (a thread, oldest first) with ``oldest``,
  ``inclusive``, ``limit`` (``has_more``) and ``include_all_metadata``; each
  needs the history scope of its kind of chat (``im:history``,
  ``channels:history``: :attr:`SlackAPI.scopes`), else ``missing_scope``.
  :meth:`SlackAPI.cut_answers` posts the next messages and cuts the connection
  before answering.

Socket Mode: the connection gets ``hello`` (``num_connections``,
``connection_info.app_id``); events come in ``events_api`` envelopes
(``envelope_id``, ``payload`` = the Events API callback with ``event_id``,
``retry_attempt``, ``retry_reason``); the client acknowledges with
``{"envelope_id": ...}``. An envelope not acknowledged within ``ack_timeout``
(3 s on Slack) is delivered again with ``retry_attempt`` + 1 (up to 3 retries),
on whichever connection is open then; envelopes for an app without a
connection wait for one. A user's message in a DM is a ``message`` event
(``channel_type: im``); in a channel it is a ``message`` event
(``channel_type: channel``) and, when it mentions the bot, an ``app_mention``
event as well, each in its own envelope, with the same ``ts``.

Test hooks: :meth:`user`, :meth:`dm`, :meth:`say` (inject messages),
:meth:`lose_next_ack` (the connection dies before the next acknowledgement
reaches Slack), :meth:`disconnect` (a ``disconnect`` message, then the
connection is closed), :meth:`drop`, :meth:`rate_limit_next`,
:meth:`posted`/:meth:`wait_posted` (what the bot posted), ``deliveries``
and ``acks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from peers.aio_server import LoopThread

BOT_TOKEN = "xoxb-1000000001-2000000002-hermesLoopbackBotToken0"
APP_TOKEN = "xapp-1-A0HERMES-3000000003-hermesloopbackapptoken0123456789abcdef"
TEAM_ID = "T0HERMES"
BOT_USER_ID = "U0HERMES"
BOT_ID = "B0HERMES"
APP_ID = "A0HERMES"
#: Longer text is truncated by Slack.
MAX_TEXT = 40_000
#: Slack retries an unacknowledged event this many times.
MAX_RETRIES = 3


@dataclass(frozen=True)
class Posted:
    """A message the bot posted with ``chat.postMessage``."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None
    time: float


@dataclass(frozen=True)
class Delivery:
    """One envelope sent on a connection."""

    envelope_id: str
    event_type: str
    event_id: str
    retry_attempt: int
    retry_reason: str
    time: float


@dataclass(eq=False)
class _Envelope:
    id: str
    payload: dict[str, Any]
    retry_attempt: int = 0
    retry_reason: str = ""
    acked: bool = False
    #: Sent at least once and waiting for its acknowledgement.
    in_flight: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    opened: float = field(default_factory=time.monotonic)


class SlackAPI:
    """A workspace with the bot, a #general channel, and a DM per user."""

    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        ack_timeout: float = 3.0,
        events: tuple[str, ...] = ("message.im", "message.channels", "app_mention"),
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.ack_timeout = ack_timeout
        #: The app's event subscriptions.
        self.events = events
        self.bot_user_id = BOT_USER_ID
        self.general = "C0GENERAL"
        self.users: dict[str, dict[str, Any]] = {
            BOT_USER_ID: _user(BOT_USER_ID, "hermes", bot=True)
        }
        self.channels: dict[str, dict[str, Any]] = {
            self.general: {"id": self.general, "name": "general", "is_im": False}
        }
        self._dm_of: dict[str, str] = {}
        self._ts_lock = threading.Lock()
        self._last_ts = (0, 0)
        self._posted: list[Posted] = []
        self.deliveries: list[Delivery] = []
        self.acks: list[str] = []
        #: (method, token kind, "ok" or the error, time.monotonic()) of every Web API call.
        self.calls: list[tuple[str, str, str, float]] = []
        self.connections = 0
        self._tickets: set[str] = set()
        self._conns: list[_Conn] = []
        self._envelopes: dict[str, _Envelope] = {}
        self._pending: list[_Envelope] = []
        self._forced_429: list[float] = []
        self._cut_answers = 0
        #: Every message of each channel (users' and the bot's), oldest first.
        self.history: dict[str, list[dict[str, Any]]] = {}
        #: The bot token's scopes that methods check (history reading).
        self.scopes = {"chat:write", "users:read", "im:history", "app_mentions:read"}
        self._lose_ack: list[bool] = []
        self._changed = threading.Condition()
        self._tasks: set[asyncio.Future[Any]] = set()
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._web_api)
        app.router.add_get("/link/", self._socket)
        #: Files users shared, served as files.slack.com does (the bot token required).
        self.files: dict[str, bytes] = {}
        app.router.add_get("/files-pri/{team_file}/{name}", self._file)
        self._server = LoopThread(app)

    # --- lifetime ---------------------------------------------------------------------

    def __enter__(self) -> SlackAPI:
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
        for envelope in self._envelopes.values():
            if envelope.timer is not None:
                envelope.timer.cancel()
        for conn in list(self._conns):
            await conn.ws.close(code=1001)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def api_base(self) -> str:
        """What ``gateway.platforms.slack.api_base`` is set to."""
        return f"{self.url}/api/"

    # --- the workspace ------------------------------------------------------------------

    def _ts(self) -> str:
        """A new message timestamp: seconds and a counter, unique and increasing."""
        with self._ts_lock:
            seconds = int(time.time())
            last_seconds, counter = self._last_ts
            counter = counter + 1 if seconds <= last_seconds else 1
            seconds = max(seconds, last_seconds)
            self._last_ts = (seconds, counter)
            return f"{seconds}.{counter:06d}"

    def user(self, name: str) -> dict[str, Any]:
        """A new member of the workspace."""
        user_id = "U" + secrets.token_hex(4).upper()
        user = _user(user_id, name)
        self.users[user_id] = user
        return user

    def dm_channel(self, user: dict[str, Any]) -> str:
        channel = self._dm_of.get(user["id"])
        if channel is None:
            channel = "D" + secrets.token_hex(4).upper()
            self._dm_of[user["id"]] = channel
            self.channels[channel] = {"id": channel, "is_im": True, "user": user["id"]}
        return channel

    # --- hooks: what users do ---------------------------------------------------------

    def dm(self, user: dict[str, Any], text: str, *, thread_ts: str | None = None) -> str:
        """``user`` writes to the bot in their DM; returns the message's ``ts``."""
        return self._server.call(self._user_message, self.dm_channel(user), user, text, thread_ts)

    def dm_file(
        self, user: dict[str, Any], text: str, data: bytes, name: str, mimetype: str
    ) -> str:
        """``user`` shares a file in their DM with the bot (a ``file_share`` message)."""
        file_id = "F" + secrets.token_hex(4).upper()
        self.files[file_id] = data
        url = f"{self.url}/files-pri/{TEAM_ID}-{file_id}/{name}"
        shared = {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(data),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }
        return self._server.call(
            self._user_message, self.dm_channel(user), user, text, None, [shared]
        )

    async def _file(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            # files.slack.com answers an unauthenticated request with its login page.
            return web.Response(status=302, headers={"Location": f"{self.url}/signin"})
        file_id = request.match_info["team_file"].rsplit("-", 1)[-1]
        data = self.files.get(file_id)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def say(
        self, channel: str, user: dict[str, Any], text: str, *, thread_ts: str | None = None
    ) -> str:
        """``user`` writes in ``channel`` (mention the bot with ``<@U0HERMES>``); returns ts."""
        return self._server.call(self._user_message, channel, user, text, thread_ts)

    async def _user_message(
        self,
        channel: str,
        user: dict[str, Any],
        text: str,
        thread_ts: str | None,
        files: list[dict[str, Any]] | None = None,
    ) -> str:
        ts = self._ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": user["id"],
            "text": text,
            "ts": ts,
            "team": TEAM_ID,
            "client_msg_id": str(uuid.uuid4()),
            "blocks": _rich_text(text),
        }
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = user["id"]
        if files:
            message.update(subtype="file_share", files=files, upload=False)
        self.history.setdefault(channel, []).append(message)
        await self._message_events(channel, message, mentionable=True)
        return ts

    async def _message_events(
        self, channel: str, message: dict[str, Any], *, mentionable: bool
    ) -> None:
        """The events the app is sent for a new message, per its subscriptions."""
        is_im = self.channels[channel]["is_im"]
        subscription = "message.im" if is_im else "message.channels"
        if subscription in self.events:
            event = {
                **message,
                "channel": channel,
                "event_ts": message["ts"],
                "channel_type": "im" if is_im else "channel",
            }
            await self._enqueue(event)
        if (
            mentionable
            and not is_im
            and "app_mention" in self.events
            and f"<@{self.bot_user_id}>" in message["text"]
        ):
            mention = {k: v for k, v in message.items() if k != "parent_user_id"}
            await self._enqueue(
                {**mention, "type": "app_mention", "channel": channel, "event_ts": message["ts"]}
            )

    # --- hooks: what Slack does -----------------------------------------------------

    def lose_next_ack(self, *, abrupt: bool = False) -> None:
        """The connection breaks just before the next acknowledgement reaches Slack.

        The envelope stays unacknowledged, so it is delivered again after
        ``ack_timeout``, with ``retry_attempt`` + 1. ``abrupt``: no close frame.
        """
        self._lose_ack.append(abrupt)

    def disconnect(self, reason: str = "refresh_requested", *, grace: float = 1.0) -> None:
        """Send a ``disconnect`` message on every connection and close it ``grace`` s later."""
        self._server.call(self._disconnect, reason, grace)

    async def _disconnect(self, reason: str, grace: float) -> None:
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-lo"}}
        loop = asyncio.get_running_loop()
        for conn in list(self._conns):
            await conn.ws.send_str(json.dumps(message))
            loop.call_later(grace, self._close_later, conn)

    def _close_later(self, conn: _Conn) -> None:
        self._spawn(conn.ws.close(code=1000))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the server's loop, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drop(self, *, abrupt: bool = False) -> None:
        """Close every connection (``abrupt``: without a close frame)."""
        self._server.call(self._drop, abrupt)

    async def _drop(self, abrupt: bool) -> None:
        for conn in list(self._conns):
            await self._close(conn, abrupt)

    async def _close(self, conn: _Conn, abrupt: bool) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        if abrupt and conn.request.transport is not None:
            conn.request.transport.abort()
        else:
            await conn.ws.close(code=1011, message=b"closed by the test")

    def rate_limit_next(self, retry_after: float = 1.0, *, count: int = 1) -> None:
        """Answer the next ``count`` chat.postMessage calls with 429 ``ratelimited``."""
        self._forced_429.extend([retry_after] * count)

    # --- hooks: looking -------------------------------------------------------------

    def posted(self, channel: str | None = None) -> list[Posted]:
        with self._changed:
            return [p for p in self._posted if channel is None or p.channel == channel]

    def wait_posted(
        self, count: int, channel: str | None = None, timeout: float = 20
    ) -> list[Posted]:
        self.wait_for(lambda: len(self.posted(channel)) >= count, timeout, f"{count} posted")
        return self.posted(channel)

    def connected(self) -> int:
        """How many Socket Mode connections are open now."""
        return len(self._conns)

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

    # --- Socket Mode ----------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request)
        self._conns.append(conn)
        self.connections += 1
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._conns),
                    "debug_info": {
                        "host": "applink-lo",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        self._notify()
        pending, self._pending = self._pending, []
        for envelope in pending:
            await self._send(envelope)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    envelope_id = data["envelope_id"]
                except (ValueError, KeyError, TypeError):
                    continue
                if self._lose_ack:
                    await self._close(conn, self._lose_ack.pop(0))
                    break
                acked = self._envelopes.get(envelope_id)
                if acked is not None and not acked.acked:
                    acked.acked = True
                    acked.in_flight = False
                    if acked.timer is not None:
                        acked.timer.cancel()
                with self._changed:
                    self.acks.append(envelope_id)
                    self._changed.notify_all()
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            self._notify()
        return ws

    async def _enqueue(self, event: dict[str, Any]) -> None:
        payload = {
            "token": "loopback-verification-token",
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + secrets.token_hex(12),
        }
        envelope = _Envelope(id=str(uuid.uuid4()), payload=payload)
        self._envelopes[envelope.id] = envelope
        await self._send(envelope)

    async def _send(self, envelope: _Envelope) -> None:
        """Deliver on the newest connection, or keep it until one opens."""
        if envelope.acked:
            return
        if not self._conns:
            self._pending.append(envelope)
            return
        conn = self._conns[-1]
        message = {
            "envelope_id": envelope.id,
            "payload": envelope.payload,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": envelope.retry_attempt,
            "retry_reason": envelope.retry_reason,
        }
        try:
            await conn.ws.send_str(json.dumps(message))
        except ConnectionError:
            self._pending.append(envelope)
            return
        envelope.in_flight = True
        with self._changed:
            self.deliveries.append(
                Delivery(
                    envelope.id,
                    envelope.payload["event"]["type"],
                    envelope.payload["event_id"],
                    envelope.retry_attempt,
                    envelope.retry_reason,
                    time.monotonic(),
                )
            )
            self._changed.notify_all()
        loop = asyncio.get_running_loop()
        envelope.timer = loop.call_later(
            self.ack_timeout, lambda: self._spawn(self._retry(envelope))
        )

    async def _retry(self, envelope: _Envelope) -> None:
        if envelope.acked or envelope.retry_attempt >= MAX_RETRIES:
            return
        envelope.retry_attempt += 1
        envelope.retry_reason = "timeout"
        await self._send(envelope)

    # --- Web API --------------------------------------------------------------------

    async def _web_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    body = await request.json()
                    if isinstance(body, dict):
                        args.update(body)
            else:
                args.update(parse_qsl(await request.text()))
        token = args.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        kind = (
            "bot"
            if token == self.bot_token
            else "app"
            if token == self.app_token
            else "none"
            if not token
            else "bad"
        )
        response = await self._call(method, kind, args)
        body = json.loads(response.text or "{}")
        result = "ok" if body.get("ok") else str(body.get("error"))
        if method == "chat.postMessage" and body.get("ok") and self._cut_answers:
            self._cut_answers -= 1
            result = "ok, answer cut"
            if request.transport is not None:
                request.transport.abort()  # Posted; the client never hears of it.
        self.calls.append((method, kind, result, time.monotonic()))
        self._notify()
        return response

    async def _call(self, method: str, kind: str, args: dict[str, Any]) -> web.Response:
        handlers: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
            "auth.test": ("bot", self._auth_test),
            "apps.connections.open": ("app", self._connections_open),
            "chat.postMessage": ("bot", self._post_message),
            "users.info": ("bot", self._users_info),
            "conversations.history": ("bot", self._conversations_history),
            "conversations.replies": ("bot", self._conversations_replies),
        }
        if method not in handlers:
            return _fail("unknown_method", status=404)
        needed, handler = handlers[method]
        if kind == "none":
            return _fail("not_authed")
        if kind == "bad":
            return _fail("invalid_auth")
        if kind != needed:
            return _fail("not_allowed_token_type")
        result = handler(args)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.Response)
        return result

    def _auth_test(self, args: dict[str, Any]) -> web.Response:
        return _ok(
            url="https://hermes-loopback.slack.com/",
            team="Hermes Loopback",
            user="hermes",
            team_id=TEAM_ID,
            user_id=BOT_USER_ID,
            bot_id=BOT_ID,
            is_enterprise_install=False,
        )

    def _connections_open(self, args: dict[str, Any]) -> web.Response:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        port = self._server.port
        return _ok(url=f"ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id={APP_ID}")

    def _readable(self, channel: str) -> web.Response | None:
        """None when the bot may read ``channel``'s history, else Slack's error answer."""
        if channel not in self.channels:
            return _fail("channel_not_found")
        scope = "im:history" if self.channels[channel]["is_im"] else "channels:history"
        if scope not in self.scopes:
            return _fail("missing_scope", needed=scope, provided=",".join(sorted(self.scopes)))
        return None

    def _page(self, args: dict[str, Any], messages: list[dict[str, Any]]) -> web.Response:
        """``messages`` after ``oldest`` (and before ``latest``), ``limit`` of them."""
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        chosen = [
            m
            for m in messages
            if (oldest <= float(m["ts"]) if inclusive else oldest < float(m["ts"]))
            and float(m["ts"]) <= latest
        ]
        limit = int(args.get("limit") or 100)
        metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [
            m if metadata else {k: v for k, v in m.items() if k != "metadata"}
            for m in chosen[:limit]
        ]
        return _ok(messages=shown, has_more=len(chosen) > limit)

    def _conversations_history(self, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel") or "")
        refused = self._readable(channel)
        if refused is not None:
            return refused
        top = [
            m
            for m in self.history.get(channel, [])
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]
        return self._page(args, list(reversed(top)))

    def _conversations_replies(self, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel") or "")
        refused = self._readable(channel)
        if refused is not None:
            return refused
        parent = str(args.get("ts") or "")
        thread = [
            m
            for m in self.history.get(channel, [])
            if m["ts"] == parent or m.get("thread_ts") == parent
        ]
        if not thread:
            return _fail("thread_not_found")
        return self._page(args, thread)

    def cut_answers(self, count: int = 1) -> None:
        """Post the next ``count`` messages, then cut the connection before answering."""
        self._cut_answers += count

    def _users_info(self, args: dict[str, Any]) -> web.Response:
        user = self.users.get(str(args.get("user")))
        return _ok(user=user) if user else _fail("user_not_found")

    async def _post_message(self, args: dict[str, Any]) -> web.Response:
        if self._forced_429:
            retry_after = self._forced_429.pop(0)
            return _fail(
                "ratelimited", status=429, headers={"Retry-After": str(max(1, round(retry_after)))}
            )
        channel = str(args.get("channel") or "")
        if channel not in self.channels:
            return _fail("channel_not_found")
        text = args.get("text")
        if not isinstance(text, str) or not text.strip():
            if not args.get("blocks"):
                return _fail("no_text")
            text = ""
        text = text[:MAX_TEXT]
        ts = self._ts()
        thread_ts = args.get("thread_ts") or None
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "ts": ts,
            "team": TEAM_ID,
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": "hermes", "deleted": False},
        }
        if thread_ts is not None:
            message["thread_ts"] = str(thread_ts)
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            with contextlib.suppress(ValueError):
                metadata = json.loads(metadata)
        if isinstance(metadata, dict) and metadata.get("event_type"):
            message["metadata"] = {
                "event_type": str(metadata["event_type"]),
                "event_payload": metadata.get("event_payload") or {},
            }
        self.history.setdefault(channel, []).append(message)
        with self._changed:
            self._posted.append(
                Posted(channel, ts, text, str(thread_ts) if thread_ts else None, time.monotonic())
            )
            self._changed.notify_all()
        await self._message_events(channel, message, mentionable=False)
        return _ok(channel=channel, ts=ts, message=message)


def _user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": name,
        "deleted": False,
        "real_name": name.title(),
        "is_bot": bot,
        "is_app_user": False,
        "profile": {"display_name": name, "real_name": name.title()},
    }


def _rich_text(text: str) -> list[dict[str, Any]]:
    """The ``blocks`` Slack's clients attach to a typed message (plain text here)."""
    return [
        {
            "type": "rich_text",
            "block_id": secrets.token_hex(2),
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def _fail(
    error: str, *, status: int = 200, headers: dict[str, str] | None = None, **fields: Any
) -> web.Response:
    body = {"ok": False, "error": error, **fields}
    return web.json_response(body, status=status, headers=headers)
