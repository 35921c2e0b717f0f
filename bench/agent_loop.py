"""Per-turn overhead and memory growth of the agent loop, and time to the ``hermes chat`` prompt.

Why it exists: the model dominates a real turn, so hermes' own work per turn (building each
request, writing every message to state.db, validating and running tool calls, translating the
stream) must stay small and flat as a session grows, and a long session must not leak memory.
This script keeps that cost visible against the cheapest possible client of the same server.

How overhead is defined: a loopback provider (aimock, a node process, answering instantly)
scripts every turn as *user message -> one ``todo`` tool call -> tool result -> text answer*,
streamed with ``include_usage``. The **agent** run drives one ``Agent`` session (fresh
HERMES_HOME, real state.db, real tools, compression off) through ``WARMUP_TURNS`` + N turns.
The **baseline** run sends the identical sequence of requests (same growing message lists, same
tools, same system prompt) with the raw ``openai.AsyncOpenAI`` SDK and consumes each stream, with
no Agent and no state.db; its "tool" returns the known result as a constant. Both runs'
requests are compared through aimock's journal, so the baseline provably did the same HTTP work.
Overhead per turn = (agent total wall - baseline total wall) / N over the measured turns, using
the median total of ``--rounds`` interleaved baseline/agent pairs.

Memory: the VmRSS of this process (after ``gc.collect()``) once the warm-up turns are done and
again after the last turn of an agent run; the growth over the measured turns is reported.

Chat start-up: ``hermes chat`` in a pseudo-terminal with a fresh HERMES_HOME, timed from spawn
until the prompt glyph ``❯`` is drawn (prompt_toolkit draws the space after it as a cursor move,
so the literal ``"❯ "`` never appears on the wire); then ``/exit`` ends it.

Usage: ``.venv/bin/python bench/agent_loop.py [--turns N] [--json PATH] [--check]``
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import datetime
import fcntl
import gc
import hashlib
import json
import math
import os
import platform
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peers.aimock import Aimock

ROOT = Path(__file__).resolve().parent.parent
WARMUP_TURNS = 20
MODEL = "bench"
TOOL_CALL_ID = "call_bench"
# merge=false keeps the todo list (and so each tool result) one item long: the history grows
# by the same four messages every turn, like a chat, instead of quadratically.
TODO_ARGUMENTS: dict[str, Any] = {"items": [{"task": "x"}], "merge": False}
TOOL_RESULT = "[ ] 1. x"  # What the todo tool answers to TODO_ARGUMENTS.
ANSWER = "Done: x is on the list, nothing else to do for now."
CONFIG_YAML = "compression:\n  enabled: false\nagent:\n  max_turns: 1000\n"
PROMPT = "❯".encode()
CPR_REQUEST = b"\x1b[6n"  # prompt_toolkit asks where the cursor is; a terminal answers.
TARGET_OVERHEAD_MS = 2.0
TARGET_RSS_GROWTH_MIB = 10.0
TARGET_CHAT_MS = 300.0


class BenchError(RuntimeError):
    """The benchmark could not measure what it meant to (wrong answer, no prompt, ...)."""


def user_text(n: int) -> str:
    return f"bench turn {n}: put x on the todo list"


def fixtures() -> list[dict[str, Any]]:
    """Tool result -> text; any user message -> the todo call (first match wins)."""
    call = {"id": TOOL_CALL_ID, "name": "todo", "arguments": TODO_ARGUMENTS}
    return [
        {"match": {"toolCallId": TOOL_CALL_ID}, "response": {"content": ANSWER}},
        {"match": {"userMessage": "bench turn"}, "response": {"toolCalls": [call]}},
    ]


def rss_mib() -> float:
    """This process's resident set size in MiB, after a full collection."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS in /proc/self/status")


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass
class Run:
    """One baseline or agent run: per-turn wall times of the measured turns, and RSS."""

    kind: str
    turn_ms: list[float] = field(default_factory=list)
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0

    @property
    def total_ms(self) -> float:
        return sum(self.turn_ms)

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_end_mib - self.rss_start_mib


@dataclass
class Wire:
    """What both runs send besides the messages: taken from the agent's own configuration."""

    base_url: str
    workspace: Path
    system: str
    tools: list[dict[str, Any]]
    max_tokens: int
    timeout: float


# --- the two runs -----------------------------------------------------------------------------


async def _timed_turns(turns: int, one_turn: Callable[[int], Awaitable[None]], run: Run) -> None:
    """Warm up, read RSS, time ``turns`` turns, read RSS again."""
    for n in range(WARMUP_TURNS):
        await one_turn(n)
    run.rss_start_mib = rss_mib()
    for n in range(WARMUP_TURNS, WARMUP_TURNS + turns):
        started = time.perf_counter()
        await one_turn(n)
        run.turn_ms.append((time.perf_counter() - started) * 1000)
    run.rss_end_mib = rss_mib()


async def baseline_run(wire: Wire, turns: int) -> Run:
    """The same conversation through the bare SDK: build, send, consume the stream, append."""
    import openai

    client = openai.AsyncOpenAI(
        api_key="no-key", base_url=wire.base_url, timeout=wire.timeout, max_retries=0
    )
    messages: list[dict[str, Any]] = []
    limits: dict[str, Any] = {"max_tokens": wire.max_tokens} if wire.max_tokens else {}

    async def one_turn(n: int) -> None:
        messages.append({"role": "user", "content": user_text(n)})
        while True:
            request: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "system", "content": wire.system}, *messages],
                "tools": wire.tools,
                **limits,
            }
            stream = await client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
            text: list[str] = []
            calls: dict[int, dict[str, str]] = {}
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        text.append(choice.delta.content)
                    for tc in choice.delta.tool_calls or ():
                        slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
            await stream.close()
            if not calls:
                if "".join(text) != ANSWER:
                    raise BenchError(f"baseline turn {n}: unexpected answer {''.join(text)!r}")
                messages.append({"role": "assistant", "content": "".join(text)})
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(text) or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for _, c in sorted(calls.items())
                    ],
                }
            )
            for _, c in sorted(calls.items()):
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": TOOL_RESULT})

    run = Run("baseline")
    try:
        await _timed_turns(turns, one_turn, run)
    finally:
        await client.close()
    return run


def _fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="hermes-bench-home-"))
    (home / "config.yaml").write_text(CONFIG_YAML)
    os.environ["HERMES_HOME"] = str(home)
    return home


async def agent_run(wire: Wire, turns: int) -> Run:
    """One Agent session, as ``hermes chat`` builds it, minus the terminal front end."""
    from hermes_agent.agent.loop import Agent
    from hermes_agent.config.loader import load_config
    from hermes_agent.providers import settings as provider_settings
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools.registry import builtin_registry

    home = _fresh_home()
    config = load_config()
    settings = provider_settings.resolve(
        config, provider="custom", model=MODEL, base_url=wire.base_url
    )
    db = StateDB()
    session_id = db.create_session(source="cli", model=MODEL, cwd=str(wire.workspace))
    agent = Agent(
        provider=provider_settings.build(settings),
        tools=builtin_registry().select(config.get("toolsets")),
        config=config,
        db=db,
        session_id=session_id,
        cwd=wire.workspace,
    )
    if agent.system != wire.system:
        raise BenchError("the agent's system prompt differs from the baseline's")

    async def one_turn(n: int) -> None:
        result = await agent.run(user_text(n))
        if (result.status, result.text, result.model_calls) != ("done", ANSWER, 2):
            raise BenchError(f"agent turn {n}: {result.status} after {result.model_calls} calls")

    run = Run("agent")
    try:
        await _timed_turns(turns, one_turn, run)
    finally:
        await agent.provider.aclose()
        db.close()
        shutil.rmtree(home, ignore_errors=True)
    return run


def make_wire(base_url: str, workspace: Path) -> Wire:
    """System prompt, tools and limits exactly as an agent in ``workspace`` would send them."""
    from hermes_agent.agent.prompt import build_system_prompt
    from hermes_agent.config.loader import load_config
    from hermes_agent.tools.registry import builtin_registry

    home = _fresh_home()
    try:
        config = load_config()
        system = build_system_prompt(
            cwd=workspace, personality=config.get("display.personality") or "", model=MODEL
        )
        tools = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in builtin_registry().select(config.get("toolsets"))
        ]
        return Wire(
            base_url,
            workspace,
            system,
            tools,
            int(config.get("model.max_tokens")),
            float(config.get("model.timeout")),
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def request_fingerprints(mock: Aimock) -> list[str]:
    """One hash per request the server saw since the last call (aimock caps bodies at 64 KB
    in its journal; a capped body still records its size, so the hash still compares)."""
    entries = mock.journal()
    mock.clear_journal()
    bad = [e for e in entries if e["response"]["status"] != 200]
    if bad:
        raise BenchError(f"{len(bad)} requests failed, first: {bad[0]['response']}")
    return [
        hashlib.sha256(json.dumps(e["body"], sort_keys=True).encode()).hexdigest() for e in entries
    ]


# --- chat start-up ----------------------------------------------------------------------------


def _become_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def chat_prompt_ms(hermes: Path, base_url: str, workspace: Path, env: dict[str, str]) -> float:
    """Spawn ``hermes chat`` on a pseudo-terminal; ms until the prompt is drawn."""
    home = tempfile.mkdtemp(prefix="hermes-bench-chat-")
    argv = [str(hermes), "chat", "--provider", "custom", "--base-url", base_url, "-m", MODEL]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    output = bytearray()
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=workspace,
            env={**env, "HERMES_HOME": home},
            start_new_session=True,
            preexec_fn=_become_controlling_tty,
        )
        os.close(slave)
        slave = -1
        try:
            while PROMPT not in output:
                if not _read_pty(master, output, 30.0):
                    raise BenchError(f"no prompt from hermes chat; it wrote: {bytes(output)!r}")
            elapsed = (time.perf_counter() - started) * 1000
            # Input typed before prompt_toolkit switched the terminal to raw mode is flushed:
            # wait until the screen is quiet, then leave the way a user would.
            while _read_pty(master, output, 0.2):
                pass
            os.write(master, b"/exit\n")
            while _read_pty(master, output, 10.0):
                pass
            code = proc.wait(timeout=10)
            if code != 0:
                raise BenchError(f"hermes chat exited {code}; it wrote: {bytes(output)!r}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
        shutil.rmtree(home, ignore_errors=True)
    return elapsed


def _read_pty(master: int, output: bytearray, timeout: float) -> bool:
    """Append what the child wrote within ``timeout``; False on silence or end of output."""
    ready, _, _ = select.select([master], [], [], timeout)
    if not ready:
        return False
    try:
        data = os.read(master, 65536)
    except OSError:  # EIO: the child closed the terminal.
        return False
    if CPR_REQUEST in data:
        os.write(master, b"\x1b[1;1R")
    output += data
    return bool(data)


# --- report -----------------------------------------------------------------------------------


def verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="measured turns per run")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/agent pairs, interleaved")
    parser.add_argument("--chat-runs", type=int, default=7, help="measured `hermes chat` starts")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    if min(args.turns, args.rounds, args.chat_runs) < 1:
        parser.error("--turns, --rounds and --chat-runs must be >= 1")
    hermes = Path(sys.executable).parent / "hermes"
    if not hermes.is_file():
        print(f"error: hermes console script not found at {hermes}", file=sys.stderr)
        return 2

    sys.path.insert(0, str(ROOT / "tests"))
    import hermes_agent
    from peers.aimock import Aimock, AimockError

    # Measure what an installed copy does: start from bytecode (see bench/startup.py).
    compileall.compile_dir(str(Path(hermes_agent.__file__).parent), quiet=1)
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HERMES_HOME", "HERMES_MANAGED") and not k.endswith(("_API_KEY", "_TOKEN"))
    }
    os.environ.clear()
    os.environ.update(clean_env)
    workspace = Path(tempfile.mkdtemp(prefix="hermes-bench-ws-"))
    runs: list[Run] = []
    chat_ms: list[float] = []
    try:
        with Aimock(fixtures()) as mock:
            wire = make_wire(mock.openai_base_url, workspace)
            for _ in range(args.rounds):
                runs.append(asyncio.run(baseline_run(wire, args.turns)))
                sent_by_baseline = request_fingerprints(mock)
                runs.append(asyncio.run(agent_run(wire, args.turns)))
                if request_fingerprints(mock) != sent_by_baseline:
                    raise BenchError("the agent and the baseline sent different requests")
            env = {**clean_env, "TERM": "xterm-256color"}
            chat_prompt_ms(hermes, mock.openai_base_url, workspace, env)  # Warm the caches.
            chat_ms = [
                chat_prompt_ms(hermes, mock.openai_base_url, workspace, env)
                for _ in range(args.chat_runs)
            ]
    except (BenchError, AimockError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        os.environ.pop("HERMES_HOME", None)

    base = [r for r in runs if r.kind == "baseline"]
    agent = [r for r in runs if r.kind == "agent"]
    base_total = statistics.median(r.total_ms for r in base)
    agent_total = statistics.median(r.total_ms for r in agent)
    overhead = (agent_total - base_total) / args.turns
    base_turns = [t for r in base for t in r.turn_ms]
    agent_turns = [t for r in agent for t in r.turn_ms]
    base_med, agent_med = statistics.median(base_turns), statistics.median(agent_turns)
    # Turn k of both runs sends the same bytes, so pairing them cancels the history growth;
    # the median of the differences shrugs off GC pauses and scheduler hiccups.
    pairs = [zip(ra.turn_ms, rb.turn_ms, strict=True) for ra, rb in zip(agent, base, strict=True)]
    paired = statistics.median(a - b for pair in pairs for a, b in pair)
    # How far two identical baseline runs disagree: below this, overhead is noise.
    noise = (max(r.total_ms for r in base) - min(r.total_ms for r in base)) / args.turns
    growth = max(r.rss_growth_mib for r in agent)
    base_growth = max(r.rss_growth_mib for r in base)
    chat_med = statistics.median(chat_ms)
    targets = {
        "overhead_per_turn_ms": verdict(overhead, TARGET_OVERHEAD_MS),
        "rss_growth_mib": verdict(growth, TARGET_RSS_GROWTH_MIB),
        "chat_prompt_ms": verdict(chat_med, TARGET_CHAT_MS),
    }

    machine = {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "turns": args.turns,
        "warmup_turns": WARMUP_TURNS,
        "rounds": args.rounds,
        "chat_runs": args.chat_runs,
    }
    print(
        f"python {machine['python']}  nproc {machine['nproc']}  {machine['date']}  "
        f"{machine['platform']}  turns={args.turns} (+{WARMUP_TURNS} warm-up) x "
        f"{args.rounds} rounds  chat runs={args.chat_runs} (+1 warm-up)"
    )
    totals = "  ".join(f"{r.kind[0]}{r.total_ms:.0f}" for r in runs)
    rows = [
        ("baseline turn (raw SDK)", f"{base_med:.2f} ms", f"p90 {p90(base_turns):.2f}", "-"),
        ("agent turn", f"{agent_med:.2f} ms", f"p90 {p90(agent_turns):.2f}", "-"),
        ("ratio agent/baseline", f"{agent_med / base_med:.2f}x", "per-turn medians", "-"),
        (
            "overhead per turn",
            f"{overhead:.2f} ms",
            f"totals ms {totals}",
            f"<= {TARGET_OVERHEAD_MS:g} ms {targets['overhead_per_turn_ms']}",
        ),
        (
            "  paired median",
            f"{paired:.2f} ms",
            f"noise: baseline rounds differ {noise:.2f} ms/turn",
            "-",
        ),
        (
            "RSS growth (agent)",
            f"{growth:.1f} MiB",
            f"{agent[-1].rss_start_mib:.0f} -> {agent[-1].rss_end_mib:.0f} MiB; "
            f"baseline {base_growth:+.1f}",
            f"<= {TARGET_RSS_GROWTH_MIB:g} MiB {targets['rss_growth_mib']}",
        ),
        (
            "chat prompt",
            f"{chat_med:.0f} ms",
            f"min {min(chat_ms):.0f} max {max(chat_ms):.0f}",
            f"<= {TARGET_CHAT_MS:g} ms {targets['chat_prompt_ms']}",
        ),
    ]
    print(f"{'measure':<24} {'value':>10}  {'detail':<40} target")
    for label, value, detail, target in rows:
        print(f"{label:<24} {value:>10}  {detail:<40} {target}")

    if args.json:
        results = {
            "overhead_per_turn_ms": overhead,
            "baseline_total_ms_median": base_total,
            "agent_total_ms_median": agent_total,
            "baseline_turn_ms_median": base_med,
            "agent_turn_ms_median": agent_med,
            "ratio": agent_med / base_med,
            "paired_overhead_ms_median": paired,
            "baseline_noise_ms_per_turn": noise,
            "rss_growth_mib": growth,
            "baseline_rss_growth_mib": base_growth,
            "chat_prompt_ms_median": chat_med,
            "chat_prompt_ms": chat_ms,
            "targets": targets,
            "runs": [
                {
                    "kind": r.kind,
                    "total_ms": r.total_ms,
                    "rss_start_mib": r.rss_start_mib,
                    "rss_end_mib": r.rss_end_mib,
                    "turn_ms": r.turn_ms,
                }
                for r in runs
            ],
        }
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    missed = any(v != "ok" for v in targets.values())
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
