"""The scheduler the gateway runs: due jobs become agent turns, results go to chats.

One asyncio task sleeps until the next job is due. It does not poll the
jobs: it looks at the job files' names, sizes and mtimes at most every
``CHECK_INTERVAL`` seconds (one directory listing) and reloads them only
when something changed, so a job added by ``hermes cron add`` or by the agent
is picked up within that time.

When a job is due:

- it runs when it is at most its grace period late (``grace``, else
  ``cron.missed_grace``). Its next run is computed and saved *before* the run
  starts, so a gateway that dies during a run does not run it again at every
  start (at most once, like cron);
- a job further behind (the gateway was down, the machine asleep) follows its
  missed-run policy: ``skip`` drops what was missed and waits for the next
  run (recorded as ``skipped``); ``run_once`` runs once now for everything
  that was missed.

A job never runs twice at the same time: within this process it is tracked
while it runs, and across processes (``hermes cron run`` in a terminal while
the gateway runs it, or a second gateway) ``cron/.running/ID.lock`` is held
with ``flock``. At most ``cron.max_parallel`` jobs run at once. When the
gateway stops, no new run starts; running ones get the gateway's
``shutdown_timeout`` to finish and are then recorded as ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hermes_agent.cron.jobs import Job, JobStore, RunLock, now_utc
from hermes_agent.cron.schedule import job_zone, parse_schedule, zone_name
from hermes_agent.errors import HermesError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.cron.run import Outcome
    from hermes_agent.providers.base import Provider
    from hermes_agent.providers.settings import ProviderSettings
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools.registry import Tool

log = logging.getLogger("hermes_agent.cron")

#: Most seconds between two looks at the job files.
CHECK_INTERVAL = 2.0
#: Missed runs are counted (for the log) up to this many.
MAX_COUNTED = 1000


class CronHost(Protocol):
    """What the scheduler needs from the process that runs it (the gateway does).

    A protocol here, not an import of the gateway: cron sits below the gateway,
    which imports it to run the scheduler, so the arrows run one way and cron
    can be read (and tested) without the gateway.
    """

    config: Config
    settings: ProviderSettings
    tools: list[Tool]
    cwd: Path
    db: StateDB

    @property
    def platforms(self) -> Mapping[str, Any]:
        """The enabled chat platforms, by config name."""

    async def model_client(self) -> Provider:
        """The provider client the jobs' agents use."""

    async def deliver_text(
        self, platform: str, chat_id: str, thread_id: str, text: str, reply_to: str = ""
    ) -> bool:
        """Send ``text`` to a chat; False when it could not be delivered."""


class _Changed(Exception):
    """The job changed on disk between the decision to run it and saving it."""


class Scheduler:
    """Runs the jobs of ``HERMES_HOME/cron`` while the gateway runs."""

    def __init__(self, gateway: CronHost) -> None:
        """Read the settings (a bad ``cron.timezone`` fails here, before the gateway starts)."""
        config = gateway.config
        self.gateway = gateway
        self.enabled = bool(config.get("cron.enabled"))
        self.zone = job_zone(config) if self.enabled else UTC
        self.grace = float(config.get("cron.missed_grace"))
        self.max_parallel = int(config.get("cron.max_parallel"))
        self.check_interval = CHECK_INTERVAL
        self.store = JobStore()
        self.jobs: dict[str, Job] = {}
        self._signature: object = None
        self._reported: set[str] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None

    # --- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            log.info("cron: scheduled jobs are off (cron.enabled)")
            return
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_parallel)
        self._refresh()
        self._recover()
        self._loop_task = asyncio.create_task(self._loop(), name="cron")
        log.info(
            "cron: scheduler started (%d jobs, time zone %s)", len(self.jobs), zone_name(self.zone)
        )

    async def stop(self, timeout: float) -> None:
        """No new runs; give running ones ``timeout`` seconds, then cancel them."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        running = list(self._running.values())
        if not running:
            return
        log.info("cron: waiting for %d running jobs", len(running))
        _, pending = await asyncio.wait(running, timeout=timeout)
        for job_task in pending:
            job_task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def wake(self) -> None:
        """Look at the jobs again now (after a run ended)."""
        if self._wake is not None:
            self._wake.set()

    # --- the loop -------------------------------------------------------------------

    def _refresh(self) -> None:
        """Reload the jobs when their files changed; log each broken file once."""
        try:
            signature = self.store.signature()
        except HermesError as exc:
            log.error("cron: %s", exc)
            return
        if signature == self._signature:
            return
        self._signature = signature
        jobs, problems = self.store.load()
        self.jobs = {job.id: job for job in jobs}
        for problem in problems:
            if problem not in self._reported:
                log.error("cron: skipped a job file: %s", problem)
        self._reported = set(problems)
        for job in jobs:
            if job.next_run is None and job.last_status is None and not job.paused:
                self._schedule_new(job)

    def _schedule_new(self, job: Job) -> None:
        """A job written by hand without ``next_run`` gets its first run from now."""
        now = now_utc()
        first = parse_schedule(job.schedule, now=now, zone=self.zone).first(now, self.zone)

        def change(current: Job) -> None:
            if current.next_run is None and current.last_status is None:
                current.next_run = first

        try:
            updated = self.store.update(job.id, change)
        except HermesError as exc:
            log.error("cron %s: %s", job.id, exc)
            return
        if updated is not None:
            self.jobs[job.id] = updated
            log.info("cron %s: new job, first run %s", job.id, first)

    def _recover(self) -> None:
        """A job left ``running`` by a process that died is recorded as interrupted."""
        for job in list(self.jobs.values()):
            if job.last_status != "running":
                continue
            lock = RunLock(job.id)
            if not lock.acquire():
                continue  # It is running right now, elsewhere.
            lock.release()

            def change(current: Job) -> None:
                if current.last_status == "running":
                    current.last_status = "interrupted"
                    current.last_error = "hermes stopped during this run"

            self.store.update(job.id, change)
            log.warning("cron %s: its last run was interrupted (hermes stopped)", job.id)
        self._signature = None
        self._refresh()

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            self._refresh()
            now = now_utc()
            for job in list(self.jobs.values()):
                if self._waiting(job) and job.next_run is not None and job.next_run <= now:
                    try:
                        self._due(job, now)
                    except HermesError as exc:
                        log.error("cron %s: %s", job.id, exc)
            self._refresh()
            delay = self.check_interval
            for job in self.jobs.values():
                if self._waiting(job) and job.next_run is not None:
                    delay = min(delay, (job.next_run - now_utc()).total_seconds())
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that
            # arrives as the event is set, and stop() would then wait for ever.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=max(delay, 0.01))
            finally:
                waiter.cancel()

    def _waiting(self, job: Job) -> bool:
        return not job.paused and job.id not in self._running

    def _due(self, job: Job, now: datetime) -> None:
        """Decide (run or skip), save the next run, and start the run."""
        scheduled = job.next_run
        assert scheduled is not None
        schedule = parse_schedule(job.schedule, now=now, zone=self.zone)
        grace = job.grace if job.grace is not None else self.grace
        late = (now - scheduled).total_seconds()
        following = schedule.following(scheduled, now, self.zone)
        run = late <= grace or job.missed == "run_once"
        count = "0"
        if late > grace:
            missed = sum(1 for _ in schedule.occurrences(scheduled, now, self.zone, MAX_COUNTED))
            count = f"{missed}" if missed < MAX_COUNTED else f"{MAX_COUNTED} or more"
            log.info(
                "cron %s: missed %s run(s) since %s (missed: %s): %s",
                job.id,
                count,
                scheduled.astimezone(self.zone).strftime("%Y-%m-%d %H:%M"),
                job.missed,
                "running once now" if run else "skipped",
            )

        def change(current: Job) -> None:
            if current.next_run != scheduled or current.paused:
                raise _Changed
            current.next_run = following
            if run:  # Marked now: the job is taken even while it waits for a free slot.
                current.last_status = "running"
                current.last_run = now
            else:
                current.last_status = "skipped"
                current.last_error = (
                    f"missed {count} run(s) while hermes was not running (missed: skip)"
                )

        try:
            updated = self.store.update(job.id, change)
        except _Changed:
            self._signature = None  # Changed by someone else: look again.
            return
        if updated is None:
            self.jobs.pop(job.id, None)
            return
        self.jobs[job.id] = updated
        if run:
            self._running[job.id] = asyncio.create_task(self._run(updated), name=f"cron:{job.id}")

    async def _run(self, job: Job) -> None:
        from hermes_agent.cron.run import Outcome, execute, record_outcome, record_start

        assert self._slots is not None
        try:
            async with self._slots:
                lock = RunLock(job.id)
                if not lock.acquire():
                    log.warning("cron %s: already running in another process; not started", job.id)
                    return
                try:
                    record_start(self.store, job.id, now_utc())
                    log.info("cron %s: running %r", job.id, job.name)
                    gateway = self.gateway
                    try:
                        outcome = await execute(
                            job,
                            config=gateway.config,
                            settings=gateway.settings,
                            tools=gateway.tools,
                            cwd=gateway.cwd,
                            db=gateway.db,
                            zone=self.zone,
                            provider=await gateway.model_client(),
                        )
                    except asyncio.CancelledError:
                        record_outcome(
                            self.store,
                            job.id,
                            Outcome(
                                "interrupted", "the gateway stopped during this run", now_utc()
                            ),
                        )
                        raise
                finally:
                    lock.release()
                log.info("cron %s: %s; result in %s", job.id, outcome.status, outcome.output or "-")
                note = await self._deliver(job, outcome)
                record_outcome(self.store, job.id, outcome, note)
        except asyncio.CancelledError:
            raise
        except Exception:  # Never let one job end the scheduler.
            log.exception("cron %s: the run failed unexpectedly", job.id)
        finally:
            self._running.pop(job.id, None)
            self.wake()

    async def _deliver(self, job: Job, outcome: Outcome) -> str | None:
        """Send the result to the job's chat; a remark for the job file when that failed."""
        from hermes_agent.cron.run import delivery_text

        try:
            target = job.target
        except HermesError as exc:
            return f"not delivered: {exc}"
        if target is None:
            return None
        delivered = await self.gateway.deliver_text(
            target.platform, target.chat_id, target.thread_id, delivery_text(job, outcome)
        )
        if delivered:
            log.info("cron %s: delivered to %s", job.id, target)
            return None
        enabled = target.platform in self.gateway.platforms
        reason = "" if enabled else f" (the platform {target.platform} is not enabled)"
        return f"not delivered to {target}{reason}; the result is in {outcome.output}"
