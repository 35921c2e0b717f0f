"""The job store: one JSON file per job in ``HERMES_HOME/cron``.

Files, not state.db, because that is what the documentation promises ("jobs
in ``cron/``") and because a user can read, back up or copy one job by hand.
Every file is written atomically (temporary file, fsync, rename) with mode
0600 (prompts can be private). A read-modify-write (the CLI pausing a job
while the gateway records a run) holds the HERMES_HOME lock (``home_lock``), so
neither side loses the other's change. A file that does not parse is reported
with its path and reason and skipped; the other jobs still load.

A job file::

    {"id": "morning-news-3f2a", "name": "morning news", "schedule": "0 9 * * 1-5",
     "prompt": "...", "skills": [], "deliver": "telegram:12345", "missed": "skip",
     "grace": null, "paused": false, "created_at": "...", "next_run": "...",
     "last_run": null, "last_status": null, "last_error": null,
     "last_output": null, "runs": 0, "origin": "cli"}

Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermes_agent import delivery_target, home
from hermes_agent.cron.schedule import ScheduleError, parse_schedule
from hermes_agent.delivery_target import REQUEST_ONLY_PLATFORMS, Target
from hermes_agent.errors import HermesError, UsageError

LOCAL = "local"
MISSED_POLICIES = ("skip", "run_once")
#: ok / error: how the last run ended; skipped: runs were missed and dropped (policy
#: skip); running: a run is under way (or the process died during it); interrupted:
#: the gateway stopped during the run.
STATUSES = ("ok", "error", "skipped", "running", "interrupted")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
MAX_PROMPT_CHARS = 20_000


# --- where results go ---------------------------------------------------------------------


def parse_target(text: str) -> Target | None:
    """``local`` (None) or ``PLATFORM:CHAT_ID[:THREAD_ID]`` (see :meth:`Target.parse`)."""
    if text.strip().lower() == LOCAL:
        return None
    try:
        return Target.parse(text)
    except ValueError as exc:
        reason = str(exc).replace("expected ", "expected 'local' or ", 1)
        raise UsageError(f"deliver {text!r}: {reason}") from None


def check_target(text: str) -> str:
    """Validate a deliver value for a new job (the platform must exist); its canonical form."""
    target = parse_target(text)
    if target is None:
        return LOCAL
    if target.platform in REQUEST_ONLY_PLATFORMS:
        raise UsageError(
            f"deliver {text!r}: {target.platform} only answers requests and cannot receive "
            "scheduled results; use 'local' or a chat platform"
        )
    names = delivery_target.PLATFORM_NAMES
    if target.platform not in names:
        known = sorted(set(names) - REQUEST_ONLY_PLATFORMS)
        raise UsageError(
            f"deliver {text!r}: unknown platform {target.platform!r} "
            f"(known: {', '.join(known) or 'none yet'}, or 'local')"
        )
    return str(target)


# --- the job ------------------------------------------------------------------------------


def now_utc() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass
class Job:
    id: str
    name: str
    schedule: str
    prompt: str
    created_at: datetime | None
    next_run: datetime | None
    skills: list[str] = field(default_factory=list)
    deliver: str = LOCAL
    missed: str = "skip"
    #: Seconds a run may start late and still count as on time; None: cron.missed_grace.
    grace: float | None = None
    paused: bool = False
    last_run: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    #: The result file of the last run (under cron/output/ID/).
    last_output: str | None = None
    runs: int = 0
    #: Who made it: ``cli``, or ``agent:SESSION_ID``.
    origin: str = "cli"

    @property
    def target(self) -> Target | None:
        return parse_target(self.deliver)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "next_run", "last_run"):
            data[key] = _iso(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Job:
        """A job from a file's JSON; :class:`HermesError` names the file and the problem."""
        if not isinstance(data, dict):
            raise HermesError(f"{where}: expected a JSON object")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in data:
                if spec.name in ("id", "name", "schedule", "prompt"):
                    raise HermesError(f"{where}: {spec.name}: missing")
                continue
            values[spec.name] = _check_field(spec.name, data[spec.name], where)
        values.setdefault("created_at", None)
        values.setdefault("next_run", None)
        job = cls(**values)
        try:
            parse_schedule(job.schedule, now=now_utc(), zone=UTC)
            parse_target(job.deliver)
        except UsageError as exc:
            raise HermesError(f"{where}: {exc}") from None
        return job


def _check_field(name: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> HermesError:
        return HermesError(f"{where}: {name}: expected {expected}, got {value!r:.60}")

    if name in ("id", "name", "schedule", "prompt", "deliver", "origin"):
        if not isinstance(value, str) or (name != "name" and not value.strip()):
            raise bad("a non-empty string")
        if name == "id" and not ID_PATTERN.match(value):
            raise bad("lower-case letters, digits and hyphens")
        return value
    if name in ("last_error", "last_output"):
        if value is not None and not isinstance(value, str):
            raise bad("a string or null")
        return value
    if name == "last_status":
        if value is not None and value not in STATUSES:
            raise bad(f"one of {', '.join(STATUSES)} or null")
        return value
    if name == "skills":
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise bad("a list of skill names")
        return value
    if name == "missed":
        if value not in MISSED_POLICIES:
            raise bad(" or ".join(MISSED_POLICIES))
        return value
    if name == "grace":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad("a number of seconds or null")
        return value
    if name == "paused":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if name == "runs":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    # created_at, next_run, last_run
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise bad("an ISO time with offset, or null")
    from hermes_agent.cron.schedule import in_range

    try:  # A damaged file's 9999-12-31T23:59-14:00 overflowed in UTC (an internal error).
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not in_range(moment):
        raise bad("an ISO time between the years 2 and 8999")
    return moment


def make_id(name: str, taken: Callable[[str], bool]) -> str:
    """A short readable id: the name's first words and four hex digits."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24].strip("-") or "job"
    while True:
        job_id = f"{slug}-{secrets.token_hex(2)}"
        if not taken(job_id):
            return job_id


# --- the store ----------------------------------------------------------------------------


class JobStore:
    """The job files of this HERMES_HOME."""

    def __init__(self) -> None:
        self.directory = home.cron_dir()

    def path(self, job_id: str) -> Path:
        if not ID_PATTERN.match(job_id):
            raise UsageError(f"{job_id!r} is not a job id (see `hermes cron list`)")
        return home.cron_job_path(job_id)

    def _files(self) -> list[Path]:
        try:
            return sorted(
                p
                for p in self.directory.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".")
            )
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise HermesError(f"cannot list {self.directory}: {exc.strerror or exc}") from None

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """Names, mtimes and sizes of the job files: changes when any job changes."""
        found: list[tuple[str, int, int]] = []
        for path in self._files():
            with contextlib.suppress(OSError):
                stat = path.stat()
                found.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    def _read(self, path: Path) -> Job:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise HermesError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise HermesError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise HermesError(f"{path}{line}: not valid JSON: {reason}") from None
        job = Job.from_dict(data, str(path))
        if job.id != path.stem:
            raise HermesError(f"{path}: id {job.id!r} does not match the file name")
        return job

    def load(self) -> tuple[list[Job], list[str]]:
        """Every job that loads (oldest first), and one problem line per file that does not."""
        jobs: list[Job] = []
        problems: list[str] = []
        for path in self._files():
            try:
                jobs.append(self._read(path))
            except HermesError as exc:
                problems.append(str(exc))
        jobs.sort(key=lambda j: (j.created_at or datetime.min.replace(tzinfo=UTC), j.id))
        return jobs, problems

    def get(self, job_id: str) -> Job | None:
        path = self.path(job_id)
        if not path.exists():
            return None
        return self._read(path)

    def resolve(self, id_or_prefix: str) -> Job:
        """The job with this id, or the one job whose id starts with it."""
        wanted = id_or_prefix.strip()
        jobs, _ = self.load()
        exact = [j for j in jobs if j.id == wanted]
        matches = exact or [j for j in jobs if wanted and j.id.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            broken = self.path(wanted) if ID_PATTERN.match(wanted) else None
            if broken is not None and broken.exists():
                self._read(broken)  # Raises with the reason the file does not load.
            raise UsageError(f"no scheduled job {wanted!r} (see `hermes cron list`)")
        raise UsageError(
            f"{wanted!r} matches {len(matches)} jobs ({', '.join(j.id for j in matches)}); "
            "give more of the id"
        )

    def _write(self, job: Job) -> None:
        from hermes_agent.fsutil import write_secret

        text = json.dumps(job.to_dict(), indent=2, ensure_ascii=False) + "\n"
        write_secret(self.path(job.id), text)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the HERMES_HOME lock for a read-modify-write of job files."""
        from hermes_agent.home_lock import home_lock

        with home_lock("cron job store"):
            yield

    def add(self, job: Job) -> None:
        with self.locked():
            if self.path(job.id).exists():
                raise UsageError(f"a job with the id {job.id!r} exists already")
            self._write(job)

    def new_id(self, name: str) -> str:
        return make_id(name, lambda candidate: self.path(candidate).exists())

    def update(self, job_id: str, change: Callable[[Job], None]) -> Job | None:
        """Apply ``change`` to the job as it is on disk now and save it; None if it is gone."""
        with self.locked():
            path = self.path(job_id)
            if not path.exists():
                return None
            job = self._read(path)
            change(job)
            self._write(job)
            return job

    def remove(self, job_id: str) -> bool:
        with self.locked():
            try:
                self.path(job_id).unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise HermesError(f"cannot remove {self.path(job_id)}: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            home.cron_run_lock_path(job_id).unlink()
        return True


class RunLock:
    """``flock`` on ``cron/.running/ID.lock`` while a job runs, across processes."""

    def __init__(self, job_id: str) -> None:
        self.path = home.cron_run_lock_path(job_id)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another run holds it."""
        import fcntl

        home.ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HermesError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def check_skills(names: list[str], config: Any) -> list[str]:
    """The skill names, each checked to exist (a missing one is named with suggestions)."""
    import difflib

    from hermes_agent.skills.loader import catalog_for

    catalog = catalog_for(config)
    checked: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name or name in checked:
            continue
        if catalog.get(name) is None:
            if name in catalog.disabled:
                raise UsageError(f"skill {name!r} is disabled (skills.disabled)")
            close = difflib.get_close_matches(name, list(catalog.skills), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"no skill named {name!r}{hint} (`hermes skills list` shows them)")
        checked.append(name)
    return checked


def build_job(
    store: JobStore,
    *,
    config: Any,
    schedule: str,
    prompt: str,
    name: str = "",
    skills: list[str] | None = None,
    deliver: str = LOCAL,
    missed: str | None = None,
    grace: float | None = None,
    origin: str = "cli",
    now: datetime | None = None,
) -> Job:
    """Validate everything about a new job and return it (not stored yet: ``store.add``).

    A one-off job's missed run defaults to ``run_once`` (a reminder that comes
    late is better than one that never comes); others to ``cron.default_missed``.
    """
    from hermes_agent.cron.schedule import Once, job_zone

    now = now or now_utc()
    zone = job_zone(config)
    parsed = parse_schedule(schedule, now=now, zone=zone)
    text = prompt.strip()
    if not text:
        raise UsageError("the prompt is empty: say what the agent should do on each run")
    if len(text) > MAX_PROMPT_CHARS:
        raise UsageError(f"the prompt is {len(text)} characters; at most {MAX_PROMPT_CHARS}")
    if isinstance(parsed, Once) and parsed.at <= now:
        raise ScheduleError(f"schedule {schedule!r}: that time is in the past")
    if missed is None:
        missed = "run_once" if isinstance(parsed, Once) else str(config.get("cron.default_missed"))
    if missed not in MISSED_POLICIES:
        raise UsageError(f"missed-run policy {missed!r}: use {' or '.join(MISSED_POLICIES)}")
    if grace is not None and grace < 0:
        raise UsageError("the grace period cannot be negative")
    label = " ".join(name.split()) or " ".join(text.split())[:40]
    job = Job(
        id=store.new_id(label),
        name=label,
        schedule=parsed.text,
        prompt=text,
        created_at=now,
        next_run=parsed.first(now, zone),
        skills=check_skills(list(skills or []), config),
        deliver=check_target(deliver),
        missed=missed,
        grace=grace,
        origin=origin,
    )
    if job.next_run is None:
        raise ScheduleError(f"schedule {schedule!r}: never runs")
    return job


def set_paused(store: JobStore, job_id: str, paused: bool, zone: Any) -> Job:
    """Pause or resume a job. A resumed job's next run is its first one from now on:
    what fell due while it was paused is not made up for (a one-off keeps its time)."""
    now = now_utc()

    def change(job: Job) -> None:
        job.paused = paused
        if paused or job.next_run is None or job.next_run > now:
            return
        schedule = parse_schedule(job.schedule, now=now, zone=zone)
        if schedule.kind != "once":
            job.next_run = schedule.following(job.next_run, now, zone)

    updated = store.update(job_id, change)
    if updated is None:
        raise UsageError(f"the job {job_id} was removed meanwhile")
    return updated
