"""The heart of state.db: one connection, its migrations, transactions and encoding.

Everything the rest of the store builds on, and where the rules for sharing
state.db between processes live: WAL and a busy timeout on every connection,
``BEGIN IMMEDIATE`` for every write (so a busy database means waiting, not an
error), migrations applied once even when several processes open an old
database together (re-checked under the write lock), the search index
checked at open and rebuilt when broken, and one redaction function for every
text stored. Each concern of the store (sessions, messages, search, the
gateway's inbox, pairing, routes) is a class of its own module built on
:class:`StoreCore`; :class:`hermes_agent.state.db.StateDB` combines them.

Also here: the cache of recently read histories, because every write
transaction must keep it true (a rollback drops it).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hermes_agent import home
from hermes_agent.errors import HermesError
from hermes_agent.state import records, search_index
from hermes_agent.state.migrations import MIGRATIONS
from hermes_agent.state.records import (
    _COLUMN_KEYS,
    _ENVIRONMENT_ERRORS,
    _TEXT_KEYS,
    BUSY_TIMEOUT_MS,
    DB_FILE_MODE,
    Message,
    Redactor,
    SessionNotFoundError,
)

log = logging.getLogger("hermes_agent.state.db")


class StoreCore:
    """One connection to state.db, shared by this object's threads (see :mod:`.db`)."""

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

    def close(self) -> None:
        """Close the connection; calling it twice is harmless."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    @staticmethod
    def _require(conn: sqlite3.Connection, session_id: str) -> None:
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise SessionNotFoundError(f"no session {session_id} (it may have been deleted)")

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

    def _count_history(self, session_id: str, chars: int) -> None:
        """Add ``chars`` to a kept history's size; drop the least recently read over budget."""
        self._history_chars[session_id] = self._history_chars.get(session_id, 0) + chars
        self._cached_chars += chars
        self._histories.move_to_end(session_id)  # The one just used goes last.
        while self._cached_chars > records.HISTORY_CACHE_CHARS and len(self._histories) > 1:
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
