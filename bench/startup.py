"""Start-up benchmark for the ``hermes`` CLI.

Why it exists: ``hermes version`` and ``hermes --help`` must stay fast and small, so heavy
imports (provider SDKs, platform libraries) must not leak into the base CLI path. This script
measures wall time and each child's own peak RSS for a few cheap commands against a bare
``python -c pass`` baseline, interleaved round-robin in one invocation so that all commands share
the same machine noise, and checks the targets from the issue (``--check`` exits 1 on a miss).

Usage: ``.venv/bin/python bench/startup.py [--runs N] [--json PATH] [--check]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from subprocess import DEVNULL, PIPE

WARMUP_ROUNDS = 3
# ru_maxrss is KiB on Linux, bytes on macOS.
RSS_TO_MIB = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
BASELINE = "python -c pass"
# Children are spawned by this tiny helper, not by this script: on exec, Linux folds the peak
# RSS of the spawning process's memory into the child's ru_maxrss, so a child of this (larger)
# process would report at least our own peak. The helper's peak is the floor; it is reported.
SPAWNER = """
import os, sys, time
null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY if fd else os.O_RDONLY, 0)
        for fd in (0, 1, 2)]
for line in iter(sys.stdin.readline, ""):
    argv = line.rstrip("\\n").split("\\t")
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=null)
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter() - start) * 1000
    print(wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status), flush=True)
try:  # VmHWM is this process's own peak; ru_maxrss would include our parent's peak.
    peak = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
except OSError:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak, flush=True)
"""


class Spawner:
    """Runs commands one at a time in the helper; returns each child's own rusage."""

    def __init__(self, env: dict[str, str]) -> None:
        argv = [sys.executable, "-I", "-S", "-c", SPAWNER]
        self.proc = subprocess.Popen(argv, env=env, stdin=PIPE, stdout=PIPE, text=True)

    def run(self, argv: list[str]) -> tuple[float, float, int]:
        """Run argv once; return (wall ms, peak RSS MiB of this child only, exit status)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("\t".join(argv) + "\n")
        self.proc.stdin.flush()
        wall, rss, code = self.proc.stdout.readline().split()
        return float(wall), int(rss) * RSS_TO_MIB, int(code)

    def close(self) -> float:
        """Stop the helper; return its own peak RSS in MiB (the floor of every measurement)."""
        out, _ = self.proc.communicate()
        return int(out.split()[-1]) * RSS_TO_MIB


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def check_targets(label: str, med: float, ratio: float, rss_max: float) -> list[str]:
    """Return the list of missed targets for one command (empty means ok)."""
    misses: list[str] = []
    if label == "hermes version":
        misses += [f"median {med:.1f} > 40 ms"] if med > 40 else []
        misses += [f"ratio {ratio:.2f}x > 5x"] if ratio > 5 else []
    if label == "hermes --help":
        misses += [f"median {med:.1f} > 60 ms"] if med > 60 else []
    if label in ("hermes version", "hermes --help") and rss_max > 25:
        misses.append(f"max RSS {rss_max:.1f} > 25 MiB")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="measured runs per command")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    hermes = Path(sys.executable).parent / "hermes"
    if not hermes.is_file():
        print(f"error: hermes console script not found at {hermes}", file=sys.stderr)
        return 2
    # Measure what an installed copy does: start from bytecode. A checkout run with
    # PYTHONDONTWRITEBYTECODE=1 (as on CI) would otherwise recompile hermes on every start.
    import compileall

    import hermes_agent

    compileall.compile_dir(str(Path(hermes_agent.__file__).parent), quiet=1)
    commands: dict[str, list[str]] = {
        BASELINE: [sys.executable, "-c", "pass"],
        "hermes version": [str(hermes), "version"],
        "hermes --help": [str(hermes), "--help"],
        "hermes config show": [str(hermes), "config", "show"],
    }
    home = tempfile.mkdtemp(prefix="hermes-bench-")
    env = {k: v for k, v in os.environ.items() if k != "HERMES_MANAGED"}
    env["HERMES_HOME"] = home
    walls: dict[str, list[float]] = {label: [] for label in commands}
    rss: dict[str, list[float]] = {label: [] for label in commands}
    spawner = Spawner(env)
    try:
        for rnd in range(WARMUP_ROUNDS + args.runs):
            for label, argv in commands.items():
                wall, peak, code = spawner.run(argv)
                if code != 0:
                    err = subprocess.run(
                        argv, env=env, stdin=DEVNULL, capture_output=True, text=True
                    ).stderr
                    print(f"error: `{label}` exited {code}; stderr:\n{err}", file=sys.stderr)
                    return 2
                if rnd >= WARMUP_ROUNDS:
                    walls[label].append(wall)
                    rss[label].append(peak)
    finally:
        floor = spawner.close()
        shutil.rmtree(home, ignore_errors=True)

    machine = {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "runs": args.runs,
        "rss_floor_mib": floor,
    }
    print(
        f"python {machine['python']}  nproc {machine['nproc']}  {machine['date']}  "
        f"{machine['platform']}  runs={args.runs} (+{WARMUP_ROUNDS} warm-up)  "
        f"spawner peak (RSS floor) {floor:.1f} MiB"
    )
    header = f"{'command':<20} {'median ms':>10} {'p90 ms':>8} {'ratio':>7} "
    print(header + f"{'RSS med MiB':>12} {'RSS max MiB':>12}  target")
    base_med = statistics.median(walls[BASELINE])
    results: dict[str, dict[str, object]] = {}
    missed = False
    for label in commands:
        med, ratio = statistics.median(walls[label]), statistics.median(walls[label]) / base_med
        rss_med, rss_max = statistics.median(rss[label]), max(rss[label])
        misses = check_targets(label, med, ratio, rss_max)
        has_target = label in ("hermes version", "hermes --help")
        target = ("MISS: " + "; ".join(misses) if misses else "ok") if has_target else "-"
        missed = missed or bool(misses)
        print(
            f"{label:<20} {med:>10.1f} {p90(walls[label]):>8.1f} {ratio:>6.2f}x "
            f"{rss_med:>12.1f} {rss_max:>12.1f}  {target}"
        )
        results[label] = {
            "median_ms": med,
            "p90_ms": p90(walls[label]),
            "ratio": ratio,
            "rss_median_mib": rss_med,
            "rss_max_mib": rss_max,
            "target": target,
            "wall_ms": walls[label],
            "rss_mib": rss[label],
        }
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
