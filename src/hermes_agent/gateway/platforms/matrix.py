"""Matrix: the gateway as a bot account on a homeserver, through matrix-nio.

One long-polling ``/sync`` loop (under :meth:`Platform.supervise`) reads what
happens in the bot's rooms. Text messages (``m.text``, ``m.emote``) from
others become :meth:`Gateway.submit` calls, with the event id as the message
id, the room id as the chat and the thread root (an ``m.thread`` relation) as
the thread. Notices (``m.notice``, what other bots send), edits and our own
events are not answered. In a room with more than the bot and one person,
only messages for the bot are (``require_mention``, on by default): a mention
(``m.mentions``, its user id, or its name at the start, which is taken out),
a reply to one of its messages, or a thread it already answers in. Invites
are accepted when the inviter or the room is allowed (or, with
``gateway.pairing`` on, so a stranger can be sent a pairing code), and
declined otherwise.

Acknowledging, on Matrix, is moving the sync position: ``next_batch`` is
written to ``platforms/matrix.json`` under HERMES_HOME only after every event
of that batch was submitted (stored in state.db). So a stop, crash or outage
at any point makes the next sync start where the last fully stored batch
ended: messages that arrived while the gateway was down are answered after
the start, and the few an interrupted batch may deliver twice are dropped by
the gateway's dedup on (platform, event id). When the homeserver cut the
timeline of a room (``limited``), the missing events are fetched with
``/messages`` back to the stored position, so nothing in between is skipped.
The very first start (no stored position) answers nothing older: a bot that
replies to a room's whole history the first time it connects is a bug.
In a room the bot has just joined, only what came after its invitation is
answered.

Replies: the chunk the gateway hands over is Markdown, which is what Matrix
clients put in ``body`` themselves; :meth:`Matrix.send_text` adds the HTML
rendering (``format: org.matrix.custom.html``, ``formatted_body``) when there
is any markup. The chunk is rendered after splitting, so a cut never falls
inside an HTML element. A reply in a thread stays in the thread; in a group
room the first chunk replies to the message it answers. The transaction id of
a reply chunk is derived from the message it answers and its text, and the
device is kept across restarts, so a chunk re-sent after a crash is dropped
by the homeserver instead of appearing twice.

Secrets: ``MATRIX_ACCESS_TOKEN``, or ``MATRIX_PASSWORD`` with
``gateway.platforms.matrix.user_id`` (the token then lives only in memory;
the device id is remembered so restarts reuse one device). Neither is ever
logged.

End-to-end encryption is not supported: an encrypted message is logged, and
an allowed sender is told once per room, in the clear, to use an unencrypted
room.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import logging
import os
import re
import uuid
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms.base import Platform, SendError

if TYPE_CHECKING:
    from nio import AsyncClient

    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway
    from hermes_agent.images import ImageRef

log = logging.getLogger("hermes_agent.gateway")

TOKEN_ENV = "MATRIX_ACCESS_TOKEN"
PASSWORD_ENV = "MATRIX_PASSWORD"
DEVICE_NAME = "hermes gateway"

#: How long the homeserver may hold a /sync open (ms) before answering "nothing new".
SYNC_TIMEOUT_MS = 30_000
#: Events per room in one sync; older ones in a cut ("limited") timeline are paged in.
TIMELINE_LIMIT = 20
#: The most events paged in to fill one room's gap after a long outage.
MAX_GAP_EVENTS = 2000
#: Seconds for a request other than /sync.
REQUEST_TIMEOUT = 30.0
#: A typing notification lasts this long (ms); the gateway renews it every few seconds.
TYPING_TIMEOUT_MS = 8_000
#: Room events are limited to 64 KiB; leave room for the envelope and signatures.
MAX_CONTENT_BYTES = 60_000

ENCRYPTED_NOTICE = (
    "This room is end-to-end encrypted, and I cannot read encrypted messages (the hermes "
    "gateway does not support Matrix encryption). Please talk to me in a room without "
    "encryption."
)

_ANSWERED_MSGTYPES = ("m.text", "m.emote")
#: 4xx answers that a retry cannot fix (the rate limit and timeouts excepted).
_RETRYABLE_4XX = (408, 429)


class _SyncFailed(Exception):
    """A /sync (or login) the homeserver answered with an error: reconnect with backoff."""


class Matrix(Platform):
    name = "matrix"
    # A room event may hold 64 KiB; the body and its HTML rendering both count.
    max_message_length = 10_000
    # /sync answers at least every SYNC_TIMEOUT_MS: silence beyond that is a dead connection.
    watchdog_seconds = SYNC_TIMEOUT_MS / 1000 * 3

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        try:
            import nio  # noqa: F401
        except ImportError:
            raise UsageError(
                "the matrix platform needs matrix-nio: pip install 'hermes-agent[matrix]'"
            ) from None
        prefix = "gateway.platforms.matrix"
        self.homeserver = str(config.get(f"{prefix}.homeserver") or "").strip().rstrip("/")
        self.user_id = str(config.get(f"{prefix}.user_id") or "").strip()
        self.device_id = str(config.get(f"{prefix}.device_id") or "").strip()
        self.pairing = bool(config.get("gateway.pairing"))
        self.require_mention = bool(config.get(f"{prefix}.require_mention"))
        if not self.homeserver:
            raise UsageError(
                f"{config.path}: {prefix}.homeserver is not set: give the homeserver's URL, "
                "e.g. https://matrix.example.org"
            )
        if not re.match(r"^https?://[^/\s]+", self.homeserver):
            raise UsageError(
                f"{config.path}: {prefix}.homeserver: {self.homeserver!r} is not an http(s) URL "
                "(e.g. https://matrix.example.org)"
            )
        if self.user_id and not re.match(r"^@[^:\s]+:\S+$", self.user_id):
            raise UsageError(
                f"{config.path}: {prefix}.user_id: {self.user_id!r} is not a Matrix user id "
                "(e.g. @hermes:example.org)"
            )
        self._token = os.environ.get(TOKEN_ENV, "").strip()
        self._password = os.environ.get(PASSWORD_ENV, "")
        if not self._token and not self._password:
            raise UsageError(
                f"the matrix platform needs {TOKEN_ENV} (an access token of the bot account) "
                f"or {PASSWORD_ENV} (its password, with {prefix}.user_id) in {home.env_path()}"
            )
        if not self._token and not self.user_id:
            raise UsageError(
                f"{config.path}: {prefix}.user_id is not set: logging in with {PASSWORD_ENV} "
                "needs the bot's user id (e.g. @hermes:example.org)"
            )
        from hermes_agent.gateway.platforms._liblog import route_library_logs

        # nio warns on every error answer ("Error validating response"), which this
        # adapter reports itself, in its words: only nio's errors reach the gateway log.
        route_library_logs({"nio": logging.ERROR})
        self._state_path = home.platform_state_path(self.name)
        #: What platforms/matrix.json held at start, taken over at the first login.
        self._stored: dict[str, Any] | None = None
        self._since: str | None = None
        self._client: AsyncClient | None = None
        self._typing: set[str] = set()
        self._replied: dict[tuple[str, str], None] = {}  # Replies whose first chunk went out.
        self._declined: set[str] = set()  # Invites refused (or failed) in this run.
        self._told_encrypted: set[str] = set()
        #: Ids of the bot's newest messages: a reply to one of them is for the bot.
        self._sent_events: dict[str, None] = {}

    # --- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        from nio import AsyncClient, AsyncClientConfig

        self._stored = self._load_state()
        if not self.device_id and not self._token and self._stored.get("user_id") == self.user_id:
            self.device_id = str(self._stored.get("device_id") or "")
        client_config = AsyncClientConfig(
            # Retries, rate limits and reconnects are ours (supervise, delivery): nio must
            # give up at once instead of sleeping inside a request for ever.
            max_limit_exceeded=0,
            max_timeouts=0,
            request_timeout=REQUEST_TIMEOUT,
            encryption_enabled=False,
            store=None,
            store_sync_tokens=False,
        )
        self._client = AsyncClient(
            self.homeserver, self.user_id, self.device_id, config=client_config
        )
        try:
            await self._log_in()
        except _SyncFailed as exc:
            # The homeserver is down or busy: start anyway, the sync loop logs in when it can.
            log.warning("matrix: cannot log in yet (%s); retrying in the background", exc)
        except BaseException:
            await self._client.close()
            self._client = None
            raise
        self.supervise("sync", self._sync_forever)

    async def stop(self) -> None:
        await self.stop_supervised()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    # --- logging in -----------------------------------------------------------------

    async def _log_in(self) -> None:
        """Log in (password) or check the token; HermesError when the homeserver refuses."""
        from nio import LoginResponse, WhoamiResponse

        client = self._require_client()
        if self._token:
            client.access_token = self._token
            answer = await self._call(client.whoami(), "checking the access token")
            if not isinstance(answer, WhoamiResponse):
                self._refused(answer, TOKEN_ENV)
                raise _SyncFailed(f"checking the access token failed: {_describe(answer)}")
            if self.user_id and answer.user_id != self.user_id:
                raise HermesError(
                    f"matrix: {TOKEN_ENV} belongs to {answer.user_id}, not to "
                    f"gateway.platforms.matrix.user_id {self.user_id}; fix one of them"
                )
            client.user_id = self.user_id = answer.user_id
            client.device_id = self.device_id = answer.device_id or ""
        else:
            client.access_token = ""
            answer = await self._call(
                client.login(password=self._password, device_name=DEVICE_NAME), "logging in"
            )
            if not isinstance(answer, LoginResponse):
                self._refused(answer, PASSWORD_ENV)
                raise _SyncFailed(f"logging in failed: {_describe(answer)}")
            self.device_id = answer.device_id
        if self._stored is not None:
            # Now that the account is known for sure: continue from its stored position.
            stored, self._stored = self._stored, None
            if stored.get("user_id") == self.user_id:
                self._since = stored.get("next_batch") or None
            elif stored:
                log.info("matrix: %s is for another account; starting afresh", self._state_path)
        self._save_state()
        log.info("matrix: logged in as %s (device %s)", self.user_id, self.device_id)

    def _refused(self, answer: Any, secret: str) -> None:
        """Raise a HermesError naming the platform when the homeserver rejected the secret."""
        code = getattr(answer, "status_code", None)
        status = _http_status(answer)
        if code in ("M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_USER_DEACTIVATED", "M_MISSING_TOKEN") or (
            status in (401, 403)
        ):
            what = "access token" if secret == TOKEN_ENV else f"password of {self.user_id}"
            raise HermesError(
                f"matrix: {self.homeserver} rejected the {what} ({code or status}: "
                f"{getattr(answer, 'message', '')}); check {secret} in {home.env_path()}"
            )

    async def _call(self, request: Any, what: str) -> Any:
        """Await a nio request; a transport failure becomes _SyncFailed (retry later)."""
        import aiohttp

        try:
            return await request
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _SyncFailed(f"{what}: {type(exc).__name__}: {exc}") from None

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise _SyncFailed("the matrix platform is not started")
        return self._client

    # --- the sync loop --------------------------------------------------------------

    async def _sync_forever(self) -> None:
        """One connection: log in if needed, then sync until something fails."""
        from nio import SyncResponse

        from hermes_agent.gateway.platforms.base import GatewayClosedError

        client = self._require_client()
        if not client.access_token:
            await self._log_in()
        sync_filter = {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "timeline": {"limit": TIMELINE_LIMIT},
                "state": {"lazy_load_members": True},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }
        while True:
            answer = await self._call(
                client.sync(timeout=SYNC_TIMEOUT_MS, since=self._since, sync_filter=sync_filter),
                "sync",
            )
            if not isinstance(answer, SyncResponse):
                if getattr(answer, "status_code", None) == "M_UNKNOWN_TOKEN" and not self._token:
                    client.access_token = ""  # Logged out by the server: log in again.
                raise _SyncFailed(f"sync failed: {_describe(answer)}")
            self.alive()
            try:
                await self._handle_sync(answer)
            except GatewayClosedError:
                # Shutting down: this batch is not acknowledged (the position is not
                # moved), so the next start sees it again. Wait to be cancelled.
                await asyncio.Event().wait()
            if answer.next_batch != self._since:
                self._since = answer.next_batch
                self._save_state()

    async def _handle_sync(self, answer: Any) -> None:
        first = self._since is None
        for room_id, invite in answer.rooms.invite.items():
            await self._invited(room_id, invite.invite_state)
        for room_id, room in answer.rooms.join.items():
            events = [e.source for e in room.timeline.events if isinstance(e.source, dict)]
            if first:
                if any(_is_message(e) for e in events):
                    log.info(
                        "matrix: first sync of this account: earlier messages in %s are not "
                        "answered",
                        room_id,
                    )
                continue
            cutoff = _joined_at(events, self.user_id)
            if cutoff is None and room.timeline.limited and room.timeline.prev_batch:
                events = await self._fill_gap(room_id, room.timeline.prev_batch) + events
            for event in events[cutoff + 1 if cutoff is not None else 0 :]:
                await self._event(room_id, event)

    async def _fill_gap(self, room_id: str, prev_batch: str) -> list[dict[str, Any]]:
        """The events the homeserver left out of a cut timeline, oldest first."""
        from nio import MessageDirection, RoomMessagesResponse

        client = self._require_client()
        missing: list[dict[str, Any]] = []
        start = prev_batch
        while len(missing) < MAX_GAP_EVENTS:
            answer = await self._call(
                client.room_messages(
                    room_id,
                    start=start,
                    end=self._since,
                    direction=MessageDirection.back,
                    limit=100,
                ),
                "reading missed messages",
            )
            if not isinstance(answer, RoomMessagesResponse):
                raise _SyncFailed(f"reading missed messages failed: {_describe(answer)}")
            self.alive()
            missing.extend(e.source for e in answer.chunk if isinstance(e.source, dict))
            if not answer.chunk or not answer.end or answer.end == start:
                break
            start = answer.end
        else:
            log.warning(
                "matrix: more than %d events missed in %s; older ones are not answered",
                MAX_GAP_EVENTS,
                room_id,
            )
        log.info("matrix: read %d events missed in %s", len(missing), room_id)
        missing.reverse()
        return missing

    async def _invited(self, room_id: str, invite_state: list[Any]) -> None:
        from nio import ErrorResponse, InviteMemberEvent

        if room_id in self._declined:
            return
        client = self._require_client()
        inviter = ""
        for event in invite_state:
            # nio moves an invite member event's content into attributes (not in .source).
            if (
                isinstance(event, InviteMemberEvent)
                and event.state_key == self.user_id
                and event.membership == "invite"
            ):
                inviter = str(event.sender or "")
        allowed = self.gateway.access.allowed(self.name, inviter, room_id)
        if not allowed and not self.pairing:
            log.info("matrix: declining the invite of %s to %s (not allowed)", inviter, room_id)
            answer = await self._call(client.room_leave(room_id), "declining an invite")
        else:
            reason = "allowed" if allowed else "not allowed yet: to send a pairing code"
            log.info("matrix: joining %s, invited by %s (%s)", room_id, inviter, reason)
            answer = await self._call(client.join(room_id), "joining a room")
        if isinstance(answer, ErrorResponse):
            status = _http_status(answer)
            if status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
                self._declined.add(room_id)  # Retrying cannot help; try again after a restart.
            log.warning("matrix: could not answer the invite to %s: %s", room_id, _describe(answer))
        elif not allowed and not self.pairing:
            self._declined.add(room_id)

    async def _event(self, room_id: str, event: dict[str, Any]) -> None:
        sender = str(event.get("sender") or "")
        if not sender or sender == self.user_id:
            return
        kind = event.get("type")
        if kind == "m.room.encrypted":
            await self._encrypted(room_id, sender)
            return
        if kind != "m.room.message" or not isinstance(event.get("event_id"), str):
            return
        content = event.get("content")
        image = isinstance(content, dict) and content.get("msgtype") == "m.image"
        if not isinstance(content, dict) or not (
            image or content.get("msgtype") in _ANSWERED_MSGTYPES
        ):
            return  # Notices (bots), other media, redacted messages.
        body = content.get("body")
        if not isinstance(body, str) or not body.strip():
            return
        if image:
            # Since Matrix 1.10 a caption is the body when "filename" is set and differs.
            name = content.get("filename")
            caption = isinstance(name, str) and name != body
            body = body if caption else "[The user sent this image without any text.]"
        relation = content.get("m.relates_to")
        relation = relation if isinstance(relation, dict) else {}
        if relation.get("rel_type") == "m.replace":
            return  # An edit of an earlier message, which was answered already.
        thread_id = ""
        if relation.get("rel_type") == "m.thread" and isinstance(relation.get("event_id"), str):
            thread_id = relation["event_id"]
        if self.require_mention and self._is_group(room_id):
            addressed, body = self._addressed(room_id, content, body, thread_id)
            if not addressed:
                return  # Room talk not meant for the bot.
        if not thread_id and isinstance(relation.get("m.in_reply_to"), dict):
            body = _strip_reply_fallback(body)
        if content.get("msgtype") == "m.emote":
            body = f"* {self._display_name(room_id, sender)} {body}"
        pictures: list[ImageRef] = []
        if image and self.gateway.access.allowed(self.name, sender, room_id):
            # Stored before submit; the sync position moves only after the whole batch.
            note, pictures = await self._fetch_image(content)
            body = f"{note}\n\n{body}" if note else body
        self.gateway.submit(
            platform=self.name,
            chat_id=room_id,
            message_id=event["event_id"],
            text=body,
            thread_id=thread_id,
            user_id=sender,
            user_name=self._display_name(room_id, sender),
            images=pictures,
        )

    async def _fetch_image(self, content: dict[str, Any]) -> tuple[str, list[ImageRef]]:
        """Download an ``m.image`` from the homeserver's media repository and store it.

        ``("", [ref])``, or a note saying why it is not shown and ``[]``. Only
        unencrypted media (``url``) can be read: encrypted rooms are not answered.
        """
        from nio import DownloadError

        from hermes_agent import images

        url = content.get("url")
        raw_info = content.get("info")
        info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
        try:
            if not isinstance(url, str) or not re.fullmatch(
                r"mxc://[A-Za-z0-9.:\[\]-]+/[\w-]+", url
            ):
                raise images.ImageError("it has no media address")
            size = info.get("size")
            if isinstance(size, int) and size > images.MAX_INPUT_BYTES:
                raise images.ImageError("it is too large")
            answer = await self._require_client().download(mxc=url, allow_remote=True)
            if isinstance(answer, DownloadError) or not isinstance(
                getattr(answer, "body", None), bytes
            ):
                log.info("matrix: image %s not fetched: %s", url, _describe(answer))
                raise images.ImageError("the homeserver did not hand it over")
            ref = await asyncio.to_thread(
                images.ingest_bytes, answer.body, name=str(content.get("filename") or "")
            )
        except images.ImageError as exc:
            return f"[The user sent an image that cannot be shown to you: {exc}.]", []
        return "", [ref]

    def _addressed(
        self, room_id: str, content: dict[str, Any], body: str, thread_id: str
    ) -> tuple[bool, str]:
        """In a group room: whether a message is for the bot, and its text without the
        leading mention ("Hermes: ...")."""
        mentions = content.get("m.mentions")
        user_ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
        addressed = isinstance(user_ids, list) and self.user_id in user_ids
        # A reply quoting the bot: the fallback starts "> <@bot:server> ...".
        addressed = addressed or body.startswith(f"> <{self.user_id}>")
        relation = content.get("m.relates_to")
        replied = relation.get("m.in_reply_to") if isinstance(relation, dict) else None
        if isinstance(replied, dict) and replied.get("event_id") in self._sent_events:
            addressed = True
        if thread_id and self.gateway.db.route(self.name, room_id, thread_id) is not None:
            addressed = True  # A thread the bot already talks in.
        # "Hermes: ..." (what clients put in the body for a pill), or the user id anywhere.
        text = body.strip()
        name = self._display_name(room_id, self.user_id)
        for prefix in dict.fromkeys((self.user_id, name)):
            match = re.match(rf"@?{re.escape(prefix)}\s*[:,]\s*", text, re.IGNORECASE)
            if match and text[match.end() :]:
                return True, text[match.end() :]
        return addressed or self.user_id in body, body

    async def _encrypted(self, room_id: str, sender: str) -> None:
        if room_id in self._told_encrypted:
            return
        self._told_encrypted.add(room_id)
        log.warning(
            "matrix: encrypted message from %s in %s not read: end-to-end encryption is not "
            "supported; use an unencrypted room",
            sender,
            room_id,
        )
        if not self.gateway.access.allowed(self.name, sender, room_id):
            return
        client = self._require_client()
        try:
            await client.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.notice", "body": ENCRYPTED_NOTICE},
                tx_id=f"hermes-e2ee-{_digest(room_id)}",
            )
        except Exception as exc:  # A courtesy: never let it stop the sync loop.
            log.warning(
                "matrix: could not tell %s that encryption is unsupported: %s", room_id, exc
            )

    def _display_name(self, room_id: str, user_id: str) -> str:
        room = self._client.rooms.get(room_id) if self._client is not None else None
        name = room.user_name(user_id) if room is not None else None
        return name or user_id

    # --- sending --------------------------------------------------------------------

    def format(self, text: str) -> str:
        """The Markdown unchanged: it is the message's ``body``, as Matrix clients send it.

        The HTML (``formatted_body``) is rendered per chunk in :meth:`send_text`,
        after the gateway split the answer, so no cut ever falls inside an element.
        """
        return text

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> None:
        from nio import RoomSendResponse

        client = self._client
        if client is None or not client.access_token:
            raise SendError("not connected to the homeserver yet")
        if chat_id in self._typing:
            self._typing.discard(chat_id)
            with contextlib.suppress(Exception):
                await client.room_typing(chat_id, typing_state=False)
        content = self._content(chat_id, thread_id, text, reply_to)
        if reply_to:
            # The same chunk for the same message gets the same transaction id: a chunk
            # re-sent after a crash is recognised by the homeserver (per device).
            tx_id = f"hermes-{_digest(chat_id, thread_id, reply_to, text)}"
        else:
            tx_id = f"hermes-{uuid.uuid4().hex}"
        try:
            answer = await client.room_send(chat_id, "m.room.message", content, tx_id=tx_id)
        except Exception as exc:
            import aiohttp

            if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
                raise SendError(f"{type(exc).__name__}: {exc}") from None
            raise
        if isinstance(answer, RoomSendResponse):
            if reply_to:
                self._replied[(chat_id, reply_to)] = None
                while len(self._replied) > 1000:
                    del self._replied[next(iter(self._replied))]
            self._sent_events[answer.event_id] = None
            while len(self._sent_events) > 1000:
                del self._sent_events[next(iter(self._sent_events))]
            return
        raise _send_error(answer)

    def _content(self, room_id: str, thread_id: str, text: str, reply_to: str) -> dict[str, Any]:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        rendered = render_html(text)
        if rendered is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = rendered
        if thread_id:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_id,
                # Clients without threads show it as a reply to the message answered.
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": reply_to or thread_id},
            }
        elif reply_to and (room_id, reply_to) not in self._replied and self._is_group(room_id):
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        size = len(json.dumps(content, ensure_ascii=False).encode("utf-8"))
        if size > MAX_CONTENT_BYTES and "formatted_body" in content:
            del content["format"], content["formatted_body"]  # Plain text still fits.
        return content

    def _is_group(self, room_id: str) -> bool:
        """Whether more than the user and the bot are in the room (then replies quote)."""
        room = self._client.rooms.get(room_id) if self._client is not None else None
        return room is not None and room.joined_count > 2

    async def typing(self, chat_id: str, thread_id: str) -> None:
        client = self._client
        if client is None or not client.access_token:
            return
        self._typing.add(chat_id)
        await client.room_typing(chat_id, typing_state=True, timeout=TYPING_TIMEOUT_MS)

    # --- the position file ----------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        """The stored sync position and device, if they belong to this account."""
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("matrix: ignoring unreadable %s: %s", self._state_path, exc)
            return {}
        if not isinstance(state, dict):
            return {}
        if state.get("homeserver") != self.homeserver:
            log.info("matrix: %s is for another homeserver; starting afresh", self._state_path)
            return {}
        return state

    def _save_state(self) -> None:
        from hermes_agent.fsutil import atomic_write

        state = {
            "homeserver": self.homeserver,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "next_batch": self._since,
        }
        atomic_write(self._state_path, json.dumps(state, indent=1) + "\n", mode=0o600)


# --- helpers ----------------------------------------------------------------------------


def render_html(text: str) -> str | None:
    """The Matrix HTML of Markdown ``text``, or None when it has no markup worth sending.

    Raw HTML in the text is escaped, not passed through: the model's words are
    shown, never interpreted as markup.
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    md.enable(["table", "strikethrough"])
    rendered = str(md.render(text)).strip()
    escaped = html.escape(text.strip(), quote=False).replace('"', "&quot;")
    plain = "<p>" + escaped.replace("\n", "<br />\n") + "</p>"
    if rendered == plain:
        return None
    return rendered


def _is_message(event: dict[str, Any]) -> bool:
    return event.get("type") in ("m.room.message", "m.room.encrypted")


def _joined_at(events: list[dict[str, Any]], user_id: str) -> int | None:
    """In a room just joined: the index of our invitation (else of our join) in ``events``.

    None when the timeline does not show us joining (a room we were in already).
    Messages up to that index were written before the bot was asked in.
    """
    joined = None
    for index, event in enumerate(events):
        if event.get("type") != "m.room.member" or event.get("state_key") != user_id:
            continue
        membership = (event.get("content") or {}).get("membership")
        previous = ((event.get("unsigned") or {}).get("prev_content") or {}).get("membership")
        if membership == "join" and previous != "join":
            joined = index
    if joined is None:
        return None
    for index in range(joined - 1, -1, -1):
        event = events[index]
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == user_id
            and (event.get("content") or {}).get("membership") == "invite"
        ):
            return index
    return joined


def _strip_reply_fallback(body: str) -> str:
    """A reply's text without the quoted message older clients put in front of it."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and not lines[index].strip():
        index += 1
    return "\n".join(lines[index:]) or body


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]


def _http_status(answer: Any) -> int | None:
    transport = getattr(answer, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


def _describe(answer: Any) -> str:
    code = getattr(answer, "status_code", None)
    message = getattr(answer, "message", None) or "no details"
    status = _http_status(answer)
    head = " ".join(str(p) for p in (status, code) if p)
    return f"{head}: {message}" if head else str(message)


def _send_error(answer: Any) -> SendError:
    """The SendError for a refused room_send: rate limit, permanent refusal, or transient."""
    code = getattr(answer, "status_code", None)
    status = _http_status(answer)
    description = _describe(answer)
    if code == "M_LIMIT_EXCEEDED" or status == 429:
        retry_ms = getattr(answer, "retry_after_ms", None)
        retry_after = (
            retry_ms / 1000 if isinstance(retry_ms, int | float) and retry_ms > 0 else None
        )
        wait = f", retry after {retry_after:.2f} s" if retry_after is not None else ""
        return SendError(f"rate limited{wait} ({description})", retry_after=retry_after)
    if code == "M_FORBIDDEN" or (
        status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX
    ):
        return SendError(f"refused by the homeserver ({description})", permanent=True)
    return SendError(description)
