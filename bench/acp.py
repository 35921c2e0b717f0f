"""How long an editor waits for `hermes acp`: the initialize answer and the first streamed text.

Why it exists: an editor starts the agent when the user opens the agent panel and
shows nothing until ``initialize`` is answered; then every prompt is judged by its
first ``agent_message_chunk``. Both must cost no more than the terminal chat does.

Setup: the scripted loopback model of ``tests/peers/llm_server.py`` (every request
answered at once with the same streamed reply), a fresh HERMES_HOME whose model is
that server, and a raw JSON-RPC client over the agent's stdio (no SDK on the client
side, so what is measured is the agent). Per run, a fresh ``hermes acp`` process:

- **initialize**: from sending ``initialize`` (the process already started and
  reading) to its answer; and **cold start**: from spawning the process to that answer.
- **first chunk, cold**: from spawning ``hermes acp`` to the first
  ``agent_message_chunk`` of a prompt sent right after ``initialize`` and
  ``session/new``. **Baseline**, in the same run: ``hermes chat -q`` with the same
  prompt, from spawning it to the first byte of its answer on stdout. The difference
  is the latency ACP adds to the same work.
- **first chunk, warm**: a second prompt in the same session, from sending it to its
  first chunk (what the user feels on every later prompt).

Usage: ``.venv/bin/python bench/acp.py [--runs N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from peers.llm_server import Reply, ScriptedLLM  # noqa: E402

HERMES = Path(sys.executable).parent / "hermes"
PROMPT = "Say hello."
REPLY = "Hello from the model, streamed in pieces."


class Rpc:
    """Newline-delimited JSON-RPC over a child's stdio."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0

    async def send(self, method: str, params: dict[str, Any]) -> int:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()
        return self.next_id

    async def until(self, test: Any) -> dict[str, Any]:
        """Read messages until ``test(message)``; answers the agent's requests with errors."""
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError("hermes acp closed its stdout")
            message = json.loads(line)
            if test(message):
                return message

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        ident = await self.send(method, params)
        answer = await self.until(lambda m: m.get("id") == ident and "method" not in m)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return dict(answer["result"])


def first_chunk(message: dict[str, Any]) -> bool:
    params = message.get("params") or {}
    update = params.get("update") or {}
    return message.get("method") == "session/update" and (
        update.get("sessionUpdate") == "agent_message_chunk"
    )


async def acp_run(env: dict[str, str], cwd: str) -> dict[str, float]:
    spawned = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(HERMES),
        "acp",
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    rpc = Rpc(proc)
    try:
        sent = time.perf_counter()
        await rpc.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        answered = time.perf_counter()
        session = (await rpc.call("session/new", {"cwd": cwd, "mcpServers": []}))["sessionId"]
        prompt = {"sessionId": session, "prompt": [{"type": "text", "text": PROMPT}]}
        ident = await rpc.send("session/prompt", prompt)
        await rpc.until(first_chunk)
        cold_chunk = time.perf_counter()
        await rpc.until(lambda m: m.get("id") == ident)
        warm_sent = time.perf_counter()
        ident = await rpc.send("session/prompt", prompt)
        await rpc.until(first_chunk)
        warm_chunk = time.perf_counter()
        await rpc.until(lambda m: m.get("id") == ident)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()
    return {
        # ``sent`` follows the spawn at once; the process reads when it is ready.
        "initialize_ms": (answered - sent) * 1000,
        "cold_start_ms": (answered - spawned) * 1000,
        "first_chunk_cold_ms": (cold_chunk - spawned) * 1000,
        "first_chunk_warm_ms": (warm_chunk - warm_sent) * 1000,
    }


async def chat_run(env: dict[str, str], cwd: str) -> float:
    spawned = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(HERMES),
        "chat",
        "-q",
        PROMPT,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    first = await proc.stdout.read(1)
    at = time.perf_counter()
    await proc.stdout.read()
    if await proc.wait() != 0 or not first:
        raise RuntimeError("hermes chat -q failed")
    return (at - spawned) * 1000


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        "min_ms": ordered[0],
    }


async def bench(runs: int) -> dict[str, Any]:
    import hermes_agent

    compileall.compile_dir(str(Path(hermes_agent.__file__).parent), quiet=1)
    home = Path(tempfile.mkdtemp(prefix="hermes-bench-acp-"))
    workspace = Path(tempfile.mkdtemp(prefix="hermes-bench-ws-"))
    steps = [Reply(REPLY) for _ in range(4 * (runs + 1))]
    with ScriptedLLM(steps) as llm:
        home.mkdir(exist_ok=True)
        (home / "config.yaml").write_text(
            f"model:\n  provider: custom\n  base_url: {llm.openai_base_url}\n"
            "  default: bench-model\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
        env["HERMES_HOME"] = str(home)
        acp: list[dict[str, float]] = []
        chat: list[float] = []
        await acp_run(env, str(workspace))  # Warm-up: page cache, bytecode, state.db.
        await chat_run(env, str(workspace))
        for _ in range(runs):
            acp.append(await acp_run(env, str(workspace)))
            chat.append(await chat_run(env, str(workspace)))
    results: dict[str, Any] = {key: summary([r[key] for r in acp]) for key in acp[0]}
    results["chat_q_first_byte_ms"] = summary(chat)
    results["acp_added_first_chunk_ms"] = (
        results["first_chunk_cold_ms"]["median_ms"] - results["chat_q_first_byte_ms"]["median_ms"]
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if not HERMES.is_file():
        print(f"error: hermes console script not found at {HERMES}", file=sys.stderr)
        return 2
    results = asyncio.run(bench(args.runs))
    machine = {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "runs": args.runs,
        "loadavg": os.getloadavg(),
    }
    print(
        f"python {machine['python']}  nproc {machine['nproc']}  runs={args.runs}  "
        f"load {machine['loadavg'][0]:.1f}"
    )
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key:<26} median {value['median_ms']:8.1f} ms   p90 {value['p90_ms']:8.1f} ms")
    print(f"{'ACP added (first chunk)':<26} {results['acp_added_first_chunk_ms']:8.1f} ms (median)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
