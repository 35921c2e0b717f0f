"""Words as bash sees them: fields, quotes and escapes, brace and ANSI-C expansion.

Everything here is pure string work, no tree and no file system: a
:class:`Field` is one word after expansion, with :data:`UNKNOWN` standing
for the parts only known when the command runs. The evaluation of tree-sitter
word nodes into fields (variables, command substitutions) is in
:mod:`hermes_agent.safety.parse`, which needs the walk.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

UNKNOWN = "\x00"
GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)
class Field:
    """One word after expansion; ``text`` holds UNKNOWN where the value is not known."""

    text: str
    raw: str
    dynamic: bool = False

    @property
    def shown(self) -> str:
        return self.raw if self.dynamic else self.text


def static(text: str) -> Field:
    return Field(text, text)


_BRACE = re.compile(r"\{([^{}]*,[^{}]*)\}")
_UNQUOTED_ESCAPE = re.compile(r"\\(.)", re.S)
_DQ_ESCAPE = re.compile(r"\\([\\\"$`\n])")


def brace_expand(text: str, limit: int = 256) -> list[str]:
    """Bash brace expansion of comma lists (``{rm,-rf,/}``, ``file{,.bak}``)."""
    out = [text]
    for _ in range(8):
        changed = False
        nxt: list[str] = []
        for item in out:
            m = _BRACE.search(item)
            if m is None:
                nxt.append(item)
                continue
            changed = True
            nxt.extend(item[: m.start()] + alt + item[m.end() :] for alt in m.group(1).split(","))
        out = nxt[:limit]
        if not changed:
            break
    return out


def unescape_unquoted(text: str) -> str:
    return _UNQUOTED_ESCAPE.sub(lambda m: "" if m.group(1) == "\n" else m.group(1), text)


def unescape_dq(text: str) -> str:
    return _DQ_ESCAPE.sub(lambda m: "" if m.group(1) == "\n" else m.group(1), text)


_ANSI_SIMPLE = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "e": "\x1b",
    "E": "\x1b",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_ANSI = re.compile(
    r"\\(x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[0-7]{1,3}|c.|.)", re.S
)


def decode_ansi_c(body: str) -> str:
    """Decode the inside of ``$'...'``."""

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        head = esc[0]
        if head in "xuU" and len(esc) > 1:
            code = int(esc[1:], 16)
            # Past Unicode (\U7fffffff): bash writes bytes no character spells; chr() raised.
            return chr(code) if code <= 0x10FFFF else "\ufffd"
        if head in "01234567":  # Not isdigit(): "\8" and "\²" are not octal (int() raised).
            return chr(int(esc, 8) & 0xFF)
        if head == "c" and len(esc) == 2:
            return chr(ord(esc[1]) & 0x1F)
        return _ANSI_SIMPLE.get(esc, "\\" + esc)

    return _ANSI.sub(one, body)


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


def word_tuple(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def norm(path: str) -> str:
    """``path`` with ``.``/``..`` and doubled slashes folded lexically (as ``cd`` does)."""
    if "/." not in path and "//" not in path and not path.endswith("/") and path.startswith("/"):
        return path
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


_GLOB_OR_UNKNOWN = re.compile(r"[*?\[\x00]")


def has_glob(text: str) -> bool:
    """Whether ``text`` has a glob character or a part only known at run time."""
    return _GLOB_OR_UNKNOWN.search(text) is not None


def glob_pattern(text: str) -> str:
    return text.replace(UNKNOWN, "*")


def static_prefix(text: str) -> str:
    for i, ch in enumerate(text):
        if ch in GLOB_CHARS or ch == UNKNOWN:
            return text[:i]
    return text


_VERSIONED = re.compile(r"^(python|pypy|pip|perl|ruby|node|php|lua|pydoc|idle)[0-9.]*$")


def canonical_name(word: str) -> str:
    """The program a command word names: basename, versions dropped (``python3.11``)."""
    base = word.rsplit("/", 1)[-1] if "/" in word else word
    m = _VERSIONED.match(base)
    if m:
        return m.group(1)
    if base.startswith("mkfs."):
        return "mkfs"
    return base


def quote(text: str) -> str:
    """``text`` quoted for a shell (to rebuild a command line from its words)."""
    return shlex.quote(text)
