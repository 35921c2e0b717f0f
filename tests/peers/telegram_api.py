"""A loopback Telegram Bot API server, faithful to https://core.telegram.org/bots/api.

No Bot API server that the official client libraries accept runs here (npm
``telegram-test-api`` answers ``getMe`` without ``is_bot``, which
python-telegram-bot rejects; the real ``telegram-bot-api`` needs Telegram's
servers behind it), so this one speaks the documented wire protocol itself:

- ``https://api.telegram.org/bot<token>/<method>`` becomes
  ``http://127.0.0.1:PORT/bot<token>/<method>``; give python-telegram-bot
  ``base_url=server.base_url`` (``.../bot``: the library appends the token).
  Method names are case-insensitive, as the docs say. Parameters come as a
  query string, ``application/x-www-form-urlencoded``, ``application/json`` or
  ``multipart/form-data``; nested objects in form fields are JSON strings.
- Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false,
  "error_code": N, "description": "..."}`` (plus ``parameters.retry_after``
  for 429), with the HTTP status equal to ``error_code``. A well-formed but
  wrong token gets 401 ``Unauthorized``, a malformed one or an unknown method
  404 ``Not Found``, as api.telegram.org does.
- ``getMe``; ``getUpdates`` long polling with ``offset`` (updates below it are
  confirmed and forgotten; a negative offset keeps the last ``-offset``),
  ``limit`` (1-100), ``timeout`` and ``allowed_updates`` (kept until changed;
  it filters updates created afterwards). A second ``getUpdates`` while one is
  waiting ends the first with 409 ``Conflict: terminated by other getUpdates
  request``; with a webhook set ``getUpdates`` is a 409 as well.
  ``setWebhook``/``deleteWebhook``/``getWebhookInfo``.
- ``sendMessage`` with ``parse_mode`` ``HTML``, ``MarkdownV2`` or ``Markdown``
  parsed into entities the way Telegram does (unbalanced or unknown tags,
  unescaped reserved characters: 400 ``Bad Request: can't parse entities:
  ...``), the 4096-character limit counted after parsing (400 ``message is too
  long``), ``reply_parameters`` (or the older ``reply_to_message_id``) and
  ``message_thread_id`` (forum topics). Unknown chats: 400 ``chat not found``;
  a chat whose user blocked the bot: 403 ``Forbidden: bot was blocked by the
  user``. ``sendChatAction`` with the documented actions.
  ``editMessageReplyMarkup``: 400 ``message to edit not found`` for an id the
  chat does not hold, ``message can't be edited`` for another user's message,
  ``message is not modified: ...`` when the keyboard is already the one asked
  for (none, when ``reply_markup`` is left out).
- Message ids as Telegram numbers them: private chats and basic groups share
  the bot's one sequence, so ids in one such chat have gaps; supergroups and
  channels number their own messages.

Test hooks, callable from the test's thread (the server runs its own event
loop in a thread)::

    with TelegramAPI() as tg:
        bot = telegram.Bot(tg.token, base_url=tg.base_url)
        sent = tg.user_message(chat_id=42, text="hello")   # -> Injected(update_id, ...)
        tg.wait_for(lambda: tg.sent(42))                   # what the bot sent to chat 42
        tg.fail_sends(2, status=429, retry_after=1)        # next 2 sendMessage: 429
        tg.outage(5)                                       # refuse connections for 5 s
        tg.hang_polls()                                    # next getUpdates never answers
        tg.intercept_sends(lambda params: "unanswered")    # sent, but the answer is cut off
        new_id = tg.migrate(-123)                          # the group became a supergroup

``python -m tests.peers.telegram_api [--port N] [--token T]`` serves one for a
person: type ``CHAT_ID TEXT`` to send the bot a message; its answers are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .daemons import Daemon

__all__ = ["DEFAULT_TOKEN", "Call", "EntityError", "Injected", "TelegramAPI", "parse_entities"]

DEFAULT_TOKEN = "123456789:AAH-loopback-test-token_0123456789abc"
TOKEN_SHAPE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{30,}$")
MAX_TEXT = 4096
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
#: Update types delivered when allowed_updates was never given (or given empty).
DEFAULT_EXCLUDED = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(
        self,
        code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


class EntityError(ValueError):
    """Text that Telegram's entity parser rejects; the message follows "can't parse entities: "."""


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# --- entity parsing (parse_mode) ----------------------------------------------------------


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Text:
    """Visible text being built, with positions in UTF-16 code units (as entities count)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += _u16(text)

    def value(self) -> str:
        return "".join(self.parts)


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_ATTR = re.compile(r"""\s*([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def _parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Text()
    entities: list[dict[str, Any]] = []
    # Open tags: (tag name, entity dict without length, start position)
    stack: list[tuple[str, dict[str, Any], int]] = []
    i = 0
    while i < len(src):
        char = src[i]
        if char == "&":
            match = _HTML_ENTITY.match(src, i)
            if match is None:
                out.add("&")  # Telegram keeps a lone "&" as it is.
                i += 1
                continue
            name = match.group(1)
            if name.startswith("#x"):
                out.add(chr(int(name[2:], 16)))
            elif name.startswith("#"):
                out.add(chr(int(name[1:])))
            else:
                out.add(html.unescape(f"&{name};"))
            i = match.end()
            continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        offset = _byte_offset(src, i)
        if src.startswith("</", i):
            end = src.find(">", i)
            if end < 0:
                raise EntityError(f"Unclosed end tag at byte offset {offset}")
            name = src[i + 2 : end].strip().lower()
            if not stack:
                raise EntityError(f"Unexpected end tag at byte offset {offset}")
            open_name, entity, start = stack.pop()
            if name != open_name:
                raise EntityError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{open_name}>", '
                    f'found "</{name}>"'
                )
            i = end + 1
            if entity["type"] == "code" and stack and stack[-1][1]["type"] == "pre":
                language = entity.pop("language", None)
                if language:
                    stack[-1][1]["language"] = language
                continue  # <pre><code class="language-x"> is one pre entity.
            if entity["type"] == "code":
                entity.pop("language", None)  # Only a code block inside pre has a language.
            if out.pos > start:
                entities.append({**entity, "offset": start, "length": out.pos - start})
            continue
        end = i + 1
        while end < len(src) and not src[end].isspace() and src[end] not in "<>/":
            end += 1
        name = src[i + 1 : end].lower()
        if name not in _HTML_TAGS:
            raise EntityError(f'Unsupported start tag "{name}" at byte offset {offset}')
        close = src.find(">", end)
        if close < 0:
            raise EntityError(f"Unclosed start tag at byte offset {offset}")
        attrs: dict[str, str] = {}
        rest = src[end:close].rstrip().removesuffix("/")
        position = 0
        while position < len(rest):
            attr = _ATTR.match(rest, position)
            if attr is None or attr.end() == position:
                raise EntityError(f"Unclosed start tag at byte offset {offset}")
            value = attr.group(2) if attr.group(2) is not None else attr.group(3)
            if value is None:
                value = attr.group(4) or ""
            attrs[attr.group(1).lower()] = html.unescape(value)
            position = attr.end()
            while position < len(rest) and rest[position].isspace():
                position += 1
        entity: dict[str, Any] = {"type": _HTML_TAGS[name]}
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        if name == "a":
            href = attrs.get("href", "")
            user = re.fullmatch(r"tg://user\?id=(\d+)", href)
            if user:
                entity = {"type": "text_mention", "user": {"id": int(user.group(1))}}
            else:
                entity["url"] = href
        elif name == "code":
            css = attrs.get("class", "")
            if css.startswith("language-"):
                entity["language"] = css.removeprefix("language-")
        elif name == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        elif name == "tg-emoji":
            entity["custom_emoji_id"] = attrs.get("emoji-id", "")
        stack.append((name, entity, out.pos))
        i = close + 1
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.value(), entities


_MD2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
}


def _parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Text()
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int, int]] = []  # (type, start, byte offset of the marker)
    i = 0
    at_line_start = True
    quote_start: int | None = None

    def toggle(kind: str, width: int) -> None:
        nonlocal i
        if stack and stack[-1][0] == kind:
            _, start, _ = stack.pop()
            if out.pos > start:
                entities.append({"type": kind, "offset": start, "length": out.pos - start})
        elif any(open_kind == kind for open_kind, _, _ in stack):
            top = stack[-1]
            raise EntityError(
                f"Can't find end of {_MD2_NAMES[top[0]]} entity at byte offset {top[2]}"
            )
        else:
            stack.append((kind, out.pos, _byte_offset(src, i)))
        i += width

    while i < len(src):
        char = src[i]
        line_start, at_line_start = at_line_start, False
        if char == "\n":
            if quote_start is not None and not src.startswith(">", i + 1):
                entities.append(
                    {"type": "blockquote", "offset": quote_start, "length": out.pos - quote_start}
                )
                quote_start = None
            out.add(char)
            i += 1
            at_line_start = True
            continue
        if char == "\\" and i + 1 < len(src) and 0 < ord(src[i + 1]) < 127:
            out.add(src[i + 1])
            i += 2
            continue
        if char not in _MD2_RESERVED:
            out.add(char)
            i += 1
            continue
        offset = _byte_offset(src, i)
        if char == "*":
            toggle("bold", 1)
        elif char == "_":
            if src.startswith("__", i):
                toggle("underline", 2)
            else:
                toggle("italic", 1)
        elif char == "~":
            toggle("strikethrough", 1)
        elif char == "|" and src.startswith("||", i):
            toggle("spoiler", 2)
        elif char == "[":
            stack.append(("text_link", out.pos, offset))
            i += 1
        elif char == "]" and stack and stack[-1][0] == "text_link" and src.startswith("](", i):
            url_end = i + 2
            url: list[str] = []
            while url_end < len(src) and src[url_end] != ")":
                if src[url_end] == "\\" and url_end + 1 < len(src):
                    url_end += 1
                url.append(src[url_end])
                url_end += 1
            if url_end >= len(src):
                raise EntityError(f"Can't find end of a URL at byte offset {offset}")
            _, start, _ = stack.pop()
            if out.pos > start:
                entities.append(
                    {
                        "type": "text_link",
                        "offset": start,
                        "length": out.pos - start,
                        "url": "".join(url),
                    }
                )
            i = url_end + 1
        elif char == "`":
            fence = 3 if src.startswith("```", i) else 1
            body_start = i + fence
            language = ""
            if fence == 3:
                newline = src.find("\n", body_start)
                first_line = src[body_start:newline] if newline >= 0 else ""
                if newline >= 0 and re.fullmatch(r"[\w+#.-]*", first_line):
                    language = first_line
                    body_start = newline + 1
            j = body_start
            body: list[str] = []
            while True:
                if j >= len(src):
                    kind = "Pre" if fence == 3 else "Code"
                    raise EntityError(f"Can't find end of {kind} entity at byte offset {offset}")
                if src[j] == "\\" and j + 1 < len(src) and src[j + 1] in "`\\":
                    body.append(src[j + 1])
                    j += 2
                    continue
                if src.startswith("`" * fence, j):
                    break
                body.append(src[j])
                j += 1
            start = out.pos
            out.add("".join(body))
            entity: dict[str, Any] = {
                "type": "pre" if fence == 3 else "code",
                "offset": start,
                "length": out.pos - start,
            }
            if language:
                entity["language"] = language
            if out.pos > start:
                entities.append(entity)
            i = j + fence
        elif char == ">" and line_start:
            if quote_start is None:
                quote_start = out.pos
            i += 1
        else:
            raise EntityError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
    if stack:
        kind, _, offset = stack[-1]
        raise EntityError(f"Can't find end of {_MD2_NAMES[kind]} entity at byte offset {offset}")
    if quote_start is not None and out.pos > quote_start:
        entities.append(
            {"type": "blockquote", "offset": quote_start, "length": out.pos - quote_start}
        )
    return out.value(), entities


def _parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    """The legacy Markdown mode: *bold*, _italic_, `code`, ```pre```, [text](url)."""
    out = _Text()
    entities: list[dict[str, Any]] = []
    i = 0
    kinds = {"*": "bold", "_": "italic"}
    while i < len(src):
        char = src[i]
        offset = _byte_offset(src, i)
        if char in kinds:
            end = src.find(char, i + 1)
            if end < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            start = out.pos
            out.add(src[i + 1 : end])
            if out.pos > start:
                entities.append({"type": kinds[char], "offset": start, "length": out.pos - start})
            i = end + 1
        elif char == "`":
            fence = "```" if src.startswith("```", i) else "`"
            end = src.find(fence, i + len(fence))
            if end < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            start = out.pos
            out.add(src[i + len(fence) : end])
            kind = "pre" if fence == "```" else "code"
            if out.pos > start:
                entities.append({"type": kind, "offset": start, "length": out.pos - start})
            i = end + len(fence)
        elif char == "[":
            match = re.compile(r"\[([^\]]*)\]\(([^)]*)\)").match(src, i)
            if match is None:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            start = out.pos
            out.add(match.group(1))
            entities.append(
                {
                    "type": "text_link",
                    "offset": start,
                    "length": out.pos - start,
                    "url": match.group(2),
                }
            )
            i = match.end()
        elif char == "\\" and i + 1 < len(src) and src[i + 1] in "*_`[":
            out.add(src[i + 1])
            i += 2
        else:
            out.add(char)
            i += 1
    return out.value(), entities


def parse_entities(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The visible text and its entities, as Telegram parses ``text`` in ``parse_mode``.

    Raises :class:`EntityError` with Telegram's own wording when it would refuse it.
    """
    if not parse_mode:
        return text, []
    mode = parse_mode.lower()
    if mode == "html":
        visible, entities = _parse_html(text)
    elif mode == "markdownv2":
        visible, entities = _parse_markdown_v2(text)
    elif mode == "markdown":
        visible, entities = _parse_markdown(text)
    else:
        raise ValueError(parse_mode)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return visible, entities


# --- the server's state ---------------------------------------------------------------


@dataclass(frozen=True)
class Injected:
    """A message put in the bot's update queue by a test."""

    update_id: int
    message_id: int
    chat_id: int


@dataclass(frozen=True)
class Call:
    """One API request as the server saw it (``status`` 200 or the error code)."""

    method: str
    params: dict[str, Any]
    status: int
    time: float
    description: str = ""


@dataclass
class _Chat:
    chat: dict[str, Any]
    next_message_id: int = 1
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    topics: set[int] = field(default_factory=set)
    blocked: bool = False
    #: The supergroup this group became (sending here is then a 400 that says where).
    migrated_to: int | None = None


@dataclass
class _Poll:
    event: asyncio.Event
    conflict: bool = False
    hung: bool = False


class TelegramAPI(Daemon):
    """The Bot API for one bot, on 127.0.0.1, served from a thread; see the module doc."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = "hermes_test_bot",
        first_name: str = "Hermes",
        port: int = 0,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if ":" in token else 1
        self.username = username
        self.first_name = first_name
        self._port = port
        self._lock = threading.RLock()
        self._update_ids = itertools.count(secrets.randbelow(10**6) + 10**8)
        self._updates: deque[dict[str, Any]] = deque()
        self._allowed: frozenset[str] | None = None
        self._chats: dict[int, _Chat] = {}
        self._calls: list[Call] = []
        self._failures: deque[ApiError] = deque()
        self._intercept: Callable[[dict[str, Any]], str] | None = None
        self._webhook = ""
        self._polls: list[_Poll] = []
        self._hang_next = 0
        self._outage_until = 0.0
        self._outage_mode = ""
        self._user_ids = itertools.count(1000)
        self._sequence = itertools.count(1)  # Order of all messages, across chats.
        # Message ids: private chats and basic groups take them from the bot's one
        # "message box", shared by all of them; supergroups and channels count their own.
        self._box_ids = itertools.count(1)
        #: Files users sent (photos, documents): file_id -> (file_path, bytes).
        self._files: dict[str, tuple[str, bytes]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    # --- lifetime -------------------------------------------------------------------

    def start(self) -> TelegramAPI:
        if self._thread is not None:
            return self
        if not self._port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self._port = int(sock.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="telegram-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Telegram API server did not start")
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self) -> None:
        if self._thread is None or self.loop is None:
            return
        stopped = self._stopped
        if stopped is not None:
            self.loop.call_soon_threadsafe(stopped.set)
        self._thread.join(10)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.*}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # A client that goes away (a killed gateway) ends its waiting getUpdates.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        try:
            await self._runner.setup()
            await self._listen()
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            with self._lock:
                polls = list(self._polls)
            for poll in polls:
                poll.event.set()
            await self._runner.cleanup()

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
        await site.start()
        self._site = site

    def _call(self, coro_fn: Callable[[], Any], timeout: float = 10) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    # --- what tests read ------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """For ``Bot(token, base_url=...)``: the library appends the token."""
        return f"http://127.0.0.1:{self._port}/bot"

    def calls(self, method: str | None = None) -> list[Call]:
        """The requests received (all, or of one method, case-insensitively), oldest first."""
        with self._lock:
            calls = list(self._calls)
        if method is None:
            return calls
        return [c for c in calls if c.method.lower() == method.lower()]

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """The messages the bot sent (to one chat, or to all), oldest first.

        Each is the Message object the API returned, plus ``parse_mode``,
        ``source`` (the text as the bot sent it, before entity parsing) and
        ``accepted_at`` (``time.monotonic()`` when the server accepted it).
        """
        with self._lock:
            if chat_id is None:
                chats = list(self._chats.values())
            else:
                chats = [self._chats[chat_id]] if chat_id in self._chats else []
            messages = [
                dict(m)
                for chat in chats
                for m in chat.messages.values()
                if m.get("from", {}).get("id") == self.bot_id
            ]
        return sorted(messages, key=lambda m: m["_seq"])

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not confirmed by the bot yet."""
        with self._lock:
            return list(self._updates)

    def wait_for(
        self, condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02
    ) -> Any:
        """Poll ``condition`` until it is truthy; returns its value or raises AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
            time.sleep(interval)

    # --- what tests do --------------------------------------------------------------

    def user_message(
        self,
        chat_id: int,
        text: str | None = None,
        *,
        user_id: int | None = None,
        first_name: str = "Alice",
        username: str | None = None,
        chat_type: str = "private",
        title: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        is_bot: bool = False,
        **fields: Any,
    ) -> Injected:
        """A user sends the bot a message; returns its update and message ids.

        In a private chat the user id defaults to the chat id. ``chat_type``
        ``"supergroup"`` with ``thread_id`` makes a forum topic message.
        ``reply_to`` is the id of a message in the chat this one answers;
        ``is_bot`` makes the sender another bot.
        ``fields`` are added to the Message (``caption``, ``photo``, ``sticker``...).
        """
        if user_id is None:
            user_id = chat_id if chat_type == "private" else next(self._user_ids)
        user: dict[str, Any] = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = "en"
        with self._lock:
            chat = self._chat(chat_id, chat_type, title, user, forum=thread_id is not None)
            message_id = self._next_message_id(chat)
            message: dict[str, Any] = {
                "message_id": message_id,
                "from": user,
                "chat": chat.chat,
                "date": int(time.time()),
            }
            if thread_id is not None:
                chat.topics.add(thread_id)
                message["message_thread_id"] = thread_id
                message["is_topic_message"] = True
            if reply_to is not None and reply_to in chat.messages:
                message["reply_to_message"] = _public(chat.messages[reply_to])
            if text is not None:
                message["text"] = text
                entities = _auto_entities(text)
                if entities:
                    message["entities"] = entities
            message.update(fields)
            chat.messages[message_id] = {**message, "_seq": self._seq()}
        update_id = self.inject({"message": message})
        return Injected(update_id=update_id, message_id=message_id, chat_id=chat_id)

    def add_file(self, data: bytes, name: str) -> dict[str, Any]:
        """Keep a file a user sent; returns the fields every file object has."""
        with self._lock:
            number = len(self._files) + 1
            file_id = f"AgACAgQAAxk{number:04d}{secrets.token_hex(8)}"
            self._files[file_id] = (f"photos/file_{number}_{name}", data)
        return {"file_id": file_id, "file_unique_id": f"AQAD{number}", "file_size": len(data)}

    def user_photo(
        self, chat_id: int, data: bytes, *, caption: str | None = None, **kwargs: Any
    ) -> Injected:
        """A user sends a photo: Telegram offers it in sizes; here one, the file as given."""
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(data)) as image:
            width, height = image.size
        size = {**self.add_file(data, "photo.jpg"), "width": width, "height": height}
        thumb = {**self.add_file(data, "thumb.jpg"), "width": 1, "height": 1}
        fields: dict[str, Any] = {"photo": [thumb, size]}
        if caption is not None:
            fields["caption"] = caption
        return self.user_message(chat_id, None, **fields, **kwargs)

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error_response(ApiError(401, "Unauthorized"))
        with self._lock:
            found = [
                data for path, data in self._files.values() if path == request.match_info["path"]
            ]
        if not found:
            return _error_response(ApiError(404, "Not Found"))
        return web.Response(body=found[0], content_type="application/octet-stream")

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = params.get("file_id")
        with self._lock:
            found = self._files.get(file_id) if isinstance(file_id, str) else None
        if found is None:
            raise _bad("invalid file_id")
        path, data = found
        if len(data) > 20 * 1024 * 1024:
            raise _bad("file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"AQAD{path}",
            "file_size": len(data),
            "file_path": path,
        }

    def inject(self, body: dict[str, Any]) -> int:
        """Queue an update of any shape (``update_id`` is added); returns its id.

        For malformed updates: the body is delivered as it is.
        """
        with self._lock:
            update_id = next(self._update_ids)
            kinds = [k for k in body if k != "update_id"]
            allowed = self._allowed
            if allowed is None:
                wanted = not any(k in DEFAULT_EXCLUDED for k in kinds)
            else:
                wanted = not kinds or any(k in allowed for k in kinds)
            if wanted:
                self._updates.append({"update_id": update_id, **body})
        self._wake()
        return update_id

    def migrate(self, chat_id: int, *, user_id: int | None = None) -> int:
        """A group becomes a supergroup (with a new id, returned), as Telegram does it.

        The old group gets a service message ``migrate_to_chat_id``, the new
        supergroup one with ``migrate_from_chat_id``; sending to the old id is
        400 ``group chat was upgraded to a supergroup chat`` with
        ``parameters.migrate_to_chat_id``.
        """
        with self._lock:
            old = self._chats[chat_id]
            new_id = -1_000_000_000_000 + chat_id  # -123 becomes -1000000000123.
            user = {"id": user_id or next(self._user_ids), "is_bot": False, "first_name": "Ann"}
            new = self._chat(new_id, "supergroup", old.chat.get("title"), user, forum=False)
            old.migrated_to = new_id
            events = []
            for chat, field_name, value in (
                (old, "migrate_to_chat_id", new_id),
                (new, "migrate_from_chat_id", chat_id),
            ):
                message_id = self._next_message_id(chat)
                message = {
                    "message_id": message_id,
                    "from": user,
                    "chat": chat.chat,
                    "date": int(time.time()),
                    field_name: value,
                }
                chat.messages[message_id] = {**message, "_seq": self._seq()}
                events.append(message)
        for message in events:
            self.inject({"message": message})
        return new_id

    def block(self, chat_id: int, blocked: bool = True) -> None:
        """The user of a private chat blocks (or unblocks) the bot."""
        with self._lock:
            self._chats[chat_id].blocked = blocked

    def fail_sends(
        self,
        count: int,
        *,
        status: int = 429,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``count`` sendMessage calls fail with ``status``.

        429 carries ``parameters.retry_after``; 403 is "bot was blocked by the
        user"; 400 is "chat not found" unless ``description`` says otherwise;
        500 is "Internal Server Error".
        """
        defaults = {
            429: f"Too Many Requests: retry after {retry_after}",
            403: "Forbidden: bot was blocked by the user",
            400: "Bad Request: chat not found",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }
        error = ApiError(
            status,
            description or defaults.get(status, "Error"),
            retry_after if status == 429 else None,
        )
        with self._lock:
            self._failures.extend(error for _ in range(count))

    def intercept_sends(self, decide: Callable[[dict[str, Any]], str] | None) -> None:
        """Let ``decide(params)`` choose the fate of each sendMessage, until given None.

        ``"answer"``: as usual. ``"lost"``: the connection is cut before Telegram
        takes the request (nothing is sent). ``"unanswered"``: Telegram takes it
        (the message is in the chat) and the connection is cut before the answer.
        ``decide`` runs in the server's thread, before the request is handled: it
        may kill the client, as a crash at that moment would.
        """
        with self._lock:
            self._intercept = decide

    def outage(self, seconds: float, *, mode: str = "refuse") -> None:
        """Take the API away for ``seconds``, from now; returns at once.

        ``refuse``: the listening socket is closed and open connections are cut,
        so connecting fails (ECONNREFUSED) until it comes back on the same port.
        ``502``: connections are accepted but every request gets 502 Bad Gateway
        from the "proxy" in front (an HTML page, not the API's JSON).
        """
        if mode not in ("refuse", "502"):
            raise ValueError(mode)
        with self._lock:
            self._outage_until = time.monotonic() + seconds
            self._outage_mode = mode
            polls = list(self._polls)
        if mode == "refuse":
            self._call(self._go_down)
            assert self.loop is not None
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._come_back(seconds)))
        else:
            for poll in polls:
                self._wake_poll(poll)

    async def _go_down(self) -> None:
        assert self._runner is not None and self._runner.server is not None
        if self._site is not None:
            await self._site.stop()
            self._site = None
        await self._runner.server.shutdown(0.05)

    async def _come_back(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._listen()

    @property
    def down(self) -> bool:
        with self._lock:
            return time.monotonic() < self._outage_until

    def hang_polls(self, count: int = 1) -> None:
        """The next ``count`` getUpdates requests (a waiting one included) never answer.

        Like a connection that died without a FIN: the bot hears nothing, not
        even an error, and only a timeout or a watchdog of its own gets it out.
        """
        with self._lock:
            waiting = [p for p in self._polls if not p.hung]
            for poll in waiting[:count]:
                poll.hung = True
                self._wake_poll(poll)
            self._hang_next += max(0, count - len(waiting))

    # --- internals ------------------------------------------------------------------

    def _seq(self) -> int:
        return next(self._sequence)

    def _chat(
        self,
        chat_id: int,
        chat_type: str,
        title: str | None,
        user: dict[str, Any],
        *,
        forum: bool,
    ) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is not None:
            if forum and chat.chat.get("type") == "supergroup":
                chat.chat["is_forum"] = True
            return chat
        if chat_type == "private":
            info: dict[str, Any] = {"id": chat_id, "type": "private"}
            info["first_name"] = user["first_name"]
            if "username" in user:
                info["username"] = user["username"]
        else:
            info = {"id": chat_id, "type": chat_type, "title": title or f"Group {chat_id}"}
            if forum:
                info["is_forum"] = True
        chat = _Chat(chat=info)
        self._chats[chat_id] = chat
        return chat

    def _next_message_id(self, chat: _Chat) -> int:
        if chat.chat.get("type") in ("supergroup", "channel"):
            message_id = chat.next_message_id
            chat.next_message_id += 1
            return message_id
        return next(self._box_ids)

    def _wake(self) -> None:
        with self._lock:
            polls = list(self._polls)
        for poll in polls:
            self._wake_poll(poll)

    def _wake_poll(self, poll: _Poll) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(poll.event.set)

    def _record(self, method: str, params: dict[str, Any], status: int, description: str) -> None:
        with self._lock:
            self._calls.append(Call(method, params, status, time.monotonic(), description))

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error_response(ApiError(404, "Not Found"))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        with self._lock:
            outage = self._outage_mode if time.monotonic() < self._outage_until else ""
        if outage == "502":
            # nginx in front of the Bot API answers for it while the backend is away.
            return web.Response(
                status=502,
                text="<html><head><title>502 Bad Gateway</title></head><body>"
                "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx/1.18.0</center>"
                "</body></html>",
                content_type="text/html",
            )
        try:
            params = await _read_params(request)
        except ApiError as exc:
            self._record(method, {}, exc.code, exc.description)
            return _error_response(exc)
        token = request.match_info["token"]
        try:
            if not TOKEN_SHAPE.match(token):
                raise ApiError(404, "Not Found")
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._methods().get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
        except ApiError as exc:
            self._record(method, params, exc.code, exc.description)
            return _error_response(exc)
        except _Cut as cut:
            self._record(method, params, 0, str(cut))
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # Never reaches the client.
        except _Hung:
            self._record(method, params, 0, "hung")
            await asyncio.Event().wait()  # Until the connection is cut or the server stops.
            raise AssertionError("unreachable") from None
        self._record(method, params, 200, "")
        return web.json_response({"ok": True, "result": result})

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action,
            "getfile": self._get_file,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "logout": self._ok,
            "close": self._ok,
        }

    async def _ok(self, params: dict[str, Any]) -> bool:
        return True

    def _me(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._me()

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url", ""))
        if url and not url.startswith("https://"):
            raise _bad("bad webhook: HTTPS url must be provided for webhook")
        with self._lock:
            self._webhook = url
            if params.get("drop_pending_updates") in (True, "true", "True"):
                self._updates.clear()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._webhook = ""
            if params.get("drop_pending_updates") in (True, "true", "True"):
                self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self._webhook,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = _int_param(params, "offset", 0)
        limit = min(max(_int_param(params, "limit", 100), 1), 100)
        timeout = max(_int_param(params, "timeout", 0), 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            try:
                allowed = json.loads(allowed)
            except ValueError:
                raise _bad("can't parse allowed_updates JSON array") from None
        with self._lock:
            if self._webhook:
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if isinstance(allowed, list):
                self._allowed = frozenset(str(a) for a in allowed) if allowed else None
            if offset > 0:
                while self._updates and self._updates[0]["update_id"] < offset:
                    self._updates.popleft()
            elif offset < 0:
                while len(self._updates) > -offset:
                    self._updates.popleft()
            if self._hang_next > 0:
                self._hang_next -= 1
                raise _Hung
            for other in self._polls:  # Only one bot instance may poll at a time.
                if not other.hung:
                    other.conflict = True
                    self._wake_poll(other)
            poll = _Poll(asyncio.Event())
            self._polls.append(poll)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with self._lock:
                    if poll.hung:
                        raise _Hung
                    if poll.conflict:
                        raise ApiError(
                            409,
                            "Conflict: terminated by other getUpdates request; make sure "
                            "that only one bot instance is running",
                        )
                    batch = list(itertools.islice(self._updates, limit))
                    poll.event.clear()
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0 or self._stopped_set():
                    return batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poll.event.wait(), remaining)
        finally:
            with self._lock:
                if poll in self._polls:
                    self._polls.remove(poll)

    def _stopped_set(self) -> bool:
        return self._stopped is not None and self._stopped.is_set()

    def _target(self, params: dict[str, Any]) -> _Chat:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        with self._lock:
            chat: _Chat | None = None
            if isinstance(raw, str) and raw.startswith("@"):
                chat = next(
                    (c for c in self._chats.values() if c.chat.get("username") == raw[1:]), None
                )
            else:
                try:
                    chat = self._chats.get(int(raw))
                except (TypeError, ValueError):
                    chat = None
            if chat is None:
                raise _bad("chat not found")
            if chat.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if chat.migrated_to is not None:
                raise ApiError(
                    400,
                    "Bad Request: group chat was upgraded to a supergroup chat",
                    migrate_to_chat_id=chat.migrated_to,
                )
            return chat

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat = self._target(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self._check_thread(chat, params)
        return True

    def _check_thread(self, chat: _Chat, params: dict[str, Any]) -> int | None:
        thread = params.get("message_thread_id")
        if thread is None or thread == "":
            return None
        try:
            thread_id = int(thread)
        except (TypeError, ValueError):
            raise _bad("message thread not found") from None
        if not chat.chat.get("is_forum") or thread_id not in chat.topics:
            raise _bad("message thread not found")
        return thread_id

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            decide = self._intercept
        if failure is not None:
            raise failure
        fate = decide(params) if decide is not None else "answer"
        if fate not in ("answer", "lost", "unanswered"):
            raise ValueError(f"intercept_sends: unknown fate {fate!r}")
        if fate == "lost":
            raise _Cut("lost")
        chat = self._target(params)
        text = params.get("text")
        if not isinstance(text, str) or not text:
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode") or None
        if parse_mode is not None and str(parse_mode).lower() not in (
            "html",
            "markdown",
            "markdownv2",
        ):
            raise _bad("unsupported parse_mode")
        try:
            visible, entities = parse_entities(text, parse_mode)
        except EntityError as exc:
            raise _bad(f"can't parse entities: {exc}") from None
        if not visible.strip():
            raise _bad("message text is empty")
        if len(visible) > MAX_TEXT:  # Counted in characters, after entity parsing.
            raise _bad("message is too long")
        thread_id = self._check_thread(chat, params)
        reply = _json_param(params, "reply_parameters")
        reply_to: int | None = None
        allow_without = False
        if isinstance(reply, dict):
            reply_to = _as_int(reply.get("message_id"))
            allow_without = bool(reply.get("allow_sending_without_reply"))
        elif params.get("reply_to_message_id") not in (None, ""):
            reply_to = _as_int(params.get("reply_to_message_id"))
            allow_without = str(params.get("allow_sending_without_reply")).lower() == "true"
        with self._lock:
            replied = chat.messages.get(reply_to) if reply_to is not None else None
            if reply_to is not None and replied is None and not allow_without:
                raise _bad("message to be replied not found")
            message_id = self._next_message_id(chat)
            message: dict[str, Any] = {
                "message_id": message_id,
                "from": {
                    "id": self.bot_id,
                    "is_bot": True,
                    "first_name": self.first_name,
                    "username": self.username,
                },
                "chat": chat.chat,
                "date": int(time.time()),
                "text": visible,
            }
            if entities:
                message["entities"] = entities
            if thread_id is not None:
                message["message_thread_id"] = thread_id
                message["is_topic_message"] = True
            if replied is not None:
                message["reply_to_message"] = _public(replied)
            chat.messages[message_id] = {
                **message,
                "_seq": self._seq(),
                "parse_mode": parse_mode,
                "source": text,
                "accepted_at": time.monotonic(),
            }
        if fate == "unanswered":
            raise _Cut("unanswered")
        return message

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("inline_message_id"):
            raise _bad("message to edit not found")  # No inline messages here.
        chat = self._target(params)
        markup = _json_param(params, "reply_markup")
        if markup is None:
            markup = {"inline_keyboard": []}
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse inline keyboard markup: object expected")
        message_id = _as_int(params.get("message_id"))
        with self._lock:
            stored = chat.messages.get(message_id) if message_id is not None else None
            if stored is None:
                raise _bad("message to edit not found")
            if stored.get("from", {}).get("id") != self.bot_id or "text" not in stored:
                raise _bad("message can't be edited")
            current = stored.get("reply_markup") or {"inline_keyboard": []}
            new = {"inline_keyboard": rows}
            if current == new:
                raise _bad(
                    "message is not modified: specified new message content and reply "
                    "markup are exactly the same as a current content and reply markup of "
                    "the message"
                )
            if rows:
                stored["reply_markup"] = new
            else:
                stored.pop("reply_markup", None)
            stored["edit_date"] = int(time.time())
            result = _public(stored)
            if "reply_to_message" in stored:
                result["reply_to_message"] = stored["reply_to_message"]
            return result


class _Cut(Exception):
    """The connection of this request is to be cut (``str()``: before or after handling)."""


class _Hung(Exception):
    """This getUpdates request is to be left unanswered."""


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the API shows it (without the server's own bookkeeping)."""
    hidden = {"_seq", "parse_mode", "source", "accepted_at", "reply_to_message"}
    return {k: v for k, v in message.items() if k not in hidden}


def _auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram finds in a user's plain text: mentions and bot commands."""
    entities: list[dict[str, Any]] = []
    for match in re.finditer(r"(?<![\w@/])(@[A-Za-z0-9_]{4,32}|/[A-Za-z0-9_]+(?:@\w+)?)", text):
        kind = "mention" if match.group(1).startswith("@") else "bot_command"
        entities.append(
            {
                "type": kind,
                "offset": _u16(text[: match.start()]),
                "length": _u16(match.group(1)),
            }
        )
    return entities


def _error_response(exc: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.retry_after is not None:
        body["parameters"] = {"retry_after": exc.retry_after}
    if exc.migrate_to_chat_id is not None:
        body["parameters"] = {"migrate_to_chat_id": exc.migrate_to_chat_id}
    return web.json_response(body, status=exc.code)


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON encoded request body") from None
            if not isinstance(body, dict):
                raise _bad("JSON body must be an object")
            params.update(body)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                params[key] = value if isinstance(value, str) else "<file>"
    return params


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    number = _as_int(value)
    if number is None:
        raise _bad(f"invalid {name} specified")
    return number


def _json_param(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"can't parse {name} JSON object") from None
    return value


# --- for a person: python -m tests.peers.telegram_api ---------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A loopback Telegram Bot API server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args(list(argv) if argv is not None else None)
    with TelegramAPI(args.token, port=args.port) as server:
        print(f"Bot API at {server.base_url} (token {server.token})", flush=True)
        print("type: CHAT_ID TEXT   (Ctrl-D quits)", flush=True)
        shown = 0

        def show() -> None:
            nonlocal shown
            while True:
                time.sleep(0.2)
                sent = server.sent()
                for message in sent[shown:]:
                    print(f"[bot -> {message['chat']['id']}] {message['text']}", flush=True)
                shown = len(sent)

        threading.Thread(target=show, daemon=True).start()
        for line in sys.stdin:
            chat, _, text = line.strip().partition(" ")
            if chat.lstrip("-").isdigit() and text:
                server.user_message(int(chat), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
