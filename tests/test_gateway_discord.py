"""The Discord platform: a real `hermes gateway run` with discord.py against a loopback Discord.

Discord's servers cannot run here, so ``peers/discord_api.py`` speaks its REST
API and Gateway websocket as documented; the gateway's own discord.py client
logs in, connects, resumes and sends against it, and the model is a
ScriptedLLM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_process import GatewayProcess, write_home
from hermes_agent.state.db import StateDB
from peers.discord_api import BOT_TOKEN, DiscordAPI
from peers.llm_server import Reply, ScriptedLLM

pytestmark = pytest.mark.peer("discord_api")


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
def api() -> Iterator[DiscordAPI]:
    with DiscordAPI() as server:
        yield server


@pytest.fixture
def alice(api: DiscordAPI) -> dict[str, Any]:
    return api.user("alice")


@pytest.fixture
def start(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM, api: DiscordAPI, alice: dict[str, Any]
) -> Iterator[Any]:
    """start(token=..., ready=True) -> a gateway connected to the loopback Discord."""
    started: list[GatewayProcess] = []

    def go(
        *,
        token: str = BOT_TOKEN,
        ready: bool = True,
        model: dict[str, Any] | None = None,
        **gateway: Any,
    ) -> GatewayProcess:
        discord = {"enabled": True, "api_base": api.api_base, "allowed_users": [alice["id"]]}
        write_home(
            hermes_home,
            llm,
            {"platforms": {"discord": discord}, **gateway},
            {"DISCORD_BOT_TOKEN": token} if token else {},
            model,
        )
        process = GatewayProcess(hermes_home, workdir)
        started.append(process)
        if ready:
            process.wait_for_log("gateway running")
            api.wait_for(api.connected, what="the gateway's Discord session")
        return process

    yield go
    for process in started:
        process.kill()


def mention(api: DiscordAPI) -> str:
    return f"<@{api.bot['id']}>"


def message_posts(api: DiscordAPI) -> list[tuple[str, str, int, float]]:
    return [r for r in api.requests if r[0] == "POST" and r[1].endswith("/messages")]


def user_texts(llm: ScriptedLLM) -> list[str]:
    """The user messages of the last model request, in order."""
    return [m["content"] for m in llm.requests[-1].messages if m["role"] == "user"]


# --- answering --------------------------------------------------------------------------


def test_a_direct_message_is_answered(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("**Hello**, Alice. `code` stays as it is."), Reply("Second answer."))
    gateway = start()
    first = api.dm(alice, "hi there")
    (sent,) = api.wait_sent(1)
    assert sent.channel_id == api.dm_channel(alice)
    assert sent.content == "**Hello**, Alice. `code` stays as it is."  # Discord renders Markdown.
    assert sent.reply_to == first
    # The model's text may not ping anyone but the person who asked.
    assert sent.allowed_mentions == {"parse": [], "replied_user": True}
    assert user_texts(llm) == ["hi there"]
    assert api.dm_channel(alice) in api.typing
    # The bot's own reply came back as a MESSAGE_CREATE (as on Discord) and was not answered:
    # the next message gets the next script step, and only two messages were ever sent.
    api.dm(alice, "and again")
    assert [m.content for m in api.wait_sent(2)] == [sent.content, "Second answer."]
    assert len(llm.requests) == 2
    assert user_texts(llm) == ["hi there", "and again"]  # One conversation.
    with StateDB(gateway.home / "state.db") as db:
        (session,) = db.list_sessions()
        assert session.source == "gateway:discord"
    assert gateway.terminate() == 0


def test_a_mention_in_a_channel_is_answered_and_other_messages_are_not(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("It is noon."))
    start()
    api.say(api.general_id, alice, "just chatting, no bot here")
    asked = api.say(api.general_id, alice, f"{mention(api)} what time is it?")
    (sent,) = api.wait_sent(1)
    assert (sent.channel_id, sent.content, sent.reply_to) == (api.general_id, "It is noon.", asked)
    assert len(llm.requests) == 1
    assert user_texts(llm) == ["what time is it?"]  # The mention itself is not the question.


def test_a_thread_is_a_conversation_of_its_own(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Thread answer one."), Reply("Thread answer two."), Reply("Channel answer."))
    gateway = start()
    thread = api.create_thread(api.general_id, "planning", alice)
    api.say(thread, alice, f"{mention(api)} first in thread")
    api.wait_sent(1, thread)
    api.say(thread, alice, f"{mention(api)} second in thread")
    assert [m.content for m in api.wait_sent(2, thread)] == [
        "Thread answer one.",
        "Thread answer two.",
    ]
    assert user_texts(llm) == ["first in thread", "second in thread"]
    api.say(api.general_id, alice, f"{mention(api)} in the channel")
    assert api.wait_sent(1, api.general_id)[0].content == "Channel answer."
    assert user_texts(llm) == ["in the channel"]  # Not the thread's conversation.
    with StateDB(gateway.home / "state.db") as db:
        assert db.route("discord", api.general_id, thread) is not None
        assert db.route("discord", api.general_id, "") is not None


def test_an_unknown_user_gets_a_pairing_code(start: Any, api: DiscordAPI, llm: ScriptedLLM) -> None:
    start()
    mallory = api.user("mallory")
    api.dm(mallory, "let me in")
    (sent,) = api.wait_sent(1)
    assert "hermes gateway pair approve" in sent.content
    assert sent.channel_id == api.dm_channel(mallory)
    assert llm.requests == []


# --- connection -----------------------------------------------------------------------------


def test_a_dropped_connection_resumes_and_replayed_events_are_answered_once(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Answer one."), Reply("Answer two."), Reply("Answer three."))
    gateway = start()
    one = api.dm(alice, "one")
    api.wait_sent(1)
    # The network goes away; a message arrives meanwhile; when the client RESUMEs, Discord
    # replays it, and also (rewind) the two events before it that the client had already
    # received: "one" and the bot's own answer.
    api.drop(rewind=2, hold=True)
    two = api.dm(alice, "two")
    api.release()
    api.wait_sent(2)
    three = api.dm(alice, "three")  # After the replay on the same socket: replay is done.
    sent = api.wait_sent(3)
    assert [(m.content, m.reply_to) for m in sent] == [
        ("Answer one.", one),
        ("Answer two.", two),
        ("Answer three.", three),
    ]
    assert len(llm.requests) == 3
    assert (api.identifies, api.resumes) == (1, 1)
    assert api.connections == ["/", "/resume"]  # RESUME went to READY's resume_gateway_url.
    assert "session resumed" in gateway.output()


def test_an_invalidated_session_identifies_again(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Before."), Reply("After."))
    start()
    api.dm(alice, "before")
    api.wait_sent(1)
    api.invalidate()
    # discord.py waits 5 s before identifying again (Discord's identify rate limit).
    api.wait_for(lambda: api.identifies == 2 and api.connected(), 20, "a new IDENTIFY")
    api.dm(alice, "after")
    assert [m.content for m in api.wait_sent(2)] == ["Before.", "After."]


def test_a_429_is_waited_out(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    llm.add(Reply("Eventually."))
    start()
    api.rate_limit_next(1.5)
    api.dm(alice, "hello")
    assert api.wait_sent(1)[0].content == "Eventually."
    api.wait_for(lambda: len(message_posts(api)) == 2, what="the request log")
    posts = message_posts(api)
    assert [status for _, _, status, _ in posts] == [429, 200]
    assert posts[1][3] - posts[0][3] >= 1.5


def test_a_reply_whose_answer_was_cut_off_is_not_posted_twice(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    """Discord made the message and the connection dropped: the retry's nonce finds it."""
    llm.add(Reply("Only once."))
    gateway = start()
    api.cut_answers(1)
    api.dm(alice, "hi")

    def posts() -> list[Any]:
        return [r for r in api.requests if r[0] == "POST" and r[1].endswith("/messages")]

    api.wait_for(lambda: len(posts()) >= 2)  # The first answer was lost: sent again...
    time.sleep(0.5)
    assert [m.content for m in api.sent()] == ["Only once."]  # ...and Discord kept one.
    with StateDB(gateway.home / "state.db") as db:
        assert db.undelivered_inbound() == []
    assert gateway.terminate() == 0


def test_a_long_answer_is_split_at_2000_characters(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(16)]  # ~5,000 characters
    answer = "\n\n".join(p.strip() for p in paragraphs)
    llm.add(Reply(answer))
    start()
    asked = api.dm(alice, "tell me a lot")
    api.wait_for(lambda: "Paragraph 15" in "".join(m.content for m in api.sent()), what="all")
    sent = api.sent()
    assert len(sent) == 3
    assert all(len(m.content) <= 2000 for m in sent)
    assert " ".join(" ".join(m.content.split()) for m in sent) == " ".join(answer.split())
    assert [m.reply_to for m in sent] == [asked, None, None]  # Only the first one quotes.


# --- set-up errors --------------------------------------------------------------------------


def test_a_wrong_token_is_a_clear_error(start: Any, api: DiscordAPI) -> None:
    wrong = "MTEx.wrong.token-that-discord-rejects-0123456789"
    gateway = start(token=wrong, ready=False)
    assert gateway.wait_exit() == 1
    output = gateway.output()
    assert "hermes: discord: the bot token was rejected (401 Unauthorized)" in output
    assert "DISCORD_BOT_TOKEN" in output
    assert "Traceback" not in output
    assert wrong not in output
    assert ("GET", "/api/v10/users/@me", 401) in [r[:3] for r in api.requests]


def test_a_missing_token_names_the_variable_and_the_file(
    start: Any, hermes_home: Path, api: DiscordAPI
) -> None:
    gateway = start(token="", ready=False)
    assert gateway.wait_exit() == 2
    output = gateway.output()
    assert f"hermes: the discord platform needs DISCORD_BOT_TOKEN in {hermes_home / '.env'}" in (
        output
    )
    assert "Traceback" not in output
    assert api.requests == []


def test_login_then_the_gateway_url_from_the_api(start: Any, api: DiscordAPI) -> None:
    """The token is checked before "gateway running"; the websocket URL is the API's."""
    began = time.monotonic()
    start()
    assert time.monotonic() - began < 30  # Connected, not after a retry; room for load.
    assert [r[:3] for r in api.requests[:3]] == [
        ("GET", "/api/v10/users/@me", 200),
        ("GET", "/api/v10/oauth2/applications/@me", 200),
        ("GET", "/api/v10/gateway/bot", 200),
    ]


# --- images ------------------------------------------------------------------------------


def test_an_attached_image_reaches_the_model_as_an_image(
    start: Any, api: DiscordAPI, llm: ScriptedLLM, alice: dict[str, Any]
) -> None:
    import base64
    import io

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGBA", (300, 200), (0, 0, 255, 128)).save(picture, "PNG")
    llm.add(Reply("A blue rectangle."), Reply("Not an image."))
    gateway = start(model={"vision": True})
    api.dm_file(alice, "what is it?", picture.getvalue(), "shot.png", "image/png", (300, 200))
    (sent,) = api.wait_sent(1)
    assert sent.content == "A blue rectangle."
    (user,) = [m for m in llm.requests[0].messages if m["role"] == "user"]
    text, image = user["content"]
    assert text == {"type": "text", "text": "what is it?"}
    head, _, data = image["image_url"]["url"].partition(",")
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as received:
        assert (received.size, received.mode) == ((300, 200), "RGBA")
    # A file claiming to be an image but holding something else: a line saying so.
    api.dm_file(alice, "", b"MZ\x90\x00 not a picture", "setup.png", "image/png")
    api.wait_sent(2)
    assert "setup.png not shown" in user_texts(llm)[-1]
    assert gateway.terminate() == 0
