"""Messages of a session: appending, replacing the active history, reading back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hermes_agent.state.core import StoreCore
from hermes_agent.state.records import (
    _ADD_USAGE,
    INDEX_BATCH,
    Message,
    StoredMessage,
    _cached_size,
    _usage_values,
    title_from,
)


class MessageStore(StoreCore):
    """Messages of a session: appending, replacing the active history, reading back."""

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
        answered_by: tuple[str, str] | None = None,
    ) -> int:
        """Append one message to the session's active history; return its row id.

        Also marks the session as updated, and names an untitled session
        after its first user message, so lists are readable without a
        separate titling step. ``usage`` (the keyword arguments of
        :meth:`add_usage`) is added in the same transaction: a model's reply
        and what it cost are stored together, in one write instead of two.
        ``answered_by`` (provider, model) records who wrote a reply, with
        ``usage["cost_usd"]`` as its cost (fallback providers: it can change).
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
            if answered_by is not None:
                conn.execute(
                    "UPDATE messages SET provider = ?, model = ?, cost_usd = ? WHERE id = ?",
                    (*answered_by, (usage or {}).get("cost_usd"), message_id),
                )
            cached = self._histories.get(session_id)
            if cached is not None:  # Committed below; a failed commit drops the cache.
                decoded = self._decode(row)
                cached.append(decoded)
                self._count_history(session_id, _cached_size(decoded))
            self._unindexed += 1
            if self._unindexed >= INDEX_BATCH:
                self._index(conn)
        return message_id

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

    def undo_last_exchange(self, session_id: str) -> str | None:
        """Take the last user message and everything after it out of the active history.

        The rows stay (marked ``compacted`` and ``undone``): searchable, exported,
        never sent to the model again. Returns that user message's text (what
        /retry sends again), or None when the active history has no user message.
        """
        with self._write() as conn:
            self._require(conn, session_id)
            row = conn.execute(
                "SELECT seq, content FROM messages WHERE session_id = ? AND compacted = 0 "
                "AND role = 'user' ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None:
                return None
            self._forget_history(session_id)
            conn.execute(
                "UPDATE messages SET compacted = 1, undone = 1 "
                "WHERE session_id = ? AND compacted = 0 AND seq >= ?",
                (session_id, row[0]),
            )
        return str(row[1] or "")

    def answered_by(self, session_id: str) -> list[tuple[str, str, float | None]]:
        """(provider, model, cost) of each recorded reply of the session, in order."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT provider, model, cost_usd FROM messages WHERE session_id = ? "
                "AND provider IS NOT NULL ORDER BY seq",
                (session_id,),
            ).fetchall()
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

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
                undone=bool(row["undone"]),
                provider=row["provider"],
                model=row["model"],
                cost_usd=row["cost_usd"],
            )
            for row in rows
        ]
