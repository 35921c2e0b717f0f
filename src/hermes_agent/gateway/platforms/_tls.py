"""TLS failures in words that point at the fix, for the adapters that open their own sockets."""

from __future__ import annotations

import ssl


def tls_problem(exc: ssl.SSLError, where: str, setting: str, port: int) -> str:
    """Why TLS with ``where`` failed: an untrusted certificate, or TLS on a plain port."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the certificate of {where} cannot be trusted ({exc.verify_message}): it must be "
            "valid for that host name and signed by a CA this system trusts"
        )
    return f"TLS with {where} failed ({exc.reason or exc}); is {setting} right for port {port}?"
