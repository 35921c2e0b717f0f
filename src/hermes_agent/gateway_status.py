"""What the running gateway says about itself, in ``HERMES_HOME/gateway.status.json``.

`hermes status` must tell which platforms are connected without talking to
the gateway (it has no control socket) and without importing it. So the
gateway writes this small file, atomically, when it starts, when a platform
connects, drops or reconnects, and when it stops; readers trust it only
while the pid it names is alive and is a gateway (a ``kill -9`` leaves the
file behind, saying "connected" for a process that is gone).

This module sits below the front ends: the gateway writes through
:class:`StatusFile`, the CLI (and ACP, should it want to) reads with
:func:`read`. It holds no secrets: platform names, states, times, and error
texts that pass redaction before they are written.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermes_agent import home

#: A platform's connection: ``starting`` (its start() runs), ``connecting`` (started;
#: its connection has not shown life yet), ``connected``, ``reconnecting`` (the last
#: attempt failed; ``detail`` says why), ``stopped``.
STATES = ("starting", "connecting", "connected", "reconnecting", "stopped")
FORMAT_VERSION = 1


@dataclass
class PlatformState:
    state: str
    since: float
    detail: str = ""


@dataclass
class GatewayStatus:
    """The file's content: who wrote it, and each platform's last known state."""

    pid: int
    started_at: float
    updated_at: float
    phase: str = "starting"
    platforms: dict[str, PlatformState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "phase": self.phase,
            "platforms": {
                name: {"state": p.state, "since": p.since, "detail": p.detail}
                for name, p in self.platforms.items()
            },
        }


class StatusFile:
    """The gateway's writer: every change rewrites the whole (small) file atomically.

    Writes happen only on transitions (a platform connected, dropped, the
    gateway stopping), never per message, so the cost is a few per hour. A
    write that fails (full disk) is ignored: the status is a courtesy, never
    a reason for the gateway to stop answering.
    """

    def __init__(self, path: Path | None = None, *, pid: int | None = None) -> None:
        self.path = path or home.gateway_status_path()
        now = time.time()
        self.status = GatewayStatus(pid=pid or os.getpid(), started_at=now, updated_at=now)
        self._lock = threading.Lock()

    def phase(self, phase: str) -> None:
        with self._lock:
            self.status.phase = phase
            self._write()

    def platform(self, name: str, state: str, detail: str = "") -> None:
        """Record ``name``'s new state; a repeat of the current state is not written again."""
        if state not in STATES:
            raise ValueError(f"unknown platform state {state!r}")
        with self._lock:
            current = self.status.platforms.get(name)
            if current is not None and current.state == state and current.detail == detail:
                return
            from hermes_agent.redact import redact

            self.status.platforms[name] = PlatformState(state, time.time(), redact(detail)[:300])
            self._write()

    def remove(self) -> None:
        """At exit: the file goes if it is still ours (a ``--replace`` successor may own it)."""
        with self._lock:
            current = _load(self.path)
            if current is None or current.pid == self.status.pid:
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def _write(self) -> None:
        from hermes_agent.fsutil import atomic_write

        self.status.updated_at = time.time()
        # A courtesy file never stops the gateway (a full disk, say).
        with contextlib.suppress(Exception):
            atomic_write(self.path, json.dumps(self.status.to_json(), indent=1) + "\n", mode=0o600)


def _load(path: Path) -> GatewayStatus | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        platforms = {
            str(name): PlatformState(str(p["state"]), float(p["since"]), str(p.get("detail", "")))
            for name, p in dict(data.get("platforms") or {}).items()
        }
        return GatewayStatus(
            pid=int(data["pid"]),
            started_at=float(data["started_at"]),
            updated_at=float(data["updated_at"]),
            phase=str(data.get("phase", "")),
            platforms=platforms,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def read(path: Path | None = None) -> GatewayStatus | None:
    """The status file's content, or None when it is missing or unreadable (no traceback)."""
    return _load(path or home.gateway_status_path())


def gateway_pid() -> int | None:
    """The pid in ``gateway.pid`` when that process is alive and is a hermes gateway.

    The same test as the gateway's own (``runner.running_pid``), repeated here
    so that readers below the front ends need not import the gateway.
    """
    try:
        text = home.gateway_pid_path().read_text(encoding="utf-8", errors="replace").strip()
    except OSError:  # Undecodable bytes (a damaged file) are a stale pid: ValueError below.
        return None
    try:
        pid = int(text)
    except ValueError:
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    return pid if is_gateway(pid) else None


def is_gateway(pid: int) -> bool:
    """Alive, not a zombie, and (where /proc tells) running `hermes gateway`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Alive, another user's: we cannot look closer.
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:
            return False
        return b"gateway" in (proc / "cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # No /proc (macOS): alive is all we know.
    except OSError:
        return True
