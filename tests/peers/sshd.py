"""A real OpenSSH server on 127.0.0.1 for the terminal tool's ssh backend.

``SSHServer`` generates a host key and a client key in a temporary directory,
writes an ``sshd_config`` that listens only on 127.0.0.1 at a free port and
accepts only that client key for the current user, and runs Debian's
``/usr/sbin/sshd -D -e -f CONFIG`` in the foreground (no daemon, no systemd).
``known_hosts`` holds the generated host key, so the client can verify it
strictly. Installed by tests/peers/install.sh (openssh-server, openssh-client)::

    with SSHServer(tmp_path) as server:
        server.port, server.user, server.key_file, server.known_hosts

:class:`SSHServerError` says why the server could not start (no sshd, a bad
config, the port never opened), so a test can fail with the reason.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .daemons import Daemon, free_port, stop_process

SSHD = "/usr/sbin/sshd"

__all__ = ["SSHD", "SSHServer", "SSHServerError"]


class SSHServerError(RuntimeError):
    pass


class SSHServer(Daemon):
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = 0
        self.key_file = self.dir / "client_ed25519"
        self.host_key = self.dir / "host_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SSHServer:
        if not os.path.exists(SSHD):
            raise SSHServerError(
                f"{SSHD} is not installed; run tests/peers/install.sh (openssh-server)"
            )
        keygen = shutil.which("ssh-keygen")
        if keygen is None:
            raise SSHServerError("ssh-keygen is not installed (openssh-client)")
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        for key in (self.host_key, self.key_file):
            if not key.exists():
                subprocess.run(
                    [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "hermes-test", "-f", str(key)],
                    check=True,
                    capture_output=True,
                )
        (self.dir / "authorized_keys").write_text(self.key_file.with_suffix(".pub").read_text())
        self.port = free_port()
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    f"AllowUsers {self.user}",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SSHServerError(f"sshd rejects its test config: {check.stderr.strip()}")
        log = open(self.log, "wb")  # noqa: SIM115 - sshd writes to it for its lifetime
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SSHServerError(f"sshd exited at start: {self.log.read_text().strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SSHServerError(f"sshd did not open port {self.port}: {self.log.read_text().strip()}")

    def stop(self) -> None:
        stop_process(self._proc, timeout=5)
        self._proc = None
