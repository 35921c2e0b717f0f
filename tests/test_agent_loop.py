"""The agent loop against a scripted loopback LLM, through the real SDKs.

Each test builds the real provider (openai or anthropic SDK) pointed at
``ScriptedLLM`` on 127.0.0.1, a real state.db, and the real tools.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hermes_agent.agent.compress import SUMMARY_SYSTEM
from hermes_agent.agent.loop import CANCELLED_RESULT, Agent, Events
from hermes_agent.config.loader import load_config
from hermes_agent.providers import settings as provider_settings
from hermes_agent.providers.base import AuthError, ProviderError, ToolCall
from hermes_agent.state.db import StateDB
from hermes_agent.tools.registry import Tool, ToolContext, ToolResult, builtin_registry
from peers.llm_server import CutStream, Error, Hang, Reply, ScriptedLLM

pytestmark = pytest.mark.peer("scripted")


class Recorder(Events):
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def text(self, delta: str) -> None:
        self.log.append(("text", delta))

    def retrying(self, error: ProviderError, delay: float, attempt: int) -> None:
        self.log.append(("retry", (str(error), delay)))

    def tool_started(self, call: ToolCall) -> None:
        self.log.append(("tool", call.name))

    def tool_finished(self, result: ToolResult, seconds: float) -> None:
        self.log.append(("done", (result.call.name, result.is_error)))

    def notice(self, message: str) -> None:
        self.log.append(("notice", message))

    def of(self, kind: str) -> list[Any]:
        return [value for k, value in self.log if k == kind]


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for ``condition`` (the bound is for a loaded CI machine, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.02)


async def _sleepy(args: dict[str, Any], ctx: ToolContext) -> str:
    await asyncio.sleep(float(args["seconds"]))
    return f"slept {args['seconds']}"


def sleep_tool(parallel: bool = True) -> Tool:
    return Tool(
        name="sleep",
        toolset="test",
        description="Sleep for a while.",
        parameters={
            "type": "object",
            "properties": {"seconds": {"type": "number"}},
            "required": ["seconds"],
        },
        handler=_sleepy,
        parallel_safe=parallel,
    )


def make_agent(
    hermes_home: Path,
    llm: ScriptedLLM,
    *,
    wire: str = "openai",
    config_yaml: str = "",
    extra_tools: list[Tool] | None = None,
    session_id: str | None = None,
) -> tuple[Agent, Recorder, StateDB]:
    hermes_home.mkdir(exist_ok=True)
    (hermes_home / "config.yaml").write_text(config_yaml)
    config = load_config()
    if wire == "anthropic":
        settings = provider_settings.resolve(
            config,
            provider="anthropic",
            model="claude-sonnet-4-6",
            base_url=llm.anthropic_base_url,
            environ={"ANTHROPIC_API_KEY": "test-key"},
        )
    else:
        settings = provider_settings.resolve(
            config, provider="custom", model="test-model", base_url=llm.openai_base_url
        )
    db = StateDB()
    sid = session_id or db.create_session(source="cli", model=settings.model, cwd=str(hermes_home))
    events = Recorder()
    tools = builtin_registry().select(["all"]) + (extra_tools or [])
    agent = Agent(
        provider=provider_settings.build(settings),
        tools=tools,
        config=config,
        db=db,
        session_id=sid,
        cwd=hermes_home,
        events=events,
    )
    return agent, events, db


def run(agent: Agent, text: str) -> Any:
    async def go() -> Any:
        try:
            return await agent.run(text)
        finally:
            await agent.provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_streamed_answer_is_stored_with_usage(hermes_home: Path, wire: str) -> None:
    with ScriptedLLM([Reply("Hello there, friend.", usage=(42, 7))]) as llm:
        agent, events, db = make_agent(hermes_home, llm, wire=wire)
        result = run(agent, "hi")
    assert result.status == "done"
    assert result.text == "Hello there, friend."
    assert "".join(events.of("text")) == "Hello there, friend."
    assert len(events.of("text")) > 1, "the answer arrived in pieces"
    assert llm.requests[0].stream
    assert db.messages(agent.session_id) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello there, friend."},
    ]
    session = db.get_session(agent.session_id)
    assert session is not None
    assert (session.input_tokens, session.output_tokens) == (42, 7)
    if wire == "anthropic":
        system = llm.requests[0].body["system"]
        assert system[0]["cache_control"] == {"type": "ephemeral"}, "stable prompt is cached"
        assert "You are Hermes" in system[0]["text"]


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_tool_round_trip(hermes_home: Path, wire: str) -> None:
    steps = [
        Reply(tool_calls=[("todo", {"items": [{"task": "pack"}, {"task": "go"}]})]),
        Reply("Your list has two items."),
    ]
    with ScriptedLLM(steps) as llm:
        agent, events, db = make_agent(hermes_home, llm, wire=wire)
        result = run(agent, "make a list")
    assert result.text == "Your list has two items."
    assert result.model_calls == 2
    assert events.of("done") == [("todo", False)]
    tool_messages = [m for m in db.messages(agent.session_id) if m["role"] == "tool"]
    assert tool_messages[0]["content"] == "[ ] 1. pack\n[ ] 2. go"
    second = llm.requests[1].body
    if wire == "openai":
        assert second["messages"][-1] == {
            "role": "tool",
            "tool_call_id": "call_1_0",
            "content": "[ ] 1. pack\n[ ] 2. go",
        }
        assert {t["function"]["name"] for t in second["tools"]} >= {"todo", "session_search"}
    else:
        last = second["messages"][-1]
        assert last["role"] == "user"
        assert last["content"][0]["type"] == "tool_result"
        assert last["content"][0]["tool_use_id"] == "toolu_1_0"


def test_parallel_calls_run_together(hermes_home: Path) -> None:
    # Each call waits to meet the other: run one after another, the first would wait
    # alone (30 s) and say so. Elapsed time proves nothing on a loaded machine.
    started: list[str] = []
    both = asyncio.Event()

    async def meet(args: dict[str, Any], ctx: ToolContext) -> str:
        started.append(str(args["name"]))
        if len(started) == 2:
            both.set()
        try:
            await asyncio.wait_for(both.wait(), 30)
        except TimeoutError:
            return "alone"
        return "met"

    tool = Tool(
        name="meet",
        toolset="test",
        description="Wait for the other call.",
        parameters={"type": "object", "properties": {"name": {"type": "string"}}},
        handler=meet,
        parallel_safe=True,
    )
    steps = [
        Reply(tool_calls=[("meet", {"name": "a"}), ("meet", {"name": "b"})]),
        Reply("Both done."),
    ]
    with ScriptedLLM(steps) as llm:
        agent, events, _ = make_agent(hermes_home, llm, extra_tools=[tool])
        result = run(agent, "meet twice")
    assert result.text == "Both done."
    assert events.of("done") == [("meet", False), ("meet", False)]
    results = [m for m in llm.requests[1].messages if m["role"] == "tool"]
    assert [m["content"] for m in results] == ["met", "met"], "not run in parallel"
    assert [m["tool_call_id"] for m in results] == ["call_1_0", "call_1_1"], "order kept"


def test_calls_of_unsafe_tools_run_one_after_another(hermes_home: Path) -> None:
    steps = [
        Reply(tool_calls=[("sleep", {"seconds": 0.4}), ("sleep", {"seconds": 0.4})]),
        Reply("Done."),
    ]
    with ScriptedLLM(steps) as llm:
        agent, _, _ = make_agent(hermes_home, llm, extra_tools=[sleep_tool(parallel=False)])
        started = time.monotonic()
        run(agent, "sleep twice")
    assert time.monotonic() - started >= 0.8


def test_bad_tool_calls_come_back_to_the_model_as_errors(hermes_home: Path) -> None:
    def malformed(request: Any) -> Reply:
        return Reply(tool_calls=[("todo", {"items": "not-a-list"}), ("nope", {})])

    steps: list[Any] = [malformed, Reply("I will fix my call.")]
    with ScriptedLLM(steps) as llm:
        agent, events, _ = make_agent(hermes_home, llm)
        result = run(agent, "go")
    assert result.status == "done"
    assert events.of("done") == [("todo", True), ("nope", True)]
    results = {
        m["tool_call_id"]: m["content"] for m in llm.requests[1].messages if m["role"] == "tool"
    }
    assert results["call_1_0"].startswith("error: invalid arguments: items: 'not-a-list' is not")
    assert results["call_1_1"].startswith("error: no tool named 'nope'; available: todo")


def test_malformed_json_arguments(hermes_home: Path) -> None:
    broken = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_bad",
                            "type": "function",
                            "function": {"name": "todo", "arguments": '{"items": [oops'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    with ScriptedLLM([Error(200, body=broken), Reply("Sorry.")]) as llm:
        agent, _, db = make_agent(hermes_home, llm, config_yaml="streaming:\n  enabled: false\n")
        result = run(agent, "go")
    assert result.text == "Sorry."
    tool = next(m for m in db.messages(agent.session_id) if m["role"] == "tool")
    assert tool["content"].startswith("error: arguments are not valid JSON")


def test_retry_after_is_honoured(hermes_home: Path) -> None:
    steps = [Error(429, headers={"Retry-After": "1"}), Error(503), Reply("Finally.")]
    with ScriptedLLM(steps) as llm:
        agent, events, _ = make_agent(hermes_home, llm)
        result = run(agent, "hi")
    assert result.text == "Finally."
    first, second, _third = llm.requests
    assert second.time - first.time >= 1.0
    retries = events.of("retry")
    assert len(retries) == 2
    assert retries[0][1] == 1.0
    assert "HTTP 429" in retries[0][0]


def test_stream_cut_half_way_is_retried_and_partial_text_voided(hermes_home: Path) -> None:
    long = "This answer will be cut off somewhere in the middle of it."
    steps = [CutStream(after_chunks=3, reply=Reply(long)), Reply("Complete answer.")]
    with ScriptedLLM(steps) as llm:
        agent, events, db = make_agent(hermes_home, llm)
        result = run(agent, "hi")
    assert result.text == "Complete answer."
    kinds = [k for k, _ in events.log]
    assert "retry" in kinds
    assert "broke mid-answer" in events.of("retry")[0][0]
    assert db.messages(agent.session_id)[-1] == {"role": "assistant", "content": "Complete answer."}


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_rejected_key_is_one_clear_error_without_retry(hermes_home: Path, wire: str) -> None:
    with ScriptedLLM([Error(401), Reply("never")]) as llm:
        agent, _, _ = make_agent(hermes_home, llm, wire=wire)
        with pytest.raises(AuthError) as info:
            run(agent, "hi")
    assert len(llm.requests) == 1
    key = "ANTHROPIC_API_KEY" if wire == "anthropic" else "CUSTOM_API_KEY"
    assert f"rejected the API key in {key} (HTTP 401" in str(info.value)
    assert "hermes setup" in str(info.value)


def test_unknown_model(hermes_home: Path) -> None:
    with ScriptedLLM([Error(404)]) as llm:
        agent, _, _ = make_agent(hermes_home, llm)
        with pytest.raises(ProviderError, match=r"model 'test-model' not found at http://127"):
            run(agent, "hi")


def test_max_turns_stops_with_a_clear_message(hermes_home: Path) -> None:
    steps = [Reply(tool_calls=[("todo", {})]) for _ in range(3)]
    with ScriptedLLM(steps) as llm:
        agent, events, db = make_agent(hermes_home, llm, config_yaml="agent:\n  max_turns: 3\n")
        result = run(agent, "loop forever")
    assert result.status == "max_turns"
    assert result.model_calls == 3
    assert "limit of 3 model calls (agent.max_turns)" in result.text
    assert events.of("notice") == [result.text]
    history = db.messages(agent.session_id)
    assert history[-1] == {"role": "assistant", "content": result.text}
    assert len(llm.requests) == 3


def test_cancel_while_waiting_keeps_a_valid_history(hermes_home: Path) -> None:
    steps: list[Any] = [Hang(10), Reply("Next answer.")]
    with ScriptedLLM(steps) as llm:
        agent, _, db = make_agent(hermes_home, llm)

        async def go() -> Any:
            task = asyncio.ensure_future(agent.run("slow question"))
            # Cancelled while it waits for the model: once the request is there (a fixed
            # 0.5 s can end before it is sent on a loaded machine).
            await until(lambda: len(llm.requests) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await agent.run("again")

        result = asyncio.run(go())
    assert result.text == "Next answer."
    assert [m["content"] for m in db.messages(agent.session_id)] == [
        "slow question",
        "again",
        "Next answer.",
    ]


def test_cancel_during_a_tool_call_answers_it(hermes_home: Path) -> None:
    steps = [Reply(tool_calls=[("sleep", {"seconds": 30})]), Reply("OK, stopped.")]
    with ScriptedLLM(steps) as llm:
        agent, events, db = make_agent(hermes_home, llm, extra_tools=[sleep_tool()])

        async def go() -> Any:
            task = asyncio.ensure_future(agent.run("sleep long"))
            await until(lambda: events.of("tool") == ["sleep"])  # Cancelled in the tool call.
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await agent.run("never mind")

        result = asyncio.run(go())
    assert result.text == "OK, stopped."
    sent = llm.requests[1].messages
    assert sent[-2] == {"role": "tool", "tool_call_id": "call_1_0", "content": CANCELLED_RESULT}
    assert sent[-1] == {"role": "user", "content": "never mind"}
    assert db.messages(agent.session_id)[-1]["content"] == "OK, stopped."


def _fill(db: StateDB, session_id: str, exchanges: int) -> None:
    for n in range(exchanges):
        db.add_message(session_id, {"role": "user", "content": f"question {n} " + "q" * 800})
        db.add_message(session_id, {"role": "assistant", "content": f"answer {n} " + "a" * 800})


COMPRESS_CONFIG = "model:\n  context_length: 2000\ncompression:\n  threshold: 0.5\n"


def test_compression_summarises_the_middle_and_keeps_the_session(hermes_home: Path) -> None:
    def route(request: Any) -> Reply:
        system = request.body["messages"][0]["content"]
        if system == SUMMARY_SYSTEM:
            return Reply("- the user asked many numbered questions")
        return Reply("Answer to the latest.")

    with ScriptedLLM([route, route]) as llm:
        db0 = StateDB()
        sid = db0.create_session(source="cli", model="test-model", cwd=str(hermes_home))
        _fill(db0, sid, 6)
        db0.close()
        agent, events, db = make_agent(
            hermes_home, llm, config_yaml=COMPRESS_CONFIG, session_id=sid
        )
        result = run(agent, "the latest question")
    assert result.text == "Answer to the latest."
    summary_request, answer_request = llm.requests
    assert summary_request.body["messages"][0]["content"] == SUMMARY_SYSTEM
    sent = [m["content"] for m in answer_request.messages[1:]]
    assert sent[0].startswith("question 0 "), "the first exchange is kept"
    assert any(s.startswith("[Summary of ") and "numbered questions" in s for s in sent)
    assert sent[-1] == "the latest question", "the latest user message is never dropped"
    assert agent.session_id == sid
    history = db.messages(sid)
    assert history[-1] == {"role": "assistant", "content": "Answer to the latest."}
    assert len(history) < 14
    assert len(db.messages(sid, include_compacted=True)) > len(history), "originals kept"
    assert any("compressed" in n for n in events.of("notice"))


def test_failed_compression_keeps_history_and_tells_the_user(hermes_home: Path) -> None:
    with ScriptedLLM([Error(500), Error(500), Reply("Answered anyway.")]) as llm:
        db0 = StateDB()
        sid = db0.create_session(source="cli", model="test-model", cwd=str(hermes_home))
        _fill(db0, sid, 6)
        before = db0.messages(sid)
        db0.close()
        agent, events, db = make_agent(
            hermes_home, llm, config_yaml=COMPRESS_CONFIG, session_id=sid
        )
        result = run(agent, "latest")
    assert result.text == "Answered anyway."
    assert db.messages(sid)[: len(before)] == before
    assert any("context compression failed" in n for n in events.of("notice"))
    assert len(llm.requests[2].messages) == len(before) + 2  # system + all + latest


def test_session_search_tool_finds_earlier_sessions(hermes_home: Path) -> None:
    steps = [Reply(tool_calls=[("session_search", {"query": "staging database"})]), Reply("ok")]
    with ScriptedLLM(steps) as llm:
        hermes_home.mkdir()
        db0 = StateDB()
        old = db0.create_session(source="cli", model="m", cwd="/")
        db0.add_message(old, {"role": "user", "content": "call the staging database pelican"})
        db0.close()
        agent, _, _ = make_agent(hermes_home, llm)
        run(agent, "what was the name?")
    result = next(m for m in llm.requests[1].messages if m["role"] == "tool")["content"]
    assert f"session {old}" in result
    assert "pelican" in result
    assert json.dumps(result)  # plain text for the model


class Answering(Recorder):
    def __init__(self, answer: str | None) -> None:
        super().__init__()
        self.answer = answer
        self.questions: list[tuple[str, list[str]]] = []

    async def ask(self, question: str, choices: Any) -> str | None:
        self.questions.append((question, list(choices)))
        return self.answer


@pytest.mark.parametrize("answer", ["blue", None])
def test_clarify_asks_through_the_front_end(hermes_home: Path, answer: str | None) -> None:
    steps = [
        Reply(tool_calls=[("clarify", {"question": "Which colour?", "choices": ["red", "blue"]})]),
        Reply("Noted."),
    ]
    with ScriptedLLM(steps) as llm:
        agent, _, _ = make_agent(hermes_home, llm)
        events = Answering(answer)
        agent.events = events
        agent.context.ask = events.ask
        run(agent, "paint it")
    assert events.questions == [("Which colour?", ["red", "blue"])]
    result = next(m for m in llm.requests[1].messages if m["role"] == "tool")["content"]
    if answer:
        assert result == "The user answered: blue"
    else:
        assert result.startswith("No user is available to answer right now.")


def test_delegate_runs_a_sub_agent_with_restricted_tools(hermes_home: Path) -> None:
    steps = [
        Reply(tool_calls=[("delegate", {"task": "list two chores", "toolsets": ["todo"]})]),
        Reply("Chores: dishes, laundry."),  # the sub-agent's answer
        Reply("Your sub-agent says: dishes, laundry."),
    ]
    with ScriptedLLM(steps) as llm:
        agent, _, db = make_agent(hermes_home, llm)
        result = run(agent, "delegate it")
    assert result.text == "Your sub-agent says: dishes, laundry."
    child_request = llm.requests[1].body
    assert child_request["messages"][-1] == {"role": "user", "content": "list two chores"}
    assert [t["function"]["name"] for t in child_request["tools"]] == ["todo"]
    children = [s for s in db.list_sessions() if s.parent_id == agent.session_id]
    assert len(children) == 1
    assert children[0].parent_kind == "delegation"
    tool_result = next(m for m in llm.requests[2].messages if m["role"] == "tool")["content"]
    assert tool_result == f"[sub-agent session {children[0].id}]\nChores: dishes, laundry."


def test_delegation_depth_is_limited(hermes_home: Path) -> None:
    steps = [Reply(tool_calls=[("delegate", {"task": "x"})]), Reply("ok")]
    with ScriptedLLM(steps) as llm:
        agent, _, _ = make_agent(hermes_home, llm, config_yaml="delegate:\n  max_depth: 0\n")
        run(agent, "go")
    result = next(m for m in llm.requests[1].messages if m["role"] == "tool")["content"]
    assert result == "error: delegation is limited to 0 levels (delegate.max_depth)"


def test_a_session_keeps_its_system_prompt_until_soul_md_changes(hermes_home: Path) -> None:
    """Agents on one session (the gateway builds one per message) send one prompt.

    Memory saved meanwhile stays out of it (the session's snapshot, and the provider's
    prompt cache keeps working); an edit of SOUL.md builds it again.
    """
    from hermes_agent.tools.memory import STORES

    hermes_home.mkdir(exist_ok=True)
    (hermes_home / "SOUL.md").write_text("Answer like a pirate.\n")
    replies = [Reply("one"), Reply("two"), Reply("three")]
    with ScriptedLLM(replies) as llm:
        agent, _, db = make_agent(hermes_home, llm)
        run(agent, "first")
        memory = STORES["memory"].path
        memory.parent.mkdir(parents=True, exist_ok=True)
        memory.write_text("The user's cat is called Biscuit.\n")
        agent, _, _ = make_agent(hermes_home, llm, session_id=agent.session_id)
        run(agent, "second")
        (hermes_home / "SOUL.md").write_text("Answer like a poet, not a pirate.\n")
        agent, _, _ = make_agent(hermes_home, llm, session_id=agent.session_id)
        run(agent, "third")
    prompts = [request.body["messages"][0]["content"] for request in llm.requests]
    assert "pirate" in prompts[0] and prompts[1] == prompts[0]
    assert "Biscuit" not in prompts[1]  # Memory is the snapshot the session started with.
    assert "like a poet" in prompts[2]
    assert "Biscuit" in prompts[2]  # Built again: with today's memory.
    assert [m["content"] for m in db.messages(agent.session_id)] == [
        "first",
        "one",
        "second",
        "two",
        "third",
        "three",
    ]
