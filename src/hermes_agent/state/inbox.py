"""The gateway's inbox: messages stored before the platform is told; delivery marks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from hermes_agent.state.core import StoreCore
from hermes_agent.state.records import (
    DELIVERY_STATES,
    INBOUND_STATUSES,
    InboundMessage,
)


class InboxStore(StoreCore):
    """The gateway's inbox: messages stored before the platform is told; delivery marks."""

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
        images: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[InboundMessage, bool]:
        """Store a platform message as pending; return it and whether it is new.

        A message whose ``(platform, message_id)`` is already stored is not
        stored again: the existing row comes back with ``False`` (with the
        ``fingerprint`` it was first stored with, for the caller to compare). ``durable``
        (the default): on disk before this returns, so the platform can be told
        it arrived even if the power fails next; the HTTP API, whose caller
        waits for the answer in the same request, does without. ``images``: references
        to files already stored in HERMES_HOME/images (see :mod:`hermes_agent.images`).
        """
        now = time.time()
        with self._write(durable=durable) as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO gateway_inbound (platform, chat_id, thread_id, user_id, "
                "message_id, text, fingerprint, images, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    platform,
                    chat_id,
                    thread_id,
                    user_id,
                    message_id,
                    self._redact(text),
                    fingerprint,
                    json.dumps([dict(i) for i in images]) if images else None,
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

    def image_digests(self) -> set[str]:
        """The sha256 of every stored image a message or an inbound row refers to.

        For :func:`hermes_agent.images.prune`: a file no row names any more (its
        session was deleted) can go. A full scan, for a rare maintenance command.
        """
        found: set[str] = set()
        with self._read() as conn:
            rows = conn.execute(
                "SELECT extra FROM messages WHERE extra LIKE '%\"images\"%' "
                "UNION ALL SELECT images FROM gateway_inbound WHERE images IS NOT NULL"
            ).fetchall()
        for (raw,) in rows:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            refs = value.get("images") if isinstance(value, dict) else value
            for ref in refs if isinstance(refs, list) else ():
                if isinstance(ref, dict) and isinstance(ref.get("sha256"), str):
                    found.add(ref["sha256"])
        return found
