"""A probe run *by the terminal tool* inside hermes' sandbox: what can it touch?

Used by tests/test_attacks.py. It is copied into the workspace and started as
``python sandbox_probe.py PLAN.json HERMES_PID``; the plan lists checks (an
operation on a path). Each check is tried without harm: files are opened for
appending but nothing is written, a file created to test a directory is
removed at once, a renamed directory is renamed back. It prints one line,
``PROBE-RESULT {json}``, mapping each check to ``{"ok": bool, "error": str}``,
where ``ok`` means the operation was *allowed*. Standard library only, no
imports from hermes: it must run whatever hermes' code looks like.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import sys
import tempfile
from typing import Any


def _read(path: str, secrets: list[str]) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = f.read()
    # Never print what was read: only whether a known secret was in it.
    return {"leaked": any(s.encode() in data for s in secrets if s), "bytes": len(data)}


def _peek(path: str) -> None:
    with open(path, "rb") as f:
        f.read(512)


def _reopen_fds(path: str) -> None:
    """Open each regular file another process holds open (``/proc/PID/fd/N``) for
    appending: that re-opens the very file, wherever it is. Nothing is written."""
    opened = []
    for name in sorted(os.listdir(path)):
        link = os.path.join(path, name)
        try:
            if not stat.S_ISREG(os.stat(link).st_mode):
                continue  # /dev/null, pipes and sockets hold nothing of hermes'
            fd = os.open(link, os.O_WRONLY | os.O_APPEND)
        except OSError:
            continue
        os.close(fd)
        opened.append(os.readlink(link))
    if not opened:
        raise PermissionError(1, "no file could be re-opened for writing")


def _tiocsti(path: str) -> None:
    import fcntl
    import termios

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"#")
    finally:
        os.close(fd)


def _append(path: str) -> None:
    with open(path, "ab"):
        pass


def _create(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.unlink(path)


def _mkdir(path: str) -> None:
    os.mkdir(path)
    os.rmdir(path)


def _rename_dir(path: str) -> None:
    moved = path + ".probe-moved"
    os.rename(path, moved)
    os.rename(moved, path)


def _link(path: str, target: str) -> None:
    os.link(path, target)
    os.unlink(target)


def _connect(address: str) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=3):
        pass


def _tempfile() -> None:
    fd, name = tempfile.mkstemp(prefix="probe-")
    os.close(fd)
    os.unlink(name)


def run_check(check: dict[str, Any], pid: int) -> dict[str, Any]:
    op = check["op"]
    path = str(check.get("path", "")).replace("@PID@", str(pid))
    path = path.replace("@PPID@", str(os.getppid()))
    extra: dict[str, Any] = {}
    try:
        if op == "read":
            extra = _read(path, [str(s) for s in check.get("secrets", ())])
        elif op == "peek":
            _peek(path)
        elif op == "reopen-fds":
            _reopen_fds(path)
        elif op == "tiocsti":
            _tiocsti(path)
        elif op == "append":
            _append(path)
        elif op == "create":
            _create(path)
        elif op == "mkdir":
            _mkdir(path)
        elif op == "rename":
            _rename_dir(path)
        elif op == "link":
            _link(path, str(check["target"]))
        elif op == "mem":
            with open(path, "r+b"):
                pass
        elif op == "signal":
            os.kill(pid, 0)
        elif op == "signal-parent":
            os.kill(os.getppid(), 0)
        elif op == "ownenv":
            secrets = [str(s) for s in check["secrets"]]
            if not any(s in value for s in secrets for value in os.environ.values()):
                return {"ok": False, "error": "not in the environment"}
        elif op == "connect":
            _connect(path)
        elif op == "tempfile":
            _tempfile()
        else:
            return {"ok": False, "error": f"unknown op {op}"}
    except OSError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc.strerror or exc}"}
    return {"ok": True, "error": "", **extra}


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    pid = int(sys.argv[2])
    results = {name: run_check(check, pid) for name, check in plan.items()}
    with contextlib.suppress(OSError):
        results["_identity"] = {"ok": True, "error": "", "pid": os.getpid(), "ppid": os.getppid()}
    print("PROBE-RESULT " + json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
