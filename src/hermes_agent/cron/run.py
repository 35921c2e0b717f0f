"""Running one job: the agent turn, its result file, and the record in the job file.

Shared by the scheduler (in the gateway) and ``hermes cron run``. A run is an
agent turn in a fresh session of source ``cron:<job id>`` (so ``hermes
sessions list --source cron`` finds every run), with the job's skills put in
front of its prompt. Nobody is there to answer questions: tools that need an
approval play safe, exactly as when the gateway answers a chat. Whatever
happens (an answer, a provider error, a bug), a result file is written to
``cron/output/<job id>/<UTC time>.md`` and the job file records how the run
ended, so a failing job is visible in ``hermes cron list``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_agent import home
from hermes_agent.agent.loop import Events
from hermes_agent.cron.jobs import Job, JobStore, now_utc
from hermes_agent.cron.schedule import zone_name
from hermes_agent.errors import HermesError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.base import Provider, ProviderError, ToolCall
    from hermes_agent.providers.settings import ProviderSettings
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools.registry import Tool, ToolResult

log = logging.getLogger("hermes_agent.cron")

UNATTENDED_NOTE = (
    "[Scheduled job {name!r} ({id}), running unattended at {when}. Nobody can answer "
    "questions or approve commands during this run: do the task, then reply with the "
    "result itself; your reply is {where}.]"
)


class CronEvents(Events):
    """A scheduled run's events go to the log; questions get no answer."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def tool_started(self, call: ToolCall) -> None:
        log.info("cron %s: tool %s", self.job_id, call.name)

    def tool_finished(self, result: ToolResult, seconds: float) -> None:
        if result.is_error:
            log.info(
                "cron %s: tool %s failed: %.200s", self.job_id, result.call.name, result.content
            )

    def retrying(self, error: ProviderError, delay: float, attempt: int) -> None:
        log.warning("cron %s: %s; retry %d in %.1f s", self.job_id, error, attempt, delay)

    def notice(self, message: str) -> None:
        log.info("cron %s: %s", self.job_id, message)

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        log.info("cron %s: nobody can answer %r; refused", self.job_id, question[:200])
        return None


@dataclass
class Outcome:
    """How a run ended."""

    #: ok, error or interrupted.
    status: str
    #: The answer, or why there is none.
    text: str
    started: datetime
    session_id: str | None = None
    output: Path | None = None
    #: The line saying fallback providers wrote (part of) the answer; "" when none did.
    fallback: str = ""


def message_for(job: Job, config: Config, when: datetime, zone: tzinfo) -> str:
    """The user message of a run: a note that it runs unattended, the skills, the prompt."""
    from hermes_agent.cron.jobs import check_skills
    from hermes_agent.skills.loader import catalog_for

    target = job.target
    where = f"delivered to {target}" if target else "kept in the job's output folder"
    local = when.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    parts = [
        UNATTENDED_NOTE.format(
            name=job.name, id=job.id, when=f"{local} {zone_name(zone)}", where=where
        )
    ]
    if job.skills:
        catalog = catalog_for(config)
        for name in check_skills(job.skills, config):
            skill = catalog.skills[name]
            try:
                body = skill.body()
            except OSError as exc:
                raise HermesError(f"cannot read the skill {name!r}: {exc.strerror}") from None
            parts.append(f"## Skill: {name}\n{skill.description}\n\n{body}")
        parts.append("## Task\n" + job.prompt)
    else:
        parts.append(job.prompt)
    return "\n\n".join(parts)


async def execute(
    job: Job,
    *,
    config: Config,
    settings: ProviderSettings,
    tools: list[Tool],
    cwd: Path,
    db: StateDB,
    zone: tzinfo,
    events: Events | None = None,
    provider: Provider | None = None,
) -> Outcome:
    """Run ``job`` once and write its result file; cancellation still writes it, then re-raises.

    ``provider``: a model client to share (the gateway's); without it one is
    built for the run and closed after it.
    """
    from hermes_agent.agent.factory import build_agent

    outcome = Outcome("error", "", now_utc())
    try:
        message = message_for(job, config, outcome.started, zone)
        outcome.session_id = db.create_session(
            source=f"cron:{job.id}", model=settings.model, cwd=str(cwd), title=job.name
        )
        agent = build_agent(
            config=config,
            settings=settings,
            tools=tools,
            db=db,
            session_id=outcome.session_id,
            cwd=cwd,
            events=events or CronEvents(job.id),
            provider=provider,
        )
        try:
            result = await agent.run(message)
        finally:
            with contextlib.suppress(Exception):
                await agent.aclose(close_provider=provider is None)
        outcome.text = result.text
        outcome.status = "ok" if result.status == "done" else "error"
    except asyncio.CancelledError:
        outcome.status, outcome.text = "interrupted", "the gateway stopped during this run"
        outcome.output = _write_quietly(job, outcome, zone)
        raise
    except HermesError as exc:
        outcome.text = str(exc)
    except Exception as exc:  # A bug must not take the scheduler down; it is recorded.
        log.exception("cron %s: unexpected error", job.id)
        outcome.text = f"internal error: {type(exc).__name__}: {exc}"
    if outcome.session_id:
        outcome.fallback = _fallback_line(db, outcome.session_id, settings)
    outcome.output = _write_quietly(job, outcome, zone)
    return outcome


def _fallback_line(db: StateDB, session_id: str, settings: ProviderSettings) -> str:
    """One line naming the fallback providers that wrote this run's replies ("" if none).

    Read from state.db's record of who wrote each reply, so it holds whatever
    events object the run had; the chat the result goes to is told, as a chat
    on the gateway is.
    """
    configured = (settings.info.name, settings.model)
    others: list[str] = []
    try:
        answered = db.answered_by(session_id)
    except Exception as exc:  # The run is over; its record must not fail with this.
        log.warning("cron: cannot read who answered session %s: %s", session_id, exc)
        return ""
    for provider, model, _cost in answered:
        name = f"{model} via {provider}"
        if (provider, model) != configured and name not in others:
            others.append(name)
    if not others:
        return ""
    return f"↪ {settings.model} via {settings.info.name} failed; going on with {', '.join(others)}"


def _write_quietly(job: Job, outcome: Outcome, zone: tzinfo) -> Path | None:
    try:
        return write_output(job, outcome, zone)
    except HermesError as exc:
        log.error("cron %s: %s", job.id, exc)
        return None


def write_output(job: Job, outcome: Outcome, zone: tzinfo) -> Path:
    """``cron/output/ID/YYYYMMDDTHHMMSSZ.md`` (0600): a short header, then the answer."""
    from hermes_agent.fsutil import write_secret
    from hermes_agent.redact import redact

    folder = home.ensure_dir(home.cron_output_dir(job.id))
    stamp = outcome.started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stamp}.md"
    number = 1
    while path.exists():
        number += 1
        path = folder / f"{stamp}_{number}.md"  # Sorts after {stamp}.md.
    local = outcome.started.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    header = [
        f"# {job.name}",
        "",
        f"- job: {job.id} (schedule `{job.schedule}`)",
        f"- ran: {local} {zone_name(zone)}",
        f"- status: {outcome.status}",
    ]
    if outcome.session_id:
        header.append(f"- session: {outcome.session_id} (`hermes sessions show` it)")
    if outcome.fallback:
        header.append(f"- providers: {outcome.fallback.removeprefix('↪ ')}")
    body = outcome.text if outcome.status == "ok" else f"Error: {outcome.text}"
    write_secret(path, "\n".join(header) + "\n\n" + redact(body).rstrip() + "\n")
    return path


def record_start(store: JobStore, job_id: str, started: datetime) -> None:
    def change(job: Job) -> None:
        job.last_run = started
        job.last_status = "running"

    store.update(job_id, change)


def record_outcome(store: JobStore, job_id: str, outcome: Outcome, note: str | None = None) -> None:
    """Save how a run ended; ``note`` adds a remark (a failed delivery) to a good run."""

    def change(job: Job) -> None:
        job.last_run = outcome.started
        job.last_status = outcome.status
        job.last_error = note if outcome.status == "ok" else outcome.text[:500]
        job.last_output = str(outcome.output) if outcome.output else job.last_output
        job.runs += 1

    try:
        store.update(job_id, change)
    except HermesError as exc:  # Removed or broken meanwhile: the result file is kept.
        log.warning("cron %s: cannot record the run: %s", job_id, exc)


def delivery_text(job: Job, outcome: Outcome) -> str:
    """What a chat receives from a run."""
    if outcome.status == "ok":
        said = f"\n{outcome.fallback}" if outcome.fallback else ""
        return f"**{job.name}** (scheduled){said}\n\n{outcome.text}"
    return f"Scheduled job {job.name!r} ({job.id}) failed: {outcome.text}"
