"""Start-up steps shared by the commands that need the configuration."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hermes_agent import home

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config


def warn(message: str) -> None:
    print(f"hermes: warning: {message}", file=sys.stderr)


def load_env() -> None:
    """Load HERMES_HOME/.env into the environment; report bad lines, keep going."""
    from hermes_agent.config.envfile import load_env_file

    for problem in load_env_file(home.env_path()):
        warn(problem)


def load_config(*, interpolate: bool = True) -> Config:
    """``.env`` first (``${VAR}`` may refer to it), then config.yaml; show warnings."""
    from hermes_agent.config.loader import load_config as _load

    load_env()
    config = _load(interpolate=interpolate)
    for message in config.warnings:
        warn(message)
    return config


def decode_text(raw: bytes, what: str) -> str:
    """Decode user input (stdin, a command-line argument) that should be UTF-8 text.

    A question must still run when a pipe carries one bad byte or a NUL (a
    binary file piped by mistake, a Latin-1 editor): invalid sequences become
    U+FFFD, NULs are removed (no provider, terminal or SQLite text column
    handles them well), and one warning says what was changed and where.
    """
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - raw.count("\ufffd".encode())
    nuls = text.count("\x00")
    if nuls:
        text = text.replace("\x00", "")
    changes = []
    if bad:
        changes.append(f"{bad} invalid UTF-8 sequence{'s' if bad != 1 else ''} replaced by U+FFFD")
    if nuls:
        changes.append(f"{nuls} NUL character{'s' if nuls != 1 else ''} removed")
    if changes:
        warn(f"{what} is not clean UTF-8 text: {', '.join(changes)}")
    return text


def read_stdin_text(what: str = "stdin") -> str:
    """All of stdin, read as bytes and decoded with :func:`decode_text`."""
    return decode_text(sys.stdin.buffer.read(), what)


def clean_argument(value: str, what: str) -> str:
    """A command-line argument as text: bytes that were not UTF-8 are handled as on stdin.

    Python hands such bytes over as lone surrogates, which fail later when the
    text is encoded (for the provider, for state.db), far from the cause.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_text(value.encode("utf-8", "surrogateescape"), what)
    if "\x00" in value:  # Not possible through exec(), but cheap to make sure.
        return decode_text(value.encode("utf-8"), what)
    return value
