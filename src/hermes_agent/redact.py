"""Redaction: the one function that removes secrets from text hermes keeps or shows.

Every tool result (before the model, the screen or state.db see it), every
message stored in state.db, and every log line passes :func:`redact`. It
replaces:

- every value hermes knows to be secret: the values in ``HERMES_HOME/.env``,
  the string values in ``auth.json`` and in the MCP token files, and the
  environment variables whose names look like secrets (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``);
- well-known key shapes, whoever they belong to (OpenAI/Anthropic/OpenRouter
  keys, GitHub and Slack tokens, AWS access key ids, Google API keys, Telegram
  bot tokens, JWTs, ``Bearer`` credentials, PEM private keys).

The known values are reloaded when one of their files changes, so a key added
with `hermes config set` is covered at once. ``redaction.enabled: false``
turns it off (for debugging a provider, never by default).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hermes_agent import home

MASK = "[REDACTED]"
#: Shorter values are too likely to be ordinary words ("true", "admin") to replace.
MIN_SECRET_LENGTH = 8

_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD|PASSWD|_KEY)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """An environment variable whose name says it holds a credential (``*_API_KEY``...)."""
    return bool(_SECRET_NAME.search(name))


# Key shapes: each matches the secret itself, never surrounding text.
SHAPES = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\bsk-(?:ant-|or-|proj-)?[A-Za-z0-9_\-]{20,}",
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",
            r"\bgithub_pat_[A-Za-z0-9_]{40,}",
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
            r"\bAKIA[0-9A-Z]{16}\b",
            r"\bAIza[0-9A-Za-z_\-]{35}",
            r"\b\d{8,10}:[A-Za-z0-9_\-]{35}\b",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            r"(?<=Bearer )[A-Za-z0-9_\-.~+/=]{16,}",
        )
    )
)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _json_file_values(path: Path) -> list[str]:
    try:
        return list(_strings(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError):
        return []


def known_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    from hermes_agent.config.envfile import read_env_file

    env = os.environ if environ is None else environ
    values = set(read_env_file(home.env_path()).values.values())
    values.update(_json_file_values(home.auth_path()))
    tokens = home.mcp_tokens_dir()
    if tokens.is_dir():
        for path in tokens.rglob("*"):
            if path.is_file():
                values.update(_json_file_values(path))
    values.update(v for k, v in env.items() if _SECRET_NAME.search(k))
    return {v for v in values if len(v) >= MIN_SECRET_LENGTH and not v.isspace()}


class Redactor:
    """Replaces a fixed set of secret values and every known key shape."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        ordered = sorted(set(secrets), key=len, reverse=True)  # Longest first: no partial hits.
        self._values = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._values is not None:
            text = self._values.sub(MASK, text)
        return SHAPES.sub(MASK, text)


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp: tuple[Any, ...] | None = None
        self.redactor = Redactor()


_cache = _Cache()


@functools.lru_cache(maxsize=8)
def _secret_files(hermes_home_var: str, user_home: str) -> tuple[Path, ...]:
    """The files whose content decides the secrets, for one HERMES_HOME (cached)."""
    return (home.env_path(), home.auth_path(), home.mcp_tokens_dir())


def _stamp() -> tuple[Any, ...]:
    """What the known secrets depend on, in three stats and the environment's size.

    Called for every redacted text, so it must cost microseconds. hermes writes
    its secret files by atomic rename, so a new ``.env`` or ``auth.json`` shows
    in that file's own stat, and a new or replaced token file in the
    ``mcp-tokens`` directory's mtime; the environment is rescanned when its
    size changes (``.env`` is loaded at start-up).
    """
    where = (os.environ.get(home.ENV_VAR, ""), os.environ.get("HOME", ""))
    parts: list[Any] = [where, len(os.environ)]
    for path in _secret_files(*where):
        try:
            st = path.stat()
        except OSError:
            parts.append(None)
        else:
            parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(parts)


def current() -> Redactor:
    """The redactor for the current HERMES_HOME, rebuilt when a secret file changed."""
    stamp = _stamp()
    with _cache.lock:
        if stamp != _cache.stamp:
            _cache.redactor = Redactor(known_secrets())
            _cache.stamp = stamp
        return _cache.redactor


_enabled = True


def set_enabled(enabled: bool) -> None:
    """Follow ``redaction.enabled`` (called once when the configuration is loaded)."""
    global _enabled
    _enabled = enabled


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED]``."""
    if not _enabled or not text:
        return text
    return current()(text)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line passes :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        # A record goes to several handlers (file and stderr) with this formatter:
        # formatted and redacted once, not once per handler.
        cached = record.__dict__.get("_hermes_redacted")
        if cached is not None and cached[0] is self:
            return str(cached[1])
        line = redact(super().format(record))
        record.__dict__["_hermes_redacted"] = (self, line)
        return line
