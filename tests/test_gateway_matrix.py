"""The Matrix platform: real `hermes gateway run` processes against a real Synapse on 127.0.0.1.

One Synapse serves the whole module (tests/peers/synapse.py; installed by
tests/peers/install.sh). Each test registers its own bot account and its own
people, so tests do not see each other's rooms. The person ("alice", allowed;
"mallory", not) is driven over the plain client-server API, the way a Matrix
client would; the gateway logs in with matrix-nio and its model is the
loopback ScriptedLLM, which echoes what it was asked.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import gateway_process
from conftest import HERMES, clean_env
from hermes_agent.gateway.platforms.matrix import ENCRYPTED_NOTICE, TIMELINE_LIMIT
from hermes_agent.state.db import StateDB
from peers.llm_server import Hang, RecordedRequest, Reply, ScriptedLLM
from peers.synapse import MatrixUser, Synapse, SynapseError

pytestmark = pytest.mark.peer("synapse")

START_TIMEOUT = 40.0
_names = itertools.count(1)


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    try:
        server.start()
    except SynapseError as exc:
        pytest.fail(f"Synapse did not start: {exc}")
    try:
        server.register("admin", "admin-password", admin=True)
        yield server
    finally:
        server.stop()


@dataclass
class Accounts:
    hs: Synapse
    admin: MatrixUser
    bot_id: str
    bot_password: str
    alice: MatrixUser
    mallory: MatrixUser


@pytest.fixture
def accounts(synapse: Synapse) -> Accounts:
    if not synapse.running:  # A test that stopped it failed before starting it again.
        synapse.start()
    admin = synapse.login("admin", "admin-password")
    n = f"{os.getpid()}x{next(_names)}"
    bot_password = f"bot-password-{n}"
    bot_id = admin.create_user(f"bot{n}", bot_password)
    admin.create_user(f"alice{n}", "alice-password")
    admin.create_user(f"mallory{n}", "mallory-password")
    return Accounts(
        hs=synapse,
        admin=admin,
        bot_id=bot_id,
        bot_password=bot_password,
        alice=synapse.login(f"alice{n}", "alice-password"),
        mallory=synapse.login(f"mallory{n}", "mallory-password"),
    )


def last_user_text(request: RecordedRequest) -> str:
    content = request.messages[-1]["content"]
    return content if isinstance(content, str) else json.dumps(content)


def echo(request: RecordedRequest) -> Reply:
    return Reply(f"echo: {last_user_text(request)}")


class GatewayProcess(gateway_process.GatewayProcess):
    """One `hermes gateway run` with the matrix platform."""

    def wait_synced(self) -> None:
        """Running, and the first sync of the account stored its position."""
        self.wait_for_log("gateway running", timeout=START_TIMEOUT)
        state = self.home / "platforms" / "matrix.json"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if json.loads(state.read_text()).get("next_batch"):
                    return
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no first sync:\n{self.output()}")
            time.sleep(0.05)


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
    accounts: Accounts,
    *,
    env: dict[str, str] | None = None,
    pairing: bool = True,
    **matrix: Any,
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "enabled": True,
        "homeserver": accounts.hs.base_url,
        "user_id": accounts.bot_id,
        "allowed_users": [accounts.alice.user_id],
        **matrix,
    }
    config = {
        "model": {"provider": "custom", "base_url": llm.openai_base_url, "default": "test-model"},
        "gateway": {
            "reconnect_max_delay": 1,
            "send_retries": 5,
            "pairing": pairing,
            "platforms": {"matrix": settings},
        },
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    secrets = env if env is not None else {"MATRIX_PASSWORD": accounts.bot_password}
    (home / ".env").write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))


@pytest.fixture
def start(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM, accounts: Accounts
) -> Iterator[Callable[..., GatewayProcess]]:
    """start(**matrix_settings) -> a gateway that finished its first sync."""
    started: list[GatewayProcess] = []

    def go(*, synced: bool = True, **settings: Any) -> GatewayProcess:
        if not (hermes_home / "config.yaml").exists():
            configure(hermes_home, llm, accounts, **settings)
        gateway = GatewayProcess(hermes_home, workdir)
        started.append(gateway)
        if synced:
            gateway.wait_synced()
        return gateway

    yield go
    for gateway in started:
        gateway.kill()


def room_with_bot(accounts: Accounts, person: MatrixUser | None = None) -> str:
    """A room made by ``person`` (alice), the bot invited; returns once the bot joined."""
    person = person or accounts.alice
    room = person.create_room(invite=(accounts.bot_id,))
    wait_until(lambda: person.membership(room, accounts.bot_id) == "join", "the bot joins")
    return room


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def bot_bodies(person: MatrixUser, room: str, bot_id: str) -> list[str]:
    return [e["content"]["body"] for e in person.messages_from(room, bot_id)]


# --- conversations ----------------------------------------------------------------------


def test_message_in_a_room_gets_an_html_reply(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(Reply("Hello **Alice**, here is `code`."))
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    asked = alice.send(room, "hi bot")
    (reply,) = alice.wait_for_messages(room, accounts.bot_id)
    content = reply["content"]
    assert content["msgtype"] == "m.text"
    assert content["body"] == "Hello **Alice**, here is `code`."
    assert content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"] == (
        "<p>Hello <strong>Alice</strong>, here is <code>code</code>.</p>"
    )
    assert "m.relates_to" not in content  # Two people in the room: no quoting.
    assert last_user_text(llm.requests[-1]) == "hi bot"
    with StateDB(gateway.home / "state.db") as db:
        (session,) = db.list_sessions()
        assert session.source == "gateway:matrix"
        assert db.route("matrix", room, "") == session.id
        inbound = db.get_inbound(1)
        assert inbound is not None
        assert (inbound.message_id, inbound.user_id, inbound.chat_id) == (
            asked,
            alice.user_id,
            room,
        )
        assert (inbound.status, inbound.delivery) == ("done", "sent")
    assert gateway.terminate() == 0
    assert "bot-password" not in gateway.output()


def test_plain_reply_has_no_html_and_own_and_notice_events_are_ignored(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo, echo)
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.send(room, "a notice from another bot", msgtype="m.notice")
    alice.send(room, "first")
    alice.wait_for_messages(room, accounts.bot_id)
    alice.send(room, "second")
    replies = alice.wait_for_messages(room, accounts.bot_id, count=2)
    assert [r["content"]["body"] for r in replies] == ["echo: first", "echo: second"]
    assert all("formatted_body" not in r["content"] for r in replies)
    assert len(llm.requests) == 2  # The notice and the bot's own replies were not answered.
    assert gateway.terminate() == 0


def test_thread_reply_lands_in_the_thread(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo, echo)
    start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    root = alice.send(room, "root message")
    alice.wait_for_messages(room, accounts.bot_id)
    in_thread = alice.send(room, "question in the thread", thread=root)
    replies = alice.wait_for_messages(room, accounts.bot_id, count=2)
    first, second = replies
    assert "m.relates_to" not in first["content"]
    assert second["content"]["body"] == "echo: question in the thread"
    relation = second["content"]["m.relates_to"]
    assert relation["rel_type"] == "m.thread"
    assert relation["event_id"] == root
    assert relation["m.in_reply_to"] == {"event_id": in_thread}
    # The thread is a conversation of its own: the model did not see the room's messages.
    thread_request = llm.requests[1]
    assert "root message" not in json.dumps(thread_request.messages)


def test_group_room_reply_quotes_the_message(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo)
    start()
    alice, mallory = accounts.alice, accounts.mallory
    room = room_with_bot(accounts)
    alice.invite(room, mallory.user_id)
    mallory.join(room)
    asked = alice.send(room, f"{accounts.bot_id}: in a group")
    (reply,) = alice.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": asked}}
    assert reply["content"]["body"] == "echo: in a group"  # Without the mention.


def test_in_a_group_room_only_messages_for_the_bot_are_answered(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo, echo, echo)
    start()
    alice, mallory, bot = accounts.alice, accounts.mallory, accounts.bot_id
    room = room_with_bot(accounts)
    alice.invite(room, mallory.user_id)
    mallory.join(room)
    alice.send(room, "mallory, lunch at noon?")  # Room talk: not for the bot.
    # An intentional mention (a pill), whatever the body says.
    pill = {
        "msgtype": "m.text",
        "body": "Bot: what's the weather?",
        "m.mentions": {"user_ids": [bot]},
    }
    alice.send_event(room, "m.room.message", pill)
    (first,) = alice.wait_for_messages(room, bot)
    name = bot.split(":")[0][1:]  # Its display name: the localpart, Synapse's default.
    alice.send(room, f"{name}, and tomorrow?")
    alice.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"> <{bot}> {first['content']['body']}\n\nand the day after?",
            "m.relates_to": {"m.in_reply_to": {"event_id": first["event_id"]}},
        },
    )
    replies = alice.wait_for_messages(room, bot, count=3)
    assert [r["content"]["body"] for r in replies] == [
        "echo: Bot: what's the weather?",
        "echo: and tomorrow?",
        "echo: and the day after?",
    ]
    time.sleep(1.0)
    assert len(llm.requests) == 3  # "lunch at noon" never reached the model.


def test_require_mention_off_answers_every_message_in_a_group_room(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo)
    start(require_mention=False)
    alice, mallory = accounts.alice, accounts.mallory
    room = room_with_bot(accounts)
    alice.invite(room, mallory.user_id)
    mallory.join(room)
    alice.send(room, "no mention here")
    (reply,) = alice.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["body"] == "echo: no mention here"


def test_typing_notification_while_the_answer_is_written(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(Hang(3.0, then=Reply("done thinking")))
    start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.sync()  # From here on, only what is new.
    alice.send(room, "think hard")
    seen: list[list[str]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = alice.sync(timeout_ms=2000)
        seen.extend(alice.typing_events(body, room))
        if any(accounts.bot_id in ids for ids in seen) and seen[-1] == []:
            break
    assert any(accounts.bot_id in ids for ids in seen), seen
    assert seen[-1] == [], "the typing notification is cleared when the reply is sent"
    (reply,) = alice.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["body"] == "done thinking"


# --- restarts and outages -----------------------------------------------------------


def test_messages_sent_while_stopped_are_answered_once_after_start(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo, echo, echo)
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.send(room, "before the stop")
    alice.wait_for_messages(room, accounts.bot_id)
    assert gateway.terminate() == 0

    alice.send(room, "while stopped 1")
    edited = alice.send(room, "while stopped 2")
    alice.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* while stopped 2 (edited)",
            "m.new_content": {"msgtype": "m.text", "body": "while stopped 2 (edited)"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": edited},
        },
    )
    alice.send(room, "a bot's notice", msgtype="m.notice")
    gateway = start()
    replies = alice.wait_for_messages(room, accounts.bot_id, count=3)
    assert [r["content"]["body"] for r in replies] == [
        "echo: before the stop",
        "echo: while stopped 1",
        "echo: while stopped 2",
    ]
    # Once: a third start has nothing left to answer (the script would fail a 4th call).
    assert gateway.terminate() == 0
    gateway = start()
    time.sleep(2)
    assert gateway.terminate() == 0
    assert len(llm.requests) == 3
    assert len(alice.messages_from(room, accounts.bot_id)) == 3


def test_a_long_outage_is_read_back_past_the_sync_window(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    """More messages than one sync carries per room arrive while the gateway is down."""
    count = TIMELINE_LIMIT + 5
    llm.add(*([echo] * (count + 1)))
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.send(room, "hello")
    alice.wait_for_messages(room, accounts.bot_id)
    assert gateway.terminate() == 0
    for i in range(count):
        alice.send(room, f"missed {i}")
    gateway = start()
    replies = alice.wait_for_messages(room, accounts.bot_id, count=count + 1, timeout=90)
    assert [r["content"]["body"] for r in replies[1:]] == [
        f"echo: missed {i}" for i in range(count)
    ]
    # Read back up to the stored position only, not the room's whole history (which
    # holds its creation and membership events, "hello" and the bot's answer to it).
    missed = re.findall(r"read (\d+) events missed in", gateway.output())
    assert missed and all(1 <= int(n) <= count - TIMELINE_LIMIT for n in missed), missed
    assert gateway.terminate() == 0
    assert len(llm.requests) == count + 1


def test_first_start_skips_history_but_answers_after_the_invite(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    alice = accounts.alice
    bot = accounts.hs.login(accounts.bot_id.split(":")[0][1:], accounts.bot_password)
    old_room = alice.create_room(invite=(accounts.bot_id,))
    bot.join(old_room)
    alice.send(old_room, "history from before the gateway existed")
    llm.add(echo, echo)
    gateway = start()
    alice.send(old_room, "now")
    (reply,) = alice.wait_for_messages(old_room, accounts.bot_id)
    assert reply["content"]["body"] == "echo: now"
    # Written between the invite and the bot's join: addressed to the bot, answered.
    new_room = alice.create_room(invite=(accounts.bot_id,))
    alice.send(new_room, "are you there?")
    (reply,) = alice.wait_for_messages(new_room, accounts.bot_id)
    assert reply["content"]["body"] == "echo: are you there?"
    assert len(llm.requests) == 2
    assert "earlier messages in" in gateway.output()


def test_homeserver_outage_reconnects_and_answers_afterwards(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo, echo)
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.send(room, "before the outage")
    alice.wait_for_messages(room, accounts.bot_id)
    accounts.hs.stop()
    try:
        gateway.wait_for_log("reconnecting in", timeout=30)
        time.sleep(2)  # A few failed attempts while the homeserver is away.
    finally:
        accounts.hs.start()
    alice.send(room, "after the outage")
    replies = alice.wait_for_messages(room, accounts.bot_id, count=2, timeout=60)
    assert [r["content"]["body"] for r in replies] == [
        "echo: before the outage",
        "echo: after the outage",
    ]
    assert gateway.proc.poll() is None
    assert gateway.terminate() == 0


# --- who may talk ---------------------------------------------------------------------


def test_stranger_gets_a_pairing_code_not_an_answer(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    gateway = start()
    mallory = accounts.mallory
    room = room_with_bot(accounts, mallory)  # Pairing is on: the bot joins to answer with a code.
    mallory.send(room, "let me in")
    (reply,) = mallory.wait_for_messages(room, accounts.bot_id)
    assert "hermes gateway pair approve" in reply["content"]["body"]
    mallory.send(room, "please?")
    time.sleep(1.5)
    assert len(mallory.messages_from(room, accounts.bot_id)) == 1  # The code is sent once.
    assert llm.requests == []
    assert f"user '{mallory.user_id}'" in gateway.output()
    assert gateway.terminate() == 0


def test_stranger_invite_is_declined_without_pairing(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(echo)
    gateway = start(pairing=False)
    mallory, alice = accounts.mallory, accounts.alice
    refused = mallory.create_room(invite=(accounts.bot_id,))
    wait_until(lambda: mallory.membership(refused, accounts.bot_id) == "leave", "the bot declines")
    assert f"declining the invite of {mallory.user_id} to {refused}" in gateway.output()
    # In alice's room (she is allowed), mallory is still not answered; alice is.
    room = room_with_bot(accounts)
    alice.invite(room, mallory.user_id)
    mallory.join(room)
    mallory.send(room, f"{accounts.bot_id}: answer me too")
    alice.send(room, f"{accounts.bot_id}: answer me")
    (reply,) = alice.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["body"] == "echo: answer me"
    time.sleep(1)
    assert len(alice.messages_from(room, accounts.bot_id)) == 1
    assert len(llm.requests) == 1


def test_allowed_room_lets_every_member_in(
    start: Callable[..., GatewayProcess],
    llm: ScriptedLLM,
    accounts: Accounts,
    hermes_home: Path,
) -> None:
    mallory = accounts.mallory
    room = mallory.create_room(invite=(accounts.bot_id,))
    llm.add(echo)
    configure(hermes_home, llm, accounts, pairing=False, allowed_chats=[room])
    start()
    wait_until(lambda: mallory.membership(room, accounts.bot_id) == "join", "the bot joins")
    mallory.send(room, "room members are welcome")
    (reply,) = mallory.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["body"] == "echo: room members are welcome"


def test_encrypted_message_gets_a_notice_once(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    gateway = start()
    alice = accounts.alice
    room = alice.create_room(invite=(accounts.bot_id,), encrypted=True)
    wait_until(lambda: alice.membership(room, accounts.bot_id) == "join", "the bot joins")
    megolm = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
        "device_id": alice.device_id,
        "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
        "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
    }
    alice.send_event(room, "m.room.encrypted", megolm)
    (notice,) = alice.wait_for_messages(room, accounts.bot_id)
    assert notice["content"] == {"msgtype": "m.notice", "body": ENCRYPTED_NOTICE}
    alice.send_event(room, "m.room.encrypted", megolm)
    time.sleep(1.5)
    assert len(alice.messages_from(room, accounts.bot_id)) == 1
    assert llm.requests == []
    assert "end-to-end encryption is not supported" in gateway.output()


# --- sending failures -----------------------------------------------------------------


def test_rate_limited_chunk_waits_for_retry_after(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    paragraph = "word " * 199 + "end."
    long_answer = "\n\n".join(f"{i}: {paragraph}" for i in range(12))  # > 10000 characters
    llm.add(Reply(long_answer))
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    # One message at once, then one per second: the second chunk meets M_LIMIT_EXCEEDED.
    accounts.admin.override_ratelimit(accounts.bot_id, per_second=1, burst_count=1)
    alice.send(room, "write a lot")
    chunks = alice.wait_for_messages(room, accounts.bot_id, count=2, timeout=60)
    assert len(chunks) == 2
    assert "\n\n".join(c["content"]["body"] for c in chunks) == long_answer
    output = gateway.output()
    assert "sending failed (rate limited" in output
    assert "M_LIMIT_EXCEEDED" in output
    # The homeserver's retry_after_ms reached the gateway, which waited at least that long.
    match = re.search(r"retry after (\d+\.\d+) s .*; retry 1/5 in (\d+\.\d+) s", output)
    assert match, output
    retry_after, delay = float(match.group(1)), float(match.group(2))
    assert 0 < retry_after <= 1.0
    assert delay >= round(retry_after, 1)


def test_forbidden_send_is_not_retried(
    start: Callable[..., GatewayProcess], llm: ScriptedLLM, accounts: Accounts
) -> None:
    llm.add(Hang(2.0, then=Reply("you will not see this")))
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.send(room, "answer slowly")
    # While the model thinks, alice lets only moderators speak: the bot may no longer post.
    levels = alice.state(room, "m.room.power_levels")
    levels["events_default"] = 50
    alice.set_state(room, "m.room.power_levels", levels)
    gateway.wait_for_log("could not tell the user either", timeout=30)
    output = gateway.output()
    assert "refused by the homeserver" in output
    assert "M_FORBIDDEN" in output
    assert "retry 1/" not in output
    assert alice.messages_from(room, accounts.bot_id) == []
    assert gateway.proc.poll() is None


# --- credentials ----------------------------------------------------------------------


def test_access_token_login_answers(
    start: Callable[..., GatewayProcess],
    llm: ScriptedLLM,
    accounts: Accounts,
    hermes_home: Path,
) -> None:
    bot = accounts.hs.login(accounts.bot_id.split(":")[0][1:], accounts.bot_password)
    configure(hermes_home, llm, accounts, env={"MATRIX_ACCESS_TOKEN": bot.access_token}, user_id="")
    llm.add(echo)
    gateway = start()
    room = room_with_bot(accounts)
    accounts.alice.send(room, "token login")
    (reply,) = accounts.alice.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["body"] == "echo: token login"
    assert f"logged in as {accounts.bot_id} (device {bot.device_id})" in gateway.output()
    assert bot.access_token not in gateway.output()


def test_password_login_reuses_its_device(
    start: Callable[..., GatewayProcess], accounts: Accounts, hermes_home: Path
) -> None:
    gateway = start()
    assert gateway.terminate() == 0
    device = json.loads((hermes_home / "platforms" / "matrix.json").read_text())["device_id"]
    gateway = start()
    assert gateway.terminate() == 0
    assert f"(device {device})" in gateway.output()
    bot = accounts.hs.login(accounts.bot_id.split(":")[0][1:], accounts.bot_password)
    devices = bot.request("GET", "/_matrix/client/v3/devices")["devices"]
    assert len([d for d in devices if d["device_id"] != bot.device_id]) == 1


def run_failing(hermes_home: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HERMES), "gateway", "run"],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
    )


def test_wrong_password_is_a_clear_error(
    llm: ScriptedLLM, accounts: Accounts, hermes_home: Path, workdir: Path
) -> None:
    configure(hermes_home, llm, accounts, env={"MATRIX_PASSWORD": "not-the-password-123"})
    result = run_failing(hermes_home, workdir)
    assert result.returncode == 1
    # One clear line: no traceback, no library noise, no "unclosed session" warnings.
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hermes: matrix:")
    assert f"rejected the password of {accounts.bot_id}" in result.stderr
    assert "MATRIX_PASSWORD" in result.stderr
    assert "not-the-password-123" not in result.stdout + result.stderr


def test_wrong_access_token_is_a_clear_error(
    llm: ScriptedLLM, accounts: Accounts, hermes_home: Path, workdir: Path
) -> None:
    configure(hermes_home, llm, accounts, env={"MATRIX_ACCESS_TOKEN": "syt_bogus_token_42"})
    result = run_failing(hermes_home, workdir)
    assert result.returncode == 1
    # One clear line: no traceback, no library noise, no "unclosed session" warnings.
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hermes: matrix:")
    assert "rejected the access token" in result.stderr
    assert "M_UNKNOWN_TOKEN" in result.stderr
    assert "syt_bogus_token_42" not in result.stdout + result.stderr


def test_missing_secret_names_the_variables_and_the_env_file(
    llm: ScriptedLLM, accounts: Accounts, hermes_home: Path, workdir: Path
) -> None:
    configure(hermes_home, llm, accounts, env={})
    result = run_failing(hermes_home, workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "MATRIX_ACCESS_TOKEN" in result.stderr
    assert "MATRIX_PASSWORD" in result.stderr
    assert str(hermes_home / ".env") in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"homeserver": ""}, "homeserver is not set"),
        ({"homeserver": "matrix.example.org"}, "is not an http(s) URL"),
        ({"user_id": "hermes"}, "is not a Matrix user id"),
        ({"user_id": ""}, "user_id is not set"),
    ],
)
def test_bad_settings_are_named(
    llm: ScriptedLLM,
    accounts: Accounts,
    hermes_home: Path,
    workdir: Path,
    settings: dict[str, str],
    message: str,
) -> None:
    configure(hermes_home, llm, accounts, **settings)
    result = run_failing(hermes_home, workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_unreachable_homeserver_at_start_is_retried(
    llm: ScriptedLLM, accounts: Accounts, hermes_home: Path, workdir: Path
) -> None:
    """A homeserver that is down when the gateway starts is not a fatal error."""
    hs = accounts.hs
    configure(hermes_home, llm, accounts)
    hs.stop()
    gateway = GatewayProcess(hermes_home, workdir)
    try:
        gateway.wait_for_log("cannot log in yet")
        gateway.wait_for_log("reconnecting in")
        hs.start()
        gateway.wait_synced()
        llm.add(echo)
        room = room_with_bot(accounts)
        accounts.alice.send(room, "late start")
        (reply,) = accounts.alice.wait_for_messages(room, accounts.bot_id)
        assert reply["content"]["body"] == "echo: late start"
        assert gateway.terminate() == 0
    finally:
        gateway.kill()
        hs.start()  # Whatever happened, the next tests need it.


# --- images ------------------------------------------------------------------------------


def test_an_image_reaches_the_model_as_an_image(
    hermes_home: Path,
    start: Callable[..., GatewayProcess],
    llm: ScriptedLLM,
    accounts: Accounts,
) -> None:
    import base64
    import io

    from PIL import Image

    configure(hermes_home, llm, accounts)
    config = yaml.safe_load((hermes_home / "config.yaml").read_text())
    config["model"]["vision"] = True
    (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
    picture = io.BytesIO()
    Image.new("RGB", (64, 32), (255, 128, 0)).save(picture, "PNG")
    llm.add(Reply("An orange bar."))
    gateway = start()
    alice = accounts.alice
    room = room_with_bot(accounts)
    alice.send_image(
        room, picture.getvalue(), filename="bar.png", mimetype="image/png", caption="what?"
    )
    (reply,) = alice.wait_for_messages(room, accounts.bot_id)
    assert reply["content"]["body"] == "An orange bar."
    user = [m for m in llm.requests[-1].messages if m["role"] == "user"][-1]
    text, image = user["content"]
    assert text == {"type": "text", "text": "what?"}
    head, _, data = image["image_url"]["url"].partition(",")
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as received:
        assert received.size == (64, 32)
    assert gateway.terminate() == 0
