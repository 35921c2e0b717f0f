"""`hermes sandbox status`: what confines the agent's commands here, checked for real.

It prints the backend (or why there is none), the policy (what is writable,
what is hidden, what stays read-only) and then *proves* it: a probe started
exactly as the terminal tool starts a command tries to read hermes' secrets,
write ``HERMES_HOME`` and hermes' code, and write its temp directory, and the
answers are shown. Exit status 1 when ``sandbox.mode`` is ``enforce`` and the
sandbox is missing or a probe got through.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hermes_agent.cli.common import load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=cmd_status)
    sub = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", title="actions")
    status = sub.add_parser(
        "status", help="the backend, the policy, and a live check of both (default)"
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=cmd_status)


def _probe(config: Any, workspace: str) -> dict[str, str]:
    """Run the probe as the terminal tool would run a command (shared with `hermes doctor`)."""
    from hermes_agent.diagnose import sandbox_probe

    return sandbox_probe(config, workspace)


def cmd_status(args: argparse.Namespace) -> int:
    from hermes_agent.agent.factory import workspace
    from hermes_agent.errors import HermesError
    from hermes_agent.safety import sandbox

    config = load_config()
    mode = sandbox.mode_of(config)
    backend = str(config.get("sandbox.backend") or "auto")
    found = sandbox.support(backend)
    try:
        ws = str(workspace(config))
    except HermesError:
        import os

        ws = os.getcwd()
    report: dict[str, Any] = {
        "mode": mode,
        "backend": found.backend,
        "detail": found.detail,
        "summary": sandbox.describe(config),
        "workspace": ws,
        "network": bool(config.get("sandbox.network", True)),
        "container": sandbox.in_container(),
    }
    ok = True
    if mode == "enforce" and found.backend is not None:
        import tempfile

        session_tmp = f"{tempfile.gettempdir()}/hermes-tmp-XXXX"
        policy = sandbox.policy_for(config, ws, session_tmp)
        report["writable"] = [
            "$TMPDIR (" + session_tmp + ", one per session)" if p == session_tmp else p
            for p in policy.writable
        ]
        report["hidden"] = list(policy.hidden)
        report["read_only_even_inside_writable"] = sorted(set(policy.protected))
        report["checks"] = _probe(config, ws)
        expected = {"write temp dir": "allowed"}
        for name, outcome in report["checks"].items():
            want = expected.get(name, "denied")
            if outcome not in (want, "missing"):
                ok = False
    elif mode == "enforce":
        ok = False
    report["ok"] = ok
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
        return 0 if ok else 1
    print(report["summary"])
    print(f"  mode: {mode}   backend: {found.backend or 'none'} ({found.detail})")
    print(f"  workspace: {ws}")
    if "writable" in report:
        print("  writable: " + ", ".join(report["writable"]))
        print(f"  hidden (unreadable): {len(report['hidden'])} paths, e.g.")
        for path in report["hidden"][:6]:
            print(f"    {path}")
        print("  live check (a probe started like the terminal tool's commands):")
        for name, outcome in report["checks"].items():
            print(f"    {name:<28} {outcome}")
    if not ok:
        if found.backend is None and mode == "enforce":
            print(
                "hermes: no kernel sandbox here; every command that is not read-only asks "
                "first (see the README's Safety model)",
                file=sys.stderr,
            )
        else:
            print("hermes: the sandbox did not hold; see the checks above", file=sys.stderr)
        return 1
    return 0
