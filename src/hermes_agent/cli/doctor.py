"""`hermes doctor`: one screen of checks, each with its status and what to do.

The checks live in :mod:`hermes_agent.diagnose`; this module runs them and
prints. Exit status: 0 when nothing failed (warnings and skipped checks
included), 1 when at least one check failed, so a script or a NixOS
health check can act on it. ``--json`` prints the same findings as one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check the installation: config.yaml, .env and its permissions, provider keys (by "
        "name), provider reachability, tools, the sandbox, MCP servers, chat platforms' "
        "credentials, state.db, disk space and managed mode. Exit status 1 when a check "
        "fails; warnings alone exit 0."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--offline",
        "--no-network",
        dest="offline",
        action="store_true",
        help="skip the checks that use the network (provider and MCP reachability)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long each network check may take (default 5)",
    )
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="do not start the sandbox's live probe (a confined child process)",
    )
    parser.set_defaults(handler=cmd_doctor)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError("the timeout must be between 0 and 120 seconds")
    return value


_LABEL = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


class _Cleaned:
    """Writes each line through ``clean`` (the newline itself is kept)."""

    def __init__(self, stream: Any, clean: Callable[[str], str]) -> None:
        self.stream = stream
        self.clean = clean

    def write(self, text: str) -> None:
        body = text[:-1] if text.endswith("\n") else text
        self.stream.write(self.clean(body) + text[len(body) :])


def cmd_doctor(args: argparse.Namespace) -> int:
    from hermes_agent import diagnose
    from hermes_agent.logfiles import clean

    report = diagnose.run(network=not args.offline, timeout=args.timeout, probe=not args.no_probe)
    if args.json:
        # ASCII: a C1 control (\x9b is CSI) or a bidi override a server wrote into a
        # finding stays an escape in the JSON instead of reaching the terminal raw.
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.ok else 1
    # Findings can quote what a server said (an MCP server's exit reason): redacted
    # already, and control characters are shown as \xNN, never sent to the terminal.
    out = _Cleaned(sys.stdout, clean)
    out.write(f"hermes doctor: {report.home}\n")
    width = max(len(f.name) for f in report.findings)
    for finding in report.findings:
        out.write(f"  {_LABEL[finding.status]}  {finding.name:<{width}}  {finding.summary}\n")
        pad = " " * (width + 10)
        for detail in finding.details:
            out.write(f"{pad}- {detail}\n")
        if finding.status in ("warn", "fail") and finding.fix:
            out.write(f"{pad}fix: {finding.fix}\n")
    counts = report.to_json()["counts"]
    parts = [f"{counts['fail']} failed", f"{counts['warn']} warning{'s' * (counts['warn'] != 1)}"]
    if counts["skip"]:
        parts.append(f"{counts['skip']} skipped")
    verdict = "something needs fixing" if not report.ok else "nothing failed"
    out.write(f"{', '.join(parts)} ({report.seconds:.1f} s): {verdict}\n")
    return 0 if report.ok else 1
