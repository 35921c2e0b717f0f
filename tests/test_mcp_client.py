"""The MCP client against real servers: the npm reference servers and misbehaving ones.

Every test runs the manager (one per process, on its own loop) against servers
started for real: ``mcp-server-everything`` over stdio and Streamable HTTP,
``mcp-server-filesystem``, and ``tests/peers/mcp_misbehaving.py`` (Python SDK)
that starts slowly, dies mid-call, never answers, changes a tool, floods its
output or leaves a child running. Tool calls go through the same handler the
agent uses (approval gate, pins, untrusted marking).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from hermes_agent.config.loader import Config, load_config
from hermes_agent.mcp import config as mcp_config
from hermes_agent.mcp.manager import READY, Scope, get_manager
from hermes_agent.providers.base import ToolCall
from hermes_agent.state.db import StateDB
from hermes_agent.tools.registry import Tool, ToolContext, ToolError, dispatch

PEERS = Path(__file__).parent / "peers"
BIN = PEERS / "node_modules" / ".bin"
EVERYTHING = BIN / "mcp-server-everything"
FILESYSTEM = BIN / "mcp-server-filesystem"
MISBEHAVING = PEERS / "mcp_misbehaving.py"

pytestmark = [
    pytest.mark.peer("mcp"),
    pytest.mark.skipif(not EVERYTHING.exists(), reason="npm MCP peers not installed"),
]


def misbehaving(**extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(MISBEHAVING)], **extra}


def setup(home: Path, workspace: Path, servers: dict[str, Any], **more: Any) -> Config:
    home.mkdir(exist_ok=True)
    workspace.mkdir(exist_ok=True)
    data = {
        "mcp_servers": servers,
        "mcp": {"connect_wait": 60},
        "terminal": {"cwd": str(workspace)},
        **more,
    }
    (home / "config.yaml").write_text(yaml.safe_dump(data))
    return load_config()


def open_scope(config: Config, workspace: Path) -> Scope:
    servers = mcp_config.parse_servers(config.get("mcp_servers"))
    return get_manager().open_scope(servers, config=config, cwd=workspace, include_global=False)


class Answers:
    """The user at the approval prompt: scripted answers, and the questions seen."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    async def __call__(self, question: str, choices: Sequence[str]) -> str | None:
        self.questions.append(question)
        return self.answers.pop(0) if self.answers else None


def context(config: Config, workspace: Path, ask: Any = None) -> ToolContext:
    ctx = ToolContext("test-session", str(workspace), config, StateDB())
    if ask is not None:
        ctx.ask = ask
    return ctx


def tools_of(scope: Scope) -> dict[str, Tool]:
    return {t.name: t for t in scope.tools()}


def call(scope: Scope, name: str, args: dict[str, Any], ctx: ToolContext) -> Any:
    return asyncio.run(tools_of(scope)[name].handler(args, ctx))


def ready(scope: Scope, timeout: float = 60) -> None:
    asyncio.run(scope.prepare())
    deadline = time.monotonic() + timeout
    while any(c.state != READY for c in scope.connections):
        assert time.monotonic() < deadline, scope.statuses()
        time.sleep(0.05)


def wait_for(predicate: Any, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def http_everything() -> Iterator[str]:
    """``mcp-server-everything streamableHttp`` on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP MCP server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_stdio_reference_server_tools_resources_prompts(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(
        hermes_home,
        ws,
        {
            "ev": {
                "command": str(EVERYTHING),
                "args": ["stdio"],
                "approval": "auto",
                "env": {"GREETING": "${HERMES_TEST_GREETING}"},
            }
        },
    )
    os.environ["HERMES_TEST_GREETING"] = "hello-from-env"
    try:
        scope = open_scope(config, ws)
        ready(scope)
    finally:
        del os.environ["HERMES_TEST_GREETING"]
    try:
        tools = tools_of(scope)
        assert "mcp__ev__echo" in tools and "mcp__ev__get-sum" in tools
        assert "mcp_servers" in tools and "mcp_resources" in tools and "mcp_prompts" in tools
        assert "ev: ready" in tools["mcp_servers"].description
        ctx = context(config, ws)
        echoed = call(scope, "mcp__ev__echo", {"message": "hi there"}, ctx)
        assert "Echo: hi there" in echoed
        assert echoed.startswith("[untrusted content from MCP server ev (tool echo)")
        # Through dispatch (the agent's path): the turn is marked as having read untrusted text.
        result = asyncio.run(
            dispatch(ToolCall("c1", "mcp__ev__echo", '{"message": "x"}'), tools, ctx)
        )
        assert not result.is_error and result.untrusted and ctx.state["untrusted_read"]
        assert "7" in call(scope, "mcp__ev__get-sum", {"a": 3, "b": 4}, ctx)
        structured = call(scope, "mcp__ev__get-structured-content", {"location": "New York"}, ctx)
        assert "[structured content]" in structured or "temperature" in structured
        links = call(scope, "mcp__ev__get-resource-links", {"count": 2}, ctx)
        assert "[resource link" in links
        env_dump = call(scope, "mcp__ev__get-env", {}, ctx)
        assert "hello-from-env" in env_dump  # ${VAR} resolved at connect time.
        listed = call(scope, "mcp_resources", {"server": "ev"}, ctx)
        uri = next(w for w in listed.split() if "://" in w)
        assert call(scope, "mcp_resources", {"server": "ev", "uri": uri}, ctx)
        prompts = call(scope, "mcp_prompts", {"server": "ev"}, ctx)
        assert "simple-prompt" in prompts or "args-prompt" in prompts
        # Every call went through the gate and was audited.
        audit = (hermes_home / "logs" / "approvals.jsonl").read_text().splitlines()
        assert any('"policy": "auto"' in line and "echo" in line for line in audit)
    finally:
        scope.close()


def test_streamable_http_server_and_headers(
    hermes_home: Path, tmp_path: Path, http_everything: str
) -> None:
    ws = tmp_path / "ws"
    hermes_home.mkdir()
    (hermes_home / ".env").write_text("HTTP_MCP_TOKEN=tok-123\n")
    config = setup(
        hermes_home,
        ws,
        {
            "web": {
                "url": http_everything,
                "headers": {"Authorization": "Bearer ${HTTP_MCP_TOKEN}"},
                "approval": "auto",
            }
        },
    )
    scope = open_scope(config, ws)
    try:
        ready(scope)
        ctx = context(config, ws)
        assert "Echo: over http" in call(scope, "mcp__web__echo", {"message": "over http"}, ctx)
        assert "42" in call(scope, "mcp__web__get-sum", {"a": 40, "b": 2}, ctx)
    finally:
        scope.close()


def test_unset_variable_fails_naming_it_and_the_server(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(
        hermes_home,
        ws,
        {"gh": {"url": "http://127.0.0.1:9/mcp", "headers": {"X": "${HERMES_NOT_SET_X}"}}},
    )
    scope = open_scope(config, ws)
    try:
        asyncio.run(scope.prepare())
        (status,) = scope.statuses()
        assert status.state == "failed"
        assert "HERMES_NOT_SET_X" in status.reason and "'gh'" in status.reason
        assert "mcp__gh" not in " ".join(tools_of(scope))
        assert "gh: failed" in tools_of(scope)["mcp_servers"].description
    finally:
        scope.close()


def test_include_exclude(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    config = setup(
        hermes_home,
        ws,
        {
            "fs": {
                "command": str(FILESYSTEM),
                "args": [str(ws)],
                "tools": {"include": ["*file*", "list_*"], "exclude": ["write_file"]},
            }
        },
    )
    scope = open_scope(config, ws)
    try:
        ready(scope)
        names = {n for n in tools_of(scope) if n.startswith("mcp__fs__")}
        assert "mcp__fs__read_text_file" in names or "mcp__fs__read_file" in names
        assert "mcp__fs__list_directory" in names
        assert "mcp__fs__write_file" not in names
        assert "mcp__fs__create_directory" not in names
    finally:
        scope.close()


def test_approval_policies(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(
        hermes_home,
        ws,
        {
            "ev": {
                "command": str(EVERYTHING),
                "args": ["stdio"],
                "tool_approval": {"get-sum": "deny"},
            }
        },
        approvals={"mode": "smart"},
    )
    scope = open_scope(config, ws)
    try:
        ready(scope)
        # Default: ask. Nobody to ask -> denied, never run.
        with pytest.raises(ToolError, match="nobody is there"):
            call(scope, "mcp__ev__echo", {"message": "x"}, context(config, ws))
        with pytest.raises(ToolError, match="denied by the configuration"):
            call(scope, "mcp__ev__get-sum", {"a": 1, "b": 2}, context(config, ws))
        user = Answers("no", "always")
        ctx = context(config, ws, user)
        with pytest.raises(ToolError, match="denied by the user"):
            call(scope, "mcp__ev__echo", {"message": "x"}, ctx)
        assert "Echo: y" in call(scope, "mcp__ev__echo", {"message": "y"}, ctx)
        assert "Echo: z" in call(scope, "mcp__ev__echo", {"message": "z"}, ctx)  # always
        assert len(user.questions) == 2 and "'echo' of MCP server 'ev'" in user.questions[0]
        # A secret of hermes' never leaves for a server, whatever the policy.
        (hermes_home / ".env").write_text("SOME_API_KEY=sk-live-abcdef0123456789abcdef\n")
        os.environ["SOME_API_KEY"] = "sk-live-abcdef0123456789abcdef"
        try:
            with pytest.raises(ToolError, match="refused"):
                call(
                    scope,
                    "mcp__ev__echo",
                    {"message": "sk-live-abcdef0123456789abcdef"},
                    ctx,
                )
        finally:
            del os.environ["SOME_API_KEY"]
    finally:
        scope.close()


def test_slow_server_does_not_hold_the_first_turn(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(
        hermes_home,
        ws,
        {
            "slow": misbehaving(env={"SLOW_START": "10"}),
            "ev": {"command": str(EVERYTHING), "args": ["stdio"]},
        },
        mcp={"connect_wait": 1.0},
    )
    scope = open_scope(config, ws)
    try:
        started = time.monotonic()
        asyncio.run(scope.prepare())
        waited = time.monotonic() - started
        # Not held until the slow server is up (10 s); connect_wait is 1 s, the rest of
        # the bound is room for a loaded machine. Its state says the same without a clock.
        assert waited < 8, waited
        states = {s.name: s.state for s in scope.statuses()}
        assert states["slow"] == "connecting"
        status = tools_of(scope)["mcp_servers"].description
        assert "slow: connecting" in status and "never claim" in status
        assert not any(n.startswith("mcp__slow__") for n in tools_of(scope))
        wait_for(lambda: scope.find("slow").state == READY, 60, "the slow server")  # type: ignore[union-attr]
        assert "mcp__slow__add" in tools_of(scope)  # Its tools appear once it is ready.
    finally:
        scope.close()


def test_dies_mid_call_then_reconnects(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto")})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        ctx = context(config, ws)
        started = time.monotonic()
        with pytest.raises(ToolError) as caught:
            call(scope, "mcp__mb__die", {}, ctx)
        assert time.monotonic() - started < 60  # Not the 120 s call timeout.
        assert "mb" in str(caught.value)
        connection = scope.find("mb")
        assert connection is not None
        wait_for(lambda: connection.state != READY or connection.attempts > 1, 60, "the drop")
        wait_for(lambda: connection.state == READY and connection.attempts >= 2, 60, "reconnect")
        assert "3" in call(scope, "mcp__mb__add", {"a": 1, "b": 2}, ctx)
    finally:
        scope.close()


def test_idle_timeout_progress_and_cancellation(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    config = setup(
        hermes_home,
        ws,
        {
            # 3 s without progress: the server reports it every 0.2 s, and a loaded
            # machine must not stall it long enough to look idle (1.5 s did).
            "mb": misbehaving(approval="auto", timeout=3, env={"MARK_DIR": str(ws)}),
            "capped": misbehaving(approval="auto", timeout=3, max_call_time=4.5),
        },
    )
    scope = open_scope(config, ws)
    try:
        ready(scope)
        ctx = context(config, ws)
        started = time.monotonic()
        with pytest.raises(ToolError, match=r"no answer and no progress for 3 s"):
            call(scope, "mcp__mb__hang", {}, ctx)
        # Only tells the idle timeout from the tool's 1000 s hang, with room for load.
        assert time.monotonic() - started < 60
        # The server was told (notifications/cancelled): its handler was interrupted.
        wait_for(lambda: (ws / "cancelled").exists(), 60, "the cancellation")
        # Progress extends the idle timeout: 4.5 s of work with a 3 s timeout succeeds.
        shown: list[str] = []
        ctx.state["notify"] = shown.append
        done = call(scope, "mcp__mb__slow", {"seconds": 4.5, "progress": True}, ctx)
        assert "slept 4.5" in done
        assert any("mb/slow" in line for line in shown)
        # Without progress, the same call is stopped.
        with pytest.raises(ToolError, match="no progress"):
            call(scope, "mcp__mb__slow", {"seconds": 4.5, "progress": False}, ctx)
        # And the absolute cap holds even with progress.
        with pytest.raises(ToolError, match="max_call_time"):
            call(scope, "mcp__capped__slow", {"seconds": 60, "progress": True}, ctx)
        assert "3" in call(scope, "mcp__mb__add", {"a": 1, "b": 2}, ctx)  # Still usable.
    finally:
        scope.close()


def test_caller_cancellation_reaches_the_server(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto", env={"MARK_DIR": str(ws)})})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        ctx = context(config, ws)
        handler = tools_of(scope)["mcp__mb__hang"].handler

        async def interrupt() -> None:
            task = asyncio.ensure_future(handler({}, ctx))
            # Cancelled once the server runs the call (a fixed 1 s could cancel before
            # the request was sent on a loaded machine: nothing for the server to stop).
            async with asyncio.timeout(60):
                while not (ws / "hanging").exists():
                    await asyncio.sleep(0.02)
            assert not task.done()
            task.cancel()  # What Ctrl-C, a gateway /stop or an ACP cancel do.
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(interrupt())
        wait_for(lambda: (ws / "cancelled").exists(), 60, "the cancellation")
    finally:
        scope.close()


def test_changed_definition_is_held_and_list_changed_refreshes(
    hermes_home: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto")})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        ctx = context(config, ws)
        assert "3" in call(scope, "mcp__mb__add", {"a": 1, "b": 2}, ctx)  # First use: pinned.
        connection = scope.find("mb")
        assert connection is not None
        generation = connection.generation
        call(scope, "mcp__mb__mutate", {}, ctx)
        wait_for(lambda: connection.generation > generation, 60, "the refreshed list")
        tools = tools_of(scope)
        assert "mcp__mb__add" not in tools  # Held: not offered ...
        assert "held until the user approves" in asyncio.run(tools["mcp_servers"].handler({}, ctx))
        # ... and `hermes mcp trust` is what brings it back (the CLI test runs it).
        from hermes_agent.mcp import pins

        pins.pin("mb", [t for t in connection.tools if t.name == "add"])
        assert "mcp__mb__add" in tools_of(scope)
    finally:
        scope.close()


def test_flood_is_bounded_and_junk_ignored(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto", env={"FLOOD": "3000"})})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        assert "3" in call(scope, "mcp__mb__add", {"a": 1, "b": 2}, context(config, ws))
        log = hermes_home / "logs" / "mcp" / "mb.log"
        rotated = log.with_name("mb.log.1")
        from hermes_agent.mcp.stdio import LOG_LIMIT

        assert log.stat().st_size <= LOG_LIMIT + 70_000
        assert rotated.exists() and rotated.stat().st_size <= LOG_LIMIT + 70_000
        assert oct(log.stat().st_mode & 0o777) == "0o600"
        assert "not JSON-RPC" in log.read_text()
    finally:
        scope.close()


def test_collisions_and_long_names_end_to_end(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto")})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        tools = tools_of(scope)
        names = [n for n in tools if n.startswith("mcp__mb__")]
        assert len(names) == len(set(names)) == 12
        assert all(len(n) <= 64 for n in names)
        ctx = context(config, ws)
        answers = {call(scope, n, {}, ctx).splitlines()[1] for n in names if "a_b" in n}
        assert answers == {"dotted", "underscored"}  # Both reachable, neither shadowed.
    finally:
        scope.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stopping_leaves_no_child(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto", env={"MARK_DIR": str(ws)})})
    scope = open_scope(config, ws)
    connection = scope.find("mb")
    assert connection is not None
    ready(scope)
    server_pid = connection._stdio.pid
    child = int(call(scope, "mcp__mb__spawn", {}, context(config, ws)).splitlines()[1])
    assert _alive(child) and _alive(server_pid)
    asyncio.run(scope.aclose())
    wait_for(lambda: not _alive(child) and not _alive(server_pid), 60, "the processes to end")
    assert json.loads(json.dumps(scope.statuses()[0].state)) == "stopped"


def test_sampling_only_when_enabled_capped_and_audited(hermes_home: Path, tmp_path: Path) -> None:
    from peers.aimock import Aimock

    ws = tmp_path / "ws"
    fixtures = [{"match": {"userMessage": "say pong"}, "response": {"content": "pong"}}]
    with Aimock(fixtures) as mock:
        config = setup(
            hermes_home,
            ws,
            {
                "allowed": misbehaving(
                    approval="auto", sampling={"enabled": True, "max_tokens_cap": 64}
                ),
                "refused": misbehaving(approval="auto"),
            },
            model={"provider": "custom", "base_url": mock.openai_base_url, "default": "m1"},
        )
        scope = open_scope(config, ws)
        try:
            ready(scope)
            ctx = context(config, ws)
            answer = call(scope, "mcp__allowed__sample", {"prompt": "say pong"}, ctx)
            assert "model said: pong" in answer
            with pytest.raises(ToolError):
                call(scope, "mcp__refused__sample", {"prompt": "say pong"}, ctx)
            journal = mock.journal()
        finally:
            scope.close()
    assert len(journal) == 1  # The refused server never reached the model.
    assert journal[0]["body"]["max_tokens"] == 64  # 50,000 asked, capped.
    audit = (hermes_home / "logs" / "approvals.jsonl").read_text()
    assert '"purpose": "mcp sampling"' in audit and '"server": "allowed"' in audit


def test_a_servers_questions_go_to_the_user_and_collect_nothing(
    hermes_home: Path, tmp_path: Path
) -> None:
    """Elicitation: the user may accept the values the server proposed, or decline; a
    question with a field nobody proposed (a password) is declined without asking, and
    so is every question when nobody can answer."""
    from hermes_agent.mcp import elicitation

    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"ask": misbehaving(approval="auto")})
    scope = open_scope(config, ws)
    questions: list[str] = []

    async def accept(question: str, choices: Any) -> str:
        questions.append(question)
        return elicitation.ACCEPT

    try:
        ready(scope)
        ctx = context(config, ws)
        ctx.ask = accept
        assert "accept" in call(scope, "mcp__ask__confirm", {}, ctx)
        assert "blue" in call(scope, "mcp__ask__confirm", {}, ctx)
        assert len(questions) == 2 and "'ask' asks: Deploy" in questions[0]
        assert "colour='blue'" in questions[0]
        assert "\ndecline: None" in call(scope, "mcp__ask__phish", {}, ctx)
        assert len(questions) == 2  # Not even asked.
        nobody = context(config, ws)  # Its ask is nobody_to_ask.
        assert "\ndecline: None" in call(scope, "mcp__ask__confirm", {}, nobody)
    finally:
        scope.close()
    audit = (hermes_home / "logs" / "approvals.jsonl").read_text()
    assert audit.count('"purpose": "mcp elicitation"') == 4


def test_a_servers_question_is_never_shown_to_another_user(
    hermes_home: Path, tmp_path: Path
) -> None:
    """Calls of two users run on one server: the protocol does not say which call its
    question is about, so it is declined and neither user is asked; alone, one is."""
    from hermes_agent.mcp import elicitation

    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"ask": misbehaving(approval="auto")})
    scope = open_scope(config, ws)
    alice, bob = Answers(elicitation.ACCEPT), Answers(elicitation.ACCEPT)

    async def side_by_side() -> Any:
        tools = tools_of(scope)
        slow = tools["mcp__ask__slow"].handler(
            {"seconds": 3, "progress": False}, context(config, ws, bob)
        )
        running = asyncio.ensure_future(slow)
        await asyncio.sleep(0.3)
        asked = await tools["mcp__ask__confirm"].handler({"wait": 1}, context(config, ws, alice))
        assert not running.done()  # Bob's call was running when the question came.
        await running
        return asked

    try:
        ready(scope)
        assert "\naccept: " in call(scope, "mcp__ask__confirm", {}, context(config, ws, alice))
        assert "\ndecline: None" in asyncio.run(side_by_side())
        assert len(alice.questions) == 1 and bob.questions == []
    finally:
        scope.close()
    audit = (hermes_home / "logs" / "approvals.jsonl").read_text()
    assert "calls of several users are running" in audit


def test_oauth_server_without_tokens_needs_login(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"notes": {"url": "http://127.0.0.1:9/mcp", "auth": "oauth"}})
    scope = open_scope(config, ws)
    try:
        asyncio.run(scope.prepare())
        (status,) = scope.statuses()
        assert status.state == "needs-login", status
        assert "hermes mcp login notes" in status.reason
        assert "notes: needs-login" in tools_of(scope)["mcp_servers"].description
    finally:
        scope.close()


def test_legacy_sse_server(hermes_home: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(EVERYTHING), "sse"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ws = tmp_path / "ws"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        config = setup(
            hermes_home,
            ws,
            {
                "old": {
                    "url": f"http://127.0.0.1:{port}/sse",
                    "transport": "sse",
                    "approval": "auto",
                }
            },
        )
        scope = open_scope(config, ws)
        try:
            ready(scope)
            assert "Echo: sse" in call(
                scope, "mcp__old__echo", {"message": "sse"}, context(config, ws)
            )
        finally:
            scope.close()
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_both_protocol_eras(hermes_home: Path, tmp_path: Path, http_everything: str) -> None:
    """The Python SDK's HTTP server speaks 2026-07-28 (discover); the npm one the handshake."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(MISBEHAVING)],
        env={**os.environ, "HTTP_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ws = tmp_path / "ws"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        config = setup(
            hermes_home,
            ws,
            {
                "modern": {"url": f"http://127.0.0.1:{port}/mcp", "approval": "auto"},
                "handshake": {"url": http_everything, "approval": "auto"},
                "stdio": misbehaving(approval="auto"),
            },
        )
        scope = open_scope(config, ws)
        try:
            ready(scope)
            versions = {
                c.server.name: c.client.protocol_version if c.client else ""
                for c in scope.connections
            }
            assert versions["modern"] == "2026-07-28"
            assert versions["handshake"].startswith("2025-")
            assert versions["stdio"].startswith("2025-")  # Never probed with discover.
            ctx = context(config, ws)
            assert "5" in call(scope, "mcp__modern__add", {"a": 2, "b": 3}, ctx)
            assert "Echo: e" in call(scope, "mcp__handshake__echo", {"message": "e"}, ctx)
        finally:
            scope.close()
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _serve_http(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "the HTTP MCP server did not start"
            time.sleep(0.05)


def test_http_server_that_goes_away_is_reported_and_reconnected(
    hermes_home: Path, tmp_path: Path
) -> None:
    port = free_port()
    proc = _serve_http(port)
    ws = tmp_path / "ws"
    config = setup(
        hermes_home,
        ws,
        {"web": {"url": f"http://127.0.0.1:{port}/mcp", "approval": "auto", "timeout": 90}},
    )
    scope = open_scope(config, ws)
    try:
        ready(scope)
        ctx = context(config, ws)
        assert "Echo: a" in call(scope, "mcp__web__echo", {"message": "a"}, ctx)
        os.killpg(proc.pid, 9)
        proc.wait()
        started = time.monotonic()
        with pytest.raises(ToolError, match="web"):
            call(scope, "mcp__web__echo", {"message": "b"}, ctx)
        # An error, not a hang until the 90 s timeout (room for a loaded machine).
        assert time.monotonic() - started < 45
        connection = scope.find("web")
        assert connection is not None
        wait_for(lambda: connection.state != READY, 60, "the drop to be noticed")
        assert "mcp__web__echo" not in tools_of(scope)  # No longer offered while down.
        proc = _serve_http(port)
        wait_for(lambda: connection.state == READY, 90, "the reconnect")
        assert "Echo: c" in call(scope, "mcp__web__echo", {"message": "c"}, ctx)
    finally:
        scope.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


def test_too_many_tools_are_capped_and_said(hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    config = setup(hermes_home, ws, {"mb": misbehaving(approval="auto")}, mcp={"max_tools": 4})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        tools = tools_of(scope)
        assert len([n for n in tools if n.startswith("mcp__mb__")]) == 4
        assert "not offered" in tools["mcp_servers"].description
        status = asyncio.run(tools["mcp_servers"].handler({}, context(config, ws)))
        assert "8 of its tools not offered" in status and "tools.include" in status
    finally:
        scope.close()
