"""Slash commands in gateway chats: a real `hermes gateway run`, its HTTP API, a scripted model.

The HTTP API platform names a conversation with the ``user`` field, so two requests
with the same user are one chat: /stop sent while that chat's answer hangs at the
model stops it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hermes_agent.state.db import StateDB
from peers.llm_server import Hang, Reply, ScriptedLLM
from test_gateway import ask, llm, start, workdir  # noqa: F401  (fixtures)

pytestmark = pytest.mark.peer("scripted")


def test_stop_ends_the_running_answer_in_that_chat(start: Any, llm: ScriptedLLM) -> None:  # noqa: F811
    llm.add(Hang(20, then=Reply("too late")), Reply("Next answer."))
    gateway = start()
    results: dict[str, str] = {}

    def slow() -> None:
        results["slow"] = ask(gateway, "write a long essay", user="alice")

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 60
    while not llm.requests:
        assert time.monotonic() < deadline, "the question never reached the model"
        time.sleep(0.02)
    began = time.monotonic()
    assert ask(gateway, "/stop", user="bob") == "Nothing is being answered in this chat right now."
    assert ask(gateway, "/stop", user="alice") == "Stopping the answer."
    thread.join(timeout=30)
    assert results["slow"] == "Stopped."
    assert time.monotonic() - began < 15  # Stopped, not answered after the model's 20 s.
    # The chat goes on; the stopped message stays in its history.
    assert ask(gateway, "hello again", user="alice") == "Next answer."
    assert "write a long essay" in str(llm.requests[1].messages)
    assert "/stop" not in str(llm.requests[1].messages)


def test_undo_retry_queue_personality_help(start: Any, llm: ScriptedLLM) -> None:  # noqa: F811
    llm.add(
        Reply("Noted heron."),
        Reply("No word that I know of."),
        Reply("Again: no word."),
        Reply("Queued answer."),
        Reply("Tersely."),
    )
    gateway = start()
    assert ask(gateway, "remember heron", user="a") == "Noted heron."
    assert ask(gateway, "/undo", user="a").startswith("Dropped your last message")
    assert ask(gateway, "what word?", user="a") == "No word that I know of."
    assert "heron" not in str(llm.requests[1].messages)  # Out of the model's context...
    # ... and /retry sends the last message again, once, in place of the old exchange.
    assert ask(gateway, "/retry", user="a") == "Again: no word."
    sent = [m for m in llm.requests[2].messages if m["role"] == "user"]
    assert [m["content"] for m in sent] == ["what word?"]
    assert ask(gateway, "/queue summarise", user="a") == "Queued answer."
    assert llm.requests[3].messages[-1]["content"] == "summarise"
    listing = ask(gateway, "/personality", user="a")
    assert "concise" in listing and "teacher" in listing
    assert ask(gateway, "/personality concise", user="a").startswith("personality: concise")
    assert "no personality 'pirate'" in ask(gateway, "/personality pirate", user="a")
    assert ask(gateway, "go on", user="a") == "Tersely."
    system = str(llm.requests[4].messages[0])
    assert "as few words as the task allows" in system
    help_text = ask(gateway, "/help", user="a")
    for name in ("/stop", "/retry", "/undo", "/queue", "/background", "/personality"):
        assert name in help_text
    assert "/model" not in help_text  # Chat-only commands are not offered here.
    assert len(llm.requests) == 5  # None of the commands reached the model by itself.
    with StateDB(gateway.home / "state.db") as db:
        (session,) = [s for s in db.list_sessions() if s.title == "remember heron"]
        records = db.message_records(session.id)
        undone = [r.message.get("content") for r in records if r.undone]
        # Kept, marked: the /undo exchange and the one /retry replaced.
        assert undone == ["remember heron", "Noted heron.", "what word?", "No word that I know of."]


def test_background_runs_in_a_session_of_its_own(start: Any, llm: ScriptedLLM) -> None:  # noqa: F811
    llm.add(Reply("Background result."), Reply("Foreground."))
    gateway = start()
    reply = ask(gateway, "/background count the files", user="a")
    assert reply.startswith("Working on it in the background (session ")
    deadline = time.monotonic() + 10
    with StateDB(gateway.home / "state.db") as db:
        while time.monotonic() < deadline:
            found = [s for s in db.list_sessions() if s.title == "background: count the files"]
            if found and found[0].message_count == 2:
                break
            time.sleep(0.05)
        assert db.messages(found[0].id)[-1]["content"] == "Background result."
    assert ask(gateway, "hi", user="a") == "Foreground."
    assert "count the files" not in str(llm.requests[1].messages)


def test_a_chat_has_few_background_runs_at_once(start: Any, llm: ScriptedLLM) -> None:  # noqa: F811
    from hermes_agent.gateway.chat_commands import MAX_BACKGROUND_PER_CHAT

    llm.add(*[Hang(20) for _ in range(MAX_BACKGROUND_PER_CHAT)])
    gateway = start()
    for n in range(MAX_BACKGROUND_PER_CHAT):
        assert ask(gateway, f"/background task {n}", user="a").startswith("Working on it")
    refused = ask(gateway, "/background one more", user="a")
    assert refused.startswith(f"{MAX_BACKGROUND_PER_CHAT} background tasks are already running")
    assert ask(gateway, "/background for b", user="b").startswith("Working on it")  # Per chat.
