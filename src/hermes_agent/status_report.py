"""What hermes is doing right now: the gateway, its platforms, the next jobs, today's use.

Below the front ends (`hermes status` prints it; ACP or a chat command could
show the same). Everything is read, nothing is started or created: the
gateway's liveness from ``gateway.pid`` (checked against the process), its
platforms from the status file it writes (:mod:`hermes_agent.gateway_status`),
the jobs from ``cron/``, and today's sessions and cost from state.db opened
read-only (no migration runs, and a missing state.db stays missing).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hermes_agent import gateway_status, home

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config

#: How many upcoming job runs are shown.
NEXT_RUNS = 5


@dataclass
class PlatformLine:
    name: str
    #: ``connected``, ``reconnecting``, ``starting``, ``stopped``, or ``not running``
    #: (enabled in the configuration, but no gateway runs).
    state: str
    since: float | None = None
    detail: str = ""


@dataclass
class GatewayLine:
    running: bool
    pid: int | None = None
    started_at: float | None = None
    phase: str = ""
    platforms: list[PlatformLine] = field(default_factory=list)
    #: The gateway runs, but wrote no status file (an older hermes): platforms unknown.
    platforms_unknown: bool = False


@dataclass
class JobLine:
    id: str
    name: str
    schedule: str
    next_run: str | None
    paused: bool
    last_status: str | None


@dataclass
class Today:
    since: float
    sessions_started: int = 0
    sessions_active: int = 0
    messages: int = 0
    cost_usd: float = 0.0
    #: ``messages`` when each reply's cost is recorded; ``sessions`` when only totals are.
    cost_basis: str = "messages"
    by_source: dict[str, int] = field(default_factory=dict)
    problem: str = ""


@dataclass
class Status:
    home: str
    gateway: GatewayLine
    cron_enabled: bool
    jobs: list[JobLine]
    job_count: int
    job_problems: list[str]
    today: Today

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gateway(config: Config) -> GatewayLine:
    """Whether the gateway runs, and each enabled platform's connection."""
    enabled = _enabled_platforms(config)
    pid = gateway_status.gateway_pid()
    if pid is None:
        return GatewayLine(False, platforms=[PlatformLine(n, "not running") for n in enabled])
    written = gateway_status.read()
    if written is None or written.pid != pid:
        return GatewayLine(True, pid, platforms_unknown=bool(enabled))
    lines = [
        PlatformLine(name, p.state, p.since, p.detail) for name, p in written.platforms.items()
    ]
    return GatewayLine(True, pid, written.started_at, written.phase, lines)


def _enabled_platforms(config: Config) -> list[str]:
    section = config.get("gateway.platforms") or {}
    if not isinstance(section, dict):
        return []
    return sorted(
        str(name)
        for name, value in section.items()
        if isinstance(value, dict) and value.get("enabled") is True
    )


def jobs(limit: int = NEXT_RUNS) -> tuple[list[JobLine], int, list[str]]:
    """The next ``limit`` job runs (soonest first), the number of jobs, and broken job files."""
    from hermes_agent.cron.jobs import JobStore

    found, problems = JobStore().load()
    upcoming = sorted(
        (j for j in found if j.next_run is not None and not j.paused),
        key=lambda j: j.next_run or datetime.max.replace(tzinfo=UTC),
    )
    lines = [
        JobLine(
            j.id,
            j.name,
            j.schedule,
            j.next_run.isoformat() if j.next_run else None,
            j.paused,
            j.last_status,
        )
        for j in upcoming[:limit]
    ]
    return lines, len(found), problems


def local_midnight(now: float | None = None) -> float:
    """The start of today in the machine's local time, as a Unix time."""
    moment = time.localtime(now)
    return time.mktime((moment.tm_year, moment.tm_mon, moment.tm_mday, 0, 0, 0, 0, 0, -1))


def today(since: float | None = None) -> Today:
    """Sessions and cost since local midnight, from state.db opened read-only."""
    start = local_midnight() if since is None else since
    result = Today(since=start)
    path = home.state_db_path()
    if not path.exists():
        return result
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        result.problem = f"cannot open {path}: {exc}"
        return result
    try:
        result.sessions_started = conn.execute(
            "SELECT count(*) FROM sessions WHERE created_at >= ?", (start,)
        ).fetchone()[0]
        for source, count in conn.execute(
            "SELECT source, count(*) FROM sessions WHERE updated_at >= ? GROUP BY source",
            (start,),
        ):
            result.by_source[str(source)] = int(count)
        result.sessions_active = sum(result.by_source.values())
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        row = conn.execute(
            "SELECT count(*), "
            + ("total(cost_usd)" if "cost_usd" in columns else "0")
            + " FROM messages WHERE created_at >= ?",
            (start,),
        ).fetchone()
        result.messages = int(row[0])
        result.cost_usd = float(row[1])
        if "cost_usd" not in columns:
            # Only per-session totals: the cost of the sessions active today, whole.
            result.cost_basis = "sessions"
            result.cost_usd = float(
                conn.execute(
                    "SELECT total(cost_usd) FROM sessions WHERE updated_at >= ?", (start,)
                ).fetchone()[0]
            )
    except sqlite3.Error as exc:
        result.problem = f"cannot read {path}: {exc} (run `hermes doctor`)"
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    return result


def collect(config: Config) -> Status:
    """The whole status, as :class:`Status`."""
    from hermes_agent.errors import HermesError

    try:
        upcoming, count, problems = jobs()
    except HermesError as exc:
        upcoming, count, problems = [], 0, [str(exc)]
    return Status(
        home=str(home.hermes_home()),
        gateway=gateway(config),
        cron_enabled=bool(config.get("cron.enabled")),
        jobs=upcoming,
        job_count=count,
        job_problems=problems,
        today=today(),
    )
