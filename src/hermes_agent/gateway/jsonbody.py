"""Parsing JSON request bodies from the network without letting them crash the gateway.

Python's ``json`` parser recurses once per nesting level: a body of 100,000
``[`` raises ``RecursionError`` inside it (an HTTP 500 and a traceback in the
log), and a body just under the limit parses, then breaks whatever walks it
next (redaction, templates, ``json.dumps``). So every platform that parses a
JSON body from a client (the HTTP API, webhooks) measures its nesting first,
without recursion, and refuses a body deeper than :data:`MAX_DEPTH` or larger
than the platform's size limit before the parser sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deeper than any OpenAI request or webhook payload seen in practice (they nest < 20).
MAX_DEPTH = 64

# A JSON string (escapes included): brackets inside strings do not nest anything.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Everything that is not a bracket, deleted before the nesting is measured.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BodyError(ValueError):
    """A request body that is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def nesting_ok(raw: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether the brackets of ``raw`` (outside strings) nest at most ``max_depth`` deep.

    Each pass deletes every innermost ``[]``/``{}`` pair, which lowers the
    deepest nesting by one; so ``max_depth`` passes empty any document that is
    shallow enough. What is left after them is too deep, or not JSON (an
    unclosed ``[[[[``, a ``[}``): refused either way, as the parser would
    recurse into it before noticing. Each pass is a C-speed ``bytes.replace``.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return True
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == brackets:
            return False  # Unbalanced: not JSON, and possibly a deep one.
        brackets = shorter
    return not brackets


def parse_json_body(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON request body, or raise :class:`BodyError` (413 too large, 400 otherwise)."""
    if len(raw) > max_bytes:
        raise BodyError(f"the body is larger than {max_bytes} bytes", 413)
    if not nesting_ok(raw, max_depth):
        raise BodyError(f"the body is not valid JSON or nests deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the body is not valid UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BodyError("the body is not valid JSON") from None
