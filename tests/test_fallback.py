"""Fallback providers against two scripted models on 127.0.0.1, one per wire format.

The primary speaks the OpenAI wire format (provider ``custom``), the fallback the
Anthropic one, both through their real SDKs and the real agent loop; state.db is real.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml

from conftest import HERMES, Runner, clean_env
from hermes_agent.agent.factory import build_agent
from hermes_agent.agent.loop import Agent, Events
from hermes_agent.config.loader import load_config
from hermes_agent.errors import UsageError
from hermes_agent.providers import fallback
from hermes_agent.providers import settings as provider_settings
from hermes_agent.providers.base import AuthError, ProviderError
from hermes_agent.state.db import StateDB
from hermes_agent.tools.registry import builtin_registry
from peers.daemons import free_port
from peers.llm_server import Error, Reply, ScriptedLLM
from test_chat_cli import PROMPT

pytestmark = pytest.mark.peer("scripted")

#: Retries of the primary wait a millisecond, not the usual backoff.
FAST = {"retry-after-ms": "1"}


class Notices(Events):
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.fallbacks: list[str] = []

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def fallback(self, error: ProviderError, message: str) -> None:
        self.fallbacks.append(message)
        super().fallback(error, message)


def make(
    hermes_home: Path, primary: ScriptedLLM, second: ScriptedLLM, extra: str = ""
) -> tuple[Agent, Notices, StateDB]:
    hermes_home.mkdir(exist_ok=True)
    (hermes_home / "config.yaml").write_text(
        "fallback_providers:\n"
        "  - provider: anthropic\n"
        "    model: claude-sonnet-4-6\n"
        f"    base_url: {second.anthropic_base_url}\n" + extra
    )
    config = load_config()
    settings = provider_settings.resolve(
        config, provider="custom", model="test-model", base_url=primary.openai_base_url
    )
    db = StateDB()
    sid = db.create_session(source="cli", model=settings.model, cwd=str(hermes_home))
    events = Notices()
    agent = build_agent(
        config=config,
        settings=settings,
        tools=[],
        db=db,
        session_id=sid,
        cwd=hermes_home,
        events=events,
    )
    return agent, events, db


def run(agent: Agent, *texts: str) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return [await agent.run(text) for text in texts]
        finally:
            await agent.aclose()

    return asyncio.run(go())


@pytest.fixture
def anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")


@pytest.mark.parametrize(
    "failure",
    [
        [Error(503, headers=FAST)] * 4,  # 5xx after its retries
        [Error(429, headers=FAST)] * 4,  # rate limited beyond the retries
        [Error(529, message="Overloaded", headers=FAST)] * 4,
        [Error(404)],  # the model is gone: not retried, another provider may have one
    ],
    ids=["503", "429", "overloaded", "404-model"],
)
def test_turn_goes_on_with_the_next_provider(
    hermes_home: Path, anthropic_key: None, failure: list[Error]
) -> None:
    with (
        ScriptedLLM([*failure, Reply("primary is back")]) as primary,
        ScriptedLLM([Reply("from the fallback", usage=(1000, 100))]) as second,
    ):
        agent, events, db = make(hermes_home, primary, second)
        first, again = run(agent, "hello", "and again")
    assert first.text == "from the fallback"
    assert again.text == "primary is back"  # Each turn starts with the configured provider.
    assert len(events.fallbacks) == 1
    line = events.fallbacks[0]
    assert "test-model via custom failed" in line
    assert "going on with claude-sonnet-4-6 via anthropic" in line
    assert "\n" not in line
    assert events.notices == events.fallbacks  # Said through Events.notice too.
    # The fallback got the conversation in its own wire format.
    assert second.requests[0].api == "anthropic"
    assert "hello" in str(second.requests[0].messages[-1]["content"])
    by = db.answered_by(agent.session_id)
    assert [(p, m) for p, m, _ in by] == [
        ("anthropic", "claude-sonnet-4-6"),
        ("custom", "test-model"),
    ]
    assert by[0][2] is not None and by[0][2] > 0  # Priced at the fallback model's list price.


def test_fallback_continues_a_turn_with_its_tool_calls(
    hermes_home: Path, anthropic_key: None
) -> None:
    primary_steps = [Reply(tool_calls=[("todo", {})]), Error(502, headers=FAST)]
    with (
        ScriptedLLM(primary_steps + [Error(502, headers=FAST)] * 3) as primary,
        ScriptedLLM([Reply("done after the tool")]) as second,
    ):
        agent, _, db = make(hermes_home, primary, second)

        agent.tools = {t.name: t for t in builtin_registry().select(["todo"])}
        (result,) = run(agent, "plan it")
    assert result.text == "done after the tool"
    sent = second.requests[0].messages
    assert any(
        block.get("type") == "tool_result"
        for m in sent
        if isinstance(m.get("content"), list)
        for block in m["content"]
    )
    assert [p for p, _, _ in db.answered_by(agent.session_id)] == ["custom", "anthropic"]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_is_reported_not_skipped(
    hermes_home: Path, anthropic_key: None, status: int
) -> None:
    with (
        ScriptedLLM([Error(status)]) as primary,
        ScriptedLLM([Reply("must not be asked")]) as second,
    ):
        agent, events, _ = make(hermes_home, primary, second)
        with pytest.raises(AuthError, match=f"HTTP {status}"):
            run(agent, "hello")
    assert second.requests == []
    assert events.fallbacks == []


def test_fallback_without_its_key_is_reported(hermes_home: Path) -> None:
    with (
        ScriptedLLM([Error(404)]) as primary,
        ScriptedLLM([Reply("must not be asked")]) as second,
    ):
        agent, _, _ = make(hermes_home, primary, second)
        with pytest.raises(AuthError, match="ANTHROPIC_API_KEY, which is not set") as info:
            run(agent, "hello")
    assert "test-model via custom failed (model 'test-model' not found" in str(info.value)
    assert second.requests == []


def test_last_error_is_raised_when_every_provider_fails(
    hermes_home: Path, anthropic_key: None
) -> None:
    with (
        ScriptedLLM([Error(404)]) as primary,
        ScriptedLLM([Error(404)]) as second,
    ):
        agent, events, _ = make(hermes_home, primary, second)
        with pytest.raises(ProviderError, match="claude-sonnet-4-6"):
            run(agent, "hello")
    assert len(events.fallbacks) == 1


def test_bad_request_is_not_passed_on(hermes_home: Path, anthropic_key: None) -> None:
    with (
        ScriptedLLM([Error(400)]) as primary,
        ScriptedLLM([Reply("must not be asked")]) as second,
    ):
        agent, _, _ = make(hermes_home, primary, second)
        with pytest.raises(ProviderError, match="HTTP 400"):
            run(agent, "hello")
    assert second.requests == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  - provider: nope\n    model: x\n", "unknown provider 'nope'"),
        ("  - provider: openai\n", "model is missing"),
        ("  - provider: custom\n    model: x\n", "needs a base_url"),
        ("  - provider: custom\n    model: x\n    base_url: ftp://h\n", "must start with http"),
        ("  - provider: openai\n    model: x\n    key: v\n", "unknown key(s) key"),
    ],
)
def test_malformed_entries_are_clear_errors(hermes_home: Path, entry: str, message: str) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("fallback_providers:\n" + entry)
    with pytest.raises(UsageError) as info:
        fallback.entries(load_config())
    assert message in str(info.value)


def test_one_shot_chat_says_it_fell_back(hermes: Runner, hermes_home: Path) -> None:
    with (
        ScriptedLLM([Error(503, headers=FAST)] * 4) as primary,
        ScriptedLLM([Reply("Answer from the fallback.")]) as second,
    ):
        hermes_home.mkdir()
        (hermes_home / "config.yaml").write_text(
            "model:\n  provider: custom\n  default: test-model\n"
            f"  base_url: {primary.openai_base_url}\n"
            "fallback_providers:\n  - provider: anthropic\n    model: claude-sonnet-4-6\n"
            f"    base_url: {second.anthropic_base_url}\n"
        )
        result = hermes("chat", "-q", "hello", env={"ANTHROPIC_API_KEY": "test-key"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Answer from the fallback."
    said = [line for line in result.stderr.splitlines() if "going on with" in line]
    assert len(said) == 1 and "claude-sonnet-4-6 via anthropic" in said[0]
    assert "HTTP 503" in said[0]


def test_gateway_falls_back_in_every_conversation(hermes_home: Path, tmp_path: Path) -> None:
    from test_gateway import KEY, Gateway

    port = free_port()
    with (
        ScriptedLLM([Error(404), Error(404)]) as primary,
        ScriptedLLM([Reply("For alice."), Reply("For bob.")]) as second,
    ):
        hermes_home.mkdir()
        config = {
            "model": {
                "provider": "custom",
                "base_url": primary.openai_base_url,
                "default": "test-model",
            },
            "fallback_providers": [
                {
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-6",
                    "base_url": second.anthropic_base_url,
                }
            ],
            "gateway": {
                "platforms": {"api_server": {"enabled": True, "host": "127.0.0.1", "port": port}}
            },
        }
        (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
        (hermes_home / ".env").write_text(f"API_SERVER_KEY={KEY}\nANTHROPIC_API_KEY=test-key\n")
        workdir = tmp_path / "work"
        workdir.mkdir()
        gateway = Gateway(hermes_home, port, workdir).wait_ready()
        try:
            client = gateway.client()
            answers = [
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], user=user
                )
                .choices[0]
                .message.content
                for user in ("alice", "bob")
            ]
        finally:
            gateway.kill()
        log = gateway.output()
    assert answers == ["For alice.", "For bob."]
    assert log.count("going on with claude-sonnet-4-6 via anthropic") == 2
    with StateDB(hermes_home / "state.db") as db:
        for session in db.list_sessions():
            assert [p for p, _, _ in db.answered_by(session.id)] == ["anthropic"]


def test_repl_says_it_fell_back_and_usage_splits_the_replies(
    hermes_home: Path, tmp_path: Path
) -> None:
    with (
        ScriptedLLM([Error(404), Reply("Primary again.")]) as primary,
        ScriptedLLM([Reply("From the fallback.", usage=(1000, 100))]) as second,
    ):
        hermes_home.mkdir()
        (hermes_home / "config.yaml").write_text(
            "model:\n  provider: custom\n  default: test-model\n"
            f"  base_url: {primary.openai_base_url}\n"
            "fallback_providers:\n  - provider: anthropic\n    model: claude-sonnet-4-6\n"
            f"    base_url: {second.anthropic_base_url}\n"
        )
        child = pexpect.spawn(
            str(HERMES),
            ["chat"],
            env=clean_env(
                hermes_home, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", ANTHROPIC_API_KEY="k"
            ),
            cwd=str(tmp_path),
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 200),
        )
        child.expect_exact(PROMPT)
        child.sendline("hello")
        child.expect_exact("going on with claude-sonnet-4-6 via anthropic")
        child.expect_exact("From the fallback.")
        child.expect_exact(PROMPT)
        child.sendline("again")
        child.expect_exact("Primary again.")
        child.expect_exact(PROMPT)
        child.sendline("/usage")
        child.expect_exact("replies: claude-sonnet-4-6 via anthropic ×1 ($")
        child.expect_exact("test-model via custom ×1")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    with StateDB(hermes_home / "state.db") as db:
        session = db.latest_session()
    assert session is not None
    shown = subprocess.run(
        [str(HERMES), "sessions", "show", session.id],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "claude-sonnet-4-6 via anthropic" in shown.stdout
    assert "test-model via custom" in shown.stdout
    exported = subprocess.run(
        [str(HERMES), "sessions", "export", session.id, "--format", "jsonl"],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    replies = [json.loads(line) for line in exported.stdout.splitlines()]
    by = [(r.get("provider"), r.get("model")) for r in replies if r.get("provider")]
    assert by == [("anthropic", "claude-sonnet-4-6"), ("custom", "test-model")]
