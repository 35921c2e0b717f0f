"""`hermes sessions ...` run as a user would, against a store filled through StateDB."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from conftest import HERMES, Runner, clean_env
from helpers import assert_clean_failure
from hermes_agent.state.db import StateDB


@dataclass
class Data:
    chat: str  # a cli session with a tool call and a long tool result
    cron: str  # a cron session with compacted history


LONG_RESULT = "\n".join(f"line {i}" for i in range(1, 51))


@pytest.fixture
def data(hermes_home: Path) -> Data:
    with StateDB() as db:
        cron = db.create_session(source="cron", model="cheap/model", cwd="/srv")
        db.add_message(cron, {"role": "user", "content": "Nightly backup report, please"})
        db.add_message(cron, {"role": "assistant", "content": "The backup of postgres finished."})
        db.replace_history(cron, [{"role": "user", "content": "Summary: backup finished."}])
        db.add_usage(cron, input_tokens=1500, output_tokens=300, cost_usd=0.25)
        time.sleep(0.01)
        chat = db.create_session(source="cli", model="test/model", cwd="/work")
        db.add_message(chat, {"role": "system", "content": "You are hermes."})
        db.add_message(chat, {"role": "user", "content": "List the nginx config directory"})
        db.add_message(
            chat,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "terminal", "arguments": '{"command": "ls /etc"}'},
                    }
                ],
            },
        )
        db.add_message(chat, {"role": "tool", "tool_call_id": "call_1", "content": LONG_RESULT})
        db.add_message(chat, {"role": "assistant", "content": "It has ```fences``` and 50 lines."})
        db.add_usage(chat, input_tokens=200, output_tokens=40)
    return Data(chat=chat, cron=cron)


def age(hermes_home: Path, session_id: str, days: float) -> None:
    conn = sqlite3.connect(hermes_home / "state.db")
    with conn:
        conn.execute(
            "UPDATE sessions SET updated_at = ? WHERE id = ?",
            (time.time() - days * 86400, session_id),
        )
    conn.close()


def cells(header: str, line: str) -> dict[str, str]:
    """A table row split at the header's column starts."""
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], len(line)]
    return {n: line[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)}


def session_ids(hermes_home: Path) -> list[str]:
    with StateDB() as db:
        return sorted(s.id for s in db.list_sessions(limit=100))


# --- list -----------------------------------------------------------------------


def test_list_on_a_fresh_home_creates_nothing(hermes: Runner, hermes_home: Path) -> None:
    for argv in (["sessions"], ["sessions", "list"], ["sessions", "search", "x"]):
        result = hermes(*argv)
        assert result.returncode == 0, result.stderr
        assert "no sessions yet" in result.stdout or "no matches" in result.stdout
    assert not hermes_home.exists()


def test_list_is_an_aligned_table_newest_first(hermes: Runner, data: Data) -> None:
    result = hermes("sessions")
    assert result.returncode == 0, result.stderr
    assert result.stdout == hermes("sessions", "list").stdout
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "UPDATED", "SOURCE", "MODEL", "MSGS", "TOKENS", "TITLE"]
    assert first.startswith(data.chat)
    assert second.startswith(data.cron)
    assert cells(header, first) == {
        "ID": data.chat,
        "UPDATED": cells(header, first)["UPDATED"],
        "SOURCE": "cli",
        "MODEL": "test/model",
        "MSGS": "5",
        "TOKENS": "240",
        "TITLE": "List the nginx config directory",
    }
    assert re.fullmatch(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d", cells(header, first)["UPDATED"])
    cron = cells(header, second)
    assert (cron["SOURCE"], cron["MSGS"], cron["TOKENS"]) == ("cron", "1", "1.8k")
    assert cron["TITLE"] == "Nightly backup report, please"

    limited = hermes("sessions", "list", "--limit", "1").stdout.splitlines()
    assert len(limited) == 2 and limited[1].startswith(data.chat)
    only_cron = hermes("sessions", "list", "--source", "cron").stdout.splitlines()
    assert len(only_cron) == 2 and only_cron[1].startswith(data.cron)
    result = hermes("sessions", "list", "--source", "acp")
    assert result.returncode == 0 and result.stdout == "no sessions from acp\n"
    assert_clean_failure(hermes("sessions", "list", "--limit", "0"), 2)


# --- show -----------------------------------------------------------------------


def test_show_prints_a_readable_transcript(hermes: Runner, data: Data) -> None:
    result = hermes("sessions", "show", data.chat[:-2])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"{data.chat}  List the nginx config directory\n")
    assert "source cli · model test/model · cwd /work" in out
    headers = [line.split(" · ")[0] for line in out.splitlines() if line.startswith("── ")]
    assert headers == ["── system", "── user", "── assistant", "── tool terminal", "── assistant"]
    assert '  → terminal({"command": "ls /etc"})' in out
    assert "    line 20\n" in out
    assert "line 21" not in out
    assert "    … 30 more lines\n" in out


def test_show_marks_compacted_messages(hermes: Runner, data: Data) -> None:
    out = hermes("sessions", "show", data.cron).stdout
    assert out.count("(compacted) ──") == 2
    assert "Summary: backup finished." in out


# --- search ---------------------------------------------------------------------


def test_search_highlights_matches(hermes: Runner, data: Data) -> None:
    result = hermes("sessions", "search", "nginx")
    assert result.returncode == 0, result.stderr
    header, hit = result.stdout.splitlines()
    assert header.split() == ["ID", "DATE", "ROLE", "MATCH"]
    assert hit.startswith(data.chat)
    assert time.strftime("%Y-%m-%d") in hit
    assert "  user  " in hit
    assert hit.endswith("List the [nginx] config directory")

    lines = hermes("sessions", "search", "postgres").stdout.splitlines()
    assert lines[1].startswith(data.cron) and "assistant (compacted)" in lines[1]
    # Tool-call arguments are searchable; one shell-quoted argument is a phrase.
    assert '"[ls] /[etc]"' in hermes("sessions", "search", "ls", "etc").stdout
    assert '"[ls /etc]"' in hermes("sessions", "search", "ls etc").stdout
    assert "[config directory]" in hermes("sessions", "search", "config directory").stdout
    assert hermes("sessions", "search", "directory", "config").stdout.count(data.chat) == 1
    assert hermes("sessions", "search", "directory config").stdout.startswith("no matches")
    assert hermes("sessions", "search", "nope").stdout == "no matches for nope\n"
    assert "no matches" in hermes("sessions", "search", "backup", "--source", "cli").stdout


@pytest.mark.parametrize("query", ['"unbalanced', "AND OR", "NEAR(", "col:x", "ünï"])
def test_search_with_hostile_queries_is_clean(hermes: Runner, data: Data, query: str) -> None:
    result = hermes("sessions", "search", query)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no matches")


def test_search_with_nothing_to_search_for(hermes: Runner, data: Data) -> None:
    result = hermes("sessions", "search", "*")
    assert_clean_failure(result, 2)
    assert "nothing to search for" in result.stderr


# --- export ---------------------------------------------------------------------


def test_export_markdown(hermes: Runner, data: Data) -> None:
    result = hermes("sessions", "export", data.chat)
    assert result.returncode == 0, result.stderr
    md = result.stdout
    assert md.startswith("# List the nginx config directory\n\n")
    assert f"- **Session:** `{data.chat}`" in md
    assert "- **Source:** cli" in md and "- **Model:** test/model" in md
    assert "- **Tokens:** 200 in, 40 out" in md
    assert md.count("\n## ") == 5
    assert "\n## Tool result: terminal (`call_1`)\n" in md
    assert (
        '**Tool call** `terminal` (`call_1`):\n\n```json\n{\n  "command": "ls /etc"\n}\n```' in md
    )
    assert "line 50" in md  # exports are complete
    assert "It has ```fences``` and 50 lines." in md
    cron = hermes("sessions", "export", data.cron).stdout
    assert cron.count("*(compacted)*") == 2


def test_export_jsonl_includes_compacted_messages(hermes: Runner, data: Data) -> None:
    result = hermes("sessions", "export", data.cron, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    meta = lines[0]
    assert meta["type"] == "session"
    assert (meta["id"], meta["source"], meta["model"], meta["cwd"]) == (
        data.cron,
        "cron",
        "cheap/model",
        "/srv",
    )
    assert (meta["input_tokens"], meta["output_tokens"], meta["cost_usd"]) == (1500, 300, 0.25)
    messages = lines[1:]
    assert [m["type"] for m in messages] == ["message"] * 3
    assert [m["compacted"] for m in messages] == [True, True, False]
    assert [m["seq"] for m in messages] == [1, 2, 3]
    assert [m["message"] for m in messages] == [
        {"role": "user", "content": "Nightly backup report, please"},
        {"role": "assistant", "content": "The backup of postgres finished."},
        {"role": "user", "content": "Summary: backup finished."},
    ]
    chat = hermes("sessions", "export", data.chat, "--format", "jsonl").stdout.splitlines()
    with StateDB() as db:
        assert [json.loads(line)["message"] for line in chat[1:]] == db.messages(data.chat)


def test_export_to_a_file_is_private(hermes: Runner, data: Data, tmp_path: Path) -> None:
    target = tmp_path / "out" / "chat.jsonl"
    result = hermes("sessions", "export", data.chat[:-1], "--format", "jsonl", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text().splitlines()[0])["id"] == data.chat
    md = tmp_path / "chat.md"
    assert hermes("sessions", "export", data.chat, "-o", str(md)).returncode == 0
    assert md.read_text().startswith("# List the nginx")
    assert_clean_failure(hermes("sessions", "export", data.chat, "-o", str(tmp_path)), 2)
    assert hermes("sessions", "export", data.chat, "--format", "pdf").returncode == 2


# --- delete / prune -------------------------------------------------------------


def test_delete_with_yes(hermes: Runner, data: Data, hermes_home: Path) -> None:
    result = hermes("sessions", "delete", data.cron[:-1], "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"deleted session {data.cron}\n"
    assert session_ids(hermes_home) == [data.chat]
    assert "no matches" in hermes("sessions", "search", "postgres").stdout


def test_delete_without_a_terminal_refuses(hermes: Runner, data: Data, hermes_home: Path) -> None:
    result = hermes("sessions", "delete", data.cron, input="y\n")
    assert_clean_failure(result, 2)
    assert "--yes" in result.stderr
    assert session_ids(hermes_home) == sorted([data.chat, data.cron])


def spawn(home: Path, *args: str) -> pexpect.spawn:
    return pexpect.spawn(str(HERMES), list(args), env=clean_env(home), encoding="utf-8", timeout=20)


def test_delete_asks_on_a_terminal(data: Data, hermes_home: Path) -> None:
    child = spawn(hermes_home, "sessions", "delete", data.cron)
    child.expect(r"Delete session .*\(Nightly backup report, please, 1 messages\)\? \[y/N\] ")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert session_ids(hermes_home) == sorted([data.chat, data.cron])

    child = spawn(hermes_home, "sessions", "delete", data.cron)
    child.expect(r"\[y/N\] ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert session_ids(hermes_home) == [data.chat]


def test_prune(hermes: Runner, data: Data, hermes_home: Path) -> None:
    age(hermes_home, data.cron, 40)
    result = hermes("sessions", "prune", "--older-than", "30d")
    assert_clean_failure(result, 2)
    assert "--yes" in result.stderr
    assert hermes("sessions", "prune", "--older-than", "8w", "--yes").stdout == (
        "no sessions older than 8w\n"
    )
    assert hermes(
        "sessions", "prune", "--older-than", "30d", "--source", "cli", "--yes"
    ).stdout == ("no sessions from cli older than 30d\n")
    result = hermes("sessions", "prune", "--older-than", "30d", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "deleted 1 session older than 30d\n"
    assert session_ids(hermes_home) == [data.chat]
    age(hermes_home, data.chat, 0.5)
    assert hermes("sessions", "prune", "--older-than", "11h", "-y").returncode == 0
    assert session_ids(hermes_home) == []


@pytest.mark.parametrize("duration", ["30", "3x", "d", "1.5d", "-1d", "0d", "30 days", ""])
def test_prune_with_a_bad_duration(hermes: Runner, data: Data, duration: str) -> None:
    result = hermes("sessions", "prune", f"--older-than={duration}", "--yes")
    assert_clean_failure(result, 2)
    assert "90m, 12h, 30d, 2w" in result.stderr


def test_prune_needs_a_duration(hermes: Runner) -> None:
    result = hermes("sessions", "prune")
    assert result.returncode == 2
    assert "--older-than" in result.stderr


# --- naming sessions ------------------------------------------------------------


def test_unknown_and_ambiguous_prefixes(hermes: Runner, data: Data) -> None:
    for action in ("show", "export", "delete"):
        result = hermes("sessions", action, "zzz", *(["--yes"] if action == "delete" else []))
        assert_clean_failure(result, 2)
        assert "no session matches 'zzz'" in result.stderr
        result = hermes("sessions", action, "2")
        assert_clean_failure(result, 2)
        assert "'2' matches 2 sessions" in result.stderr
        assert data.chat in result.stderr and data.cron in result.stderr


def test_unknown_session_on_a_fresh_home(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("sessions", "show", "2026")
    assert_clean_failure(result, 2)
    assert "no sessions yet" in result.stderr
    assert not hermes_home.exists()


def test_a_store_from_a_newer_hermes_is_refused(hermes: Runner, data: Data) -> None:
    conn = sqlite3.connect(Path(os.environ["HERMES_HOME"]) / "state.db")
    with conn:
        conn.execute("INSERT INTO _migrations VALUES ('m999_future', 0)")
    conn.close()
    result = hermes("sessions", "list")
    assert_clean_failure(result, 1)
    assert "newer version of hermes" in result.stderr


# --- start-up cost --------------------------------------------------------------


def test_other_commands_do_not_load_the_store(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from hermes_agent.cli.main import run\n"
        "try:\n"
        "    run(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    for argv in (["version"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-c", code, *argv],
            env=clean_env(tmp_path / "h"),
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = set(result.stderr.split())
        assert "sqlite3" not in loaded, argv
        assert not any(name.startswith("hermes_agent.state") for name in loaded), argv
        assert "hermes_agent.cli.sessions" not in loaded, argv
