"""Routes: which session answers each platform conversation (chat and thread)."""

from __future__ import annotations

import time

from hermes_agent.state.core import StoreCore


class RouteStore(StoreCore):
    """Routes: which session answers each platform conversation (chat and thread)."""

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
