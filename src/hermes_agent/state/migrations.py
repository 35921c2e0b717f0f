"""The schema of state.db: one small function per change, applied in order, recorded by name.

Append only: never edit or reorder an entry that has shipped, because its name
is recorded in users' databases (see :meth:`StoreCore._migrate`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hermes_agent.state import search_index

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


@migration
def m011_undo_answered_by_personality(conn: sqlite3.Connection) -> None:
    # /undo takes the last exchange out of the model's context without deleting it: its
    # rows are marked compacted (so every reader of the active history leaves them out)
    # and undone (so exports can say why).
    conn.execute("ALTER TABLE messages ADD COLUMN undone INTEGER NOT NULL DEFAULT 0")
    # Which provider and model wrote each reply, and what it cost: with fallback
    # providers a session's replies may come from several.
    conn.execute("ALTER TABLE messages ADD COLUMN provider TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN cost_usd REAL")
    # /personality NAME for one session (NULL: display.personality applies).
    conn.execute("ALTER TABLE sessions ADD COLUMN personality TEXT")


@migration
def m010_inbound_images(conn: sqlite3.Connection) -> None:
    # Photos that came with a platform message: a JSON list of references to files in
    # HERMES_HOME/images (stored before the row, so before the platform is told), never
    # the bytes. A restart answers the message with its images.
    conn.execute("ALTER TABLE gateway_inbound ADD COLUMN images TEXT")
