"""Per-turn overhead and memory growth of the agent loop, and time to the ``hermes chat`` prompt.

Why it exists: the model dominates a real turn, so hermes' own work per turn (building each
request, writing every message to state.db, validating and running tool calls, translating the
stream) must stay small and flat as a session grows, and a long session must not leak memory.
This script keeps that cost visible against the cheapest possible client of the same server.

How overhead is defined: a loopback provider in another process (aimock, node, answering at
once) scripts every turn as *user message -> one ``todo`` tool call -> tool result -> text*,
streamed with ``include_usage``. The **agent** session is one ``Agent`` (fresh HERMES_HOME, real
state.db, real tools, compression off). The **baseline** session sends the identical requests
(same growing message lists, same tools, same system prompt) with the raw ``openai.AsyncOpenAI``
SDK and consumes each stream, with no Agent and no state.db; its "tool" is the known result.
aimock's journal proves after every turn that both sent the same requests.

Overhead per turn = (agent total wall - baseline total wall) / N over the N measured turns
(after ``WARMUP_TURNS``); the median over ``--rounds`` rounds is checked. Within a round the two
sessions run in lockstep, turn n of one right after turn n of the other (the order flips every
turn). Alternating whole sessions was tried first: on a small shared VM, two identical baseline
sessions disagreed by 10-20 ms a turn, ten times the target, because the SDK's own per-request
work grows with the history and swamps everything else; lockstep cancels that drift.

Memory: VmRSS of this process (after ``gc.collect()``) when the warm-up turns are done and after
the last turn; the growth includes the baseline's copy of the history (about 1 MiB at 200 turns),
so it over-states the agent's share slightly.

Chat start-up: ``hermes chat`` on a pseudo-terminal with a fresh HERMES_HOME, timed from spawn
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
class Round:
    """One baseline session and one agent session, driven turn by turn in lockstep."""

    #: Wall time of each measured turn, per session.
    baseline_ms: list[float] = field(default_factory=list)
    agent_ms: list[float] = field(default_factory=list)
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0

    @property
    def overhead_ms(self) -> float:
        """(agent total - baseline total) / turns."""
        return (sum(self.agent_ms) - sum(self.baseline_ms)) / len(self.agent_ms)

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_end_mib - self.rss_start_mib


@dataclass
class Wire:
    """What the baseline sends besides the messages: copied from the agent it is compared
    with, so the two stay identical however the system prompt and the tools evolve."""

    base_url: str
    system: str
    tools: list[dict[str, Any]]
    max_tokens: int
    timeout: float


# --- the two sessions -------------------------------------------------------------------------


class BaselineSession:
    """The same conversation through the bare SDK: build, send, consume the stream, append."""

    kind = "baseline"

    def __init__(self, wire: Wire) -> None:
        import openai

        self.wire = wire
        self.client = openai.AsyncOpenAI(
            api_key="no-key", base_url=wire.base_url, timeout=wire.timeout, max_retries=0
        )
        self.messages: list[dict[str, Any]] = []
        self.limits: dict[str, Any] = {"max_tokens": wire.max_tokens} if wire.max_tokens else {}

    async def turn(self, n: int) -> None:
        self.messages.append({"role": "user", "content": user_text(n)})
        while True:
            request: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "system", "content": self.wire.system}, *self.messages],
                "tools": self.wire.tools,
                **self.limits,
            }
            stream = await self.client.chat.completions.create(
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
                self.messages.append({"role": "assistant", "content": "".join(text)})
                return
            ordered = [c for _, c in sorted(calls.items())]
            self.messages.append(
                {
                    "role": "assistant",
                    "content": "".join(text) or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in ordered
                    ],
                }
            )
            for c in ordered:  # The "tool": its answer is known.
                self.messages.append(
                    {"role": "tool", "tool_call_id": c["id"], "content": TOOL_RESULT}
                )

    async def aclose(self) -> None:
        await self.client.close()


def _fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="hermes-bench-home-"))
    (home / "config.yaml").write_text(CONFIG_YAML)
    os.environ["HERMES_HOME"] = str(home)
    return home


class AgentSession:
    """One Agent session as ``hermes chat`` builds it (minus the terminal front end), in a
    fresh HERMES_HOME with its own state.db."""

    kind = "agent"

    def __init__(self, base_url: str, workspace: Path) -> None:
        from hermes_agent.agent.loop import Agent
        from hermes_agent.config.loader import load_config
        from hermes_agent.providers import settings as provider_settings
        from hermes_agent.state.db import StateDB
        from hermes_agent.tools.registry import builtin_registry

        self.home = _fresh_home()
        try:
            config = load_config()
            settings = provider_settings.resolve(
                config, provider="custom", model=MODEL, base_url=base_url
            )
            self.db = StateDB()
            session_id = self.db.create_session(source="cli", model=MODEL, cwd=str(workspace))
            self.agent = Agent(
                provider=provider_settings.build(settings),
                tools=builtin_registry().select(config.get("toolsets")),
                config=config,
                db=self.db,
                session_id=session_id,
                cwd=workspace,
            )
        except BaseException:
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        self.wire = Wire(
            base_url,
            self.agent.system,
            [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in self.agent.tool_specs()
            ],
            int(config.get("model.max_tokens")),
            float(config.get("model.timeout")),
        )

    async def turn(self, n: int) -> None:
        result = await self.agent.run(user_text(n))
        if (result.status, result.text, result.model_calls) != ("done", ANSWER, 2):
            raise BenchError(f"agent turn {n}: {result.status} after {result.model_calls} calls")

    async def aclose(self) -> None:
        await self.agent.provider.aclose()
        self.db.close()
        shutil.rmtree(self.home, ignore_errors=True)


async def lockstep_round(mock: Aimock, workspace: Path, turns: int) -> Round:
    """Turn n of the baseline, then turn n of the agent (the order flips every turn), so both
    see the same history length and the same machine at nearly the same moment."""
    result = Round()
    agent = AgentSession(mock.openai_base_url, workspace)
    sessions: list[BaselineSession | AgentSession] = [agent]
    try:
        sessions.insert(0, BaselineSession(agent.wire))
        for n in range(WARMUP_TURNS + turns):
            if n == WARMUP_TURNS:
                result.rss_start_mib = rss_mib()
            order = sessions if n % 2 == 0 else sessions[::-1]
            took: dict[str, float] = {}
            for session in order:
                started = time.perf_counter()
                await session.turn(n)
                took[session.kind] = (time.perf_counter() - started) * 1000
            check_same_requests(mock, n)
            if n >= WARMUP_TURNS:
                result.baseline_ms.append(took["baseline"])
                result.agent_ms.append(took["agent"])
        result.rss_end_mib = rss_mib()
    finally:
        for session in sessions:
            await session.aclose()
    return result


def check_same_requests(mock: Aimock, n: int) -> None:
    """Both sessions sent the same two requests in turn ``n`` (outside the timed part).

    aimock's journal keeps bodies up to 64 KB; a larger one is replaced by its size, so late
    in a long session the comparison is by size only.
    """
    entries = mock.journal()
    mock.clear_journal()
    bad = [e["response"] for e in entries if e["response"]["status"] != 200]
    if len(entries) != 4 or bad:
        raise BenchError(f"turn {n}: {len(entries)} requests (want 4), failed: {bad}")
    prints = [
        hashlib.sha256(json.dumps(e["body"], sort_keys=True).encode()).digest() for e in entries
    ]
    if prints[:2] != prints[2:]:
        raise BenchError(f"turn {n}: the agent and the baseline sent different requests")


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
    parser.add_argument("--turns", type=int, default=200, help="measured turns per session")
    parser.add_argument("--rounds", type=int, default=2, help="baseline+agent session pairs")
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
    load_before = os.getloadavg()[0]
    rounds: list[Round] = []
    chat_ms: list[float] = []
    try:
        with Aimock(fixtures()) as mock:
            for _ in range(args.rounds):
                rounds.append(asyncio.run(lockstep_round(mock, workspace, args.turns)))
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

    overhead = statistics.median(r.overhead_ms for r in rounds)
    base_turns = [t for r in rounds for t in r.baseline_ms]
    agent_turns = [t for r in rounds for t in r.agent_ms]
    base_med, agent_med = statistics.median(base_turns), statistics.median(agent_turns)
    # Turn n of both sessions sent the same bytes moments apart: the median of the paired
    # differences shrugs off GC pauses and bursts of load from other processes; its standard
    # error says how well the data pin the overhead down.
    diffs = [a - b for a, b in zip(agent_turns, base_turns, strict=True)]
    paired = statistics.median(diffs)
    stderr = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    growth = max(r.rss_growth_mib for r in rounds)
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
        # Other work on the machine shows up as noise; the 1-minute load says how much.
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    print(
        f"python {machine['python']}  nproc {machine['nproc']}  {machine['date']}  "
        f"{machine['platform']}  turns={args.turns} (+{WARMUP_TURNS} warm-up) x "
        f"{args.rounds} rounds  chat runs={args.chat_runs} (+1 warm-up)  "
        f"load {load_before:.2f} -> {machine['load_after']:.2f}"
    )
    per_round = " / ".join(f"{r.overhead_ms:.2f}" for r in rounds)
    rss = " / ".join(f"{r.rss_start_mib:.0f}->{r.rss_end_mib:.0f}" for r in rounds)
    rows = [
        ("baseline turn (raw SDK)", f"{base_med:.1f} ms", f"p90 {p90(base_turns):.1f} ms", "-"),
        ("agent turn", f"{agent_med:.1f} ms", f"p90 {p90(agent_turns):.1f} ms", "-"),
        ("ratio agent/baseline", f"{agent_med / base_med:.3f}x", "of the per-turn medians", "-"),
        (
            "overhead per turn",
            f"{overhead:.2f} ms",
            f"per round {per_round} ms",
            f"<= {TARGET_OVERHEAD_MS:g} ms {targets['overhead_per_turn_ms']}",
        ),
        (
            "  paired median",
            f"{paired:.2f} ms",
            f"mean {statistics.fmean(diffs):.2f} +- {stderr:.2f} (s.e.)",
            "-",
        ),
        (
            "RSS growth",
            f"{growth:.1f} MiB",
            f"per round {rss} MiB",
            f"<= {TARGET_RSS_GROWTH_MIB:g} MiB {targets['rss_growth_mib']}",
        ),
        (
            "chat prompt",
            f"{chat_med:.0f} ms",
            f"min {min(chat_ms):.0f} max {max(chat_ms):.0f} ms",
            f"<= {TARGET_CHAT_MS:g} ms {targets['chat_prompt_ms']}",
        ),
    ]
    print(f"{'measure':<24} {'value':>10}  {'detail':<36} target")
    for label, value, detail, target in rows:
        print(f"{label:<24} {value:>10}  {detail:<36} {target}")

    if args.json:
        results = {
            "overhead_per_turn_ms": overhead,
            "paired_overhead_ms_median": paired,
            "paired_overhead_ms_mean": statistics.fmean(diffs),
            "paired_overhead_ms_stderr": stderr,
            "baseline_turn_ms_median": base_med,
            "agent_turn_ms_median": agent_med,
            "ratio": agent_med / base_med,
            "rss_growth_mib": growth,
            "chat_prompt_ms_median": chat_med,
            "chat_prompt_ms": chat_ms,
            "targets": targets,
            "rounds": [
                {
                    "overhead_ms": r.overhead_ms,
                    "rss_start_mib": r.rss_start_mib,
                    "rss_end_mib": r.rss_end_mib,
                    "baseline_ms": r.baseline_ms,
                    "agent_ms": r.agent_ms,
                }
                for r in rounds
            ],
        }
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    missed = any(v != "ok" for v in targets.values())
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
