"""The SQLite state store: sessions, their messages, and a full-text index.

Why one SQLite file: the terminal chat, the gateway, cron and ACP all write
conversations at the same time, and ``hermes sessions`` reads them while they
do. SQLite in WAL mode gives each process its own connection with readers that
never block the single writer, a busy timeout instead of "database is locked"
errors, and FTS5 for searching everything ever said, without a server.

Schema changes are small functions in :data:`MIGRATIONS`, applied in order
inside one transaction and recorded by name in ``_migrations``. A database
that records a name this version does not know was written by a newer hermes;
it is refused with a clear message rather than used and corrupted.

Messages go in and come out as dicts in the OpenAI chat format. The columns
hold the text the index and the CLI read (``content``, ``tool_calls``,
``tool_call_id``, ``name``); every other key, and any value that is not of
the usual type (a ``None`` content, a list of content parts), is kept verbatim
as JSON in ``extra``, so a message comes back exactly as it went in: keys that
were absent stay absent.

The gateway keeps its inbound queue here too (``gateway_inbound``: every
platform message, stored before it is acknowledged, with its status and reply)
and which session answers each platform conversation (``gateway_routes``).

Every text that is stored (content, tool-call arguments, titles and the text
inside ``extra``) passes the ``redact`` function given to :class:`StateDB`:
that is where the redaction chokepoint plugs in.

Threads and asyncio: one :class:`StateDB` may be shared by threads (and used
from ``asyncio.to_thread``); a lock serialises its operations, which are all
short. Each process should open its own instance.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.state import search_index

log = logging.getLogger(__name__)

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


# --- migrations ---------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]

#: Every schema change, oldest first. Append only: never edit or reorder an entry
#: that has shipped, because its name is recorded in users' databases.
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration; its function name is its recorded name."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_sessions_and_messages(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            title TEXT,
            model TEXT NOT NULL DEFAULT '',
            cwd TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            parent_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
            parent_kind TEXT CHECK (parent_kind IN ('compression', 'delegation'))
        )
        """
    )
    conn.execute("CREATE INDEX sessions_by_updated ON sessions (updated_at)")
    conn.execute("CREATE INDEX sessions_by_source ON sessions (source, updated_at)")
    # Deleting a session looks up its children to null their parent_id.
    conn.execute("CREATE INDEX sessions_by_parent ON sessions (parent_id)")
    conn.execute(
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT,
            tool_calls TEXT,
            tool_call_id TEXT,
            name TEXT,
            extra TEXT,
            tool_args TEXT,
            created_at REAL NOT NULL,
            compacted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (session_id, seq)
        )
        """
    )
    conn.execute("CREATE INDEX messages_active ON messages (session_id, compacted, seq)")


@migration
def m002_message_search(conn: sqlite3.Connection) -> None:
    # External content: the index stores no second copy of the text, and
    # snippet() reads it back from `messages`. `tool_args` holds the tool-call
    # names and arguments as plain text so a search finds what the agent ran.
    conn.execute(search_index.CREATE_INDEX)  # Also what a rebuild of a damaged index uses.
    conn.execute(
        """
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content, tool_args)
            VALUES (new.id, new.content, new.tool_args);
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, tool_args)
            VALUES ('delete', old.id, old.content, old.tool_args);
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, tool_args ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, tool_args)
            VALUES ('delete', old.id, old.content, old.tool_args);
            INSERT INTO messages_fts (rowid, content, tool_args)
            VALUES (new.id, new.content, new.tool_args);
        END
        """
    )
    # Messages stored before this migration (a store from before search existed) go
    # into the index too: m006 takes every existing row as indexed, and an FTS5
    # 'delete' of a row the index does not hold would corrupt it. (A no-op for a new
    # store; added after m002 shipped, which only changes stores that had not run it.)
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")


@migration
def m003_gateway_inbound(conn: sqlite3.Connection) -> None:
    # The gateway's inbound queue: a message is stored here before the platform is
    # told it arrived, so a crash or restart never loses it. UNIQUE (platform,
    # message_id) turns a redelivered platform event into a no-op (dedup).
    conn.execute(
        """
        CREATE TABLE gateway_inbound (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            thread_id TEXT NOT NULL DEFAULT '',
            user_id TEXT NOT NULL DEFAULT '',
            message_id TEXT NOT NULL,
            text TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'done', 'failed')),
            reply TEXT,
            error TEXT,
            session_id TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (platform, message_id)
        )
        """
    )
    conn.execute("CREATE INDEX gateway_inbound_open ON gateway_inbound (status, id)")
    # Which session answers a platform conversation (chat, and thread within it).
    conn.execute(
        """
        CREATE TABLE gateway_routes (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            thread_id TEXT NOT NULL DEFAULT '',
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id, thread_id)
        )
        """
    )
    conn.execute("CREATE INDEX gateway_routes_by_session ON gateway_routes (session_id)")


@migration
def m004_gateway_delivery_and_pairing(conn: sqlite3.Connection) -> None:
    # Delivery is recorded apart from answering: a reply that is stored but not yet
    # (fully) accepted by the platform is sent again after a restart, from the first
    # chunk the platform has not accepted.
    conn.execute("ALTER TABLE gateway_inbound ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        "ALTER TABLE gateway_inbound ADD COLUMN delivery TEXT "
        "CHECK (delivery IN ('sending', 'sent', 'failed'))"
    )
    # Before this migration every answered message was delivered (or given up on).
    conn.execute("UPDATE gateway_inbound SET delivery = 'sent' WHERE status IN ('done', 'failed')")
    conn.execute(
        "CREATE INDEX gateway_inbound_undelivered ON gateway_inbound (delivery, id) "
        "WHERE delivery IS NOT 'sent'"
    )
    # Users a pairing code let in, and the codes handed out and not yet approved.
    conn.execute(
        """
        CREATE TABLE gateway_paired_users (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL DEFAULT '',
            approved_at REAL NOT NULL,
            PRIMARY KEY (platform, user_id)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE gateway_pairing_requests (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL DEFAULT '',
            chat_id TEXT NOT NULL,
            code TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            PRIMARY KEY (platform, user_id)
        )
        """
    )


@migration
def m005_session_system_prompt(conn: sqlite3.Connection) -> None:
    # The system prompt a session was started with, kept so every later turn (a gateway
    # message, a resumed chat) sends the same prefix: providers' prompt caches stay warm,
    # and the prompt is not rebuilt (skills scanned, documents read) on every message.
    conn.execute("ALTER TABLE sessions ADD COLUMN system_prompt TEXT")
    # What the prompt was built from (agent.prompt.prompt_key): a change rebuilds it.
    conn.execute("ALTER TABLE sessions ADD COLUMN system_prompt_key TEXT")


@migration
def m006_batched_search_index(conn: sqlite3.Connection) -> None:
    # A message is put in the search index in batches, not by a trigger on every insert:
    # FTS5 writes a new index segment per transaction, which was more than half the cost
    # of storing a message (~150 of ~275 us). `indexed` tells the rows already in the
    # index (every existing row: the old trigger put them there); new rows are inserted
    # with 0 and indexed by StateDB.index_pending, before every search and every
    # INDEX_BATCH messages. The delete and update triggers touch the index only for
    # indexed rows (an FTS5 'delete' of a row it does not hold would corrupt it).
    conn.execute("ALTER TABLE messages ADD COLUMN indexed INTEGER NOT NULL DEFAULT 1")
    conn.execute("CREATE INDEX messages_unindexed ON messages (id) WHERE indexed = 0")
    conn.execute("DROP TRIGGER messages_fts_insert")
    conn.execute("DROP TRIGGER messages_fts_delete")
    conn.execute("DROP TRIGGER messages_fts_update")
    conn.execute(
        """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.indexed BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, tool_args)
            VALUES ('delete', old.id, old.content, old.tool_args);
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, tool_args ON messages
        WHEN old.indexed BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, tool_args)
            VALUES ('delete', old.id, old.content, old.tool_args);
            INSERT INTO messages_fts (rowid, content, tool_args)
            VALUES (new.id, new.content, new.tool_args);
        END
        """
    )


@migration
def m007_gateway_delivery_marks(conn: sqlite3.Connection) -> None:
    # A chunk's send is recorded before it starts, with what the platform needs to tell
    # later whether it arrived (on Telegram: the newest message id it knew of). A crash
    # between the platform accepting the chunk and state.db recording it then ends in
    # a check, not in the chunk sent twice. sent_id keeps the id the platform gave the
    # last chunk, so a restarted gateway knows where the chat's messages had got to.
    conn.execute("ALTER TABLE gateway_inbound ADD COLUMN delivery_mark TEXT")
    conn.execute("ALTER TABLE gateway_inbound ADD COLUMN sent_id TEXT")
    # The same for messages that answer nothing (cron results, pairing codes): the
    # newest one per chat, so a mark taken after a restart is not below it.
    conn.execute(
        """
        CREATE TABLE gateway_other_sends (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            sent_id TEXT NOT NULL,
            sent_at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id)
        )
        """
    )
    # Chats that moved to a new id (a Telegram group upgraded to a supergroup): the
    # conversation follows, and a chat the allow-list let in stays let in.
    conn.execute(
        """
        CREATE TABLE gateway_chat_moves (
            platform TEXT NOT NULL,
            old_chat_id TEXT NOT NULL,
            new_chat_id TEXT NOT NULL,
            moved_at REAL NOT NULL,
            PRIMARY KEY (platform, old_chat_id)
        )
        """
    )
    conn.execute(
        "CREATE INDEX gateway_chat_moves_new ON gateway_chat_moves (platform, new_chat_id)"
    )


@migration
def m008_inbound_fingerprint(conn: sqlite3.Connection) -> None:
    # An HTTP API client's Idempotency-Key reused with a different request must not be
    # answered with the first request's reply: the digest of the request is kept with it.
    conn.execute("ALTER TABLE gateway_inbound ADD COLUMN fingerprint TEXT")


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


class StateDB:
    """The conversation store in ``HERMES_HOME/state.db`` (or ``path``).

    Opening applies pending migrations. Use it as a context manager, or call
    :meth:`close`. ``redact`` is applied to every text before it is stored.
    """

    def __init__(self, path: Path | None = None, *, redact: Redactor | None = None) -> None:
        self.path = path if path is not None else home.state_db_path()
        if redact is None:
            # On by default: nothing reaches the disk without passing the chokepoint.
            from hermes_agent.redact import redact as default_redact

            redact = default_redact
        self._redact_fn = redact
        # Reads take it too: on a shared connection, a read in the middle of another
        # thread's write transaction would see rows that may yet be rolled back.
        self._lock = threading.RLock()
        #: Active histories of recently read sessions, as :meth:`messages` returns them
        #: (least recently used first). Kept current by this object's own writes, and
        #: dropped whole when ``PRAGMA data_version`` says another connection committed.
        self._histories: OrderedDict[str, list[Message]] = OrderedDict()
        self._history_chars: dict[str, int] = {}
        self._cached_chars = 0
        self._data_version: int | None = None
        #: Messages this object stored since it last updated the search index.
        self._unindexed = 0
        #: Statements to run first in the next write transaction (see set_inbound_status).
        self._riders: deque[tuple[str, tuple[Any, ...]]] = deque()
        home.ensure_dir(self.path.parent)
        self._create_private_file()
        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # We issue BEGIN/COMMIT ourselves.
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise HermesError(f"cannot open {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        #: What was wrong with the search index when it was rebuilt at open (else None),
        #: for a front end to mention.
        self.repaired_index: str | None = None
        try:
            self._configure()
            self._migrate()
            self._check_search_index()
        except sqlite3.Error as exc:
            self._conn.close()
            raise HermesError(f"cannot open {self.path}: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    # -- opening -------------------------------------------------------------------

    def _create_private_file(self) -> None:
        """Create the file 0600 before SQLite does: transcripts are private.

        SQLite gives the ``-wal`` and ``-shm`` files the database's mode, so
        they are private too. An existing file keeps its mode (the NixOS
        module may share the state directory with a group on purpose).
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
        except FileExistsError:
            return
        except OSError as exc:
            raise HermesError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        try:
            os.fchmod(fd, DB_FILE_MODE)  # An odd umask may have taken owner bits away.
        finally:
            os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        """A new connection with the busy timeout, for work done outside ``self._conn``."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    def _reconnect(self) -> None:
        """Replace ``self._conn`` (after the search index was rebuilt by another connection)."""
        self._conn.close()
        self._conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        self._conn.row_factory = sqlite3.Row
        self._configure()
        self._forget_histories()

    def _configure(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Takes effect only on a new, empty database: free pages can then be returned to
        # the file system a few at a time (see prune) instead of by a VACUUM, which would
        # stop every writer for as long as it copies the whole file.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers BUSY at
        # once, without its busy handler, while another process holds one (processes
        # creating the store together): wait here as the busy timeout would.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = NORMAL")  # Safe with WAL; commits skip an fsync.
        conn.execute("PRAGMA foreign_keys = ON")

    def _applied_migrations(self) -> list[str]:
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
        ).fetchone()
        if exists is None:
            return []
        return [row[0] for row in self._conn.execute("SELECT name FROM _migrations")]

    def _check_known(self, applied: Sequence[str]) -> None:
        known = {fn.__name__ for fn in MIGRATIONS}
        unknown = sorted(name for name in applied if name not in known)
        if unknown:
            raise HermesError(
                f"{self.path} was written by a newer version of hermes "
                f"(unknown schema migrations: {', '.join(unknown)}); "
                "upgrade hermes-agent, or set HERMES_HOME to use another state directory"
            )

    def _migrate(self) -> None:
        """Apply the migrations this database lacks, all in one transaction.

        The first look needs no write lock, so opening an up-to-date database
        never waits for a writer. Pending work is re-checked under the lock:
        another process may have migrated in the meantime.
        """
        applied = self._applied_migrations()
        self._check_known(applied)
        if len(set(applied)) == len(MIGRATIONS):
            return
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations "
                "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            applied = self._applied_migrations()
            self._check_known(applied)
            for fn in MIGRATIONS:
                if fn.__name__ in applied:
                    continue
                fn(conn)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (fn.__name__, time.time()),
                )

    # -- the search index ----------------------------------------------------------

    def _check_search_index(self) -> None:
        """Rebuild the search index at open when it is missing or cannot be read.

        Cheap when it is fine (one lookup); see :mod:`hermes_agent.state.search_index`.
        """
        problem = search_index.quick_problem(self._conn)
        if problem is not None:
            self._rebuild_index(problem, only_if_broken=True)

    def _rebuild_index(
        self,
        problem: str,
        *,
        only_if_broken: bool,
        probe: Callable[[sqlite3.Connection], object] | None = None,
    ) -> int | None:
        with self._lock:
            try:
                count = search_index.rebuild(
                    self._connect, only_if_broken=only_if_broken, probe=probe
                )
            except sqlite3.Error as exc:
                raise HermesError(
                    f"{self.path}: {problem}, and rebuilding it failed: {exc}; "
                    "the messages themselves are intact (hermes sessions reindex tries again)"
                ) from None
            self._reconnect()  # This connection may hold the broken table's state.
            if count is None:
                return None  # Another process had repaired it already.
            self._unindexed = 0
            self.repaired_index = problem
            # Info, not warning: the CLI says it itself (repaired_index); the gateway logs it.
            log.info("%s: %s; rebuilt it from the stored messages", self.path, problem)
            return count

    def reindex(self) -> tuple[str | None, int]:
        """Check the whole search index, rebuild it from the messages, check it again.

        Returns what the first check found (None: nothing) and how many messages the
        index holds. Raises :class:`HermesError` when it is still damaged afterwards.
        """
        with self._lock:
            try:
                self.index_pending()
                problem = search_index.full_problem(self._conn)
            except (sqlite3.DatabaseError, HermesError) as exc:
                problem = f"the search index is damaged ({exc})"
            count = self._rebuild_index(problem or "rebuild asked for", only_if_broken=False)
            self.repaired_index = problem
            with self._environment_errors():
                after = search_index.full_problem(self._conn)
            if after is not None:
                raise HermesError(f"{self.path}: {after} even after a rebuild")
            return problem, count or 0

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; calling it twice is harmless."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._environment_errors():
            yield self._conn

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front with BEGIN IMMEDIATE.

        Taking the write lock at the start (instead of on the first write)
        means a busy database makes us wait for the busy timeout rather than
        fail at once when a read turns into a write.

        ``durable``: the commit waits for the disk (``synchronous = FULL``), so
        it survives a power cut, not only a crash. Other commits skip that
        fsync (WAL with ``NORMAL``); a durable one makes them durable too.
        """
        with self._lock, self._environment_errors():
            conn = self._conn
            if durable:
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                while self._riders:
                    sql, params = self._riders[0]
                    conn.execute(sql, params)
                    self._riders.popleft()
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                self._forget_histories()  # They may hold what was just rolled back.
                if conn.in_transaction:  # A failed COMMIT must not leave it open either.
                    conn.execute("ROLLBACK")
                raise
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def _environment_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if not name.startswith(_ENVIRONMENT_ERRORS):
                raise
            hint = (
                f" (another hermes process kept it busy for more than {BUSY_TIMEOUT_MS // 1000} s)"
                if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
                else ""
            )
            raise HermesError(f"{self.path}: {exc}{hint}") from None

    # -- redaction and encoding ----------------------------------------------------

    def _redact(self, text: str) -> str:
        return self._redact_fn(text)

    def _redact_tree(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (keys too), keeping its shape.

        Done on the structure before ``json.dumps``: inside JSON a secret that
        holds ``"`` or ``\\`` is spelt with escapes.
        """
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, Mapping):
            return {
                (self._redact(key) if isinstance(key, str) else key): self._redact_tree(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redact_tree(item) for item in value]
        return value

    def _redact_json_text(self, text: str) -> str:
        """Tool-call arguments (JSON in a string) redacted as data, still valid JSON.

        Decoded first, so a value spelt with ``\\u`` escapes is found too; when
        nothing changes the text is kept byte for byte.
        """
        try:
            decoded = json.loads(text)
        except ValueError:
            return self._redact(text)
        cleaned = self._redact_tree(decoded)
        if cleaned == decoded:
            return self._redact(text)
        return json.dumps(cleaned, ensure_ascii=False)

    def _redact_tool_calls(self, calls: list[Any]) -> tuple[list[Any], str | None]:
        """Redacted tool calls (only the arguments are text), and their searchable text."""
        redacted: list[Any] = []
        search: list[str] = []
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                redacted.append(self._redact_tree(call))
                continue
            new_function = {
                key: self._redact_json_text(value)
                if key == "arguments" and isinstance(value, str)
                else self._redact_tree(value)
                for key, value in function.items()
            }
            new_call = {
                key: new_function if key == "function" else self._redact_tree(value)
                for key, value in call.items()
            }
            redacted.append(new_call)
            arguments = new_function.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            search.append(f"{new_function.get('name', '')} {arguments}".strip())
        return redacted, "\n".join(search) or None

    def _encode(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Column values for one message; see the module docstring for the layout."""
        if not isinstance(message, Mapping):
            raise TypeError(f"a message must be a dict, not {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError("a message needs a non-empty 'role'")
        row: dict[str, Any] = dict.fromkeys(_COLUMN_KEYS)
        row["role"] = role
        row["tool_args"] = None
        extra: dict[str, Any] = {}
        for key, value in message.items():
            if key == "role":
                continue
            if key in _TEXT_KEYS and isinstance(value, str):
                row[key] = self._redact(value)
            elif key == "tool_calls" and isinstance(value, list):
                calls, row["tool_args"] = self._redact_tool_calls(value)
                row["tool_calls"] = json.dumps(calls, ensure_ascii=False)
            else:
                extra[key] = self._redact_tree(value)
        row["extra"] = json.dumps(extra, ensure_ascii=False) if extra else None
        return row

    @staticmethod
    def _decode(row: sqlite3.Row | Mapping[str, Any]) -> Message:
        extra: dict[str, Any] = json.loads(row["extra"]) if row["extra"] else {}
        message: Message = {"role": row["role"]}
        for key in _COLUMN_KEYS[1:]:
            value = row[key]
            if value is not None:
                message[key] = json.loads(value) if key == "tool_calls" else value
            elif key in extra:
                message[key] = extra.pop(key)
        message.update(extra)
        return message

    # -- sessions ------------------------------------------------------------------

    # Named columns, not s.*: a column added by a later migration must not break Session.
    _SELECT_SESSION = (
        "SELECT "
        + ", ".join(f"s.{f.name}" for f in fields(Session) if f.name != "message_count")
        + ", (SELECT count(*) FROM messages AS m "
        "WHERE m.session_id = s.id AND m.compacted = 0) AS message_count FROM sessions AS s"
    )

    @staticmethod
    def _session(row: sqlite3.Row) -> Session:
        return Session(**dict(row))

    @staticmethod
    def _require(conn: sqlite3.Connection, session_id: str) -> None:
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise SessionNotFoundError(f"no session {session_id} (it may have been deleted)")

    def create_session(
        self,
        *,
        source: str,
        model: str,
        cwd: str,
        title: str | None = None,
        parent_id: str | None = None,
        parent_kind: str | None = None,
    ) -> str:
        """Start a session and return its new id.

        ``source`` says which front end owns it (``cli``, ``gateway:telegram``,
        ``cron``, ``acp``); ``parent_id``/``parent_kind`` link a session forked
        by compression or started by delegation to the one it came from.
        """
        if parent_kind is not None and parent_kind not in PARENT_KINDS:
            raise ValueError(f"parent_kind must be one of {', '.join(PARENT_KINDS)}")
        if parent_kind is not None and parent_id is None:
            raise ValueError("parent_kind needs a parent_id")
        stored_title = self._clean_title(title)
        now = time.time()
        with self._write() as conn:
            if parent_id is not None:
                self._require(conn, parent_id)
            session_id = new_session_id(now)
            while conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                session_id = new_session_id(now)
            conn.execute(
                "INSERT INTO sessions (id, source, title, model, cwd, created_at, updated_at, "
                "parent_id, parent_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, source, stored_title, model, cwd, now, now, parent_id, parent_kind),
            )
        return session_id

    def _clean_title(self, title: str | None) -> str | None:
        if title is None:
            return None
        title = self._redact(title.strip())
        return title or None

    def session_usage(self, session_id: str) -> tuple[int, int, int, int, float | None] | None:
        """The session's token totals and cost (None: no such session).

        :meth:`get_session` without its message count, which reads the whole
        history's index: the gateway asks for this on every message.
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                "cost_usd FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
        return None if row is None else tuple(row)

    def get_session(self, session_id: str) -> Session | None:
        """The session with exactly this id, or None."""
        with self._read() as conn:
            row = conn.execute(f"{self._SELECT_SESSION} WHERE s.id = ?", (session_id,)).fetchone()
        return None if row is None else self._session(row)

    def resolve(self, id_or_prefix: str) -> Session:
        """The session a user means by a full id or a unique prefix of one.

        Raises :class:`UsageError` naming the prefix when nothing matches or
        when several sessions do (listing some, so the user can type more).
        Matching ignores case: ids are digits and lower-case hex.
        """
        key = id_or_prefix.strip()
        if not key:
            raise UsageError("give a session id (or the start of one)")
        exact = self.get_session(key)
        if exact is not None:
            return exact
        pattern = _like_prefix(key)
        with self._read() as conn:
            total = conn.execute(
                "SELECT count(*) FROM sessions WHERE id LIKE ? ESCAPE '\\'", (pattern,)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT id, title FROM sessions WHERE id LIKE ? ESCAPE '\\' "
                "ORDER BY id DESC LIMIT 10",
                (pattern,),
            ).fetchall()
        if total == 0:
            raise UsageError(f"no session matches {key!r}")
        if total == 1:
            found = self.get_session(rows[0]["id"])
            if found is None:  # Deleted between the two reads.
                raise UsageError(f"no session matches {key!r}")
            return found
        lines = [f"  {row['id']}  {row['title'] or ''}".rstrip() for row in rows]
        if total > len(rows):
            lines.append(f"  ... and {total - len(rows)} more")
        raise UsageError(
            f"{key!r} matches {total} sessions; type more of the id:\n" + "\n".join(lines)
        )

    def latest_session(self, source: str | None = None) -> Session | None:
        """The most recently updated session (of ``source``), e.g. to continue it."""
        found = self.list_sessions(limit=1, source=source)
        return found[0] if found else None

    def list_sessions(self, limit: int = 20, source: str | None = None) -> list[Session]:
        """Sessions, most recently updated first.

        ``source`` matches exactly, or as a family: ``gateway`` includes
        ``gateway:telegram`` and ``gateway:discord``.
        """
        clause, params = _source_clause(source, "s.source")
        with self._read() as conn:
            rows = conn.execute(
                f"{self._SELECT_SESSION} WHERE {clause} "
                "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [self._session(row) for row in rows]

    def _update_session(self, session_id: str, sql: str, params: tuple[Any, ...]) -> None:
        with self._write() as conn:
            if conn.execute(sql, (*params, session_id)).rowcount == 0:
                raise SessionNotFoundError(f"no session {session_id} (it may have been deleted)")

    def set_title(self, session_id: str, title: str | None) -> None:
        """Set (or with None/blank, clear) the title; the user's choice is kept as given."""
        self._update_session(
            session_id, "UPDATE sessions SET title = ? WHERE id = ?", (self._clean_title(title),)
        )

    def system_prompt(self, session_id: str, key: str) -> str | None:
        """The session's system prompt if it was built from ``key``, else None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT system_prompt FROM sessions WHERE id = ? AND system_prompt_key = ?",
                (session_id, key),
            ).fetchone()
        return None if row is None else row[0]

    def keep_system_prompt(self, session_id: str, prompt: str, key: str) -> str:
        """Record the session's system prompt and what it was built from; return it.

        Stored redacted, like messages (what the model is sent on later turns).
        """
        stored = self._redact(prompt)
        self._update_session(
            session_id,
            "UPDATE sessions SET system_prompt = ?, system_prompt_key = ? WHERE id = ?",
            (stored, key),
        )
        return stored

    def set_model(self, session_id: str, model: str) -> None:
        """Record a model switch, so a resumed session continues with the same model."""
        self._update_session(session_id, "UPDATE sessions SET model = ? WHERE id = ?", (model,))

    def add_usage(
        self,
        session_id: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        """Add one model call's token counts and cost to the session's totals."""
        self._update_session(
            session_id,
            _ADD_USAGE,
            (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd),
        )

    def delete_session(self, session_id: str) -> bool:
        """Delete a session (exact id) with its messages and their index entries.

        Sessions forked from it keep existing with ``parent_id`` cleared.
        Returns False when there was no such session.
        """
        with self._write() as conn:
            self._forget_history(session_id)
            return conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def prune(
        self, older_than_seconds: float, source: str | None = None, *, dry_run: bool = False
    ) -> int:
        """Delete sessions not updated for ``older_than_seconds``; return how many.

        With ``dry_run`` nothing is deleted and the count is what would be,
        so a caller can ask for confirmation first.

        Sessions go :data:`PRUNE_BATCH` at a time, each batch in a write
        transaction of its own: the gateway, which writes every message it
        receives, waits for one short batch at most, never for the whole prune
        (nor into its busy timeout). Then the freed pages are returned to the
        file system a few at a time (databases created since auto_vacuum was
        set; older ones reuse the free pages instead). Never a ``VACUUM``: it
        would stop every writer for as long as it copies the whole file.
        """
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must not be negative")
        cutoff = time.time() - older_than_seconds
        clause, params = _source_clause(source)
        if dry_run:
            with self._read() as conn:
                count: int = conn.execute(
                    f"SELECT count(*) FROM sessions WHERE updated_at < ? AND {clause}",
                    (cutoff, *params),
                ).fetchone()[0]
            return count
        with self._read() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM sessions WHERE updated_at < ? AND {clause}",
                    (cutoff, *params),
                )
            ]
        deleted = 0
        for start in range(0, len(ids), PRUNE_BATCH):
            batch = ids[start : start + PRUNE_BATCH]
            marks = ", ".join("?" * len(batch))
            with self._write() as conn:
                self._forget_histories()
                # Checked again: a session written to since the list was made is kept.
                deleted += conn.execute(
                    f"DELETE FROM sessions WHERE id IN ({marks}) AND updated_at < ?",
                    (*batch, cutoff),
                ).rowcount
            time.sleep(0)  # Let a waiting thread of this process have the lock first.
        self._release_free_pages()
        return deleted

    def _release_free_pages(self) -> None:
        """Give free pages back to the file system, :data:`VACUUM_PAGES` per transaction."""
        with self._read() as conn:
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # Not INCREMENTAL.
                return
        while True:
            with self._read() as conn:
                if conn.execute("PRAGMA freelist_count").fetchone()[0] == 0:
                    return
            with self._write() as conn:
                conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()

    # -- messages ------------------------------------------------------------------

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, session_id: str) -> int:
        row = conn.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE session_id = ?", (session_id,)
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _insert(
        conn: sqlite3.Connection, session_id: str, seq: int, row: dict[str, Any], now: float
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO messages (session_id, seq, role, content, tool_calls, tool_call_id, "
            "name, extra, tool_args, created_at, indexed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                session_id,
                seq,
                row["role"],
                row["content"],
                row["tool_calls"],
                row["tool_call_id"],
                row["name"],
                row["extra"],
                row["tool_args"],
                now,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def add_message(
        self,
        session_id: str,
        message: Mapping[str, Any],
        *,
        usage: Mapping[str, float] | None = None,
    ) -> int:
        """Append one message to the session's active history; return its row id.

        Also marks the session as updated, and names an untitled session
        after its first user message, so lists are readable without a
        separate titling step. ``usage`` (the keyword arguments of
        :meth:`add_usage`) is added in the same transaction: a model's reply
        and what it cost are stored together, in one write instead of two.
        """
        row = self._encode(message)
        title = title_from(row["content"]) if row["role"] == "user" and row["content"] else None
        now = time.time()
        with self._write() as conn:
            self._require(conn, session_id)
            message_id = self._insert(conn, session_id, self._next_seq(conn, session_id), row, now)
            conn.execute(
                "UPDATE sessions SET updated_at = ?, title = coalesce(title, ?) WHERE id = ?",
                (now, title, session_id),
            )
            if usage:
                conn.execute(_ADD_USAGE, (*_usage_values(usage), session_id))
            cached = self._histories.get(session_id)
            if cached is not None:  # Committed below; a failed commit drops the cache.
                decoded = self._decode(row)
                cached.append(decoded)
                self._count_history(session_id, _cached_size(decoded))
            self._unindexed += 1
            if self._unindexed >= INDEX_BATCH:
                self._index(conn)
        return message_id

    def index_pending(self) -> None:
        """Put the messages not yet in the search index into it (see m006)."""
        with self._write() as conn:
            self._index(conn)

    def _index(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO messages_fts (rowid, content, tool_args) "
            "SELECT id, content, tool_args FROM messages WHERE indexed = 0"
        )
        conn.execute("UPDATE messages SET indexed = 1 WHERE indexed = 0")
        self._unindexed = 0

    def replace_history(self, session_id: str, messages: Sequence[Mapping[str, Any]]) -> None:
        """Make ``messages`` the session's active history (context compression).

        In one transaction the current active messages are marked compacted
        and the new list is appended after them, so the session keeps its id,
        readers never see a half-replaced history, and the compacted messages
        stay searchable and exportable.
        """
        rows = [self._encode(message) for message in messages]
        now = time.time()
        with self._write() as conn:
            self._forget_history(session_id)
            self._require(conn, session_id)
            conn.execute(
                "UPDATE messages SET compacted = 1 WHERE session_id = ? AND compacted = 0",
                (session_id,),
            )
            seq = self._next_seq(conn, session_id)
            for offset, row in enumerate(rows):
                self._insert(conn, session_id, seq + offset, row, now)
            conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))

    def messages(self, session_id: str, include_compacted: bool = False) -> list[Message]:
        """The session's messages in order, as the dicts that were stored.

        By default only the active history (what the model sees next);
        ``include_compacted`` adds the messages that compression replaced.

        The active histories of the sessions read last are cached, up to
        :data:`HISTORY_CACHE_CHARS`: the gateway builds an agent, and so reads
        the history, for every message, and decoding hundreds of rows each time
        was most of its database time. The returned list is the caller's; the
        message dicts in it are shared and must not be changed in place.
        """
        if include_compacted:
            return [record.message for record in self.message_records(session_id, True)]
        with self._read() as conn:
            cached = self._cached_history(conn, session_id)
            if cached is None:
                rows = conn.execute(
                    "SELECT role, content, tool_calls, tool_call_id, name, extra FROM messages "
                    "WHERE session_id = ? AND compacted = 0 ORDER BY seq",
                    (session_id,),
                ).fetchall()
                cached = [self._decode(row) for row in rows]
                self._histories[session_id] = cached
                self._count_history(session_id, sum(_cached_size(m) for m in cached))
            return list(cached)

    def _count_history(self, session_id: str, chars: int) -> None:
        """Add ``chars`` to a kept history's size; drop the least recently read over budget."""
        self._history_chars[session_id] = self._history_chars.get(session_id, 0) + chars
        self._cached_chars += chars
        self._histories.move_to_end(session_id)  # The one just used goes last.
        while self._cached_chars > HISTORY_CACHE_CHARS and len(self._histories) > 1:
            self._forget_history(next(iter(self._histories)))

    def _forget_history(self, session_id: str) -> None:
        if self._histories.pop(session_id, None) is not None:
            self._cached_chars -= self._history_chars.pop(session_id, 0)

    def _forget_histories(self) -> None:
        self._histories.clear()
        self._history_chars.clear()
        self._cached_chars = 0

    def _cached_history(self, conn: sqlite3.Connection, session_id: str) -> list[Message] | None:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # Another connection wrote: trust nothing cached.
            self._forget_histories()
            self._data_version = version
            return None
        cached = self._histories.get(session_id)
        if cached is not None:
            self._histories.move_to_end(session_id)
        return cached

    def message_records(
        self, session_id: str, include_compacted: bool = True
    ) -> list[StoredMessage]:
        """Messages with their id, sequence number, time and compacted flag (for exports)."""
        where = "" if include_compacted else " AND compacted = 0"
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM messages WHERE session_id = ?{where} ORDER BY seq",
                (session_id,),
            ).fetchall()
        return [
            StoredMessage(
                id=row["id"],
                session_id=row["session_id"],
                seq=row["seq"],
                created_at=row["created_at"],
                compacted=bool(row["compacted"]),
                message=self._decode(row),
            )
            for row in rows
        ]

    # -- search --------------------------------------------------------------------

    def search(
        self,
        query: str,
        limit: int = 20,
        source: str | None = None,
        *,
        marks: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """Messages matching ``query`` (words, ``"phrases"``, ``prefix*``), best first.

        Any text is a valid query (see :func:`fts_query`); one with nothing
        searchable in it finds nothing. Compacted messages are included.
        ``marks`` surround the matched words in the snippet.
        """
        match = fts_query(query)
        if not match:
            return []
        clause, params = _source_clause(source, "s.source")
        attempts = 3
        while True:
            try:
                rows = self._search_rows(match, clause, params, limit, marks)
                break
            except sqlite3.DatabaseError as exc:
                name = getattr(exc, "sqlite_errorname", "") or ""
                if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                    with self._environment_errors():
                        raise
                attempts -= 1
                if attempts == 0:
                    raise HermesError(
                        f"{self.path}: search failed even after rebuilding its index: {exc}; "
                        "the messages are intact (try hermes sessions reindex)"
                    ) from None
                # A missing or damaged index: rebuild it from the messages and ask again,
                # unless another process has repaired it meanwhile (the query runs then).
                self._rebuild_index(
                    f"the search index is damaged ({exc})",
                    only_if_broken=True,
                    probe=lambda conn: conn.execute(
                        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (match,)
                    ).fetchall(),
                )
        return [
            SearchHit(
                session_id=row["session_id"],
                message_id=row["message_id"],
                title=row["title"],
                source=row["source"],
                role=row["role"],
                snippet=row["snippet"] or "",
                created_at=row["created_at"],
                compacted=bool(row["compacted"]),
            )
            for row in rows
        ]

    def _search_rows(
        self,
        match: str,
        clause: str,
        params: tuple[str, ...],
        limit: int,
        marks: tuple[str, str],
    ) -> list[sqlite3.Row]:
        """The search query; sqlite3 errors come out raw, for :meth:`search` to judge."""
        with self._lock:
            conn = self._conn
            behind = conn.execute("SELECT 1 FROM messages WHERE indexed = 0 LIMIT 1").fetchone()
            if behind is not None:  # Messages stored since the last batch (see m006).
                conn.execute("BEGIN IMMEDIATE")
                try:
                    while self._riders:  # As in _write: they go first in the next write.
                        conn.execute(*self._riders[0])
                        self._riders.popleft()
                    self._index(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            rows: list[sqlite3.Row] = conn.execute(
                "SELECT m.session_id, m.id AS message_id, s.title, s.source, m.role, "
                "m.created_at, m.compacted, "
                "snippet(messages_fts, -1, ?, ?, '…', 16) AS snippet "
                "FROM messages_fts "
                "JOIN messages AS m ON m.id = messages_fts.rowid "
                "JOIN sessions AS s ON s.id = m.session_id "
                f"WHERE messages_fts MATCH ? AND {clause} "
                "ORDER BY bm25(messages_fts, 1.0, 0.5), m.created_at DESC LIMIT ?",
                (marks[0], marks[1], match, *params, limit),
            ).fetchall()
        return rows

    # -- gateway queue -------------------------------------------------------------

    _SELECT_INBOUND = "SELECT " + ", ".join(f.name for f in fields(InboundMessage))

    def add_inbound(
        self,
        *,
        platform: str,
        chat_id: str,
        message_id: str,
        text: str,
        thread_id: str = "",
        user_id: str = "",
        durable: bool = True,
        fingerprint: str | None = None,
    ) -> tuple[InboundMessage, bool]:
        """Store a platform message as pending; return it and whether it is new.

        A message whose ``(platform, message_id)`` is already stored is not
        stored again: the existing row comes back with ``False`` (with the
        ``fingerprint`` it was first stored with, for the caller to compare). ``durable``
        (the default): on disk before this returns, so the platform can be told
        it arrived even if the power fails next; the HTTP API, whose caller
        waits for the answer in the same request, does without.
        """
        now = time.time()
        with self._write(durable=durable) as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO gateway_inbound (platform, chat_id, thread_id, user_id, "
                "message_id, text, fingerprint, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    platform,
                    chat_id,
                    thread_id,
                    user_id,
                    message_id,
                    self._redact(text),
                    fingerprint,
                    now,
                    now,
                ),
            )
            new = cursor.rowcount == 1
            row = conn.execute(
                f"{self._SELECT_INBOUND} FROM gateway_inbound "
                "WHERE platform = ? AND message_id = ?",
                (platform, message_id),
            ).fetchone()
        return InboundMessage(**dict(row)), new

    def get_inbound(self, inbound_id: int) -> InboundMessage | None:
        with self._read() as conn:
            row = conn.execute(
                f"{self._SELECT_INBOUND} FROM gateway_inbound WHERE id = ?", (inbound_id,)
            ).fetchone()
        return InboundMessage(**dict(row)) if row else None

    def unfinished_inbound(self) -> list[InboundMessage]:
        """Pending and processing messages, oldest first (what a restart resumes)."""
        with self._read() as conn:
            rows = conn.execute(
                f"{self._SELECT_INBOUND} FROM gateway_inbound "
                "WHERE status IN ('pending', 'processing') ORDER BY id"
            ).fetchall()
        return [InboundMessage(**dict(row)) for row in rows]

    def set_inbound_status(
        self,
        inbound_id: int,
        status: str,
        *,
        reply: str | None = None,
        error: str | None = None,
        session_id: str | None = None,
        delivery: str | None = None,
        with_next_write: bool = False,
    ) -> None:
        """Record how far answering got; ``delivery`` as :meth:`set_delivery`, same write.

        ``with_next_write``: do not commit on its own, but as the first statement of
        this object's next write transaction, whatever it is. The gateway marks a
        message "processing" this way: the next write is the turn's user message, so
        both are stored together (one commit fewer per message) and never one without
        the other.
        """
        if status not in INBOUND_STATUSES:
            raise ValueError(f"status must be one of {', '.join(INBOUND_STATUSES)}")
        if delivery not in (None, *DELIVERY_STATES):
            raise ValueError(f"delivery must be one of {', '.join(DELIVERY_STATES)}")
        statement = (
            "UPDATE gateway_inbound SET status = ?, reply = coalesce(?, reply), "
            "error = ?, session_id = coalesce(?, session_id), "
            "delivery = coalesce(?, delivery), updated_at = ? WHERE id = ?",
            (
                status,
                None if reply is None else self._redact(reply),
                None if error is None else self._redact(error),
                session_id,
                delivery,
                time.time(),
                inbound_id,
            ),
        )
        if with_next_write:
            with self._lock:
                self._riders.append(statement)
            return
        with self._write() as conn:
            conn.execute(*statement)

    def set_delivery(
        self,
        inbound_id: int,
        delivery: str,
        delivered: int | None = None,
        *,
        sent_id: str | None = None,
    ) -> None:
        """Record how far the reply to ``inbound_id`` got to the platform.

        Clears the delivery mark: the chunk it was taken for is accounted for.
        """
        if delivery not in DELIVERY_STATES:
            raise ValueError(f"delivery must be one of {', '.join(DELIVERY_STATES)}")
        with self._write() as conn:
            conn.execute(
                "UPDATE gateway_inbound SET delivery = ?, delivered = coalesce(?, delivered), "
                "delivery_mark = NULL, sent_id = coalesce(?, sent_id), updated_at = ? "
                "WHERE id = ?",
                (delivery, delivered, sent_id, time.time(), inbound_id),
            )

    def mark_sending(self, inbound_id: int, mark: str) -> None:
        """Record that the reply's next chunk is being handed over, with the platform's mark."""
        with self._write() as conn:
            conn.execute(
                "UPDATE gateway_inbound SET delivery = 'sending', delivery_mark = ?, "
                "updated_at = ? WHERE id = ?",
                (mark, time.time(), inbound_id),
            )

    def note_sent(self, platform: str, chat_id: str, sent_id: str) -> None:
        """Keep the id of a message sent to ``chat_id`` that answers nothing (a cron result)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO gateway_other_sends (platform, chat_id, sent_id, sent_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (platform, chat_id) DO UPDATE SET "
                "sent_id = excluded.sent_id, sent_at = excluded.sent_at",
                (platform, chat_id, sent_id, time.time()),
            )

    def recent_platform_ids(self, platform: str, limit: int = 256) -> list[str]:
        """Platform ids of the newest messages received and sent (see m007), newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT message_id, sent_id FROM gateway_inbound WHERE platform = ? "
                "ORDER BY id DESC LIMIT ?",
                (platform, limit),
            ).fetchall()
            others = conn.execute(
                "SELECT sent_id FROM gateway_other_sends WHERE platform = ? "
                "ORDER BY sent_at DESC LIMIT ?",
                (platform, limit),
            ).fetchall()
        refs = [ref for row in rows for ref in (row["message_id"], row["sent_id"]) if ref]
        return refs + [row["sent_id"] for row in others]

    def undelivered_inbound(self) -> list[InboundMessage]:
        """Answered messages whose reply the platform has not (fully) accepted."""
        with self._read() as conn:
            rows = conn.execute(
                f"{self._SELECT_INBOUND} FROM gateway_inbound "
                "WHERE status IN ('done', 'failed') AND delivery IS NOT 'sent' "
                "AND delivery IS NOT 'failed' ORDER BY id"
            ).fetchall()
        return [InboundMessage(**dict(row)) for row in rows]

    # -- gateway pairing -----------------------------------------------------------

    def is_paired(self, platform: str, user_id: str) -> bool:
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM gateway_paired_users WHERE platform = ? AND user_id = ?",
                (platform, user_id),
            ).fetchone()
        return row is not None

    def pairing_request(
        self, platform: str, user_id: str, user_name: str, chat_id: str, new_code: str
    ) -> tuple[PairingRequest, bool]:
        """The user's open request, creating it with ``new_code`` if there is none.

        Returns the request and whether it was created now.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO gateway_pairing_requests "
                "(platform, user_id, user_name, chat_id, code, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (platform, user_id, user_name, chat_id, new_code, time.time()),
            )
            row = conn.execute(
                "SELECT platform, user_id, user_name, chat_id, code, created_at "
                "FROM gateway_pairing_requests WHERE platform = ? AND user_id = ?",
                (platform, user_id),
            ).fetchone()
        return PairingRequest(**dict(row)), cursor.rowcount == 1

    def pairing_requests(self) -> list[PairingRequest]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT platform, user_id, user_name, chat_id, code, created_at "
                "FROM gateway_pairing_requests ORDER BY created_at"
            ).fetchall()
        return [PairingRequest(**dict(row)) for row in rows]

    def drop_pairing_requests(self, older_than: float) -> int:
        """Forget requests created before ``older_than`` (a Unix time); return how many."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM gateway_pairing_requests WHERE created_at < ?", (older_than,)
            )
        return cursor.rowcount

    def approve_pairing(self, code: str) -> PairingRequest | None:
        """Let the user behind ``code`` in; None when no open request has that code."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT platform, user_id, user_name, chat_id, code, created_at "
                "FROM gateway_pairing_requests WHERE code = ?",
                (code,),
            ).fetchone()
            if row is None:
                return None
            request = PairingRequest(**dict(row))
            conn.execute(
                "INSERT OR REPLACE INTO gateway_paired_users "
                "(platform, user_id, user_name, approved_at) VALUES (?, ?, ?, ?)",
                (request.platform, request.user_id, request.user_name, time.time()),
            )
            conn.execute("DELETE FROM gateway_pairing_requests WHERE code = ?", (code,))
        return request

    def paired_users(self) -> list[tuple[str, str, str, float]]:
        """(platform, user id, user name, approved at) of every paired user."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT platform, user_id, user_name, approved_at FROM gateway_paired_users "
                "ORDER BY platform, approved_at"
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def revoke_pairing(self, platform: str, user_id: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM gateway_paired_users WHERE platform = ? AND user_id = ?",
                (platform, user_id),
            )
        return cursor.rowcount == 1

    def route(self, platform: str, chat_id: str, thread_id: str = "") -> str | None:
        """The session that answers this platform conversation, if there is one."""
        found = self.route_and_activity(platform, chat_id, thread_id)
        return found[0] if found else None

    def route_and_activity(
        self, platform: str, chat_id: str, thread_id: str = ""
    ) -> tuple[str, float] | None:
        """The conversation's session and when it last changed (its ``updated_at``)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT r.session_id, s.updated_at FROM gateway_routes r "
                "JOIN sessions s ON s.id = r.session_id "
                "WHERE r.platform = ? AND r.chat_id = ? AND r.thread_id = ?",
                (platform, chat_id, thread_id),
            ).fetchone()
        return (str(row[0]), float(row[1])) if row else None

    def set_route(self, platform: str, chat_id: str, thread_id: str, session_id: str) -> None:
        with self._write() as conn:
            self._require(conn, session_id)
            conn.execute(
                "INSERT INTO gateway_routes (platform, chat_id, thread_id, session_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, chat_id, thread_id) "
                "DO UPDATE SET session_id = excluded.session_id, updated_at = excluded.updated_at",
                (platform, chat_id, thread_id, session_id, time.time()),
            )

    def move_chat(self, platform: str, old_chat_id: str, new_chat_id: str) -> bool:
        """Record that a chat now has a new id, and move its conversations there.

        Returns False when this move was known already. A conversation the new id
        started meanwhile keeps its place; the old one's route is dropped then.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO gateway_chat_moves "
                "(platform, old_chat_id, new_chat_id, moved_at) VALUES (?, ?, ?, ?)",
                (platform, old_chat_id, new_chat_id, time.time()),
            )
            conn.execute(
                "UPDATE OR IGNORE gateway_routes SET chat_id = ?, updated_at = ? "
                "WHERE platform = ? AND chat_id = ?",
                (new_chat_id, time.time(), platform, old_chat_id),
            )
            conn.execute(
                "DELETE FROM gateway_routes WHERE platform = ? AND chat_id = ?",
                (platform, old_chat_id),
            )
        return cursor.rowcount == 1

    def chat_moved_from(self, platform: str, chat_id: str) -> list[str]:
        """The ids ``chat_id`` had before (oldest moves first)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT old_chat_id FROM gateway_chat_moves WHERE platform = ? "
                "AND new_chat_id = ? ORDER BY moved_at",
                (platform, chat_id),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def route_of(self, session_id: str) -> tuple[str, str, str] | None:
        """The platform conversation ``(platform, chat_id, thread_id)`` a session answers.

        The most recent one when several point at the session; None for sessions
        that are no gateway conversation (the CLI, cron runs).
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT platform, chat_id, thread_id FROM gateway_routes WHERE session_id = ? "
                "ORDER BY updated_at DESC LIMIT 1",
                (session_id,),
            ).fetchone()
        return (str(row[0]), str(row[1]), str(row[2])) if row else None
