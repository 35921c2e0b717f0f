"""A real IRC server (Debian's ngircd) on 127.0.0.1, and a plain IRC client for tests.

``IRCServer`` writes an ngircd config (a free port on 127.0.0.1, no DNS, no
ident, no PAM, a server password when asked, 30-character nicks) into a
temporary directory and runs ``/usr/sbin/ngircd -n -f CONFIG`` in the
foreground. ``kill()`` and ``start()`` again restart it on the same port, for
reconnection tests. Installed by tests/peers/install.sh (ngircd)::

    with IRCServer() as server:
        with IRCClient(server.port, "alice") as alice:
            alice.join("#hermes")
            alice.privmsg("#hermes", "hermes: hello")
            line = alice.wait_privmsg(sender="hermes")

``IRCClient`` is a blocking RFC 1459 client of a few lines (registration,
PING/PONG, JOIN, PRIVMSG) that keeps every raw line it received, so a test
can check the exact bytes the server relayed (line lengths included).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peers.tls import Certificate

from .daemons import Daemon, free_port, port_open, stop_process

NGIRCD = "/usr/sbin/ngircd"
SERVER_NAME = "irc.hermes.test"

__all__ = ["NGIRCD", "SERVER_NAME", "IRCClient", "IRCServer", "IRCServerError", "Privmsg"]


class IRCServerError(RuntimeError):
    pass


class IRCServer(Daemon):
    """ngircd in the foreground; ``password`` sets the server password (PASS)."""

    def __init__(self, *, password: str | None = None, tls: Certificate | None = None) -> None:
        self.password = password
        self.tls = tls
        self.port = free_port()
        #: With ``tls``: the port that speaks TLS (``port`` stays plain).
        self.tls_port = free_port() if tls is not None else 0
        # Not under pytest's tmp_path: ngircd drops to `nobody`, who must write its pid file.
        self.dir = Path(tempfile.mkdtemp(prefix="hermes-ngircd-"))
        self.dir.chmod(0o755)
        self.config = self.dir / "ngircd.conf"
        self.log = self.dir / "ngircd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        lines = [
            "[Global]",
            f"Name = {SERVER_NAME}",
            "Info = hermes test server",
            "AdminInfo1 = hermes tests",
            "AdminInfo2 = 127.0.0.1",
            "AdminEMail = nobody@hermes.test",
            "Listen = 127.0.0.1",
            f"Ports = {self.port}",
            f"PidFile = {self.dir / 'ngircd.pid'}",
            "MotdPhrase = hermes test server",
        ]
        if os.geteuid() == 0:
            lines.append("ServerUID = nobody")
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        if self.password is not None:
            lines.append(f"Password = {self.password}")
        if self.tls is not None:
            lines += [
                "[SSL]",
                f"CertFile = {self.tls.cert}",
                f"KeyFile = {self.tls.key}",
                f"Ports = {self.tls_port}",
            ]
        lines += [
            "[Limits]",
            "MaxNickLength = 30",
            "PingTimeout = 120",
            "PongTimeout = 20",
            "[Options]",
            "DNS = no",
            "Ident = no",
            "PAM = no",
            "",
        ]
        self.config.write_text("\n".join(lines))

    def start(self) -> IRCServer:
        if not os.path.exists(NGIRCD):
            raise IRCServerError(f"{NGIRCD} is not installed; run tests/peers/install.sh (ngircd)")
        self._write_config()
        log = self.log.open("ab")
        self._proc = subprocess.Popen(
            [NGIRCD, "-n", "-f", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise IRCServerError(f"ngircd exited at start:\n{self.log.read_text()}")
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise IRCServerError(f"ngircd did not open port {self.port}:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone (its port is free again)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open, but nothing is answered (a hung server)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        stop_process(self._proc, timeout=5)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class Privmsg:
    sender: str
    target: str
    text: str
    #: The line exactly as the server relayed it, without CRLF.
    raw: bytes


class IRCClient:
    """A blocking IRC client for tests: it registers, answers PING and records lines."""

    def __init__(self, port: int, nick: str, *, password: str | None = None) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buffer = b""
        self.lines: list[bytes] = []
        self.messages: list[Privmsg] = []
        if password is not None:
            self.send(f"PASS {password}")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick} test client")
        self.wait_for(lambda line: line.split(b" ")[1:2] == [b"001"])

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def _read_line(self, deadline: float) -> bytes | None:
        while b"\r\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError("the IRC server closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        self.lines.append(line)
        if line.startswith(b"PING "):
            self.send("PONG " + line[5:].decode())
        parts = line.split(b" ", 3)
        if len(parts) == 4 and parts[1] == b"PRIVMSG" and parts[0].startswith(b":"):
            sender = parts[0][1:].split(b"!")[0].decode()
            text = parts[3][1:] if parts[3].startswith(b":") else parts[3]
            self.messages.append(
                Privmsg(sender, parts[2].decode(), text.decode("utf-8", "replace"), line)
            )
        return line

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float = 20.0) -> bytes:
        """Read until a line satisfies ``predicate(line)``; that line."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._read_line(deadline)
            if line is None:
                raise TimeoutError(f"{self.nick}: no matching line; got {self.lines[-20:]}")
            if predicate(line):
                return line

    def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        self.wait_for(lambda line: b" 366 " in line and channel.encode() in line)

    def privmsg(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def wait_privmsg(
        self, *, sender: str, count: int = 1, timeout: float = 30.0, quiet: float = 0.0
    ) -> list[Privmsg]:
        """Every PRIVMSG from ``sender`` so far, once there are ``count``.

        With ``quiet``, reading goes on until no new one came for that many seconds.
        """
        deadline = time.monotonic() + timeout

        def mine() -> list[Privmsg]:
            return [m for m in self.messages if m.sender == sender]

        while len(mine()) < count:
            if self._read_line(deadline) is None:
                raise TimeoutError(
                    f"{self.nick}: {len(mine())} of {count} messages from {sender}; "
                    f"last lines {self.lines[-10:]}"
                )
        seen = len(mine())
        end = time.monotonic() + quiet
        while time.monotonic() < min(end, deadline):
            with contextlib.suppress(ConnectionError):
                self._read_line(min(end, deadline))
            if len(mine()) > seen:  # More arrived: wait another quiet period.
                seen = len(mine())
                end = time.monotonic() + quiet
        return mine()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("QUIT :bye")
        self.sock.close()

    def __enter__(self) -> IRCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
