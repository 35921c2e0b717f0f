"""Time to take a checkpoint of a 10,000-file workspace, first and incremental.

Why it exists: the agent takes a checkpoint before its first change in every
turn (:mod:`hermes_agent.checkpoints`), so the incremental case is paid on
almost every turn that changes something, and the first one when a session
starts in a new workspace. Hermes reads and hashes the files itself (through
O_NOFOLLOW directory descriptors, with a stat cache) instead of ``git add``,
for safety; this measures what that costs against plain git in the same run.

Workspace: 100 directories of 100 files (1-3 KB of text each, 20 MB in all),
a .gitignore, and an ignored build/ directory of 500 more files.

Measured, each round on a fresh copy and a fresh HERMES_HOME, rounds interleaved:

- ``first``: the first checkpoint (empty shadow repository);
- ``unchanged``: the next one with nothing changed (found equal, no new commit);
- ``changed10``: after 10 files are modified (a typical turn);
- ``restore10``: putting those 10 files back (a safety checkpoint first, then writing);
- baselines: ``git init && git add -A && git commit`` in a plain repository (first),
  ``git add -A && git commit`` after the same 10 changes (incremental), and ``cp -r``
  of the workspace.

Usage: ``.venv/bin/python bench/checkpoints.py [--rounds N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIRS = 100
PER_DIR = 100
IGNORED = 500


def make_workspace(path: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(500)]
    path.mkdir()
    (path / ".gitignore").write_text("build/\n*.o\n")
    for d in range(DIRS):
        sub = path / f"pkg{d:03d}"
        sub.mkdir()
        for f in range(PER_DIR):
            size = rng.randint(1000, 3000)
            text = " ".join(rng.choice(words) for _ in range(size // 6))
            (sub / f"mod{f:03d}.py").write_text(text[:size] + "\n")
    build = path / "build"
    build.mkdir()
    for i in range(IGNORED):
        (build / f"out{i}.o").write_bytes(os.urandom(512))


def change_ten(path: Path, tag: str) -> None:
    for d in range(10):
        target = path / f"pkg{d * 7:03d}" / f"mod{d * 3:03d}.py"
        target.write_text(target.read_text() + f"# changed {tag}\n")


def git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def one_round(base: Path, template: Path, round_no: int) -> dict[str, float]:
    from hermes_agent.checkpoints import Store

    out: dict[str, float] = {}
    ws = base / f"ws{round_no}"
    shutil.copytree(template, ws, symlinks=True)
    os.environ["HERMES_HOME"] = str(base / f"home{round_no}")
    store = Store(ws)
    out["first_ms"] = timed(lambda: store.snapshot("first"))
    out["unchanged_ms"] = timed(lambda: store.snapshot("unchanged"))
    change_ten(ws, "a")
    out["changed10_ms"] = timed(lambda: store.snapshot("changed"))
    target = store.listing()[1]
    out["restore10_ms"] = timed(lambda: store.restore(target))

    plain = base / f"plain{round_no}"
    shutil.copytree(template, plain, symlinks=True)
    env = git_env(base)

    def git_first() -> None:
        subprocess.run(["git", "init", "-q"], cwd=plain, env=env, check=True)
        subprocess.run(["git", "add", "-A"], cwd=plain, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "first"], cwd=plain, env=env, check=True)

    def git_incremental() -> None:
        subprocess.run(["git", "add", "-A"], cwd=plain, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "next"], cwd=plain, env=env, check=True)

    out["git_first_ms"] = timed(git_first)
    change_ten(plain, "a")
    out["git_changed10_ms"] = timed(git_incremental)
    out["cp_r_ms"] = timed(
        lambda: subprocess.run(["cp", "-r", str(template), str(base / f"cp{round_no}")], check=True)
    )
    for path in (ws, plain, base / f"cp{round_no}", base / f"home{round_no}"):
        shutil.rmtree(path, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        base = Path(tmp)
        template = base / "template"
        make_workspace(template)
        rounds = [one_round(base, template, i) for i in range(args.rounds)]
    keys = rounds[0].keys()
    median = {k: round(statistics.median(r[k] for r in rounds), 1) for k in keys}
    ratios = {
        "first_vs_git": round(median["first_ms"] / median["git_first_ms"], 2),
        "first_vs_cp_r": round(median["first_ms"] / median["cp_r_ms"], 2),
        "changed10_vs_git": round(median["changed10_ms"] / median["git_changed10_ms"], 2),
    }
    for key, value in median.items():
        print(f"{key:>20}: {value:8.1f} ms")
    for key, value in ratios.items():
        print(f"{key:>20}: {value:8.2f}x")
    if args.json:
        record: dict[str, Any] = {
            "benchmark": "checkpoints",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "nproc": os.cpu_count(),
            "git": subprocess.run(
                ["git", "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "files": DIRS * PER_DIR,
            "ignored_files": IGNORED,
            "rounds": args.rounds,
            **median,
            **ratios,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
