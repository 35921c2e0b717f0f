"""Real mail servers on 127.0.0.1: Debian's dovecot (IMAP) and aiosmtpd (SMTP).

``Dovecot`` writes a dovecot 2.3 config into a temporary directory (``ssl =
no``, plaintext logins allowed, a passwd-file of the given users, a static
userdb running as ``nobody``, maildirs in that directory) and runs
``/usr/sbin/dovecot -F -c CONFIG`` in the foreground; mail is put into a
mailbox with a real IMAP ``APPEND`` through the standard library's
``imaplib``, exactly as a mail client or a delivery agent would. Dovecot
refuses to store mail as root, hence ``nobody``; the directory is made
outside pytest's private tmp_path so that ``nobody`` can reach it.

``SMTPSink`` is aiosmtpd's ``Controller`` (its own thread and event loop) with
a handler that keeps every message it accepted, parsed, with its envelope.
Installed by tests/peers/install.sh (dovecot-imapd) and the dev dependencies
(aiosmtpd)::

    with Dovecot({"agent@hermes.test": "pw"}) as imap, SMTPSink() as smtp:
        imap.append("agent@hermes.test", raw_message_bytes)
        (sent,) = smtp.wait_for(1)
        imap.flags("agent@hermes.test", "<id@host>")  # -> {"\\Seen"}
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from peers.tls import Certificate

from .daemons import Daemon, free_port, port_open, stop_process

DOVECOT = "/usr/sbin/dovecot"

__all__ = ["DOVECOT", "Dovecot", "MailServerError", "SMTPSink", "Sent"]


class MailServerError(RuntimeError):
    pass


class Dovecot(Daemon):
    """An IMAP server whose users (address -> password) each have a maildir."""

    def __init__(self, users: dict[str, str], *, tls: Certificate | None = None) -> None:
        self.users = dict(users)
        self.tls = tls
        #: Plain IMAP (with STARTTLS when ``tls`` is given) and, with ``tls``, IMAPS.
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else 0
        self.dir = Path(tempfile.mkdtemp(prefix="hermes-dovecot-"))
        self.dir.chmod(0o755)
        self.config = self.dir / "dovecot.conf"
        self.log = self.dir / "dovecot.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        mail = self.dir / "mail"
        mail.mkdir(exist_ok=True)
        (self.dir / "run").mkdir(exist_ok=True)
        (self.dir / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        )
        lines = [
            f"base_dir = {self.dir / 'run'}",
            f"state_dir = {self.dir / 'state'}",
            f"instance_name = hermes-test-{self.dir.name}",
            f"log_path = {self.log}",
            "protocols = imap",
            "listen = 127.0.0.1",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0",
            "mail_location = maildir:~/Maildir",
            *(
                ["ssl = yes", f"ssl_cert = <{self.tls.cert}", f"ssl_key = <{self.tls.key}"]
                if self.tls is not None
                else ["ssl = no"]
            ),
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {self.dir / 'passwd'}",
            "}",
            "userdb {",
            "  driver = static",
        ]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(mail, nobody.pw_uid, nobody.pw_gid)
            lines += [f"  args = uid=nobody gid={nobody.pw_gid} home={mail}/%u", "}"]
            lines += ["default_login_user = dovenull", "default_internal_user = dovecot"]
        else:  # Unprivileged: everything runs as the current user.
            me = pwd.getpwuid(os.geteuid()).pw_name
            lines += [f"  args = uid={os.geteuid()} gid={os.getegid()} home={mail}/%u", "}"]
            lines += [f"default_login_user = {me}", f"default_internal_user = {me}"]
        lines += [
            "service imap-login {",
            "  chroot =",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    address = 127.0.0.1",
            f"    port = {self.tls_port}",
            "  }",
            "}",
            "service anvil {",
            "  chroot =",
            "}",
            "",
        ]
        self.config.write_text("\n".join(lines))

    def start(self) -> Dovecot:
        if not os.path.exists(DOVECOT):
            raise MailServerError(
                f"{DOVECOT} is not installed; run tests/peers/install.sh (dovecot-imapd)"
            )
        self._write_config()
        out = (self.dir / "dovecot.out").open("ab")
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Its own process group, so kill() takes its children too.
        )
        out.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MailServerError(f"dovecot exited at start:\n{self.output()}")
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise MailServerError(f"dovecot did not open port {self.port}:\n{self.output()}")

    def output(self) -> str:
        parts = []
        for path in (self.dir / "dovecot.out", self.log):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def kill(self) -> None:
        """SIGKILL dovecot and its processes at once (a crash): connections just drop."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        stop_process(self._proc, timeout=10)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- a mail client --------------------------------------------------------------

    def client(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(user, self.users[user])
        return imap

    def append(self, user: str, message: bytes | EmailMessage, mailbox: str = "INBOX") -> None:
        """APPEND a message (unseen) to ``mailbox``, as a delivery agent would."""
        raw = message.as_bytes() if isinstance(message, EmailMessage) else message
        imap = self.client(user)
        try:
            status, data = imap.append(mailbox, None, None, raw.replace(b"\r\n", b"\n"))
            if status != "OK":
                raise MailServerError(f"APPEND failed: {data!r}")
        finally:
            imap.logout()

    def flags(self, user: str, message_id: str, mailbox: str = "INBOX") -> set[str]:
        """The flags of the message with this Message-ID header (KeyError when absent)."""
        imap = self.client(user)
        try:
            imap.select(mailbox)
            _, found = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
            uids = found[0].split() if found and found[0] else []
            if not uids:
                raise KeyError(message_id)
            _, data = imap.uid("FETCH", uids[0].decode(), "(FLAGS)")
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
            match = re.search(r"FLAGS \(([^)]*)\)", text)
            return set(match.group(1).split()) if match else set()
        finally:
            imap.logout()


@dataclass(frozen=True)
class Sent:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    #: The AUTH login name, None when the client did not log in.
    login: str | None = None
    #: Whether the session was under TLS (implicit, or after STARTTLS).
    tls: bool = False


class _Handler:
    def __init__(self, sink: SMTPSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.sink.cond:
            login = getattr(session.auth_data, "login", None)
            self.sink.messages.append(
                Sent(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    parsed,
                    login.decode() if isinstance(login, bytes) else login,
                    server.transport.get_extra_info("ssl_object") is not None,
                )
            )
            self.sink.cond.notify_all()
        return "250 Message accepted for delivery"


class SMTPSink:
    """aiosmtpd on 127.0.0.1 at a free port, keeping every accepted message.

    ``tls="starttls"`` offers STARTTLS and requires it; ``tls="tls"`` speaks TLS
    from the start. With ``users`` (login -> password), AUTH (PLAIN, LOGIN) is
    required, and, as aiosmtpd insists by default, offered only under TLS.
    """

    def __init__(
        self,
        *,
        tls: str | None = None,
        certificate: Certificate | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        assert tls is None or certificate is not None
        self.tls = tls
        self.certificate = certificate
        self.users = users
        self.port = free_port()
        self.messages: list[Sent] = []
        self.cond = threading.Condition()
        self._controller: Any = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            self.users is not None
            and isinstance(data, LoginPassword)
            and self.users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> SMTPSink:
        from aiosmtpd.controller import Controller

        options: dict[str, Any] = {"server_hostname": "smtp.hermes.test"}
        if self.tls is not None:
            assert self.certificate is not None
            context = self.certificate.server_context()
            if self.tls == "tls":
                # aiosmtpd counts only STARTTLS as TLS when deciding to offer AUTH.
                options.update(ssl_context=context, auth_require_tls=False)
            else:
                options.update(tls_context=context, require_starttls=True)
        if self.users is not None:
            options.update(authenticator=self._authenticate, auth_required=True)
        # aiosmtpd warns about its own choices (in its thread, while the test runs): AUTH
        # over implicit TLS, which it does not count as TLS, and its own use of a
        # deprecated session attribute. Neither is ours to fix.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Sent]:
        """Wait until ``count`` messages were accepted in all; every message so far."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} messages arrived")
            return list(self.messages)

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
