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

The store is one class per concern, each in its own module: ``core`` (the
connection, migrations, transactions, encoding: the multi-process rules),
``sessions``, ``messages``, ``search``, ``inbox`` (the gateway's queue and
delivery marks), ``pairing`` and ``routes``; ``records`` holds the values
they return and ``migrations`` the schema. :class:`StateDB` combines them.
"""

from __future__ import annotations

from hermes_agent.state.inbox import InboxStore
from hermes_agent.state.messages import MessageStore
from hermes_agent.state.migrations import MIGRATIONS, Migration, migration
from hermes_agent.state.pairing import PairingStore
from hermes_agent.state.records import (
    BUSY_TIMEOUT_MS,
    DB_FILE_MODE,
    DELIVERY_STATES,
    HISTORY_CACHE_CHARS,
    INBOUND_STATUSES,
    INDEX_BATCH,
    PARENT_KINDS,
    PRUNE_BATCH,
    TITLE_MAX_CHARS,
    VACUUM_PAGES,
    InboundMessage,
    Message,
    PairingRequest,
    Redactor,
    SearchHit,
    Session,
    SessionNotFoundError,
    StoredMessage,
    fts_query,
    new_session_id,
    title_from,
)
from hermes_agent.state.routes import RouteStore
from hermes_agent.state.search import SearchStore
from hermes_agent.state.sessions import SessionStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_FILE_MODE",
    "DELIVERY_STATES",
    "HISTORY_CACHE_CHARS",
    "INBOUND_STATUSES",
    "INDEX_BATCH",
    "MIGRATIONS",
    "PARENT_KINDS",
    "PRUNE_BATCH",
    "TITLE_MAX_CHARS",
    "VACUUM_PAGES",
    "InboundMessage",
    "Message",
    "Migration",
    "PairingRequest",
    "Redactor",
    "SearchHit",
    "Session",
    "SessionNotFoundError",
    "StateDB",
    "StoredMessage",
    "fts_query",
    "migration",
    "new_session_id",
    "title_from",
]


class StateDB(SessionStore, MessageStore, SearchStore, InboxStore, PairingStore, RouteStore):
    """The conversation store in ``HERMES_HOME/state.db`` (or ``path``).

    Opening applies pending migrations. Use it as a context manager, or call
    :meth:`close`. ``redact`` is applied to every text before it is stored.
    """
