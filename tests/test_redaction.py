"""Redaction: secrets never reach state.db, the screen or the model."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from hermes_agent import redact as redaction
from hermes_agent.cli.terminal_ui import TerminalEvents
from hermes_agent.config.loader import load_config
from hermes_agent.providers import settings as provider_settings
from hermes_agent.state.db import StateDB
from hermes_agent.tools.registry import Tool, ToolContext, builtin_registry
from peers.llm_server import Reply, ScriptedLLM

ENV_SECRET = "openrouter-value-ABCDEF123456"
AUTH_SECRET = "auth-json-refresh-987654321"
TOKEN_SECRET = "mcp-access-token-55555abcdef"
SHAPED = "ghp_" + "A1b2C3d4E5" * 4  # A GitHub token nobody told us about.


def seed(home: Path) -> None:
    home.mkdir(exist_ok=True)
    (home / ".env").write_text(f"OPENROUTER_API_KEY={ENV_SECRET}\nSHORT=abc\n")
    (home / "auth.json").write_text(json.dumps({"providers": {"x": {"refresh": AUTH_SECRET}}}))
    (home / "mcp-tokens").mkdir()
    (home / "mcp-tokens" / "server.json").write_text(json.dumps({"access_token": TOKEN_SECRET}))


ALL = (ENV_SECRET, AUTH_SECRET, TOKEN_SECRET, SHAPED)


def test_known_values_and_shapes_are_replaced(hermes_home: Path) -> None:
    seed(hermes_home)
    text = " | ".join(ALL) + " | short abc stays | sk-ant-" + "x" * 30
    cleaned = redaction.redact(text)
    assert all(secret not in cleaned for secret in ALL)
    assert "short abc stays" in cleaned, "values under 8 characters are not treated as secrets"
    assert "sk-ant-" not in cleaned
    assert cleaned.count(redaction.MASK) == 5


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-" + "a" * 40,
        "xoxb-1234567890-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "AIza" + "B" * 35,
        "123456789:" + "C" * 35,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n"
        "-----END OPENSSH PRIVATE KEY-----",
    ],
)
def test_well_known_shapes(secret: str, hermes_home: Path) -> None:
    assert secret not in redaction.redact(f"value: {secret} end")


def test_bearer_header() -> None:
    assert redaction.Redactor()("Authorization: Bearer abcdefghijklmnop1234") == (
        "Authorization: Bearer [REDACTED]"
    )


def test_new_secret_is_covered_at_once(hermes: Runner, hermes_home: Path) -> None:
    assert redaction.redact("later-added-secret-xyz") == "later-added-secret-xyz"
    assert hermes("config", "set", "LATER_TOKEN", "later-added-secret-xyz").returncode == 0
    assert redaction.redact("later-added-secret-xyz") == redaction.MASK


def test_logging_formatter(hermes_home: Path) -> None:
    seed(hermes_home)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key=%s", (ENV_SECRET,), None)
    assert redaction.RedactingFormatter("%(message)s").format(record) == "key=[REDACTED]"


def test_disabled_by_config() -> None:
    redaction.set_enabled(False)
    try:
        assert redaction.redact("sk-proj-" + "a" * 40) == "sk-proj-" + "a" * 40
    finally:
        redaction.set_enabled(True)


async def _leaky(args: dict[str, Any], ctx: ToolContext) -> str:
    return "here are the secrets: " + ", ".join(ALL)


LEAKY = Tool(
    name="leak",
    toolset="test",
    description="Print every secret.",
    parameters={"type": "object", "properties": {}},
    handler=_leaky,
)


def test_session_where_a_tool_prints_secrets_stores_and_shows_none(
    hermes_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hermes_agent.agent.loop import Agent

    seed(hermes_home)
    steps = [Reply(tool_calls=[("leak", {})]), Reply(f"The first one was {SHAPED}.")]
    with ScriptedLLM(steps) as llm:
        config = load_config()
        settings = provider_settings.resolve(
            config, provider="custom", model="m", base_url=llm.openai_base_url
        )
        db = StateDB()
        sid = db.create_session(source="cli", model="m", cwd=str(hermes_home))
        events = TerminalEvents(plain=True, verbose=True)
        agent = Agent(
            provider=provider_settings.build(settings),
            tools=[*builtin_registry().select(["all"]), LEAKY],
            config=config,
            db=db,
            session_id=sid,
            cwd=hermes_home,
            events=events,
        )

        async def go() -> None:
            await agent.run(f"my key is {ENV_SECRET}; use the leak tool")
            await agent.provider.aclose()

        asyncio.run(go())
        events.finish()
        db.close()
    shown = capsys.readouterr()
    stored = b"".join(p.read_bytes() for p in hermes_home.glob("state.db*"))
    sent = json.dumps([r.body for r in llm.requests])
    for secret in ALL:
        assert secret not in shown.out + shown.err, "shown on screen"
        assert secret.encode() not in stored, "stored in state.db"
    for secret in (AUTH_SECRET, TOKEN_SECRET, SHAPED):
        assert secret not in sent, "a tool result carried it to the model"
    assert "[REDACTED]" in shown.out
    logs = hermes_home / "logs"
    assert not logs.exists() or all(
        secret.encode() not in p.read_bytes()
        for p in logs.rglob("*")
        if p.is_file()
        for secret in ALL
    )
