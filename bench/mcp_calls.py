"""What MCP costs the agent: the first prompt's wait, and each tool call's overhead.

(Not ``bench/mcp.py``: a module named ``mcp`` in ``bench/`` shadows the SDK when run
as a script, and makes ruff sort ``import mcp`` as first-party everywhere.)

Why it exists: the pains users report with MCP clients include a first turn held up
by the slowest server and slow tool calls. Two measures, in one invocation:

- ``first prompt``: ten stdio servers configured (nine ``mcp-server-everything`` and
  one that never answers ``initialize``), the time the first turn waits before the
  model is called (:meth:`Scope.prepare`), from a cold start of the servers. Target:
  no more than ``mcp.connect_wait`` (3 s by default) plus 10 %, whatever the slowest
  server does; also how many servers were ready by then.
- ``per call``: the ``echo`` tool of ``mcp-server-everything`` (stdio) called N times
  through hermes (the tool handler the agent runs: approval gate with its audit line,
  pin check, the manager's loop, rendering and untrusted marking) and N times with
  the bare SDK (``mcp.Client.call_tool`` on its own connection to a second server of
  the same kind), interleaved in the same run (in an order that turns every call).
  hermes' home has two keys in ``.env``, as an install does, so the calls are checked
  against real secrets. Target: hermes' median within 10 % of the SDK's, through the
  handler and through dispatch. ``hermes_connection_only`` is the
  same call without the agent-side work (approval gate and its audit line, pin check,
  rendering): hermes' transport alone. ``hermes_dispatch`` (``dispatch_ratio``) is the
  call as the agent loop makes it, through ``tools.registry.dispatch``: argument
  validation, the handler, the result's redaction and the turn's untrusted record.

The per-call measure runs in ``--rounds`` rounds (5), each with servers of its own, and
reports the median of the rounds (each round's ratios are listed too). ``--check``
fails when the first-prompt wait, the handler's ratio or the ratio through dispatch
misses its target.

Usage: ``.venv/bin/python bench/mcp_calls.py [--calls N] [--rounds N] [--json PATH] [--check]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = ROOT / "tests" / "peers" / "node_modules" / ".bin" / "mcp-server-everything"
MAX_WAIT_FACTOR = 1.10
MAX_CALL_OVERHEAD = 1.10


def _config(home: Path, workspace: Path, servers: dict[str, Any], wait: float) -> Any:
    home.mkdir(parents=True, exist_ok=True)
    workspace.mkdir(parents=True, exist_ok=True)
    data = {
        "mcp_servers": servers,
        "mcp": {"connect_wait": wait},
        "terminal": {"cwd": str(workspace)},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(data))
    from hermes_agent.config.loader import load_config

    return load_config()


def first_prompt(root: Path, wait: float) -> dict[str, Any]:
    from hermes_agent.mcp.manager import get_manager

    servers: dict[str, Any] = {
        f"ev{i}": {"command": str(EVERYTHING), "args": ["stdio"]} for i in range(9)
    }
    # Never answers initialize: reads stdin forever.
    servers["stuck"] = {"command": "/bin/cat", "connect_timeout": 60}
    os.environ["HERMES_HOME"] = str(root / "home-first")
    config = _config(root / "home-first", root / "ws", servers, wait)
    started = time.monotonic()
    scope = get_manager().global_scope(config, root / "ws")
    asyncio.run(scope.prepare())
    waited = time.monotonic() - started
    ready = sum(1 for s in scope.statuses() if s.state == "ready")
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and sum(1 for s in scope.statuses() if s.state == "ready") < len(servers) - 1
    ):
        time.sleep(0.05)
    all_ready = time.monotonic() - started
    get_manager().shutdown()
    return {
        "servers": len(servers),
        "connect_wait_s": wait,
        "first_turn_wait_s": round(waited, 3),
        "ready_by_then": ready,
        "nine_ready_after_s": round(all_ready, 3),
        "target_s": round(wait * MAX_WAIT_FACTOR, 3),
    }


async def _per_call(root: Path, calls: int) -> dict[str, Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from hermes_agent.mcp import config as mcp_config
    from hermes_agent.mcp.manager import READY, get_manager
    from hermes_agent.providers.base import ToolCall
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools.registry import ToolContext, dispatch

    os.environ["HERMES_HOME"] = str(root / "home-calls")
    config = _config(
        root / "home-calls",
        root / "ws",
        {"ev": {"command": str(EVERYTHING), "args": ["stdio"], "approval": "auto"}},
        60,
    )
    # A home as people have one, with keys in .env: every call is then checked against
    # them (arguments never carry one to a server, results and audit lines are redacted of
    # them), the work an install without secrets would skip.
    env_file = root / "home-calls" / ".env"
    env_file.write_text(
        "OPENROUTER_API_KEY=sk-or-v1-bench0123456789abcdefghijklmnopqrstuvwxyz\n"
        "TELEGRAM_BOT_TOKEN=123456789:AAbench-0123456789abcdefghijklmnopq\n"
    )
    env_file.chmod(0o600)
    scope = get_manager().open_scope(
        mcp_config.parse_servers(config.get("mcp_servers")),
        config=config,
        cwd=root / "ws",
        include_global=False,
    )
    await scope.prepare()
    while scope.connections[0].state != READY:
        await asyncio.sleep(0.05)
    tools = {t.name: t for t in scope.tools()}
    handler = tools["mcp__ev__echo"].handler
    ctx = ToolContext("bench", str(root / "ws"), config, StateDB())
    params = StdioServerParameters(command=str(EVERYTHING), args=["stdio"])
    connection = scope.connections[0]
    times: dict[str, list[float]] = {"sdk": [], "hermes": [], "connection": [], "dispatch": []}
    async with Client(params, mode="legacy") as client:

        def measures(i: int) -> dict[str, Callable[[], Awaitable[Any]]]:
            arguments = {"message": f"m{i}"}
            call = ToolCall(f"call-{i}", "mcp__ev__echo", json.dumps(arguments))
            return {
                "sdk": lambda: client.call_tool("echo", arguments),
                "hermes": lambda: handler(arguments, ctx),
                # The connection alone (hermes' transport and timeout watch, no gate,
                # pins or render).
                "connection": lambda: connection.call_tool("echo", arguments),
                # As the agent loop makes it: argument validation, the handler, the
                # result's redaction and the turn's untrusted record.
                "dispatch": lambda: dispatch(call, tools, ctx),
            }

        for i in range(20):  # Warm every path.
            for run in measures(i).values():
                await run()
        for i in range(calls):
            # The order turns every call: a call right after the bare SDK's runs while
            # that server's process is still busy after answering (two cores), which
            # cost whichever measure came next ~40-70 us.
            steps = list(measures(i).items())
            shift = i % len(steps)
            for name, run in steps[shift:] + steps[:shift]:
                started = time.perf_counter()
                await run()
                times[name].append((time.perf_counter() - started) * 1000)
    await scope.aclose()
    sdk, ours = statistics.median(times["sdk"]), statistics.median(times["hermes"])
    through = statistics.median(times["dispatch"])
    return {
        "calls": calls,
        "sdk_median_ms": round(sdk, 3),
        "hermes_median_ms": round(ours, 3),
        "hermes_connection_only_median_ms": round(statistics.median(times["connection"]), 3),
        "hermes_dispatch_median_ms": round(through, 3),
        "sdk_p90_ms": round(statistics.quantiles(times["sdk"], n=10)[-1], 3),
        "hermes_p90_ms": round(statistics.quantiles(times["hermes"], n=10)[-1], 3),
        "ratio": round(ours / sdk, 3),
        "dispatch_ratio": round(through / sdk, 3),
        "target_ratio": MAX_CALL_OVERHEAD,
    }


def _rounds(root: Path, calls: int, rounds: int) -> dict[str, Any]:
    """:func:`_per_call` ``rounds`` times, each with servers (and a home) of its own.

    Why rounds: on a shared machine one run's ratio drifts by several percent with
    where the two servers' processes happen to be scheduled, which more calls against
    the same two processes do not even out. Each figure reported is the median over
    the rounds; every round's ratios are listed beside them.
    """
    from hermes_agent.mcp.manager import get_manager

    results = []
    for n in range(rounds):
        results.append(asyncio.run(_per_call(root / f"round-{n}", calls)))
        get_manager().shutdown()
    summary: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in results), 3)
        for key in results[0]
        if key not in ("calls", "target_ratio")
    }
    summary["calls"] = calls
    summary["rounds"] = [
        {key: r[key] for key in ("sdk_median_ms", "ratio", "dispatch_ratio")} for r in results
    ]
    summary["target_ratio"] = MAX_CALL_OVERHEAD
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each kind per round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="per-call rounds, each with servers of its own; the medians are reported",
    )
    parser.add_argument("--wait", type=float, default=3.0, help="mcp.connect_wait")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--check", action="store_true", help="fail when a target is missed")
    args = parser.parse_args()
    if not EVERYTHING.exists():
        print(f"missing {EVERYTHING}: run tests/peers/install.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hermes-bench-mcp-") as tmp:
        root = Path(tmp)
        calls = _rounds(root, args.calls, max(1, args.rounds))
        first = first_prompt(root, args.wait)
    report = {
        "machine": {
            "python": platform.python_version(),
            "nproc": os.cpu_count(),
            "load": os.getloadavg()[0],
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
        },
        "results": {"first prompt": first, "per call": calls},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    failed = []
    if first["first_turn_wait_s"] > first["target_s"]:
        failed.append(f"first turn waited {first['first_turn_wait_s']} s > {first['target_s']}")
    if calls["ratio"] > MAX_CALL_OVERHEAD:
        failed.append(f"per-call ratio {calls['ratio']} > {MAX_CALL_OVERHEAD}")
    if calls["dispatch_ratio"] > MAX_CALL_OVERHEAD:
        failed.append(
            f"per-call ratio through dispatch {calls['dispatch_ratio']} > {MAX_CALL_OVERHEAD}"
        )
    for line in failed:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
