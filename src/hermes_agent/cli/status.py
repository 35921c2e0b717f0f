"""`hermes status`: the gateway, its platforms, the next scheduled runs, today's use.

What is gathered is in :mod:`hermes_agent.status_report`; this module prints
it, times in the jobs' time zone (``cron.timezone``). Exit status 0 whether or
not the gateway runs (`hermes gateway status` is the one that exits 1 when it
does not); ``--json`` prints the same as one object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show whether the gateway is running and which chat platforms it has connected, the "
        "next scheduled job runs, and today's sessions and cost. Reads only; starts nothing."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=cmd_status)


def _ago(moment: float | None) -> str:
    if moment is None:
        return ""
    seconds = max(0, int(time.time() - moment))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def cmd_status(args: argparse.Namespace) -> int:
    from hermes_agent import status_report
    from hermes_agent.cli.common import load_config
    from hermes_agent.cron.schedule import job_zone, zone_name
    from hermes_agent.errors import EXIT_USAGE, ConfigError
    from hermes_agent.logfiles import clean
    from hermes_agent.redact import redact_data

    # A broken config.yaml must not hide whether the gateway runs: report with the
    # defaults, name the problem, and exit 2 as every command does for a broken file.
    broken: ConfigError | None = None
    try:
        config = load_config()
    except ConfigError as exc:
        from hermes_agent import home
        from hermes_agent.config import loader, schema
        from hermes_agent.config.merge import deep_merge

        broken = exc
        config = loader.Config(deep_merge(schema.DEFAULT_CONFIG, {}), {}, home.config_path())
        print(
            f"hermes: {str(exc).splitlines()[0]} (the status below uses the defaults; "
            "`hermes config check` lists every problem)",
            file=sys.stderr,
        )
    code = EXIT_USAGE if broken else 0
    report = status_report.collect(config)
    if args.json:
        # Redacted as data, then ASCII: a platform's error text (a server's) may hold a
        # C1 control (\x9b is CSI) or a bidi override, which json.dumps leaves raw.
        print(json.dumps(redact_data(report.to_json()), indent=2))
        return code
    zone = job_zone(config)
    out: list[str] = [f"hermes status: {report.home}"]
    gw = report.gateway
    if gw.running:
        up = f", up {_ago(gw.started_at)}" if gw.started_at else ""
        phase = f", {gw.phase}" if gw.phase and gw.phase != "running" else ""
        out.append(f"gateway: running (pid {gw.pid}{up}{phase})")
    else:
        out.append("gateway: not running (start it with `hermes gateway run` or `install`)")
    if gw.platforms_unknown:
        out.append("  platforms: unknown (this gateway writes no status; restart it)")
    for p in gw.platforms:
        since = f" for {_ago(p.since)}" if p.since else ""
        detail = f": {p.detail}" if p.detail else ""
        out.append(f"  {p.name:<12} {p.state}{since}{detail}")
    if not gw.platforms and not gw.platforms_unknown:
        out.append("  no chat platform is enabled")

    if not report.cron_enabled:
        out.append(f"cron: off (cron.enabled: false); {report.job_count} jobs kept")
    elif not report.job_count:
        out.append("cron: no scheduled jobs")
    else:
        note = "" if gw.running else " (they run only while the gateway runs)"
        out.append(f"cron: {report.job_count} jobs, next runs ({zone_name(zone)}){note}:")
        for job in report.jobs:
            when = (
                datetime.fromisoformat(job.next_run).astimezone(zone).strftime("%Y-%m-%d %H:%M")
                if job.next_run
                else "-"
            )
            last = f"  last: {job.last_status}" if job.last_status else ""
            out.append(f"  {when}  {job.id}  {job.name}{last}")
        if not report.jobs:
            out.append("  none upcoming (all paused or done)")
    for problem in report.job_problems:
        out.append(f"  broken job file: {problem}")

    t = report.today
    if t.problem:
        out.append(f"today: {t.problem}")
    else:
        sources = ", ".join(f"{n} {s}" for s, n in sorted(t.by_source.items()))
        basis = "" if t.cost_basis == "messages" else " (whole sessions active today)"
        out.append(
            f"today: {t.sessions_active} sessions active ({t.sessions_started} new), "
            f"{t.messages} messages, ${t.cost_usd:.4f}{basis}"
            + (f"; by source: {sources}" if sources else "")
        )
    # Redacted, and control characters shown as \xNN: a platform's error text comes
    # from a server hermes does not control.
    sys.stdout.write(clean("\n".join(out)) + "\n")
    return code
