"""The ``.env`` file: secrets (API keys, bot tokens) kept out of config.yaml.

Parsing uses python-dotenv's parser, so the syntax is the one users know
(``KEY=value``, ``export KEY=...``, quotes, comments). Values are literal:
``${VAR}`` inside ``.env`` is not expanded, because a secret may contain a
``$``. Loading never overrides a variable already in the environment, so a
value given on the command line or by systemd wins.

Edits (`hermes config set OPENROUTER_API_KEY ...`) rewrite only the line of
that key, keep every other line byte for byte, and write atomically with
mode 0600.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from dotenv.parser import parse_stream

from hermes_agent.errors import HermesError
from hermes_agent.fsutil import write_secret

#: Names routed to ``.env`` instead of config.yaml by `hermes config set`.
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_(API_KEY|TOKEN|SECRET|PASSWORD)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_\-.:/+=@,%]*$")


def is_secret_name(key: str) -> bool:
    return bool(SECRET_NAME.match(key))


class EnvFile:
    """The parsed bindings of one ``.env`` file, with the problems found."""

    def __init__(self, values: dict[str, str], problems: list[str]) -> None:
        self.values = values
        #: One ``path:line: message`` per line that could not be parsed.
        self.problems = problems


def _decode_lines(data: bytes) -> tuple[str, list[int]]:
    """The file as text, and the numbers of the lines that are not UTF-8.

    Decoded line by line: one bad byte (a value pasted from a Latin-1 file)
    must not cost every other key, because every key that fails to load also
    stops being redacted. A bad line is replaced by an empty one, so the line
    numbers of the rest stay true.
    """
    if data.startswith(b"\xef\xbb\xbf"):  # A byte-order mark some editors write.
        data = data[3:]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    lines: list[str] = []
    bad: list[int] = []
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append(number)
            ending = line[len(line.rstrip(b"\r\n")) :]
            lines.append(ending.decode("ascii"))
    return "".join(lines), bad


def read_env_file(path: Path) -> EnvFile:
    """Parse ``path``; a missing file is empty. Bad lines are reported, not fatal.

    A problem names the line by its number, never by its content: the line may
    hold a secret.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EnvFile({}, [])
    except OSError as exc:
        return EnvFile({}, [f"{path}: cannot read: {exc.strerror or exc}"])
    text, bad_lines = _decode_lines(data)
    values: dict[str, str] = {}
    problems = [
        (number, "not UTF-8 text (line skipped; the other lines load)") for number in bad_lines
    ]
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original
        # The parser counts blank lines before a binding as part of it.
        blank = len(original.string) - len(original.string.lstrip("\r\n"))
        first = original.line + original.string[:blank].count("\n")
        last = first + original.string[blank:].rstrip("\r\n").count("\n")
        if any(first <= number <= last for number in bad_lines):
            continue  # A quoted value spanning a bad line: skipped with it.
        if binding.error:
            problems.append((first, "cannot parse this line; expected KEY=value (line skipped)"))
        elif binding.key is not None:
            if not _ENV_NAME.match(binding.key):
                problems.append((first, "the name before = is not a valid variable name (skipped)"))
                continue
            values[binding.key] = binding.value if binding.value is not None else ""
    return EnvFile(values, [f"{path}:{number}: {what}" for number, what in sorted(problems)])


def load_env_file(path: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the file's variables into ``environ`` (default ``os.environ``).

    Variables already set win. Returns the problems found, for the caller to
    show as warnings; every parsable line is loaded regardless.
    """
    target = os.environ if environ is None else environ
    parsed = read_env_file(path)
    for key, value in parsed.values.items():
        target.setdefault(key, value)
    return parsed.problems


def _quote(value: str) -> str:
    if _PLAIN_VALUE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_env(values: Mapping[str, str], header: str = "") -> str:
    """A whole ``.env`` text binding ``values`` in order; reads back exactly.

    ``header`` (one or more lines) is written first as ``#`` comments. Used by
    the NixOS deployment, which rebuilds ``.env`` from scratch on every apply.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in values.items():
        if not _ENV_NAME.match(key):
            raise HermesError(f"{key!r} is not a valid environment variable name")
        lines.append(f"{key}={_quote(value)}")
    return "".join(line + "\n" for line in lines)


def _rewrite(path: Path, key: str, new_line: str | None) -> bool:
    """Replace (or with ``None`` remove) every binding of ``key``; keep other lines."""
    try:
        text, bad_lines = _decode_lines(path.read_bytes())
    except FileNotFoundError:
        text, bad_lines = "", []
    except OSError as exc:
        raise HermesError(f"cannot read {path}: {exc.strerror or exc}") from None
    if bad_lines:  # Rewriting would lose those lines: the user fixes them first.
        numbers = ", ".join(map(str, bad_lines))
        raise HermesError(
            f"{path}: line {numbers} is not UTF-8 text; fix or remove it before changing the file"
        )
    pieces: list[str] = []
    found = False
    for binding in parse_stream(io.StringIO(text)):
        if binding.key == key and not binding.error:
            text = binding.original.string
            # The parser counts blank lines before a binding as part of it: keep them.
            pieces.append(text[: len(text) - len(text.lstrip())])
            if not found and new_line is not None:
                pieces.append(new_line + "\n")
            found = True
        else:
            pieces.append(binding.original.string)
    if not found:
        if new_line is None:
            return False
        if pieces and not pieces[-1].endswith(("\n", "\r")):
            pieces.append("\n")
        pieces.append(new_line + "\n")
    write_secret(path, "".join(pieces))
    return found


def set_env_value(path: Path, key: str, value: str) -> None:
    """Set ``key=value`` in the file (created 0600 if missing)."""
    if not _ENV_NAME.match(key):
        raise HermesError(f"{key!r} is not a valid environment variable name")
    _rewrite(path, key, f"{key}={_quote(value)}")


def unset_env_value(path: Path, key: str) -> bool:
    """Remove ``key`` from the file; return whether it was there."""
    if not path.exists():
        return False
    return _rewrite(path, key, None)


def mask(value: str) -> str:
    """Show enough of a secret to recognise it, never enough to use it."""
    if len(value) < 16:
        return "****" if value else "(empty)"
    return f"{value[:4]}…{value[-4:]}"
