"""Where context compression cuts a history: first exchange and recent turns stay whole."""

from __future__ import annotations

from typing import Any

from hermes_agent.agent.compress import split, transcript


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str | None, *calls: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": c, "type": "function", "function": {"name": "todo", "arguments": "{}"}}
            for c in calls
        ]
    return message


def tool(call_id: str, text: str = "ok") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def long_history(turns: int) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    for n in range(turns):
        history += [
            user(f"question {n} " + "x" * 400),
            assistant(None, f"c{n}"),
            tool(f"c{n}", "y" * 400),
            assistant(f"answer {n} " + "z" * 400),
        ]
    return history


def test_keeps_first_exchange_and_latest_user_message() -> None:
    history = long_history(10)
    parts = split(history, keep_tokens=300)
    assert parts is not None
    head, middle, tail = parts
    assert head == history[:1], "first exchange used a tool: only the question is the head"
    assert tail[0]["role"] == "user"
    assert tail[0] is history[-4], "the latest user message is kept"
    assert head + middle + tail == history


def test_head_includes_a_plain_first_answer() -> None:
    history = [user("hi"), assistant("hello"), *long_history(6)]
    head, middle, tail = split(history, keep_tokens=200) or ([], [], [])
    assert head == history[:2]
    assert middle and tail


def test_no_tool_result_is_cut_from_its_call() -> None:
    history = long_history(8)
    for keep in (1, 50, 150, 250, 600, 1200):
        parts = split(history, keep_tokens=keep)
        assert parts is not None
        _, middle, tail = parts
        assert tail[0]["role"] == "user", keep
        assert middle[-1]["role"] != "user" or middle[-1] is not tail[0]


def test_nothing_to_compress_for_short_histories() -> None:
    assert split([user("a"), assistant("b")], keep_tokens=10) is None
    assert split([user("a"), assistant("b"), user("c")], keep_tokens=10) is None


def test_transcript_renders_calls_and_results() -> None:
    text = transcript(
        [user("find it"), assistant(None, "c1"), tool("c1", "found"), assistant("done")]
    )
    assert text.splitlines() == [
        "USER: find it",
        "",
        "ASSISTANT CALLED todo({})",
        "",
        "TOOL RESULT: found",
        "",
        "ASSISTANT: done",
    ]
