"""The IRC platform: a real `hermes gateway run` against a real ngircd on 127.0.0.1.

Each test starts Debian's ngircd (tests/peers/ircd.py) on a free port, a
gateway whose provider is the loopback ScriptedLLM, and talks to the bot
through plain IRC clients connected to the same server, so every byte the
bot sends is checked as another IRC user receives it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from gateway_process import GatewayProcess, write_home
from helpers import assert_clean_failure
from hermes_agent.gateway.platforms.irc import (
    IrcLine,
    irc_lower,
    markdown_to_irc,
    parse_line,
    split_utf8,
    strip_formatting,
)
from hermes_agent.state.db import StateDB
from peers.ircd import IRCClient, IRCServer
from peers.llm_server import Reply, ScriptedLLM
from peers.tls import self_signed

pytestmark = pytest.mark.peer("ngircd")

CHANNEL = "#hermes"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def ircd() -> Iterator[IRCServer]:
    with IRCServer() as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def irc_settings(server: IRCServer, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": server.port,
        "tls": False,
        "nick": "hermes",
        "channels": [CHANNEL],
        # Written as the user would; the server shows the nick in lower case.
        "allowed_users": ["Alice"],
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def start(hermes_home: Path, workdir: Path, llm: ScriptedLLM) -> Iterator[Any]:
    """start(server, env=..., **irc settings) -> a gateway connected to the IRC server."""
    started: list[GatewayProcess] = []

    def go(
        server: IRCServer, *, env: dict[str, str] | None = None, ready: bool = True, **irc: Any
    ) -> GatewayProcess:
        write_home(
            hermes_home,
            llm,
            {"reconnect_max_delay": 1, "platforms": {"irc": irc_settings(server, **irc)}},
            env,
        )
        gateway = GatewayProcess(hermes_home, workdir)
        started.append(gateway)
        if ready:
            gateway.wait_for_log(r"irc: joined #hermes")
            gateway.wait_for_log(r"gateway running")
        return gateway

    yield go
    for gateway in started:
        gateway.kill()


def user_texts(llm: ScriptedLLM) -> list[str]:
    """The last user message of every request the model received."""
    texts = []
    for request in llm.requests:
        users = [m["content"] for m in request.messages if m.get("role") == "user"]
        texts.append(users[-1] if users else "")
    return texts


def test_addressed_channel_line_and_private_message_are_answered(
    ircd: IRCServer, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Hello alice, from the channel."))
    llm.add(Reply("A **private** hello."))
    with IRCClient(ircd.port, "alice") as alice:
        alice.join(CHANNEL)
        gateway = start(ircd)
        alice.privmsg(CHANNEL, "just talking to the room, not to the bot")
        alice.privmsg(CHANNEL, "\x01ACTION waves\x01")
        alice.privmsg("hermes", "\x01VERSION\x01")
        alice.privmsg(CHANNEL, "hermes: what is the \x02time\x02?")
        (answer,) = alice.wait_privmsg(sender="hermes")
        assert answer.target == CHANNEL
        assert answer.text == "alice: Hello alice, from the channel."

        alice.privmsg("hermes", "hi privately")
        answers = alice.wait_privmsg(sender="hermes", count=2, quiet=1.0)
        assert len(answers) == 2
        assert answers[1].target == "alice"
        assert answers[1].text == "A \x02private\x02 hello."

    # Only the two addressed messages reached the model, the address and formatting removed.
    assert user_texts(llm) == ["what is the time?", "hi privately"]
    assert gateway.terminate() == 0
    with StateDB(gateway.home / "state.db") as db:
        sessions = db.list_sessions()
        assert {s.source for s in sessions} == {"gateway:irc"}
        assert len(sessions) == 2  # The channel and the private chat are two conversations.


def test_long_reply_is_cut_into_lines_that_fit_512_bytes(
    ircd: IRCServer, start: Any, llm: ScriptedLLM
) -> None:
    paragraph = (
        "Über die Brücke gehen Mädchen und Jungen, 日本語のテキストも混ざっています, "
        "and emoji like 🚀🌍 take four bytes each. "
    )
    long_text = "## Report\n\n" + paragraph * 12 + "\n\nDone.\r\nQUIT :injected\nlast line"
    llm.add(Reply(long_text))
    llm.add(Reply("still here"))
    with IRCClient(ircd.port, "alice") as alice:
        gateway = start(ircd)
        alice.privmsg("hermes", "write a long report")
        first = time.monotonic()
        answers = alice.wait_privmsg(sender="hermes", count=6, timeout=60)
        answers = alice.wait_privmsg(sender="hermes", count=len(answers), quiet=2.5)
        took = time.monotonic() - first
        for answer in answers:
            assert len(answer.raw) + 2 <= 512, answer.raw
            assert answer.target == "alice"
        texts = [a.text for a in answers]
        assert texts[0] == "\x02Report\x02"
        # The injected CR ends nothing: its text arrives as a line of the reply.
        assert texts[-3:] == ["Done.", "QUIT :injected", "last line"]
        body = " ".join(texts[1:-3])
        assert body == (paragraph * 12).strip()
        assert any(len(a.raw) > 400 for a in answers)  # Lines are filled, not tiny.
        # Flood control: after a burst of 4, about one line a second.
        assert took >= (len(answers) - 5) * 0.9
        # The bot is still connected and answering.
        alice.privmsg("hermes", "are you there?")
        answers = alice.wait_privmsg(sender="hermes", count=len(answers) + 1)
        assert answers[-1].text == "still here"
    assert gateway.terminate() == 0


def test_server_restart_reconnects_and_answers(
    ircd: IRCServer, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("before the restart"))
    llm.add(Reply("after the restart"))
    gateway = start(ircd)
    with IRCClient(ircd.port, "alice") as alice:
        alice.privmsg("hermes", "one")
        assert alice.wait_privmsg(sender="hermes")[0].text == "before the restart"
    ircd.kill()
    gateway.wait_for_log(r"irc connection: .*reconnecting")
    time.sleep(1.0)  # A few refused attempts while the server is down.
    ircd.start()
    gateway.wait_for_log(r"irc: joined #hermes", count=2, timeout=30)
    with IRCClient(ircd.port, "alice") as alice:
        alice.privmsg("hermes", "two")
        assert alice.wait_privmsg(sender="hermes")[0].text == "after the restart"
    assert user_texts(llm) == ["one", "two"]
    assert gateway.terminate() == 0


def test_server_down_at_start_is_retried_in_the_background(
    ircd: IRCServer, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("up now"))
    ircd.kill()
    gateway = start(ircd, ready=False)
    gateway.wait_for_log(r"irc: cannot connect to 127\.0\.0\.1:\d+ yet")
    gateway.wait_for_log(r"gateway running")
    ircd.start()
    gateway.wait_for_log(r"irc: joined #hermes", timeout=30)
    with IRCClient(ircd.port, "alice") as alice:
        alice.privmsg("hermes", "are you up?")
        assert alice.wait_privmsg(sender="hermes")[0].text == "up now"
    assert gateway.terminate() == 0


def test_silent_server_is_left_by_the_watchdog(
    ircd: IRCServer, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("back again"))
    gateway = start(ircd, ping_interval=2)
    ircd.pause()  # The TCP connection stays up; nothing answers our PING.
    try:
        gateway.wait_for_log(r"irc connection: nothing heard for 5 s; reconnecting", timeout=20)
    finally:
        ircd.resume()
    gateway.wait_for_log(r"irc: joined #hermes", count=2, timeout=30)
    with IRCClient(ircd.port, "alice") as alice:
        alice.privmsg("hermes", "still there?")
        assert alice.wait_privmsg(sender="hermes")[0].text == "back again"
    assert gateway.terminate() == 0


def test_nick_in_use_takes_an_alternate(ircd: IRCServer, start: Any, llm: ScriptedLLM) -> None:
    llm.add(Reply("answered as hermes_"))
    with IRCClient(ircd.port, "hermes") as squatter, IRCClient(ircd.port, "alice") as alice:
        alice.join(CHANNEL)
        squatter.join(CHANNEL)
        gateway = start(ircd, ping_interval=2)
        assert "nick hermes is not available" in gateway.output()
        alice.wait_for(lambda line: line.startswith(b":hermes_!") and b" JOIN " in line)
        alice.privmsg(CHANNEL, "hermes: you are the squatter, not the bot")
        alice.privmsg(CHANNEL, "hermes_, are you the bot?")
        (answer,) = alice.wait_privmsg(sender="hermes_", quiet=1.0)
        assert answer.text == "alice: answered as hermes_"
    assert user_texts(llm) == ["are you the bot?"]
    # Once the nick is free again, the bot takes it back (people write to the real one).
    squatter.close()
    gateway.wait_for_log(r"irc: now known as hermes\b", timeout=30)
    assert gateway.terminate() == 0


def test_user_not_allowed_gets_a_pairing_code_not_an_answer(
    ircd: IRCServer, start: Any, llm: ScriptedLLM
) -> None:
    with IRCClient(ircd.port, "mallory") as mallory:
        gateway = start(ircd)
        mallory.privmsg("hermes", "let me in")
        answers = mallory.wait_privmsg(sender="hermes", quiet=1.0)
        text = " ".join(a.text for a in answers)
        assert "hermes gateway pair approve" in text
        assert all(a.target == "mallory" for a in answers)
    assert llm.requests == []
    assert gateway.terminate() == 0


def test_wrong_server_password_is_a_clear_error(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM
) -> None:
    with IRCServer(password="right-password-123") as server:
        for env, expected in (
            ({"IRC_PASSWORD": "wrong-password-456"}, "check IRC_PASSWORD"),
            ({}, "it may need a password: set IRC_PASSWORD"),
        ):
            write_home(hermes_home, llm, {"platforms": {"irc": irc_settings(server)}}, env)
            gateway = GatewayProcess(hermes_home, workdir)
            assert gateway.wait_exit() == 1
            out = gateway.output()
            assert f"hermes: irc: 127.0.0.1:{server.port} refused the login" in out
            assert expected in out
            assert "Traceback" not in out
            assert "wrong-password-456" not in out
        # The right one connects.
        write_home(
            hermes_home,
            llm,
            {"platforms": {"irc": irc_settings(server)}},
            {"IRC_PASSWORD": "right-password-123"},
        )
        gateway = GatewayProcess(hermes_home, workdir)
        try:
            gateway.wait_for_log(r"irc: joined #hermes")
            assert gateway.terminate() == 0
        finally:
            gateway.kill()


def test_missing_or_bad_settings_are_clear_errors(
    hermes_home: Path, hermes: Runner, llm: ScriptedLLM, ircd: IRCServer
) -> None:
    for override, message in (
        ({"host": ""}, "gateway.platforms.irc.host is not set"),
        ({"nick": "9lives"}, "'9lives' is not a valid IRC nick"),
        ({"channels": ["hermes"]}, "'hermes' is not a channel name"),
    ):
        write_home(hermes_home, llm, {"platforms": {"irc": irc_settings(ircd, **override)}})
        result = hermes("gateway", "run")
        assert_clean_failure(result, 2)
        assert message in result.stderr


def test_tls_needs_a_trusted_certificate(
    tmp_path: Path, hermes_home: Path, workdir: Path, llm: ScriptedLLM
) -> None:
    certificate = self_signed(tmp_path / "tls")
    llm.add(Reply("over TLS"))
    with IRCServer(tls=certificate) as server:
        settings = irc_settings(server, port=server.tls_port, tls=True)
        write_home(hermes_home, llm, {"platforms": {"irc": settings}})
        # A certificate nobody vouches for: refused, with the reason.
        gateway = GatewayProcess(hermes_home, workdir)
        assert gateway.wait_exit() == 1
        out = gateway.output()
        assert f"hermes: irc: the certificate of 127.0.0.1:{server.tls_port} cannot be" in out
        assert "Traceback" not in out
        # Signed by a CA the system trusts (here: the test's own): connects and answers.
        gateway = GatewayProcess(hermes_home, workdir, env={"SSL_CERT_FILE": str(certificate.cert)})
        try:
            gateway.wait_for_log(r"irc: joined #hermes")
            with IRCClient(server.port, "alice") as alice:
                alice.privmsg("hermes", "secure?")
                assert alice.wait_privmsg(sender="hermes")[0].text == "over TLS"
            assert gateway.terminate() == 0
        finally:
            gateway.kill()


def test_stopping_says_quit(ircd: IRCServer, start: Any) -> None:
    with IRCClient(ircd.port, "alice") as alice:
        alice.join(CHANNEL)
        gateway = start(ircd)
        alice.wait_for(lambda line: line.startswith(b":hermes!") and b" JOIN " in line)
        assert gateway.terminate() == 0
        quit_line = alice.wait_for(lambda line: line.startswith(b":hermes!"), timeout=10)
        assert b" QUIT :" in quit_line and b"shutting down" in quit_line
    assert "reconnecting" not in gateway.output()


# --- the pieces that read and write IRC lines, on their own -----------------------------


def test_lines_are_parsed_with_tags_prefix_and_trailing() -> None:
    line = parse_line(b"@time=2025-01-01T00:00:00Z :alice!~a@host PRIVMSG #chan :hi: there \r\n")
    assert line == IrcLine("alice!~a@host", "PRIVMSG", ("#chan", "hi: there "))
    assert line.nick == "alice"
    assert parse_line(b"PING :irc.example\r\n") == IrcLine("", "PING", ("irc.example",))
    assert parse_line(b":srv 005 me CASEMAPPING=ascii :are supported\r\n") == IrcLine(
        "srv", "005", ("me", "CASEMAPPING=ascii", "are supported")
    )
    assert parse_line(b"\xe9t\xe9 :caf\xe9\r\n") == IrcLine("", "\u00c9T\u00c9", ("caf\u00e9",))
    assert parse_line(b"\r\n") is None


def test_utf8_splitting_respects_bytes_and_characters() -> None:
    text = "Grüße aus 東京 🚀 " * 60
    for limit in (20, 57, 100, 431):
        pieces = split_utf8(text.strip(), limit)
        assert all(len(p.encode()) <= limit for p in pieces)
        assert " ".join(pieces) == text.strip()  # Cut at spaces: nothing lost or broken.
    word = "🚀" * 50  # No space at all: cut between characters.
    pieces = split_utf8(word, 10)
    assert pieces == ["🚀🚀"] * 25


def test_markdown_becomes_irc_text() -> None:
    text = (
        "# Title\n\nSome **bold** and *italic* and `code`, a [link](https://x.test).\n"
        "* item\n\n```python\nprint('**not bold**')\n```"
    )
    assert markdown_to_irc(text) == (
        "\x02Title\x02\n\nSome \x02bold\x02 and italic and code, a link <https://x.test>.\n"
        "- item\n\nprint('**not bold**')"
    )
    assert strip_formatting("\x0304,01red\x0f \x02b\x02 \x1di\x1d") == "red b i"
    assert irc_lower("Nick[]\\~") == "nick{}|^"
    assert irc_lower("Nick[]", "ascii") == "nick[]"
