"""The loop's OpenAI-style history, as the Anthropic Messages API needs it."""

from __future__ import annotations

from hermes_agent.providers.anthropic_provider import to_anthropic


def test_tool_calls_and_results_become_blocks_in_alternating_turns() -> None:
    history = [
        {"role": "user", "content": "add 2 and 3"},
        {
            "role": "assistant",
            "content": "Let me add.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2}'},
                },
                {"id": "t2", "type": "function", "function": {"name": "add", "arguments": "{bad"}},
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "5"},
        {"role": "tool", "tool_call_id": "t2", "content": ""},
        {"role": "user", "content": "thanks"},
    ]
    assert to_anthropic(history) == [
        {"role": "user", "content": [{"type": "text", "text": "add 2 and 3"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me add."},
                {"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 2}},
                {"type": "tool_use", "id": "t2", "name": "add", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "5"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "(no output)"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_empty_assistant_text_is_dropped() -> None:
    assert to_anthropic(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]
    ) == [{"role": "user", "content": [{"type": "text", "text": "a"}]}]
