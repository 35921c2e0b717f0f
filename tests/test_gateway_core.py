"""The gateway's shared machinery: access control and pairing, splitting, delivery, resuming.

These run the real :class:`Gateway` in this process, against the loopback
ScriptedLLM, with ``LoopChat``: a complete (if tiny) chat platform adapter
whose "network" is a list in memory. Everything between the adapter and the
model is the production code; only the far end of the chat is a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from conftest import HERMES, clean_env
from hermes_agent.gateway import platforms as platforms_module
from hermes_agent.gateway.delivery import deliver, split_message
from hermes_agent.gateway.platforms import Backoff, Outbound, Platform, SendError
from hermes_agent.gateway.runner import Gateway, ResetPolicy
from hermes_agent.state.db import StateDB
from peers.llm_server import Reply, ScriptedLLM


class LoopChat(Platform):
    """A chat platform whose far end is in memory: what the bot sent, and failures to inject."""

    name = "loopchat"
    max_message_length = 100

    def __init__(self, gateway: Gateway, config: Any) -> None:
        super().__init__(gateway, config)
        self.sent: list[tuple[str, str]] = []
        #: What the next sends do: None succeeds, an exception fails.
        self.failures: deque[BaseException | None] = deque()
        self.typing_seen = 0

    #: Messages that "arrive" while the gateway is still starting its platforms.
    arriving_at_start: ClassVar[list[dict[str, str]]] = []

    async def start(self) -> None:
        for message in self.arriving_at_start:
            row, new = self.gateway.submit(platform=self.name, **message)
            assert row is not None and new  # Stored, to be answered once started.

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> None:
        failure = self.failures.popleft() if self.failures else None
        if failure is not None:
            raise failure
        self.sent.append((chat_id, text))

    async def typing(self, chat_id: str, thread_id: str) -> None:
        self.typing_seen += 1


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def loopchat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(platforms_module.PLATFORMS, "loopchat", lambda: LoopChat)


def write_config(home: Path, llm: ScriptedLLM, **loopchat: Any) -> None:
    home.mkdir(parents=True, exist_ok=True)
    gateway = loopchat.pop("gateway", {})
    config = {
        "model": {"provider": "custom", "base_url": llm.openai_base_url, "default": "test-model"},
        "gateway": {
            "send_retries": 3,
            "platforms": {"loopchat": {"enabled": True, **loopchat}},
            **gateway,
        },
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))


def make_gateway(home: Path) -> Gateway:
    from hermes_agent.agent.factory import agent_parts
    from hermes_agent.config.loader import load_config

    config = load_config()
    settings, tools, cwd = agent_parts(config)
    return Gateway(config=config, settings=settings, tools=tools, cwd=cwd, db=StateDB())


Scenario = Callable[[Gateway, LoopChat], Awaitable[None]]


def serve(home: Path, scenario: Scenario) -> Gateway:
    """Run the gateway, play ``scenario`` against it, then stop it (SIGTERM's path)."""
    gateway = make_gateway(home)

    async def main() -> None:
        serving = asyncio.create_task(gateway.serve())
        while not gateway.accepting:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        chat = gateway.platforms["loopchat"]
        assert isinstance(chat, LoopChat)
        try:
            await scenario(gateway, chat)
        finally:
            gateway.request_stop()
            await serving

    try:
        asyncio.run(main())
    finally:
        gateway.db.close()
    return gateway


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


# --- access control and pairing ---------------------------------------------------------


def test_empty_allow_list_refuses_and_pairing_lets_the_user_in(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm)
    llm.add(Reply("Welcome aboard."))
    codes: list[str] = []

    async def stranger(gateway: Gateway, chat: LoopChat) -> None:
        row, new = gateway.submit(
            platform="loopchat", chat_id="c9", message_id="m1", text="hi", user_id="u9"
        )
        assert (row, new) == (None, False)
        await until(lambda: "valid for one hour" in "".join(t for _, t in chat.sent))
        sent = len(chat.sent)  # The notice is longer than LoopChat's 100 characters.
        assert {c for c, _ in chat.sent} == {"c9"}
        text = "\n".join(t for _, t in chat.sent)
        assert "hermes gateway pair approve" in text
        codes.append(text.split("approve ")[1].split()[0])
        # Asking again does not hand out a second code (no spam, no code churn).
        assert gateway.submit(
            platform="loopchat", chat_id="c9", message_id="m2", text="hello?", user_id="u9"
        ) == (None, False)
        await asyncio.sleep(0.2)
        assert len(chat.sent) == sent

    serve(hermes_home, stranger)
    assert llm.requests == []  # The model never saw the stranger's words...
    with StateDB() as db:  # ...and they were not stored either.
        assert db.unfinished_inbound() == [] and db.undelivered_inbound() == []

    env = clean_env(hermes_home)
    listed = subprocess.run(
        [str(HERMES), "gateway", "pair", "list"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and codes[0] in listed.stdout and "u9" in listed.stdout
    wrong = subprocess.run(
        [str(HERMES), "gateway", "pair", "approve", "NOPE-NOPE"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2 and "no pairing request has the code" in wrong.stderr
    # The owner may type the code in lower case and without the dash.
    typed = codes[0].replace("-", " ").lower()
    approved = subprocess.run(
        [str(HERMES), "gateway", "pair", "approve", typed], env=env, capture_output=True, text=True
    )
    assert approved.returncode == 0, approved.stderr
    assert "loopchat user u9" in approved.stdout

    async def paired(gateway: Gateway, chat: LoopChat) -> None:
        row, new = gateway.submit(
            platform="loopchat", chat_id="c9", message_id="m3", text="hi again", user_id="u9"
        )
        assert row is not None and new
        await until(lambda: len(chat.sent) == 1)
        assert chat.sent == [("c9", "Welcome aboard.")]

    serve(hermes_home, paired)
    revoked = subprocess.run(
        [str(HERMES), "gateway", "pair", "revoke", "loopchat", "u9"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert revoked.returncode == 0
    with StateDB() as db:
        assert not db.is_paired("loopchat", "u9")


def test_allowed_users_and_chats_are_let_in(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    # Numbers, as YAML reads Telegram-style ids, work as well as strings.
    write_config(hermes_home, llm, allowed_users=[1001], allowed_chats=["team-room"])
    llm.add(Reply("For the owner."), Reply("For the room."))

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        row, _ = gateway.submit(
            platform="loopchat", chat_id="dm", message_id="1", text="a", user_id="1001"
        )
        assert row is not None
        await until(lambda: len(chat.sent) == 1)
        row, _ = gateway.submit(
            platform="loopchat", chat_id="team-room", message_id="2", text="b", user_id="5"
        )
        assert row is not None
        await until(lambda: len(chat.sent) == 2)

    serve(hermes_home, scenario)


def test_pairing_off_refuses_silently(hermes_home: Path, llm: ScriptedLLM, loopchat: None) -> None:
    write_config(hermes_home, llm, gateway={"pairing": False})

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        assert gateway.submit(
            platform="loopchat", chat_id="c", message_id="1", text="hi", user_id="x"
        ) == (None, False)
        await asyncio.sleep(0.2)
        assert chat.sent == []

    serve(hermes_home, scenario)
    with StateDB() as db:
        assert db.pairing_requests() == []


def test_a_message_arriving_while_platforms_start_is_stored_and_answered(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(hermes_home, llm, allowed_users=["u"])
    llm.add(Reply("first"), Reply("second"))
    # An answer an earlier run left pending, then one arriving during the start: in order.
    with StateDB() as db:
        db.add_inbound(platform="loopchat", chat_id="c", message_id="old", text="a", user_id="u")
    early = [{"chat_id": "c", "message_id": "new", "text": "b", "user_id": "u"}]
    monkeypatch.setattr(LoopChat, "arriving_at_start", early)

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        await until(lambda: len(chat.sent) == 2)
        assert chat.sent == [("c", "first"), ("c", "second")]

    serve(hermes_home, scenario)
    assert [r.messages[-1]["content"] for r in llm.requests] == ["a", "b"]


# --- delivery -----------------------------------------------------------------------------

LONG = " ".join(f"word{i:03d}" for i in range(40))  # 319 characters.


def test_long_reply_is_split_and_a_rate_limit_is_waited_out(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm, allowed_users=["u"])
    llm.add(Reply(LONG))
    waited: list[float] = []

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        chat.failures.append(SendError("Too Many Requests", retry_after=0.5))
        began = time.monotonic()
        gateway.submit(platform="loopchat", chat_id="c", message_id="1", text="go", user_id="u")
        await until(lambda: len(chat.sent) == 4)
        waited.append(time.monotonic() - began)

    serve(hermes_home, scenario)
    assert waited[0] >= 0.5  # retry_after was honoured before the first chunk went out.
    with StateDB() as db:
        row = db.get_inbound(1)
    assert row is not None and row.delivery == "sent" and row.delivered == 4


def test_a_reply_that_cannot_be_sent_is_reported_to_the_user(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm, allowed_users=["u"])
    llm.add(Reply(LONG))

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        chat.failures.extend([None, SendError("Bad Request: chat is gone", permanent=True)])
        gateway.submit(platform="loopchat", chat_id="c", message_id="1", text="go", user_id="u")
        await until(lambda: len(chat.sent) == 2)
        await asyncio.sleep(0.2)
        # Chunk 1 arrived, chunk 2 was refused for good (no retry), 3 and 4 were not
        # tried, and the user is told, not only the log.
        assert len(chat.sent) == 2 and chat.failures == deque()
        assert "could not be delivered (Bad Request: chat is gone)" in chat.sent[1][1]

    serve(hermes_home, scenario)
    with StateDB() as db:
        row = db.get_inbound(1)
    assert row is not None and row.delivery == "failed" and row.delivered == 1


def test_an_undelivered_reply_is_sent_after_a_restart_from_the_first_missing_chunk(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm, allowed_users=["u"])
    chunks = split_message(LONG, LoopChat.max_message_length)
    assert len(chunks) == 4
    # What a gateway killed after the platform accepted chunk 1 of 4 leaves behind.
    with StateDB() as db:
        row, _ = db.add_inbound(
            platform="loopchat", chat_id="c", message_id="1", text="go", user_id="u"
        )
        db.set_inbound_status(row.id, "done", reply=LONG)
        db.set_delivery(row.id, "sending", 1)

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        await until(lambda: len(chat.sent) == 3)

    serve(hermes_home, scenario)
    assert llm.requests == []  # Answered already: the model is not asked again.
    with StateDB() as db:
        done = db.get_inbound(row.id)
    assert done is not None and done.delivery == "sent" and done.delivered == 4


def test_a_turn_answered_before_a_crash_is_delivered_not_answered_again(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm, allowed_users=["u"])
    # Killed after the agent stored its answer, before the queue row said "done".
    with StateDB() as db:
        session = db.create_session(source="gateway:loopchat", model="test-model", cwd="/")
        db.set_route("loopchat", "c", "", session)
        row, _ = db.add_inbound(
            platform="loopchat", chat_id="c", message_id="1", text="what is 2+2?", user_id="u"
        )
        db.set_inbound_status(row.id, "processing", session_id=session)
        db.add_message(session, {"role": "user", "content": "what is 2+2?"})
        db.add_message(session, {"role": "assistant", "content": "4"})

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        await until(lambda: len(chat.sent) == 1)
        assert chat.sent == [("c", "4")]

    serve(hermes_home, scenario)
    assert llm.requests == []
    with StateDB() as db:
        assert [m["content"] for m in db.messages(session)] == ["what is 2+2?", "4"]


def test_unknown_platform_in_config_is_one_clear_error(hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text(
        "gateway:\n  platforms:\n    telegarm:\n      enabled: true\n"
    )
    done = subprocess.run(
        [str(HERMES), "gateway", "run"], env=clean_env(hermes_home), capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown platform 'telegarm'" in done.stderr
    assert "Traceback" not in done.stderr


# --- splitting ------------------------------------------------------------------------------


def test_split_keeps_short_text_whole_and_drops_empty() -> None:
    assert split_message("hello", 100) == ["hello"]
    assert split_message("   \n ", 100) == []


def test_split_prefers_paragraphs_then_lines_then_words() -> None:
    text = "first paragraph here.\n\nsecond paragraph is a bit longer than that."
    assert split_message(text, 40) == [
        "first paragraph here.",
        "second paragraph is a bit longer than",
        "that.",
    ]
    chunks = split_message(LONG, 50)
    assert all(len(c) <= 50 for c in chunks)
    assert " ".join(chunks) == LONG  # Cut only at spaces.


def test_split_cuts_a_single_huge_word_hard() -> None:
    chunks = split_message("x" * 250, 100)
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert "".join(chunks) == "x" * 250


def test_split_closes_and_reopens_a_code_block() -> None:
    code = "\n".join(f"print({i})" for i in range(30))
    text = f"Here:\n\n```python\n{code}\n```\nDone."
    chunks = split_message(text, 120)
    assert len(chunks) > 2
    for chunk in chunks:
        assert len(chunk) <= 120
        assert chunk.count("```") % 2 == 0, chunk  # Every chunk renders on its own.
    assert chunks[1].startswith("```python\n")
    joined = "\n".join(chunks)
    for i in range(30):
        assert f"print({i})" in joined


def test_split_rejects_a_silly_limit() -> None:
    with pytest.raises(ValueError):
        split_message("text", 5)


# --- delivery retries, without a gateway ----------------------------------------------------


def test_deliver_gives_up_after_the_retries_and_says_why(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm)
    gateway = make_gateway(hermes_home)
    chat = gateway.platforms["loopchat"]
    assert isinstance(chat, LoopChat)
    for _ in range(3):
        chat.failures.append(ConnectionResetError("connection reset"))
    progress: list[int] = []
    message = Outbound(platform="loopchat", chat_id="c", thread_id="", reply_to="1", text="hi")

    async def go() -> tuple[bool, str]:
        return await deliver(
            chat, message, retries=2, on_chunk=lambda n, _sent_id: progress.append(n)
        )

    try:
        delivered, reason = asyncio.run(go())
    finally:
        gateway.db.close()
    assert not delivered and "connection reset" in reason
    assert progress == []
    # The third failure was the last retry; the notice that followed got through.
    assert len(chat.sent) == 1 and "could not be delivered" in chat.sent[0][1]


def test_sends_to_one_chat_take_turns_and_other_chats_do_not_wait(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    """One send at a time per chat (a delivery mark covers all sent before it)."""
    write_config(hermes_home, llm)
    gateway = make_gateway(hermes_home)
    chat = gateway.platforms["loopchat"]
    events: list[str] = []

    async def send(chat_id: str, name: str) -> None:
        async with chat.one_send_at_a_time(chat_id):
            events.append(f"{name} in")
            await asyncio.sleep(0.05)
            events.append(f"{name} out")

    async def go() -> None:
        await asyncio.gather(send("a", "a1"), send("a", "a2"), send("b", "b1"))

    try:
        asyncio.run(go())
    finally:
        gateway.db.close()
    assert events.index("a1 out") < events.index("a2 in")  # Same chat: in turn.
    assert events.index("b1 in") < events.index("a1 out")  # Another chat: side by side.
    assert chat._chat_locks == {}  # Nothing kept for chats nobody is sending to.


# --- reconnecting ---------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_the_cap_and_never_stops() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    delays = [backoff.next_delay() for _ in range(50)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0
    assert all(4.0 <= d <= 8.0 for d in delays[10:])
    assert len(set(delays)) > 40  # Jittered: reconnecting clients do not move in lockstep.
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_supervise_reconnects_after_errors_and_the_watchdog_restarts_a_silent_link(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None
) -> None:
    write_config(hermes_home, llm, gateway={"reconnect_max_delay": 0.2})
    gateway = make_gateway(hermes_home)
    chat = gateway.platforms["loopchat"]
    assert isinstance(chat, LoopChat)
    chat.watchdog_seconds = 0.3
    attempts: list[str] = []

    async def connect_once() -> None:
        attempts.append("try")
        if len(attempts) <= 3:
            raise ConnectionRefusedError("refused")  # An outage: refused three times.
        if len(attempts) == 4:
            await asyncio.sleep(3600)  # Connected, then silent: the watchdog's case.
        while True:  # A healthy link that keeps reporting.
            chat.alive()
            await asyncio.sleep(0.05)

    async def go() -> float:
        began = time.monotonic()
        chat.supervise("poll", connect_once)
        await until(lambda: len(attempts) >= 5, timeout=10)
        took = time.monotonic() - began
        await asyncio.sleep(1.0)  # Healthy now: no further reconnects.
        assert len(attempts) == 5
        await chat.stop_supervised()
        return took

    try:
        took = asyncio.run(go())
    finally:
        gateway.db.close()
    assert took < 5


def test_optional_modules_skipped_only_inside_the_block() -> None:
    """What keeps python-telegram-bot's optional imports (pytz...) out of the gateway."""
    import json
    import sys

    from hermes_agent.gateway.platforms import optional_modules_skipped

    script = (
        "import sys\n"
        "from hermes_agent.gateway.platforms import optional_modules_skipped\n"
        "with optional_modules_skipped('colorsys', 'json'):\n"
        "    try:\n"
        "        import colorsys\n"
        "        inside = 'imported'\n"
        "    except ImportError:\n"
        "        inside = 'refused'\n"
        "    import json  # Already imported before the block: left alone.\n"
        "import colorsys\n"
        "print(inside, 'colorsys' in sys.modules, json.dumps(1))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.split() == ["refused", "True", "1"]
    with optional_modules_skipped("json"):
        assert json.dumps([]) == "[]"  # In this process too, an imported module stays.


# --- conversations that start over by themselves (gateway.session_reset) ------------------


def _age_sessions(seconds: float) -> None:
    """Make every session look last active ``seconds`` ago (another connection's write)."""
    import sqlite3

    from hermes_agent import home

    with contextlib.closing(sqlite3.connect(home.hermes_home() / "state.db")) as conn, conn:
        conn.execute("UPDATE sessions SET updated_at = updated_at - ?", (seconds,))


@pytest.mark.parametrize(("mode", "starts_over"), [("idle", True), ("none", False)])
def test_a_chat_idle_for_longer_than_idle_minutes_starts_a_new_conversation(
    hermes_home: Path, llm: ScriptedLLM, loopchat: None, mode: str, starts_over: bool
) -> None:
    write_config(
        hermes_home,
        llm,
        allowed_users=["u"],
        gateway={"session_reset": {"mode": mode, "idle_minutes": 60}},
    )
    llm.add(Reply("one"), Reply("two"), Reply("three"))

    async def scenario(gateway: Gateway, chat: LoopChat) -> None:
        gateway.submit(platform="loopchat", chat_id="c", message_id="1", text="a", user_id="u")
        await until(lambda: len(chat.sent) == 1)
        _age_sessions(30 * 60)  # Half an hour: the same conversation in every mode.
        gateway.submit(platform="loopchat", chat_id="c", message_id="2", text="b", user_id="u")
        await until(lambda: len(chat.sent) == 2)
        _age_sessions(61 * 60)
        gateway.submit(platform="loopchat", chat_id="c", message_id="3", text="c", user_id="u")
        await until(lambda: len(chat.sent) == 3)

    serve(hermes_home, scenario)
    users = [[m["content"] for m in r.messages if m["role"] == "user"] for r in llm.requests]
    assert users[1] == ["a", "b"]
    assert users[2] == (["c"] if starts_over else ["a", "b", "c"])
    with StateDB() as db:
        sessions = {db.get_inbound(n).session_id for n in (1, 2, 3)}  # type: ignore[union-attr]
    assert len(sessions) == (2 if starts_over else 1)


def test_reset_policy_idle_daily_both_and_none() -> None:
    def at(day: int, hour: int, minute: int = 0) -> float:
        return datetime.datetime(2026, 3, day, hour, minute).timestamp()  # Local time.

    idle = ResetPolicy("idle", idle_minutes=120, at_hour=4)
    assert idle.stale(at(1, 10), at(1, 11, 59)) == ""
    assert idle.stale(at(1, 10), at(1, 12)) == "120 minutes without a message"
    daily = ResetPolicy("daily", idle_minutes=120, at_hour=4)
    assert daily.stale(at(1, 1), at(1, 3, 59)) == ""  # Both before 04:00.
    assert daily.stale(at(1, 3, 59), at(1, 4)) == "the daily reset at 04:00"
    assert daily.stale(at(1, 5), at(1, 23)) == ""  # Both after today's 04:00.
    assert daily.stale(at(1, 23), at(2, 3)) == ""  # The next 04:00 has not come yet.
    assert daily.stale(at(1, 23), at(2, 5)) == "the daily reset at 04:00"
    both = ResetPolicy("both", idle_minutes=120, at_hour=4)
    assert both.stale(at(1, 10), at(1, 13)) and both.stale(at(1, 3), at(1, 4, 30))
    assert ResetPolicy("none", idle_minutes=1, at_hour=4).stale(at(1, 1), at(9, 9)) == ""
