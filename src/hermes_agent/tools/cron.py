"""The ``cron`` toolset: the agent schedules jobs for the user from a conversation.

``cron(action=create)`` stores a job like ``hermes cron add`` does; the
gateway's scheduler runs it. When the conversation is a chat on a platform
(its session is routed from that chat in state.db), the result goes back to
that chat unless ``deliver`` says otherwise; elsewhere it is kept in
``cron/output`` ("local").

A job runs later, unattended, with the agent's tools, so creating one is
consequential and the user is asked first whenever someone can answer. When
nobody can (a gateway chat, a one-shot ``hermes chat -q``), the job is
created anyway: the request came from the person in that conversation (the
gateway only lets allowed users in), they see the tool's answer, the job
runs with the same tools and the same "nobody approves dangerous commands"
rule as their messages do, so it gives them nothing they could not already
ask for, and they can remove it with a message. Two cases are refused
instead: a turn that read untrusted content (a web page or file could be
planting a job that outlives the conversation), and a scheduled run itself
(jobs do not create jobs without a person in the loop).
"""

from __future__ import annotations

from typing import Any

from hermes_agent.errors import HermesError
from hermes_agent.tools.registry import Tool, ToolContext, ToolError

ACTIONS = ("create", "list", "remove", "pause", "resume")


def _route_target(ctx: ToolContext) -> str:
    """The chat this conversation happens in (``PLATFORM:CHAT[:THREAD]``), or ``local``."""
    from hermes_agent.cron.jobs import LOCAL
    from hermes_agent.delivery_target import REQUEST_ONLY_PLATFORMS, Target

    session_id: str | None = ctx.session_id
    for _ in range(8):  # A sub-agent's session answers through its parent's chat.
        if session_id is None:
            break
        route = ctx.db.route_of(session_id)
        if route is not None:
            platform, chat_id, thread_id = route
            if platform in REQUEST_ONLY_PLATFORMS:
                return LOCAL
            return str(Target(platform, chat_id, thread_id))
        session = ctx.db.get_session(session_id)
        session_id = session.parent_id if session is not None else None
    return LOCAL


def _source(ctx: ToolContext) -> str:
    session = ctx.db.get_session(ctx.session_id)
    return session.source if session is not None else ""


def _listing(ctx: ToolContext) -> str:
    from hermes_agent.cron.jobs import JobStore
    from hermes_agent.cron.schedule import job_zone, show_time, zone_name

    zone = job_zone(ctx.config)
    jobs, problems = JobStore().load()
    lines: list[str] = []
    if not jobs:
        lines.append("no scheduled jobs")
    else:
        lines.append(f"{len(jobs)} scheduled job(s); times in {zone_name(zone)}:")
    for job in jobs:
        state = "paused" if job.paused else f"next {show_time(job.next_run, zone, empty='none')}"
        last = ""
        if job.last_status:
            last = f"; last run {show_time(job.last_run, zone)}: {job.last_status}"
            if job.last_error:
                last += f" ({job.last_error[:120]})"
        skills = f"; skills {', '.join(job.skills)}" if job.skills else ""
        lines.append(
            f"- {job.id} {job.name!r}: `{job.schedule}`, {state}, delivers to {job.deliver}"
            f"{skills}{last}"
        )
    if not ctx.config.get("cron.enabled"):
        lines.append("Note: cron.enabled is off, so the gateway does not run these jobs.")
    lines.extend(f"Broken job file (skipped): {p}" for p in problems)
    return "\n".join(lines)


async def _create(args: dict[str, Any], ctx: ToolContext) -> str:
    from hermes_agent.cron.jobs import JobStore, build_job
    from hermes_agent.cron.schedule import job_zone, show_time, zone_name
    from hermes_agent.tools.write_guard import UNTRUSTED_READ

    for key in ("schedule", "prompt"):
        if not str(args.get(key) or "").strip():
            raise ToolError(f"action=create needs `{key}`")
    source = _source(ctx)
    if source.startswith("cron:"):
        raise ToolError(
            "refused: a scheduled run cannot create scheduled jobs; say in your answer what "
            "job you would add, so the user can add it"
        )
    store = JobStore()
    job = build_job(
        store,
        config=ctx.config,
        schedule=str(args["schedule"]),
        prompt=str(args["prompt"]),
        name=str(args.get("name") or ""),
        skills=[str(s) for s in args.get("skills") or ()],
        deliver=str(args.get("deliver") or _route_target(ctx)),
        missed=args.get("missed"),
        origin=f"agent:{ctx.session_id}",
    )
    zone = job_zone(ctx.config)
    first = f"{show_time(job.next_run, zone)} {zone_name(zone)}"
    preview = " ".join(job.prompt.split())
    preview = preview if len(preview) <= 300 else preview[:297] + "..."
    question = (
        f"Schedule a job that runs unattended: {job.name!r}, schedule `{job.schedule}` "
        f"(first run {first}), result delivered to {job.deliver}, prompt: {preview!r}. Allow?"
    )
    answer = await ctx.ask(question, ["yes", "no"])
    if answer is None:
        if ctx.state.get(UNTRUSTED_READ):
            raise ToolError(
                "refused: this turn read untrusted content (a web page or file), which may have "
                "asked for this job, and nobody can approve it here; tell the user what you "
                "wanted to schedule so they can ask for it directly"
            )
    elif answer.strip().lower() not in ("yes", "y"):
        raise ToolError("refused: the user did not approve this job; do not retry it")
    store.add(job)
    return (
        f"created the scheduled job {job.id} ({job.name!r}): `{job.schedule}`, first run "
        f"{first}, result delivered to {job.deliver}, missed runs: {job.missed}. The user can "
        f"see it with `hermes cron list` and remove it with `hermes cron remove {job.id}`."
    )


async def cron(args: dict[str, Any], ctx: ToolContext) -> str:
    from hermes_agent.cron.jobs import JobStore, set_paused
    from hermes_agent.cron.schedule import job_zone, show_time

    action = args["action"]
    try:
        if action == "list":
            return _listing(ctx)
        if action == "create":
            return await _create(args, ctx)
        wanted = str(args.get("job_id") or "").strip()
        if not wanted:
            raise ToolError(f"action={action} needs `job_id` (action=list shows the ids)")
        store = JobStore()
        job = store.resolve(wanted)
        if action == "remove":
            store.remove(job.id)
            return f"removed the scheduled job {job.id} ({job.name!r}); its past results are kept"
        zone = job_zone(ctx.config)
        updated = set_paused(store, job.id, action == "pause", zone)
        if action == "pause":
            return f"paused {job.id} ({job.name!r}); resume it with action=resume"
        return f"resumed {job.id} ({job.name!r}); next run {show_time(updated.next_run, zone)}"
    except HermesError as exc:
        raise ToolError(str(exc)) from None


TOOLS = [
    Tool(
        name="cron",
        toolset="cron",
        description=(
            "Scheduled jobs: a prompt you answer on a schedule, unattended, with your tools; "
            "the answer is delivered to this chat (or `deliver`: 'local' keeps it in "
            "cron/output, or PLATFORM:CHAT_ID). action=create needs `schedule` (cron "
            "expression like '0 9 * * 1-5', an interval 'every 2h', or once: 'in 20m', "
            "'2026-12-24T09:00', local time) and `prompt` (self-contained: the run does not "
            "see this conversation); optional `name`, `skills` (skill names loaded into the "
            "run), `missed` (skip or run_once: what to do about runs missed while hermes was "
            "down). The user may be asked to approve. action=list shows every job; "
            "remove/pause/resume take `job_id`."
        ),
        parameters={
            "type": "object",
            "properties": {
                "action": {"enum": list(ACTIONS)},
                "schedule": {"type": "string"},
                "prompt": {"type": "string"},
                "name": {"type": "string", "maxLength": 80},
                "skills": {"type": "array", "items": {"type": "string"}},
                "deliver": {"type": "string"},
                "missed": {"enum": ["skip", "run_once"]},
                "job_id": {"type": "string"},
            },
            "required": ["action"],
            "additionalProperties": False,
        },
        handler=cron,
    ),
]
