"""E-mail: new mail read over IMAP (IDLE), replies sent over SMTP; standard library only.

Every unread mail in ``gateway.platforms.email.mailbox`` is a message to the
agent, so give the agent a mailbox of its own. The IMAP side is a small
asyncio client of our own (the subset needed: LOGIN, SELECT, UID SEARCH,
UID FETCH, UID STORE, IDLE), because the standard library's ``imaplib`` has
no IDLE before Python 3.14 and blocks a thread for as long as it waits;
sending is ``smtplib`` in a worker thread.

- **Who and which conversation**: the sender's address is the user id and the
  chat; the thread is the first Message-ID of ``References`` (else
  ``In-Reply-To``, else the mail's own), so one mail thread is one
  conversation. ``allowed_users`` holds sender addresses (case ignored).
  A From address is easy to forge: rely on your mail server's SPF/DKIM/DMARC
  checks, and allow few addresses.
- **Once only**: the platform message id is the ``Message-ID`` header (the
  IMAP UIDVALIDITY and UID when a mail has none). A mail is marked ``\\Seen``
  only after the gateway stored it; each connection starts with ``UID SEARCH
  UNSEEN``, so mail that arrived while the gateway was down is answered after
  it starts, and a mail fetched twice (a crash before ``\\Seen``) is not
  answered twice.
- **No loops**: mail from our own address, automatic mail (``Auto-Submitted``
  other than ``no``, ``Precedence: bulk/junk/list``, ``X-Autoreply``),
  bounces (``MAILER-DAEMON``, an empty ``Return-Path``) are marked seen and
  not answered; our replies carry ``Auto-Submitted: auto-replied`` (RFC 3834)
  so that well-behaved responders do not answer them either.
- **Replies** are plain text, ``Re: <subject>``, with ``In-Reply-To`` (the
  mail answered) and ``References`` (its references and its id), so mail
  clients thread them. What is read from a mail is its ``text/plain`` part
  (else its HTML as text), without the quoted previous mail and signature.
  Attached images (``image/*`` parts) of an allowed sender are stored
  (:mod:`hermes_agent.images`) before the mail is submitted and marked seen,
  and shown to the model; other attachments are named, not read.
- **Connection**: IDLE is renewed every five minutes (servers drop it after
  30), which also proves the connection alive; the watchdog reconnects when
  the server went silent for longer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import logging
import os
import re
import smtplib
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms._tls import tls_problem
from hermes_agent.gateway.platforms.base import Platform, SendError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway
    from hermes_agent.images import ImageRef

log = logging.getLogger("hermes_agent.gateway.email")

PASSWORD_ENV = "EMAIL_PASSWORD"
#: Renew IDLE this often (RFC 2177: servers may end it after 30 minutes).
IDLE_RENEW = 300.0
#: Servers without IDLE are polled this often.
POLL_INTERVAL = 60.0
#: One IMAP or SMTP exchange (connect, login, a command's answer) must finish within this.
TIMEOUT = 60.0
#: How long a mail arriving while the gateway starts may wait to be taken.
#: The longest body handed to the agent; the rest is cut with a note.
MAX_BODY_CHARS = 20_000
#: Subjects and references of mails answered lately, for the replies' headers.
_THREAD_CACHE = 2_000

_MSGID = re.compile(r"<[^<>\s]+>")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_ATTRIBUTION = re.compile(r"(wrote|schrieb|a écrit|escribió|scrisse|schreef)\s*:\s*$", re.I)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(original message|ursprüngliche nachricht)\s*-{2,}\s*$", re.I)


class ImapError(Exception):
    """The server answered NO or BAD, or said BYE."""


class _LoginRefusedError(Exception):
    """LOGIN was answered NO: a wrong user name or password."""


# --- IMAP -----------------------------------------------------------------------------


@dataclass
class Response:
    """One response line, literals (``{n}`` + n bytes) collected apart."""

    line: bytes
    literals: list[bytes] = field(default_factory=list)


def quote(text: str) -> bytes | None:
    """An IMAP quoted string, or None when only a literal can carry ``text``."""
    if any(ord(c) > 126 or c in "\r\n\0" for c in text):
        return None
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def mailbox_name(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


class ImapClient:
    """An IMAP4rev1 connection: one command at a time, IDLE, activity reported."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.on_activity = on_activity
        self.capabilities: set[str] = set()
        self.uidvalidity = ""
        #: Set when the server reported new mail (EXISTS, RECENT) since last cleared.
        self.new_mail = False
        self._tag = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        security: str,
        on_activity: Callable[[], None] | None = None,
    ) -> ImapClient:
        context = ssl.create_default_context() if security != "off" else None
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context if security == "tls" else None, limit=16 * 1024 * 1024
            )
        client = cls(reader, writer, on_activity)
        try:
            greeting = await client.read_response(TIMEOUT)
            if greeting.line.upper().startswith(b"* BYE"):
                raise ConnectionError(f"the IMAP server refused us: {_text(greeting.line)}")
            client._capabilities_from(greeting.line)
            if security == "starttls":
                await client.ensure_capabilities()
                if "STARTTLS" not in client.capabilities:
                    raise ssl.SSLError(f"{host}:{port} does not offer STARTTLS")
                await client.command("STARTTLS")
                assert context is not None
                await writer.start_tls(context, server_hostname=host)
                client.capabilities = set()
            await client.ensure_capabilities()
        except BaseException:
            client.close()
            raise
        return client

    # --- reading --------------------------------------------------------------------

    async def _readline(self, timeout: float | None) -> bytes:
        if timeout is None:
            line = await self.reader.readline()
        else:
            async with asyncio.timeout(timeout):
                line = await self.reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("the IMAP server closed the connection")
        if self.on_activity is not None:
            self.on_activity()
        return line

    async def read_response(self, timeout: float | None = TIMEOUT) -> Response:
        """The next response; ``timeout`` bounds the wait for its first line only.

        Once a line started, the rest (literals) is read without a timeout:
        giving up half-way through would lose the stream's framing.
        """
        part = await self._readline(timeout)
        parts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            match = re.search(rb"\{(\d+)\+?\}\r?\n$", part)
            if match is None:
                parts.append(part.rstrip(b"\r\n"))
                break
            parts.append(part.rstrip(b"\r\n"))
            literals.append(await self.reader.readexactly(int(match.group(1))))
            part = await self._readline(TIMEOUT)
        response = Response(b"".join(parts), literals)
        self._note(response)
        return response

    def _note(self, response: Response) -> None:
        words = response.line.split(b" ", 3)
        if len(words) >= 3 and words[0] == b"*" and words[2].upper() in (b"EXISTS", b"RECENT"):
            self.new_mail = True
        elif response.line.upper().startswith(b"* BYE"):
            raise ConnectionError(f"the IMAP server closed the connection: {_text(response.line)}")

    # --- commands -------------------------------------------------------------------

    def _next_tag(self) -> bytes:
        self._tag += 1
        return f"H{self._tag:04d}".encode()

    async def command(
        self, *parts: str | bytes, literals: tuple[bytes, ...] = ()
    ) -> list[Response]:
        """Run one command; its untagged responses. NO or BAD raise :class:`ImapError`.

        ``parts`` are joined with spaces; each of ``literals`` follows the
        command as a synchronizing literal (``{n}``, wait for ``+``, the bytes).
        """
        tag = self._next_tag()
        line = b" ".join(p.encode() if isinstance(p, str) else p for p in parts)
        self.writer.write(tag + b" " + line)
        for literal in literals:
            self.writer.write(b" {%d}\r\n" % len(literal))
            await self.writer.drain()
            while True:
                response = await self.read_response()
                if response.line.startswith(b"+"):
                    break
                if response.line.startswith(tag + b" "):
                    raise ImapError(_text(response.line.split(b" ", 1)[1]))
            self.writer.write(literal)
        self.writer.write(b"\r\n")
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()
        untagged: list[Response] = []
        while True:
            response = await self.read_response()
            if response.line.startswith(tag + b" "):
                status, _, text = response.line[len(tag) + 1 :].partition(b" ")
                if status.upper() == b"OK":
                    return untagged
                raise ImapError(f"{status.decode(errors='replace')} {_text(text)}")
            untagged.append(response)

    def _capabilities_from(self, line: bytes) -> None:
        match = re.search(rb"\[CAPABILITY ([^\]]*)\]", line, re.I)
        if match:
            self.capabilities = {c.upper() for c in match.group(1).decode().split()}

    async def ensure_capabilities(self) -> None:
        if self.capabilities:
            return
        for response in await self.command("CAPABILITY"):
            if response.line.upper().startswith(b"* CAPABILITY "):
                self.capabilities = {c.upper() for c in response.line[13:].decode().split()}

    async def login(self, user: str, password: str) -> None:
        if "LOGINDISABLED" in self.capabilities:
            raise ImapError("the server refuses LOGIN on this connection (use imap_tls)")
        args: list[bytes] = []
        literals: list[bytes] = []
        for value in (user, password):
            quoted = quote(value)
            if quoted is not None and not literals:
                args.append(quoted)
            else:  # Literals must come last on the line; a password usually is.
                literals.append(value.encode())
        try:
            await self.command(b"LOGIN", *args, literals=tuple(literals))
        except ImapError as exc:
            raise _LoginRefusedError(str(exc)) from None
        self.capabilities = set()  # They may change after login.
        await self.ensure_capabilities()

    async def select(self, mailbox: str) -> None:
        name = mailbox_name(mailbox)
        quoted = quote(name)
        assert quoted is not None
        responses = await self.command("SELECT", quoted)
        for response in responses:
            match = re.search(rb"\[UIDVALIDITY (\d+)\]", response.line, re.I)
            if match:
                self.uidvalidity = match.group(1).decode()
        self.new_mail = False  # The EXISTS of SELECT is not news.

    async def search_unseen(self) -> list[int]:
        uids: list[int] = []
        for response in await self.command("UID SEARCH UNSEEN"):
            if response.line.upper().startswith(b"* SEARCH"):
                uids += [int(u) for u in response.line[8:].split() if u.isdigit()]
        return sorted(uids)

    async def search_header(self, name: str, value: str) -> list[int]:
        quoted = quote(value)
        if quoted is None:
            return []
        uids: list[int] = []
        for response in await self.command("UID SEARCH HEADER", name, quoted):
            if response.line.upper().startswith(b"* SEARCH"):
                uids += [int(u) for u in response.line[8:].split() if u.isdigit()]
        return sorted(uids)

    async def fetch(self, uid: int, section: str = "BODY.PEEK[]") -> bytes | None:
        """The bytes of ``section`` of message ``uid`` (None when it is gone)."""
        for response in await self.command(f"UID FETCH {uid} ({section})"):
            if b"FETCH" in response.line.upper() and response.literals:
                match = re.search(rb"\bUID (\d+)", response.line, re.I)
                if match is None or int(match.group(1)) == uid:
                    return response.literals[0]
        return None

    async def mark_seen(self, uid: int) -> None:
        await self.command(f"UID STORE {uid} +FLAGS.SILENT (\\Seen)")

    async def idle(self, seconds: float) -> None:
        """Wait in IDLE up to ``seconds``, or until the server reports new mail."""
        tag = self._next_tag()
        self.writer.write(tag + b" IDLE\r\n")
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()
        while True:
            response = await self.read_response()
            if response.line.startswith(b"+"):
                break
            if response.line.startswith(tag + b" "):
                raise ImapError(f"IDLE refused: {_text(response.line)}")
        deadline = time.monotonic() + seconds
        while not self.new_mail:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await self.read_response(remaining)
            except TimeoutError:
                break
        self.writer.write(b"DONE\r\n")
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()
        while True:
            response = await self.read_response()
            if response.line.startswith(tag + b" "):
                if response.line[len(tag) + 1 :].upper().startswith(b"OK"):
                    return
                raise ImapError(f"IDLE failed: {_text(response.line)}")

    async def noop(self) -> None:
        await self.command("NOOP")

    async def logout(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.command("LOGOUT")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


# --- reading a mail -------------------------------------------------------------------


class _HtmlText(HTMLParser):
    """HTML to text: block elements become line breaks, scripts and styles vanish."""

    _BLOCK = re.compile(r"p|div|br|li|tr|h[1-6]|blockquote|pre|table|[uo]l|section|article")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif self._BLOCK.fullmatch(tag):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif self._BLOCK.fullmatch(tag):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _content(part: Message) -> str:
    try:
        value = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, AttributeError):
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return value if isinstance(value, str) else ""


def strip_quoted(body: str) -> str:
    """The new text of a reply: without the signature and the quoted mail below it."""
    lines = body.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        if line in ("-- ", "--") or _ORIGINAL.match(line):
            lines = lines[:index]
            break
    end = len(lines)
    while end and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if any(line.startswith(">") for line in lines[end:]):
        if end and _ATTRIBUTION.search(lines[end - 1]):
            end -= 1
        lines = lines[:end]
    text = "\n".join(lines).strip()
    return text or body.strip()


def mail_text(message: EmailMessage, *, images_shown: bool = False) -> str:
    """What the sender wrote: the plain text part, else the HTML one as text; attachments named.

    ``images_shown``: image attachments are left out of the names (the model sees them).
    """
    body = ""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is not None:
        content = _content(part)
        body = html_to_text(content) if part.get_content_subtype() == "html" else content
    body = strip_quoted(body)
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + "\n[... the rest of this mail was cut]"
    names = []
    for attachment in message.iter_attachments():
        if images_shown and attachment.get_content_maintype() == "image":
            continue
        name = attachment.get_filename() or "unnamed"
        names.append(f"[attachment not read: {name} ({attachment.get_content_type()})]")
    return "\n\n".join(p for p in (body, "\n".join(names)) if p)


def message_ids(value: object) -> list[str]:
    return _MSGID.findall(str(value or ""))


def automatic(message: EmailMessage) -> str | None:
    """Why this mail was sent by a machine (and must not be answered), or None."""
    auto = str(message.get("Auto-Submitted", "") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    precedence = str(message.get("Precedence", "") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if name in message:
            return name
    if str(message.get("Return-Path", "")).strip() == "<>":
        return "a bounce (empty Return-Path)"
    sender = parseaddr(str(message.get("From", "")))[1].lower()
    if sender.split("@")[0] in ("mailer-daemon", "postmaster"):
        return f"a bounce (from {sender})"
    return None


def reply_subject(subject: str) -> str:
    subject = " ".join(subject.split())
    if not subject:
        return "Re: your message"
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


@dataclass(frozen=True)
class _Thread:
    """What a reply to one mail needs from it."""

    subject: str
    references: tuple[str, ...]


# --- the platform ---------------------------------------------------------------------


class EmailPlatform(Platform):
    name = "email"
    #: A reply is one mail: never split (the gateway still retries it as a whole).
    max_message_length = 1_000_000
    watchdog_seconds = IDLE_RENEW + 120

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        key = "gateway.platforms.email"

        def setting(name: str) -> str:
            value = str(config.get(f"{key}.{name}") or "").strip()
            if not value:
                raise UsageError(f"{config.path}: {key}.{name} is not set (the e-mail platform)")
            return value

        self.address = setting("address")
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", self.address):
            raise UsageError(
                f"{config.path}: {key}.address: {self.address!r} is not an e-mail address"
            )
        self.username = str(config.get(f"{key}.username") or "").strip() or self.address
        self.imap_host = setting("imap_host")
        self.imap_port = int(config.get(f"{key}.imap_port"))
        self.imap_tls = str(config.get(f"{key}.imap_tls"))
        self.smtp_host = setting("smtp_host")
        self.smtp_port = int(config.get(f"{key}.smtp_port"))
        self.smtp_tls = str(config.get(f"{key}.smtp_tls"))
        self.mailbox = setting("mailbox")
        password = os.environ.get(PASSWORD_ENV, "")
        if not password:
            raise UsageError(
                f"the e-mail platform needs {PASSWORD_ENV} in {home.env_path()} (the password "
                f"of {self.username} for IMAP and SMTP): add a line {PASSWORD_ENV}=..."
            )
        self.password = password
        self.allowed_users = [str(u) for u in config.get(f"{key}.allowed_users") or ()]
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._pending: ImapClient | None = None
        self._stopping = False

    # --- Platform -------------------------------------------------------------------

    async def start(self) -> None:
        imap = f"{self.imap_host}:{self.imap_port}"
        try:
            self._pending = await self._open()
        except _LoginRefusedError as exc:
            raise HermesError(
                f"email: the IMAP server {imap} refused the login of {self.username} ({exc}); "
                f"check {PASSWORD_ENV} in {home.env_path()} and gateway.platforms.email.username"
            ) from None
        except ssl.SSLError as exc:
            problem = tls_problem(
                exc, f"the IMAP server {imap}", "gateway.platforms.email.imap_tls", self.imap_port
            )
            raise HermesError(f"email: {problem}") from None
        except ImapError as exc:
            raise HermesError(f"email: {imap}: {exc}") from None
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.warning(
                "email: cannot reach the IMAP server %s yet (%s); retrying in the background",
                imap,
                exc or type(exc).__name__,
            )
        try:
            await asyncio.to_thread(self._smtp_check)
        except smtplib.SMTPAuthenticationError as exc:
            await self._close_pending()
            raise HermesError(
                f"email: the SMTP server {self.smtp_host}:{self.smtp_port} refused the login "
                f"of {self.username} ({exc.smtp_code}); check {PASSWORD_ENV} in "
                f"{home.env_path()}"
            ) from None
        except ssl.SSLError as exc:
            await self._close_pending()
            problem = tls_problem(
                exc,
                f"the SMTP server {self.smtp_host}:{self.smtp_port}",
                "gateway.platforms.email.smtp_tls",
                self.smtp_port,
            )
            raise HermesError(f"email: {problem}") from None
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(
                "email: cannot reach the SMTP server %s:%d yet (%s); replies are retried",
                self.smtp_host,
                self.smtp_port,
                exc,
            )
        self.supervise("imap", self._connect_once)

    async def stop(self) -> None:
        self._stopping = True
        await self.stop_supervised()
        await self._close_pending()

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> None:
        thread = self._threads.get(reply_to) or await self._lookup(reply_to)
        message = self._reply(chat_id, thread_id, text, reply_to, thread)
        await asyncio.to_thread(self._smtp_send, message, chat_id)

    # --- IMAP -----------------------------------------------------------------------

    async def _open(self) -> ImapClient:
        """Connect, log in and select the mailbox."""
        client = await ImapClient.connect(
            self.imap_host, self.imap_port, self.imap_tls, on_activity=self.alive
        )
        try:
            await client.login(self.username, self.password)
            try:
                await client.select(self.mailbox)
            except ImapError as exc:
                raise ImapError(
                    f"cannot open the mailbox {self.mailbox!r} ({exc}); "
                    "see gateway.platforms.email.mailbox"
                ) from None
        except BaseException:
            client.close()
            raise
        return client

    async def _close_pending(self) -> None:
        if self._pending is not None:
            await self._pending.logout()
            self._pending.close()
            self._pending = None

    async def _connect_once(self) -> None:
        client, self._pending = self._pending, None
        if client is None:
            client = await self._open()
        log.info("email: watching %s of %s", self.mailbox, self.username)
        try:
            idle = "IDLE" in client.capabilities
            while True:
                client.new_mail = False
                await self._take_unseen(client)
                if client.new_mail:
                    continue
                if idle:
                    await client.idle(IDLE_RENEW)
                else:
                    await asyncio.sleep(POLL_INTERVAL)
                    await client.noop()
        finally:
            if not self._stopping:
                await client.logout()
            client.close()

    async def _take_unseen(self, client: ImapClient) -> None:
        for uid in await client.search_unseen():
            raw = await client.fetch(uid)
            if raw is None:
                continue  # Expunged meanwhile.
            if await self._take(client, uid, raw):
                await client.mark_seen(uid)
            else:
                return  # The gateway is stopping: the rest stays unseen for the next start.

    async def _take(self, client: ImapClient, uid: int, raw: bytes) -> bool:
        """Hand one mail to the gateway; False when it was not taken (gateway stopping)."""
        try:
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            message = parsed
            sender = parseaddr(str(message.get("From", "")))[1].strip()
            message_id = (message_ids(message.get("Message-ID")) or [""])[0]
            if not message_id:
                message_id = f"imap:{self.mailbox}:{client.uidvalidity}:{uid}"
            why = self._ignore(message, sender)
            if why is not None:
                log.info("email: mail %s from %r not answered: %s", message_id, sender, why)
                return True
            references = message_ids(message.get("References"))
            in_reply_to = message_ids(message.get("In-Reply-To"))
            thread_id = (references or in_reply_to or [message_id])[0]
            subject = " ".join(str(message.get("Subject", "") or "").split())
            # Images are read only for a sender the allow-list lets in (no stranger fills
            # HERMES_HOME), and stored before the mail is submitted and marked seen.
            allowed = self.gateway.access.allowed(self.name, self._configured(sender), sender)
            notes, pictures = await self._images(message) if allowed else ([], [])
            text = mail_text(message, images_shown=allowed)
            text = "\n\n".join(p for p in (text, *notes) if p)
            if not references and not in_reply_to and subject:
                text = f"Subject: {subject}\n\n{text}" if text else subject
            if not text:
                text = "(an empty mail)"
            parent_refs = references or in_reply_to
            self._remember(message_id, _Thread(subject, tuple(parent_refs)))
        except Exception as exc:  # One broken mail must not stop the others.
            log.warning("email: mail UID %d could not be read (%s); skipped", uid, exc)
            return True
        return await self._submit(
            chat_id=sender,
            message_id=message_id,
            text=text,
            thread_id=thread_id,
            user_id=self._configured(sender),
            user_name=_display_name(message) or sender,
            images=pictures,
        )

    async def _images(self, message: EmailMessage) -> tuple[list[str], list[ImageRef]]:
        """The mail's image attachments, stored: notes on those not taken, references."""
        from hermes_agent import images

        notes: list[str] = []
        refs: list[ImageRef] = []
        for attachment in message.iter_attachments():
            if attachment.get_content_maintype() != "image":
                continue
            name = attachment.get_filename() or "unnamed"
            if len(refs) >= images.MAX_PER_MESSAGE:
                notes.append(f"[image {name} not shown: more than {images.MAX_PER_MESSAGE}]")
                continue
            try:
                data = attachment.get_payload(decode=True)
                if not isinstance(data, bytes):
                    raise images.ImageError("it has no content")
                refs.append(await asyncio.to_thread(images.ingest_bytes, data, name=name))
            except images.ImageError as exc:
                notes.append(f"[image {name} not shown: {exc}]")
        return notes, refs

    def _ignore(self, message: EmailMessage, sender: str) -> str | None:
        if not sender or "@" not in sender:
            return "no sender address"
        if sender.lower() == self.address.lower():
            return "sent from our own address"
        return automatic(message)

    def _configured(self, address: str) -> str:
        """The address as written in allowed_users (addresses ignore case), else lower case."""
        folded = address.lower()
        for entry in self.allowed_users:
            if entry.strip().lower() == folded:
                return entry
        return folded

    def _remember(self, message_id: str, thread: _Thread) -> None:
        self._threads[message_id] = thread
        self._threads.move_to_end(message_id)
        while len(self._threads) > _THREAD_CACHE:
            self._threads.popitem(last=False)

    async def _submit(
        self,
        *,
        chat_id: str,
        message_id: str,
        text: str,
        thread_id: str,
        user_id: str,
        user_name: str,
        images: list[ImageRef] | None = None,
    ) -> bool:
        """Hand a mail to the gateway; False when it is stopping (the mail stays unread)."""
        from hermes_agent.gateway.platforms.base import GatewayClosedError

        try:
            self.gateway.submit(
                platform=self.name,
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                thread_id=thread_id,
                user_id=user_id,
                user_name=user_name,
                images=images or [],
            )
        except GatewayClosedError:
            return False
        return True

    async def _lookup(self, message_id: str) -> _Thread | None:
        """Subject and references of a mail not seen by this process (a reply owed from before)."""
        if not _MSGID.fullmatch(message_id):
            return None
        client: ImapClient | None = None
        try:
            client = await ImapClient.connect(self.imap_host, self.imap_port, self.imap_tls)
            await client.login(self.username, self.password)
            await client.command("EXAMINE", quote(mailbox_name(self.mailbox)) or b'"INBOX"')
            for uid in await client.search_header("Message-ID", message_id):
                raw = await client.fetch(uid, "BODY.PEEK[HEADER]")
                if raw is None:
                    continue
                headers = email.message_from_bytes(raw, policy=email.policy.default)
                refs = message_ids(headers.get("References")) or message_ids(
                    headers.get("In-Reply-To")
                )
                subject = " ".join(str(headers.get("Subject", "") or "").split())
                thread = _Thread(subject, tuple(refs))
                self._remember(message_id, thread)
                return thread
        except Exception as exc:
            log.info("email: could not look up %s for its subject: %s", message_id, exc)
        finally:
            if client is not None:
                await client.logout()
                client.close()
        return None

    # --- SMTP -----------------------------------------------------------------------

    def _reply(
        self, to: str, thread_id: str, text: str, reply_to: str, thread: _Thread | None
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.address
        message["To"] = to
        message["Subject"] = reply_subject(thread.subject if thread else "")
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.address.rpartition("@")[2])
        if _MSGID.fullmatch(reply_to):
            references = list(thread.references) if thread else []
            if not references and _MSGID.fullmatch(thread_id) and thread_id != reply_to:
                references = [thread_id]
            references = [r for r in references if r != reply_to] + [reply_to]
            message["In-Reply-To"] = reply_to
            message["References"] = " ".join(references)
        message["Auto-Submitted"] = "auto-replied"
        message.set_content(text)
        return message

    def _smtp(self) -> smtplib.SMTP:
        """A connected, secured and (when the server asks for it) logged-in SMTP session."""
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.smtp_tls == "tls":
            smtp = smtplib.SMTP_SSL(
                self.smtp_host, self.smtp_port, timeout=TIMEOUT, context=context
            )
        else:
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=TIMEOUT)
        try:
            smtp.ehlo()
            if self.smtp_tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise ssl.SSLError("the server does not offer STARTTLS")
                smtp.starttls(context=context)
                smtp.ehlo()
            if smtp.has_extn("auth"):
                smtp.login(self.username, self.password)
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        return smtp

    def _smtp_check(self) -> None:
        smtp = self._smtp()
        with contextlib.suppress(Exception):
            smtp.quit()

    def _smtp_send(self, message: EmailMessage, to: str) -> None:
        try:
            smtp = self._smtp()
            try:
                smtp.send_message(message, from_addr=self.address, to_addrs=[to])
            finally:
                with contextlib.suppress(Exception):
                    smtp.quit()
        except smtplib.SMTPRecipientsRefused as exc:
            reasons = "; ".join(f"{a}: {c} {_smtp_text(m)}" for a, (c, m) in exc.recipients.items())
            raise SendError(
                f"the SMTP server refused the recipient ({reasons})", permanent=True
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(
                f"the SMTP server refused the login ({exc.smtp_code}); check {PASSWORD_ENV}",
                permanent=True,
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise SendError(
                f"the SMTP server answered {exc.smtp_code} {_smtp_text(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
            ) from None
        except ssl.SSLError as exc:
            where = f"the SMTP server {self.smtp_host}:{self.smtp_port}"
            raise SendError(
                tls_problem(exc, where, "gateway.platforms.email.smtp_tls", self.smtp_port)
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"the SMTP server: {exc or type(exc).__name__}") from None


def _smtp_text(value: bytes | str) -> str:
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else value).strip()


def _display_name(message: EmailMessage) -> str:
    pairs = getaddresses([str(message.get("From", ""))])
    return pairs[0][0] if pairs else ""
