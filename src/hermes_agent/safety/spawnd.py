"""The spawner: a small helper process that starts confined commands for hermes.

Landlock is applied by a thread to itself (``landlock_restrict_self``), and a
child inherits its creator thread's domain. Doing that in hermes means a real
``fork`` of a 60-300 MB Python process (10-35 ms, measured with
``bench/sandbox.py``) instead of the ``vfork`` Python uses otherwise, and it
would confine hermes' own thread for good. This helper is started once per
hermes process with ``python -I -S`` (a few MB, no site-packages, nothing of
hermes imported). For each command it starts a thread that confines itself
(its own working directory through ``unshare(CLONE_FS)``, no capabilities, no
new privileges, the Landlock ruleset hermes sends, the seccomp filter below)
and then ``posix_spawn``s the command, at ``vfork`` speed; the thread ends,
the helper's main thread stays unconfined.

Protocol, on a ``SOCK_SEQPACKET`` socket pair (one message per datagram):

- hermes sends ``{"id", "argv", "cwd", "env"}`` (and the flags
  ``deny_unix_sockets``, ``drop_capabilities``) as JSON with three or four
  file descriptors attached: stdin, stdout, stderr and the Landlock ruleset;
- the helper answers ``{"id", "pid"}`` once the command has been executed,
  or ``{"id", "error"}`` (``step:errno:text``) when it could not be;
- when a command ends, it sends ``{"exit": pid, "code": N}`` (negative: the
  signal that ended it, as :mod:`subprocess` reports it).

The command runs in a new session (its own process group, whose id is its
pid) with default signal handling, and holds no descriptor but 0, 1 and 2
(every other descriptor of the helper is close-on-exec, the socket to hermes
first of all). The helper is the subreaper of its commands: a process that
left its group (``setsid``, a double fork) comes back to it when its parent
ends. ``{"id", "alive": true}`` answers how many of them still run.
``{"id", "kill_all": true}`` kills every process it started and every
such orphan, and answers ``{"id", "killed": N}``; it does the same when hermes
goes away (the socket closes) and then exits, so commands never outlive
hermes.
SIGINT from the terminal is ignored: hermes decides what Ctrl-C stops.

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
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
#: landlock_restrict_self, the same number on every architecture (unified syscall table).
SYS_LANDLOCK_RESTRICT_SELF = 446
MAX_MESSAGE = 1 << 20
MAX_FDS = 4


# --- the seccomp filter: no new AF_UNIX sockets, no io_uring ------------------------------
#
# Landlock before ABI 9 does not mediate connect() to a socket by its path, and
# a process outside the sandbox that listens on one can run anything for the
# caller: the user's tmux or screen server, the D-Bus session bus
# (`systemd-run --user`), the Docker daemon, ssh-agent with sshd on localhost,
# an X server. The filter makes socket(AF_UNIX, ...) fail with EACCES;
# socketpair() (how asyncio, Node and pipes between processes work) stays
# allowed. io_uring could create sockets past the filter, so it is refused,
# and so are system calls of another architecture (32-bit socketcall).

#: Native architecture: (AUDIT_ARCH value, socket's number, io_uring_setup's number).
_ARCHES = {
    "x86_64": (0xC000003E, 41, 425),
    "aarch64": (0xC00000B7, 198, 425),
    "riscv64": (0xC00000F3, 198, 425),
}
_EACCES_RET = 0x00050000 | errno.EACCES  # SECCOMP_RET_ERRNO | EACCES
_ENOSYS_RET = 0x00050000 | errno.ENOSYS
_ALLOW_RET = 0x7FFF0000  # SECCOMP_RET_ALLOW


def _filter(machine: str) -> bytes | None:
    """The classic BPF program, or None on an architecture this does not know."""
    import struct

    arch = _ARCHES.get(machine)
    if arch is None:
        return None
    audit_arch, nr_socket, nr_io_uring = arch
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    x32 = 0x40000000 if machine == "x86_64" else None
    prog = [
        (ld_abs, 0, 0, 4),  # 0: A = arch
        (jeq, 1, 0, audit_arch),  # 1: native? skip the next
        (ret, 0, 0, _ENOSYS_RET),  # 2: another architecture: refused
        (ld_abs, 0, 0, 0),  # 3: A = syscall number
        (0x35, 0, 1, x32 or 0xFFFFFFFF),  # 4: A >= x32 bit? (jge)
        (ret, 0, 0, _ENOSYS_RET),  # 5: x32 system calls: refused
        (jeq, 0, 1, nr_io_uring),  # 6: io_uring_setup?
        (ret, 0, 0, _ENOSYS_RET),  # 7
        (jeq, 0, 3, nr_socket),  # 8: socket? else allow
        (ld_abs, 0, 0, 16),  # 9: A = args[0] (domain, low 32 bits)
        (jeq, 0, 1, 1),  # 10: AF_UNIX?
        (ret, 0, 0, _EACCES_RET),  # 11
        (ret, 0, 0, _ALLOW_RET),  # 12
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def _apply_filter(libc: ctypes.CDLL, program: bytes) -> None:
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program, len(program))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(count, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter")


CLONE_FS = 0x00000200
#: Signals whose handling the command starts with at the default.
_DEFAULT_SIGNALS = {signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGTERM, signal.SIGHUP}


def _which(name: str, env: dict[str, str]) -> str:
    if "/" in name:
        return name
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise OSError(errno.ENOENT, f"{name}: command not found")


def _confined_spawn(request: dict[str, object], fds: list[int], libc: ctypes.CDLL) -> int:
    """In a thread of its own: confine this thread, then posix_spawn the command.

    Landlock domains, seccomp filters, no_new_privs and capabilities belong to
    a thread, and a child inherits its creator thread's: the helper's main
    thread stays free, and the command starts with ``vfork`` speed instead of
    a fork of the helper. ``unshare(CLONE_FS)`` gives the thread its own
    working directory.
    """
    step = "setup"
    try:
        argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
        env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
        path = _which(argv[0], env)
        if libc.unshare(CLONE_FS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_FS)")
        step = "chdir"
        os.chdir(str(request["cwd"]))
        step = "sandbox"
        if request.get("drop_capabilities"):
            # Run as root, a command would keep root's capabilities across exec (loading
            # modules, raw I/O, ptrace of anything): none survive an empty bounding set.
            libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
            for cap in range(64):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    if ctypes.get_errno() == errno.EINVAL:
                        break  # Past the last capability this kernel knows.
                    if os.geteuid() == 0:
                        raise OSError(ctypes.get_errno(), "dropping capabilities")
                    break  # Not root: there is nothing to drop and no right to drop it.
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        ruleset = fds[3] if len(fds) > 3 else -1
        if ruleset >= 0 and libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
        if request.get("deny_unix_sockets"):
            if _FILTER is None:
                raise OSError(errno.ENOSYS, "no seccomp filter for this architecture")
            _apply_filter(libc, _FILTER)
        step = "exec"
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds[:3])]
        return os.posix_spawn(
            path,
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigmask=(),
            setsigdef=_DEFAULT_SIGNALS,
        )
    except OSError as exc:
        raise OSError(exc.errno or 0, f"{step}:{exc.errno or 0}:{exc.strerror or exc}") from None


def _close_on_exec_all() -> None:
    """Every descriptor of the helper but 0-2 closes at exec: a command gets none of them
    (in particular not the socket to hermes, which would let it ask for a command)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def _start(
    sock: socket.socket, request: dict[str, object], fds: list[int], libc: ctypes.CDLL
) -> None:
    import threading

    ident = request.get("id")
    _close_on_exec_all()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["pid"] = _confined_spawn(request, fds, libc)
        except OSError as exc:
            outcome["error"] = str(exc.strerror)
        except BaseException as exc:  # A bug here must still answer the request.
            outcome["error"] = f"spawn:0:{exc}"

    worker = threading.Thread(target=work, name="confine")
    worker.start()
    worker.join()
    if "pid" in outcome:
        pid = int(outcome["pid"])  # type: ignore[call-overload]
        _CHILDREN.add(pid)
        _send(sock, {"id": ident, "pid": pid})
    else:
        _send(sock, {"id": ident, "error": str(outcome.get("error", "spawn:0:unknown"))})


_CHILDREN: set[int] = set()
_FILTER = _filter(os.uname().machine)


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


def _orphans() -> list[int]:
    """Processes the kernel handed to this helper (it is their subreaper)."""
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if fields[1].decode() == me:  # PPid
                found.append(int(name))
    return found


def _alive() -> int:
    """How many processes this helper started, or inherited as orphans, still run."""
    count = 0
    for pid in set(_CHILDREN) | set(_orphans()):
        with contextlib.suppress(OSError, IndexError):
            with open(f"/proc/{pid}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
            if state not in (b"Z", b"X"):
                count += 1
    return count


def _kill_all() -> int:
    """Kill every process this helper started, and every descendant left of them.

    A command that left its process group (``setsid``, a double fork) was
    reparented here (the helper is a subreaper) when its parent ended, so it
    is found as a child. Repeated until none is left: one may fork meanwhile.
    """
    killed = 0
    for _ in range(50):
        targets = set(_CHILDREN) | set(_orphans())
        if not targets:
            break
        for pid in targets:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
            killed += 1
        for pid in targets:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
            _CHILDREN.discard(pid)
    return killed


def serve(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Orphans of the commands (a daemon that called setsid, a double fork) come to this
    # helper instead of init, so they can be found and stopped with the rest.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
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
                if isinstance(request, dict) and request.get("kill_all"):
                    _send(sock, {"id": request.get("id"), "killed": _kill_all()})
                    continue
                if isinstance(request, dict) and request.get("alive"):
                    _send(sock, {"id": request.get("id"), "alive": _alive()})
                    continue
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
