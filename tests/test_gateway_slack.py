"""The Slack platform: a real `hermes gateway run` with slack-bolt against a loopback Slack.

Slack's servers cannot run here, so ``peers/slack_api.py`` speaks its Web API
and the Socket Mode websocket as documented; the gateway's own Bolt app and
slack_sdk Socket Mode client connect, acknowledge and post against it, and
the model is a ScriptedLLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_process import GatewayProcess, write_home
from hermes_agent.gateway.platforms.slack import markdown_to_mrkdwn
from hermes_agent.state.db import StateDB
from peers.llm_server import Reply, ScriptedLLM
from peers.slack_api import APP_TOKEN, BOT_TOKEN, SlackAPI

pytestmark = pytest.mark.peer("slack_api")

MENTION = "<@U0HERMES>"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def api() -> Iterator[SlackAPI]:
    # Slack redelivers an unacknowledged event after 3 s; 1 s keeps the tests short.
    with SlackAPI(ack_timeout=1.0) as server:
        yield server


@pytest.fixture
def alice(api: SlackAPI) -> dict[str, Any]:
    return api.user("alice")


@pytest.fixture
def start(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM, api: SlackAPI, alice: dict[str, Any]
) -> Iterator[Any]:
    """start(bot_token=..., app_token=..., ready=True) -> a gateway on the loopback Slack."""
    started: list[GatewayProcess] = []

    def go(
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        ready: bool = True,
        model: dict[str, Any] | None = None,
    ) -> GatewayProcess:
        env = {"SLACK_BOT_TOKEN": bot_token, "SLACK_APP_TOKEN": app_token}
        slack = {"enabled": True, "api_base": api.api_base, "allowed_users": [alice["id"]]}
        write_home(
            hermes_home,
            llm,
            {"platforms": {"slack": slack}},
            {k: v for k, v in env.items() if v},
            model,
        )
        process = GatewayProcess(hermes_home, workdir)
        started.append(process)
        if ready:
            process.wait_for_log("gateway running")
            api.wait_for(lambda: api.connected() == 1, what="the Socket Mode connection")
        return process

    yield go
    for process in started:
        process.kill()


def user_texts(llm: ScriptedLLM) -> list[str]:
    """The user messages of the last model request, in order."""
    return [m["content"] for m in llm.requests[-1].messages if m["role"] == "user"]


def all_acked(api: SlackAPI) -> None:
    api.wait_for(lambda: {d.envelope_id for d in api.deliveries} <= set(api.acks), what="every ack")


# --- answering --------------------------------------------------------------------------


def test_a_direct_message_is_answered_in_mrkdwn(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(
        Reply("**Done**: see [the docs](https://example.org/a?b=1&c=2), `x<y` is *true*."),
        Reply("Second answer."),
    )
    gateway = start()
    api.dm(alice, "hi there")
    (posted,) = api.wait_posted(1)
    assert posted.channel == api.dm_channel(alice)
    assert posted.thread_ts is None  # A DM is answered in the DM, not in a thread.
    assert posted.text == (
        "*Done*: see <https://example.org/a?b=1&amp;c=2|the docs>, `x&lt;y` is _true_."
    )
    assert user_texts(llm) == ["hi there"]
    # The bot's own reply came back as a message event (as on Slack) and was not
    # answered: the next DM gets the next script step, and only two replies were posted.
    api.dm(alice, "and again")
    assert [p.text for p in api.wait_posted(2)] == [posted.text, "Second answer."]
    assert len(llm.requests) == 2
    assert user_texts(llm) == ["hi there", "and again"]
    assert any(d.event_type == "message" for d in api.deliveries[1:])
    all_acked(api)
    with StateDB(gateway.home / "state.db") as db:
        (session,) = db.list_sessions()
        assert session.source == "gateway:slack"
    assert gateway.terminate() == 0


def test_a_mention_in_a_channel_is_answered_once_in_its_thread(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Thread answer one."), Reply("Thread answer two."))
    start()
    api.say(api.general, alice, "just chatting, no bot here")
    ts = api.say(api.general, alice, f"{MENTION} what's up?")
    (posted,) = api.wait_posted(1)
    assert (posted.channel, posted.thread_ts, posted.text) == (
        api.general,
        ts,
        "Thread answer one.",
    )
    # One message, two events (message.channels and app_mention), one answer.
    kinds = sorted(d.event_type for d in api.deliveries if d.retry_attempt == 0)
    assert kinds.count("app_mention") == 1 and kinds.count("message") >= 2
    assert len(llm.requests) == 1
    assert user_texts(llm) == ["what's up?"]
    api.say(api.general, alice, f"{MENTION} and more", thread_ts=ts)
    assert api.wait_posted(2)[1].thread_ts == ts
    assert user_texts(llm) == ["what's up?", "and more"]  # The thread is one conversation.
    all_acked(api)


def test_an_unknown_user_gets_a_pairing_code(
    start: Any, api: SlackAPI, llm: ScriptedLLM, hermes_home: Path
) -> None:
    start()
    mallory = api.user("mallory")
    api.dm(mallory, "let me in")
    (posted,) = api.wait_posted(1)
    assert "hermes gateway pair approve" in posted.text
    assert posted.channel == api.dm_channel(mallory)
    assert llm.requests == []
    with StateDB(hermes_home / "state.db") as db:
        (request,) = db.pairing_requests()
    assert (request.user_id, request.user_name) == (mallory["id"], "mallory")  # users.info


# --- a message Slack posted but the gateway did not hear about -----------------------------


def posts(api: SlackAPI) -> list[str]:
    return [c[2] for c in api.calls if c[0] == "chat.postMessage"]


def test_a_reply_whose_answer_was_cut_off_is_looked_up_not_reposted(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    """Slack posted it, the answer was lost: the DM's history shows it (its metadata key)."""
    llm.add(Reply("Only once."))
    gateway = start()
    api.cut_answers(1)
    api.dm(alice, "hi")
    gateway.wait_for_log("the chunk had arrived after all")
    assert posts(api) == ["ok, answer cut"]
    assert [p.text for p in api.posted()] == ["Only once."]
    assert any(c[0] == "conversations.history" and c[2] == "ok" for c in api.calls)
    assert gateway.terminate() == 0


@pytest.mark.parametrize("scope", [True, False])
def test_a_thread_reply_is_looked_up_with_channels_history_and_resent_without(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any], scope: bool
) -> None:
    """Without the channels:history scope Slack cannot be asked: the part is sent again."""
    if scope:
        api.scopes.add("channels:history")
    llm.add(Reply("In the thread."))
    gateway = start()
    api.cut_answers(1)
    api.say(api.general, alice, f"{MENTION} hello")
    if scope:
        gateway.wait_for_log("the chunk had arrived after all")
        assert [p.text for p in api.posted()] == ["In the thread."]
    else:
        gateway.wait_for_log("could not check whether a chunk arrived")
        api.wait_posted(2)
        assert [p.text for p in api.posted()] == ["In the thread.", "In the thread."]
    assert gateway.terminate() == 0


# --- connection and delivery -------------------------------------------------------------


def test_a_redelivered_event_is_answered_once_and_reconnects_are_survived(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Answer one."), Reply("Answer two."))
    gateway = start()
    # The connection dies just as the acknowledgement is sent: the message was stored
    # (the ack comes after submit), Slack did not see the ack and redelivers the event
    # on the next connection with retry_attempt 1. It must not be answered again.
    api.lose_next_ack()
    ts = api.dm(alice, "one")
    api.wait_for(lambda: any(d.retry_attempt == 1 for d in api.deliveries), what="the redelivery")
    all_acked(api)
    # The user's event, delivered twice (the bot's own reply comes as an event too,
    # before or after the redelivery depending on timing).
    first = api.deliveries[0]
    assert first.event_type == "message"
    attempts = [d.retry_attempt for d in api.deliveries if d.event_id == first.event_id]
    assert attempts == [0, 1]
    assert [p.text for p in api.wait_posted(1)] == ["Answer one."]
    # Slack asks the app to reconnect (as it does every few hours).
    connections = api.connections
    api.disconnect("refresh_requested")
    api.wait_for(lambda: api.connections > connections and api.connected() == 1, what="reconnect")
    api.dm(alice, "two")
    assert [p.text for p in api.wait_posted(2)] == ["Answer one.", "Answer two."]
    assert len(llm.requests) == 2
    with StateDB(gateway.home / "state.db") as db:
        first, second = db.get_inbound(1), db.get_inbound(2)
        assert first is not None and first.message_id == f"{api.dm_channel(alice)}:{ts}"
        assert second is not None and second.text == "two"
        assert db.get_inbound(3) is None  # The redelivery was not stored again.


def test_ratelimited_is_retried_after_retry_after(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Eventually."))
    start()
    api.rate_limit_next(1.0)
    api.dm(alice, "hello")
    assert api.wait_posted(1)[0].text == "Eventually."
    api.wait_for(lambda: len([c for c in api.calls if c[0] == "chat.postMessage"]) == 2)
    posts = [c for c in api.calls if c[0] == "chat.postMessage"]
    assert [c[2] for c in posts] == ["ratelimited", "ok"]
    assert posts[1][3] - posts[0][3] >= 1.0


def test_a_long_answer_is_split_at_4000_characters(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 100 for i in range(18)]  # ~9,400 characters
    answer = "\n\n".join(p.strip() for p in paragraphs)
    llm.add(Reply(answer))
    start()
    api.dm(alice, "tell me a lot")
    api.wait_for(lambda: "Paragraph 17" in "".join(p.text for p in api.posted()), what="all")
    posted = api.posted()
    assert len(posted) == 3
    assert all(len(p.text) <= 4000 for p in posted)
    assert " ".join(" ".join(p.text.split()) for p in posted) == " ".join(answer.split())


# --- set-up errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "tokens"),
    [
        ("SLACK_BOT_TOKEN", {"bot_token": "xoxb-1-2-wrongwrongwrong"}),
        ("SLACK_APP_TOKEN", {"app_token": "xapp-1-A0-3-wrongwrongwrongwrong"}),
    ],
)
def test_a_rejected_token_is_a_clear_error(
    start: Any, api: SlackAPI, which: str, tokens: dict[str, str]
) -> None:
    gateway = start(ready=False, **tokens)
    assert gateway.wait_exit() == 1
    output = gateway.output()
    assert f"hermes: slack: {which} was rejected (invalid_auth)" in output
    assert "Traceback" not in output
    assert next(iter(tokens.values())) not in output
    assert api.connected() == 0


def test_a_missing_or_misplaced_token_names_the_variable(
    start: Any, hermes_home: Path, api: SlackAPI
) -> None:
    gateway = start(app_token="", ready=False)
    assert gateway.wait_exit() == 2
    output = gateway.output()
    assert f"the slack platform needs SLACK_APP_TOKEN in {hermes_home / '.env'}" in output
    assert "Traceback" not in output
    gateway = start(bot_token=APP_TOKEN, ready=False)  # The app token where the bot's goes.
    assert gateway.wait_exit() == 2
    assert "SLACK_BOT_TOKEN in" in gateway.output()
    assert "starting with 'xoxb-'" in gateway.output()
    assert api.calls == []


# --- Markdown to mrkdwn ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        ("[text](https://x.org/?a=1&b=2)", "<https://x.org/?a=1&amp;b=2|text>"),
        ("see <https://x.org>", "see <https://x.org>"),
        ("# Title\n## Sub **x**", "*Title*\n*Sub x*"),
        ("- one\n- two\n  * nested", "• one\n• two\n  • nested"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        (
            "```python\nif a < b and **c**:\n    pass\n```",
            "```\nif a &lt; b and **c**:\n    pass\n```",
        ),
        ("`**not bold**` but **bold**", "`**not bold**` but *bold*"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name stays", "snake_case_name stays"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


# --- images ------------------------------------------------------------------------------


def test_a_shared_image_reaches_the_model_as_an_image(
    start: Any, api: SlackAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    import base64
    import io

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (2600, 1300), (250, 200, 0)).save(picture, "JPEG")
    llm.add(Reply("A yellow banner."))
    start(model={"vision": True})
    api.dm_file(alice, "and this?", picture.getvalue(), "banner.jpg", "image/jpeg")
    api.wait_for(lambda: len(api.posted()) == 1, what="the answer")
    (user,) = [m for m in llm.requests[0].messages if m["role"] == "user"]
    text, image = user["content"]
    assert text == {"type": "text", "text": "and this?"}
    head, _, data = image["image_url"]["url"].partition(",")
    assert head == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as received:
        assert received.size == (2048, 1024), "scaled to the OpenAI-compatible limit"
