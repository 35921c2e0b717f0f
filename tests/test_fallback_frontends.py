"""A fallback provider is said to the user in the gateway's chats and in the editor (ACP).

Real front ends against real peers: ``hermes gateway run`` with the loopback
Telegram Bot API, ``hermes acp`` driven by the official ACP client SDK; the
primary model is a ScriptedLLM on the OpenAI wire format, the fallback a second
one on the Anthropic wire format. In the editor's test the primary's base URL
carries a password, which the line the editor is shown must not repeat (the
gateway's aiohttp transport refuses such URLs outright).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import acp
import pytest
import yaml

from acp_client import Editor, hermes_acp, write_config
from conftest import Runner
from gateway_process import GatewayProcess
from hermes_agent.state.db import StateDB
from peers.llm_server import Error, Reply, ScriptedLLM
from peers.telegram_api import TelegramAPI
from test_gateway_telegram import ALICE, configure, llm, start, tg, workdir  # noqa: F401

#: The password in the primary's base URL: config.yaml is no secret file, so only
#: the error messages' own care keeps it out of chats, editors and logs.
URL_SECRET = "Url5ecretPassw0rd"
NOTE = "↪ test-model via custom failed (HTTP 404); going on with claude-sonnet-4-6 via anthropic"


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://hermes:{URL_SECRET}@", 1)


def add_fallback(home: Path, second: ScriptedLLM) -> None:
    config = yaml.safe_load((home / "config.yaml").read_text())
    config["fallback_providers"] = [
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4-6",
            "base_url": second.anthropic_base_url,
        }
    ]
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    with (home / ".env").open("a") as env:
        env.write("ANTHROPIC_API_KEY=test-key\n")


@pytest.mark.peer("telegram_api")
def test_a_telegram_chat_is_told_when_a_fallback_answered(
    start: Callable[..., GatewayProcess],  # noqa: F811
    tg: TelegramAPI,  # noqa: F811
    llm: ScriptedLLM,  # noqa: F811
    hermes_home: Path,
    hermes: Runner,
) -> None:
    # The primary: gone (404) for the first message, back for the second, gone for the
    # third (when the fallback fails too), for the /background run and the scheduled job.
    llm.add(Error(404), Reply("Primary again."), Error(404), Error(404), Error(404))
    with ScriptedLLM(
        [
            Reply("From the fallback.", usage=(1000, 100)),
            Error(404),
            Reply("Counted."),
            Reply("Sunny."),
        ]
    ) as second:
        configure(hermes_home, llm, tg)
        add_fallback(hermes_home, second)
        gateway = start()

        def say(text: str) -> str:
            before = len(tg.sent(ALICE))
            tg.user_message(ALICE, text, username="alice")
            (reply,) = tg.wait_for(lambda: tg.sent(ALICE)[before:])
            return str(reply["text"])

        assert say("hi") == f"{NOTE}\nFrom the fallback."
        # The next turn starts with the configured provider, and says nothing more.
        assert say("again") == "Primary again."
        # Every provider failed: the switch is said with the failure.
        failed = say("and now?")
        assert failed.startswith("Sorry, I could not answer: ")
        assert "claude-sonnet-4-6" in failed.splitlines()[0]
        assert failed.splitlines()[-1] == NOTE
        # A /background run's notice says it too.
        tg.user_message(ALICE, "/background count the files", username="alice")
        (done,) = tg.wait_for(
            lambda: [m for m in tg.sent(ALICE) if m["text"].startswith("Background task done")]
        )
        assert done["text"].splitlines()[1:] == [NOTE, "Counted."]
        # A scheduled job's result, delivered to the chat, says it (without the status:
        # it is read from state.db's record of who wrote each reply).
        added = hermes(
            "cron",
            "add",
            "-s",
            "in 1s",
            "-n",
            "weather",
            "-p",
            "weather?",
            "--deliver",
            f"telegram:{ALICE}",
        )
        assert added.returncode == 0, added.stderr
        (scheduled,) = tg.wait_for(
            lambda: [m for m in tg.sent(ALICE) if m["text"].startswith("weather (scheduled)")]
        )
        assert scheduled["text"].splitlines() == [
            "weather (scheduled)",
            "↪ test-model via custom failed; going on with claude-sonnet-4-6 via anthropic",
            "",
            "Sunny.",
        ]
        assert gateway.terminate() == 0
    output = gateway.output()
    # Logged in full (the error as the provider gave it) each time: three turns fell back.
    logged = re.findall(r"inbound \d+: test-model via custom failed \(model 'test-model'", output)
    assert len(logged) == 3
    with StateDB(hermes_home / "state.db") as db:
        route = db.route_and_activity("telegram", str(ALICE), "")
        assert route is not None
        by = db.answered_by(route[0])
        # The reply stored for a resend after a crash says it too.
        rows = [db.get_inbound(n) for n in range(1, 4)]
    assert [(p, m) for p, m, _ in by] == [
        ("anthropic", "claude-sonnet-4-6"),
        ("custom", "test-model"),
    ]
    assert by[0][2] is not None and by[0][2] > 0  # Its cost, at the fallback's price.
    assert rows[0] is not None and rows[0].reply == f"{NOTE}\nFrom the fallback."
    assert rows[1] is not None and rows[1].reply == "Primary again."
    (result_file,) = (hermes_home / "cron" / "output").glob("*/*.md")
    assert (
        "- providers: test-model via custom failed; going on with claude-sonnet-4-6 via anthropic"
        in result_file.read_text().splitlines()
    )


@pytest.mark.peer("scripted")
def test_the_editor_is_told_when_a_fallback_answered(hermes_home: Path, tmp_path: Path) -> None:
    editor = Editor()
    workspace = tmp_path / "project"
    workspace.mkdir()

    async def scenario() -> tuple[str, str]:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id

            async def say(text: str) -> str:
                before = len(editor.text(sid))
                await conn.prompt(session_id=sid, prompt=[acp.text_block(text)])
                return editor.text(sid)[before:]

            return await say("hello"), await say("again")

    with (
        ScriptedLLM([Error(404), Reply("Primary again.")]) as primary,
        ScriptedLLM([Reply("From the fallback.")]) as second,
    ):
        write_config(hermes_home, with_credentials(primary.openai_base_url))
        (hermes_home / "config.yaml").write_text(
            (hermes_home / "config.yaml").read_text()
            + "fallback_providers:\n  - provider: anthropic\n    model: claude-sonnet-4-6\n"
            f"    base_url: {second.anthropic_base_url}\n"
        )
        (hermes_home / ".env").write_text("ANTHROPIC_API_KEY=test-key\n")
        first, again = asyncio.run(scenario())
        shown_url = primary.openai_base_url
    # Its own message (a notice), then the answer; the endpoint is named without its password.
    notice, _, answer = first.strip().partition("]")
    assert notice.startswith("[hermes: test-model via custom failed (model 'test-model' not found")
    assert f"at {shown_url} (HTTP 404" in notice
    assert notice.endswith("going on with claude-sonnet-4-6 via anthropic")
    assert answer.strip() == "From the fallback."
    assert URL_SECRET not in first
    assert again == "Primary again."


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pa55word@127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        ("https://proxy.example/v1?key=abc123&x=1#frag", "https://proxy.example/v1"),
        ("http://token@[::1]:11434/v1", "http://[::1]:11434/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ],
)
def test_error_messages_name_a_base_url_without_its_credentials(url: str, shown: str) -> None:
    from hermes_agent.providers.base import shown_url

    assert shown_url(url) == shown
