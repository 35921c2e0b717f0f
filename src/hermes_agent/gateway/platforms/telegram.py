"""Telegram: a bot account, through python-telegram-bot's ``Bot`` (the ``telegram`` extra).

Updates come by long polling (``getUpdates``), which needs no public address.
The adapter drives ``getUpdates`` itself instead of using the library's
``Application``/``Updater``: the Updater puts a batch of updates in its queue
and asks for the next batch with ``offset = last update_id + 1`` right away,
which confirms the batch to Telegram (``getUpdates`` forgets every update
below ``offset``) before any handler has looked at it; a crash then loses
those messages for good. It also re-parses nothing it could not parse: one
malformed update makes its whole batch fail and be fetched again forever.
Here the offset is moved past an update only after ``Gateway.submit`` stored
it (or refused its sender, or it was skipped as malformed or not for us), so a
crash at any moment makes Telegram deliver the unconfirmed updates again, and
``submit`` recognises those it stored already. The raw JSON of each update is
read on its own (``Bot.do_api_request``), so a malformed one is logged and
skipped without holding up the others.

The id a message is stored under is ``"<chat_id>:<message_id>"``: Telegram's
message ids are unique within a chat and belong to the message itself, so a
redelivery of the same update, or the same message seen again through any
other path, maps to the same row. ``update_id`` is stable for a redelivery
too, but it names the notification, not the message (Telegram even restarts
its sequence at random after a week without updates), and the reply needs
the message id anyway (``reply_parameters``).

What is answered:

- Private chats: every message.
- Groups and supergroups: only messages that mention the bot (``@name``,
  also ``/command@name``) or reply to one of its messages; the mention is
  taken out of the text. (With Telegram's default privacy mode those are the
  only group messages a bot receives anyway.) Channels: nothing.
- Forum topics: each topic is a conversation of its own (``thread_id`` is the
  ``message_thread_id``), and replies go to the same topic.
- Edited messages: not answered again (the original was answered; an edit
  that triggered a second answer would be confusing), and not even asked for
  (``allowed_updates`` is ``["message"]``).
- Photos, and files sent as documents whose type is an image: downloaded
  (``getFile``), checked and stored in HERMES_HOME/images
  (:mod:`hermes_agent.images`) *before* the update is submitted and confirmed,
  and shown to the model with the caption. One that cannot be fetched or is
  not a usable image becomes a note saying why.
- Stickers, voice, other files...: the agent cannot see them, so it gets a
  note saying what was sent, with the caption if there is one, and answers
  accordingly (going through ``submit`` keeps access control, deduplication
  and the conversation's order for these too).
- Messages from bots (including this one): ignored.

Replies are HTML (``parse_mode=HTML``). :meth:`Telegram.format` deliberately
returns the Markdown unchanged: the gateway splits that (closing and
reopening code fences at cuts) and each chunk is converted in
:meth:`Telegram.send_text`, so a cut can never fall inside an HTML tag, and
Markdown emphasis that a cut separates from its end stays literal text
instead of breaking the chunk. Telegram counts its 4096-character limit on
the text after entity parsing, which is never longer than the Markdown chunk
(markup only disappears, ``&`` counts as one character), so the gateway's
split at 4096 keeps every chunk within the limit. If Telegram still refuses
the formatting of a chunk (``can't parse entities``), that chunk is sent
again as plain text.

Each reply chunk arrives once, even when the gateway dies between Telegram
accepting it and state.db recording that. The Bot API has no idempotency
key, but message ids can be looked up: private chats and basic groups take
their ids from the bot's one ever-growing sequence, supergroups from their
own. Just before a chunk is sent, :meth:`Telegram.delivery_mark` notes the
newest id the adapter has seen in that sequence (from updates and from its
own sends, and at start from state.db) and how many ids others may take
meanwhile; state.db keeps it with the reply. After a crash,
:meth:`Telegram.was_sent` asks about each id in that window with an
``editMessageReplyMarkup`` that changes nothing: "message is not modified"
means a message of the bot is there, "message to edit not found" or "can't
be edited" that there is none of ours. The gateway sends to a chat one
message at a time, so the only message of the bot after the mark is the
chunk in question. (The probe would take an inline keyboard off a bot
message; this bot never sends any.)
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms.base import (
    Outbound,
    Platform,
    SendError,
    optional_modules_skipped,
)

if TYPE_CHECKING:
    import telegram

    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway

log = logging.getLogger("hermes_agent.gateway.telegram")

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
#: What getUpdates is asked for: new messages only (see the module doc on edits).
ALLOWED_UPDATES = ("message",)
#: The watchdog restarts polling after the long-poll timeout plus this much silence.
WATCHDOG_SLACK = 5.0
#: The HTTP read timeout of a long poll exceeds its timeout by this much (after the watchdog).
POLL_READ_SLACK = 15.0
#: Timeouts of ordinary requests (sendMessage, sendChatAction, getMe), in seconds.
#: Generous on purpose: a send that times out after Telegram accepted it is sent twice.
REQUEST_TIMEOUT = 20.0
CONNECT_TIMEOUT = 10.0
#: Most requests in flight at once (conversations are answered side by side).
CONNECTIONS = 64
#: Message ids that may be taken, between a delivery mark and the send, by messages the
#: adapter has not seen yet (users writing in other chats), beyond its own sends in flight.
MARK_MARGIN = 64
#: Ids looked up at once when checking whether a chunk arrived.
PROBE_BATCH = 8
#: Most ids one check looks up; beyond that the chunk counts as "cannot tell".
MAX_PROBES = 1024
#: Message ids remembered per sequence (received and sent), so a check skips them.
KNOWN_IDS = 8192
#: How long a check after a start waits for the backlog of updates to be read.
CATCH_UP_WAIT = 5.0
#: Updates asked for per getUpdates (Telegram's maximum).
POLL_LIMIT = 100

#: What a message carries instead of text, in the order to check (an animation
#: also has a ``document``), and how the agent is told about it.
_MEDIA = (
    ("photo", "a photo"),
    ("sticker", "a sticker"),
    ("voice", "a voice message"),
    ("video_note", "a round video message"),
    ("animation", "an animation (GIF)"),
    ("video", "a video"),
    ("audio", "an audio file"),
    ("document", "a file"),
    ("location", "a location"),
    ("venue", "a venue"),
    ("contact", "a contact"),
    ("poll", "a poll"),
    ("dice", "a dice roll"),
)


@dataclass(frozen=True)
class Incoming:
    """A message for the agent, taken from one update."""

    chat_id: str
    thread_id: str
    message_id: str
    user_id: str
    user_name: str
    text: str
    #: The Telegram file id of the picture that came with it ("" for none).
    image_file: str = ""


#: What the model is told when a photo comes without a caption.
PHOTO_WITHOUT_TEXT = "[The user sent this image without any text.]"


class _Moved(Exception):
    """A send failed because the group is now the supergroup ``new_chat_id``."""

    def __init__(self, new_chat_id: int) -> None:
        super().__init__(new_chat_id)
        self.new_chat_id = new_chat_id


class MalformedUpdate(ValueError):
    """An update that lacks what every message has (a message id, a chat id...)."""


class Telegram(Platform):
    name = "telegram"
    max_message_length = 4096

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        try:
            # Optional modules PTB (and httpcore under it) use only if installed, for
            # features the adapter never uses (pytz time zones, Telegram Passport
            # decryption, HTTP/2): 3.9 MiB of idle RSS together.
            with optional_modules_skipped("pytz", "cryptography", "h2"):
                import telegram  # noqa: F401
        except ImportError:
            raise UsageError(
                "the telegram platform needs python-telegram-bot: "
                "pip install 'hermes-agent[telegram]'"
            ) from None
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise UsageError(
                f"the telegram platform needs {TOKEN_ENV} in {home.env_path()}: the token "
                f"@BotFather gave you for the bot. Add a line {TOKEN_ENV}=123456789:AA... "
                "to that file"
            )
        if not re.fullmatch(r"\d{1,20}:[A-Za-z0-9_-]{20,}", token):
            raise UsageError(
                f"{TOKEN_ENV} in {home.env_path()} does not look like a bot token "
                "(digits, a colon, then the secret: 123456789:AA...); copy it again from "
                "@BotFather"
            )
        self._token = token
        base_url = str(config.get("gateway.platforms.telegram.base_url") or "").strip()
        if base_url and not re.match(r"^https?://", base_url):
            raise UsageError(
                f"{config.path}: gateway.platforms.telegram.base_url: expected an http(s) URL "
                f"ending in /bot (the token is appended), got {base_url!r}"
            )
        self._custom_url = bool(base_url)
        self._base_url = base_url or DEFAULT_BASE_URL
        self.poll_timeout = int(config.get("gateway.platforms.telegram.poll_timeout"))
        # Polling answers at least every poll_timeout seconds, even with nothing new.
        self.watchdog_seconds = self.poll_timeout + WATCHDOG_SLACK
        self._bot: telegram.Bot | None = None
        self._me: tuple[int, str] | None = None  # The bot's user id and username.
        self._offset: int | None = None  # The next getUpdates offset: all below is stored.
        self._closed = False
        # The newest message id seen per id sequence (see _sequence), and sends under way.
        self._newest: dict[str, int] = {}
        self._sending = 0
        # Every recent id seen per sequence, and whether the updates waiting at start
        # were read (until then the ids users took meanwhile are unknown): see was_sent.
        self._known: dict[str, set[int]] = {}
        self._caught_up = asyncio.Event()
        self._started_at = 0.0

    # --- Platform -------------------------------------------------------------------

    async def start(self) -> None:
        from telegram import Bot
        from telegram.error import InvalidToken, TelegramError
        from telegram.request import HTTPXRequest

        from hermes_agent.gateway.platforms._liblog import route_library_logs

        route_library_logs({"telegram": logging.WARNING})
        request = HTTPXRequest(
            connection_pool_size=CONNECTIONS,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=REQUEST_TIMEOUT,
            write_timeout=REQUEST_TIMEOUT,
            pool_timeout=REQUEST_TIMEOUT,
        )
        # One HTTP client for the long poll and the sends (the pool has room for both):
        # by default PTB builds a second one for getUpdates, with its own TLS context.
        bot = Bot(
            self._token,
            base_url=self._base_url,
            # Files come from <server>/file/bot<token>/<path>, beside <server>/bot<token>/.
            base_file_url=self._base_url.removesuffix("bot") + "file/bot",
            request=request,
            get_updates_request=request,
        )
        try:
            await bot.initialize()  # getMe: checks the token.
        except InvalidToken:
            with contextlib.suppress(Exception):
                await bot.shutdown()
            where = (
                " (or gateway.platforms.telegram.base_url is not a Bot API server)"
                if self._custom_url
                else ""
            )
            # PTB's own message holds the token: never show it.
            raise HermesError(
                f"telegram: the bot token was rejected ({TOKEN_ENV} in {home.env_path()}){where}; "
                "copy it again from @BotFather"
            ) from None
        except TelegramError as exc:  # Network trouble: not fatal, polling retries.
            log.warning(
                "telegram: cannot reach the Bot API yet (%s); retrying in the background", exc
            )
        else:
            self._me = (bot.bot.id, bot.bot.username or "")
            log.info("telegram: connected as @%s", self._me[1])
        self._bot = bot
        self._started_at = time.monotonic()
        # As many as are remembered: a chunk left unsettled through several restarts
        # has an old mark, and every id after it that is not known gets looked up.
        for ref in self.gateway.db.recent_platform_ids(self.name, limit=KNOWN_IDS // 2):
            chat, _, message_id = ref.rpartition(":")
            if message_id.isdigit():
                self._saw(chat, int(message_id))
        self.supervise("polling", self._poll)

    async def stop(self) -> None:
        await self.stop_supervised()
        bot, self._bot = self._bot, None
        if bot is None:
            return
        if self._offset is not None:
            # Confirm what was stored since the last poll, so the next start does not
            # fetch it again (harmless if this fails: submit deduplicates).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await bot.do_api_request(
                        "getupdates", api_kwargs={"offset": self._offset, "timeout": 0, "limit": 1}
                    )
        with contextlib.suppress(Exception):
            await bot.shutdown()

    def format(self, text: str) -> str:
        """Unchanged: the gateway splits Markdown, :meth:`send_text` makes each chunk HTML."""
        return text

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> str | None:
        from telegram import ReplyParameters

        bot = self._bot
        if bot is None:
            raise SendError("telegram: not connected")
        kwargs: dict[str, Any] = {"chat_id": _chat_ref(chat_id)}
        if thread_id:
            kwargs["message_thread_id"] = int(thread_id)
        replied = _replied_message_id(chat_id, reply_to)
        if replied is not None:
            # Still sent when the user deleted their message meanwhile.
            kwargs["reply_parameters"] = ReplyParameters(
                message_id=replied, allow_sending_without_reply=True
            )
        self._sending += 1
        try:
            try:
                return await self._send(bot, chat_id, text, kwargs)
            except _Moved as moved:
                new_chat_id = moved.new_chat_id
            # The group became a supergroup: the answer goes there (without the reply
            # reference: the message it answers keeps its id in the old group only).
            self._moved(chat_id, str(new_chat_id))
            kwargs["chat_id"] = new_chat_id
            kwargs.pop("reply_parameters", None)
            try:
                return await self._send(bot, str(new_chat_id), text, kwargs)
            except _Moved:
                raise SendError("telegram: the group moved again", permanent=True) from None
        finally:
            self._sending -= 1

    async def _send(
        self, bot: telegram.Bot, chat_id: str, text: str, kwargs: dict[str, Any]
    ) -> str:
        """sendMessage as HTML, then as plain text if Telegram refuses the formatting."""
        from telegram.constants import ParseMode
        from telegram.error import BadRequest, ChatMigrated, TelegramError

        try:
            sent = await bot.send_message(
                text=markdown_to_html(text), parse_mode=ParseMode.HTML, **kwargs
            )
            return self._sent(chat_id, sent.message_id)
        except ChatMigrated as exc:
            raise _Moved(exc.new_chat_id) from None
        except BadRequest as exc:
            if "can't parse entities" not in str(exc).lower():
                raise _send_error(exc) from None
            log.warning(
                "telegram: chat %s: the formatting was refused (%s); sent as plain text",
                chat_id,
                exc,
            )
        except TelegramError as exc:
            raise _send_error(exc) from None
        try:
            sent = await bot.send_message(text=text, **kwargs)
        except TelegramError as exc:
            raise _send_error(exc) from None
        return self._sent(chat_id, sent.message_id)

    def _moved(self, old_chat_id: str, new_chat_id: str) -> None:
        """A group became a supergroup: its conversation and its access move along."""
        if self.gateway.db.move_chat(self.name, old_chat_id, new_chat_id):
            log.warning(
                "telegram: the group %s is now the supergroup %s; its conversation continues "
                "there (if allowed_chats lists the old id, the new one is let in too: add it "
                "to the config as well)",
                old_chat_id,
                new_chat_id,
            )

    def _sent(self, chat_id: str, message_id: int) -> str:
        self._saw(chat_id, message_id)
        return f"{chat_id}:{message_id}"

    def _saw(self, chat_id: str, message_id: int) -> None:
        """Note a message id seen in ``chat_id`` (received, or sent by the bot)."""
        sequence = _sequence(chat_id)
        if message_id > self._newest.get(sequence, 0):
            self._newest[sequence] = message_id
        known = self._known.setdefault(sequence, set())
        known.add(message_id)
        if len(known) > KNOWN_IDS:  # Forget the older half.
            keep = sorted(known)[len(known) // 2 :]
            known.clear()
            known.update(keep)

    def delivery_mark(self, message: Outbound, chunk: str) -> str:
        """``NEWEST+WIDTH``: the chunk about to be sent will get an id in that window."""
        newest = self._newest.get(_sequence(message.chat_id), 0)
        return f"{newest}+{self._sending + MARK_MARGIN}"

    async def was_sent(self, chat_id: str, mark: str) -> bool | None:
        """Look for a message of the bot in ``chat_id`` among the ids the chunk may have got.

        The chunk's id is above the mark's ``NEWEST``. Below it are only messages
        someone could have seen: users' (each one an update, read before looking,
        so never mistaken) and the bot's own (known when their send was answered,
        else in flight with the chunk, at most ``WIDTH`` of them). So the chunk is
        within ``WIDTH`` past the newest id known now, and only ids not known are
        looked up: however busy the bot was, that is about the sends in flight.
        Before the waiting updates are read (a slow start), a message found is
        still the chunk; finding none then cannot tell (None: asked again later).
        """
        newest, plus, width = mark.partition("+")
        if not (newest.isdigit() and plus and width.isdigit()):
            return None
        bot = self._bot
        if bot is None:
            return None
        caught_up = self._caught_up.is_set()
        if not caught_up:
            wait = max(0.5, self._started_at + CATCH_UP_WAIT - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._caught_up.wait()
            caught_up = self._caught_up.is_set()
        found = await self._find_chunk(bot, chat_id, int(newest), int(width))
        if found is False and not caught_up:
            # Not among the ids known so far; it may be past them (the backlog not read).
            log.info("telegram: the waiting updates are not read yet; cannot check a chunk")
            return None
        return found

    async def _find_chunk(
        self, bot: telegram.Bot, chat_id: str, newest: int, width: int
    ) -> bool | None:
        """Look up the unknown ids from ``newest + 1`` to ``width`` past the newest known.

        A message of the bot found there is the chunk whatever else is not read yet
        (nothing else is sent to the chat while its chunk is unsettled)."""
        sequence = _sequence(chat_id)
        known = self._known.get(sequence, set())
        first = newest + 1
        last = max(newest, self._newest.get(sequence, 0)) + width
        candidates = [i for i in range(first, last + 1) if i not in known]
        if len(candidates) > MAX_PROBES:
            log.warning(
                "telegram: %d message ids could hold a chunk for %s; too many to look up",
                len(candidates),
                chat_id,
            )
            return None
        unknown = False
        for start in range(0, len(candidates), PROBE_BATCH):
            batch = candidates[start : start + PROBE_BATCH]
            found = await asyncio.gather(*(self._bot_message_at(bot, chat_id, i) for i in batch))
            if True in found:
                return True
            unknown = unknown or None in found
        return None if unknown else False

    async def _bot_message_at(
        self, bot: telegram.Bot, chat_id: str, message_id: int
    ) -> bool | None:
        """Whether ``message_id`` in ``chat_id`` is a message of the bot (None: cannot tell)."""
        from telegram.error import BadRequest, RetryAfter, TelegramError

        for _ in range(3):
            try:
                # No reply_markup: "remove the inline keyboard", which none of ours has.
                await bot.edit_message_reply_markup(
                    chat_id=_chat_ref(chat_id), message_id=message_id
                )
                return True  # It had a keyboard (not one of ours, but the bot's message).
            except RetryAfter as exc:
                await asyncio.sleep(_send_error(exc).retry_after or 1.0)
            except BadRequest as exc:
                reason = str(exc).lower()
                if "not modified" in reason:
                    return True
                if "not found" in reason or "can't be edited" in reason:
                    return False
                log.info("telegram: checking message %s:%d: %s", chat_id, message_id, exc)
                return None
            except TelegramError as exc:
                log.info("telegram: checking message %s:%d: %s", chat_id, message_id, exc)
                return None
        return None

    async def typing(self, chat_id: str, thread_id: str) -> None:
        from telegram.constants import ChatAction

        bot = self._bot
        if bot is None:
            return
        await bot.send_chat_action(
            chat_id=_chat_ref(chat_id),
            action=ChatAction.TYPING,
            message_thread_id=int(thread_id) if thread_id else None,
        )

    # --- polling --------------------------------------------------------------------

    async def _poll(self) -> None:
        """One polling connection: getUpdates until it fails (supervise starts it again)."""
        from telegram.error import Conflict, EndPointNotFound, InvalidToken, NetworkError

        bot = self._bot
        assert bot is not None
        if self._me is None:
            me = await bot.get_me()
            self._me = (me.id, me.username or "")
            log.info("telegram: connected as @%s", self._me[1])
        while not self._closed:
            # Until the backlog is read, no long poll: a check of a chunk waits for it.
            caught_up = self._caught_up.is_set()
            params: dict[str, Any] = {
                "timeout": self.poll_timeout if caught_up else 0,
                "limit": POLL_LIMIT,
                "allowed_updates": list(ALLOWED_UPDATES),
            }
            if self._offset is not None:
                params["offset"] = self._offset
            try:
                # "getupdates", not "getUpdates": the raw JSON is wanted (Bot.get_updates
                # parses the whole batch or nothing), and PTB warns when do_api_request is
                # given the name of a method it has. Bot API method names are
                # case-insensitive (the official server lower-cases them too).
                updates = await bot.do_api_request(
                    "getupdates",
                    api_kwargs=params,
                    read_timeout=self.poll_timeout + POLL_READ_SLACK,
                )
            except Conflict as exc:
                if "webhook" not in str(exc).lower():
                    raise  # Another program polls with this token; retried with backoff.
                log.warning("telegram: the bot had a webhook; deleting it to poll instead")
                await bot.delete_webhook(drop_pending_updates=False)
                continue
            except (InvalidToken, EndPointNotFound):
                # A 401/404 after a good start (PTB then says "endpoint not found"): the
                # token was revoked. Kept trying (with backoff) in case it is a server blip.
                log.error(
                    "telegram: the bot token was rejected (revoked? see %s in %s)",
                    TOKEN_ENV,
                    home.env_path(),
                )
                raise
            except NetworkError as exc:
                # Logged by supervise; without the HTML page a proxy may have sent along.
                raise ConnectionError(_describe(exc)) from None
            self.alive()
            if not isinstance(updates, list):
                raise MalformedUpdate(f"getUpdates answered {type(updates).__name__}, not a list")
            await self._take(updates)
            if len(updates) < POLL_LIMIT:
                self._caught_up.set()
        # The gateway is shutting down: stop fetching what it would refuse; stay "alive"
        # so the watchdog leaves this alone until stop() cancels it.
        while True:
            self.alive()
            await asyncio.sleep(1.0)

    async def _take(self, updates: list[Any]) -> None:
        """Submit a batch in order; the offset moves past each update once it is safe.

        A photo is downloaded and stored before its message is submitted, so the
        offset that confirms it to Telegram moves only once both are on disk.
        """
        from hermes_agent.gateway.platforms.base import GatewayClosedError

        for update in updates:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                # Cannot be confirmed by offset; later updates confirm it implicitly.
                log.warning("telegram: skipped an update without an update_id: %.200r", update)
                continue
            try:
                incoming = self.incoming(update)
            except MalformedUpdate as exc:
                log.warning("telegram: skipped malformed update %d: %s", update_id, exc)
                incoming = None
            if incoming is not None:
                text, pictures = incoming.text, list[Any]()
                if incoming.image_file and self.gateway.access.allowed(
                    self.name, incoming.user_id, incoming.chat_id
                ):  # Never downloaded for a stranger (who gets a pairing code, no answer).
                    text, pictures = await self._fetch_image(incoming)
                try:
                    self.gateway.submit(
                        platform=self.name,
                        chat_id=incoming.chat_id,
                        message_id=incoming.message_id,
                        text=text,
                        thread_id=incoming.thread_id,
                        user_id=incoming.user_id,
                        user_name=incoming.user_name,
                        images=pictures,
                    )
                except GatewayClosedError:
                    # Not confirmed: Telegram keeps it for the next start.
                    self._closed = True
                    return
            self._offset = max(self._offset or 0, update_id + 1)

    async def _fetch_image(self, incoming: Incoming) -> tuple[str, list[Any]]:
        """Download and store the message's picture: ``(text, [ref])``, or a note and []."""
        from telegram.error import TelegramError

        from hermes_agent import images

        bot = self._bot
        assert bot is not None
        try:
            file = await bot.get_file(incoming.image_file)
            if (file.file_size or 0) > images.MAX_INPUT_BYTES:
                raise images.ImageError("the image is too large")
            data = bytes(await file.download_as_bytearray())
            ref = await asyncio.to_thread(
                images.ingest_bytes, data, name=os.path.basename(file.file_path or "")
            )
        except (images.ImageError, TelegramError, OSError) as exc:
            log.info("telegram: an image in %s was not taken: %s", incoming.message_id, exc)
            reason = str(exc) if isinstance(exc, images.ImageError) else "it could not be fetched"
            note = f"[The user sent an image that cannot be shown to you: {reason}.]"
            caption = "" if incoming.text == PHOTO_WITHOUT_TEXT else incoming.text
            return (f"{note}\n\n{caption}" if caption else note), []
        return incoming.text, [ref]

    def incoming(self, update: dict[str, Any]) -> Incoming | None:
        """The message in ``update`` for the agent; None when it is not for us.

        Raises :class:`MalformedUpdate` when the update lacks what Telegram
        always sends.
        """
        message = update.get("message")
        if message is None:
            kinds = [k for k in update if k != "update_id"]
            if not kinds:
                raise MalformedUpdate("the update holds nothing")
            log.debug("telegram: ignored a %s update", kinds[0])
            return None
        if not isinstance(message, dict):
            raise MalformedUpdate("message is not an object")
        message_id = message.get("message_id")
        chat = message.get("chat")
        if not _is_int(message_id):
            raise MalformedUpdate("the message has no message_id")
        if not isinstance(chat, dict) or not _is_int(chat.get("id")):
            raise MalformedUpdate("the message has no chat id")
        chat_type = chat.get("type")
        if not isinstance(chat_type, str):
            raise MalformedUpdate("the message's chat has no type")
        self._saw(str(chat["id"]), message_id)
        for field_name, moved in (("migrate_to_chat_id", False), ("migrate_from_chat_id", True)):
            other = message.get(field_name)
            if _is_int(other):  # The service messages of a group becoming a supergroup.
                old, new = (str(other), str(chat["id"])) if moved else (str(chat["id"]), str(other))
                self._moved(old, new)
                return None
        sender = message.get("from")
        if sender is not None and not (isinstance(sender, dict) and _is_int(sender.get("id"))):
            raise MalformedUpdate("the message's sender has no id")
        sender = sender or {}
        if chat_type == "channel" or sender.get("is_bot"):
            return None
        image_file = _image_file(message)
        caption = message.get("caption")
        text: str | None
        if image_file:
            text = caption if isinstance(caption, str) and caption.strip() else PHOTO_WITHOUT_TEXT
        else:
            text = _text_for_agent(message)
        if text is None:  # A service message (member joined, pinned...).
            return None
        if chat_type in ("group", "supergroup"):
            text, addressed = self._addressed(text, message)
            if not addressed:
                return None
        thread_id = message.get("message_thread_id")
        topic = message.get("is_topic_message") is True and _is_int(thread_id)
        user_name = str(sender.get("username") or "")
        if not user_name:
            parts = (sender.get("first_name"), sender.get("last_name"))
            user_name = " ".join(str(p) for p in parts if p)
        return Incoming(
            chat_id=str(chat["id"]),
            thread_id=str(thread_id) if topic else "",
            message_id=f"{chat['id']}:{message_id}",
            user_id=str(sender["id"]) if "id" in sender else "",
            user_name=user_name,
            text=text,
            image_file=image_file,
        )

    def _addressed(self, text: str, message: dict[str, Any]) -> tuple[str, bool]:
        """In a group: the text without the bot's @mention, and whether it was for the bot."""
        bot_id, username = self._me or (0, "")
        addressed = False
        replied = message.get("reply_to_message")
        if isinstance(replied, dict):
            author = replied.get("from")
            addressed = isinstance(author, dict) and author.get("id") == bot_id and bot_id != 0
        if username:
            # /command@bot keeps the command; a plain @bot mention is taken out.
            command = re.compile(rf"(?i)(/\w+)@{re.escape(username)}\b")
            mention = re.compile(rf"(?i)(?<![\w@/])@{re.escape(username)}\b")
            stripped = command.sub(r"\1", text)
            stripped = mention.sub("", stripped)
            if stripped != text:
                addressed = True
                text = re.sub(r"[ \t]{2,}", " ", stripped).strip() or text
        return text, addressed


# --- helpers ------------------------------------------------------------------------------


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_file(message: dict[str, Any]) -> str:
    """The file id of the picture in ``message``: its largest photo size that may be
    fetched, or a document whose type is an image; "" when there is none."""
    from hermes_agent.images import MAX_INPUT_BYTES

    photo = message.get("photo")
    if isinstance(photo, list):
        sizes = [
            p
            for p in photo
            if isinstance(p, dict)
            and isinstance(p.get("file_id"), str)
            and _is_int(p.get("width"))
            and _is_int(p.get("height"))
        ]
        fits = [
            p for p in sizes if not _is_int(p.get("file_size")) or p["file_size"] <= MAX_INPUT_BYTES
        ]
        if fits:
            return str(max(fits, key=lambda p: int(p["width"]) * int(p["height"]))["file_id"])
    document = message.get("document")
    if (
        isinstance(document, dict)
        and isinstance(document.get("file_id"), str)
        and str(document.get("mime_type") or "").startswith("image/")
        and "animation" not in message
    ):
        return str(document["file_id"])
    return ""


def _text_for_agent(message: dict[str, Any]) -> str | None:
    """The text, or a note on what was sent instead (with its caption); None: nothing."""
    text = message.get("text")
    if isinstance(text, str):
        return text
    caption = message.get("caption")
    caption = caption if isinstance(caption, str) and caption.strip() else None
    for field, label in _MEDIA:
        if field not in message:
            continue
        if field == "sticker" and isinstance(message[field], dict):
            emoji = message[field].get("emoji")
            if isinstance(emoji, str) and emoji:
                label = f"{label} ({emoji})"
        if caption is not None:
            return (
                f"[The user sent {label} with the caption below. Only text reaches you, "
                f"so you cannot see or hear the {field.replace('_', ' ')} itself.]\n\n{caption}"
            )
        return (
            f"[The user sent {label} without any text. Only text reaches you, so you cannot "
            "see or hear it; tell them you can only read text and captions.]"
        )
    return caption


def _sequence(chat_id: str) -> str:
    """Which sequence a chat's message ids come from: its own (supergroups, channels,
    whose ids start with -100) or, ``""``, the bot's one for private chats and groups."""
    return chat_id if chat_id.startswith("-100") or chat_id.startswith("@") else ""


def _chat_ref(chat_id: str) -> int | str:
    """Telegram chat ids are integers; ``@channelname`` stays a string."""
    return int(chat_id) if re.fullmatch(r"-?\d+", chat_id) else chat_id


def _replied_message_id(chat_id: str, reply_to: str) -> int | None:
    """The Telegram message id inside our ``"<chat_id>:<message_id>"`` (same chat only)."""
    chat, _, message = reply_to.rpartition(":")
    if chat != chat_id or not message.isdigit():
        return None
    return int(message)


def _describe(exc: Exception) -> str:
    """PTB's message of an error, without the body of a non-JSON answer it may quote."""
    text = str(exc).split(". Parsing the server response", 1)[0]
    return f"{type(exc).__name__}: {text}"


def _send_error(exc: Exception) -> SendError:
    """A python-telegram-bot error as the gateway's SendError (permanent or retried)."""
    from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter

    if isinstance(exc, RetryAfter):
        with warnings.catch_warnings():  # PTB 22 warns that retry_after becomes a timedelta.
            warnings.simplefilter("ignore")
            wait = exc.retry_after
        seconds = wait if isinstance(wait, int | float) else wait.total_seconds()
        return SendError(f"telegram: {exc}", retry_after=float(seconds))
    if isinstance(exc, ChatMigrated):
        return SendError(
            f"telegram: the group is now the supergroup {exc.new_chat_id}", permanent=True
        )
    if isinstance(exc, InvalidToken):
        return SendError("telegram: the bot token was rejected", permanent=True)
    if isinstance(exc, Forbidden | BadRequest):
        # Bot blocked or removed, chat not found, message refused: retrying cannot help.
        return SendError(f"telegram: {exc}", permanent=True)
    return SendError(f"telegram: {_describe(exc)}")  # Network trouble, 5xx, timeouts: retried.


# --- Markdown to Telegram HTML ------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^\s*(```+|~~~+)\s*([\w+#.-]*)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~>|<])")
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*<?([^\s()<>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto|tg):[^\s<>]+)>")
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tg://")
_BOLD = re.compile(r"\*\*(?=\S)([^<>]+?)(?<=\S)\*\*|(?<!\w)__(?=\S)([^<>]+?)(?<=\S)__(?!\w)")
_ITALIC = re.compile(
    r"(?<![\w*])\*(?=[^\s*])([^<>*]+?)(?<=[^\s*])\*(?![\w*])"
    r"|(?<![\w_])_(?=[^\s_])([^<>_]+?)(?<=[^\s_])_(?![\w_])"
)
_STRIKE = re.compile(r"~~(?=\S)([^<>]+?)(?<=\S)~~")
_TOKEN = re.compile(r"\x00(\d+)\x00")
_BOLD_MARKERS = re.compile(r"\*\*|__")


def markdown_to_html(text: str) -> str:
    """The model's Markdown as Telegram HTML: every tag closed, everything else escaped.

    Bold, italic, strikethrough, inline code, fenced code blocks (with their
    language), links, headings (bold), bullets and block quotes; what is not
    understood stays as text. Emphasis never spans lines, so no tag can
    outlive its line (or a chunk).
    """
    lines = text.replace("\x00", "").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE_OPEN.match(line)
        if fence:
            marker, language = fence.group(1), fence.group(2)
            closing = re.compile(rf"^\s*{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            body: list[str] = []
            i += 1
            while i < len(lines) and not closing.match(lines[i]):
                body.append(lines[i])
                i += 1
            i += 1  # The closing fence (or the end of an unclosed block).
            code = _escape("\n".join(body))
            if language:
                out.append(f'<pre><code class="language-{language}">{code}</code></pre>')
            else:
                out.append(f"<pre>{code}</pre>")
            continue
        if _QUOTE.match(line):
            quoted: list[str] = []
            while i < len(lines) and (match := _QUOTE.match(lines[i])):
                quoted.append(_inline(match.group(1)))
                i += 1
            out.append("<blockquote>" + "\n".join(quoted) + "</blockquote>")
            continue
        if heading := _HEADING.match(line):
            title = _BOLD_MARKERS.sub("", heading.group(1))  # Already bold as a whole.
            out.append(f"<b>{_inline(title)}</b>")
        elif bullet := _BULLET.match(line):
            out.append(f"{bullet.group(1)}• {_inline(bullet.group(2))}")
        else:
            out.append(_inline(line))
        i += 1
    return "\n".join(out)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _inline(text: str) -> str:
    """One line of Markdown as HTML."""
    saved: list[str] = []

    def keep(fragment: str) -> str:
        saved.append(fragment)
        return f"\x00{len(saved) - 1}\x00"

    def convert(part: str) -> str:
        part = _CODE_SPAN.sub(lambda m: keep(f"<code>{_escape(m.group(2))}</code>"), part)
        part = _ESCAPED.sub(lambda m: keep(_escape(m.group(1))), part)

        def link(match: re.Match[str]) -> str:
            label, url = match.group(1), match.group(2)
            if not url.lower().startswith(_LINK_SCHEMES):
                return match.group(0)
            return keep(f'<a href="{html.escape(url, quote=True)}">{convert(label)}</a>')

        part = _LINK.sub(link, part)
        part = _AUTOLINK.sub(
            lambda m: keep(
                f'<a href="{html.escape(m.group(1), quote=True)}">{_escape(m.group(1))}</a>'
            ),
            part,
        )
        part = _escape(part)
        part = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", part)
        part = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", part)
        return _STRIKE.sub(lambda m: f"<s>{m.group(1)}</s>", part)

    result = convert(text)
    while _TOKEN.search(result):  # Saved pieces may hold saved pieces (code in a link).
        result = _TOKEN.sub(lambda m: saved[int(m.group(1))], result)
    return result
