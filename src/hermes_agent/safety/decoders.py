"""Static decoders: the output of ``base64 -d``, ``xxd -r -p``, ``gunzip``, ``tr``...

When the input of a decoder is known (an ``echo`` or a here-string earlier in
the pipeline), its output is computed here, so that decoded text fed to a
shell is parsed and checked like any command. Each decoder returns the bytes,
None when the input is not known or does not decode, or
:data:`NOT_DECODING` when the options mean it is not decoding at all.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable

# --- decoders: the static output of `base64 -d` and friends -------------------------------

NOT_DECODING = object()


def _b64(texts: list[str], data: bytes | None) -> bytes | object | None:
    if not any(
        t in ("-d", "--decode", "-D")
        or (t.startswith("-") and "d" in t[1:] and not t.startswith("--"))
        for t in texts
    ):
        return NOT_DECODING
    if data is None:
        return None
    try:
        cleaned = re.sub(rb"\s+", b"", data)
        return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return None


def _b32(texts: list[str], data: bytes | None) -> bytes | object | None:
    if not any(t in ("-d", "--decode") for t in texts):
        return NOT_DECODING
    if data is None:
        return None
    try:
        cleaned = re.sub(rb"\s+", b"", data)
        return base64.b32decode(cleaned + b"=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        return None


def _xxd(texts: list[str], data: bytes | None) -> bytes | object | None:
    flags = "".join(t for t in texts if t.startswith("-"))
    if "r" not in flags:
        return NOT_DECODING
    if data is None or "p" not in flags:
        return None
    try:
        return binascii.unhexlify(re.sub(rb"\s+", b"", data))
    except (binascii.Error, ValueError):
        return None


def _gunzip(texts: list[str], data: bytes | None) -> bytes | object | None:
    if texts and not all(t.startswith("-") for t in texts):
        return NOT_DECODING  # decompresses files, not stdin
    if data is None:
        return None
    try:
        result = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 1 << 20)
    except zlib.error:
        return None
    return result


def _openssl(texts: list[str], data: bytes | None) -> bytes | object | None:
    if not ("-d" in texts and any(t in ("base64", "-base64", "-a", "enc") for t in texts)):
        return NOT_DECODING
    return _b64(["-d"], data)


def _tr(texts: list[str], data: bytes | None) -> bytes | object | None:
    ops = [t for t in texts if not t.startswith("-")]
    if len(ops) != 2 or len(ops) != len(texts):
        return NOT_DECODING
    if data is None:
        return None

    def expand(spec: str) -> str:
        return re.sub(
            r"(.)-(.)",
            lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1)),
            spec,
        )

    src, dst = expand(ops[0]), expand(ops[1])
    if not src or not dst:
        return None
    dst = dst + dst[-1] * max(0, len(src) - len(dst))
    text = data.decode("utf-8", "replace")
    return text.translate(str.maketrans(src, dst[: len(src)])).encode()


DECODERS: dict[str, Callable[[list[str], bytes | None], bytes | object | None]] = {
    "base64": _b64,
    "base32": _b32,
    "xxd": _xxd,
    "gunzip": _gunzip,
    "zcat": _gunzip,
    "openssl": _openssl,
    "tr": _tr,
}
