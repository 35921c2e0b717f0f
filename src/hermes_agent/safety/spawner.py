"""hermes' side of the spawner (:mod:`.spawnd`): start confined commands cheaply.

:func:`spawn` hands a command, its descriptors and its Landlock ruleset to the
helper process and returns a :class:`Child`, a small stand-in for
:class:`subprocess.Popen` (``pid``, ``returncode``, ``poll``, ``wait``) whose
exit status the helper reports. One helper serves the whole hermes process
(every session of a gateway, cron, delegated agents); it is started on first
use, and again if it ever dies (its commands are then reported as killed).
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hermes_agent.safety import spawnd

#: How long to wait for the helper to start a command before giving up.
SPAWN_TIMEOUT = 30.0


class SpawnError(OSError):
    """The command could not be started (its ``strerror`` says at which step)."""


class Child:
    """A command started by the helper: what :class:`subprocess.Popen` offers, in small."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()
        self._waiters: list[tuple[Any, Any]] = []  # (event loop, future) of wait_async
        self._lock = threading.Lock()
        #: Popen compatibility: the helper's commands never get a stdin pipe here.
        self.stdin = None

    def _ended(self, code: int) -> None:
        """Called from the reader thread when the helper reports the exit."""
        with self._lock:
            self.returncode = code
            waiters, self._waiters = self._waiters, []
        self._done.set()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # The loop is closed: nobody waits.
                loop.call_soon_threadsafe(_resolve, future, code)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    async def wait_async(self) -> int:
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._lock:  # Against _ended running in the reader thread right now.
            if self.returncode is None:
                self._waiters.append((loop, future))
                registered = True
            else:
                registered = False
        if not registered:
            assert self.returncode is not None
            return self.returncode
        return await future


def _resolve(future: Any, value: object) -> None:
    if not future.done():
        future.set_result(value)


def _orphan(result: dict[str, object]) -> None:
    """Stop a command whose start nobody waits for any more (the caller was cancelled,
    or gave up waiting): started late, it would otherwise run unowned until hermes
    exits. It leads its own session (spawnd starts it with setsid), so its group goes."""
    child = result.get("child")
    if isinstance(child, Child) and child.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


def _settle(future: Any, result: dict[str, object]) -> None:
    """Hand a spawn's answer to its waiting coroutine, or stop the command if nobody
    waits (runs in the event loop, where the future is cancelled too: no race)."""
    if future.done():
        _orphan(result)
    else:
        future.set_result(result)


class _Helper:
    """One running spawnd, its socket and the thread that reads its messages."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", spawnd.__file__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
                close_fds=True,
            )
        finally:
            theirs.close()
        self.lock = threading.Lock()
        #: Request id -> what to call (from the reader thread) with the answer.
        self.pending: dict[int, Callable[[dict[str, object]], None]] = {}
        self.children: dict[int, Child] = {}
        #: Exit notices that arrived before their pid was registered (never, in order).
        self.early: dict[int, int] = {}
        self.alive = True
        self.ids = itertools.count(1)
        self.reader = threading.Thread(target=self._read, name="hermes-spawnd", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(spawnd.MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                message = json.loads(data)
            except ValueError:
                continue
            with self.lock:
                if "exit" in message:
                    pid, code = int(message["exit"]), int(message["code"])
                    child = self.children.pop(pid, None)
                    if child is None:
                        self.early[pid] = code
                    else:
                        child._ended(code)
                    continue
                deliver = self.pending.pop(int(message.get("id") or 0), None)
                if deliver is None:
                    continue
                if "killed" in message:
                    deliver(message)
                elif "pid" in message:
                    pid = int(message["pid"])
                    child = Child(pid)
                    if pid in self.early:
                        child._ended(self.early.pop(pid))
                    else:
                        self.children[pid] = child
                    deliver({"child": child})
                else:
                    deliver(message)
        # The helper is gone: its commands were killed with it (it kills them on exit).
        with self.lock:
            self.alive = False
            for child in self.children.values():
                child._ended(-signal.SIGKILL)
            self.children.clear()
            for deliver in self.pending.values():
                deliver({"error": "spawn:0:the spawner exited"})
            self.pending.clear()

    def send(
        self,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        fds: Sequence[int],
        deliver: Callable[[dict[str, object]], None],
        deny_unix_sockets: bool = False,
        drop_capabilities: bool = False,
    ) -> int:
        """Send one request; ``deliver`` gets the answer (from the reader thread)."""
        ident = next(self.ids)
        request = {"id": ident, "argv": list(argv), "cwd": cwd, "env": dict(env)}
        if deny_unix_sockets:
            request["deny_unix_sockets"] = True
        if drop_capabilities:
            request["drop_capabilities"] = True
        payload = json.dumps(request).encode()
        with self.lock:
            if not self.alive:
                raise SpawnError(0, "the spawner exited")
            self.pending[ident] = deliver
        try:
            passed = [fd for i, fd in enumerate(fds) if i < 3 or fd >= 0]  # No ruleset: 3.
            self.sock.sendmsg(
                [payload],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", passed).tobytes())],
            )
        except OSError as exc:
            with self.lock:
                self.pending.pop(ident, None)
            raise SpawnError(exc.errno or 0, f"the spawner cannot be reached: {exc}") from None
        return ident

    def kill_all(self, timeout: float = 10.0) -> int:
        """Every command this helper started, and their orphans, killed; how many."""
        return self._count("kill_all", "killed", timeout)

    def running(self, timeout: float = 5.0) -> int:
        """How many commands this helper started (and their orphans) still run; -1 when
        the helper does not answer (the caller must then assume some do)."""
        return self._count("alive", "alive", timeout, unknown=-1)

    def _count(self, request: str, answer: str, timeout: float, unknown: int = 0) -> int:
        ident = next(self.ids)
        event = threading.Event()
        box: list[dict[str, object]] = []

        def deliver(result: dict[str, object]) -> None:
            box.append(result)
            event.set()

        with self.lock:
            if not self.alive:
                return 0
            self.pending[ident] = deliver
        try:
            self.sock.send(json.dumps({"id": ident, request: True}).encode())
        except OSError:
            self.forget(ident)
            return unknown
        if not event.wait(timeout):
            self.forget(ident)
            return unknown
        value = box[0].get(answer, unknown)
        return int(value) if isinstance(value, int) else unknown

    def forget(self, ident: int) -> None:
        with self.lock:
            self.pending.pop(ident, None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(Exception):
            self.process.wait(2)


_lock = threading.Lock()
_helper: _Helper | None = None


def _current() -> _Helper:
    global _helper
    with _lock:
        if _helper is None or not _helper.alive or _helper.process.poll() is not None:
            if _helper is not None:
                _helper.close()
            _helper = _Helper()
        return _helper


def kill_all() -> int:
    """Stop every confined command of this hermes process and whatever they left behind.

    For the end of hermes (and of a one-session front end such as ``hermes
    chat``): daemons that left their process group are found too (the helper
    is their subreaper). Nothing is started for it when no helper runs.
    """
    with _lock:
        helper = _helper
    if helper is None or not helper.alive:
        return 0
    return helper.kill_all()


def running() -> int:
    """How many confined processes of this hermes process still run (commands, background
    jobs, MCP stdio servers, and what they left behind); -1 when that cannot be told.
    Nothing is started for it when no helper runs."""
    with _lock:
        helper = _helper
    if helper is None or not helper.alive or helper.process.poll() is not None:
        return 0
    return helper.running()


def _answer(result: dict[str, object]) -> Child:
    if "child" in result:
        child = result["child"]
        assert isinstance(child, Child)
        return child
    step, _, rest = str(result.get("error", "spawn:0:unknown")).partition(":")
    number, _, text = rest.partition(":")
    raise SpawnError(int(number) if number.isdigit() else 0, f"{step}: {text}")


def _dead_helper(exc: SpawnError) -> bool:
    return "spawner" in str(exc.strerror)


def spawn(
    argv: Sequence[str],
    cwd: str,
    env: Mapping[str, str],
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    ruleset: int,
    deny_unix_sockets: bool = False,
    drop_capabilities: bool = False,
) -> Child:
    """Start ``argv`` in a new session, confined by ``ruleset`` (a Landlock ruleset fd).

    The descriptors are duplicated into the command as 0, 1 and 2; the caller
    keeps and closes its own. ``ruleset`` -1 enforces none (bubblewrap);
    ``deny_unix_sockets`` adds the seccomp filter of :mod:`.spawnd`. Raises
    :class:`SpawnError` when the command
    cannot be started (a missing program, a bad directory, a ruleset the
    kernel refuses): nothing ran then. Blocks until the command has started.
    """
    for attempt in (1, 2):  # The helper may have died between commands: a new one, once.
        event = threading.Event()
        box: list[dict[str, object]] = []
        guard = threading.Lock()
        abandoned: list[bool] = []

        def deliver(
            result: dict[str, object],
            box: list[dict[str, object]] = box,
            event: threading.Event = event,
            guard: threading.Lock = guard,
            abandoned: list[bool] = abandoned,
        ) -> None:
            with guard:
                if abandoned:  # Given up on: a command started now is nobody's.
                    _orphan(result)
                    return
                box.append(result)
            event.set()

        helper = _current()
        try:
            helper.send(
                argv,
                cwd,
                env,
                (stdin, stdout, stderr, ruleset),
                deliver,
                deny_unix_sockets,
                drop_capabilities,
            )
            event.wait(SPAWN_TIMEOUT)
            with guard:
                if not box:  # The answer may still come: deliver then stops the command.
                    abandoned.append(True)
                    raise SpawnError(0, "the spawner did not answer")
            return _answer(box[0])
        except SpawnError as exc:
            if attempt == 2 or not _dead_helper(exc):
                raise
    raise AssertionError("unreachable")


async def spawn_async(
    argv: Sequence[str],
    cwd: str,
    env: Mapping[str, str],
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    ruleset: int,
    deny_unix_sockets: bool = False,
    drop_capabilities: bool = False,
) -> Child:
    """:func:`spawn` for asyncio: the event loop runs on while the helper starts it."""
    import asyncio

    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        future: asyncio.Future[dict[str, object]] = loop.create_future()

        def deliver(
            result: dict[str, object], future: asyncio.Future[dict[str, object]] = future
        ) -> None:
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # The loop is closed: nobody will take the command.
                _orphan(result)

        helper = _current()
        try:
            helper.send(
                argv,
                cwd,
                env,
                (stdin, stdout, stderr, ruleset),
                deliver,
                deny_unix_sockets,
                drop_capabilities,
            )
            # Cancelled or timed out, the request stays pending: if the command starts
            # after all, _settle stops it instead of leaving it running unowned. Not
            # asyncio.wait_for: on Python 3.11 it returns the answer and swallows a
            # cancellation that comes as the answer does, so an interrupted turn ran on.
            try:
                async with asyncio.timeout(SPAWN_TIMEOUT):
                    result = await future
            except TimeoutError:
                raise SpawnError(0, "the spawner did not answer") from None
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    _orphan(future.result())
                raise
            return _answer(result)
        except SpawnError as exc:
            if attempt == 2 or not _dead_helper(exc):
                raise
    raise AssertionError("unreachable")
