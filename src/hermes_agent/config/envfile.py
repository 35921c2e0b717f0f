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


def read_env_file(path: Path) -> EnvFile:
    """Parse ``path``; a missing file is empty. Bad lines are reported, not fatal."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return EnvFile({}, [])
    except UnicodeDecodeError:
        return EnvFile({}, [f"{path}: not UTF-8 text; nothing loaded from it"])
    except OSError as exc:
        return EnvFile({}, [f"{path}: cannot read: {exc.strerror or exc}"])
    values: dict[str, str] = {}
    problems: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first = binding.original.string.strip().splitlines()[0:1]
            problems.append(
                f"{path}:{binding.original.line}: cannot parse {first[0][:40]!r}; "
                "expected KEY=value (line skipped)"
                if first
                else f"{path}:{binding.original.line}: cannot parse line (skipped)"
            )
        elif binding.key is not None:
            if not _ENV_NAME.match(binding.key):
                problems.append(
                    f"{path}:{binding.original.line}: {binding.key!r} is not a valid "
                    "variable name (line skipped)"
                )
                continue
            values[binding.key] = binding.value if binding.value is not None else ""
    return EnvFile(values, problems)


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise HermesError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
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
