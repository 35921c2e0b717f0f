"""The full-text index of state.db (``messages_fts``): checking it, and rebuilding it.

The index is derived data: FTS5 with external content, so every word it
finds is read back from ``messages``. A damaged or missing index therefore
never costs a message; it only stops search (and, because the delete
triggers write to it, deleting sessions). So it is checked cheaply each time
state.db is opened (:func:`quick_problem`) and rebuilt from ``messages`` when
it is missing or cannot even be read; ``hermes sessions reindex`` runs the
full check (:func:`full_problem`) and rebuilds unconditionally.

Rebuilding works whatever shape the index is in. ``DROP TABLE`` of an FTS5
table whose shadow tables are damaged fails ("vtable constructor failed"),
so such a table is taken out of the schema by hand (``writable_schema``: a
virtual table has no pages of its own, its shadow tables are ordinary tables
dropped next). The schema is changed on a connection of its own, closed
afterwards, because a connection keeps the broken table's state cached.
Every step runs under ``BEGIN IMMEDIATE`` and checks again first, so two
processes that found the same damage at once rebuild it once and never drop
each other's good index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

#: The index (created by migration m002, and again by a rebuild).
CREATE_INDEX = """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, tool_args,
            content='messages', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )
        """
SHADOW_TABLES = tuple(f"messages_fts_{s}" for s in ("data", "idx", "docsize", "config", "content"))
#: A word no message holds: looking it up reads the index's structure and one term.
#: What a damaged index raises. FTS5 answers SQLITE_NOMEM for a segment whose damaged
#: sizes claim absurd lengths, and Python turns that into MemoryError.
INDEX_ERRORS: tuple[type[BaseException], ...] = (sqlite3.DatabaseError, MemoryError)

_PROBE = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'hermesindexprobe' LIMIT 1"

Connect = Callable[[], sqlite3.Connection]


def _exists(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"
    ).fetchone()
    return row is not None


def quick_problem(conn: sqlite3.Connection) -> str | None:
    """What is wrong with the index, found cheaply (at every open); None when it looks fine."""
    if not _exists(conn):
        return "the search index is missing"
    try:
        conn.execute(_PROBE).fetchall()
    except INDEX_ERRORS as exc:
        if _busy(exc):
            return None  # Not a fault of the index; a later look will tell.
        return f"the search index is damaged ({exc})"
    return None


def full_problem(conn: sqlite3.Connection) -> str | None:
    """:func:`quick_problem`, then FTS5's own check of the whole index against ``messages``.

    Every message must be in the index first (``indexed = 1``): the check
    counts a message missing from the index as damage.
    """
    problem = quick_problem(conn)
    if problem is not None:
        return problem
    try:
        conn.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
    except INDEX_ERRORS as exc:
        if _busy(exc):
            raise
        return f"the search index is damaged ({exc})"
    return None


def _busy(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def rebuild(
    connect: Connect,
    *,
    only_if_broken: bool,
    probe: Callable[[sqlite3.Connection], object] | None = None,
) -> int | None:
    """Rebuild the index from ``messages``; return how many messages it holds.

    ``connect`` opens a new connection to the database (with its busy
    timeout). With ``only_if_broken`` nothing is done (and None returned)
    when, once the write lock is held, :func:`quick_problem` finds nothing
    wrong and ``probe`` (the query that failed) runs: another process may
    have repaired the index meanwhile, and must not see it dropped again.
    """
    conn = connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if only_if_broken and _sound(conn, probe):
                conn.execute("ROLLBACK")
                return None
            if _remove(conn):  # Dropped normally: all of it in this one transaction.
                return _create(conn)
            conn.execute("COMMIT")  # Removed by hand: recreated on a fresh connection.
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    conn = connect()  # The old connection may still hold the broken table.
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            return _create(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _sound(conn: sqlite3.Connection, probe: Callable[[sqlite3.Connection], object] | None) -> bool:
    if quick_problem(conn) is not None:
        return False
    if probe is not None:
        try:
            probe(conn)
        except INDEX_ERRORS as exc:
            if _busy(exc):
                raise
            return False
    return True


def _create(conn: sqlite3.Connection) -> int:
    """Create the index if it is absent, fill it from ``messages`` and commit."""
    if not _exists(conn):  # Else another process recreated it between two steps.
        conn.execute(CREATE_INDEX)
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    conn.execute("UPDATE messages SET indexed = 1 WHERE indexed = 0")
    count: int = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    conn.execute("COMMIT")
    return count


def _remove(conn: sqlite3.Connection) -> bool:
    """Take the index and its shadow tables out of the schema, whatever state they are in.

    Returns False when it had to be removed by hand (``writable_schema``): this
    connection must then not be used to create it again.
    """
    try:
        conn.execute("DROP TABLE IF EXISTS messages_fts")
        dropped = True
    except INDEX_ERRORS as exc:
        if _busy(exc):
            raise
        # FTS5 cannot open the table to drop it: remove its schema row by hand. It owns no
        # pages (rootpage 0); the schema cookie is raised so every connection reloads.
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("DELETE FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'")
            conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
        dropped = False
    for table in SHADOW_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    return dropped
