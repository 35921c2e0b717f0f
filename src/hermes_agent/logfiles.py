"""hermes' own logs: which file each one is, its last lines, and following it.

Used by `hermes logs`; below the front ends so that any of them could show
a log the same way. Every line shown passes :func:`hermes_agent.redact.redact`
again (the writers redact already, but a secret added to ``.env`` after a line
was written is only known now), and control characters are made visible: a
log holds text from chat users and web pages, and an escape sequence in it
must not drive the reader's terminal.

The files are opened without following a symbolic link and must be regular
files: a link or a FIFO planted under ``logs/`` is refused, never read through.
Following (``-f``) polls: it notices appended lines, a file truncated in
place (``copytruncate``) and a file renamed away and replaced (rotation),
reading the old file to its end before switching to the new one.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError

#: The logs by name, for `hermes logs NAME`; ``mcp`` takes a server name as well.
LOG_NAMES = ("gateway", "acp", "approvals", "mcp")
DEFAULT_LINES = 50
#: How often ``follow`` looks for new lines, in seconds.
POLL_SECONDS = 0.2
_BLOCK = 64 * 1024
#: The most bytes a single shown line may hold; a longer one is shown in pieces. A log
#: line can carry a chat message, and one without an end must not fill the memory.
MAX_LINE_BYTES = 1024 * 1024
#: The most bytes read backwards to find the last lines.
MAX_TAIL_BYTES = 32 * 1024 * 1024
# C0 and C1 controls except tab and newline, and DEL: shown as \xNN; the bidi
# overrides and isolates (a line that reorders itself on screen shows another command
# than the one logged) and Unicode line separators: shown as \uNNNN.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def log_path(name: str, server: str | None = None) -> Path:
    """The path of log ``name`` (``server``: the MCP server, for ``mcp``).

    Raises :class:`UsageError` for an unknown log or a server name that is not
    a plain name (``../../etc/passwd``): names never become paths elsewhere.
    """
    if name == "mcp":
        if not server:
            raise UsageError("`hermes logs mcp` needs the server's name: hermes logs mcp NAME")
        try:
            return home.mcp_log_path(server)
        except HermesError as exc:
            raise UsageError(str(exc)) from None
    if server:
        raise UsageError(f"the {name} log takes no name (only `mcp NAME` does)")
    paths: dict[str, Callable[[], Path]] = {
        "gateway": home.gateway_log_path,
        "acp": home.acp_log_path,
        "approvals": home.approvals_log_path,
    }
    if name not in paths:
        raise UsageError(f"unknown log {name!r}; choose one of: {', '.join(LOG_NAMES)}")
    return paths[name]()


def mcp_servers_with_logs() -> list[str]:
    """Names of the MCP servers that have a log, for the message about a missing one."""
    try:
        return sorted(p.stem for p in home.mcp_logs_dir().glob("*.log") if p.is_file())
    except OSError:
        return []


def open_log(path: Path) -> int:
    """Open ``path`` for reading without following a link; a clear error when it cannot be."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise HermesError(f"no log at {path} yet", 1) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HermesError(f"{path} is a symbolic link; refusing to read through it") from None
        raise HermesError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HermesError(f"{path} is not a regular file; refusing to read it")
    return fd


def clean(text: str) -> str:
    """``text`` as it may be shown: secrets redacted, control characters made visible."""
    from hermes_agent.redact import redact

    return visible(redact(text))


def visible(text: str) -> str:
    """``text`` with control characters made visible (already redacted text)."""
    return _CONTROL.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def last_lines(fd: int, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines of the open file, and the offset its end had.

    Reads backwards block by block, so a log of gigabytes costs what its tail costs.
    """
    end = os.fstat(fd).st_size
    if count <= 0:
        return [], end
    blocks: list[bytes] = []
    at = end
    newlines = 0
    while at > 0 and newlines <= count and end - at < MAX_TAIL_BYTES:
        step = min(_BLOCK, at)
        at -= step
        block = os.pread(fd, step, at)
        newlines += block.count(b"\n")
        blocks.append(block)
    data = b"".join(reversed(blocks))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if at > 0:
        lines = lines[1:]  # The first piece may be the end of a longer line.
    return [line.decode("utf-8", "replace") for line in lines[-count:]], end


def follow(
    path: Path,
    fd: int,
    offset: int,
    *,
    stop: Callable[[], bool] = lambda: False,
    poll: float = POLL_SECONDS,
    on_idle: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Lines appended to ``path`` after ``offset``, across truncation and rotation.

    Yields complete lines (a partial last line waits for its end) and notices
    in parentheses when the file was truncated or replaced. Ends when ``stop()``
    says so; the caller handles Ctrl-C. ``fd`` is closed at the end. ``on_idle`` is
    called when nothing new was found, before waiting (a caller holding back lines
    shows them then).
    """
    pending = b""
    try:
        while not stop():
            chunk = os.pread(fd, _BLOCK, offset)
            if chunk:
                offset += len(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", "replace")
                while len(pending) > MAX_LINE_BYTES:
                    yield pending[:MAX_LINE_BYTES].decode("utf-8", "replace")
                    pending = pending[MAX_LINE_BYTES:]
                continue
            size = os.fstat(fd).st_size
            if size < offset:  # Truncated in place: start again from its beginning.
                offset, pending = 0, b""
                yield f"(hermes: {path.name} was truncated; reading from its start)"
                continue
            replaced = _replaced(path, fd)
            if replaced is not None:
                # What the writer added to the old file before it let go of it.
                while chunk := os.pread(fd, _BLOCK, offset):
                    offset += len(chunk)
                    pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", "replace")
                if pending:
                    yield pending.decode("utf-8", "replace")
                os.close(fd)
                fd, offset, pending = replaced, 0, b""
                yield f"(hermes: {path.name} was rotated; reading the new file)"
                continue
            if on_idle is not None:
                on_idle()
            time.sleep(poll)
    finally:
        os.close(fd)


def _replaced(path: Path, fd: int) -> int | None:
    """A new file now at ``path`` (opened), when the one ``fd`` reads was renamed away."""
    try:
        now = path.lstat()
    except OSError:
        return None  # Renamed, not yet replaced: keep reading the old one.
    old = os.fstat(fd)
    if (now.st_ino, now.st_dev) == (old.st_ino, old.st_dev):
        return None
    try:
        return open_log(path)
    except HermesError:
        return None
