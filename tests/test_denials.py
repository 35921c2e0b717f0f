"""A denial holds for every route to the same effect for the rest of the turn.

The real file and terminal tools through ``dispatch`` with one ToolContext (one
turn): after the user says no to a write or a command, the same change is
refused by the other tools, and a route nothing recognises (a Python one-liner)
has its effect undone after the call; a new turn is free again.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hermes_agent.config.loader import load_config
from hermes_agent.providers.base import ToolCall
from hermes_agent.safety import denials
from hermes_agent.state.db import StateDB
from hermes_agent.tools import files, terminal
from hermes_agent.tools.registry import ToolContext, ToolResult, dispatch

TOOLS = {t.name: t for t in [*files.TOOLS, *terminal.TOOLS]}


class User:
    """Answers approval questions from a script; records them."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    async def __call__(self, question: str, choices: Sequence[str]) -> str | None:
        self.questions.append(question)
        return self.answers.pop(0) if self.answers else None


@pytest.fixture
def ctx(hermes_home: Path, tmp_path: Path) -> Iterator[ToolContext]:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("approvals:\n  mode: manual\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("keep me\n")
    context = ToolContext("test-session", str(workspace), load_config(), StateDB())
    context.state["files.review_writes"] = True
    yield context
    context.db.close()


def call(ctx: ToolContext, name: str, **arguments: Any) -> ToolResult:
    return asyncio.run(dispatch(ToolCall("c", name, json.dumps(arguments)), TOOLS, ctx))


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


@needs_bash
def test_a_denied_write_holds_for_the_terminal_and_for_routes_nobody_foresaw(
    ctx: ToolContext,
) -> None:
    notes = Path(ctx.cwd) / "notes.txt"
    user = User("no")
    ctx.ask = user
    denied = call(ctx, "write_file", path="notes.txt", content="overwritten\n")
    assert denied.is_error and "denied by the user" in denied.content
    assert "notes.txt" in user.questions[0]
    # The same file by the terminal: refused before it runs, without asking again.
    echo = call(ctx, "terminal", command="echo overwritten > notes.txt")
    assert echo.is_error and "denial" in echo.content, echo.content
    assert len(user.questions) == 1
    # The same file by the file tools again (another tool, a spelling through ./).
    patched = call(ctx, "patch", path="./notes.txt", old="keep", new="lose")
    assert patched.is_error and "denied" in patched.content
    # A route the classifier cannot see through: the effect is undone after the call.
    sneaky = "python3 -c \"open('no' + 'tes.txt', 'w').write('gone')\""
    ctx.ask = User("yes")  # Even when the user allows the command itself.
    result = call(ctx, "terminal", command=sneaky)
    assert "was put back" in result.content, result.content
    assert notes.read_text() == "keep me\n"
    # Reading it stays possible.
    assert "keep me" in call(ctx, "terminal", command="cat notes.txt").content
    # A new turn: the user can be asked again.
    denials.new_turn(ctx.state)
    ctx.ask = User("yes")
    assert not call(ctx, "write_file", path="notes.txt", content="new\n").is_error
    assert notes.read_text() == "new\n"


@needs_bash
def test_a_denied_command_protects_what_it_names(ctx: ToolContext) -> None:
    notes = Path(ctx.cwd) / "notes.txt"
    ctx.ask = User("no")
    denied = call(ctx, "terminal", command="find . -name notes.txt -delete")
    assert denied.is_error and "denied by the user" in denied.content
    assert notes.exists()
    other = call(ctx, "terminal", command="rm -f notes.txt")  # Safe on its own, in the workspace.
    assert other.is_error and "denial" in other.content
    # Deleting it another way (a script written first) is undone afterwards.
    ctx.ask = User("yes", "yes")
    ctx.state["files.review_writes"] = False
    call(ctx, "write_file", path="clean.py", content="import os\nos.remove('notes.txt')\n")
    ran = call(ctx, "terminal", command="python3 clean.py")
    assert "was put back" in ran.content, ran.content
    assert notes.read_text() == "keep me\n"


def test_after_a_denial_always_and_the_allow_list_do_not_wave_commands_through(
    ctx: ToolContext,
) -> None:
    from hermes_agent.safety.gate import ALWAYS_KEY

    ctx.state[ALWAYS_KEY] = {"sudo"}  # The user said "always" earlier in the session.
    user = User("no", "no")
    ctx.ask = user
    call(ctx, "write_file", path="notes.txt", content="x\n")
    asked = call(ctx, "terminal", command="sudo -n true")
    assert asked.is_error
    assert len(user.questions) == 2 and "earlier in this turn you denied" in user.questions[1]


def test_a_symlink_put_in_place_of_a_protected_file_is_removed_not_followed(
    ctx: ToolContext, tmp_path: Path
) -> None:
    notes = Path(ctx.cwd) / "notes.txt"
    outside = tmp_path / "outside.txt"
    outside.write_text("outside\n")
    ctx.ask = User("no")
    call(ctx, "write_file", path="notes.txt", content="x\n")
    notes.unlink()
    notes.symlink_to(outside)
    assert any("put back" in line for line in denials.undo_changes(ctx.state))
    assert not notes.is_symlink() and notes.read_text() == "keep me\n"
    assert outside.read_text() == "outside\n"


def test_a_sub_agent_shares_the_turns_denials_both_ways(ctx: ToolContext) -> None:
    child = ToolContext(ctx.session_id, ctx.cwd, ctx.config, ctx.db, depth=1)
    denials.inherit(ctx.state, child.state)
    assert child.state["files.review_writes"] is True, "the editor's Ask mode holds for it too"
    denials.new_turn(child.state, depth=1)  # The sub-agent's run is part of this turn.
    child.ask = User("no")
    call(child, "write_file", path="notes.txt", content="child\n")
    refused = call(ctx, "write_file", path="notes.txt", content="parent\n")
    assert refused.is_error and "denial" in refused.content
    assert (Path(ctx.cwd) / "notes.txt").read_text() == "keep me\n"


def test_a_write_after_the_turns_last_tool_call_is_put_back_when_the_turn_ends(
    hermes_home: Path, tmp_path: Path
) -> None:
    """A process started in the turn writes the denied file after the last tool call (while
    the model writes its answer): the put-back after each call cannot see it; the end of
    the turn does."""
    import threading

    from hermes_agent.agent.loop import Agent
    from hermes_agent.providers import settings as provider_settings
    from hermes_agent.tools.registry import Tool, builtin_registry
    from peers.llm_server import Reply, ScriptedLLM
    from test_agent_loop import Recorder, run

    workspace = tmp_path / "ws"
    workspace.mkdir()
    notes = workspace / "notes.txt"
    notes.write_text("keep me\n")

    # The write lands once the model is asked for its answer (after the last tool call's
    # put-back), and the model answers once it has landed: events, not a 0.3 s sleep
    # against a 1 s answer, which a loaded machine can reorder.
    answering = threading.Event()
    written = threading.Event()

    async def late_writer(args: dict[str, Any], ctx: ToolContext) -> str:
        def write() -> None:
            if answering.wait(60):
                notes.write_text("changed behind the user's back\n")
                written.set()

        threading.Thread(target=write, daemon=True).start()
        return "started"

    def answer_after_the_write(request: Any) -> Reply:
        answering.set()
        assert written.wait(60), "the late write never came"
        return Reply("d-o-n-e", chunk_size=1, chunk_delay=0.05)

    tool = Tool(
        name="late_writer",
        toolset="test",
        description="Start something that writes later.",
        parameters={"type": "object", "properties": {}},
        handler=late_writer,
    )
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "overwritten\n"})]),
        Reply(tool_calls=[("late_writer", {})]),
        answer_after_the_write,
    ]
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("approvals:\n  mode: manual\n")
    config = load_config()
    with ScriptedLLM(steps) as llm:
        settings = provider_settings.resolve(
            config, provider="custom", model="test-model", base_url=llm.openai_base_url
        )
        db = StateDB()
        events = Recorder()
        agent = Agent(
            provider=provider_settings.build(settings),
            tools=[*builtin_registry().select(["file"]), tool],
            config=config,
            db=db,
            session_id=db.create_session(source="cli", model="test-model", cwd=str(workspace)),
            cwd=workspace,
            events=events,
        )
        agent.context.state["files.review_writes"] = True  # Asked first; nobody says yes.
        result = run(agent, "change the notes")
        db.close()
    assert result.text == "d-o-n-e"
    assert events.of("done")[0] == ("write_file", True)
    assert notes.read_text() == "keep me\n"
    assert any("put back" in n for n in events.of("notice")), events.log
