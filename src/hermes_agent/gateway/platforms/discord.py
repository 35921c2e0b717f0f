"""Discord: a bot account, through discord.py (the ``discord`` extra).

The bot answers direct messages, and messages that mention it (``@bot``) in
server channels and threads. A conversation is a DM channel, a server channel, or a thread of a
channel (``chat_id`` the channel, ``thread_id`` the thread); each message is
submitted under its snowflake id, so an event Discord replays after a resumed
connection is not answered twice.

It asks for no privileged intent: message content is delivered to bots
without the Message Content intent for DMs and for messages that mention
them, which is all it answers. So the only set-up in the developer portal is
creating the bot and inviting it (scopes ``bot``; permissions View Channels,
Send Messages, Send Messages in Threads, Read Message History).

Attached images (PNG, JPEG, GIF, WebP) are downloaded from Discord's CDN and
stored (:mod:`hermes_agent.images`) before the message is submitted, then shown
to the model; other files stay a line naming them. Messages are submitted in
arrival order, one at a time, so a download never lets a later message overtake.

Connection: discord.py keeps the Gateway websocket up itself (heartbeats,
RESUME with the last sequence number after a drop, a new IDENTIFY after
INVALID_SESSION). Around it, :meth:`Platform.supervise` starts a fresh
client when discord.py gives up (a close code it cannot recover from, the
token revoked), and its watchdog restarts a connection from which nothing,
not even a heartbeat acknowledgement, arrived for ``watchdog_seconds``.

Rate limits: discord.py waits out a 429 itself when Discord asks for at most
``MAX_LIBRARY_WAIT`` seconds; a longer wait becomes a :class:`SendError`
carrying ``retry_after``, so the gateway's retry policy decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms.base import Platform, SendError

if TYPE_CHECKING:
    import discord

    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway

log = logging.getLogger("hermes_agent.gateway.discord")

TOKEN_ENV = "DISCORD_BOT_TOKEN"
#: discord.py sleeps through a 429 asking for up to this many seconds (its minimum is 30).
MAX_LIBRARY_WAIT = 30.0
#: Seconds to wait for the login requests at start before connecting in the background.
LOGIN_TIMEOUT = 30.0
#: How many replied-to message ids are remembered (the first chunk of a reply quotes it).
_REMEMBERED_REPLIES = 1024

_FENCE = re.compile(r"^\s*(```|~~~)")
#: Discord renders headings of levels 1 to 3 only.
_DEEP_HEADING = re.compile(r"^#{4,6}\s+(.+?)\s*#*\s*$")


class Discord(Platform):
    name = "discord"
    max_message_length = 2000
    # Discord sends a heartbeat acknowledgement every ~41 s; discord.py itself
    # reconnects after 60 s without one. This is the backstop above both.
    watchdog_seconds = 150.0

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        try:
            import discord  # noqa: F401
        except ImportError:
            raise UsageError(
                "the discord platform needs discord.py: pip install 'hermes-agent[discord]'"
            ) from None
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise UsageError(
                f"the discord platform needs {TOKEN_ENV} in {home.env_path()}: create a bot at "
                "https://discord.com/developers/applications (Bot, Reset Token) and add a line "
                f"{TOKEN_ENV}=THE_TOKEN to that file"
            )
        self._token = token
        self._api_base = str(config.get("gateway.platforms.discord.api_base") or "").rstrip("/")
        self._client: discord.Client | None = None
        #: Messages are submitted one at a time, in the order they arrived, even when
        #: one waits for its images to download (asyncio locks are first come, first served).
        self._inbound = asyncio.Lock()
        self._replied: OrderedDict[str, None] = OrderedDict()

    # --- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        import aiohttp
        import discord

        from hermes_agent.gateway.platforms._liblog import route_library_logs

        route_library_logs({"discord": logging.INFO})
        voice = logging.getLogger("discord.client")
        if not any(isinstance(f, _NoVoiceWarning) for f in voice.filters):
            voice.addFilter(_NoVoiceWarning())
        if self._api_base:
            # discord.py has no per-client setting for the API root; Route.BASE is the
            # class attribute every request URL is built from (one bot per process here).
            discord.http.Route.BASE = self._api_base
        try:
            await self._login()
        except HermesError:
            raise
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "discord: cannot reach Discord yet (%s); connecting in the background",
                _reason(exc),
            )
        self.supervise("gateway", self._connect_once)

    async def stop(self) -> None:
        await self.stop_supervised()
        client, self._client = self._client, None
        if client is not None:
            await _close(client)

    async def _login(self) -> discord.Client:
        """A logged-in client whose gateway URL is known; HermesError for a bad token."""
        import discord
        import yarl
        from discord.gateway import DiscordWebSocket

        client = self._new_client()
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                await client.login(self._token)
            async with asyncio.timeout(LOGIN_TIMEOUT):
                _shards, url, _limits = await client.http.get_bot_gateway()
        except discord.LoginFailure:
            await _close(client)
            raise HermesError(
                f"discord: the bot token was rejected (401 Unauthorized); check {TOKEN_ENV} "
                f"in {home.env_path()}"
            ) from None
        except BaseException:
            await _close(client)
            raise
        # A non-sharded discord.Client always opens DiscordWebSocket.DEFAULT_GATEWAY (and
        # the resume_gateway_url of READY afterwards); the documented way to find the
        # gateway is GET /gateway/bot, so its answer is put there (a class attribute,
        # not a documented setting: one bot per process here).
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        self._client = client
        return client

    def _new_client(self) -> discord.Client:
        import discord

        intents = discord.Intents.none()
        intents.guilds = True  # Channels and threads, to tell a thread from a channel.
        intents.guild_messages = True
        intents.dm_messages = True
        client = discord.Client(
            intents=intents,
            # on_socket_raw_receive for every frame, heartbeat ACKs included: the watchdog.
            enable_debug_events=True,
            max_ratelimit_timeout=MAX_LIBRARY_WAIT,
            chunk_guilds_at_startup=False,
            max_messages=None,
        )

        async def on_socket_raw_receive(_payload: object) -> None:
            self.alive()

        async def on_ready() -> None:
            user = client.user
            log.info(
                "discord: connected as %s (id %s) in %d servers",
                user,
                user.id if user else "?",
                len(client.guilds),
            )

        async def on_resumed() -> None:
            log.info("discord: session resumed")

        async def on_message(message: discord.Message) -> None:
            async with self._inbound:
                await self._on_message(client, message)

        for handler in (on_socket_raw_receive, on_ready, on_resumed, on_message):
            client.event(handler)
        return client

    async def _connect_once(self) -> None:
        client = self._client or await self._login()
        try:
            await client.connect(reconnect=True)
        finally:
            if self._client is client:
                self._client = None
            await _close(client)

    # --- inbound --------------------------------------------------------------------

    async def _fetch_images(
        self, attachments: list[discord.Attachment]
    ) -> tuple[list[str], list[Any]]:
        """Store the attached images (before the message is submitted): notes, refs.

        Other files stay a line naming them, as before; an image that cannot be
        fetched or used becomes a line saying why.
        """
        from hermes_agent import images

        lines: list[str] = []
        refs: list[Any] = []
        for attachment in attachments:
            kind = (attachment.content_type or "").split(";")[0].strip().lower()
            suffix = os.path.splitext(attachment.filename)[1].lower()
            if not kind.startswith("image/") and suffix not in images.IMAGE_SUFFIXES:
                lines.append(f"[attachment: {attachment.filename} {attachment.url}]")
                continue
            try:
                if len(refs) >= images.MAX_PER_MESSAGE:
                    raise images.ImageError(f"more than {images.MAX_PER_MESSAGE} images")
                if attachment.size > images.MAX_INPUT_BYTES:
                    raise images.ImageError(f"{attachment.filename} is too large")
                data = await attachment.read()
                refs.append(
                    await asyncio.to_thread(images.ingest_bytes, data, name=attachment.filename)
                )
            except images.ImageError as exc:
                lines.append(f"[attachment {attachment.filename} not shown: {exc}]")
            except Exception as exc:  # discord.HTTPException, aiohttp errors: not fetched.
                log.info("discord: attachment %s not fetched: %s", attachment.id, exc)
                lines.append(f"[attachment {attachment.filename} could not be fetched]")
        return lines, refs

    async def _on_message(self, client: discord.Client, message: discord.Message) -> None:
        import discord

        from hermes_agent.gateway.platforms.base import GatewayClosedError

        self.alive()
        me = client.user
        if me is None or message.author.bot or message.author.id == me.id:
            return  # Our own replies and other bots (no bot-to-bot loops).
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # Joins, pins, thread notices...
        if message.guild is not None and not any(u.id == me.id for u in message.mentions):
            return  # In servers only mentions are answered (and only they carry content).
        text = _strip_mention(message.content, me.id)
        channel = message.channel
        if isinstance(channel, discord.Thread):
            chat_id, thread_id = str(channel.parent_id), str(channel.id)
        else:
            chat_id, thread_id = str(channel.id), ""
        lines = [text] if text else []
        pictures: list[Any] = []
        if self.gateway.access.allowed(self.name, str(message.author.id), chat_id):
            # Never downloaded for a stranger (who gets a pairing code, no answer).
            notes, pictures = await self._fetch_images(list(message.attachments))
            lines += notes
            if pictures and not lines:
                lines.append("[The user sent this image without any text.]")
        else:
            lines += [f"[attachment: {a.filename}]" for a in message.attachments]
        if not lines:
            return  # A bare mention: nothing to answer.
        try:
            self.gateway.submit(
                platform=self.name,
                chat_id=chat_id,
                thread_id=thread_id,
                message_id=str(message.id),
                text="\n".join(lines),
                user_id=str(message.author.id),
                user_name=str(message.author),
                images=pictures,
            )
        except GatewayClosedError:
            # Discord cannot be asked to deliver it again: say so rather than lose it quietly.
            log.warning("discord: message %s arrived while stopping; not answered", message.id)

    # --- outbound -------------------------------------------------------------------

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> None:
        import aiohttp
        import discord

        client = self._client
        if client is None or client.is_closed():
            raise SendError("not connected to Discord")
        target = _snowflake(thread_id or chat_id)
        if target is None:
            raise SendError(f"not a Discord channel id: {thread_id or chat_id!r}", permanent=True)
        reference = None
        reply_id = _snowflake(reply_to)
        if reply_id is not None and reply_to not in self._replied:
            # Only the first chunk quotes the message it answers.
            reference = discord.MessageReference(
                message_id=reply_id, channel_id=target, fail_if_not_exists=False
            )
        channel = client.get_partial_messageable(target)
        # The same chunk of the same reply gets the same nonce, sent with enforce_nonce:
        # Discord then returns the message it made instead of making it again when the
        # chunk is re-sent within minutes (a retry after a lost answer, a quick restart).
        options: dict[str, Any] = {"allowed_mentions": _allowed_mentions()}
        if reply_to:
            options["nonce"] = _nonce(target, reply_to, text)
        if reference is not None:
            options["reference"] = reference
        try:
            await channel.send(text, **options)
        except discord.RateLimited as exc:
            raise SendError(
                f"rate limited by Discord for {exc.retry_after:.0f} s", retry_after=exc.retry_after
            ) from None
        except (discord.Forbidden, discord.NotFound) as exc:
            raise SendError(f"Discord refused it: {_reason(exc)}", permanent=True) from None
        except discord.DiscordServerError as exc:
            raise SendError(f"Discord server error: {_reason(exc)}") from None
        except discord.HTTPException as exc:
            # 4xx: the message itself was refused (too long, empty...): retrying cannot help.
            raise SendError(
                f"Discord refused it: {_reason(exc)}", permanent=400 <= exc.status < 500
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: the HTTP session closed under us (a reconnect in progress).
            raise SendError(f"cannot reach Discord: {_reason(exc)}") from None
        if reply_id is not None:
            self._replied[reply_to] = None
            while len(self._replied) > _REMEMBERED_REPLIES:
                self._replied.popitem(last=False)

    async def typing(self, chat_id: str, thread_id: str) -> None:
        client = self._client
        target = _snowflake(thread_id or chat_id)
        if client is None or client.is_closed() or target is None:
            return
        await client.get_partial_messageable(target).typing()

    def format(self, text: str) -> str:
        """Discord renders Markdown itself; only headings deeper than ### become bold."""
        out: list[str] = []
        in_code = False
        for line in text.split("\n"):
            if _FENCE.match(line):
                in_code = not in_code
            elif not in_code:
                match = _DEEP_HEADING.match(line)
                if match:
                    line = f"**{match.group(1)}**"
            out.append(line)
        return "\n".join(out)


class _NoVoiceWarning(logging.Filter):
    """discord.py warns at every start that voice libraries are missing: no voice here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def _allowed_mentions() -> discord.AllowedMentions:
    """Never ping @everyone, roles or users from the model's text; do notify the asker."""
    import discord

    return discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)


def _strip_mention(content: str, my_id: int) -> str:
    return re.sub(rf"<@!?{my_id}>", "", content).strip()


def _nonce(channel: int, reply_to: str, text: str) -> str:
    """A chunk's nonce: Discord allows 25 characters."""
    digest = hashlib.sha256(f"{channel}\0{reply_to}\0{text}".encode()).hexdigest()
    return digest[:25]


def _snowflake(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close(client: discord.Client) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            await client.close()
