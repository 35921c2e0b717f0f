"""Full-text search over every message, and rebuilding the index on request."""

from __future__ import annotations

import sqlite3

from hermes_agent.errors import HermesError
from hermes_agent.state import search_index
from hermes_agent.state.core import StoreCore
from hermes_agent.state.records import (
    SearchHit,
    _source_clause,
    fts_query,
)


class SearchStore(StoreCore):
    """Full-text search over every message, and rebuilding the index on request."""

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
            except search_index.INDEX_ERRORS as exc:
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
