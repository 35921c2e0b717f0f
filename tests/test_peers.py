"""The loopback LLM peers speak the wire formats the official SDKs accept.

Every provider test of the agent stands on these peers, so this file pins down what
they do with the real ``openai`` and ``anthropic`` clients: plain and streamed text,
single and parallel tool calls, usage, errors, cut streams and hangs.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from peers.aimock import Aimock, AimockError, AimockNotInstalled
from peers.llm_server import CutStream, Error, Hang, RecordedRequest, Reply, ScriptedLLM, Step

USER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL_OPENAI: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_TOOL_ANTHROPIC: Any = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TWO_CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Europe/Paris"})]


def openai_client(base_url: str, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="test", max_retries=max_retries)


def anthropic_client(base_url: str, max_retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="test", max_retries=max_retries)


def tool_calls(message: Any) -> list[tuple[str, str, Any]]:
    """(id, name, parsed arguments) of each tool call of an OpenAI assistant message."""
    return [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []
    ]


def post_json(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# --------------------------------------------------------------------------------------
# ScriptedLLM, OpenAI wire format
# --------------------------------------------------------------------------------------


@pytest.mark.peer("scripted")
class TestScriptedOpenAI:
    def test_text_reply_with_usage(self) -> None:
        with ScriptedLLM([Reply("Sunny, 21 °C.", usage=(42, 7))]) as llm:
            answer = openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER
            )
        assert answer.choices[0].message.content == "Sunny, 21 °C."
        assert answer.choices[0].finish_reason == "stop"
        assert answer.model == "gpt-test"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (42, 7)
        assert answer.usage.total_tokens == 49

    def test_streamed_text_with_usage_chunk_async(self) -> None:
        async def run(base_url: str) -> tuple[str, list[Any], int]:
            client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
            stream = await client.chat.completions.create(
                model="gpt-test",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
            text, usages, chunks = "", [], 0
            async for chunk in stream:
                chunks += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                if chunk.usage is not None:
                    usages.append(chunk.usage)
            await client.close()
            return text, usages, chunks

        reply = "It is sunny in Paris and 21 degrees."
        with ScriptedLLM([Reply(reply, usage=(30, 9))]) as llm:
            text, usages, chunks = asyncio.run(run(llm.openai_base_url))
        assert text == reply
        assert chunks > 3, "the text must arrive in several deltas"
        assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(30, 9)]

    def test_stream_without_include_usage_has_no_usage_chunk(self) -> None:
        with ScriptedLLM([Reply("Hello.")]) as llm:
            stream = openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER, stream=True
            )
            chunks = list(stream)
        assert all(c.usage is None for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "stop"

    def test_two_parallel_tool_calls(self) -> None:
        with ScriptedLLM([Reply(tool_calls=TWO_CALLS, usage=(50, 20))]) as llm:
            answer = openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER, tools=[WEATHER_TOOL_OPENAI]
            )
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "tool_calls"
        assert message.content is None
        assert tool_calls(message) == [
            ("call_1_0", "get_weather", {"city": "Paris"}),
            ("call_1_1", "get_time", {"zone": "Europe/Paris"}),
        ]

    def test_streamed_parallel_tool_calls(self) -> None:
        with ScriptedLLM([Reply("Checking.", tool_calls=TWO_CALLS, usage=(5, 6))]) as llm:
            client = openai_client(llm.openai_base_url)
            with client.chat.completions.stream(
                model="gpt-test",
                messages=USER,
                stream_options={"include_usage": True},
            ) as stream:
                for _ in stream:
                    pass
                final = stream.get_final_completion()
        message = final.choices[0].message
        assert message.content == "Checking."
        assert final.choices[0].finish_reason == "tool_calls"
        assert [call[1:] for call in tool_calls(message)] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"zone": "Europe/Paris"}),
        ]
        assert final.usage is not None and final.usage.completion_tokens == 6

    def test_retry_after_is_honoured_and_recorded(self) -> None:
        steps: list[Step] = [Error(429, headers={"Retry-After": "1"}), Reply("Finally.")]
        with ScriptedLLM(steps) as llm:
            answer = openai_client(llm.openai_base_url, max_retries=1).chat.completions.create(
                model="gpt-test", messages=USER
            )
            first, second = llm.requests
        assert answer.choices[0].message.content == "Finally."
        assert second.time - first.time >= 1.0
        assert second.headers["x-stainless-retry-count"] == "1"

    def test_invalid_key_is_authentication_error(self) -> None:
        with ScriptedLLM([Error(401)]) as llm, pytest.raises(openai.AuthenticationError) as info:
            openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER
            )
        assert info.value.code == "invalid_api_key"

    def test_unknown_model_is_not_found(self) -> None:
        with (
            ScriptedLLM([Error(404)]) as llm,
            pytest.raises(openai.NotFoundError, match="gpt-nope"),
        ):
            openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-nope", messages=USER
            )

    def test_cut_stream_raises_while_iterating(self) -> None:
        with ScriptedLLM([CutStream(after_chunks=3)]) as llm:
            stream = openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER, stream=True
            )
            received = []
            with pytest.raises(openai.APIConnectionError):
                for chunk in stream:
                    received.append(chunk)
        assert len(received) == 3

    def test_hang_times_out_the_client(self) -> None:
        with ScriptedLLM([Hang(30)]) as llm:
            client = openai_client(llm.openai_base_url).with_options(timeout=0.5)
            began = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="gpt-test", messages=USER)
            assert time.monotonic() - began < 20  # At the client's timeout, not the 30 s hang.
            began = time.monotonic()
        assert time.monotonic() - began < 15, "stop() must end the hang, not wait 30 s"

    def test_hang_then_reply(self) -> None:
        with ScriptedLLM([Hang(0.3, then=Reply("late"))]) as llm:
            answer = openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER
            )
        assert answer.choices[0].message.content == "late"


# --------------------------------------------------------------------------------------
# ScriptedLLM, Anthropic wire format
# --------------------------------------------------------------------------------------


@pytest.mark.peer("scripted")
class TestScriptedAnthropic:
    def test_text_reply_with_usage(self) -> None:
        with ScriptedLLM([Reply("Sunny.", usage=(42, 7))]) as llm:
            message = anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-test", max_tokens=100, messages=USER
            )
            (request,) = llm.requests
        assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Sunny.")]
        assert message.stop_reason == "end_turn"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (42, 7)
        assert request.path == "/v1/messages"
        assert request.body["max_tokens"] == 100

    def test_streamed_text_with_usage_async(self) -> None:
        async def run(base_url: str) -> tuple[str, anthropic.types.Message]:
            client = anthropic.AsyncAnthropic(base_url=base_url, api_key="test", max_retries=0)
            async with client.messages.stream(
                model="claude-test",
                max_tokens=100,
                messages=USER,
            ) as stream:
                text = "".join([t async for t in stream.text_stream])
                final = await stream.get_final_message()
            await client.close()
            return text, final

        reply = "It is sunny in Paris and 21 degrees."
        with ScriptedLLM([Reply(reply, usage=(30, 9))]) as llm:
            text, final = asyncio.run(run(llm.anthropic_base_url))
        assert text == reply
        assert final.stop_reason == "end_turn"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 9)

    def test_raw_event_sequence(self) -> None:
        with ScriptedLLM([Reply("Hi.", tool_calls=TWO_CALLS[:1])]) as llm:
            events = anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-test", max_tokens=100, messages=USER, stream=True
            )
            kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in events]
        # '{"city": "Paris"}' arrives as "", then 8-character pieces; the SDK hides ping.
        assert kinds == [
            ("message_start", None),
            ("content_block_start", None),
            ("content_block_delta", "text_delta"),
            ("content_block_stop", None),
            ("content_block_start", None),
            *[("content_block_delta", "input_json_delta")] * 4,
            ("content_block_stop", None),
            ("message_delta", None),
            ("message_stop", None),
        ]

    def test_two_parallel_tool_uses(self) -> None:
        with ScriptedLLM([Reply(tool_calls=TWO_CALLS)]) as llm:
            message = anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-test",
                max_tokens=100,
                messages=USER,
                tools=[WEATHER_TOOL_ANTHROPIC],
            )
        assert message.stop_reason == "tool_use"
        assert [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"] == [
            ("toolu_1_0", "get_weather", {"city": "Paris"}),
            ("toolu_1_1", "get_time", {"zone": "Europe/Paris"}),
        ]

    def test_streamed_parallel_tool_uses(self) -> None:
        steps = [Reply("Let me look.", tool_calls=TWO_CALLS, usage=(8, 9))]
        with (
            ScriptedLLM(steps) as llm,
            anthropic_client(llm.anthropic_base_url).messages.stream(
                model="claude-test", max_tokens=100, messages=USER
            ) as stream,
        ):
            final = stream.get_final_message()
        assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
        assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"zone": "Europe/Paris"}),
        ]
        assert final.stop_reason == "tool_use"
        assert final.usage.output_tokens == 9

    def test_retry_after_is_honoured_and_recorded(self) -> None:
        steps: list[Step] = [Error(429, headers={"Retry-After": "1"}), Reply("Finally.")]
        with ScriptedLLM(steps) as llm:
            message = anthropic_client(llm.anthropic_base_url, max_retries=1).messages.create(
                model="claude-test", max_tokens=10, messages=USER
            )
            first, second = llm.requests
        assert message.content[0].type == "text" and message.content[0].text == "Finally."
        assert second.time - first.time >= 1.0

    def test_invalid_key_is_authentication_error(self) -> None:
        with ScriptedLLM([Error(401)]) as llm, pytest.raises(anthropic.AuthenticationError) as info:
            anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-test", max_tokens=10, messages=USER
            )
        assert info.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            "request_id": "req_scripted_1",
        }

    def test_unknown_model_is_not_found(self) -> None:
        with (
            ScriptedLLM([Error(404)]) as llm,
            pytest.raises(anthropic.NotFoundError, match="claude-nope"),
        ):
            anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-nope", max_tokens=10, messages=USER
            )

    def test_cut_stream_raises_while_iterating(self) -> None:
        with ScriptedLLM([CutStream(after_chunks=3)]) as llm:
            events = anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-test", max_tokens=10, messages=USER, stream=True
            )
            received = []
            # The anthropic SDK lets the transport's RemoteProtocolError escape unwrapped
            # while iterating (the openai SDK wraps it as APIConnectionError).
            with pytest.raises(Exception) as info:
                for event in events:
                    received.append(event.type)
        assert type(info.value).__name__ in {"RemoteProtocolError", "APIConnectionError"}
        # message_start and ping went out (the SDK hides ping), then a block start.
        assert received == ["message_start", "content_block_start"]


# --------------------------------------------------------------------------------------
# ScriptedLLM itself
# --------------------------------------------------------------------------------------


@pytest.mark.peer("scripted")
class TestScriptedServer:
    def test_exhausted_script_fails_loudly(self) -> None:
        with ScriptedLLM([Reply("only one")]) as llm:
            client = openai_client(llm.openai_base_url)
            client.chat.completions.create(model="gpt-test", messages=USER)
            with pytest.raises(openai.InternalServerError, match="no scripted step left"):
                client.chat.completions.create(model="gpt-test", messages=USER)
            assert llm.remaining == 0

    def test_requests_are_recorded(self) -> None:
        with ScriptedLLM([Reply("a"), Reply("b")]) as llm:
            openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER, tools=[WEATHER_TOOL_OPENAI]
            )
            anthropic_client(llm.anthropic_base_url).messages.create(
                model="claude-test", max_tokens=5, system="Be brief.", messages=USER
            )
            first, second = llm.requests
        assert (first.api, first.method, first.path) == ("openai", "POST", "/v1/chat/completions")
        assert first.body["tools"] == [WEATHER_TOOL_OPENAI]
        assert first.messages == USER
        assert first.headers["authorization"] == "Bearer test"
        assert (second.api, second.path) == ("anthropic", "/v1/messages")
        assert second.body["system"] == "Be brief."
        assert "anthropic-version" in second.headers
        assert first.time <= second.time

    def test_callable_step_sees_the_request(self) -> None:
        def echo(request: RecordedRequest) -> Reply:
            return Reply(f"you said: {request.messages[-1]['content']}")

        with ScriptedLLM([echo]) as llm:
            answer = openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "ping"}]
            )
        assert answer.choices[0].message.content == "you said: ping"

    def test_malformed_request_is_400_and_consumes_no_step(self) -> None:
        with ScriptedLLM([Reply("kept")]) as llm:
            status, body = post_json(
                f"{llm.url}/v1/messages", {"model": "claude-test", "messages": USER}
            )
            assert status == 400
            assert body["error"]["type"] == "invalid_request_error"
            assert "max_tokens" in body["error"]["message"]
            assert llm.remaining == 1
            status, _ = post_json(f"{llm.url}/v1/nothing", {})
            assert status == 404
            assert [r.api for r in llm.requests] == ["anthropic", None]

    def test_error_with_custom_body(self) -> None:
        with (
            ScriptedLLM([Error(503, body="upstream connect error")]) as llm,
            pytest.raises(openai.InternalServerError) as info,
        ):
            openai_client(llm.openai_base_url).chat.completions.create(
                model="gpt-test", messages=USER
            )
        assert info.value.status_code == 503
        assert info.value.response.text == "upstream connect error"


# --------------------------------------------------------------------------------------
# aimock
# --------------------------------------------------------------------------------------

AIMOCK_FIXTURES: list[dict[str, Any]] = [
    # Tool-result fixtures first: the follow-up still carries the same user text.
    {"match": {"toolCallId": "call_weather"}, "response": {"content": "Sunny, 21 °C."}},
    {
        "match": {"userMessage": "weather"},
        "response": {
            "toolCalls": [
                {"id": "call_weather", "name": "get_weather", "arguments": {"city": "Paris"}}
            ]
        },
    },
    {
        "match": {"userMessage": "hello"},
        "response": {
            "content": "Hi there!",
            "usage": {"prompt_tokens": 11, "completion_tokens": 3},
        },
    },
    {
        "match": {"userMessage": "both"},
        "response": {
            "toolCalls": [
                {"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"id": "call_b", "name": "get_time", "arguments": {"zone": "Europe/Paris"}},
            ]
        },
    },
    {
        "match": {"userMessage": "slow down"},
        "response": {"error": {"message": "Slow down", "type": "rate_limit_error"}, "status": 429},
    },
    {
        "match": {"userMessage": "bad key"},
        "response": {
            "error": {"message": "Invalid key", "type": "authentication_error"},
            "status": 401,
        },
    },
]


def say(text: str) -> Any:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def aimock() -> Iterator[Aimock]:
    with Aimock(AIMOCK_FIXTURES) as mock:
        yield mock


@pytest.fixture
def mock(aimock: Aimock) -> Aimock:
    aimock.clear_journal()
    return aimock


@pytest.mark.peer("aimock")
class TestAimock:
    def test_starts_quickly(self, aimock: Aimock) -> None:
        # Node on a loaded 2-core machine can take seconds; the bound catches a hang.
        assert aimock.startup_seconds is not None and aimock.startup_seconds < 30
        assert aimock.url.startswith("http://127.0.0.1:")

    def test_openai_text_plain_and_streamed(self, mock: Aimock) -> None:
        client = openai_client(mock.openai_base_url)
        answer = client.chat.completions.create(model="gpt-test", messages=say("hello"))
        assert answer.choices[0].message.content == "Hi there!"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, 3)
        stream = client.chat.completions.create(
            model="gpt-test",
            messages=say("hello"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi there!"
        assert [(c.usage.prompt_tokens, c.usage.completion_tokens) for c in chunks if c.usage] == [
            (11, 3)
        ]
        entries = mock.journal()
        assert [(e["method"], e["path"], e["response"]["status"]) for e in entries] == [
            ("POST", "/v1/chat/completions", 200)
        ] * 2
        assert entries[0]["body"]["messages"] == say("hello")
        assert entries[0]["response"]["fixture"]["match"] == {"userMessage": "hello"}

    def test_anthropic_text_plain_and_streamed(self, mock: Aimock) -> None:
        client = anthropic_client(mock.anthropic_base_url)
        message = client.messages.create(model="claude-test", max_tokens=50, messages=say("hello"))
        assert message.content[0].type == "text" and message.content[0].text == "Hi there!"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
        with client.messages.stream(
            model="claude-test",
            max_tokens=50,
            messages=say("hello"),
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "Hi there!"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 3)
        assert [e["path"] for e in mock.journal(path="/v1/messages")] == ["/v1/messages"] * 2

    @pytest.mark.parametrize("stream", [False, True])
    def test_openai_tool_call_then_text_after_tool_result(self, mock: Aimock, stream: bool) -> None:
        client = openai_client(mock.openai_base_url)
        messages: list[Any] = say("weather in Paris?")
        first: Any
        if stream:
            with client.chat.completions.stream(
                model="gpt-test",
                messages=messages,
                tools=[WEATHER_TOOL_OPENAI],
            ) as events:
                first = events.get_final_completion().choices[0].message
        else:
            first = (
                client.chat.completions.create(
                    model="gpt-test",
                    messages=messages,
                    tools=[WEATHER_TOOL_OPENAI],
                )
                .choices[0]
                .message
            )
        (call,) = first.tool_calls or []
        assert (call.id, call.function.name) == ("call_weather", "get_weather")
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
        ]
        second = client.chat.completions.create(model="gpt-test", messages=messages)
        assert second.choices[0].message.content == "Sunny, 21 °C."
        assert second.choices[0].message.tool_calls is None

    @pytest.mark.parametrize("stream", [False, True])
    def test_anthropic_tool_use_then_text_after_tool_result(
        self, mock: Aimock, stream: bool
    ) -> None:
        client = anthropic_client(mock.anthropic_base_url)
        messages: list[Any] = say("weather in Paris?")
        kwargs: dict[str, Any] = {
            "model": "claude-test",
            "max_tokens": 50,
            "tools": [WEATHER_TOOL_ANTHROPIC],
        }
        if stream:
            with client.messages.stream(messages=messages, **kwargs) as events:
                first = events.get_final_message()
        else:
            first = client.messages.create(messages=messages, **kwargs)
        assert first.stop_reason == "tool_use"
        (use,) = [b for b in first.content if b.type == "tool_use"]
        assert (use.id, use.name, use.input) == ("call_weather", "get_weather", {"city": "Paris"})
        messages += [
            {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "clear"}],
            },
        ]
        second = client.messages.create(messages=messages, **kwargs)
        assert second.content[0].type == "text" and second.content[0].text == "Sunny, 21 °C."
        # aimock journals the Anthropic request converted to OpenAI chat messages.
        body = mock.journal()[-1]["body"]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
        assert body["messages"][-1]["tool_call_id"] == "call_weather"

    def test_parallel_tool_calls_both_apis(self, mock: Aimock) -> None:
        with openai_client(mock.openai_base_url).chat.completions.stream(
            model="gpt-test",
            messages=say("both"),
        ) as events:
            message = events.get_final_completion().choices[0].message
        assert tool_calls(message) == [
            ("call_a", "get_weather", {"city": "Paris"}),
            ("call_b", "get_time", {"zone": "Europe/Paris"}),
        ]
        client = anthropic_client(mock.anthropic_base_url)
        plain = client.messages.create(model="claude-test", max_tokens=50, messages=say("both"))
        with client.messages.stream(
            model="claude-test",
            max_tokens=50,
            messages=say("both"),
        ) as stream:
            streamed = stream.get_final_message()
        for answer in (plain, streamed):
            assert answer.stop_reason == "tool_use"
            assert [(b.id, b.name, b.input) for b in answer.content if b.type == "tool_use"] == [
                ("call_a", "get_weather", {"city": "Paris"}),
                ("call_b", "get_time", {"zone": "Europe/Paris"}),
            ]

    def test_errors(self, mock: Aimock) -> None:
        began = time.monotonic()
        with pytest.raises(openai.RateLimitError):
            openai_client(mock.openai_base_url, max_retries=1).chat.completions.create(
                model="gpt-test",
                messages=say("slow down"),
            )
        assert time.monotonic() - began >= 1.0, "the SDK waits for Retry-After: 1"
        with pytest.raises(openai.AuthenticationError):
            openai_client(mock.openai_base_url).chat.completions.create(
                model="gpt-test",
                messages=say("bad key"),
            )
        with pytest.raises(anthropic.AuthenticationError):
            anthropic_client(mock.anthropic_base_url).messages.create(
                model="claude-test",
                max_tokens=5,
                messages=say("bad key"),
            )
        # --strict: a request no fixture matches is a 503.
        with pytest.raises(openai.InternalServerError, match="no fixture matched"):
            openai_client(mock.openai_base_url).chat.completions.create(
                model="gpt-test",
                messages=say("something else"),
            )
        statuses = [e["response"]["status"] for e in mock.journal()]
        assert statuses == [429, 429, 401, 401, 503]

    def test_user_message_listed_first_loops_on_the_tool_result(self) -> None:
        fixtures = [AIMOCK_FIXTURES[1], AIMOCK_FIXTURES[0]]  # the wrong order
        with Aimock(fixtures) as wrong:
            client = openai_client(wrong.openai_base_url)
            messages: list[Any] = say("weather?")
            call = client.chat.completions.create(model="gpt-test", messages=messages)
            messages += [
                call.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": "call_weather", "content": "clear"},
            ]
            again = client.chat.completions.create(model="gpt-test", messages=messages)
        assert again.choices[0].message.tool_calls, "the tool call is answered again"

    def test_has_tool_result_makes_the_order_irrelevant(self) -> None:
        call = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
        fixtures = [
            {
                "match": {"userMessage": "weather", "hasToolResult": False},
                "response": {"toolCalls": [call]},
            },
            {
                "match": {"userMessage": "weather", "hasToolResult": True},
                "response": {"content": "Sunny."},
            },
        ]
        with Aimock(fixtures) as mock:
            client = openai_client(mock.openai_base_url)
            messages: list[Any] = say("weather?")
            first = client.chat.completions.create(model="gpt-test", messages=messages)
            messages += [
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": "call_1", "content": "clear"},
            ]
            second = client.chat.completions.create(model="gpt-test", messages=messages)
        assert [c[0] for c in tool_calls(first.choices[0].message)] == ["call_1"]
        assert second.choices[0].message.content == "Sunny."

    def test_runtime_fixtures(self, mock: Aimock) -> None:
        mock.add_fixtures([{"match": {"userMessage": "added"}, "response": {"content": "yes"}}])
        answer = openai_client(mock.openai_base_url).chat.completions.create(
            model="gpt-test",
            messages=say("added later"),
        )
        assert answer.choices[0].message.content == "yes"
        with pytest.raises(AimockError, match="400"):
            mock.add_fixtures([{"match": {"userMessage": "x"}, "response": {"nothing": 1}}])


@pytest.mark.peer("aimock")
class TestAimockHelper:
    def test_missing_install_names_the_install_script(self, tmp_path: Path) -> None:
        with pytest.raises(AimockNotInstalled, match=r"tests/peers/install\.sh"):
            Aimock(AIMOCK_FIXTURES, cli=tmp_path / "missing.js").start()

    def test_unknown_match_key_is_refused(self) -> None:
        with pytest.raises(ValueError, match="userMesage"):
            Aimock([{"match": {"userMesage": "typo"}, "response": {"content": "x"}}])

    def test_empty_fixture_list_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one fixture"):
            Aimock([])

    def test_bad_response_fails_start_with_aimock_output(self) -> None:
        with pytest.raises(AimockError, match="not a recognized type"):
            Aimock([{"match": {"userMessage": "x"}, "response": {"text": "x"}}]).start()

    def test_chaos_flags_pass_through(self) -> None:
        with Aimock(AIMOCK_FIXTURES, extra_args=["--chaos-ratelimit", "1"]) as chaotic:
            status, body = post_json(
                f"{chaotic.openai_base_url}/chat/completions",
                {"model": "gpt-test", "messages": say("hello")},
            )
        assert status == 429
        assert body["error"]["code"] == "chaos_ratelimit"
