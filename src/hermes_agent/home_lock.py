"""The HERMES_HOME lock: one writer at a time for every read-modify-write.

The gateway (with its cron jobs), several `hermes chat` sessions, scripts
calling `hermes config set`, `hermes deploy apply` and editors over ACP all
change the same files. Atomic replace (:mod:`hermes_agent.fsutil`) makes each
write whole, but two read-modify-writes that overlap still lose the first
one's change: both read the old file, and the second replace wins. So every
read-modify-write of a HERMES_HOME file (config.yaml, .env, auth.json, cron
jobs, memories, user skills...) runs inside :func:`home_lock`.

Why one lock for the whole home rather than one per file: the critical
sections are a few milliseconds of file I/O, and some of them span several
files (`hermes config set` of a secret, `deploy apply`, `setup`), which with
per-file locks would need a lock order to stay free of deadlocks. state.db is
not covered: SQLite has its own locking (WAL and a busy timeout).

How: ``flock`` on ``HERMES_HOME/home.lock`` (beside the data, so a home on
another machine's share or in a container is locked where it lives), taken
with a timeout; the holder writes its pid and what it is doing into the file,
so a writer that gives up can name who held it. The kernel drops the lock
when its holder dies, even by SIGKILL: a crash never leaves the home locked.
Within one process the lock is re-entrant per thread (a command that holds it
may call a function that takes it again), and other threads wait for it like
other processes do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from hermes_agent import home
from hermes_agent.errors import HermesError

#: How long a writer waits for the lock before giving up, in seconds.
DEFAULT_TIMEOUT = 15.0
#: Overrides :data:`DEFAULT_TIMEOUT` (a script that prefers to fail fast sets it low).
TIMEOUT_ENV = "HERMES_LOCK_TIMEOUT"
_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.02


class HomeLockTimeoutError(HermesError):
    """The lock stayed held by someone else for longer than the timeout."""


class _Holding:
    """This process's hold on one lock file: the descriptor and how deep it is taken."""

    def __init__(self) -> None:
        self.threads = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_registry_guard = threading.Lock()
_holdings: dict[str, _Holding] = {}


def _holding(path: Path) -> _Holding:
    key = os.path.abspath(path)
    with _registry_guard:
        found = _holdings.get(key)
        if found is None:
            found = _holdings[key] = _Holding()
        return found


def timeout_from_env() -> float:
    """The timeout in seconds: ``$HERMES_LOCK_TIMEOUT`` when it is a number >= 0."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    return DEFAULT_TIMEOUT


def holder(path: Path) -> str:
    """Who holds the lock file ``path``, as its holder wrote it ("pid 123 (what)")."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    pid, _, what = text.partition(" ")
    if not pid.isdigit():
        return "a process whose pid is not recorded yet"
    return f"pid {pid}" + (f" ({what.strip()})" if what.strip() else "")


@contextlib.contextmanager
def home_lock(
    what: str = "", *, root: Path | None = None, timeout: float | None = None
) -> Iterator[None]:
    """Hold the HERMES_HOME lock (of ``root`` when given) for the ``with`` block.

    ``what`` says what the holder does (``hermes config set``): it is written
    into the lock file for the message another writer shows when it gives up.
    Raises :class:`HomeLockTimeoutError` naming the holder's pid after
    ``timeout`` seconds (default :func:`timeout_from_env`), and
    :class:`HermesError` when the lock file cannot be opened. No ``await``
    may happen inside: another coroutine of the same thread would enter too.
    """
    path = home.home_lock_path(root)
    wait = timeout_from_env() if timeout is None else timeout
    deadline = time.monotonic() + wait
    holding = _holding(path)
    if not holding.threads.acquire(timeout=max(wait, 0.0)):
        raise HomeLockTimeoutError(
            f"{path} is held by another thread of this process (pid {os.getpid()}) "
            f"for more than {wait:g}s; try again"
        )
    try:
        if holding.depth == 0:
            holding.fd = _take(path, deadline, wait, what)
        holding.depth += 1
        try:
            yield
        finally:
            holding.depth -= 1
            if holding.depth == 0 and holding.fd is not None:
                fd, holding.fd = holding.fd, None
                os.close(fd)  # Closing the last descriptor releases the flock.
    finally:
        holding.threads.release()


def _take(path: Path, deadline: float, wait: float, what: str) -> int:
    home.ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise HermesError(f"cannot open the lock {path}: {exc.strerror or exc}") from None
    pause = _FIRST_PAUSE
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise HermesError(f"cannot lock {path}: {exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                raise HomeLockTimeoutError(
                    f"HERMES_HOME is busy: {path} has been held by {holder(path)} for more "
                    f"than {wait:g}s; nothing was changed. Try again when it is done, or "
                    f"stop that process (the wait is set by {TIMEOUT_ENV})"
                )
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)
        _record(fd, what)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _record(fd: int, what: str) -> None:
    """Write ``PID WHAT`` into the lock file; only informative, so failures are ignored."""
    line = f"{os.getpid()} {' '.join(what.split())[:200]}\n".encode("utf-8", "replace")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
