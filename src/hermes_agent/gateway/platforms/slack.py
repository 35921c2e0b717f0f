"""Slack: a Bolt app over Socket Mode (the ``slack`` extra: slack-bolt and slack_sdk).

Socket Mode needs no public URL: the app opens a websocket to Slack
(``apps.connections.open`` with the app-level token) and Slack sends events
down it. The bot answers direct messages (``message`` events of
``channel_type: im``) and mentions in channels (``app_mention``). A mention
at the top of a channel starts a thread: the answer goes in that thread,
and the thread is the conversation (``thread_id`` = its ``thread_ts``), so
later mentions in it continue the same session.

Acknowledgement: each event comes in an envelope that Slack delivers again
(``retry_attempt`` 1, 2, 3) until it is acknowledged. The Bolt app runs with
``process_before_response=True``, so the envelope is acknowledged only after
the listener returned, that is after :meth:`Gateway.submit` stored the
message; when submit fails (the gateway is stopping) the listener raises, no
acknowledgement is sent, and Slack delivers the event again later. Every
message is submitted as ``CHANNEL:TS``: the same for Slack's redeliveries
(whose ``event_id`` is the same) and for the ``message`` and ``app_mention``
events of one message (whose ``event_id`` differ), so none is answered twice.

Connection: slack_sdk's Socket Mode client reconnects by itself (a
``disconnect`` message, a closed socket, missed pongs); :meth:`supervise`
runs it, and its watchdog starts a fresh client when the connection was not
healthy (open, pongs coming back) for ``watchdog_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
import os
import re
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms.base import Outbound, Platform, SendError

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.app.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway

log = logging.getLogger("hermes_agent.gateway.slack")

BOT_TOKEN_ENV = "SLACK_BOT_TOKEN"
APP_TOKEN_ENV = "SLACK_APP_TOKEN"
DEFAULT_API_BASE = "https://slack.com/api/"
#: Seconds between the Socket Mode client's pings (and our health checks).
PING_INTERVAL = 5.0
#: Seconds a Web API call may take.
API_TIMEOUT = 30
#: User display names remembered (for pairing requests).
NAMES_KEPT = 256
#: The metadata event type a reply chunk carries, with its key, to be found again.
CHUNK_EVENT = "hermes_reply_chunk"
#: How far back of the local clock a chunk is looked for (clock skew with Slack's).
MARK_SLACK_SECONDS = 300
#: Errors of chat.postMessage that retrying cannot fix.
_PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "invalid_arguments",
        "invalid_blocks",
        "ekm_access_denied",
    }
)
#: Errors of auth.test / apps.connections.open that mean the token is wrong.
_BAD_TOKEN = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
    }
)


class Slack(Platform):
    name = "slack"
    #: Slack truncates at 40,000 characters but asks to keep a message within 4,000.
    max_message_length = 4000
    watchdog_seconds = 60.0

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        try:
            import aiohttp  # noqa: F401
            import slack_bolt  # noqa: F401
            import slack_sdk  # noqa: F401
        except ImportError:
            raise UsageError(
                "the slack platform needs slack-bolt: pip install 'hermes-agent[slack]'"
            ) from None
        self._bot_token = _token(BOT_TOKEN_ENV, "xoxb-", "the bot token (OAuth & Permissions)")
        self._app_token = _token(
            APP_TOKEN_ENV,
            "xapp-",
            "an app-level token with the connections:write scope (Basic Information)",
        )
        base = str(config.get("gateway.platforms.slack.api_base") or "") or DEFAULT_API_BASE
        self._api_base = base if base.endswith("/") else base + "/"
        self._web: AsyncWebClient | None = None
        self._app: AsyncApp | None = None
        self._bot_user_id = ""
        #: A Socket Mode URL obtained while checking the app token, used for the first connection.
        self._first_url: str | None = None
        #: Display names by user id (users.info), for pairing requests; the newest NAMES_KEPT.
        self._names: dict[str, str] = {}
        #: Held while a message's files download, so the next message cannot overtake it.
        self._inbound = asyncio.Lock()

    # --- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        from slack_bolt.app.async_app import AsyncApp
        from slack_sdk.web.async_client import AsyncWebClient

        from hermes_agent.gateway.platforms._liblog import route_library_logs

        route_library_logs({"slack_bolt": logging.WARNING, "slack_sdk": logging.INFO})
        self._web = AsyncWebClient(
            token=self._bot_token,
            base_url=self._api_base,
            timeout=API_TIMEOUT,
            logger=logging.getLogger("slack_sdk.hermes.web"),
            # No blind retry of a connection error: chat.postMessage is not idempotent, so
            # the gateway retries itself, after looking whether the message got there.
            retry_handlers=[],
        )
        auth = await self._check(BOT_TOKEN_ENV, self._web.auth_test())
        if auth is not None:
            self._bot_user_id = str(auth.get("user_id") or "")
            log.info(
                "slack: signed in as %s (%s) in %s",
                auth.get("user"),
                self._bot_user_id,
                auth.get("team"),
            )
            opened = await self._check(
                APP_TOKEN_ENV, self._web.apps_connections_open(app_token=self._app_token)
            )
            if opened is not None:
                self._first_url = str(opened["url"])
        bolt_log = logging.getLogger("slack_bolt.hermes")
        if not any(isinstance(f, _TokenFromEnvNotice) for f in bolt_log.filters):
            bolt_log.addFilter(_TokenFromEnvNotice())
        app = AsyncApp(
            client=self._web,
            logger=bolt_log,
            # Acknowledge only after the listener returned: after submit stored the message.
            process_before_response=True,
        )
        app.event("message")(self._on_message)
        app.event("app_mention")(self._on_mention)
        self._app = app
        self.supervise("socket", self._connect_once)

    async def _check(self, env: str, call: Awaitable[Any]) -> Any:
        """The response of a start-up call; HermesError for a rejected token, None offline."""
        import aiohttp
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            return await call
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            if error in _BAD_TOKEN:
                hint = (
                    " (it needs the connections:write scope, and Socket Mode must be on)"
                    if env == APP_TOKEN_ENV
                    else ""
                )
                raise HermesError(
                    f"slack: {env} was rejected ({error}){hint}; check it in {home.env_path()}"
                ) from None
            log.warning("slack: %s; connecting in the background", error)
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "slack: cannot reach Slack yet (%s); connecting in the background", _reason(exc)
            )
        return None

    async def stop(self) -> None:
        await self.stop_supervised()

    async def _open_url(self) -> str:
        """A new Socket Mode URL (apps.connections.open with the app-level token)."""
        assert self._web is not None
        response = await self._web.apps_connections_open(app_token=self._app_token)
        return str(response["url"])

    async def _connect_once(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert self._app is not None and self._web is not None
        if not self._bot_user_id:  # Start could not reach Slack: check the bot token now.
            auth = await self._web.auth_test()
            self._bot_user_id = str(auth.get("user_id") or "")
        url, self._first_url = self._first_url, None
        url = url or await self._open_url()
        handler: AsyncSocketModeHandler = AsyncSocketModeHandler(
            self._app,
            self._app_token,
            logger=logging.getLogger("slack_sdk.hermes.socket_mode"),
            web_client=self._web,
            ping_interval=PING_INTERVAL,
        )
        client = handler.client
        client.wss_uri = url
        try:
            await client.connect()  # type: ignore[no-untyped-call]
            log.info("slack: Socket Mode connected")
            while True:
                # Healthy (open, pongs coming back) is the watchdog's sign of life; the
                # client reconnects by itself meanwhile.
                if await client.is_connected():
                    self.alive()
                await asyncio.sleep(PING_INTERVAL)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await handler.close_async()  # type: ignore[no-untyped-call]

    # --- inbound --------------------------------------------------------------------

    async def _on_message(self, event: dict[str, Any]) -> None:
        if event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D"):
            await self._submit(event, mention=False)
        # Other channels: only mentions are answered, and those come as app_mention.

    async def _on_mention(self, event: dict[str, Any]) -> None:
        await self._submit(event, mention=True)

    async def _name_of(self, user: str) -> str:
        """The user's display name (``users.info``, remembered); "" when Slack will not say."""
        name = self._names.get(user)
        if name is not None or self._web is None:
            return name or ""
        try:
            async with asyncio.timeout(10.0):
                answer = await self._web.users_info(user=user)
        except Exception as exc:  # Only a label for the owner: never hold up the message.
            log.debug("slack: users.info %s: %s", user, _reason(exc))
            return ""
        info = answer.get("user") or {}
        profile = info.get("profile") or {}
        name = str(profile.get("display_name") or info.get("real_name") or info.get("name") or "")
        if len(self._names) >= NAMES_KEPT:
            del self._names[next(iter(self._names))]
        self._names[user] = name
        return name

    async def _fetch_image(self, shared: dict[str, Any]) -> Any:
        """Download a shared image with the bot token and store it; its reference.

        The token goes only to Slack's file host (``files.slack.com``) or the host
        of ``api_base``: an event naming another host gets nothing.
        """
        from urllib.parse import urlsplit

        import aiohttp

        from hermes_agent import images

        url = str(shared.get("url_private_download") or shared.get("url_private") or "")
        host = urlsplit(url).hostname
        if host not in ("files.slack.com", urlsplit(self._api_base).hostname):
            raise images.ImageError("it is not on Slack's file host")
        size = shared.get("size")
        if isinstance(size, int) and size > images.MAX_INPUT_BYTES:
            raise images.ImageError("it is too large")
        headers = {"Authorization": f"Bearer {self._bot_token}"}
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise images.ImageError(f"Slack answered HTTP {response.status}")
            data = await response.content.read(images.MAX_INPUT_BYTES + 1)
        name = str(shared.get("name") or "")
        return await asyncio.to_thread(images.ingest_bytes, data, name=name)

    async def _files(self, files: list[dict[str, Any]]) -> tuple[list[str], list[Any]]:
        """Lines for the model about the shared files, and the images among them, stored."""
        from hermes_agent import images

        lines: list[str] = []
        refs: list[Any] = []
        for shared in files:
            name = str(shared.get("name") or "?")
            if not str(shared.get("mimetype") or "").startswith("image/"):
                lines.append(f"[file: {name} {shared.get('url_private', '')}]".strip())
                continue
            try:
                if len(refs) >= images.MAX_PER_MESSAGE:
                    raise images.ImageError(f"more than {images.MAX_PER_MESSAGE} images")
                refs.append(await self._fetch_image(shared))
            except images.ImageError as exc:
                lines.append(f"[image {name} not shown: {exc}]")
            except Exception as exc:  # The download failed (network, timeout).
                log.info("slack: file %s not fetched: %s", shared.get("id"), _reason(exc))
                lines.append(f"[image {name} could not be fetched]")
        return lines, refs

    async def _submit(self, event: dict[str, Any], *, mention: bool) -> None:
        """Hand one message to the gateway; raises (no acknowledgement) if it cannot take it.

        One at a time, in arrival order: a message whose images download holds the
        next one back instead of letting it overtake.
        """
        async with self._inbound:
            await self._submit_one(event, mention=mention)

    async def _submit_one(self, event: dict[str, Any], *, mention: bool) -> None:
        self.alive()
        if event.get("subtype") not in (None, "thread_broadcast", "file_share"):
            return  # Edits, deletions, joins, bot messages...
        user = str(event.get("user") or "")
        if event.get("bot_id") or not user or user == self._bot_user_id:
            return  # Our own replies and other bots (no bot-to-bot loops).
        channel = str(event.get("channel") or "")
        ts = str(event.get("ts") or "")
        if not channel or not ts:
            return
        text = _inbound_text(str(event.get("text") or ""), self._bot_user_id if mention else "")
        files = [f for f in event.get("files") or () if isinstance(f, dict)]
        lines = [text] if text else []
        pictures: list[Any] = []
        if files and self.gateway.access.allowed(self.name, user, channel):
            notes, pictures = await self._files(files)  # Never for strangers: no downloads.
            lines += notes
            if pictures and not lines:
                lines.append("[The user sent this image without any text.]")
        else:
            lines += [f"[file: {f.get('name', '?')}]" for f in files]
        if not lines:
            return
        thread = str(event.get("thread_ts") or "")
        is_dm = event.get("channel_type") == "im" or channel.startswith("D")
        if not thread and not is_dm:
            thread = ts  # A mention at the top of a channel: answer in a thread of its own.
        # The name is only shown to the owner with a pairing request. Looked up for those
        # alone: an await here would let a chat's next message overtake this one.
        allowed = self.gateway.access.allowed(self.name, user, channel)
        name = "" if allowed else await self._name_of(user)
        self.gateway.submit(
            platform=self.name,
            chat_id=channel,
            thread_id=thread,
            message_id=f"{channel}:{ts}",
            text="\n".join(lines),
            user_id=user,
            user_name=name,
            images=pictures,
        )

    # --- outbound -------------------------------------------------------------------

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> str | None:
        import aiohttp
        from slack_sdk.errors import SlackApiError, SlackClientError

        if self._web is None:
            raise SendError("not connected to Slack")
        try:
            answer = await self._web.chat_postMessage(
                channel=chat_id,
                text=text,
                thread_ts=thread_id or None,
                mrkdwn=True,
                unfurl_links=False,
                # What was_sent looks for after a crash or a lost answer.
                metadata={
                    "event_type": CHUNK_EVENT,
                    "event_payload": {"key": _chunk_key(chat_id, thread_id, reply_to, text)},
                },
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            if error == "ratelimited" or exc.response.status_code == 429:
                retry_after = _retry_after(exc.response.headers)
                raise SendError(
                    f"rate limited by Slack for {retry_after:.0f} s", retry_after=retry_after
                ) from None
            raise SendError(f"Slack refused it: {error}", permanent=error in _PERMANENT) from None
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SendError(f"cannot reach Slack: {_reason(exc)}") from None
        return str(answer.get("ts") or "") or None

    def delivery_mark(self, message: Outbound, chunk: str) -> str:
        """``OLDEST|THREAD|KEY``: the chunk, if it arrived, is a message of the bot after
        OLDEST (a Slack ts) in the chat or thread, carrying KEY in its metadata."""
        key = _chunk_key(message.chat_id, message.thread_id, message.reply_to, chunk)
        return f"{time.time() - MARK_SLACK_SECONDS:.6f}|{message.thread_id}|{key}"

    async def was_sent(self, chat_id: str, mark: str) -> bool | None:
        """Look for the chunk in the chat's (or thread's) recent messages.

        Needs the history scope of that kind of chat (``im:history`` for DMs, which
        receiving them needs anyway; ``channels:history`` for channel threads);
        without it Slack says ``missing_scope`` and the chunk is sent again.
        """
        from slack_sdk.errors import SlackApiError, SlackClientError

        oldest, _, rest = mark.partition("|")
        thread, _, key = rest.partition("|")
        if self._web is None or not key:
            return None
        try:
            if thread:
                answer = await self._web.conversations_replies(
                    channel=chat_id, ts=thread, oldest=oldest, include_all_metadata=True, limit=200
                )
            else:
                answer = await self._web.conversations_history(
                    channel=chat_id, oldest=oldest, include_all_metadata=True, limit=200
                )
        except SlackApiError as exc:
            log.info("slack: cannot look for a sent chunk: %s", exc.response.get("error"))
            return None
        except (SlackClientError, OSError, TimeoutError) as exc:
            log.info("slack: cannot look for a sent chunk: %s", _reason(exc))
            return None
        for message in answer.get("messages") or ():
            metadata = message.get("metadata") or {}
            if (
                message.get("user") == self._bot_user_id
                and metadata.get("event_type") == CHUNK_EVENT
                and (metadata.get("event_payload") or {}).get("key") == key
            ):
                return True
        return None if answer.get("has_more") else False

    def format(self, text: str) -> str:
        return markdown_to_mrkdwn(text)


# --- text conversion ------------------------------------------------------------------

_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


def _inbound_text(text: str, bot_user_id: str) -> str:
    """What the user typed, readable: the bot's mention removed, links and entities decoded."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text)
    text = _SLACK_LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return html.unescape(text).strip()


_CODE_BLOCK = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])")
_BOLD_MARK = re.compile(r"\*\*|__")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
_HRULE = re.compile(r"^[ \t]*([-*_])([ \t]*\1){2,}[ \t]*$", re.MULTILINE)


def markdown_to_mrkdwn(text: str) -> str:
    """The model's Markdown as Slack ``mrkdwn``.

    ``**bold**`` → ``*bold*``, ``*italic*``/``_italic_`` → ``_italic_``,
    ``~~strike~~`` → ``~strike~``, ``[text](url)`` → ``<url|text>``, headings
    → bold lines, ``-`` bullets → ``•``; code blocks (their language tag
    dropped: Slack would show it) and inline code are kept verbatim. ``&``,
    ``<`` and ``>`` are escaped everywhere, as Slack requires, except in the
    links made here.
    """
    slots: list[str] = []

    def keep(value: str) -> str:
        slots.append(value)
        return f"\x00{len(slots) - 1}\x00"

    def esc(value: str) -> str:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def code_block(match: re.Match[str]) -> str:
        body = match.group(1).rstrip("\n")
        return keep(f"```\n{esc(body)}\n```")

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        label = label.replace("|", "¦").replace(">", "›")
        return keep(f"<{esc(url)}|{esc(label)}>" if label else f"<{esc(url)}>")

    text = _CODE_BLOCK.sub(code_block, text)
    text = _INLINE_CODE.sub(lambda m: keep(esc(m.group(0))), text)
    text = _IMAGE.sub(link, text)
    text = _LINK.sub(link, text)
    text = _AUTOLINK.sub(lambda m: keep(f"<{esc(m.group(1))}>"), text)
    text = esc(text)
    text = _HRULE.sub("──────────", text)
    text = _HEADING.sub(lambda m: keep("*" + _BOLD_MARK.sub("", m.group(1)).strip() + "*"), text)
    text = _BOLD.sub(lambda m: keep(f"*{m.group(2)}*"), text)
    text = _ITALIC_STAR.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    while "\x00" in text:
        restored = re.sub(r"\x00(\d+)\x00", lambda m: slots[int(m.group(1))], text)
        if restored == text:
            break
        text = restored
    return text


# --- helpers ----------------------------------------------------------------------------


class _TokenFromEnvNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns that the given client wins: it is the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _chunk_key(chat_id: str, thread_id: str, reply_to: str, text: str) -> str:
    """What identifies one chunk of one reply (the same for a re-send)."""
    return hashlib.sha256(f"{chat_id}\0{thread_id}\0{reply_to}\0{text}".encode()).hexdigest()[:32]


def _token(env: str, prefix: str, what: str) -> str:
    value = os.environ.get(env, "").strip()
    if not value:
        raise UsageError(
            f"the slack platform needs {env} in {home.env_path()}: {what}, from your app at "
            f"https://api.slack.com/apps; add a line {env}={prefix}... to that file"
        )
    if not value.startswith(prefix):
        raise UsageError(f"{env} in {home.env_path()} must be {what}, starting with {prefix!r}")
    return value


def _retry_after(headers: Any) -> float:
    try:
        return max(1.0, float(headers.get("Retry-After", 1)))
    except (TypeError, ValueError, AttributeError):
        return 1.0


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
