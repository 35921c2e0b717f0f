"""The SQLite state store: schema, file modes, messages, search, compression, concurrency."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.state.db import (
    MIGRATIONS,
    SessionNotFoundError,
    StateDB,
    fts_query,
    new_session_id,
)


@pytest.fixture
def db(hermes_home: Path) -> Iterator[StateDB]:
    with StateDB() as store:
        yield store


def raw(hermes_home: Path) -> sqlite3.Connection:
    """A plain connection to the test's state.db, to look behind the API."""
    return sqlite3.connect(hermes_home / "state.db", isolation_level=None)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def new_session(db: StateDB, source: str = "cli", **kwargs: Any) -> str:
    return db.create_session(source=source, model="test/model", cwd="/work", **kwargs)


TOOL_CALL_TURN: list[dict[str, Any]] = [
    {"role": "system", "content": "You are hermes."},
    {"role": "user", "content": "What is in /etc?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "terminal", "arguments": '{"command": "ls /etc/nginx"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "/etc/hosts"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "nginx.conf\nsites-enabled"},
    {"role": "tool", "tool_call_id": "call_2", "name": "read_file", "content": "127.0.0.1"},
    {"role": "assistant", "content": "It holds nginx.conf and the hosts file."},
]


# --- the file and the schema ------------------------------------------------------


def test_schema_and_migrations_are_recorded(db: StateDB, hermes_home: Path) -> None:
    conn = raw(hermes_home)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"sessions", "messages", "messages_fts", "_migrations"} <= names
    assert {"messages_active", "messages_unindexed", "messages_fts_delete"} <= names
    assert "messages_fts_insert" not in names  # Indexed in batches since m006.
    recorded = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid").fetchall()
    assert [name for name, _ in recorded] == [fn.__name__ for fn in MIGRATIONS]
    assert all(applied_at > 0 for _, applied_at in recorded)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()

    # Reopening applies nothing again.
    db.close()
    with StateDB():
        pass
    conn = raw(hermes_home)
    assert conn.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid").fetchall() == (
        recorded
    )
    conn.close()


def test_db_and_its_wal_files_are_private(hermes_home: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        with StateDB() as db:
            db.add_message(new_session(db), {"role": "user", "content": "hi"})
            files = ["state.db", "state.db-wal", "state.db-shm"]
            for name in files:
                assert mode(hermes_home / name) == 0o600, name
    finally:
        os.umask(old_umask)
    assert mode(hermes_home) == 0o700


def test_explicit_path_and_missing_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "other.db"
    with StateDB(path) as db:
        new_session(db)
    assert mode(path) == 0o600
    assert mode(tmp_path / "a") == 0o700


def test_a_database_from_a_newer_hermes_is_refused(hermes_home: Path) -> None:
    with StateDB() as db:
        new_session(db)
    conn = raw(hermes_home)
    conn.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', 0)")
    conn.close()
    with pytest.raises(HermesError, match="newer version of hermes") as info:
        StateDB()
    assert "m999_from_the_future" in str(info.value)
    assert not isinstance(info.value, UsageError)


def test_a_file_that_is_not_a_database_is_a_clear_error(hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HermesError, match=r"cannot open .*state\.db"):
        StateDB()


def test_foreign_keys_are_enforced(db: StateDB) -> None:
    parent = new_session(db)
    child = new_session(db, parent_id=parent, parent_kind="delegation")
    assert db.delete_session(parent)
    after = db.get_session(child)
    assert after is not None
    assert after.parent_id is None  # ON DELETE SET NULL needs foreign_keys=ON


# --- sessions ---------------------------------------------------------------------


def test_session_ids_are_sortable_and_short() -> None:
    first = new_session_id(1_800_000_000.0)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", first)
    assert first.startswith("20270115-080000-")
    assert new_session_id(1_800_000_001.0) > first


def test_session_metadata_and_usage(db: StateDB) -> None:
    before = time.time()
    sid = new_session(db, source="gateway:telegram")
    session = db.get_session(sid)
    assert session is not None
    assert (session.source, session.model, session.cwd, session.title) == (
        "gateway:telegram",
        "test/model",
        "/work",
        None,
    )
    assert before <= session.created_at == session.updated_at <= time.time()
    assert session.message_count == 0

    db.add_usage(sid, input_tokens=100, output_tokens=20, cache_read_tokens=50, cost_usd=0.01)
    db.add_usage(sid, input_tokens=10, output_tokens=2, cache_write_tokens=7, cost_usd=0.002)
    db.set_model(sid, "other/model")
    session = db.get_session(sid)
    assert session is not None
    assert (session.input_tokens, session.output_tokens) == (110, 22)
    assert (session.cache_read_tokens, session.cache_write_tokens) == (50, 7)
    assert session.cost_usd == pytest.approx(0.012)
    assert session.total_tokens == 132
    assert session.model == "other/model"
    assert db.get_session("nope") is None


def test_title_comes_from_the_first_user_message(db: StateDB) -> None:
    sid = new_session(db)
    db.add_message(sid, {"role": "system", "content": "You are hermes."})
    long_text = "Please   fix the\nbuild " + "x" * 100
    db.add_message(sid, {"role": "user", "content": long_text})
    db.add_message(sid, {"role": "user", "content": "second question"})
    session = db.get_session(sid)
    assert session is not None
    assert session.title is not None
    assert len(session.title) == 60
    assert session.title.startswith("Please fix the build xxx")
    assert session.title.endswith("…")
    db.set_title(sid, "My own title")
    db.add_message(sid, {"role": "user", "content": "third"})
    session = db.get_session(sid)
    assert session is not None
    assert session.title == "My own title"
    titled = new_session(db, title="Given")
    db.add_message(titled, {"role": "user", "content": "hello"})
    assert db.get_session(titled).title == "Given"  # type: ignore[union-attr]


def test_list_latest_and_source_families(db: StateDB) -> None:
    cli = new_session(db, "cli")
    telegram = new_session(db, "gateway:telegram")
    discord = new_session(db, "gateway:discord")
    db.add_message(cli, {"role": "user", "content": "touch cli last"})
    assert [s.id for s in db.list_sessions()] == [cli, discord, telegram]
    assert [s.id for s in db.list_sessions(limit=2)] == [cli, discord]
    assert [s.id for s in db.list_sessions(source="gateway")] == [discord, telegram]
    assert [s.id for s in db.list_sessions(source="gateway:telegram")] == [telegram]
    assert db.list_sessions(source="gate") == []
    assert db.latest_session().id == cli  # type: ignore[union-attr]
    assert db.latest_session("gateway").id == discord  # type: ignore[union-attr]
    assert db.latest_session("cron") is None
    assert db.list_sessions()[0].message_count == 1


def test_resolve_by_id_and_unique_prefix(db: StateDB) -> None:
    first = new_session(db)
    second = new_session(db)
    assert db.resolve(first).id == first
    unique = next(n for n in range(1, len(second) + 1) if not first.startswith(second[:n]))
    assert db.resolve(second[:unique]).id == second
    assert db.resolve(first.upper()).id == first  # hex typed in capitals still matches
    with pytest.raises(UsageError, match="no session matches 'zzz'"):
        db.resolve("zzz")
    with pytest.raises(UsageError, match="'2' matches 2 sessions") as info:
        db.resolve("2")
    assert first in str(info.value) and second in str(info.value)
    with pytest.raises(UsageError, match="no session matches '2%'"):
        db.resolve("2%")  # LIKE wildcards are literal
    with pytest.raises(UsageError):
        db.resolve("  ")


def test_writes_to_a_missing_session_are_clear_errors(db: StateDB) -> None:
    with pytest.raises(SessionNotFoundError, match="no session gone"):
        db.add_message("gone", {"role": "user", "content": "x"})
    with pytest.raises(SessionNotFoundError):
        db.set_title("gone", "t")
    with pytest.raises(SessionNotFoundError):
        db.add_usage("gone", input_tokens=1, output_tokens=1)
    with pytest.raises(SessionNotFoundError):
        db.replace_history("gone", [])
    with pytest.raises(SessionNotFoundError):
        new_session(db, parent_id="gone", parent_kind="compression")
    with pytest.raises(ValueError, match="parent_kind"):
        new_session(db, parent_id=new_session(db), parent_kind="fork")
    sid = new_session(db)
    with pytest.raises(ValueError, match="role"):
        db.add_message(sid, {"content": "no role"})
    with pytest.raises(TypeError):
        db.add_message(sid, ["not", "a", "dict"])  # type: ignore[arg-type]


# --- messages ---------------------------------------------------------------------


def test_messages_round_trip_exactly(db: StateDB) -> None:
    sid = new_session(db)
    odd: list[dict[str, Any]] = [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {}}]},
        {"role": "user", "content": [{"type": "text", "text": "parts"}]},
        {"role": "assistant", "content": "x", "reasoning": {"steps": ["a", "b"]}, "name": None},
        {"role": "assistant", "content": "", "tool_calls": None},
        {"role": "developer", "content": "ünïcödé 日本語 🙂\n\ttabs"},
    ]
    sent = [*TOOL_CALL_TURN, *odd]
    snapshot = repr(sent)
    ids = [db.add_message(sid, message) for message in sent]
    assert ids == sorted(ids)
    got = db.messages(sid)
    assert got == sent
    assert repr(sent) == snapshot, "the caller's dicts are not changed"
    session = db.get_session(sid)
    assert session is not None
    assert session.message_count == len(sent)
    records = db.message_records(sid)
    assert [r.seq for r in records] == list(range(1, len(sent) + 1))
    assert db.messages("no-such-session") == []


def test_add_message_bumps_updated_at(db: StateDB) -> None:
    sid = new_session(db)
    created = db.get_session(sid).updated_at  # type: ignore[union-attr]
    time.sleep(0.01)
    db.add_message(sid, {"role": "user", "content": "hi"})
    assert db.get_session(sid).updated_at > created  # type: ignore[union-attr]


def test_replace_history_compacts_in_place(db: StateDB) -> None:
    sid = new_session(db)
    for message in TOOL_CALL_TURN:
        db.add_message(sid, message)
    summary = [
        {"role": "system", "content": "You are hermes."},
        {"role": "user", "content": "Summary so far: we listed the nginx directory."},
    ]
    db.replace_history(sid, summary)
    assert db.get_session(sid).message_count == 2  # type: ignore[union-attr]
    assert db.messages(sid) == summary
    assert db.messages(sid, include_compacted=True) == [*TOOL_CALL_TURN, *summary]
    records = db.message_records(sid)
    assert [r.compacted for r in records] == [True] * len(TOOL_CALL_TURN) + [False, False]
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    # Compacted messages stay searchable, and are flagged as such.
    hits = db.search("sites-enabled")
    assert len(hits) == 1
    assert hits[0].session_id == sid
    assert hits[0].compacted
    # New messages continue the active history.
    db.add_message(sid, {"role": "user", "content": "go on"})
    assert db.messages(sid)[-1] == {"role": "user", "content": "go on"}
    db.replace_history(sid, [])
    assert db.messages(sid) == []
    assert len(db.messages(sid, include_compacted=True)) == len(TOOL_CALL_TURN) + 3


def test_replace_history_is_one_transaction(db: StateDB) -> None:
    sid = new_session(db)
    db.add_message(sid, {"role": "user", "content": "keep me"})
    with pytest.raises(ValueError):
        db.replace_history(sid, [{"role": "user", "content": "ok"}, {"content": "bad"}])
    assert db.messages(sid) == [{"role": "user", "content": "keep me"}]


def test_redact_hook_sees_every_stored_text(hermes_home: Path) -> None:
    secret = "sk-live-0123456789"

    def redact(text: str) -> str:
        return text.replace(secret, "[REDACTED]")

    with StateDB(redact=redact) as db:
        sid = db.create_session(source="cli", model="m", cwd="/", title=f"title {secret}")
        db.add_message(sid, {"role": "user", "content": f"my key is {secret}"})
        db.add_message(
            sid,
            {
                "role": "assistant",
                "content": None,
                "reasoning": [f"saw {secret}"],
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "terminal", "arguments": f'{{"env": "{secret}"}}'},
                    }
                ],
            },
        )
        other = db.create_session(source="cli", model="m", cwd="/")
        db.add_message(other, {"role": "user", "content": f"again {secret}"})
        db.set_title(sid, f"renamed {secret}")
        db.replace_history(other, [{"role": "user", "content": f"summary {secret}"}])

        assert db.get_session(sid).title == "renamed [REDACTED]"  # type: ignore[union-attr]
        assert db.get_session(other).title == "again [REDACTED]"  # type: ignore[union-attr]
        stored = db.messages(sid) + db.messages(other, include_compacted=True)
        assert secret not in repr(stored)
        assert "[REDACTED]" in stored[1]["tool_calls"][0]["function"]["arguments"]
        assert stored[1]["reasoning"] == ["saw [REDACTED]"]
        assert db.search("sk") == []
        assert len(db.search("redacted")) == 4
    for name in ("state.db", "state.db-wal"):
        path = hermes_home / name
        if path.exists():
            assert secret.encode() not in path.read_bytes(), name


# --- search -----------------------------------------------------------------------


def test_fts_query_quotes_every_term() -> None:
    assert fts_query('deploy "exit code" dock*') == '"deploy" "exit code" "dock"*'
    assert fts_query('"unbalanced phrase') == '"unbalanced phrase"'
    assert fts_query("col:x NEAR(") == '"col:x" "NEAR("'
    assert fts_query('a"b') == '"a" "b"'
    assert fts_query('* ** - () "" \'') == ""
    assert fts_query("") == ""


def test_search_words_phrases_prefixes_and_snippets(db: StateDB) -> None:
    sid = new_session(db)
    for message in TOOL_CALL_TURN:
        db.add_message(sid, message)
    other = new_session(db, "cron")
    db.add_message(other, {"role": "user", "content": "The exit code of the nightly backup was 3"})

    hits = db.search("nginx")
    assert {h.role for h in hits} == {"assistant", "tool"}
    assert all(h.session_id == sid for h in hits)
    assert any("[nginx]" in h.snippet for h in hits)

    (hit,) = db.search('"exit code" nightly')
    assert hit.session_id == other
    assert hit.role == "user"
    assert hit.source == "cron"
    assert hit.title == "The exit code of the nightly backup was 3"
    assert hit.snippet == "The [exit code] of the [nightly] backup was 3"
    assert hit.created_at > 0
    assert hit.message_id > 0
    assert db.search('"code exit"') == []  # a phrase keeps its order
    assert [h.session_id for h in db.search("back*")] == [other]
    assert db.search("nightly", source="cli") == []
    assert len(db.search("nightly", source="cron")) == 1
    assert db.search("nightly", marks=("<b>", "</b>"))[0].snippet.startswith(
        "The exit code of the <b>"
    )


def test_search_finds_tool_call_arguments(db: StateDB) -> None:
    sid = new_session(db)
    for message in TOOL_CALL_TURN:
        db.add_message(sid, message)
    (hit,) = db.search("hosts read_file")
    assert hit.role == "assistant"
    assert "[hosts]" in hit.snippet


def test_search_ranks_with_bm25(db: StateDB) -> None:
    sid = new_session(db)
    filler = " ".join(["words"] * 200)
    db.add_message(sid, {"role": "user", "content": f"kubernetes {filler}"})
    best = db.add_message(sid, {"role": "user", "content": "kubernetes kubernetes cluster"})
    assert db.search("kubernetes")[0].message_id == best
    assert len(db.search("kubernetes", limit=1)) == 1


HOSTILE = [
    '"unbalanced',
    "AND OR",
    "OR",
    "*",
    "col:x",
    "content:nginx",
    "NEAR(",
    "NEAR(a b, 2)",
    "^start",
    "a AND (b OR",
    "-minus +plus",
    "'single' `back`",
    '""',
    '"""',
    "\\",
    "{content tool_args}: x",
    "ünïcödé",
    "日本語",
    "🙂",
    "\x00",
    "x" * 5000,
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(db: StateDB, query: str) -> None:
    sid = new_session(db)
    db.add_message(sid, {"role": "user", "content": "an unbalanced quote near col:x AND OR 🙂"})
    hits = db.search(query)
    assert isinstance(hits, list)


def test_hostile_queries_are_searched_as_text(db: StateDB) -> None:
    sid = new_session(db)
    db.add_message(sid, {"role": "user", "content": "an unbalanced quote near col:x AND OR"})
    db.add_message(sid, {"role": "user", "content": "Grüße aus Köln, これは 日本語 です"})
    for query in ('"unbalanced', "col:x", "NEAR(", "AND OR", "quote:near"):
        assert len(db.search(query)) == 1, query
    for query in ("köln", "koln", "KÖLN", "日本語", "grüße"):
        assert len(db.search(query)) == 1, query


# --- deleting ---------------------------------------------------------------------


def fts_rows(hermes_home: Path) -> int:
    conn = raw(hermes_home)
    try:
        conn.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        return int(conn.execute("SELECT count(*) FROM messages_fts_docsize").fetchone()[0])
    finally:
        conn.close()


def test_delete_cascades_to_messages_and_index(db: StateDB, hermes_home: Path) -> None:
    sid = new_session(db)
    keep = new_session(db)
    for message in TOOL_CALL_TURN:
        db.add_message(sid, message)
    db.add_message(keep, {"role": "user", "content": "nginx elsewhere"})
    db.index_pending()
    assert fts_rows(hermes_home) == len(TOOL_CALL_TURN) + 1
    assert db.delete_session(sid) is True
    assert db.delete_session(sid) is False
    assert db.get_session(sid) is None
    assert db.messages(sid, include_compacted=True) == []
    assert fts_rows(hermes_home) == 1
    assert [h.session_id for h in db.search("nginx")] == [keep]
    conn = raw(hermes_home)
    assert conn.execute(
        "SELECT count(*) FROM messages WHERE session_id = ?", (sid,)
    ).fetchone() == (0,)
    conn.close()


def test_messages_deleted_before_they_were_indexed_leave_the_index_intact(
    db: StateDB, hermes_home: Path
) -> None:
    # Since m006 a message enters the search index in batches; deleting one that never
    # got there must not touch the index (an FTS5 'delete' of an absent row corrupts it).
    gone = new_session(db)
    keep = new_session(db)
    db.add_message(keep, {"role": "user", "content": "indexed before the delete"})
    db.index_pending()
    db.add_message(gone, {"role": "user", "content": "never indexed, then deleted"})
    db.add_message(keep, {"role": "user", "content": "stored after, still pending"})
    assert db.delete_session(gone) is True
    assert [h.session_id for h in db.search("pending")] == [keep]  # A search catches up.
    assert db.search("deleted") == []
    assert fts_rows(hermes_home) == 2  # Integrity-checked against the messages table.


def test_the_index_is_updated_every_batch_without_a_search(db: StateDB, hermes_home: Path) -> None:
    from hermes_agent.state.db import INDEX_BATCH

    sid = new_session(db)
    for n in range(INDEX_BATCH):
        db.add_message(sid, {"role": "user", "content": f"message {n}"})
    assert fts_rows(hermes_home) == INDEX_BATCH


def age(hermes_home: Path, session_id: str, seconds: float) -> None:
    conn = raw(hermes_home)
    conn.execute(
        "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - seconds, session_id)
    )
    conn.close()


def test_prune_deletes_sessions_not_updated_recently(db: StateDB, hermes_home: Path) -> None:
    old_cli = new_session(db, "cli")
    old_cron = new_session(db, "cron")
    fresh = new_session(db, "cli")
    for sid in (old_cli, old_cron, fresh):
        db.add_message(sid, {"role": "user", "content": "prunable text"})
    age(hermes_home, old_cli, 40 * 86400)
    age(hermes_home, old_cron, 40 * 86400)
    assert db.prune(30 * 86400, dry_run=True) == 2
    assert db.prune(30 * 86400, source="cron") == 1
    assert db.get_session(old_cron) is None
    assert db.prune(30 * 86400) == 1
    assert [s.id for s in db.list_sessions()] == [fresh]
    assert db.prune(30 * 86400) == 0
    assert [h.session_id for h in db.search("prunable")] == [fresh]
    assert fts_rows(hermes_home) == 1
    with pytest.raises(ValueError):
        db.prune(-1)


# --- concurrency ------------------------------------------------------------------


def test_threads_sharing_one_store_lose_nothing(db: StateDB) -> None:
    sid = new_session(db)
    other_store = StateDB()
    errors: list[BaseException] = []

    def writer(store: StateDB, name: str) -> None:
        try:
            for i in range(100):
                store.add_message(sid, {"role": "user", "content": f"{name} {i}"})
                store.add_usage(sid, input_tokens=1, output_tokens=0)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(store, f"t{n}"))
        for n, store in enumerate([db, db, db, other_store])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_store.close()
    assert errors == []
    records = db.message_records(sid)
    assert len(records) == 400
    assert [r.seq for r in records] == list(range(1, 401))
    assert {r.message["content"] for r in records} == {
        f"t{n} {i}" for n in range(4) for i in range(100)
    }
    assert db.get_session(sid).input_tokens == 400  # type: ignore[union-attr]


WRITER = """
import os, sys, time
from hermes_agent.state.db import StateDB
go, name, count, session = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):
    time.sleep(0.002)
with StateDB() as db:
    if session == "-":
        session = db.create_session(source="cli", model="m", cwd="/")
    for i in range(count):
        db.add_message(session, {"role": "user", "content": f"{name} {i}"})
print(session)
"""


def run_writers(tmp_path: Path, home: Path, sessions: list[str], count: int) -> list[str]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(go), f"p{n}", str(count), session],
            env=clean_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, session in enumerate(sessions)
    ]
    time.sleep(0.3)  # Let every child reach the starting line.
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_two_processes_writing_one_session_lose_nothing(hermes_home: Path, tmp_path: Path) -> None:
    with StateDB() as db:
        sid = new_session(db)
    run_writers(tmp_path, hermes_home, [sid, sid], 150)
    with StateDB() as db:
        records = db.message_records(sid)
    assert len(records) == 300
    assert [r.seq for r in records] == list(range(1, 301))
    assert {r.message["content"] for r in records} == {
        f"p{n} {i}" for n in range(2) for i in range(150)
    }


def test_processes_creating_a_fresh_store_at_once(hermes_home: Path, tmp_path: Path) -> None:
    created = run_writers(tmp_path, hermes_home, ["-"] * 4, 25)
    with StateDB() as db:
        assert sorted(s.id for s in db.list_sessions()) == sorted(created)
        assert all(len(db.messages(sid)) == 25 for sid in created)
    conn = raw(hermes_home)
    assert conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_kept_histories_follow_writes_from_other_connections(db: StateDB) -> None:
    # messages() keeps recent histories decoded; another connection's commit (another
    # hermes process: the CLI resuming a gateway session, say) must show at once.
    sid = new_session(db)
    db.add_message(sid, {"role": "user", "content": "one"})
    first = db.messages(sid)
    first.append({"role": "user", "content": "the caller's own list"})
    assert [m["content"] for m in db.messages(sid)] == ["one"]
    db.add_message(sid, {"role": "assistant", "content": "two"})
    assert [m["content"] for m in db.messages(sid)] == ["one", "two"]
    with StateDB() as other:
        other.add_message(sid, {"role": "user", "content": "three"})
        other.replace_history(sid, [{"role": "user", "content": "summary"}])
    assert [m["content"] for m in db.messages(sid)] == ["summary"]
    with StateDB() as other:
        other.add_message(sid, {"role": "assistant", "content": "four"})
    db.add_message(sid, {"role": "user", "content": "five"})
    assert [m["content"] for m in db.messages(sid)] == ["summary", "four", "five"]


def test_a_status_with_next_write_is_stored_with_that_write(db: StateDB) -> None:
    sid = new_session(db)
    row, _ = db.add_inbound(platform="telegram", chat_id="1", message_id="7", text="hi")
    db.set_inbound_status(row.id, "processing", session_id=sid, with_next_write=True)
    with StateDB() as other:  # Not committed yet: another connection sees it pending.
        stored = other.get_inbound(row.id)
        assert stored is not None and stored.status == "pending"
    db.add_message(sid, {"role": "user", "content": "hi"})
    with StateDB() as other:  # Committed with the message, in one transaction.
        stored = other.get_inbound(row.id)
        assert stored is not None and (stored.status, stored.session_id) == ("processing", sid)
        assert [m["content"] for m in other.messages(sid)] == ["hi"]


def test_kept_histories_stay_within_their_budget(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hermes_agent.state import records

    monkeypatch.setattr(records, "HISTORY_CACHE_CHARS", 5_000)
    sessions = [new_session(db) for _ in range(4)]
    for sid in sessions:
        for n in range(3):
            db.add_message(sid, {"role": "user", "content": "x" * 500 + str(n)})
        db.messages(sid)  # ~2,400 counted each: two fit in 5,000.
    assert list(db._histories) == sessions[2:]
    assert db._cached_chars == sum(db._history_chars.values()) <= 5_000
    db.add_message(sessions[2], {"role": "user", "content": "y" * 1_000})
    assert list(db._histories) == [sessions[2]]  # Appending pushed the other one out.
    assert [m["content"][0] for m in db.messages(sessions[0])] == ["x", "x", "x"]


def test_a_delivery_mark_lasts_until_the_chunk_is_accounted_for(db: StateDB) -> None:
    row, _ = db.add_inbound(platform="telegram", chat_id="5", message_id="5:10", text="hi")
    db.set_inbound_status(row.id, "done", reply="answer")
    db.mark_sending(row.id, "10+64")
    (owed,) = db.undelivered_inbound()
    assert (owed.delivery, owed.delivered, owed.delivery_mark) == ("sending", 0, "10+64")
    db.set_delivery(row.id, "sending", 1, sent_id="5:11")
    (owed,) = db.undelivered_inbound()
    assert (owed.delivered, owed.delivery_mark, owed.sent_id) == (1, None, "5:11")
    db.set_delivery(row.id, "sent")
    assert db.undelivered_inbound() == []
    assert db.get_inbound(row.id).sent_id == "5:11"  # type: ignore[union-attr]


def test_recent_platform_ids_know_every_message_sent(db: StateDB) -> None:
    """Ids received, replies sent and messages that answer nothing (cron results)."""
    row, _ = db.add_inbound(platform="telegram", chat_id="5", message_id="5:10", text="hi")
    db.set_delivery(row.id, "sent", 1, sent_id="5:11")
    db.add_inbound(platform="discord", chat_id="9", message_id="99", text="other platform")
    db.note_sent("telegram", "5", "5:12")
    db.note_sent("telegram", "5", "5:13")  # Only the newest per chat is kept.
    db.note_sent("telegram", "-1007", "-1007:3")
    assert sorted(db.recent_platform_ids("telegram")) == ["-1007:3", "5:10", "5:11", "5:13"]


def test_an_inbound_message_is_on_disk_before_add_inbound_returns(db: StateDB) -> None:
    """Its commit waits for the disk (synchronous FULL); other commits skip that fsync."""
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)
    db.add_inbound(platform="telegram", chat_id="1", message_id="1:1", text="hi")
    durable = list(statements)
    statements.clear()
    db.add_inbound(platform="api_server", chat_id="c", message_id="r1", text="hi", durable=False)
    quick = list(statements)
    db._conn.set_trace_callback(None)
    assert durable[0] == "PRAGMA synchronous = FULL"
    assert durable.index("COMMIT") < durable.index("PRAGMA synchronous = NORMAL")
    assert not any("synchronous" in s for s in quick)
    assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again.


def test_a_moved_chat_takes_its_conversation_along(db: StateDB) -> None:
    session = db.create_session(source="gateway:telegram", model="m", cwd="/")
    db.set_route("telegram", "-12", "", session)
    assert db.move_chat("telegram", "-12", "-10012") is True
    assert db.move_chat("telegram", "-12", "-10012") is False  # Known already.
    assert db.route("telegram", "-12") is None
    assert db.route("telegram", "-10012") == session
    assert db.chat_moved_from("telegram", "-10012") == ["-12"]
    assert db.chat_moved_from("discord", "-10012") == []
