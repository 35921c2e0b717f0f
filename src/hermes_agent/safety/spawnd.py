"""The spawner: a small helper process that starts confined commands for hermes.

Landlock is applied by the process itself (``landlock_restrict_self``), so
something must run between ``fork`` and ``exec``. Doing that in hermes means a
real ``fork`` of a 60-300 MB Python process (10-35 ms, measured in
``bench/sandbox.py``) instead of the ``vfork`` Python uses otherwise. This
helper is started once per hermes process with ``python -I -S`` (a few MB, no
site-packages, nothing of hermes imported): it forks cheaply, applies the
ruleset hermes sends, and ``exec``s the command.

Protocol, on a ``SOCK_SEQPACKET`` socket pair (one message per datagram):

- hermes sends ``{"id", "argv", "cwd", "env"}`` as JSON with four file
  descriptors attached: stdin, stdout, stderr and the Landlock ruleset;
- the helper answers ``{"id", "pid"}`` once the command has been *executed*
  (an ``O_CLOEXEC`` pipe tells it whether ``exec`` worked), or
  ``{"id", "error"}``;
- when a command ends, it sends ``{"exit": pid, "code": N}`` (negative: the
  signal that ended it, as :mod:`subprocess` reports it).

The command runs in a new session (its own process group, whose id is its
pid), with default signal handling, no new privileges and the ruleset
enforced, and holds no descriptor but 0, 1 and 2. When hermes goes away (the
socket closes), the helper kills every process group it started and exits, so
commands never outlive hermes. SIGINT from the terminal is ignored: hermes
decides what Ctrl-C stops.

This file is run as a script and imports only the standard library.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import socket
import sys

PR_SET_NO_NEW_PRIVS = 38
#: landlock_restrict_self, the same number on every architecture (unified syscall table).
SYS_LANDLOCK_RESTRICT_SELF = 446
MAX_MESSAGE = 1 << 20
MAX_FDS = 4


def _child(request: dict[str, object], fds: list[int], error_w: int, libc: ctypes.CDLL) -> None:
    """In the forked child: become the command, or report why not on ``error_w``."""
    step = "setup"
    try:
        for sig in (signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.setsid()
        step = "redirect"
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target, inheritable=True)
        ruleset = fds[3] if len(fds) > 3 else -1
        step = "chdir"
        os.chdir(str(request["cwd"]))
        step = "sandbox"
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if ruleset >= 0 and libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
        os.closerange(3, error_w)
        os.closerange(error_w + 1, 1 << 16)
        step = "exec"
        argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
        env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        message = f"{step}:{exc.errno or 0}:{exc.strerror or exc}"
    except BaseException as exc:  # Anything else: still never return into the loop.
        message = f"{step}:0:{exc}"
    try:
        os.write(error_w, message.encode("utf-8", "replace")[:4000])
    finally:
        os._exit(127)


def _start(
    sock: socket.socket, request: dict[str, object], fds: list[int], libc: ctypes.CDLL
) -> None:
    ident = request.get("id")
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(error_r)
        os.close(error_w)
        _send(sock, {"id": ident, "error": f"fork:{exc.errno}:{exc.strerror}"})
        return
    if pid == 0:
        os.close(error_r)
        _child(request, fds, error_w, libc)
    os.close(error_w)
    chunks = []
    while True:
        chunk = os.read(error_r, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(error_r)
    if chunks:
        os.waitpid(pid, 0)  # It exited with 127 right after writing.
        _send(sock, {"id": ident, "error": b"".join(chunks).decode("utf-8", "replace")})
    else:
        _CHILDREN.add(pid)
        _send(sock, {"id": ident, "pid": pid})


_CHILDREN: set[int] = set()


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # hermes is gone; the loop notices on its next read.
        sock.send(json.dumps(message).encode())


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _CHILDREN.discard(pid)
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _kill_all() -> None:
    for pid in list(_CHILDREN):
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)


def serve(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        while True:
            try:
                ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
                _reap(sock)
            if sock.fileno() not in ready:
                continue
            fds = array.array("i")
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize)
                )
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - (len(payload) % fds.itemsize)
                    fds.frombytes(payload[:usable])
            if not data:
                return 0  # hermes closed its end.
            try:
                request = json.loads(data)
                if not isinstance(request, dict) or len(fds) < 3:
                    raise ValueError("a request needs JSON and three descriptors")
                _start(sock, request, list(fds), libc)
            except ValueError as exc:
                _send(sock, {"id": None, "error": f"request:0:{exc}"})
            finally:
                for fd_ in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd_)
            _reap(sock)
    finally:
        _kill_all()


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
