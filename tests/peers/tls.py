"""A self-signed TLS certificate for 127.0.0.1, made with the openssl command.

The servers of tests/peers (dovecot, ngircd, aiosmtpd) present it; a client
is made to trust it through ``SSL_CERT_FILE=cert`` (OpenSSL's default
verify paths, which Python's ``ssl.create_default_context()`` loads), so
the code under test verifies certificates exactly as it does in production.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificate", "self_signed"]


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed(directory: Path) -> Certificate:
    """A certificate for 127.0.0.1 and localhost (P-256 key), valid for two days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed; run tests/peers/install.sh")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o644)  # Test-only key: the servers read it after dropping privileges.
    return Certificate(cert, key)
