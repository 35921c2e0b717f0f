"""What state.db holds, as Python values, and the small helpers shared by the store."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hermes_agent.errors import HermesError

#: A message in the OpenAI chat format.
Message = dict[str, Any]
#: The redaction hook: text in, text safe to store out.
Redactor = Callable[[str], str]

TITLE_MAX_CHARS = 60
BUSY_TIMEOUT_MS = 5000
#: Sessions deleted per write transaction by :meth:`StateDB.prune`: each transaction is
#: short, so the gateway's writes wait milliseconds for a prune, never the busy timeout.
PRUNE_BATCH = 20
#: Free pages handed back to the file system per transaction after a prune.
VACUUM_PAGES = 256
PARENT_KINDS = ("compression", "delegation")
DB_FILE_MODE = 0o600

# Message keys that have a column of their own; the column holds the value only
# when it has the usual type (text, or a list for tool_calls), else it goes to `extra`.
_TEXT_KEYS = ("content", "tool_call_id", "name")
_COLUMN_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")

#: How much of the recently read sessions' active histories :meth:`StateDB.messages` keeps
#: decoded in memory, in characters of text (each message counts 300 more for its dict):
#: what a long-running gateway holds for its most active chats, whatever their number.
HISTORY_CACHE_CHARS = 8_000_000
#: Messages stored between two updates of the search index (one FTS5 segment each; m006).
INDEX_BATCH = 64

# SQLite errors caused by the environment (a locked, read-only, full or broken
# file), reported as a HermesError naming the file rather than as a bug.
_ENVIRONMENT_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_PERM",
    "SQLITE_PROTOCOL",
)


class SessionNotFoundError(HermesError):
    """A write named a session that does not exist (any more: it may have been deleted)."""


# --- records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """One conversation's metadata; ``message_count`` counts the active (non-compacted) ones."""

    id: str
    source: str
    title: str | None
    model: str
    cwd: str
    created_at: float
    updated_at: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    parent_id: str | None
    parent_kind: str | None
    message_count: int

    @property
    def total_tokens(self) -> int:
        """Tokens sent plus received: the size of the conversation at a glance."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class StoredMessage:
    """A message with what the store knows about it, for exports and transcripts."""

    id: int
    session_id: str
    seq: int
    created_at: float
    compacted: bool
    message: Message
    #: Taken out of the context by /undo (``compacted`` is set too).
    undone: bool = False
    #: Who wrote a model reply, and what it cost (None for other messages).
    provider: str | None = None
    model: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class SearchHit:
    """One message matching a search, best matches first."""

    session_id: str
    message_id: int
    title: str | None
    source: str
    role: str
    snippet: str
    created_at: float
    compacted: bool


@dataclass(frozen=True)
class InboundMessage:
    """A message the gateway received from a platform, as stored in its queue."""

    id: int
    platform: str
    chat_id: str
    thread_id: str
    user_id: str
    message_id: str
    text: str
    #: pending, processing, done or failed.
    status: str
    reply: str | None
    error: str | None
    session_id: str | None
    created_at: float
    updated_at: float
    #: How many chunks of the reply the platform has accepted.
    delivered: int = 0
    #: NULL until the reply is handed to the platform; then sending, sent or failed.
    delivery: str | None = None
    #: What the platform noted just before chunk ``delivered`` was handed to it
    #: (:meth:`~hermes_agent.gateway.platforms.Platform.delivery_mark`); NULL once that
    #: chunk's fate is recorded. Set after a crash: ask the platform whether it arrived.
    delivery_mark: str | None = None
    #: The platform's id of the last chunk it accepted, when it gives one.
    sent_id: str | None = None
    #: A digest of what was asked (the HTTP API): a message id repeated with another
    #: request is refused rather than answered with this message's reply.
    fingerprint: str | None = None
    #: Images that came with the message: JSON list of stored references (m010).
    images: str | None = None


@dataclass(frozen=True)
class PairingRequest:
    """A user who asked to talk to the agent and got a pairing code."""

    platform: str
    user_id: str
    user_name: str
    chat_id: str
    code: str
    created_at: float


INBOUND_STATUSES = ("pending", "processing", "done", "failed")
DELIVERY_STATES = ("sending", "sent", "failed")


# --- helpers ------------------------------------------------------------------------


def _cached_size(message: Message) -> int:
    """What a decoded message counts against HISTORY_CACHE_CHARS (its text, and 300)."""
    content = message.get("content")
    size = 300 + (len(content) if isinstance(content, str) else len(str(content or "")))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            size += len(str(function.get("arguments") or ""))
    return size


def new_session_id(now: float | None = None) -> str:
    """``20261125-090210-3fa9c1``: UTC time then 6 random hex digits.

    Sorting ids sorts sessions by creation; the time part makes a prefix easy
    to type (``hermes sessions show 20261125-09``) and the random part keeps
    ids unique across processes starting sessions in the same second.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{os.urandom(3).hex()}"


def title_from(text: str) -> str | None:
    """A one-line title of at most 60 characters from a user message, or None if blank."""
    line = " ".join(text.split())
    if not line:
        return None
    if len(line) > TITLE_MAX_CHARS:
        line = line[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return line


_QUERY_TERM = re.compile(r'"([^"]*)"?|([^\s"]+)')


def fts_query(text: str) -> str:
    """Turn what a user typed into an FTS5 query that can never be a syntax error.

    Plain words and ``"quoted phrases"`` (an unclosed quote runs to the end)
    must all appear; ``word*`` matches words starting with ``word``. Every
    term is quoted, so FTS5 operators (``AND``, ``NEAR(``, ``col:``, ``^``)
    are just text. Terms with no letter or digit are dropped because they
    index to nothing. Returns ``""`` when nothing searchable is left.
    """
    terms: list[str] = []
    for match in _QUERY_TERM.finditer(text):
        phrase, word = match.group(1), match.group(2)
        prefix = False
        if word is not None:
            stripped = word.rstrip("*")
            prefix = stripped != word
            phrase = stripped
        if not phrase or not any(ch.isalnum() for ch in phrase):
            continue
        terms.append('"' + phrase.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms)


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _source_clause(source: str | None, column: str = "source") -> tuple[str, tuple[str, ...]]:
    """SQL matching ``source`` exactly or as a family: ``gateway`` matches ``gateway:telegram``."""
    if source is None:
        return "1", ()
    return f"({column} = ? OR substr({column}, 1, ?) = ?)", (
        source,
        str(len(source) + 1),
        source + ":",
    )


# --- the store ----------------------------------------------------------------------


_ADD_USAGE = (
    "UPDATE sessions SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
    "cache_read_tokens = cache_read_tokens + ?, cache_write_tokens = cache_write_tokens + ?, "
    "cost_usd = cost_usd + ? WHERE id = ?"
)
_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)


def _usage_values(usage: Mapping[str, float]) -> tuple[float, ...]:
    unknown = set(usage) - set(_USAGE_KEYS)
    if unknown:
        raise ValueError(f"unknown usage keys: {sorted(unknown)}")
    return tuple(usage.get(key, 0) for key in _USAGE_KEYS)
