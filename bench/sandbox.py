"""What kernel confinement adds to one terminal command: paired against the same command unconfined.

Why it exists: every command the agent runs is confined by Landlock (or bubblewrap)
(src/hermes_agent/safety/sandbox.py). The target is that this costs no more than
:data:`TARGET_MS` per command. In one invocation, on a fresh HOME and HERMES_HOME
with secrets to hide, this script runs the same command (``true`` through
``bash -c``, as the terminal tool does) many times, alternating:

- ``unconfined``: launched exactly as the terminal tool launches it with
  ``sandbox.mode: off`` (same environment, same process group handling);
- ``landlock``: launched with ``sandbox.mode: enforce`` (the ruleset is cached, as
  in a session; its checks for changed directories are included);
- ``bubblewrap``: the same with ``sandbox.backend: bubblewrap``, when bwrap works here.

Each pair is measured back to back, and the figure is the median of the
per-pair differences, so the machine's drift cancels out. Also reported: the
cold build of the ruleset (the first command of a process), the number of
rules it holds, and ``aftercare_ms``: the look hermes takes after each command
for what the kernel cannot hold (safety/aftercare.py), which the terminal tool
adds once per command.

Usage: ``.venv/bin/python bench/sandbox.py [--runs N] [--json PATH] [--check]``
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
from pathlib import Path
from typing import Any

#: The most a confined command may cost over the same command unconfined (median, ms).
TARGET_MS = 5.0


def _setup(root: Path) -> Path:
    home = root / "home"
    hermes = home / ".hermes"
    (hermes / "mcp-tokens").mkdir(parents=True)
    (hermes / ".env").write_text("OPENROUTER_API_KEY=bench-secret-value-123456\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("key\n")
    workspace = root / "ws"
    workspace.mkdir()
    os.environ["HOME"] = str(home)
    os.environ["HERMES_HOME"] = str(hermes)
    return workspace


class _Ctx:
    def __init__(self, config: dict[str, Any], cwd: str) -> None:
        self.config = config
        self.cwd = cwd
        self.state: dict[str, Any] = {}


async def _once(ctx: _Ctx) -> float:
    from hermes_agent.tools import terminal

    start = time.perf_counter()
    launch = terminal.plan("true", ctx)  # type: ignore[arg-type]
    result = await terminal.run(launch, 30, 10_000)
    elapsed = (time.perf_counter() - start) * 1000
    if result.exit_code != 0:
        raise SystemExit(f"the command failed ({result.exit_code}): {result.output}")
    return elapsed


async def _paired(base: _Ctx, other: _Ctx, runs: int) -> dict[str, float]:
    for _ in range(5):  # Warm both paths (imports, the cached ruleset).
        await _once(base)
        await _once(other)
    diffs: list[float] = []
    bases: list[float] = []
    others: list[float] = []
    for i in range(runs):
        if i % 2:
            b = await _once(base)
            o = await _once(other)
        else:
            o = await _once(other)
            b = await _once(base)
        bases.append(b)
        others.append(o)
        diffs.append(o - b)
    return {
        "unconfined_median_ms": round(statistics.median(bases), 3),
        "confined_median_ms": round(statistics.median(others), 3),
        "added_median_ms": round(statistics.median(diffs), 3),
        "ratio": round(statistics.median(others) / statistics.median(bases), 3),
    }


def _aftercare_ms(workspace: str, runs: int = 100) -> float:
    """The look hermes takes after each command (git hooks of the workspace's repository,
    the modes of HERMES_HOME, credentials and its code): median ms."""
    import subprocess

    from hermes_agent.tools import terminal

    subprocess.run(["git", "init", "-q", workspace], check=False)
    ctx = _Ctx({}, workspace)
    terminal.aftercare(ctx)  # type: ignore[arg-type]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        terminal.aftercare(ctx)  # type: ignore[arg-type]
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--check", action="store_true", help=f"fail above {TARGET_MS} ms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = str(_setup(Path(tmp)))
        from hermes_agent.safety import sandbox

        off = _Ctx({"sandbox.mode": "off"}, workspace)
        landlock = _Ctx({"sandbox.mode": "enforce", "sandbox.backend": "landlock"}, workspace)
        results: dict[str, Any] = {
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.release()}",
            "python": platform.python_version(),
            "runs": args.runs,
            "target_added_ms": TARGET_MS,
        }
        ok = True
        if sandbox.landlock_abi() >= 1:
            start = time.perf_counter()
            built = sandbox.confine(landlock.config, workspace, landlock.state)
            results["landlock_cold_build_ms"] = round((time.perf_counter() - start) * 1000, 3)
            results["landlock_rules"] = built.rules if built else 0
            results["landlock"] = asyncio.run(_paired(off, landlock, args.runs))
            ok = ok and results["landlock"]["added_median_ms"] <= TARGET_MS
        else:
            results["landlock"] = "no Landlock in this kernel"
        if sandbox.bubblewrap():
            bwrap = _Ctx({"sandbox.mode": "enforce", "sandbox.backend": "bubblewrap"}, workspace)
            results["bubblewrap"] = asyncio.run(_paired(off, bwrap, max(20, args.runs // 4)))
        else:
            results["bubblewrap"] = "bwrap is not installed or cannot make namespaces here"
        results["aftercare_ms"] = _aftercare_ms(workspace)
        for ctx in (off, landlock):
            sandbox.cleanup(ctx.state)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.check and not ok:
        print(f"bench/sandbox.py: confinement adds more than {TARGET_MS} ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
