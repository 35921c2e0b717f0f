"""The terminal toolset with real processes: output, exit codes, timeouts, background jobs.

Every test runs real bash commands in a temporary workspace through the tool
handlers (or :func:`dispatch`, for argument validation), with a real
config.yaml and state.db. The ssh backend runs against Debian's OpenSSH server
started on 127.0.0.1 by the test (tests/peers/sshd.py); the docker backend can
only be checked as the command line it builds, because the test machines have
no Docker engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import select
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from hermes_agent.config.loader import load_config
from hermes_agent.providers.base import ToolCall
from hermes_agent.state.db import StateDB
from hermes_agent.tools import terminal as term
from hermes_agent.tools.registry import ToolContext, ToolError, builtin_registry, dispatch
from peers.sshd import SSHServer, SSHServerError


class User:
    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    async def __call__(self, question: str, choices: Sequence[str]) -> str | None:
        self.questions.append(question)
        return self.answers.pop(0) if self.answers else None


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def configure(hermes_home: Path, **settings: Any) -> None:
    """Write config.yaml from dotted keys (``terminal.timeout=5``)."""
    tree: dict[str, Any] = {}
    for dotted, value in settings.items():
        node = tree
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    hermes_home.mkdir(parents=True, exist_ok=True)
    (hermes_home / "config.yaml").write_text(yaml.safe_dump(tree))


@pytest.fixture
def make_ctx(hermes_home: Path, workspace: Path) -> Iterator[Any]:
    contexts: list[ToolContext] = []

    def make(user: User | None = None, **settings: Any) -> ToolContext:
        configure(hermes_home, **settings)
        ctx = ToolContext("s", str(workspace), load_config(), StateDB(), ask=user or User())
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        term.cleanup(ctx.state)
        ctx.db.close()


def run(ctx: ToolContext, command: str, **args: Any) -> str:
    return asyncio.run(term.terminal({"command": command, **args}, ctx))


def roomy_timeout(ctx: ToolContext, least: int = 1) -> int:
    """A tool timeout (whole seconds) that leaves a command time to start here right now:
    five times what running ``true`` takes. A test that needs its command running when
    the timeout fires must not lose that race on a loaded 2-core CI machine."""
    started = time.monotonic()
    assert "[exit code 0 · " in run(ctx, "true")
    return max(least, math.ceil(5 * (time.monotonic() - started)))


def proc_tool(ctx: ToolContext, action: str, **args: Any) -> str:
    return asyncio.run(term.process({"action": action, **args}, ctx))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, seconds: float = 30.0) -> bool:
    """Whether ``pid`` is gone within ``seconds`` (a bound for a loaded 2-core CI machine,
    not a speed claim: it returns as soon as the process is gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_pid_file(path: Path, seconds: float = 60.0) -> int:
    """The pid a command wrote to ``path``, once it has (starting bash through the sandbox
    or ssh can take seconds on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"the command never wrote {path}")


async def wait_pid_file_async(path: Path, seconds: float = 60.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        await asyncio.sleep(0.05)
    raise AssertionError(f"the command never wrote {path}")


# --- foreground -------------------------------------------------------------------------


def test_output_exit_code_and_duration(make_ctx: Any) -> None:
    ctx = make_ctx()
    out = run(ctx, "echo one; echo two >&2; echo three; exit 3")
    assert out.splitlines()[:3] == ["one", "two", "three"]  # interleaved as written
    assert "[exit code 3 · " in out and out.rstrip().endswith(" s]")
    assert "exit code 0" in run(ctx, "true")
    assert run(ctx, "true").startswith("(no output)")


def test_commands_run_in_the_workspace(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()
    out = run(ctx, "pwd && touch made-here")
    assert out.splitlines()[0] == str(workspace)
    assert (workspace / "made-here").exists()


def test_a_killed_command_says_which_signal(make_ctx: Any) -> None:
    assert "[killed by SIGTERM · " in run(make_ctx(), "echo bye; kill -TERM $$")
    # A child killed by a signal: bash reports 128 + the signal number.
    assert "[exit code 143 · " in run(make_ctx(), "sh -c 'kill -TERM $$'; exit $?")


def test_a_command_that_never_ends_is_killed_at_the_timeout(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx(terminal__timeout=60)
    timeout = roomy_timeout(ctx)
    started = time.monotonic()
    with pytest.raises(ToolError, match=rf"timed out after {timeout} s") as info:
        run(ctx, "echo started; sleep 300 & echo $! > child.pid; sleep 300", timeout=timeout)
    assert time.monotonic() - started < 60  # At the timeout, not when the command ends.
    assert "started" in str(info.value)
    assert "process group was killed" in str(info.value)
    child = int((workspace / "child.pid").read_text())
    assert wait_dead(child), "the background child of the command survived the timeout"


def test_a_command_ignoring_sigterm_is_killed_anyway(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()
    timeout = roomy_timeout(ctx)
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        command = "trap '' TERM; echo $$ > shell.pid; while true; do sleep 0.1; done"
        run(ctx, command, timeout=timeout)
    assert time.monotonic() - started < 60  # It never ends by itself.
    assert wait_dead(int((workspace / "shell.pid").read_text()))


def test_the_timeout_comes_from_config(make_ctx: Any) -> None:
    ctx = make_ctx(terminal__timeout=1)
    with pytest.raises(ToolError, match="timed out after 1 s"):
        run(ctx, "sleep 30", timeout=100)  # a call cannot raise the configured limit


def test_huge_output_keeps_head_and_tail(make_ctx: Any) -> None:
    ctx = make_ctx(terminal__max_output_chars=2000)
    out = run(ctx, "seq 1 1000000")
    assert out.startswith("1\n2\n3\n")
    assert "999999\n1000000\n" in out
    assert "bytes of output left out (6,888,896 in all)" in out
    assert len(out) < 2600
    assert "exit code 0" in out


def test_binary_and_colour_output_becomes_text(make_ctx: Any) -> None:
    ctx = make_ctx()
    out = run(ctx, r"printf '\033[31mred\033[0m \377\376 ok\n'")
    assert out.startswith("red \ufffd\ufffd ok")


def test_processes_left_behind_are_stopped(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()
    started = time.monotonic()
    out = run(ctx, "sleep 300 & echo $! > stray.pid; echo done")
    assert time.monotonic() - started < 60  # Not when the stray ends (300 s).
    assert "done" in out and "left running in the background were stopped" in out
    assert wait_dead(int((workspace / "stray.pid").read_text()))


def test_interrupting_the_turn_kills_the_command(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()

    async def scenario() -> int:
        task = asyncio.ensure_future(term.terminal({"command": "echo $$ > me.pid; sleep 300"}, ctx))
        # Interrupted while it runs: once it has said so (not after a fixed time, which on
        # a loaded machine can end before the sandbox has started bash at all).
        pid = await wait_pid_file_async(workspace / "me.pid")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    assert wait_dead(asyncio.run(scenario()))


@pytest.mark.parametrize("loop_runs_on", [True, False], ids=["loop-runs-on", "loop-closed"])
def test_a_command_whose_start_is_interrupted_does_not_run_on(loop_runs_on: bool) -> None:
    """Cancelled while the spawner is still starting it, the command is stopped when its
    start is reported (whether the event loop still runs then or has been closed),
    instead of running unowned until hermes exits."""
    from hermes_agent.safety import spawner

    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)

    def ended() -> bool:
        # The pipe reads end-of-file once nothing holds its write end: the command (the
        # spawner starts it anyway) has been killed.
        ready, _, _ = select.select([read_end], [], [], 60)
        return bool(ready) and os.read(read_end, 1) == b""

    async def scenario() -> bool | None:
        task = asyncio.ensure_future(
            spawner.spawn_async(
                ["sleep", "300"],
                "/",
                {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=devnull,
                stdout=write_end,
                stderr=write_end,
                ruleset=-1,
            )
        )
        await asyncio.sleep(0)  # The request (and the descriptors) are sent; no answer yet.
        os.close(write_end)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.to_thread(ended) if loop_runs_on else None

    try:
        result = asyncio.run(scenario())
        assert result if loop_runs_on else ended(), "the interrupted command runs on"
    finally:
        os.close(read_end)
        os.close(devnull)


def test_a_cancellation_that_comes_with_the_spawners_answer_is_not_lost() -> None:
    """The answer is in (the event loop has yet to hand it over) when the turn is
    interrupted: the interruption must win and the command be stopped. Python 3.11's
    asyncio.wait_for returned the answer instead and dropped the cancellation, so the
    interrupted command ran to its end (seen as a hang under load)."""
    from hermes_agent.safety import spawner

    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    helper = spawner._current()
    known = set(helper.children)

    async def scenario() -> None:
        task = asyncio.ensure_future(
            spawner.spawn_async(
                ["sleep", "300"],
                "/",
                {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=devnull,
                stdout=write_end,
                stderr=write_end,
                ruleset=-1,
            )
        )
        await asyncio.sleep(0)  # The request is sent.
        os.close(write_end)
        # Hold the event loop until the reader thread has delivered the answer: it is
        # then queued in the loop, ahead of the task, when the cancellation comes.
        deadline = time.monotonic() + 60
        while not set(helper.children) - known:
            assert time.monotonic() < deadline, "the spawner never answered"
            time.sleep(0.01)
        with helper.lock:  # Delivered under this lock, right after registering it.
            pass
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(scenario())
        ready, _, _ = select.select([read_end], [], [], 60)
        assert ready and os.read(read_end, 1) == b"", "the interrupted command runs on"
    finally:
        os.close(read_end)
        os.close(devnull)


def test_hermes_secrets_are_not_in_the_command_environment(
    make_ctx: Any, hermes_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx()
    (hermes_home / ".env").write_text("HERMES_TEST_API_KEY=abcdefgh12345678\n")
    monkeypatch.setenv("HERMES_TEST_API_KEY", "abcdefgh12345678")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    out = run(ctx, 'echo "[$HERMES_TEST_API_KEY] [$UNRELATED_SETTING] [$GIT_TERMINAL_PROMPT]"')
    assert out.splitlines()[0] == "[] [kept] [0]"


def test_a_missing_workspace_is_a_clear_error(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()
    ctx.cwd = str(workspace / "gone")
    with pytest.raises(ToolError, match="does not exist"):
        run(ctx, "ls")


def test_bad_arguments_come_back_as_errors(make_ctx: Any) -> None:
    ctx = make_ctx()
    tools = {t.name: t for t in builtin_registry().select(["terminal"])}
    assert set(tools) == {"terminal", "process"}

    def call(name: str, arguments: dict[str, Any]) -> str:
        result = asyncio.run(dispatch(ToolCall("1", name, json.dumps(arguments)), tools, ctx))
        assert result.is_error
        return result.content

    assert "command" in call("terminal", {})
    assert "command" in call("terminal", {"command": ""})
    assert "timeout" in call("terminal", {"command": "ls", "timeout": 0})
    assert "action" in call("process", {"action": "explode"})
    assert "needs the id" in call("process", {"action": "poll"})
    assert "no background process 'bg9'" in call("process", {"action": "kill", "id": "bg9"})


# --- approval ---------------------------------------------------------------------------


def test_a_denied_command_does_not_run(make_ctx: Any, workspace: Path) -> None:
    user = User("no")
    ctx = make_ctx(user)
    with pytest.raises(ToolError, match="denied by the user"):
        run(ctx, "touch created.txt && rm -rf scratch")
    assert user.questions and "rm -rf scratch" in user.questions[0]
    assert not (workspace / "created.txt").exists()


def test_nobody_to_ask_means_the_command_does_not_run(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx(User(None))
    with pytest.raises(ToolError, match="nobody is there"):
        run(ctx, "touch created.txt; git push --force", background=True)
    assert not (workspace / "created.txt").exists()
    assert proc_tool(ctx, "list") == "no background processes in this session"


def test_a_refused_command_does_not_run_even_with_approvals_off(
    make_ctx: Any, workspace: Path
) -> None:
    ctx = make_ctx(approvals__mode="off")
    with pytest.raises(ToolError, match="refused"):
        run(ctx, "touch created.txt; hermes config set approvals.mode manual")
    assert not (workspace / "created.txt").exists()


def test_an_approved_command_runs_and_is_audited(
    make_ctx: Any, workspace: Path, hermes_home: Path
) -> None:
    ctx = make_ctx(User("yes"))
    (workspace / "scratch").mkdir()
    out = run(ctx, "rm -rf scratch && echo removed")
    assert "removed" in out and not (workspace / "scratch").exists()
    lines = (hermes_home / "logs" / "approvals.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["command"] == "rm -rf scratch && echo removed"


# --- background processes ----------------------------------------------------------------


def test_background_start_poll_wait(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()
    # It runs on until the test creates `go` (not for a fixed time, which a loaded machine
    # can spend before the first poll).
    started = run(
        ctx,
        "echo line1; until [ -e go ]; do sleep 0.05; done; "
        "for i in 2 3; do echo line$i; sleep 0.1; done; echo finished",
        background=True,
    )
    assert started.startswith("started background process bg1 (pid ")
    assert "bg1: running" in proc_tool(ctx, "list")
    deadline = time.monotonic() + 60
    while "line1" not in (first := proc_tool(ctx, "poll", id="bg1")):
        assert time.monotonic() < deadline, first
        time.sleep(0.05)
    assert first.startswith("bg1: running")
    (workspace / "go").touch()
    done = proc_tool(ctx, "wait", id="bg1", timeout=60)
    assert done.startswith("bg1: exit code 0 after")
    assert "finished" in done and "line1" not in done  # only what is new
    assert proc_tool(ctx, "poll", id="bg1").endswith("(no new output)")
    everything = proc_tool(ctx, "read", id="bg1")
    assert all(f"line{i}" in everything for i in (1, 2, 3))


def test_wait_gives_up_at_its_timeout(make_ctx: Any) -> None:
    ctx = make_ctx()
    run(ctx, "sleep 300", background=True)
    started = time.monotonic()
    out = proc_tool(ctx, "wait", id="bg1", timeout=0.5)
    assert time.monotonic() - started < 60  # Not until the command ends (300 s).
    assert out.startswith("bg1: still running") and "after waiting 0.5 s" in out


def test_a_kill_is_a_stop_even_when_closing_stdin_ends_the_command(
    make_ctx: Any, workspace: Path
) -> None:
    """The ssh backend's remote watchdog ends the command as soon as its stdin closes, and
    the local ssh can exit (143) before the kill looks again. That worst case, forced here
    with a real process: closing its stdin returns only once it has exited."""
    ctx = make_ctx()
    launch = term.Launch(
        ["bash", "-c", "read line; exit 143"], str(workspace), term.child_env(), hold_stdin=True
    )
    proc = term.start_background("like the remote watchdog", launch, ctx)
    popen = proc.popen
    assert isinstance(popen, subprocess.Popen) and popen.stdin is not None
    stdin = popen.stdin

    class ClosingWaitsForTheExit:
        def close(self) -> None:
            stdin.close()
            popen.wait(60)

    popen.stdin = ClosingWaitsForTheExit()  # type: ignore[assignment]
    out = proc_tool(ctx, "kill", id=proc.id)
    assert out.startswith(f"{proc.id}: stopped by the process tool (exit code 143)"), out


def test_background_kill_stops_the_whole_group(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx()
    run(ctx, "sleep 300 & echo $! > child.pid; echo up; wait", background=True)
    child = wait_pid_file(workspace / "child.pid")
    out = proc_tool(ctx, "kill", id="bg1")
    assert out.startswith("bg1: stopped by the process tool")
    assert wait_dead(child)
    assert "had already ended" in proc_tool(ctx, "kill", id="bg1")


def test_background_output_is_not_limited_by_the_foreground_timeout(make_ctx: Any) -> None:
    ctx = make_ctx(terminal__timeout=1, terminal__max_output_chars=1000)
    run(ctx, "sleep 1.5; seq 1 100000", background=True)
    out = proc_tool(ctx, "wait", id="bg1", timeout=20)
    assert out.startswith("bg1: exit code 0")
    assert "bytes of output left out" in out and out.rstrip().endswith("100000")


def test_cleanup_ends_every_background_process_of_the_session(make_ctx: Any) -> None:
    ctx = make_ctx()
    run(ctx, "sleep 300", background=True)
    run(ctx, "sleep 300", background=True)
    run(ctx, "true", background=True)
    procs = list(ctx.state[term.STATE_KEY].values())
    log_dir = Path(ctx.state[term.DIR_KEY])
    assert log_dir.is_dir() and oct(log_dir.stat().st_mode & 0o777) == "0o700"
    assert proc_tool(ctx, "wait", id="bg3", timeout=60).startswith("bg3: exit code 0")
    assert term.cleanup(ctx.state) == 2
    assert all(wait_dead(p.popen.pid) for p in procs)
    assert not log_dir.exists()
    assert proc_tool(ctx, "list") == "no background processes in this session"


# --- ssh backend ----------------------------------------------------------------------------


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SSHServer]:
    try:
        server = SSHServer(tmp_path / "sshd").start()
    except SSHServerError as exc:
        pytest.fail(f"the OpenSSH test server could not start: {exc}")
    yield server
    server.stop()


def ssh_settings(server: SSHServer, remote_cwd: Path) -> dict[str, Any]:
    return {
        "terminal__backend": "ssh",
        "terminal__ssh__host": "127.0.0.1",
        "terminal__ssh__port": server.port,
        "terminal__ssh__user": server.user,
        "terminal__ssh__key_file": str(server.key_file),
        "terminal__ssh__known_hosts_file": str(server.known_hosts),
        "terminal__ssh__cwd": str(remote_cwd),
    }


@pytest.mark.peer("sshd")
def test_ssh_backend_runs_commands_on_the_server(
    make_ctx: Any, sshd: SSHServer, tmp_path: Path
) -> None:
    remote = tmp_path / "remote-home"
    remote.mkdir()
    ctx = make_ctx(**ssh_settings(sshd, remote))
    out = run(ctx, 'echo "via $SSH_CONNECTION"; pwd; echo err >&2; exit 4')
    lines = out.splitlines()
    assert lines[0].startswith("via 127.0.0.1 ") and lines[0].endswith(f" {sshd.port}")
    assert lines[1] == str(remote)
    assert "err" in lines and "[exit code 4 · " in out
    run(ctx, "touch made-remotely")
    assert (remote / "made-remotely").exists()


@pytest.mark.peer("sshd")
def test_ssh_backend_timeout_and_background(make_ctx: Any, sshd: SSHServer, tmp_path: Path) -> None:
    ctx = make_ctx(**ssh_settings(sshd, tmp_path))
    # The timeout must leave ssh time to connect and start the remote command, or there
    # is nothing remote to find killed: a few times what a connection takes right now
    # (about 0.3 s on an idle machine, over 1 s on a loaded 2-core one).
    timeout = roomy_timeout(ctx, least=3)
    with pytest.raises(ToolError, match=f"timed out after {timeout} s"):
        run(ctx, "echo $$ > remote.pid; sleep 60 & wait", timeout=timeout)
    # The server is this machine: the remote command must be gone, not left running.
    assert wait_dead(int((tmp_path / "remote.pid").read_text()))
    run(ctx, "for i in 1 2; do echo tick$i; sleep 0.2; done", background=True)
    out = proc_tool(ctx, "wait", id="bg1", timeout=60)
    assert out.startswith("bg1: exit code 0") and "tick1" in out and "tick2" in out
    run(ctx, "echo $$ > bg.pid; exec sleep 300", background=True)
    remote = wait_pid_file(tmp_path / "bg.pid")
    assert proc_tool(ctx, "kill", id="bg2").startswith("bg2: stopped by the process tool")
    assert wait_dead(remote)


@pytest.mark.peer("sshd")
def test_ssh_backend_refuses_a_changed_host_key(
    make_ctx: Any, sshd: SSHServer, tmp_path: Path
) -> None:
    other = SSHServer(tmp_path / "impostor")
    other.host_key.parent.mkdir(parents=True, exist_ok=True)

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other.host_key)], check=True
    )
    wrong = other.host_key.with_suffix(".pub").read_text().split()
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {wrong[0]} {wrong[1]}\n")
    ctx = make_ctx(**ssh_settings(sshd, tmp_path))
    out = run(ctx, "echo should-not-run")
    assert "should-not-run" not in out
    assert "exit code 255" in out
    assert "host key" in out.lower()


@pytest.mark.peer("sshd")
def test_ssh_backend_without_a_key_fails_fast(
    make_ctx: Any, sshd: SSHServer, tmp_path: Path
) -> None:
    settings = ssh_settings(sshd, tmp_path)
    settings["terminal__ssh__key_file"] = str(tmp_path / "no-such-key")
    settings["terminal__ssh__user"] = "nobody-here"
    ctx = make_ctx(**settings)
    started = time.monotonic()
    out = run(ctx, "echo hi")
    assert time.monotonic() - started < 60  # BatchMode: no password prompt to hang on
    assert "exit code 255" in out and "Permission denied" in out


def test_ssh_command_line() -> None:
    argv = term.ssh_argv(
        "echo 'a b' && ls",
        host="example.org",
        user="me",
        port=2222,
        key_file="~/.ssh/id_test",
        known_hosts_file="/tmp/kh",
        remote_cwd="/srv/my app",
    )
    assert (
        argv[0] == "ssh" and "BatchMode=yes" in argv and "StrictHostKeyChecking=accept-new" in argv
    )
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-l") + 1] == "me"
    assert argv[argv.index("-i") + 1] == os.path.expanduser("~/.ssh/id_test")
    assert "UserKnownHostsFile=/tmp/kh" in argv
    assert argv[-3:-1] == ["--", "example.org"]
    assert argv[-1] == term.remote_script("echo 'a b' && ls", "/srv/my app")


def test_the_remote_script_runs_the_command_and_stops_it_when_the_link_drops(
    tmp_path: Path,
) -> None:
    """The ssh backend's remote side, run here with bash: status, cwd, and the watchdog."""

    script = term.remote_script("pwd; echo out; echo err >&2; exit 7", str(tmp_path))
    # stdin stays open while the command runs, as the local ssh client keeps it.
    done = subprocess.Popen(
        ["bash", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert done.wait(60) == 7
    assert done.stdout is not None and done.stderr is not None and done.stdin is not None
    assert done.stdout.read().splitlines() == [str(tmp_path), "out"]
    assert done.stderr.read() == "err\n"
    done.stdin.close()
    # The link drops (stdin closes) while the command runs: its process group is killed.
    pid_file = tmp_path / "cmd.pid"
    watched = subprocess.Popen(
        ["bash", "-c", term.remote_script(f"sleep 300 & echo $! > {pid_file}; wait")],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    child = wait_pid_file(pid_file)
    assert watched.stdin is not None
    watched.stdin.close()
    assert watched.wait(60) != 0
    assert wait_dead(child)


def test_ssh_backend_needs_a_host(make_ctx: Any) -> None:
    ctx = make_ctx(terminal__backend="ssh")
    with pytest.raises(ToolError, match=r"terminal\.ssh\.host is not set"):
        run(ctx, "ls")
    [tool] = [t for t in term.TOOLS if t.name == "terminal"]
    assert tool.unavailable is not None
    assert "terminal.ssh.host" in (tool.unavailable(ctx.config) or "")


# --- docker backend (the command line only: no Docker engine here) -------------------------


def test_docker_run_command_line() -> None:
    argv = term.docker_argv(
        "make test",
        image="python:3.11-slim",
        cwd="/home/me/project",
        name="hermes-abc",
        env={"CI": "1"},
    )
    assert argv == [
        "docker",
        "run",
        "--rm",
        "-i",
        "--init",
        "--name",
        "hermes-abc",
        "-v",
        "/home/me/project:/workspace",
        "-w",
        "/workspace",
        "-e",
        "CI=1",
        "python:3.11-slim",
        "bash",
        "-c",
        "make test",
    ]


def test_docker_exec_command_line() -> None:
    assert term.docker_argv("ls -la", container="dev", cwd="/src") == [
        "docker",
        "exec",
        "-i",
        "-w",
        "/src",
        "dev",
        "bash",
        "-c",
        "ls -la",
    ]
    with pytest.raises(ToolError, match=r"image or terminal\.docker\.container"):
        term.docker_argv("ls")


def test_docker_backend_plan(make_ctx: Any, workspace: Path) -> None:
    ctx = make_ctx(terminal__backend="docker", terminal__docker__image="debian:12")
    launch = term.plan("echo hi", ctx)
    assert launch.argv[:5] == ["docker", "run", "--rm", "-i", "--init"]
    assert launch.container_name.startswith("hermes-")
    assert launch.argv[launch.argv.index("--name") + 1] == launch.container_name
    assert f"{workspace}:/workspace" in launch.argv
    assert launch.argv[-4:] == ["debian:12", "bash", "-c", "echo hi"]
    ctx = make_ctx(terminal__backend="docker", terminal__docker__container="box")
    assert term.plan("echo hi", ctx).argv == [
        "docker",
        "exec",
        "-i",
        "box",
        "bash",
        "-c",
        "echo hi",
    ]
