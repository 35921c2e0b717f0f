"""The HTTP API's Idempotency-Key and request bodies, through a real gateway process.

Before: the key was unique per platform, so a second caller sending another
question with the first caller's key got the first caller's private answer
and its own question never ran; and a JSON body nested 100,000 deep was a 500.
Two callers (two API keys) talk to one `hermes gateway run` over HTTP here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from peers.daemons import free_port
from peers.llm_server import Reply, ScriptedLLM
from test_gateway import KEY, Gateway, configure_home

OTHER_KEY = "second-caller-key-9876543210"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def gateway(hermes_home: Path, tmp_path: Path, llm: ScriptedLLM) -> Iterator[Gateway]:
    port = free_port()
    configure_home(hermes_home, llm, port, key=f"{KEY}, {OTHER_KEY}")
    workdir = tmp_path / "work"
    workdir.mkdir()
    started = Gateway(hermes_home, port, workdir)
    try:
        yield started.wait_ready()
    finally:
        started.kill()


def ask(gateway: Gateway, key: str, text: str, **kwargs: Any) -> str:
    reply = gateway.client(key).chat.completions.create(
        model="hermes-agent", messages=[{"role": "user", "content": text}], **kwargs
    )
    return reply.choices[0].message.content or ""


def post(gateway: Gateway, body: bytes, key: str = KEY) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )


def test_another_caller_never_gets_my_answer(gateway: Gateway, llm: ScriptedLLM) -> None:
    llm.add(Reply("Alice's private answer."), Reply("Mallory's own answer."))
    same = {"Idempotency-Key": "msg-1"}
    first = ask(gateway, KEY, "my salary is 90k, plan my budget", user="alice", extra_headers=same)
    assert first == "Alice's private answer."
    # Another API key, the same Idempotency-Key and even the same `user` name.
    second = ask(gateway, OTHER_KEY, "what is 2+2?", user="alice", extra_headers=same)
    assert second == "Mallory's own answer."
    assert len(llm.requests) == 2  # The second question ran.
    # And it ran in a conversation of its own: Alice's words were not in it.
    assert "salary" not in str(llm.requests[1].messages)
    # Each caller's repeat replays its own answer, without running again.
    assert ask(gateway, OTHER_KEY, "what is 2+2?", user="alice", extra_headers=same) == second
    assert (
        ask(gateway, KEY, "my salary is 90k, plan my budget", user="alice", extra_headers=same)
        == first
    )
    assert len(llm.requests) == 2


def test_without_a_conversation_the_key_is_still_the_callers(
    gateway: Gateway, llm: ScriptedLLM
) -> None:
    llm.add(Reply("One."), Reply("Two."))
    same = {"Idempotency-Key": "no-user-key"}
    assert ask(gateway, KEY, "first question", extra_headers=same) == "One."
    assert ask(gateway, OTHER_KEY, "second question", extra_headers=same) == "Two."
    assert ask(gateway, KEY, "first question", extra_headers=same) == "One."  # A replay.
    assert len(llm.requests) == 2


def test_reuse_with_a_different_body_is_409(gateway: Gateway, llm: ScriptedLLM) -> None:
    llm.add(Reply("Answer to the first."))
    same = {"Idempotency-Key": "reused"}
    assert ask(gateway, KEY, "first question", user="bob", extra_headers=same) == (
        "Answer to the first."
    )
    with pytest.raises(openai.ConflictError) as caught:
        ask(gateway, KEY, "a different question", user="bob", extra_headers=same)
    assert caught.value.status_code == 409
    message = str(caught.value)
    assert "Idempotency-Key was already used for a different request" in message
    assert "Answer to the first." not in message
    with pytest.raises(openai.ConflictError):  # Streaming is refused the same way.
        ask(gateway, KEY, "a different question", user="bob", extra_headers=same, stream=True)
    assert len(llm.requests) == 1


def test_the_same_key_in_another_conversation_runs_on_its_own(
    gateway: Gateway, llm: ScriptedLLM
) -> None:
    llm.add(Reply("For carol."), Reply("For dave."))
    same = {"Idempotency-Key": "k-7"}
    assert ask(gateway, KEY, "hello", user="carol", extra_headers=same) == "For carol."
    assert ask(gateway, KEY, "hello", user="dave", extra_headers=same) == "For dave."
    assert len(llm.requests) == 2


def test_deeply_nested_or_huge_bodies_are_refused(gateway: Gateway, llm: ScriptedLLM) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"messages":' * 100_000, b"[" * 100_000):
        answer = post(gateway, body)
        assert answer.status_code == 400, answer.text
        assert "nests deeper" in answer.json()["error"]["message"]
    too_big = b'{"messages": [{"role": "user", "content": "' + b"x" * (5 << 20) + b'"}]}'
    answer = post(gateway, too_big)
    assert answer.status_code == 413
    assert "larger than" in answer.json()["error"]["message"]
    answer = post(gateway, b"\xff\xfe not utf-8")
    assert answer.status_code == 400
    assert llm.requests == []
    assert "RecursionError" not in gateway.output() and "Traceback" not in gateway.output()
    llm.add(Reply("Fine."))
    assert ask(gateway, KEY, "still serving?") == "Fine."


def test_an_unknown_key_is_refused(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(gateway, "not-a-key", "hello")


def test_one_key_two_users_same_idempotency_key(
    hermes_home: Path, tmp_path: Path, llm: ScriptedLLM
) -> None:
    # The report: two users of one deployment (one API key), the second reusing the
    # first one's Idempotency-Key with another question, got the first one's answer.
    port = free_port()
    configure_home(hermes_home, llm, port)
    workdir = tmp_path / "one-key"
    workdir.mkdir()
    gateway = Gateway(hermes_home, port, workdir)
    try:
        gateway.wait_ready()
        llm.add(Reply("Private to alice."), Reply("For bob."))
        same = {"Idempotency-Key": "shared-7"}
        assert ask(gateway, KEY, "alice's secret plan", user="alice", extra_headers=same) == (
            "Private to alice."
        )
        assert ask(gateway, KEY, "bob's question", user="bob", extra_headers=same) == "For bob."
        assert len(llm.requests) == 2
    finally:
        gateway.kill()
