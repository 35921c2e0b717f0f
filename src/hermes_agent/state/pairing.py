"""Pairing: users who asked to talk to the agent, their codes, and who was approved."""

from __future__ import annotations

import time

from hermes_agent.state.core import StoreCore
from hermes_agent.state.records import (
    PairingRequest,
)


class PairingStore(StoreCore):
    """Pairing: users who asked to talk to the agent, their codes, and who was approved."""

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
