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


# --- every spelling of a known value ---------------------------------------------------

SPECIAL = 'a"b\\c/d+e=f-G7h8J9k0'  # A secret with every character that changes a spelling.


def _spelt(secret: str) -> dict[str, str]:
    """Texts in which a command or a serialiser put ``secret``, by what made them."""
    import base64
    import subprocess
    import urllib.parse

    data = secret.encode()
    shell = {
        "base64 (wrapped at 76)": ["base64"],
        "xxd -p": ["xxd", "-p"],
        "od -An -tx1": ["od", "-An", "-tx1"],
    }
    made = {
        name: subprocess.run(argv, input=b"0123456789" * 5 + data, capture_output=True).stdout
        for name, argv in shell.items()
    }
    spelt = {name: out.decode() for name, out in made.items()}
    spelt.update(
        {
            "raw": f"value {secret} end",
            "json": json.dumps({"k": secret}),
            "json ascii": json.dumps({"k": secret + "\u00e9"}, ensure_ascii=True),
            "json twice": json.dumps(json.dumps({"k": secret})),
            "python repr": repr({"k": secret}),
            "quote": urllib.parse.quote(secret, safe=""),
            "quote path": urllib.parse.quote(secret),
            "quote_plus": urllib.parse.urlencode({"q": secret}),
            "every byte %XX": "".join(f"%{b:02X}" for b in data),
            "hex": data.hex(),
            "HEX": "0x" + data.hex().upper(),
            "\\x escapes": "".join(f"\\x{b:02x}" for b in data),
            "spaced hex": " ".join(f"{b:02x}" for b in data),
        }
    )
    for offset in range(3):
        stream = b"p" * offset + data + b"tail"
        spelt[f"base64 at offset {offset}"] = base64.b64encode(stream).decode()
        spelt[f"urlsafe base64 at offset {offset}"] = base64.urlsafe_b64encode(stream).decode()
    return spelt


@pytest.mark.parametrize("how", sorted(_spelt(SPECIAL)))
def test_every_spelling_of_a_known_value_is_replaced(how: str) -> None:
    import base64

    text = _spelt(SPECIAL)[how]
    cleaned = redaction.Redactor([SPECIAL])(text)
    assert redaction.MASK in cleaned
    data = SPECIAL.encode()
    for piece in (SPECIAL, data.hex(), data.hex().upper(), base64.b64encode(data).decode()[:20]):
        assert piece not in cleaned.replace("\n", "").replace(" ", "")


def test_ordinary_text_is_left_alone() -> None:
    import random
    import string

    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "+/=-_"
    secrets = ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(10)]
    source = Path(redaction.__file__).read_text()
    assert redaction.Redactor(secrets)(source) == source


def test_structures_are_redacted_before_serialisation(hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / ".env").write_text(f"QUOTED_TOKEN='{SPECIAL.replace(chr(92), chr(92) * 2)}'\n")
    data = {"args": [SPECIAL, {"nested": f"x{SPECIAL}y"}], SPECIAL: 1, "n": 3, "t": (SPECIAL,)}
    cleaned = redaction.redact_data(data)
    assert cleaned == {
        "args": ["[REDACTED]", {"nested": "x[REDACTED]y"}],
        "[REDACTED]": 1,
        "n": 3,
        "t": ["[REDACTED]"],
    }
    assert SPECIAL not in json.dumps(cleaned) and 'a\\"b' not in json.dumps(cleaned)
    # JSON text whose escapes spell the value with \u sequences is decoded first.
    sneaky = '{"cmd": "' + "".join(f"\\u{ord(c):04x}" for c in SPECIAL) + '"}'
    assert json.loads(redaction.redact_json_text(sneaky)) == {"cmd": "[REDACTED]"}
    untouched = '{"cmd":  "ls -la"}'
    assert redaction.redact_json_text(untouched) == untouched


def test_a_streamed_secret_never_shows_a_piece(hermes_home: Path) -> None:
    import subprocess

    hermes_home.mkdir()
    (hermes_home / ".env").write_text(f"STREAM_TOKEN={ENV_SECRET}\n")
    wrapped = subprocess.run(
        ["base64"], input=b"x" * 70 + ENV_SECRET.encode() + b"y" * 70, capture_output=True
    ).stdout.decode()
    text = f"The key is {ENV_SECRET}, encoded:\n{wrapped}\nand that was all of it.\n"
    for size in range(1, 12):
        stream = redaction.StreamRedactor()
        released = ""
        for at in range(0, len(text), size):
            released += stream.feed(text[at : at + size])
            assert ENV_SECRET[:6] not in released
            assert "b3BlbnJvdXRlci1" not in released.replace("\n", "")  # Its base64 start.
        released += stream.finish()
        assert released == redaction.redact(text)


# --- outbound requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://collect.example/?k=" + ENV_SECRET,
        "https://collect.example/?k=" + ENV_SECRET.upper(),
        "https://" + ENV_SECRET.replace("-", ".") + ".collect.example/",
        "https://collect.example/%25" + "%25".join(f"{b:02x}" for b in ENV_SECRET.encode()),
        "https://u:" + ENV_SECRET + "@collect.example/",
        "https://collect.example/#" + ENV_SECRET.encode().hex(),
        "https://collect.example/p/"
        + __import__("base64").b64encode(b"z" + ENV_SECRET.encode()).decode(),
        "https://collect.example/?a=" + "-".join(ENV_SECRET[i : i + 3] for i in range(0, 30, 3)),
    ],
)
def test_outbound_requests_carrying_a_secret_are_refused(url: str, hermes_home: Path) -> None:
    seed(hermes_home)
    with pytest.raises(redaction.SecretInRequestError) as caught:
        redaction.refuse_if_secret(url, what="web_fetch")
    assert "OPENROUTER_API_KEY (from .env)" in str(caught.value)
    assert ENV_SECRET not in str(caught.value)


def test_outbound_headers_body_and_own_address(hermes_home: Path) -> None:
    seed(hermes_home)
    webhook = "https://hooks.example.com/services/T0/B0/" + "W" * 24
    with (hermes_home / ".env").open("a") as env:
        env.write(f"SLACK_WEBHOOK_URL={webhook}\n")
    ok = redaction.refuse_if_secret
    ok("https://example.com/search?q=tides", [("User-Agent", "hermes")], b'{"q": "moon"}')
    ok(webhook, [], b'{"text": "deployed"}')  # A webhook URL goes to its own address.
    with pytest.raises(redaction.SecretInRequestError):
        ok("https://evil.example/?u=" + webhook)
    with pytest.raises(redaction.SecretInRequestError):
        ok("https://example.com/", [("X-Key", ENV_SECRET)])
    with pytest.raises(redaction.SecretInRequestError):
        ok("https://example.com/", [], json.dumps({"q": AUTH_SECRET}).encode())
    with pytest.raises(redaction.SecretInRequestError):
        ok(webhook, [], json.dumps({"text": ENV_SECRET}).encode())
    # The switch for reading redacted output never lets a secret leave.
    redaction.set_enabled(False)
    try:
        with pytest.raises(redaction.SecretInRequestError):
            ok("https://example.com/?k=" + ENV_SECRET)
    finally:
        redaction.set_enabled(True)


def test_outbound_secret_made_mostly_of_symbols() -> None:
    """Letters and digits alone would be too short to compare: the spellings are used."""
    redactor = redaction.Redactor({"p@$$w0rd!!#": "DB_PASSWORD (from .env)"})
    assert redactor.request_secret("https://x.example/?a=p%40%24%24w0rd%21%21%23") is not None
    assert redactor.request_secret("https://x.example/", [("X-A", "p@$$w0rd!!#")]) is not None
    assert redactor.request_secret("https://x.example/?a=pw0rd") is None
