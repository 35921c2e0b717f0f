"""The Telegram platform: real `hermes gateway run` processes against a loopback Bot API.

Each test starts ``hermes gateway run`` in a subprocess with a fresh
HERMES_HOME whose Telegram ``base_url`` points at :class:`TelegramAPI`
(``tests/peers/telegram_api.py``: the Bot API's wire protocol as documented,
served from a thread of this process) and whose model is the loopback
ScriptedLLM. The gateway talks to it through python-telegram-bot exactly as
it would talk to api.telegram.org; the tests play the users through the
server's hooks and read what the bot sent.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import Runner
from gateway_process import GatewayProcess
from hermes_agent.gateway.platforms.telegram import markdown_to_html
from hermes_agent.state.db import StateDB
from peers.llm_server import RecordedRequest, Reply, ScriptedLLM
from peers.telegram_api import DEFAULT_TOKEN, EntityError, TelegramAPI, parse_entities

pytestmark = pytest.mark.peer("telegram_api")

START_TIMEOUT = 30.0
ALICE = 4242  # A private chat: the chat id is the user's id.


def user_text(request: RecordedRequest) -> str:
    """The last user message the model was sent."""
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


@pytest.fixture
def tg() -> Iterator[TelegramAPI]:
    with TelegramAPI() as server:
        yield server


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def configure(
    home: Path,
    llm: ScriptedLLM,
    tg: TelegramAPI,
    *,
    token: str | None = DEFAULT_TOKEN,
    gateway: dict[str, Any] | None = None,
    **telegram: Any,
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "enabled": True,
        "base_url": tg.base_url,
        "poll_timeout": 1,
        "allowed_users": [ALICE],
        **telegram,
    }
    config: dict[str, Any] = {
        "model": {"provider": "custom", "base_url": llm.openai_base_url, "default": "test-model"},
        "gateway": {
            "max_concurrent_sessions": 4,
            "shutdown_timeout": 5,
            "send_retries": 3,
            "reconnect_max_delay": 0.5,
            "platforms": {"telegram": settings},
            **(gateway or {}),
        },
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    env = f"OPENAI_API_KEY=test-key\nTELEGRAM_BOT_TOKEN={token}\n" if token else ""
    (home / ".env").write_text(env)


@pytest.fixture
def start(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM, tg: TelegramAPI
) -> Iterator[Callable[..., GatewayProcess]]:
    """start(**telegram_settings) -> a ready gateway (configured on first use)."""
    started: list[GatewayProcess] = []

    def go(*, ready: bool = True, **settings: Any) -> GatewayProcess:
        if not (hermes_home / "config.yaml").exists():
            configure(hermes_home, llm, tg, **settings)
        process = GatewayProcess(hermes_home, workdir)
        started.append(process)
        return process.wait_ready() if ready else process

    yield go
    for process in started:
        process.kill()


def replies_to(tg: TelegramAPI, chat_id: int, message_id: int) -> list[dict[str, Any]]:
    return [
        m for m in tg.sent(chat_id) if m.get("reply_to_message", {}).get("message_id") == message_id
    ]


# --- Markdown to Telegram HTML (one construct each) ---------------------------------------


def check_html(source: str) -> str:
    """Telegram's parser accepts it; returns the visible text."""
    visible, _ = parse_entities(source, "HTML")
    return visible


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold** and __also__", "<b>bold</b> and <b>also</b>"),
        ("*italic* and _this_", "<i>italic</i> and <i>this</i>"),
        ("snake_case_name and 2*3*4 stay", "snake_case_name and 2*3*4 stay"),
        ("~~gone~~", "<s>gone</s>"),
        ("run `ls -l <dir>` now", "run <code>ls -l &lt;dir&gt;</code> now"),
        ("`**not bold**`", "<code>**not bold**</code>"),
        (
            "```python\nif a < b and c > d & e:\n    pass\n```",
            '<pre><code class="language-python">if a &lt; b and c &gt; d &amp; e:\n'
            "    pass</code></pre>",
        ),
        ("```\nplain <code>\n```", "<pre>plain &lt;code&gt;</pre>"),
        (
            "see [the docs](https://example.org/a?b=1&c=2)",
            'see <a href="https://example.org/a?b=1&amp;c=2">the docs</a>',
        ),
        ("[**bold link**](https://x.org)", '<a href="https://x.org"><b>bold link</b></a>'),
        ("[not a link](javascript:alert(1))", "[not a link](javascript:alert(1))"),
        ("<https://example.org>", '<a href="https://example.org">https://example.org</a>'),
        ("# Title\n## **Sub**", "<b>Title</b>\n<b>Sub</b>"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("> quoted *text*\n> more", "<blockquote>quoted <i>text</i>\nmore</blockquote>"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("\\*not italic\\* and 1\\. item", "*not italic* and 1. item"),
        ("**unclosed bold", "**unclosed bold"),
        ("**a *b** c*", "<b>a *b</b> c*"),
    ],
)
def test_markdown_to_html(markdown: str, expected: str) -> None:
    html = markdown_to_html(markdown)
    assert html == expected
    check_html(html)


def test_markdown_to_html_unclosed_code_block_is_closed() -> None:
    html = markdown_to_html("before\n```sh\necho <hi>")
    assert html == 'before\n<pre><code class="language-sh">echo &lt;hi&gt;</code></pre>'
    check_html(html)


def test_visible_text_is_never_longer_than_the_markdown() -> None:
    """What lets the gateway split the Markdown at Telegram's 4096-character limit."""
    samples = [
        "**b** _i_ `c` [l](https://x.org) # h & < > ~~s~~ > q",
        "# Heading\n- item & more\n```js\nlet a = b < c;\n```\n> quote\n1. one",
        "plain text with &amp; entities written out, and \\*escapes\\*",
    ]
    for sample in samples:
        assert len(check_html(markdown_to_html(sample))) <= len(sample)


def test_the_loopback_server_rejects_what_telegram_rejects() -> None:
    with pytest.raises(EntityError, match='end tag corresponding to start tag "b"'):
        parse_entities("<b>open", "HTML")
    with pytest.raises(EntityError, match='Unsupported start tag "foo"'):
        parse_entities("a <foo> b", "HTML")
    with pytest.raises(EntityError, match="Unmatched end tag"):
        parse_entities("<b><i>x</b></i>", "HTML")
    with pytest.raises(EntityError, match=r"Character '\.' is reserved"):
        parse_entities("Hello.", "MarkdownV2")
    with pytest.raises(EntityError, match="Can't find end of Bold entity"):
        parse_entities("*open", "MarkdownV2")
    assert parse_entities("😀 <b>x</b>", "HTML") == (
        "😀 x",
        [{"type": "bold", "offset": 3, "length": 1}],  # UTF-16 offsets.
    )


def test_the_loopback_server_numbers_and_edits_messages_as_telegram_does(
    tg: TelegramAPI,
) -> None:
    """Private chats share the bot's id sequence; the no-op edit tells whose a message is."""

    def call(method: str, **params: Any) -> dict[str, Any]:
        return httpx.post(f"{tg.base_url}{tg.token}/{method}", json=params).json()

    alice = tg.user_message(ALICE, "hi")
    bob = tg.user_message(77, "hello")
    group = tg.user_message(-1009, "@hermes_test_bot hey", chat_type="supergroup")
    assert (alice.message_id, bob.message_id, group.message_id) == (1, 2, 1)
    sent = call("sendMessage", chat_id=ALICE, text="answer")["result"]
    assert sent["message_id"] == 3
    not_modified = call("editMessageReplyMarkup", chat_id=ALICE, message_id=3)
    assert not_modified["error_code"] == 400
    assert not_modified["description"].startswith("Bad Request: message is not modified")
    assert call("editMessageReplyMarkup", chat_id=ALICE, message_id=2)["description"] == (
        "Bad Request: message to edit not found"  # Bob's message, in another chat.
    )
    assert call("editMessageReplyMarkup", chat_id=ALICE, message_id=1)["description"] == (
        "Bad Request: message can't be edited"  # Alice's own.
    )
    keyboard = {"inline_keyboard": [[{"text": "ok", "callback_data": "ok"}]]}
    edited = call("editMessageReplyMarkup", chat_id=ALICE, message_id=3, reply_markup=keyboard)
    assert edited["result"]["reply_markup"] == keyboard
    assert call("editMessageReplyMarkup", chat_id=ALICE, message_id=3)["ok"] is True


# --- messages and replies -------------------------------------------------------------------


def test_a_message_gets_a_formatted_reply(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Hello **Alice**, run `ls` & see."))
    # A webhook left on the bot would make getUpdates fail (409): it is removed.
    hook = httpx.post(f"{tg.base_url}{tg.token}/setWebhook", data={"url": "https://x.org/h"})
    assert hook.json() == {"ok": True, "result": True}
    gateway = start()
    sent = tg.user_message(ALICE, "hi there", username="alice")
    (reply,) = tg.wait_for(lambda: tg.sent(ALICE))
    assert reply["text"] == "Hello Alice, run ls & see."
    assert [e["type"] for e in reply["entities"]] == ["bold", "code"]
    assert reply["parse_mode"] == "HTML"
    assert reply["reply_to_message"]["message_id"] == sent.message_id
    assert user_text(llm.requests[-1]) == "hi there"
    assert tg.calls("sendChatAction")[0].params["action"] == "typing"
    # The update was confirmed (offset) once stored: nothing is left pending.
    tg.wait_for(lambda: not tg.pending_updates())
    assert tg.calls("getupdates")[0].status == 409
    assert tg.calls("deleteWebhook")
    assert gateway.terminate() == 0
    output = gateway.output()
    assert DEFAULT_TOKEN not in output and DEFAULT_TOKEN.split(":")[1] not in output
    assert "Traceback" not in output
    with StateDB(gateway.home / "state.db") as db:
        (session,) = db.list_sessions()
        assert session.source == "gateway:telegram"


def test_group_chats_topics_and_media(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    group = -1001234
    llm.add(*(Reply(f"answer {n}") for n in range(1, 7)))
    gateway = start(allowed_chats=[group])
    tg.user_message(group, "people talking among themselves", chat_type="supergroup")
    asked = tg.user_message(group, "@Hermes_Test_Bot what is 2+2?", chat_type="supergroup")
    tg.wait_for(lambda: len(tg.sent(group)) == 1)
    assert user_text(llm.requests[0]) == "what is 2+2?"
    bot_message = tg.sent(group)[0]
    assert bot_message["reply_to_message"]["message_id"] == asked.message_id
    # A reply to the bot's message is addressed to it, without a mention.
    tg.user_message(group, "and 3+3?", chat_type="supergroup", reply_to=bot_message["message_id"])
    tg.wait_for(lambda: len(tg.sent(group)) == 2)
    assert user_text(llm.requests[1]) == "and 3+3?"
    # A forum topic is a conversation of its own, answered in the topic.
    tg.user_message(group, "/status@hermes_test_bot", chat_type="supergroup", thread_id=77)
    tg.wait_for(lambda: len(tg.sent(group)) == 3)
    assert tg.sent(group)[2]["message_thread_id"] == 77
    assert user_text(llm.requests[2]) == "/status"
    assert "what is 2+2?" not in str(llm.requests[2].messages)  # Another session.
    # Media: the agent is told what it cannot see, with the caption when there is one.
    photo = [{"file_id": "AgAD", "file_unique_id": "u1", "width": 90, "height": 90}]
    tg.user_message(ALICE, None, photo=photo, caption="what is this?")
    tg.user_message(ALICE, None, sticker={"file_id": "CAAD", "emoji": "😀", "type": "regular"})
    tg.wait_for(lambda: len(tg.sent(ALICE)) == 2)
    assert "an image that cannot be shown to you" in user_text(llm.requests[3])
    assert user_text(llm.requests[3]).endswith("what is this?")
    assert "a sticker (😀)" in user_text(llm.requests[4])
    # Edits and service messages are not answered; bots are not answered.
    tg.inject({"edited_message": {"message_id": 1, "chat": {"id": ALICE, "type": "private"}}})
    tg.user_message(ALICE, None, new_chat_title="renamed")
    tg.user_message(ALICE, "I am a bot", user_id=5555, is_bot=True)
    tg.wait_for(lambda: not tg.pending_updates())
    time.sleep(0.5)
    assert len(tg.sent(ALICE)) == 2 and len(llm.requests) == 5
    assert gateway.terminate() == 0


def test_a_group_that_becomes_a_supergroup_keeps_its_conversation_and_access(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    group = -4321
    supergroup: list[int] = []

    def upgraded_meanwhile(request: RecordedRequest) -> Reply:
        supergroup.append(tg.migrate(group))  # While the second answer is written.
        return Reply("second answer")

    llm.add(Reply("first answer"), upgraded_meanwhile, Reply("third answer"))
    gateway = start(allowed_chats=[group])
    tg.user_message(group, "@hermes_test_bot first", chat_type="group")
    tg.wait_for(lambda: len(tg.sent(group)) == 1)
    tg.user_message(group, "@hermes_test_bot second", chat_type="group")
    # Sending to the old id is refused, saying where the group went: the answer goes there.
    (second,) = tg.wait_for(lambda: supergroup and tg.sent(supergroup[0]))
    assert second["text"] == "second answer"
    refused = [c for c in tg.calls("sendMessage") if c.status == 400]
    assert [c.description for c in refused] == [
        "Bad Request: group chat was upgraded to a supergroup chat"
    ]
    # The supergroup is let in (the allow-list names the old id) and it is one conversation.
    tg.user_message(supergroup[0], "@hermes_test_bot third", chat_type="supergroup")
    tg.wait_for(lambda: len(tg.sent(supergroup[0])) == 2)
    asked = [[m["content"] for m in r.messages if m["role"] == "user"] for r in llm.requests]
    assert asked[2] == ["first", "second", "third"]
    gateway.wait_for_log(f"the group {group} is now the supergroup {supergroup[0]}")
    assert gateway.terminate() == 0


def test_stranger_gets_a_pairing_code_and_approval_lets_them_in(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM, hermes: Runner
) -> None:
    stranger = 777
    llm.add(Reply("Welcome!"))
    gateway = start()
    tg.user_message(stranger, "hello?", first_name="Mallory")
    (notice,) = tg.wait_for(lambda: tg.sent(stranger))
    code = re.search(r"hermes gateway pair approve (\S+)", notice["text"])
    assert code is not None, notice["text"]
    assert llm.requests == []  # The model never saw the stranger's words.
    tg.user_message(stranger, "please?")  # No second code, no spam.
    tg.wait_for(lambda: not tg.pending_updates())
    time.sleep(0.3)
    assert len(tg.sent(stranger)) == 1
    approved = hermes("gateway", "pair", "approve", code.group(1))
    assert approved.returncode == 0, approved.stderr
    asked = tg.user_message(stranger, "now?")
    tg.wait_for(lambda: replies_to(tg, stranger, asked.message_id))
    assert replies_to(tg, stranger, asked.message_id)[0]["text"] == "Welcome!"
    assert user_text(llm.requests[0]) == "now?"
    assert gateway.terminate() == 0


def test_a_long_answer_is_split_within_the_limit(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    paragraphs = [f"Paragraph {n} has **bold** words & more. " * 12 for n in range(20)]
    code = "```python\n" + "\n".join(f"x_{n} = {n} < {n + 1}" for n in range(300)) + "\n```"
    answer = "\n\n".join([*paragraphs[:10], code, *paragraphs[10:]])
    assert len(answer) > 3 * 4096
    llm.add(Reply(answer))
    gateway = start()
    tg.user_message(ALICE, "write a lot")
    tg.wait_for(lambda: gateway.home.joinpath("state.db").exists() and sent_all(gateway))
    messages = tg.sent(ALICE)
    assert len(messages) >= 4
    assert all(len(m["text"]) <= 4096 for m in messages)
    assert all(m["parse_mode"] == "HTML" for m in messages)  # Every chunk was valid HTML.
    visible = "\n".join(m["text"] for m in messages)
    assert visible.count("Paragraph") == 20 * 12
    assert all(f"x_{n} = {n} < {n + 1}" in visible for n in range(300))
    # The code block cut in two is a code block on both sides of the cut.
    assert sum(1 for m in messages for e in m.get("entities", []) if e["type"] == "pre") >= 2
    assert gateway.terminate() == 0


def sent_all(gateway: GatewayProcess) -> bool:
    with StateDB(gateway.home / "state.db") as db:
        return (
            db.undelivered_inbound() == []
            and db.unfinished_inbound() == []
            and bool(db.list_sessions())
        )


# --- failures while sending ----------------------------------------------------------------


def test_rate_limit_retry_after_is_honoured(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("After the flood."))
    gateway = start()
    tg.fail_sends(1, status=429, retry_after=2)
    tg.user_message(ALICE, "hi")
    (reply,) = tg.wait_for(lambda: tg.sent(ALICE))
    assert reply["text"] == "After the flood."
    limited, delivered = tg.calls("sendMessage")
    assert limited.status == 429 and delivered.status == 200
    assert delivered.time - limited.time >= 2.0
    assert gateway.terminate() == 0


def test_a_permanent_failure_is_reported_to_the_user(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("This reply is refused."), Reply("Nobody gets this."))
    gateway = start()
    tg.fail_sends(1, status=400, description="Bad Request: message is too long")
    tg.user_message(ALICE, "hi")
    (notice,) = tg.wait_for(lambda: tg.sent(ALICE))
    assert "could not be delivered" in notice["text"]
    assert "message is too long" in notice["text"].lower()
    assert [c.status for c in tg.calls("sendMessage")] == [400, 200]  # Not retried.
    # A user who blocked the bot: one attempt, no retry storm, recorded as failed.
    tg.block(ALICE)
    tg.user_message(ALICE, "blocked")
    gateway.wait_for_log(r"could not tell the user either")
    assert [c.status for c in tg.calls("sendMessage")][2:] == [403, 403]
    assert gateway.terminate() == 0
    with StateDB(gateway.home / "state.db") as db:
        assert db.undelivered_inbound() == []


def test_refused_formatting_falls_back_to_plain_text(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Some **bold** text."))
    gateway = start()
    tg.fail_sends(
        1,
        status=400,
        description='Bad Request: can\'t parse entities: Unsupported start tag "x" at byte '
        "offset 5",
    )
    tg.user_message(ALICE, "hi")
    (reply,) = tg.wait_for(lambda: tg.sent(ALICE))
    assert reply["text"] == "Some **bold** text."
    assert reply["parse_mode"] is None
    assert gateway.terminate() == 0


# --- start-up errors ------------------------------------------------------------------------


def test_bad_or_missing_token_is_a_clear_error(
    hermes_home: Path, llm: ScriptedLLM, tg: TelegramAPI, hermes: Runner
) -> None:
    wrong = "987654321:AAwrong-token-that-telegram-never-issued"
    configure(hermes_home, llm, tg, token=wrong)
    result = hermes("gateway", "run")
    assert result.returncode == 1, result.stderr
    assert "telegram: the bot token was rejected (TELEGRAM_BOT_TOKEN in " in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert wrong.split(":")[1] not in result.stderr + result.stdout
    assert [c.status for c in tg.calls("getMe")] == [401]
    assert not (hermes_home / "gateway.pid").exists()

    configure(hermes_home, llm, tg, token=None)
    result = hermes("gateway", "run")
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and str(hermes_home / ".env") in result.stderr
    assert "Traceback" not in result.stderr

    # A value that cannot be a token (pasted badly) is refused before any network call.
    calls = len(tg.calls("getMe"))
    configure(hermes_home, llm, tg, token="my-bot-token")
    result = hermes("gateway", "run")
    assert result.returncode == 2
    assert "does not look like a bot token" in result.stderr
    assert "my-bot-token" not in result.stderr
    assert len(tg.calls("getMe")) == calls


# --- robustness -----------------------------------------------------------------------------


def test_malformed_updates_are_skipped(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Still here."))
    gateway = start()
    tg.inject({"message": {"text": "no ids at all"}})
    tg.inject({"message": "not an object"})
    tg.inject({"message": {"message_id": 5, "chat": {"type": "private"}, "text": "no chat id"}})
    tg.inject({})
    asked = tg.user_message(ALICE, "are you there?")
    tg.wait_for(lambda: tg.sent(ALICE))
    assert replies_to(tg, ALICE, asked.message_id)[0]["text"] == "Still here."
    tg.wait_for(lambda: not tg.pending_updates())  # Skipped ones were confirmed too.
    assert len(re.findall(r"skipped malformed update", gateway.output())) == 4
    assert gateway.terminate() == 0
    assert "Traceback" not in gateway.output()


def test_an_outage_is_survived(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Before."), Reply("After."))
    gateway = start()
    tg.user_message(ALICE, "one")
    tg.wait_for(lambda: tg.sent(ALICE))
    tg.outage(2, mode="502")  # The proxy in front answers for a backend that is away...
    gateway.wait_for_log(r"telegram polling: .*Bad Gateway \(502\); reconnecting in", count=2)
    tg.wait_for(lambda: not tg.down)
    tg.outage(4)  # ...then connections are refused: the listening socket is gone.
    time.sleep(0.5)
    asked = tg.user_message(ALICE, "two")  # Queued by Telegram meanwhile.
    gateway.wait_for_log(r"telegram polling: .*ConnectError.*reconnecting in", count=3, timeout=10)
    tg.wait_for(lambda: replies_to(tg, ALICE, asked.message_id), timeout=20)
    assert replies_to(tg, ALICE, asked.message_id)[0]["text"] == "After."
    assert gateway.terminate() == 0


def test_a_token_revoked_while_running_is_logged_and_retried(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Back."))
    gateway = start()
    tg.wait_for(lambda: tg.calls("getupdates"))
    tg.token = "123456789:AAH-a-new-token-from-botfather-revoke"  # /revoke in BotFather.
    gateway.wait_for_log(r"telegram: the bot token was rejected \(revoked\?", timeout=15)
    assert [c.status for c in tg.calls("getupdates")][-1] == 401
    tg.token = DEFAULT_TOKEN  # A blip after all: polling goes on by itself.
    asked = tg.user_message(ALICE, "still there?")
    tg.wait_for(lambda: replies_to(tg, ALICE, asked.message_id), timeout=20)
    assert gateway.terminate() == 0
    assert DEFAULT_TOKEN.split(":")[1] not in gateway.output()


def test_a_silent_poll_is_restarted_by_the_watchdog(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Woke up."))
    gateway = start()
    tg.wait_for(lambda: tg.calls("getupdates"))
    tg.hang_polls()  # The waiting poll never answers, not even with an error.
    hung_at = time.monotonic()
    asked = tg.user_message(ALICE, "hello?")
    tg.wait_for(lambda: replies_to(tg, ALICE, asked.message_id), timeout=30)
    # poll_timeout 1 + 5 s of silence, before the HTTP read timeout (1 + 15 s): the log
    # says the watchdog restarted it; the upper bound leaves room for a loaded machine.
    assert 5.0 <= time.monotonic() - hung_at < 30.0
    assert "telegram polling: nothing heard for 6 s" in gateway.output()
    assert gateway.terminate() == 0


# --- a chunk Telegram took but the gateway did not hear about ------------------------------

#: Three paragraphs too long to share a message: a reply of three chunks.
THREE_CHUNKS = "\n\n".join(f"Part {n}. " + "word " * 700 for n in (1, 2, 3))


def sends_to(tg: TelegramAPI, chat_id: int) -> list[Any]:
    return [
        c for c in tg.calls("sendMessage") if c.params.get("chat_id") in (chat_id, str(chat_id))
    ]


def parts(tg: TelegramAPI, chat_id: int) -> list[str]:
    return [m["text"].split(".", 1)[0] for m in tg.sent(chat_id)]


def killed_at_chunk_2(
    start: Callable[..., GatewayProcess],
    tg: TelegramAPI,
    llm: ScriptedLLM,
    fate: str,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """A three-chunk answer whose gateway is SIGKILLed while sending chunk 2, then ``fate``
    (see ``TelegramAPI.intercept_sends``); returns once that gateway is gone.
    ``meanwhile`` runs just before Telegram numbers chunk 2."""
    llm.add(Reply(THREE_CHUNKS))
    gateway = start()
    sends = itertools.count(1)

    def decide(params: Any) -> str:
        if next(sends) != 2:
            return "answer"
        os.kill(gateway.proc.pid, signal.SIGKILL)
        if meanwhile is not None:
            meanwhile()
        return fate

    tg.intercept_sends(decide)
    tg.user_message(ALICE, "write three parts")
    gateway.proc.wait(timeout=30)
    tg.intercept_sends(None)


def test_a_chunk_telegram_took_before_a_crash_is_not_sent_again(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    """Killed after Telegram took chunk 2 of 3, before the gateway heard: 3 messages in all."""
    killed_at_chunk_2(start, tg, llm, "unanswered")
    assert parts(tg, ALICE) == ["Part 1", "Part 2"]
    restarted = start()
    restarted.wait_for_log("chunk 2 of the reply to 4242:1 had arrived before the restart")
    tg.wait_for(lambda: sent_all(restarted))
    assert parts(tg, ALICE) == ["Part 1", "Part 2", "Part 3"]
    assert restarted.terminate() == 0
    assert len(llm.requests) == 1  # The answer was stored; it was not asked for again.


def test_a_chunk_telegram_took_is_found_however_many_unseen_messages_came_before_it(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    """Messages the gateway never saw took 300 ids between its mark and the chunk.

    Private chats share one sequence of ids, so a busy bot's chunk can be
    numbered far past what the gateway knew when it marked it (after a
    restart, say, with a backlog not yet read). The restarted gateway reads
    the backlog first and looks beyond it, skipping the ids it knows.
    """
    stranger = 777

    def busy() -> None:
        for n in range(300):
            tg.user_message(stranger, f"spam {n}", first_name="Mallory")

    killed_at_chunk_2(start, tg, llm, "unanswered", meanwhile=busy)
    assert parts(tg, ALICE) == ["Part 1", "Part 2"]
    restarted = start()
    restarted.wait_for_log("chunk 2 of the reply to 4242:1 had arrived before the restart")
    tg.wait_for(lambda: sent_all(restarted))
    assert parts(tg, ALICE) == ["Part 1", "Part 2", "Part 3"]
    # The stranger's 300 messages were known by then: not one of them was looked up.
    probed = {c.params.get("message_id") for c in tg.calls("editMessageReplyMarkup")}
    assert len(probed) < 70, len(probed)
    assert restarted.terminate() == 0


def test_a_chunk_telegram_took_is_looked_up_again_when_telegram_is_down_at_the_restart(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    """The lookup fails while Telegram is away; it is asked again before anything is resent."""
    killed_at_chunk_2(start, tg, llm, "unanswered")
    # Longer than a start waits to read the waiting updates before it checks (5 s).
    tg.outage(8.0)
    restarted = start(ready=False)
    restarted.wait_for_log("could not check whether a chunk arrived")
    restarted.wait_for_log("had arrived before the restart", timeout=60)
    tg.wait_for(lambda: sent_all(restarted), timeout=60)
    assert parts(tg, ALICE) == ["Part 1", "Part 2", "Part 3"]
    assert restarted.terminate() == 0


def test_a_chunk_lost_in_a_crash_is_sent_after_the_restart(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    """Killed while chunk 2 was on its way, before Telegram took it: sent by the next start."""
    killed_at_chunk_2(start, tg, llm, "lost")
    assert parts(tg, ALICE) == ["Part 1"]
    restarted = start()
    tg.wait_for(lambda: sent_all(restarted))
    assert parts(tg, ALICE) == ["Part 1", "Part 2", "Part 3"]
    assert "had arrived" not in restarted.output()
    # What the restart asked: each id after the mark, none of them a message of the bot.
    probes = tg.calls("editMessageReplyMarkup")
    assert probes and all("not found" in c.description for c in probes)
    assert restarted.terminate() == 0


def test_a_send_whose_answer_was_cut_off_is_checked_not_repeated(
    start: Callable[..., GatewayProcess], tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    """A connection cut after Telegram took the message: looked up, not sent twice."""
    llm.add(Reply("Only once."), Reply("Twice, since the first never got there."))
    gateway = start()
    fates = iter(["unanswered", "lost"])
    tg.intercept_sends(lambda params: next(fates, "answer"))
    first = tg.user_message(ALICE, "one")
    gateway.wait_for_log("the chunk had arrived after all")
    tg.wait_for(lambda: replies_to(tg, ALICE, first.message_id))
    second = tg.user_message(ALICE, "two")
    tg.wait_for(lambda: replies_to(tg, ALICE, second.message_id))
    tg.wait_for(lambda: sent_all(gateway))
    assert [m["text"] for m in tg.sent(ALICE)] == [
        "Only once.",
        "Twice, since the first never got there.",
    ]
    # The first: one send, then a lookup. The second: lost, looked up, sent again.
    assert [c.description or "ok" for c in sends_to(tg, ALICE)] == ["unanswered", "lost", "ok"]
    assert gateway.terminate() == 0


# --- exactly one reply per message, through SIGKILLs ------------------------------------------

KILL_CHATS = 20
KILL_MESSAGES = 1000
KILLS = 5


@pytest.mark.timeout(180)
def test_every_message_is_answered_once_through_sigkills(
    hermes_home: Path, workdir: Path, tg: TelegramAPI, llm: ScriptedLLM
) -> None:
    """1000 messages in 20 chats while the gateway is SIGKILLed 5 times at random moments.

    Messages keep arriving (at Telegram) while the gateway is down; every one
    must get exactly one reply, with the right text. Inbound: an update is
    confirmed to Telegram only after state.db holds it, and a redelivered one
    is recognised. Outbound: each kill lands while replies are being sent, so
    some chunks were accepted by Telegram and not yet recorded; the next start
    finds them through their delivery marks instead of sending them again.
    The report (``-s``) gives the figures, including how many chunks were
    found that way.
    """
    chats = [9000 + n for n in range(KILL_CHATS)]
    llm.add(*(lambda r: Reply(f"re: {user_text(r)}") for _ in range(3 * KILL_MESSAGES)))
    configure(
        hermes_home,
        llm,
        tg,
        allowed_users=chats,
        gateway={"max_concurrent_sessions": KILL_CHATS, "send_retries": 10},
    )
    # The agent's tools play no part here; without them a turn costs a third as much CPU
    # (the skills index is parsed per turn, the SDK transforms every tool schema).
    config = yaml.safe_load((hermes_home / "config.yaml").read_text())
    config["toolsets"] = []
    (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))

    rng = random.Random()
    expected: dict[tuple[int, int], str] = {}
    lock = threading.Lock()

    def users() -> None:
        for n in range(KILL_MESSAGES):
            chat = chats[n % KILL_CHATS]
            sent = tg.user_message(chat, f"m{n}")
            with lock:
                expected[(chat, sent.message_id)] = f"re: m{n}"
            time.sleep(0.015)

    def replies() -> int:
        return sum(len(tg.sent(c)) for c in chats)

    kills: list[float] = []
    timeline: list[str] = []
    started = time.monotonic()

    def mark(event: str) -> None:
        timeline.append(f"{time.monotonic() - started:.1f} {event} ({replies()} replies)")

    sender = threading.Thread(target=users, daemon=True)
    sender.start()
    process = GatewayProcess(hermes_home, workdir)
    processes = [process]
    try:
        for _ in range(KILLS):
            process.wait_ready()
            mark("ready")
            # A random moment while this gateway is sending answers.
            before = replies()
            tg.wait_for(lambda b=before: replies() > b, timeout=30, interval=0.01)
            time.sleep(rng.uniform(0.0, 1.5))
            os.kill(process.proc.pid, signal.SIGKILL)
            kills.append(time.monotonic())
            mark("killed")
            process.kill()
            process = GatewayProcess(hermes_home, workdir)
            processes.append(process)
        process.wait_ready()
        mark("ready")
        sender.join()
        mark("all sent")
        with contextlib.suppress(AssertionError):
            tg.wait_for(lambda: replies() >= KILL_MESSAGES, timeout=90, interval=0.2)
        mark("all answered")
        time.sleep(1.0)  # A reply sent twice would be sent by now.
        assert process.terminate() == 0
    finally:
        process.kill()
    elapsed = time.monotonic() - started
    process_logs = "".join(p.output() for p in processes)

    count: Counter[tuple[int, int]] = Counter()
    copies: dict[tuple[int, int], list[dict[str, Any]]] = {}
    wrong: list[str] = []
    for chat in chats:
        for message in tg.sent(chat):
            key = (chat, message["reply_to_message"]["message_id"])
            count[key] += 1
            copies.setdefault(key, []).append(message)
            if message["text"] != expected.get(key):
                wrong.append(f"{key}: {message['text']!r}, expected {expected.get(key)!r}")
    missing = [key for key in expected if count[key] == 0]
    twice = sorted(key for key, n in count.items() if n > 1)
    # A duplicate's copies, against the kills: how long before the kill that separates
    # them Telegram accepted the first one (for the report).
    gaps: list[float] = []
    for key in twice:
        accepted = [m["accepted_at"] for m in copies[key]]
        for earlier, later in itertools.pairwise(accepted):
            gaps.extend(k - earlier for k in kills if earlier <= k <= later)
    found = process_logs.count("had arrived before the restart")
    report = (
        f"{len(expected)} messages in {KILL_CHATS} chats, {KILLS} SIGKILLs, {elapsed:.1f} s: "
        f"{sum(count.values())} replies, {len(missing)} unanswered, {len(wrong)} wrong, "
        f"{len(twice)} answered more than once"
        + (
            f" (first copies {', '.join(f'{g * 1000:.0f}' for g in sorted(gaps))} ms before a kill)"
            if gaps
            else ""
        )
        + f"; {found} replies found already delivered after a restart"
    )
    print(report, "; ".join(timeline), sep="\n")
    if missing or twice:  # What the gateways said about settling and resending.
        for line in process_logs.splitlines():
            if re.search(r"WARNING|ERROR|could not|not read yet|undelivered|arrived", line):
                print(line[:300])
    assert len(kills) == KILLS
    assert not wrong, (report, wrong[:5])
    assert not missing, (report, missing[:5])
    assert not twice, report


# --- images ------------------------------------------------------------------------------


def _image_parts(request: RecordedRequest) -> list[tuple[str, tuple[int, int]]]:
    """(media type, pixel size) of every image part the model received."""
    import base64
    import io

    from PIL import Image

    found = []
    for message in request.messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            if part.get("type") == "image_url":
                head, _, data = part["image_url"]["url"].partition(",")
                with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                    found.append((head[5:].split(";")[0], image.size))
    return found


def _jpeg(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 160, 90)).save(out, "JPEG")
    return out.getvalue()


def test_a_photo_reaches_the_model_as_an_image_even_through_a_sigkill(
    hermes_home: Path,
    workdir: Path,
    start: Callable[..., GatewayProcess],
    tg: TelegramAPI,
    llm: ScriptedLLM,
) -> None:
    configure(hermes_home, llm, tg)
    config = yaml.safe_load((hermes_home / "config.yaml").read_text())
    config["model"]["vision"] = True
    (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
    killed: list[int] = []

    def kill_first(request: RecordedRequest) -> Reply:
        if not killed:  # The photo was stored and confirmed; the gateway dies answering.
            killed.append(1)
            os.kill(gateway.proc.pid, signal.SIGKILL)
        return Reply("A green square.")

    llm.add(kill_first, Reply("A green square."), Reply("No picture there."))
    gateway = start()
    tg.user_photo(ALICE, _jpeg(640, 480), caption="what is this?")
    gateway.proc.wait(timeout=30)
    assert not tg.pending_updates(), "the update was confirmed before the answer"
    restarted = start()
    (reply,) = tg.wait_for(lambda: tg.sent(ALICE))
    assert reply["text"] == "A green square."
    final = llm.requests[-1]
    assert _image_parts(final) == [("image/jpeg", (640, 480))]
    assert user_text(final).find("what is this?") >= 0
    stored = list((hermes_home / "images").iterdir())
    assert len(stored) == 1 and stat.S_IMODE(stored[0].stat().st_mode) == 0o600
    # An SVG sent as a file is refused with a reason the model passes on.
    svg = tg.add_file(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "x.svg")
    tg.user_message(ALICE, None, document={**svg, "mime_type": "image/svg+xml"})
    tg.wait_for(lambda: len(tg.sent(ALICE)) == 2)
    assert "SVG" in user_text(llm.requests[-1]) and _image_parts(llm.requests[-1]) == [
        ("image/jpeg", (640, 480))
    ], "only the earlier photo, from the history"
    assert restarted.terminate() == 0
