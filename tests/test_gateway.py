"""`hermes gateway`: real gateway processes on 127.0.0.1, driven by the official openai SDK.

Each test starts ``hermes gateway run`` in a subprocess with a fresh
HERMES_HOME whose provider is the loopback ScriptedLLM, talks to its HTTP API
platform, and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from conftest import HERMES, Runner, clean_env
from gateway_process import GatewayProcess
from hermes_agent.state.db import StateDB
from peers.daemons import free_port
from peers.llm_server import Error, Hang, Reply, ScriptedLLM

KEY = "test-gateway-key-0123456789"
START_TIMEOUT = 20.0


def configure_home(
    home: Path, llm: ScriptedLLM, port: int, *, key: str | None = KEY, **gateway: Any
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "model": {"provider": "custom", "base_url": llm.openai_base_url, "default": "test-model"},
        "gateway": {
            "max_concurrent_sessions": 4,
            "platforms": {"api_server": {"enabled": True, "host": "127.0.0.1", "port": port}},
            **gateway,
        },
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    if key is not None:
        (home / ".env").write_text(f"API_SERVER_KEY={key}\n")


class Gateway(GatewayProcess):
    """One `hermes gateway run` process with the HTTP API on ``port``."""

    def __init__(self, home: Path, port: int, workdir: Path, *args: str) -> None:
        super().__init__(home, workdir, *args)
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Gateway:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(
                    f"{self.base_url}/models",
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=1,
                )
                if answer.status_code == 200 and self.pid_file_pid() == self.proc.pid:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready:\n{self.output()}")

    def pid_file_pid(self) -> int | None:
        try:
            return int((self.home / "gateway.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def client(self, key: str = KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kwargs)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def start(hermes_home: Path, workdir: Path, llm: ScriptedLLM) -> Iterator[Any]:
    """start(*args) -> a ready Gateway on a fresh port (configured on first use)."""
    started: list[Gateway] = []
    port = free_port()

    def go(*args: str, ready: bool = True, **gateway_settings: Any) -> Gateway:
        if not (hermes_home / "config.yaml").exists():
            configure_home(hermes_home, llm, port, **gateway_settings)
        gateway = Gateway(hermes_home, port, workdir, *args)
        started.append(gateway)
        if ready:
            gateway.wait_ready()
        return gateway

    yield go
    for gateway in started:
        gateway.kill()


def ask(gateway: Gateway, text: str, **kwargs: Any) -> str:
    reply = gateway.client().chat.completions.create(
        model="hermes-agent", messages=[{"role": "user", "content": text}], **kwargs
    )
    return reply.choices[0].message.content or ""


# --- the HTTP API -----------------------------------------------------------------------


def test_non_streaming_answer_through_the_openai_sdk(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Reply("Hello from the agent.", usage=(12, 4)))
    gateway = start()
    reply = gateway.client().chat.completions.create(
        model="hermes-agent",
        messages=[
            {"role": "system", "content": "ignored: the agent has its own"},
            {"role": "user", "content": "hi there"},
        ],
        user="alice",
    )
    assert reply.choices[0].message.content == "Hello from the agent."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 12
    # The model saw the user's text through the agent loop (with its own system prompt).
    sent = llm.requests[-1].messages
    assert sent[-1] == {"role": "user", "content": "hi there"}
    assert "ignored: the agent has its own" not in str(sent)
    with StateDB(gateway.home / "state.db") as db:
        (session,) = db.list_sessions()
        assert session.source == "gateway:api_server"
        assert [m["content"] for m in db.messages(session.id)] == [
            "hi there",
            "Hello from the agent.",
        ]
    assert gateway.terminate() == 0


def test_streaming_answer_through_the_openai_sdk(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Reply("Streamed words arrive in pieces.", chunk_size=5))
    gateway = start()
    stream = gateway.client().chat.completions.create(
        model="hermes-agent",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "Streamed words arrive in pieces."
    assert len(pieces) > 1
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0
    assert gateway.terminate() == 0


def test_models_lists_the_agent(start: Any) -> None:
    gateway = start()
    models = gateway.client().models.list()
    assert [m.id for m in models.data] == ["hermes-agent"]


def test_bearer_key_is_required(start: Any, llm: ScriptedLLM) -> None:
    gateway = start()
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key="wrong-key").models.list()
    with pytest.raises(openai.AuthenticationError):
        ask_with = gateway.client(key="wrong-key")
        ask_with.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "let me in"}]
        )
    answer = httpx.get(f"{gateway.base_url}/models")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert llm.requests == []  # Nothing reached the model.


def test_bad_request_is_a_clear_400(start: Any, llm: ScriptedLLM) -> None:
    gateway = start()
    headers = {"Authorization": f"Bearer {KEY}"}
    answer = httpx.post(
        f"{gateway.base_url}/chat/completions", headers=headers, content=b"{not json"
    )
    assert answer.status_code == 400
    assert "JSON" in answer.json()["error"]["message"]
    answer = httpx.post(
        f"{gateway.base_url}/chat/completions",
        headers=headers,
        json={"model": "m", "messages": [{"role": "system", "content": "no user"}]},
    )
    assert answer.status_code == 400
    assert "user message" in answer.json()["error"]["message"]


def test_api_server_refuses_to_start_without_a_key(
    hermes_home: Path, workdir: Path, llm: ScriptedLLM, hermes: Runner
) -> None:
    configure_home(hermes_home, llm, free_port(), key=None)
    result = hermes("gateway", "run")
    assert result.returncode != 0
    assert "API_SERVER_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (hermes_home / "gateway.pid").exists()
    (hermes_home / ".env").write_text("API_SERVER_KEY=\n")
    result = hermes("gateway", "run")
    assert result.returncode != 0
    assert "API_SERVER_KEY" in result.stderr


def test_no_platform_enabled_is_a_clear_error(hermes: Runner) -> None:
    result = hermes("gateway", "run")
    assert result.returncode == 2
    assert "no platform is enabled and there are no scheduled jobs" in result.stderr


def test_a_gateway_with_only_scheduled_jobs_runs(
    hermes: Runner, hermes_home: Path, workdir: Path
) -> None:
    assert hermes("config", "set", "model.provider", "custom").returncode == 0
    assert hermes("config", "set", "model.base_url", "http://127.0.0.1:9/v1").returncode == 0
    added = hermes("cron", "add", "-s", "0 9 * * *", "-p", "standup notes")
    assert added.returncode == 0, added.stderr
    log = workdir / "cron-only.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(HERMES), "gateway", "run"],
            env=clean_env(hermes_home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while "gateway running" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
            assert "scheduler started (1 jobs" in log.read_text()
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0


# --- conversations, queue and routing -----------------------------------------------------


def test_user_field_selects_the_conversation(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Reply("First."), Reply("Second."), Reply("Other."))
    gateway = start()
    assert ask(gateway, "remember heron", user="alice") == "First."
    assert ask(gateway, "what word?", user="alice") == "Second."
    client = gateway.client()
    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-Hermes-Session": "bob"},
    )
    assert reply.choices[0].message.content == "Other."
    # Alice's second call carried her first exchange; Bob's did not.
    second = str(llm.requests[1].messages)
    assert "remember heron" in second and "First." in second
    assert "remember heron" not in str(llm.requests[2].messages)
    with StateDB(gateway.home / "state.db") as db:
        assert len(db.list_sessions()) == 2


def test_new_starts_a_fresh_conversation_for_that_chat(start: Any, llm: ScriptedLLM) -> None:
    from hermes_agent.gateway.runner import NEW_SESSION_REPLY

    llm.add(Reply("Noted."), Reply("For bob."), Reply("Fresh."))
    gateway = start()
    assert ask(gateway, "remember heron", user="alice") == "Noted."
    assert ask(gateway, "hello", user="bob") == "For bob."
    assert ask(gateway, "/new", user="alice") == NEW_SESSION_REPLY
    assert ask(gateway, "what word?", user="alice") == "Fresh."
    assert len(llm.requests) == 3  # /new itself is not sent to the model.
    assert "remember heron" not in str(llm.requests[2].messages)
    with StateDB(gateway.home / "state.db") as db:
        sessions = db.list_sessions()
        assert len(sessions) == 3  # Alice's first, Bob's, Alice's new one.
        first = [s for s in sessions if s.message_count == 2 and s.title == "remember heron"]
        assert len(first) == 1  # The earlier conversation is kept.
        assert db.route("api_server", "bob") != db.route("api_server", "alice")


def test_only_a_bare_command_starts_a_new_conversation() -> None:
    from hermes_agent.gateway.runner import is_new_session_command

    assert is_new_session_command("/new")
    assert is_new_session_command(" /RESET \n")
    assert is_new_session_command("/new@HermesBot")
    assert not is_new_session_command("/new plan for today")
    assert not is_new_session_command("what does /new do?")
    assert not is_new_session_command("/newest")


def test_repeated_message_id_is_answered_once(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Reply("Only once."))
    gateway = start()
    headers = {"Idempotency-Key": "platform-msg-42"}
    first = ask(gateway, "do it", user="carol", extra_headers=headers)
    again = ask(gateway, "do it", user="carol", extra_headers=headers)
    assert first == again == "Only once."
    assert len(llm.requests) == 1
    with StateDB(gateway.home / "state.db") as db:
        (session,) = db.list_sessions()
        assert [m["role"] for m in db.messages(session.id)] == ["user", "assistant"]


def test_restart_answers_a_pending_message(hermes_home: Path, start: Any, llm: ScriptedLLM) -> None:
    from hermes_agent.gateway.platforms.api_server import caller_of, idempotent_message_id

    llm.add(Reply("Answered after the restart."))
    message_id = idempotent_message_id(caller_of(KEY), "dave", "left-over-1")
    with StateDB(hermes_home / "state.db") as db:
        row, new = db.add_inbound(
            platform="api_server", chat_id="dave", message_id=message_id, text="still there?"
        )
        assert new and row.status == "pending"
    gateway = start()
    deadline = time.monotonic() + 15
    with StateDB(hermes_home / "state.db") as db:
        while time.monotonic() < deadline:
            stored = db.get_inbound(row.id)
            assert stored is not None
            if stored.status == "done":
                break
            time.sleep(0.05)
        assert stored.status == "done"
        assert stored.reply == "Answered after the restart."
        assert stored.session_id is not None
        texts = [m["content"] for m in db.messages(stored.session_id)]
        assert texts == ["still there?", "Answered after the restart."]
    # The client that sent it can fetch the answer by repeating the message id.
    again = ask(
        gateway, "still there?", user="dave", extra_headers={"Idempotency-Key": "left-over-1"}
    )
    assert again == "Answered after the restart."
    assert len(llm.requests) == 1


def test_a_slow_chat_does_not_block_another(start: Any, llm: ScriptedLLM) -> None:
    # The first request waits at the model until the second has been answered (not for a
    # fixed 4 s that a loaded machine can spend on the second): were chats answered one
    # after another, the first would give up waiting and say so.
    release = threading.Event()

    def slow_model(request: Any) -> Reply:
        return Reply("Slow answer." if release.wait(60) else "Nobody answered the other.")

    llm.add(slow_model, Reply("Fast answer."))
    gateway = start()
    results: dict[str, str] = {}

    def slow() -> None:
        results["slow"] = ask(gateway, "take your time", user="slow-chat")

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 60
    while not llm.requests:
        assert time.monotonic() < deadline, "the first question never reached the model"
        time.sleep(0.02)
    assert ask(gateway, "quick one", user="fast-chat") == "Fast answer."
    assert "slow" not in results
    release.set()
    thread.join(timeout=60)
    assert results["slow"] == "Slow answer."


# --- the process ---------------------------------------------------------------------------


def test_pid_file_lifecycle_and_status_stop(start: Any, hermes: Runner) -> None:
    assert hermes("gateway", "status").returncode == 1
    gateway = start()
    pid_file = gateway.home / "gateway.pid"
    assert pid_file.read_text() == f"{gateway.proc.pid}\n"
    status = hermes("gateway", "status")
    assert status.returncode == 0
    assert f"pid {gateway.proc.pid}" in status.stdout
    second = hermes("gateway", "run")
    assert second.returncode == 1
    assert "already running" in second.stderr and "--replace" in second.stderr
    stop = hermes("gateway", "stop")
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    assert gateway.proc.wait(timeout=10) == 0
    assert not pid_file.exists()
    assert hermes("gateway", "status").returncode == 1
    assert hermes("gateway", "stop").returncode == 1
    log = (gateway.home / "logs" / "gateway.log").read_text()
    assert "gateway running" in log and "gateway stopped" in log


def test_stale_pid_file_is_ignored(hermes_home: Path, start: Any, hermes: Runner) -> None:
    hermes_home.mkdir()
    (hermes_home / "gateway.pid").write_text("999999999\n")
    assert hermes("gateway", "status").returncode == 1
    gateway = start()
    assert gateway.pid_file_pid() == gateway.proc.pid


def test_replace_takes_over(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Reply("From the new one."))
    old = start()
    new = start("--replace")
    assert old.proc.wait(timeout=60) == 0
    assert new.pid_file_pid() == new.proc.pid
    assert ask(new, "who answers?") == "From the new one."
    assert new.terminate() == 0
    assert not (new.home / "gateway.pid").exists()


def test_sigterm_finishes_the_running_answer(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Hang(2, then=Reply("Finished despite SIGTERM.")))
    gateway = start()
    results: dict[str, Any] = {}

    def client() -> None:
        try:
            results["answer"] = ask(gateway, "long job", user="erin")
        except Exception as exc:  # Reported by the assertion below.
            results["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 10
    while not llm.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(gateway.proc.pid, signal.SIGTERM)
    thread.join(timeout=20)
    assert results.get("answer") == "Finished despite SIGTERM.", results
    assert gateway.proc.wait(timeout=20) == 0
    assert not (gateway.home / "gateway.pid").exists()
    with StateDB(gateway.home / "state.db") as db:
        assert db.unfinished_inbound() == []


def test_sigterm_keeps_an_unfinished_answer_for_the_next_start(
    start: Any, llm: ScriptedLLM
) -> None:
    # The model hangs longer than gateway.shutdown_timeout allows.
    llm.add(Hang(30, then=Reply("Never sent.")), Reply("Answered after the restart."))
    gateway = start(shutdown_timeout=0.5)
    headers = {"Idempotency-Key": "job-7"}
    results: dict[str, Any] = {}

    def client() -> None:
        try:
            results["answer"] = ask(gateway, "long job", user="fred", extra_headers=headers)
        except openai.APIStatusError as exc:
            results["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 60
    while not llm.requests:
        assert time.monotonic() < deadline, "the question never reached the model"
        time.sleep(0.02)
    began = time.monotonic()
    assert gateway.terminate(timeout=25) == 0
    assert time.monotonic() - began < 25  # Not after the model's 30 s.
    thread.join(timeout=30)
    error = results.get("error")
    assert isinstance(error, openai.APIStatusError) and error.status_code == 503, results
    assert "Idempotency-Key" in str(error)
    with StateDB(gateway.home / "state.db") as db:
        (row,) = db.unfinished_inbound()
        # "processing": the message is in the conversation already; the turn is continued.
        assert row.status == "processing" and row.chat_id == "fred"
    restarted = start()
    again = ask(restarted, "long job", user="fred", extra_headers=headers)
    assert again == "Answered after the restart."
    with StateDB(gateway.home / "state.db") as db:
        assert db.unfinished_inbound() == []
        stored = db.get_inbound(row.id)
        assert stored is not None and stored.session_id is not None
        history = db.messages(stored.session_id)
    # The interrupted turn was finished, not started again: the question is in once.
    assert [m["content"] for m in history if m["role"] == "user"] == ["long job"]
    assert history[-1] == {"role": "assistant", "content": "Answered after the restart."}
    assert llm.requests[-1].messages[-1]["content"] == "long job"


def test_dangerous_command_is_denied_without_anyone_to_approve(
    start: Any, llm: ScriptedLLM, workdir: Path
) -> None:
    victim = workdir / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    llm.add(
        Reply(tool_calls=[("terminal", {"command": f"rm -r {victim}"})]),
        Reply("I was not allowed to delete it."),
    )
    gateway = start()
    assert ask(gateway, "delete the victim folder", user="gina") == (
        "I was not allowed to delete it."
    )
    assert (victim / "keep.txt").read_text() == "precious"
    tool_result = llm.requests[1].messages[-1]
    assert tool_result["role"] == "tool"
    assert "denied: this command needs the user's approval" in tool_result["content"]
    assert "nobody is there" in tool_result["content"]


def test_max_concurrent_sessions_bounds_the_total(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Hang(2, then=Reply("First done.")), Reply("Second done."))
    gateway = start(max_concurrent_sessions=1)
    results: dict[str, float] = {}

    def first() -> None:
        assert ask(gateway, "one", user="chat-1") == "First done."
        results["first"] = time.monotonic()

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 10
    while not llm.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ask(gateway, "two", user="chat-2") == "Second done."
    second = time.monotonic()
    thread.join(timeout=10)
    # Only one conversation at a time: the second waited for the first.
    assert results["first"] <= second


def test_a_failed_answer_is_reported_to_the_client(start: Any, llm: ScriptedLLM) -> None:
    llm.add(Error(400, message="model rejected the request"))
    gateway = start()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway, "break please", user="hank", extra_headers={"Idempotency-Key": "m-1"})
    assert caught.value.status_code == 502
    assert "model rejected the request" in str(caught.value)
    with StateDB(gateway.home / "state.db") as db:
        assert db.unfinished_inbound() == []
        from hermes_agent.gateway.platforms.api_server import caller_of, idempotent_message_id

        stored, new = db.add_inbound(
            platform="api_server",
            chat_id="hank",
            message_id=idempotent_message_id(caller_of(KEY), "hank", "m-1"),
            text="break please",
        )
        assert not new and stored.status == "failed"


def test_port_in_use_is_a_clear_error(hermes_home: Path, llm: ScriptedLLM, hermes: Runner) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        configure_home(hermes_home, llm, busy.getsockname()[1])
        result = hermes("gateway", "run")
    assert result.returncode == 1
    assert "api_server cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (hermes_home / "gateway.pid").exists()
