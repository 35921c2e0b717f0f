"""What the HERMES_HOME lock costs `hermes config set`, alone and with ten writers at once.

Why it exists: every read-modify-write of a HERMES_HOME file holds one lock
(src/hermes_agent/home_lock.py), so that ten `hermes config set` started together lose no
key. The price is waiting: under contention a writer waits for the others' critical
sections. This script measures, in one invocation on one fresh HERMES_HOME:

- ``one writer``: the wall time of each `hermes config set` run one after another;
- ``ten writers``: the wall time of each `hermes config set` when ten processes run their
  sets at the same time (each starts its next set when its previous one ends);
- ``ten readers``: the same load with `hermes config get` (no lock, no write), so the part
  of the slowdown that is only ten Python processes sharing the CPU can be told apart
  from the part the lock adds;
- the lock alone, taken and released in this process (microseconds).

Ratios are against ``one writer`` of the same run. It also checks that no key was lost.
``--check`` fails when a key is lost or when ten writers take more than
:data:`MAX_WRITER_VS_READER` times as long per command as ten readers do.

Usage: ``.venv/bin/python bench/config_lock.py [--runs N] [--json PATH] [--check]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HERMES = Path(sys.executable).with_name("hermes")
WRITERS = 10
#: Ten writers may cost at most this many times the per-command time of ten readers.
MAX_WRITER_VS_READER = 2.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    env["HERMES_HOME"] = str(home)
    return env


def _run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [str(HERMES), *argv], env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    wall = (time.perf_counter() - start) * 1000
    if result.returncode != 0:
        raise SystemExit(f"hermes {' '.join(argv)} failed: {result.stderr.decode()}")
    return wall


def _parallel(commands: list[list[list[str]]], env: dict[str, str]) -> list[float]:
    """Run each list of commands in its own thread (one process at a time per thread)."""
    walls: list[float] = []
    guard = threading.Lock()

    def worker(argvs: list[list[str]]) -> None:
        for argv in argvs:
            wall = _run(argv, env)
            with guard:
                walls.append(wall)

    threads = [threading.Thread(target=worker, args=(argvs,)) for argvs in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return walls


def _summary(walls: list[float], base: float) -> dict[str, object]:
    ordered = sorted(walls)
    median = statistics.median(ordered)
    return {
        "runs": len(ordered),
        "median_ms": median,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
        "max_ms": ordered[-1],
        "ratio_to_one_writer": median / base if base else None,
    }


def _lock_alone_us(home: Path, rounds: int = 2000) -> float:
    os.environ["HERMES_HOME"] = str(home)
    from hermes_agent.home_lock import home_lock

    with home_lock("warm-up"):
        pass
    start = time.perf_counter()
    for _ in range(rounds):
        with home_lock("bench"):
            pass
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="sets per writer (default 5)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hermes-bench-lock-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = _env(home)
        _run(["config", "set", "max_turns", "5"], env)  # Warm-up (and the file exists).
        expected: dict[str, int] = {}

        def set_argv(group: str, writer: int, i: int) -> list[str]:
            key = f"bench.{group}{writer}.k{i}"
            expected[key] = i
            return ["config", "set", "--force", key, str(i)]

        total = WRITERS * args.runs
        one = [_run(set_argv("solo", 0, i), env) for i in range(total)]
        base = statistics.median(one)
        began = time.perf_counter()
        ten = _parallel(
            [[set_argv("w", w, i) for i in range(args.runs)] for w in range(WRITERS)], env
        )
        ten_elapsed = time.perf_counter() - began
        began = time.perf_counter()
        readers = _parallel(
            [[["config", "get", "max_turns"] for _ in range(args.runs)] for _ in range(WRITERS)],
            env,
        )
        readers_elapsed = time.perf_counter() - began
        lock_us = _lock_alone_us(home)

        data = yaml.safe_load((home / "config.yaml").read_text())
        found = {
            f"bench.{group}.{k}": v
            for group, keys in data["bench"].items()
            for k, v in keys.items()
        }
        lost = sorted(set(expected) - set(found))

    results = {
        "one writer": _summary(one, base),
        "ten writers": {**_summary(ten, base), "elapsed_s": ten_elapsed},
        "ten readers (config get, no lock)": {
            **_summary(readers, base),
            "elapsed_s": readers_elapsed,
        },
    }
    writer_vs_reader = statistics.median(ten) / statistics.median(readers)
    report = {
        "machine": {
            "python": platform.python_version(),
            "nproc": os.cpu_count(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "sets_per_writer": args.runs,
        },
        "results": results,
        "ten_writers_vs_ten_readers": writer_vs_reader,
        "lock_alone_us": lock_us,
        "keys_written": len(expected),
        "keys_lost": len(lost),
    }
    for name, row in results.items():
        print(
            f"{name:<36} median {row['median_ms']:7.1f} ms  p90 {row['p90_ms']:7.1f} ms  "
            f"x{row['ratio_to_one_writer']:.2f} of one writer"
        )
    print(f"ten writers vs ten readers: x{writer_vs_reader:.2f} per command (lock + write)")
    print(f"lock taken and released alone: {lock_us:.1f} us")
    print(f"keys written {len(expected)}, lost {len(lost)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.check and (lost or writer_vs_reader > MAX_WRITER_VS_READER):
        print("target missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
