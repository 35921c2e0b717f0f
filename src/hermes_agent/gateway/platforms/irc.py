"""IRC: a small asyncio client of our own (RFC 1459/2812), no library needed.

The bot registers (``PASS`` with ``IRC_PASSWORD`` when set, ``NICK``,
``USER``), joins ``gateway.platforms.irc.channels`` and reads ``PRIVMSG``:

- a private message (to the bot's nick) is a message of the chat named after
  the sender's nick;
- in a channel only lines addressed to the bot (``hermes: question`` or
  ``hermes, question``) are messages, of the chat named after the channel;
  the reply starts with the asker's nick so they see it is for them;
- CTCP (``\\x01...\\x01``, ``/me`` included), NOTICEs and the bot's own lines
  are ignored; mIRC colour and formatting codes are removed.

User ids are nicks, and nicks are not authenticated: whoever holds an allowed
nick is let in (on networks that enforce NickServ registration, only its
owner can keep it). ``allowed_chats`` with an invite-only or keyed channel is
the stronger choice.

IRC messages have no ids and are never delivered twice: the server relays a
line once to the clients connected at that moment and replays nothing after
a reconnect (a bouncer with a playback buffer would; do not put one between
the bot and the network). The message id given to the gateway only has to be
unique, so it is the connection's start time, a per-connection counter and
the sender's nick; two identical lines are two messages.

A line is at most 512 bytes with its CRLF, and the server puts the sender's
``:nick!user@host`` in front of what it relays, so a reply is cut into lines
whose UTF-8 bytes fit what is left (never inside a character, at spaces where
possible), each sent as one ``PRIVMSG``, a burst of a few and then one a
second so that the server's flood protection does not drop or delay them.
The bot sends its own ``PING`` after ``ping_interval`` (60) seconds of silence;
the supervisor's watchdog reconnects when even that gets no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms._tls import tls_problem
from hermes_agent.gateway.platforms.base import Platform, SendError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway

log = logging.getLogger("hermes_agent.gateway.irc")

PASSWORD_ENV = "IRC_PASSWORD"
#: The longest line, in bytes, CRLF included (RFC 2812 2.3).
LINE_LIMIT = 512
#: What a relayed line may carry in front of ours: ``:`` nick ``!`` user(10) ``@`` host(63) space.
_PREFIX_ALLOWANCE = 1 + 1 + 10 + 1 + 63 + 1
#: Registration (connect, PASS/NICK/USER, welcome) must finish within this.
REGISTER_TIMEOUT = 30.0
#: Lines sent at once before pacing starts, and the pace after that.
FLOOD_BURST = 4
FLOOD_INTERVAL = 1.0
#: How long a message arriving while the gateway starts may wait to be taken.

_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6})?|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")
_BOLD = "\x02"


class _RefusedError(Exception):
    """The server refused our login (a wrong or missing server password)."""


class _BadNickError(Exception):
    """The server does not accept the configured nick at all."""


@dataclass(frozen=True)
class IrcLine:
    """One parsed line: ``:prefix COMMAND param param :trailing``."""

    prefix: str
    command: str
    params: tuple[str, ...]

    @property
    def nick(self) -> str:
        return self.prefix.split("!", 1)[0]

    def param(self, index: int) -> str:
        return self.params[index] if len(self.params) > index else ""


def parse_line(raw: bytes) -> IrcLine | None:
    """Parse a line (IRCv3 tags skipped); None when it holds no command.

    Text is UTF-8, as on every current network; a line that is not valid
    UTF-8 (an old client's Latin-1) is read as Latin-1 rather than dropped.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.rstrip("\r\n")
    if text.startswith("@"):
        text = text.partition(" ")[2]
    text = text.lstrip(" ")
    prefix = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    trailing: str | None = None
    if text.startswith(":"):
        return None
    if " :" in text:
        text, _, trailing = text.partition(" :")
    parts = text.split()
    if not parts:
        return None
    params = parts[1:] + ([trailing] if trailing is not None else [])
    return IrcLine(prefix, parts[0].upper(), tuple(params))


def irc_lower(text: str, casemapping: str = "rfc1459") -> str:
    """Fold case the way the server does (``CASEMAPPING`` from its 005 ISUPPORT)."""
    text = text.lower()
    if casemapping == "ascii":
        return text
    text = text.replace("[", "{").replace("]", "}").replace("\\", "|")
    return text if casemapping == "strict-rfc1459" else text.replace("~", "^")


def strip_formatting(text: str) -> str:
    """Remove mIRC colour and formatting control codes."""
    return _FORMATTING.sub("", text)


def split_utf8(line: str, limit: int) -> list[str]:
    """Cut ``line`` into pieces of at most ``limit`` UTF-8 bytes, at spaces where possible."""
    pieces: list[str] = []
    while len(line.encode("utf-8", "replace")) > limit:
        cut = size = 0
        for index, char in enumerate(line):
            size += len(char.encode("utf-8", "replace"))
            if size > limit:
                break
            cut = index + 1
        space = line.rfind(" ", 0, cut + 1)
        if space > cut // 2:
            pieces.append(line[:space].rstrip())
            line = line[space + 1 :]
        else:  # No space in the second half: a hard cut between two characters.
            pieces.append(line[:cut])
            line = line[cut:]
    if line.strip():
        pieces.append(line)
    return [piece for piece in pieces if piece.strip()]


# --- Markdown to IRC ------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)[^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)[^)]*\)")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
_BULLET = re.compile(r"^(\s*)[*+]\s+")


def _link(match: re.Match[str]) -> str:
    text, url = match.group(1), match.group(2)
    return url if text.strip() in ("", url) else f"{text} <{url}>"


def markdown_to_irc(text: str) -> str:
    """The model's Markdown as IRC text: bold for bold and headings, the rest plain."""
    out: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
            continue  # The fence lines themselves carry nothing a reader needs.
        if in_code:
            out.append(line)
            continue
        heading = _HEADING.match(line)
        line = f"{_BOLD}{heading.group(1)}{_BOLD}" if heading else _BULLET.sub(r"\1- ", line)
        line = _IMAGE.sub(_link, line)
        line = _LINK.sub(_link, line)
        line = _CODE.sub(r"\1", line)
        line = _STRONG.sub(lambda m: f"{_BOLD}{m.group(2)}{_BOLD}", line)
        line = _EMPHASIS.sub(r"\1", line)
        out.append(line)
    return "\n".join(out).strip("\n")


# --- the connection -------------------------------------------------------------------


class _Connection:
    """One TCP (or TLS) connection to the server, after registration."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.nick = ""
        #: Our ``nick!user@host`` as the server shows it to others, once seen.
        self.prefix = ""
        #: Message ids of this connection: its start and a counter.
        self.started_ns = time.time_ns()
        self.counter = 0
        self.casemapping = "rfc1459"
        self.chantypes = "#&"

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("utf-8", "replace") + b"\r\n")
        async with asyncio.timeout(30):
            await self.writer.drain()

    async def read(self) -> IrcLine | None:
        """The next line with a command; None at the end of the connection."""
        while True:
            try:
                raw = await self.reader.readline()
            except ValueError:  # A line longer than the stream limit: not an IRC server.
                raise ConnectionError("the server sent an over-long line") from None
            if not raw.endswith(b"\n"):
                return None
            line = parse_line(raw)
            if line is not None:
                return line

    def lower(self, text: str) -> str:
        return irc_lower(text, self.casemapping)

    def is_channel(self, target: str) -> bool:
        return bool(target) and target[0] in self.chantypes

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class IrcPlatform(Platform):
    name = "irc"
    #: Characters per chunk (a chunk is retried as a whole); each of its lines is cut
    #: again to what fits the 512-byte limit.
    max_message_length = 1500

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        key = "gateway.platforms.irc"
        where = str(config.path)
        self.host = str(config.get(f"{key}.host") or "").strip()
        if not self.host:
            raise UsageError(
                f"{where}: {key}.host is not set: the IRC platform needs a server "
                f"(`hermes config set {key}.host irc.libera.chat`)"
            )
        self.port = int(config.get(f"{key}.port"))
        self.tls = bool(config.get(f"{key}.tls"))
        self.nick = str(config.get(f"{key}.nick") or "").strip()
        if not _NICK.match(self.nick):
            raise UsageError(
                f"{where}: {key}.nick: {self.nick!r} is not a valid IRC nick (letters, digits "
                "and []\\`_^{|}-, not starting with a digit or -)"
            )
        self.channels = [str(c).strip() for c in config.get(f"{key}.channels") or ()]
        for channel in self.channels:
            if not channel or channel[0] not in "#&+!" or re.search(r"[\s,\x07]", channel):
                raise UsageError(
                    f"{where}: {key}.channels: {channel!r} is not a channel name "
                    "(like '#hermes': starts with #, no spaces or commas)"
                )
        self.allowed_users = [str(u) for u in config.get(f"{key}.allowed_users") or ()]
        self.allowed_chats = [str(c) for c in config.get(f"{key}.allowed_chats") or ()]
        self.password = os.environ.get(PASSWORD_ENV, "").strip() or None
        #: PING after this many quiet seconds; reconnect after 2.5 times as long.
        self.ping_interval = float(config.get(f"{key}.ping_interval"))
        self.watchdog_seconds = 2.5 * self.ping_interval
        self._conn: _Connection | None = None
        self._pending: _Connection | None = None
        self._send_lock = asyncio.Lock()
        self._flood_clock = 0.0
        self._stopping = False

    # --- Platform -------------------------------------------------------------------

    async def start(self) -> None:
        where = f"{self.host}:{self.port}"
        try:
            self._pending = await self._connect()
        except _RefusedError as exc:
            hint = (
                f"check {PASSWORD_ENV} in {home.env_path()}"
                if self.password
                else f"it may need a password: set {PASSWORD_ENV} in {home.env_path()}"
            )
            raise HermesError(f"irc: {where} refused the login ({exc}); {hint}") from None
        except _BadNickError as exc:
            raise UsageError(f"irc: {exc} (gateway.platforms.irc.nick)") from None
        except ssl.SSLError as exc:
            problem = tls_problem(exc, where, "gateway.platforms.irc.tls", self.port)
            raise HermesError(f"irc: {problem}") from None
        except (OSError, TimeoutError, ConnectionError) as exc:
            # The server may be down for a while: keep trying, as after any disconnect.
            log.warning(
                "irc: cannot connect to %s yet (%s); retrying in the background", where, exc
            )
        self.supervise("connection", self._connect_once)

    async def stop(self) -> None:
        self._stopping = True  # The connection says QUIT as it is cancelled.
        await self.stop_supervised()
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def format(self, text: str) -> str:
        return markdown_to_irc(text)

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> None:
        conn = self._conn
        if conn is None:
            raise SendError("not connected to the IRC server")
        addressee = _sender_of(reply_to) if conn.is_channel(chat_id) else ""
        budget = self._budget(conn, chat_id)
        pieces: list[str] = []
        # A CR or LF inside a line would end it and start a command of its own.
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            line = line.replace("\x00", "").rstrip()
            if not line.strip():
                continue
            if addressee and not pieces:
                line = f"{addressee}: {line}"
            pieces.extend(split_utf8(line, budget))
        async with self._send_lock:
            for piece in pieces:
                if self._conn is not conn:
                    raise SendError("the IRC connection was lost while sending")
                await self._pace()
                try:
                    await conn.send(f"PRIVMSG {chat_id} :{piece}")
                except (OSError, ConnectionError, TimeoutError) as exc:
                    raise SendError(
                        f"the IRC connection was lost: {exc or type(exc).__name__}"
                    ) from None

    # --- connecting -----------------------------------------------------------------

    async def _connect(self) -> _Connection:
        context = ssl.create_default_context() if self.tls else None
        async with asyncio.timeout(REGISTER_TIMEOUT):
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context)
        conn = _Connection(reader, writer)
        try:
            async with asyncio.timeout(REGISTER_TIMEOUT):
                await self._register(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _nicks(self) -> list[str]:
        """The configured nick, then alternates for when it is taken."""
        return [self.nick] + [f"{self.nick}{tail}" for tail in ("_", "__", "1", "2", "3", "4")]

    async def _register(self, conn: _Connection) -> None:
        if self.password:
            await conn.send(f"PASS :{self.password}")
        nicks = self._nicks()
        tried = 0
        await conn.send(f"NICK {nicks[0]}")
        await conn.send(f"USER {self.nick[:10]} 0 * :hermes agent")
        password_refused = False
        while True:
            line = await conn.read()
            if line is None:
                raise ConnectionError("the server closed the connection during registration")
            command = line.command
            if command == "PING":
                await conn.send(f"PONG :{line.param(0)}")
            elif command == "001":
                conn.nick = line.param(0) or nicks[tried]
                return
            elif command in ("433", "436", "432", "437"):
                if command == "432" and tried == 0:
                    raise _BadNickError(
                        f"the server does not accept the nick {nicks[0]!r}: {line.params[-1]}"
                    )
                tried += 1
                if tried >= len(nicks):
                    raise ConnectionError(f"every nick tried is in use ({', '.join(nicks)})")
                log.warning(
                    "irc: nick %s is not available (%s); using %s",
                    nicks[tried - 1],
                    line.params[-1],
                    nicks[tried],
                )
                await conn.send(f"NICK {nicks[tried]}")
            elif command == "464":
                password_refused = True
            elif command == "ERROR":
                reason = line.param(0) or "no reason given"
                if password_refused or "password" in reason.lower():
                    raise _RefusedError(reason)
                raise ConnectionError(f"the server closed the connection: {reason}")

    async def _connect_once(self) -> None:
        conn, self._pending = self._pending, None
        if conn is None:
            conn = await self._connect()
        await self._serve(conn)

    async def _serve(self, conn: _Connection) -> None:
        self._conn = conn
        log.info("irc: connected to %s:%d as %s", self.host, self.port, conn.nick)
        keepalive = asyncio.create_task(self._keepalive(conn))
        try:
            for channel in self.channels:
                await conn.send(f"JOIN {channel}")
            while True:
                line = await conn.read()
                if line is None:
                    raise ConnectionError("the server closed the connection")
                self.alive()
                await self._handle(conn, line)
        finally:
            keepalive.cancel()
            if self._conn is conn:
                self._conn = None
            if self._stopping:  # Flushed by the transport before it closes.
                with contextlib.suppress(Exception):
                    conn.writer.write(b"QUIT :shutting down\r\n")
            conn.close()

    async def _keepalive(self, conn: _Connection) -> None:
        """PING the server after ``ping_interval`` quiet seconds; its PONG feeds the watchdog.

        Also asks for the configured nick back, every ``ping_interval``, while the
        bot runs under an alternate: after a reconnect, the server may still hold
        the old connection's nick for a while, and people write to the real one.
        """
        last_regain = time.monotonic()
        while True:
            await asyncio.sleep(self.ping_interval / 4)
            now = time.monotonic()
            if now - self._last_alive >= self.ping_interval:
                with contextlib.suppress(Exception):
                    await conn.send(f"PING :hermes-{int(time.time())}")
            if conn.lower(conn.nick) != conn.lower(self.nick) and (
                now - last_regain >= self.ping_interval
            ):
                last_regain = now
                with contextlib.suppress(Exception):
                    await conn.send(f"NICK {self.nick}")

    # --- events ---------------------------------------------------------------------

    async def _handle(self, conn: _Connection, line: IrcLine) -> None:
        command = line.command
        if command == "PING":
            await conn.send(f"PONG :{line.param(0)}")
        elif command == "PRIVMSG":
            await self._on_privmsg(conn, line)
        elif command == "NICK" and conn.lower(line.nick) == conn.lower(conn.nick):
            conn.nick = line.param(0) or conn.nick
            log.info("irc: now known as %s", conn.nick)
        elif command == "ERROR":
            raise ConnectionError(f"the server closed the connection: {line.param(0)}")
        elif command == "005":
            for token in line.params[1:-1]:
                name, _, value = token.partition("=")
                if name == "CASEMAPPING" and value:
                    conn.casemapping = value.lower()
                elif name == "CHANTYPES" and value:
                    conn.chantypes = value
        elif command == "NICK" and conn.lower(line.nick) == conn.lower(conn.nick):
            conn.nick = line.param(0)
            log.info("irc: our nick is now %s", conn.nick)
        elif command == "JOIN" and conn.lower(line.nick) == conn.lower(conn.nick):
            conn.prefix = line.prefix
            log.info("irc: joined %s", line.param(0))
        elif command == "KICK" and conn.lower(line.param(1)) == conn.lower(conn.nick):
            log.warning("irc: kicked from %s by %s: %s", line.param(0), line.nick, line.param(2))
        elif command in ("403", "405", "471", "473", "474", "475", "477"):
            log.warning("irc: cannot join %s: %s", line.param(1), line.params[-1])
        elif command in ("401", "404"):
            log.warning("irc: cannot send to %s: %s", line.param(1), line.params[-1])

    async def _on_privmsg(self, conn: _Connection, line: IrcLine) -> None:
        target, text, sender = line.param(0), line.param(1), line.nick
        if not sender or "." in sender or conn.lower(sender) == conn.lower(conn.nick):
            return  # From a server, or our own line.
        if text.startswith("\x01"):
            return  # CTCP (VERSION, PING, ACTION...): not a message to the agent.
        text = strip_formatting(text)
        if conn.is_channel(target):
            body = _addressed(text, conn.nick, conn)
            if body is None:
                return
            chat_id = self._known(conn, target, [*self.channels, *self.allowed_chats])
        elif conn.lower(target) == conn.lower(conn.nick):
            body = text.strip()
            chat_id = ""
        else:
            return  # A server-wide notice to a mask ($*), or not for us.
        if not body:
            return
        user_id = self._known(conn, sender, self.allowed_users)
        conn.counter += 1
        await self._submit(
            chat_id=chat_id or user_id,
            message_id=f"{conn.started_ns}-{conn.counter}:{sender}",
            text=body,
            user_id=user_id,
            user_name=sender,
        )

    async def _submit(
        self, *, chat_id: str, message_id: str, text: str, user_id: str, user_name: str
    ) -> None:
        """Hand a message to the gateway (which stores what arrives while it starts)."""
        from hermes_agent.gateway.platforms.base import GatewayClosedError

        try:
            self.gateway.submit(
                platform=self.name,
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                user_id=user_id,
                user_name=user_name,
            )
        except GatewayClosedError:
            # IRC will not deliver the line again: it is lost, say so.
            log.warning(
                "irc: message from %s in %s dropped: the gateway is stopping", user_name, chat_id
            )

    @staticmethod
    def _known(conn: _Connection, name: str, configured: list[str]) -> str:
        """``name`` spelled as in the configuration (IRC names ignore case), else folded.

        The allow-lists compare exact strings; a nick or channel written
        ``Alice`` or ``#Hermes`` there must match however the server cases it.
        """
        folded = conn.lower(name)
        for entry in configured:
            if conn.lower(entry) == folded:
                return entry
        return name if not conn.is_channel(name) else folded

    def _budget(self, conn: _Connection, target: str) -> int:
        """Bytes of text that fit in one PRIVMSG to ``target`` as the server relays it."""
        prefix = max(len(conn.prefix.encode()) + 2, len(conn.nick.encode()) + _PREFIX_ALLOWANCE)
        command = len(f"PRIVMSG {target} :".encode())
        return LINE_LIMIT - 2 - prefix - command

    async def _pace(self) -> None:
        """Flood control: ``FLOOD_BURST`` lines at once, then one per ``FLOOD_INTERVAL``."""
        now = time.monotonic()
        self._flood_clock = max(self._flood_clock, now)
        wait = self._flood_clock - now - (FLOOD_BURST - 1) * FLOOD_INTERVAL
        if wait > 0:
            await asyncio.sleep(wait)
        self._flood_clock += FLOOD_INTERVAL


def _addressed(text: str, nick: str, conn: _Connection) -> str | None:
    """The text after ``nick:`` / ``nick,`` at its start, or None when not addressed to us."""
    stripped = text.lstrip()
    if stripped.startswith("@"):
        stripped = stripped[1:]
    head = stripped[: len(nick)]
    rest = stripped[len(nick) :]
    if conn.lower(head) != conn.lower(nick) or rest[:1] not in (":", ","):
        return None
    return rest[1:].strip()


def _sender_of(message_id: str) -> str:
    """The sender's nick kept in our message ids (``start-counter:nick``)."""
    _, sep, nick = message_id.partition(":")
    return nick if sep and _NICK.match(nick) else ""
