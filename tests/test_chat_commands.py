"""The chat REPL's everyday commands in a real pty, and the command table behind them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from conftest import HERMES, clean_env
from hermes_agent.agent import commands
from hermes_agent.state.db import StateDB
from peers.llm_server import Reply, ScriptedLLM
from test_chat_cli import PROMPT, spawn_chat


def test_table_parses_and_filters_by_front_end() -> None:
    assert commands.parse("/new@HermesBot") == ("new", "")
    assert commands.parse("/queue do this\nand that") == ("queue", "do this\nand that")
    assert commands.parse("/etc/hosts is odd") is None
    assert commands.parse("what does /new do?") is None
    assert commands.lookup("reset", commands.GATEWAY).name == "new"  # type: ignore[union-attr]
    assert commands.lookup("stop", commands.CHAT) is None  # Ctrl-C does that in chat.
    assert commands.lookup("STOP", commands.GATEWAY) is not None
    for front in commands.FRONT_ENDS:
        for command in commands.offered(front):
            assert command.where <= set(commands.FRONT_ENDS)
            assert "\n" not in command.help
    names = [c.name for c in commands.COMMANDS]
    assert len(names) == len(set(names))


def test_every_offered_command_has_a_handler() -> None:
    from hermes_agent.cli.chat import Repl
    from hermes_agent.gateway import chat_commands

    for command in commands.offered(commands.CHAT):
        assert hasattr(Repl, f"cmd_{command.name.replace('-', '_')}"), command.name
    offered = {c.name for c in commands.offered(commands.GATEWAY)}
    assert offered <= chat_commands.HANDLED, offered - chat_commands.HANDLED


@pytest.mark.peer("scripted")
def test_retry_undo_personality_queue_background(hermes_home: Path, tmp_path: Path) -> None:
    steps = [
        Reply("Noted heron."),
        Reply("Noted heron, again."),
        Reply("I know no word."),
        Reply("Tersely."),
        Reply("Queued done."),
        Reply("Background answer."),
    ]
    with ScriptedLLM(steps) as llm:
        child = spawn_chat(hermes_home, tmp_path, llm.openai_base_url)
        child.expect_exact(PROMPT)
        child.sendline("/help")
        for name in ("/retry", "/undo", "/queue PROMPT", "/background PROMPT", "/personality"):
            child.expect_exact(name)
        child.expect_exact(PROMPT)
        child.sendline("remember heron")
        child.expect_exact("Noted heron.")
        child.expect_exact(PROMPT)
        child.sendline("/retry")
        child.expect_exact("Noted heron, again.")
        child.expect_exact(PROMPT)
        child.sendline("/undo")
        child.expect_exact("dropped your last message")
        child.expect_exact(PROMPT)
        child.sendline("/undo")
        child.expect_exact("nothing to undo")
        child.expect_exact(PROMPT)
        child.sendline("which word?")
        child.expect_exact("I know no word.")
        child.expect_exact(PROMPT)
        child.sendline("/personality")
        child.expect_exact("teacher")
        child.expect_exact(PROMPT)
        child.sendline("/personality pirate")
        child.expect_exact("no personality 'pirate'")
        child.expect_exact(PROMPT)
        child.sendline("/personality concise")
        child.expect_exact("personality: concise")
        child.expect_exact(PROMPT)
        child.sendline("go on")
        child.expect_exact("Tersely.")
        child.expect_exact(PROMPT)
        child.sendline("/queue sum it up")
        child.expect_exact("Queued done.")
        child.expect_exact(PROMPT)
        child.sendline("/background count files")
        child.expect_exact("running in the background as session")
        child.expect_exact("background session")
        child.expect_exact("Background answer.")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    # /retry sent the message once more, in place of the first exchange.
    assert [m["content"] for m in llm.requests[1].messages[1:]] == ["remember heron"]
    # After /undo the model no longer saw heron at all.
    assert "heron" not in str(llm.requests[2].messages)
    assert "as few words as the task allows" in str(llm.requests[3].messages[0])
    assert llm.requests[4].messages[-1]["content"] == "sum it up"
    assert [m["role"] for m in llm.requests[5].messages] == ["system", "user"]
    deadline = time.monotonic() + 5
    with StateDB() as db:
        main = next(s for s in db.list_sessions() if s.title == "remember heron")
        records = db.message_records(main.id)
        undone = [r.message["content"] for r in records if r.undone]
        assert undone == ["remember heron", "Noted heron.", "remember heron", "Noted heron, again."]
        while time.monotonic() < deadline:
            background = [s for s in db.list_sessions() if s.title == "background: count files"]
            if background:
                break
            time.sleep(0.05)
        assert background and background[0].message_count == 2
    shown = subprocess.run(
        [str(HERMES), "sessions", "show", main.id],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.count("(undone)") == 4, shown.stdout
