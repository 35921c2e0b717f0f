"""Wall time of ``hermes doctor``, with and without its network checks.

Why it exists: the doctor is what people run when something is wrong, often
on a slow or broken network; it must answer in about a second, and a
provider that never answers must cost at most its timeout, not the sum of
every check's. This script times, interleaved round-robin in one run so all
share the machine's noise:

- ``hermes version`` (the baseline: the CLI's own start-up);
- ``hermes doctor --offline --no-probe`` (local checks only);
- ``hermes doctor --offline`` (plus the sandbox's live probe, a confined child);
- ``hermes doctor`` (plus a provider and a fallback on 127.0.0.1 answering GET /models);
- ``hermes doctor --timeout 1`` with a fallback that accepts and never answers.

The providers are a real HTTP server in this process on 127.0.0.1. Results go
to ``bench/results/doctor.json`` with ``--json``; ``--check`` exits 1 when a
target is missed.

Usage: ``.venv/bin/python bench/doctor.py [--runs N] [--json PATH] [--check]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERMES = Path(sys.executable).with_name("hermes")
HANGING = "doctor --timeout 1, a fallback that never answers"

#: name -> (arguments, whether the hanging fallback is configured, target). A target is
#: a ratio to `hermes version`'s median (the machine's speed and load cancel out), except
#: for the hanging provider: at most the network run plus its 1 s timeout and 0.5 s.
CASES: dict[str, tuple[list[str], bool, float | None]] = {
    "hermes version": (["version"], False, None),
    "doctor --offline --no-probe": (["doctor", "--offline", "--no-probe"], False, 8.0),
    "doctor --offline": (["doctor", "--offline"], False, 12.0),
    "doctor (network)": (["doctor"], False, 12.0),
    HANGING: (["doctor", "--timeout", "1"], True, None),
}


class _Models(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "bench-model"}]}).encode()
        self.send_response(200 if self.path.endswith("/models") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def write_home(home: Path, port: int, silent_port: int | None) -> None:
    import yaml

    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}/v1"
    fallbacks = [{"provider": "custom", "model": "bench-model", "base_url": base}]
    if silent_port is not None:
        fallbacks.append(
            {"provider": "custom", "model": "m", "base_url": f"http://127.0.0.1:{silent_port}/v1"}
        )
    config = {
        "model": {"provider": "custom", "base_url": base, "default": "bench-model"},
        "fallback_providers": fallbacks,
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    (home / ".env").write_text("CUSTOM_API_KEY=bench-key\n")
    (home / ".env").chmod(0o600)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # Accepts (kernel backlog), never answers.
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port, silent_port = server.server_address[1], silent.getsockname()[1]
    walls: dict[str, list[float]] = {name: [] for name in CASES}
    codes: dict[str, set[int]] = {name: set() for name in CASES}
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as tmp:
        homes = {False: Path(tmp) / "home", True: Path(tmp) / "home-silent"}
        write_home(homes[False], port, None)
        write_home(homes[True], port, silent_port)
        for round_number in range(args.runs + 1):  # The first round warms caches; not kept.
            for name, (argv, hanging, _target) in CASES.items():
                env = {**os.environ, "HERMES_HOME": str(homes[hanging])}
                began = time.perf_counter()
                done = subprocess.run(
                    [str(HERMES), *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                wall = (time.perf_counter() - began) * 1000
                if round_number:
                    walls[name].append(wall)
                    codes[name].add(done.returncode)
    server.shutdown()
    silent.close()

    base = statistics.median(walls["hermes version"])
    network = statistics.median(walls["doctor (network)"])
    results: dict[str, Any] = {}
    missed = []
    print(f"{'command':<52} {'median':>8} {'p90':>8} {'ratio':>6}  target")
    for name, (_argv, _hanging, ratio) in CASES.items():
        median = statistics.median(walls[name])
        if name == HANGING:
            limit: float | None = network + 1500.0
            shown = f"<= {limit:.0f} ms (network run + timeout + 0.5 s)"
        else:
            limit = None if ratio is None else ratio * base
            shown = "-" if ratio is None else f"<= {ratio:g}x version"
        row = {
            "median_ms": round(median, 1),
            "p90_ms": round(p90(walls[name]), 1),
            "ratio_to_version": round(median / base, 2),
            "exit_codes": sorted(codes[name]),
            "target": shown,
        }
        results[name] = row
        ok = limit is None or median <= limit
        if not ok:
            missed.append(name)
        verdict = "" if limit is None else (" ok" if ok else " MISSED")
        print(
            f"{name:<52} {median:>6.0f}ms {row['p90_ms']:>6.0f}ms "
            f"{row['ratio_to_version']:>5.1f}x  {shown}{verdict}"
        )
    report = {
        "machine": {
            "python": platform.python_version(),
            "nproc": os.cpu_count(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "runs": args.runs,
        },
        "results": results,
        "missed": missed,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
