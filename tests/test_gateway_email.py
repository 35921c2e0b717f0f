"""The e-mail platform: a real `hermes gateway run` against real dovecot (IMAP) and aiosmtpd.

Mail reaches the agent's INBOX by IMAP APPEND (as a delivery agent would put
it there), the gateway reads it over IMAP IDLE, and its replies are caught
by aiosmtpd (tests/peers/mail.py); the provider is the loopback ScriptedLLM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from gateway_process import GatewayProcess, write_home
from helpers import assert_clean_failure
from hermes_agent.gateway.platforms.email import mailbox_name, reply_subject, strip_quoted
from hermes_agent.state.db import StateDB
from peers.llm_server import Hang, Reply, ScriptedLLM
from peers.mail import Dovecot, SMTPSink
from peers.tls import Certificate, self_signed

pytestmark = pytest.mark.peer("dovecot")

AGENT = "agent@hermes.test"
PASSWORD = "agent-password-123"
ALICE = "alice@example.test"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def imap() -> Iterator[Dovecot]:
    with Dovecot({AGENT: PASSWORD}) as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def email_settings(imap: Dovecot, smtp: SMTPSink, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "enabled": True,
        "address": AGENT,
        "imap_host": "127.0.0.1",
        "imap_port": imap.port,
        "imap_tls": "off",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_tls": "off",
        # Written as the user would; senders' addresses are matched ignoring case.
        "allowed_users": ["Alice@Example.test"],
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def start(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM, imap: Dovecot, smtp: SMTPSink
) -> Iterator[Any]:
    """start(password=..., **gateway settings) -> a gateway watching the agent's INBOX."""
    started: list[GatewayProcess] = []

    def go(*, password: str = PASSWORD, ready: bool = True, **gateway: Any) -> GatewayProcess:
        write_home(
            hermes_home,
            llm,
            {
                "reconnect_max_delay": 1,
                "platforms": {"email": email_settings(imap, smtp)},
                **gateway,
            },
            {"EMAIL_PASSWORD": password},
        )
        process = GatewayProcess(hermes_home, workdir)
        started.append(process)
        if ready:
            process.wait_for_log(r"gateway running")
            process.wait_for_log(r"email: watching INBOX")
        return process

    yield go
    for process in started:
        process.kill()


def mail(
    subject: str,
    body: str,
    *,
    sender: str = f"Alice <{ALICE}>",
    reply_to: EmailMessage | None = None,
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = AGENT
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.test")
    if reply_to is not None:
        parent = reply_to["Message-ID"]
        message["In-Reply-To"] = parent
        message["References"] = " ".join([*(reply_to["References"] or "").split(), parent])
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def user_texts(llm: ScriptedLLM) -> list[str]:
    texts = []
    for request in llm.requests:
        users = [m["content"] for m in request.messages if m.get("role") == "user"]
        texts.append(users[-1] if users else "")
    return texts


def test_mail_is_answered_in_its_thread_and_a_reply_continues_the_session(
    imap: Dovecot, smtp: SMTPSink, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Pack light: a sweater and good shoes."))
    llm.add(Reply("For the beach: sunscreen."))
    llm.add(Reply("A new topic, a new conversation."))
    gateway = start()
    first = mail("Trip plans", "What should I pack?\n\n-- \nAlice, sent from her phone")
    imap.append(AGENT, first)
    (sent,) = smtp.wait_for(1)
    reply = sent.message
    assert sent.mail_from == AGENT and sent.rcpt_tos == [ALICE]
    assert reply["From"] == AGENT and reply["To"] == ALICE
    assert reply["Subject"] == "Re: Trip plans"
    assert reply["In-Reply-To"] == first["Message-ID"]
    assert reply["References"] == first["Message-ID"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@hermes.test>")
    assert reply.get_content().strip() == "Pack light: a sweater and good shoes."
    assert "\\Seen" in imap.flags(AGENT, first["Message-ID"])

    # Alice answers the reply, quoting it: the same thread, the same conversation.
    second = mail(
        "Re: Trip plans",
        "And for the beach?\n\nOn Monday, Hermes wrote:\n> Pack light: a sweater and good shoes.\n",
        reply_to=reply,
    )
    imap.append(AGENT, second)
    sent_second = smtp.wait_for(2)[1].message
    assert sent_second["Subject"] == "Re: Trip plans"
    assert sent_second["In-Reply-To"] == second["Message-ID"]
    assert sent_second["References"].split() == [
        first["Message-ID"],
        reply["Message-ID"],
        second["Message-ID"],
    ]
    # The model saw the first exchange as history of the second turn.
    history = [m.get("content") for m in llm.requests[1].messages]
    assert "Pack light: a sweater and good shoes." in history

    # A new mail without references starts a conversation of its own.
    imap.append(AGENT, mail("Another thing", "Unrelated question"))
    assert smtp.wait_for(3)[2].message["Subject"] == "Re: Another thing"

    assert user_texts(llm) == [
        "Subject: Trip plans\n\nWhat should I pack?",
        "And for the beach?",
        "Subject: Another thing\n\nUnrelated question",
    ]
    assert gateway.terminate() == 0
    with StateDB(gateway.home / "state.db") as db:
        sessions = db.list_sessions()
        assert len(sessions) == 2
        assert {s.source for s in sessions} == {"gateway:email"}


def test_mail_that_arrived_while_down_is_answered_once(
    imap: Dovecot, smtp: SMTPSink, start: Any, llm: ScriptedLLM
) -> None:
    waiting = mail("While you were away", "Did you get this?")
    imap.append(AGENT, waiting)
    llm.add(Reply("Yes, got it after starting."))
    gateway = start()
    (sent,) = smtp.wait_for(1)
    assert sent.message["In-Reply-To"] == waiting["Message-ID"]
    assert gateway.terminate() == 0

    # Unread again (as after a crash between the gateway storing it and \Seen): a
    # second start fetches it again, and it is still not answered twice.
    client = imap.client(AGENT)
    client.select("INBOX")
    client.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
    client.logout()
    assert "\\Seen" not in imap.flags(AGENT, waiting["Message-ID"])
    gateway = start()
    gateway.wait_for_log(r"is a repeat of 1")
    deadline = time.monotonic() + 60
    while "\\Seen" not in imap.flags(AGENT, waiting["Message-ID"]):
        assert time.monotonic() < deadline, gateway.output()
        time.sleep(0.1)
    time.sleep(1.0)
    assert len(smtp.messages) == 1
    assert len(llm.requests) == 1
    assert gateway.terminate() == 0


def test_imap_server_restart_reconnects_and_answers(
    imap: Dovecot, smtp: SMTPSink, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Answered after the IMAP server came back."))
    gateway = start()
    imap.kill()
    gateway.wait_for_log(r"email imap: .*reconnecting")
    time.sleep(1.0)  # A few refused attempts while it is down.
    imap.start()
    gateway.wait_for_log(r"email: watching INBOX", count=2, timeout=30)
    imap.append(AGENT, mail("After the outage", "Are you back?"))
    (sent,) = smtp.wait_for(1)
    assert sent.message["Subject"] == "Re: After the outage"
    assert gateway.terminate() == 0


def test_sender_not_allowed_gets_a_pairing_code_not_an_answer(
    imap: Dovecot, smtp: SMTPSink, start: Any, llm: ScriptedLLM
) -> None:
    start()
    stranger = mail("Hello", "Can I use your agent?", sender="Mallory <mallory@example.test>")
    imap.append(AGENT, stranger)
    (sent,) = smtp.wait_for(1)
    assert sent.rcpt_tos == ["mallory@example.test"]
    assert sent.message["Subject"] == "Re: Hello"
    assert sent.message["In-Reply-To"] == stranger["Message-ID"]
    assert "hermes gateway pair approve" in sent.message.get_content()
    assert "\\Seen" in imap.flags(AGENT, stranger["Message-ID"])
    assert llm.requests == []


def test_automatic_mail_and_our_own_mail_are_not_answered(
    imap: Dovecot, smtp: SMTPSink, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Reply("Only this one is answered."))
    gateway = start()
    ignored = [
        mail("Out of office", "I am away.", Auto_Submitted="auto-replied"),
        mail("Newsletter", "News!", Precedence="bulk"),
        mail("Re: loop", "Our own reply came back.", sender=f"Hermes <{AGENT}>"),
        mail("Undelivered", "Bounce.", sender="MAILER-DAEMON@example.test"),
    ]
    for message in ignored:
        imap.append(AGENT, message)
    html = EmailMessage()
    html["From"] = ALICE
    html["To"] = AGENT
    html["Subject"] = "Formatted"
    html["Message-ID"] = make_msgid(domain="example.test")
    html.set_content(
        "<html><head><style>p {color: red}</style></head><body><p>Hello &amp; welcome,</p>"
        "<p>what is <b>2+2</b>?</p></body></html>",
        subtype="html",
    )
    html.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    imap.append(AGENT, html)
    (sent,) = smtp.wait_for(1)
    assert sent.message["In-Reply-To"] == html["Message-ID"]
    assert user_texts(llm) == [
        "Subject: Formatted\n\nHello & welcome,\n\nwhat is 2+2?\n\n"
        "[attachment not read: a.pdf (application/pdf)]"
    ]
    for message in ignored:
        assert "\\Seen" in imap.flags(AGENT, message["Message-ID"])
    time.sleep(0.5)
    assert len(smtp.messages) == 1
    assert gateway.output().count("not answered:") == 4


def test_reply_owed_from_before_a_restart_keeps_its_threading(
    imap: Dovecot, smtp: SMTPSink, start: Any, llm: ScriptedLLM
) -> None:
    llm.add(Hang(30))
    llm.add(Reply("Answered after the restart."))
    gateway = start(shutdown_timeout=0)
    question = mail("Slow question", "Take your time.")
    imap.append(AGENT, question)
    deadline = time.monotonic() + 20
    while not llm.requests:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert gateway.terminate() == 0
    assert smtp.messages == []
    gateway = start(shutdown_timeout=0)
    (sent,) = smtp.wait_for(1)
    # This process never read the mail: subject and references come from the mailbox.
    assert sent.message["Subject"] == "Re: Slow question"
    assert sent.message["In-Reply-To"] == question["Message-ID"]
    assert sent.message["References"] == question["Message-ID"]
    assert sent.message.get_content().strip() == "Answered after the restart."
    assert gateway.terminate() == 0


def test_wrong_password_is_a_clear_error(
    imap: Dovecot, smtp: SMTPSink, start: Any, hermes: Runner
) -> None:
    gateway = start(password="not-the-password-789", ready=False)
    assert gateway.wait_exit() == 1
    out = gateway.output()
    assert f"hermes: email: the IMAP server 127.0.0.1:{imap.port} refused the login of" in out
    assert "check EMAIL_PASSWORD" in out
    assert "Traceback" not in out
    assert "not-the-password-789" not in out

    (gateway.home / ".env").write_text("")
    result = hermes("gateway", "run")
    assert_clean_failure(result, 2)
    assert "needs EMAIL_PASSWORD in" in result.stderr


def test_bad_settings_are_clear_errors(
    imap: Dovecot, smtp: SMTPSink, hermes_home: Path, hermes: Runner, llm: ScriptedLLM
) -> None:
    missing = f"email: 127.0.0.1:{imap.port}: cannot open the mailbox 'Nope'"
    for overrides, code, message in (
        ({"mailbox": "Nope"}, 1, missing),
        ({"address": ""}, 2, "gateway.platforms.email.address is not set"),
        ({"address": "not-an-address"}, 2, "'not-an-address' is not an e-mail address"),
        ({"imap_tls": "yes"}, 2, "gateway.platforms.email.imap_tls"),
    ):
        settings = email_settings(imap, smtp, **overrides)
        env = {"EMAIL_PASSWORD": PASSWORD}
        write_home(hermes_home, llm, {"platforms": {"email": settings}}, env)
        result = hermes("gateway", "run")
        assert_clean_failure(result, code)
        assert message in result.stderr


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return self_signed(tmp_path / "tls")


@pytest.mark.parametrize(("imap_tls", "smtp_tls"), [("tls", "starttls"), ("starttls", "tls")])
def test_tls_and_smtp_login_as_a_real_provider_wants_them(
    imap_tls: str,
    smtp_tls: str,
    certificate: Certificate,
    hermes_home: Path,
    workdir: Path,
    llm: ScriptedLLM,
) -> None:
    llm.add(Reply("Sent over TLS."))
    with (
        Dovecot({AGENT: PASSWORD}, tls=certificate) as imap,
        SMTPSink(tls=smtp_tls, certificate=certificate, users={AGENT: PASSWORD}) as smtp,
    ):
        settings = email_settings(
            imap,
            smtp,
            imap_tls=imap_tls,
            imap_port=imap.tls_port if imap_tls == "tls" else imap.port,
            smtp_tls=smtp_tls,
        )
        write_home(
            hermes_home, llm, {"platforms": {"email": settings}}, {"EMAIL_PASSWORD": PASSWORD}
        )
        gateway = GatewayProcess(hermes_home, workdir, env={"SSL_CERT_FILE": str(certificate.cert)})
        try:
            gateway.wait_for_log(r"email: watching INBOX")
            imap.append(AGENT, mail("Secure", "Is this encrypted?"))
            (sent,) = smtp.wait_for(1)
            assert sent.tls and sent.login == AGENT
            assert sent.message.get_content().strip() == "Sent over TLS."
            assert gateway.terminate() == 0
        finally:
            gateway.kill()


def test_tls_and_smtp_problems_are_clear_errors(
    certificate: Certificate, hermes_home: Path, workdir: Path, llm: ScriptedLLM
) -> None:
    trust = {"SSL_CERT_FILE": str(certificate.cert)}
    with (
        Dovecot({AGENT: PASSWORD}, tls=certificate) as imap,
        SMTPSink(
            tls="starttls", certificate=certificate, users={AGENT: "another-password"}
        ) as smtp,
    ):
        imaps = f"the IMAP server 127.0.0.1:{imap.tls_port}"
        cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
            ({"imap_port": imap.tls_port}, {}, f"the certificate of {imaps} cannot be trusted"),
            (
                {"imap_port": imap.port},
                trust,
                f"TLS with the IMAP server 127.0.0.1:{imap.port} failed",
            ),
            (
                {"imap_port": imap.tls_port, "smtp_tls": "starttls"},
                trust,
                f"the SMTP server 127.0.0.1:{smtp.port} refused the login of {AGENT}",
            ),
        ]
        for overrides, env, message in cases:
            settings = email_settings(imap, smtp, imap_tls="tls", **overrides)
            write_home(
                hermes_home, llm, {"platforms": {"email": settings}}, {"EMAIL_PASSWORD": PASSWORD}
            )
            gateway = GatewayProcess(hermes_home, workdir, env=env)
            assert gateway.wait_exit() == 1, gateway.output()
            out = gateway.output()
            assert f"hermes: email: {message}" in out, out
            assert "Traceback" not in out
            assert PASSWORD not in out


# --- the pieces that read a mail, on their own ------------------------------------------


def test_mailbox_names_use_modified_utf7() -> None:
    # RFC 3501 5.1.3's own example, and an ampersand.
    assert mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert mailbox_name("Entwürfe & Co") == "Entw&APw-rfe &- Co"
    assert mailbox_name("INBOX") == "INBOX"


def test_quoted_text_and_signature_are_left_out() -> None:
    body = (
        "Sounds good, see you then.\n\n-- \nAlice\n"
        "On Tue, 3 Jun 2025, Hermes <agent@hermes.test> wrote:\n> Shall we meet at 10?\n"
    )
    assert strip_quoted(body) == "Sounds good, see you then."
    outlook = "Yes.\n\n-----Original Message-----\nFrom: Hermes\nShall we?"
    assert strip_quoted(outlook) == "Yes."
    # A reply that is nothing but a quote keeps the quote rather than becoming empty.
    assert strip_quoted("> only a quote") == "> only a quote"
    # Quotes in the middle (inline answers) stay.
    inline = "> first question\nfirst answer\n> second question\nsecond answer"
    assert strip_quoted(inline) == inline


def test_reply_subjects_are_not_stacked() -> None:
    assert reply_subject("Trip plans") == "Re: Trip plans"
    assert reply_subject("RE: Trip plans") == "RE: Trip plans"
    assert reply_subject("AW:  Reise") == "AW: Reise"
    assert reply_subject("") == "Re: your message"


# --- images ------------------------------------------------------------------------------


def test_an_attached_image_reaches_the_model_as_an_image(
    hermes_home: Path,
    workdir: Path,
    imap: Dovecot,
    smtp: SMTPSink,
    llm: ScriptedLLM,
) -> None:
    import base64
    import io

    from PIL import Image

    picture = io.BytesIO()
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS: must not reach the model.
    Image.new("RGB", (800, 600), (120, 0, 120)).save(picture, "JPEG", exif=exif.tobytes())
    llm.add(Reply("A purple photo."))
    write_home(
        hermes_home,
        llm,
        {"platforms": {"email": email_settings(imap, smtp)}},
        {"EMAIL_PASSWORD": PASSWORD},
        {"vision": True},
    )
    gateway = GatewayProcess(hermes_home, workdir)
    try:
        gateway.wait_for_log(r"email: watching INBOX")
        message = mail("Holiday", "Where was this taken?")
        message.add_attachment(picture.getvalue(), "image", "jpeg", filename="trip.jpg")
        message.add_attachment(b"%PDF-1.4 ...", "application", "pdf", filename="ticket.pdf")
        imap.append(AGENT, message)
        smtp.wait_for(1)
        user = [m for m in llm.requests[0].messages if m["role"] == "user"][-1]
        text, image = user["content"]
        assert "Where was this taken?" in text["text"]
        assert "ticket.pdf" in text["text"] and "trip.jpg" not in text["text"]
        data = base64.b64decode(image["image_url"]["url"].partition(",")[2])
        with Image.open(io.BytesIO(data)) as received:
            assert received.size == (800, 600) and not received.getexif()
        assert gateway.terminate() == 0
    finally:
        gateway.kill()
