"""Sessions: creating, finding, titling, counting usage, deleting and pruning."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import fields
from typing import Any

from hermes_agent.errors import UsageError
from hermes_agent.state.core import StoreCore
from hermes_agent.state.records import (
    _ADD_USAGE,
    PARENT_KINDS,
    PRUNE_BATCH,
    VACUUM_PAGES,
    Session,
    SessionNotFoundError,
    _like_prefix,
    _source_clause,
    new_session_id,
)


class SessionStore(StoreCore):
    """Sessions: creating, finding, titling, counting usage, deleting and pruning."""

    _SELECT_SESSION = (
        "SELECT "
        + ", ".join(f"s.{f.name}" for f in fields(Session) if f.name != "message_count")
        + ", (SELECT count(*) FROM messages AS m "
        "WHERE m.session_id = s.id AND m.compacted = 0) AS message_count FROM sessions AS s"
    )

    @staticmethod
    def _session(row: sqlite3.Row) -> Session:
        return Session(**dict(row))

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

    def session_personality(self, session_id: str) -> str | None:
        """The personality chosen for this session with /personality (None: the config's)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT personality FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else row[0]

    def set_personality(self, session_id: str, name: str | None) -> None:
        """Choose the session's personality ("" none, None back to display.personality)."""
        self._update_session(
            session_id, "UPDATE sessions SET personality = ? WHERE id = ?", (name,)
        )

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
