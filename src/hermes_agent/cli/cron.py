"""`hermes cron`: schedule prompts for the agent to run, and manage them.

Jobs live in ``HERMES_HOME/cron`` (one JSON file each) and are run by the
gateway (``hermes gateway run``) while ``cron.enabled`` is on. They are the
user's data, like skills and sessions, so these commands work in managed
mode too: NixOS owns the configuration, not the jobs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_agent.cli.common import load_config, warn
from hermes_agent.errors import EXIT_FAILURE, HermesError, UsageError

if TYPE_CHECKING:
    from datetime import tzinfo

    from hermes_agent.config.loader import Config
    from hermes_agent.cron.jobs import Job, JobStore

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Scheduled jobs: prompts the agent answers on a schedule, unattended, while the "
        "gateway runs (`hermes gateway run`). Results are kept in HERMES_HOME/cron/output "
        "and can be delivered to a chat."
    )
    parser.set_defaults(handler=cmd_list)
    fmt = parser.formatter_class
    sub = parser.add_subparsers(dest="cron_command", metavar="ACTION", title="actions")

    listing = sub.add_parser(
        "list", help="every job with its next run (the default)", formatter_class=fmt
    )
    listing.set_defaults(handler=cmd_list)

    add = sub.add_parser(
        "add",
        help="schedule a new job",
        formatter_class=fmt,
        description=(
            "Schedule a prompt. SCHEDULE is a cron expression of 5 fields (minute hour "
            "day month weekday, e.g. '0 9 * * 1-5'; @daily, @weekly... too), an interval "
            "('every 30m', 'every 2h'), or one time ('in 20m', '2026-12-24T09:00'), read "
            "in cron.timezone (default: local time)."
        ),
    )
    add.add_argument("--schedule", "-s", required=True, metavar="SCHEDULE", help="when it runs")
    add.add_argument(
        "--prompt", "-p", metavar="TEXT", help="what the agent should do (- reads stdin)"
    )
    add.add_argument("--name", "-n", default="", help="a short name (default: the prompt's start)")
    add.add_argument(
        "--skill",
        action="append",
        default=[],
        metavar="NAME",
        help="a skill loaded into each run (repeatable)",
    )
    add.add_argument(
        "--deliver",
        default="local",
        metavar="TARGET",
        help="'local' (keep the result in cron/output; default) or PLATFORM:CHAT_ID[:THREAD_ID]",
    )
    add.add_argument(
        "--missed",
        choices=("skip", "run_once"),
        help="runs missed while the gateway was down: skip them (default for repeating jobs: "
        "cron.default_missed) or run once (default for one-off jobs)",
    )
    add.add_argument(
        "--grace",
        metavar="DURATION",
        help="how late a run may start and still count as on time, e.g. 10m "
        "(default: cron.missed_grace)",
    )
    add.set_defaults(handler=cmd_add)

    for action, text in (
        ("remove", "delete a job (its past results stay in cron/output)"),
        ("pause", "stop running a job until it is resumed"),
        ("resume", "run a paused job again, from its next scheduled time"),
        ("show", "a job's settings and its last result"),
        ("run", "run a job now, in the foreground, and print its result"),
    ):
        child = sub.add_parser(action, help=text, formatter_class=fmt)
        child.add_argument("id", metavar="ID", help="the job's id (or a unique start of it)")
        child.set_defaults(handler=globals()[f"cmd_{action}"])


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d`` as seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise UsageError(f"duration {text!r}: expected a number with s, m, h or d (e.g. 10m)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _setup() -> tuple[Config, JobStore, tzinfo]:
    from hermes_agent.cron.jobs import JobStore
    from hermes_agent.cron.schedule import job_zone

    config = load_config()
    return config, JobStore(), job_zone(config)


def _gateway_hints(config: Config, job: Job | None = None) -> None:
    """Say on stderr why a job would not run or not arrive where it should."""
    from hermes_agent.gateway import runner

    if not config.get("cron.enabled"):
        warn("cron.enabled is off: the gateway does not run scheduled jobs")
    elif runner.running_pid() is None:
        warn("no gateway is running: jobs run while `hermes gateway run` does")
    target = job.target if job is not None else None
    if target is not None and not config.get(f"gateway.platforms.{target.platform}.enabled"):
        warn(
            f"the platform {target.platform} is not enabled (gateway.platforms."
            f"{target.platform}.enabled): results stay in cron/output until it is"
        )


def cmd_add(args: argparse.Namespace) -> int:
    from hermes_agent.cron.jobs import build_job
    from hermes_agent.cron.schedule import show_time, zone_name

    config, store, zone = _setup()
    from hermes_agent.cli.common import clean_argument, read_stdin_text

    prompt = args.prompt
    if prompt == "-":
        prompt = read_stdin_text("the prompt on stdin")
    elif prompt is not None:
        prompt = clean_argument(prompt, "the prompt")
    if prompt is None:
        raise UsageError("no prompt: give it with -p TEXT (or -p - to read it from stdin)")
    job = build_job(
        store,
        config=config,
        schedule=args.schedule,
        prompt=prompt,
        name=args.name,
        skills=args.skill,
        deliver=args.deliver,
        missed=args.missed,
        grace=parse_duration(args.grace) if args.grace is not None else None,
    )
    store.add(job)
    print(
        f"added {job.id}: {job.name!r}, `{job.schedule}`, next run "
        f"{show_time(job.next_run, zone)} ({zone_name(zone)}), result to {job.deliver}"
    )
    _gateway_hints(config, job)
    return 0


def _status(job: Job, zone: tzinfo) -> str:
    from hermes_agent.cron.schedule import show_time

    if not job.last_status:
        return "never ran"
    when = show_time(job.last_run, zone)[4:] if job.last_run else ""
    status = job.last_status
    if status == "ok" and job.last_error:
        status = "ok, not delivered"
    return f"{status} {when}".strip()


def cmd_list(args: argparse.Namespace) -> int:
    from hermes_agent.cron.schedule import show_time, zone_name

    config, store, zone = _setup()
    jobs, problems = store.load()
    for problem in problems:
        warn(f"skipped a job file: {problem}")
    if not jobs:
        print("no scheduled jobs; add one with `hermes cron add --schedule '0 9 * * *' -p '...'`")
        return 0
    rows = []
    for job in jobs:
        next_run = "paused" if job.paused else show_time(job.next_run, zone, empty="done")
        name = job.name if len(job.name) <= 24 else job.name[:23] + "…"
        rows.append((job.id, name, job.schedule, next_run, _status(job, zone), job.deliver))
    headers = ("ID", "NAME", "SCHEDULE", f"NEXT RUN ({zone_name(zone)})", "LAST RUN", "DELIVER")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    _gateway_hints(config)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from hermes_agent.cron.schedule import show_time, zone_name

    _, store, zone = _setup()
    job = store.resolve(args.id)
    print(f"{job.id}: {job.name}")
    print(f"  schedule:  {job.schedule} ({zone_name(zone)})")
    print(f"  next run:  {'paused' if job.paused else show_time(job.next_run, zone, empty='none')}")
    print(f"  deliver:   {job.deliver}")
    print(
        f"  missed:    {job.missed}"
        + (f" (grace {job.grace:g} s)" if job.grace is not None else "")
    )
    if job.skills:
        print(f"  skills:    {', '.join(job.skills)}")
    print(f"  runs:      {job.runs}, last: {_status(job, zone)}")
    if job.last_error:
        print(f"  note:      {job.last_error}")
    print("  prompt:")
    for line in job.prompt.splitlines():
        print(f"    {line}")
    if job.last_output:
        print(f"  last result ({job.last_output}):")
        try:
            text = Path(job.last_output).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            print(f"    (cannot read it: {exc.strerror})")
        else:
            for line in text.rstrip().splitlines():
                print(f"    {line}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from hermes_agent import home

    _, store, _ = _setup()
    job = store.resolve(args.id)
    if not store.remove(job.id):
        raise UsageError(f"no scheduled job {job.id!r}")
    kept = home.cron_output_dir(job.id)
    print(
        f"removed {job.id} ({job.name!r})"
        + (f"; its results stay in {kept}" if kept.exists() else "")
    )
    return 0


def _pause(args: argparse.Namespace, paused: bool) -> int:
    from hermes_agent.cron.jobs import set_paused
    from hermes_agent.cron.schedule import show_time, zone_name

    _, store, zone = _setup()
    job = set_paused(store, store.resolve(args.id).id, paused, zone)
    if paused:
        print(f"paused {job.id} ({job.name!r})")
    else:
        print(
            f"resumed {job.id} ({job.name!r}); next run "
            f"{show_time(job.next_run, zone, empty='none')} ({zone_name(zone)})"
        )
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    return _pause(args, True)


def cmd_resume(args: argparse.Namespace) -> int:
    return _pause(args, False)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a job now, as the scheduler would (nobody approves), and print the result."""
    import asyncio

    from hermes_agent.agent.factory import agent_parts
    from hermes_agent.cli.terminal_ui import TerminalEvents
    from hermes_agent.cron.jobs import RunLock, now_utc
    from hermes_agent.cron.run import Outcome, execute, record_outcome, record_start
    from hermes_agent.state.db import StateDB

    class Unattended(TerminalEvents):
        async def ask(self, question: str, choices: object) -> str | None:
            self.notice(f"refused (a scheduled run has nobody to ask): {question[:200]}")
            return None

    config, store, zone = _setup()
    job = store.resolve(args.id)
    settings, tools, cwd = agent_parts(config)
    lock = RunLock(job.id)
    if not lock.acquire():
        raise HermesError(
            f"the job {job.id} is running right now (in the gateway, or another "
            "`hermes cron run`); try again when it has finished"
        )
    events = Unattended(plain=True, compact=bool(config.get("display.compact")))
    db = StateDB()
    try:
        record_start(store, job.id, now_utc())
        try:
            outcome = asyncio.run(
                execute(
                    job,
                    config=config,
                    settings=settings,
                    tools=tools,
                    cwd=cwd,
                    db=db,
                    zone=zone,
                    events=events,
                )
            )
        except KeyboardInterrupt:
            record_outcome(store, job.id, Outcome("interrupted", "stopped with Ctrl-C", now_utc()))
            raise
        finally:
            events.finish()
    finally:
        lock.release()
        db.close()
    record_outcome(store, job.id, outcome)
    if outcome.status == "ok" and not events.streamed:
        events.print_answer(outcome.text)
    where = f"; result saved to {outcome.output}" if outcome.output else ""
    if outcome.status != "ok":
        print(f"hermes: the job {job.id} failed: {outcome.text}{where}", file=sys.stderr)
        return EXIT_FAILURE
    target = job.target
    if target is not None:
        warn(f"not delivered to {target}: only the gateway delivers results{where}")
    else:
        print(f"hermes: {job.id} ran{where}", file=sys.stderr)
    return 0
