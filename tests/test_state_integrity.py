"""state.db shared by processes: old stores migrated at once, a damaged search index, prune.

Before: a state.db whose search table was missing or damaged made `hermes
sessions search` fail with an internal error, and nothing repaired it. These
tests damage real databases the ways SQLite reports (missing table, broken
shadow tables, a broken config row, an index out of step with the messages)
and run the real CLI on them; and start real processes on one old database.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Runner, clean_env
from hermes_agent.state.db import MIGRATIONS, StateDB

WORDS = 120

DAMAGE = {
    "missing": ["DROP TABLE messages_fts"],
    "broken segments": ["DELETE FROM messages_fts_data WHERE id > 10"],
    "unreadable structure": [
        "UPDATE messages_fts_data SET block = randomblob(length(block)) WHERE id > 1"
    ],
    "shadow table gone": ["DROP TABLE messages_fts_data"],
    "bad config row": ["DELETE FROM messages_fts_config"],
}


def fill(path: Path, count: int = WORDS) -> list[str]:
    """A store with ``count`` messages that all hold the word heron (and are indexed)."""
    with StateDB(path) as db:
        sid = db.create_session(source="cli", model="m", cwd="/")
        for i in range(count):
            db.add_message(sid, {"role": "user", "content": f"heron sighting number {i}"})
        db.index_pending()
    return [sid]


def damage(path: Path, statements: list[str]) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def hits(runner: Runner) -> subprocess.CompletedProcess[str]:
    return runner("sessions", "search", "heron", "--limit", "1000")


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_search_rebuilds_a_damaged_index(hermes: Runner, hermes_home: Path, kind: str) -> None:
    path = hermes_home / "state.db"
    fill(path)
    damage(path, DAMAGE[kind])
    result = hits(hermes)
    assert result.returncode == 0, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert "rebuilt from the stored messages" in result.stderr
    assert result.stdout.count("heron") == WORDS  # Every message found again.
    assert integrity(path) == "ok"
    again = hits(hermes)
    assert again.stderr == "" and again.stdout.count("heron") == WORDS


def test_damage_after_open_is_repaired_by_search(hermes_home: Path) -> None:
    path = hermes_home / "state.db"
    fill(path)
    with StateDB(path) as db:
        damage(path, DAMAGE["unreadable structure"])  # Another process, while we are open.
        found = db.search("heron", limit=1000)
        assert len(found) == WORDS
        assert db.repaired_index is not None
        sid = found[0].session_id
        db.add_message(sid, {"role": "assistant", "content": "a heron again"})
        assert len(db.search("heron", limit=1000)) == WORDS + 1
        # Deleting works too (its triggers write to the index).
        assert db.delete_session(sid)
    assert integrity(path) == "ok"


def test_reindex_command(hermes: Runner, hermes_home: Path) -> None:
    assert hermes("sessions", "reindex").stdout.startswith("nothing to index")
    path = hermes_home / "state.db"
    fill(path)
    result = hermes("sessions", "reindex")
    assert result.returncode == 0, result.stderr
    assert "the index was sound" in result.stdout and f"{WORDS} messages" in result.stdout
    # An index that lost entries silently (no error on read): only a rebuild brings them back.
    damage(path, ["DELETE FROM messages_fts_idx"])
    result = hermes("sessions", "reindex")
    assert result.returncode == 0, result.stderr
    assert hits(hermes).stdout.count("heron") == WORDS
    damage(path, DAMAGE["shadow table gone"])
    result = hermes("sessions", "reindex")
    assert result.returncode == 0, result.stderr
    assert "found: the search index is damaged" in result.stdout
    assert hits(hermes).stdout.count("heron") == WORDS
    assert integrity(path) == "ok"


def test_processes_repairing_one_index_at_once(hermes_home: Path, tmp_path: Path) -> None:
    path = hermes_home / "state.db"
    fill(path)
    damage(path, DAMAGE["unreadable structure"])
    script = (
        "from hermes_agent.state.db import StateDB\n"
        "with StateDB() as db:\n"
        "    print(len(db.search('heron', limit=1000)))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=clean_env(hermes_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == str(WORDS)
    assert integrity(path) == "ok"


# --- migrations with several processes --------------------------------------------


OPENER = """
import os, sys, time
from hermes_agent.state.db import StateDB
go, name = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
with StateDB() as db:
    sid = db.create_session(source="cli", model="m", cwd="/")
    for i in range(10):
        db.add_message(sid, {"role": "user", "content": f"{name} heron {i}"})
print(sid)
"""


def old_store(path: Path, applied: int) -> None:
    """A store as an older hermes left it: the first ``applied`` migrations, rollback journal."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for fn in MIGRATIONS[:applied]:
        fn(conn)
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    now = time.time()
    conn.execute(
        "INSERT INTO sessions (id, source, model, cwd, created_at, updated_at) "
        "VALUES ('old-session', 'cli', 'm', '/', ?, ?)",
        (now, now),
    )
    conn.execute(
        "INSERT INTO messages (session_id, seq, role, content, created_at) "
        "VALUES ('old-session', 1, 'user', 'an old heron', ?)",
        (now,),
    )
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("applied", [0, 1, 3, 5])
def test_processes_opening_an_old_store_at_once(
    hermes_home: Path, tmp_path: Path, applied: int
) -> None:
    hermes_home.mkdir()
    path = hermes_home / "state.db"
    if applied:
        old_store(path, applied)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(go), f"p{n}"],
            env=clean_env(hermes_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    time.sleep(0.5)  # Every child at the starting line.
    go.touch()
    created = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        created.append(out.strip())
    conn = sqlite3.connect(path)
    names = [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [fn.__name__ for fn in MIGRATIONS]  # Each applied once, in order.
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with StateDB(path) as db:
        for sid in created:
            assert len(db.messages(sid)) == 10
        expected = 80 + (1 if applied else 0)
        assert len(db.search("heron", limit=1000)) == expected


# --- prune beside a writer ---------------------------------------------------------


def test_prune_lets_a_writer_in_between_batches(hermes_home: Path) -> None:
    path = hermes_home / "state.db"
    with StateDB(path) as db:
        for _ in range(200):
            sid = db.create_session(source="cli", model="m", cwd="/")
            for i in range(20):
                db.add_message(sid, {"role": "user", "content": f"old words {i} " * 20})
        db._conn.execute("UPDATE sessions SET updated_at = 0")
        live = db.create_session(source="gateway:api_server", model="m", cwd="/")
    errors: list[BaseException] = []
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        with StateDB(path) as other:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    other.add_message(live, {"role": "user", "content": "still arriving"})
                except BaseException as exc:
                    errors.append(exc)
                    return
                waits.append(time.monotonic() - began)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        with StateDB(path) as db:
            assert db.prune(3600) == 200
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert waits and max(waits) < 5  # Never into the busy timeout.
    with StateDB(path) as db:
        assert [s.id for s in db.list_sessions()] == [live]
        assert len(db.messages(live)) == len(waits)
    assert integrity(path) == "ok"
    if os.path.getsize(path) > 0:
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # Incremental.
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] < 300
        conn.close()
