"""`hermes chat` and `hermes-agent` as a user runs them, against loopback LLM peers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from conftest import HERMES, Runner, clean_env
from helpers import assert_clean_failure
from hermes_agent.state.db import StateDB
from peers.aimock import Aimock
from peers.llm_server import Error, Reply, ScriptedLLM

HERMES_AGENT = HERMES.with_name("hermes-agent")

PLAN_FIXTURES: list[dict[str, Any]] = [
    # After the search result: the final answer (toolCallId fixtures come first).
    {"match": {"toolCallId": "call_search"}, "response": {"content": "Plan ready: pack, then go."}},
    # After the todo result: search earlier sessions.
    {
        "match": {"toolCallId": "call_todo"},
        "response": {
            "toolCalls": [
                {"id": "call_search", "name": "session_search", "arguments": {"query": "trip"}}
            ]
        },
    },
    {
        "match": {"userMessage": "plan my trip"},
        "response": {
            "toolCalls": [
                {
                    "id": "call_todo",
                    "name": "todo",
                    "arguments": {"items": [{"task": "pack"}, {"task": "go"}]},
                }
            ]
        },
    },
]


def chat_args(base_url: str, *extra: str) -> list[str]:
    return ["chat", "--provider", "custom", "--base-url", base_url, "-m", "test-model", *extra]


@pytest.mark.peer("aimock")
def test_one_shot_multi_tool_task_openai_wire(hermes: Runner, hermes_home: Path) -> None:
    with Aimock(PLAN_FIXTURES) as mock:
        result = hermes(*chat_args(mock.openai_base_url, "-q", "plan my trip"))
        journal = mock.journal()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Plan ready: pack, then go.\n"
    assert "⚙ todo(" in result.stderr
    assert "⚙ session_search(" in result.stderr
    assert "✓ todo" in result.stderr and "✓ session_search" in result.stderr
    assert len(journal) == 3
    db = StateDB()
    session = db.list_sessions()[0]
    roles = [m["role"] for m in db.messages(session.id)]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert session.title == "plan my trip"


@pytest.mark.peer("aimock")
def test_one_shot_multi_tool_task_anthropic_wire(hermes: Runner) -> None:
    with Aimock(PLAN_FIXTURES) as mock:
        result = hermes(
            "chat",
            "--provider",
            "anthropic",
            "--base-url",
            mock.anthropic_base_url,
            "-m",
            "claude-sonnet-4-6",
            "-q",
            "plan my trip",
            env={"ANTHROPIC_API_KEY": "sk-ant-test"},
        )
        journal = mock.journal()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Plan ready: pack, then go.\n"
    assert [entry["path"] for entry in journal] == ["/v1/messages"] * 3


@pytest.mark.peer("scripted")
def test_hermes_agent_script_and_stdin(hermes_home: Path, tmp_path: Path) -> None:
    with ScriptedLLM([Reply("Four."), Reply("From stdin.")]) as llm:
        env = clean_env(hermes_home)
        base = ["--provider", "custom", "--base-url", llm.openai_base_url, "-m", "m"]
        first = subprocess.run(
            [str(HERMES_AGENT), *base, "what", "is", "2+2?"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        second = subprocess.run(
            [str(HERMES), "chat", *base, "-q", "-"],
            input="question from a pipe",
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Four.\n"
    assert llm.requests[0].messages[-1] == {"role": "user", "content": "what is 2+2?"}
    assert second.stdout == "From stdin.\n"
    assert llm.requests[1].messages[-1]["content"] == "question from a pipe"
    missing = subprocess.run(
        [str(HERMES_AGENT)], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and "no question" in missing.stderr


@pytest.mark.peer("scripted")
def test_continue_and_resume(hermes: Runner, hermes_home: Path) -> None:
    steps = [Reply("First answer."), Reply("Second answer."), Reply("Third answer.")]
    with ScriptedLLM(steps) as llm:
        url = llm.openai_base_url
        assert hermes(*chat_args(url, "-q", "remember the word heron")).returncode == 0
        assert hermes(*chat_args(url, "-c", "-q", "what was the word?")).returncode == 0
        session = StateDB().list_sessions()[0]
        result = hermes(*chat_args(url, "-r", session.id[:17], "-q", "and again?"))
    assert result.returncode == 0, result.stderr
    sent = [m["content"] for m in llm.requests[2].messages[1:]]
    assert sent == [
        "remember the word heron",
        "First answer.",
        "what was the word?",
        "Second answer.",
        "and again?",
    ]
    assert len(StateDB().list_sessions()) == 1


@pytest.mark.peer("scripted")
def test_non_streaming_config(hermes: Runner, hermes_home: Path) -> None:
    hermes("config", "set", "streaming.enabled", "false")
    with ScriptedLLM([Reply("Whole answer.")]) as llm:
        result = hermes(*chat_args(llm.openai_base_url, "-q", "hi"))
    assert result.stdout == "Whole answer.\n"
    assert llm.requests[0].body.get("stream") in (None, False)


def test_missing_key_names_the_variable_and_setup(hermes: Runner) -> None:
    result = hermes("chat", "-q", "hi")
    assert_clean_failure(result, 1)
    assert result.stderr == (
        "hermes: OPENROUTER_API_KEY is not set, so OpenRouter cannot be used. "
        "Run `hermes setup`, or `hermes config set OPENROUTER_API_KEY YOUR_KEY`.\n"
    )


@pytest.mark.peer("scripted")
def test_invalid_key(hermes: Runner) -> None:
    with ScriptedLLM([Error(401)]) as llm:
        result = hermes(
            "chat",
            "--provider",
            "openai",
            "--base-url",
            llm.openai_base_url,
            "-q",
            "hi",
            env={"OPENAI_API_KEY": "sk-wrong"},
        )
    assert_clean_failure(result, 1)
    assert "OpenAI rejected the API key in OPENAI_API_KEY (HTTP 401" in result.stderr
    assert "sk-wrong" not in result.stderr


@pytest.mark.peer("scripted")
def test_unknown_model(hermes: Runner) -> None:
    with ScriptedLLM([Error(404)]) as llm:
        result = hermes(*chat_args(llm.openai_base_url, "-q", "hi"))
    assert_clean_failure(result, 1)
    assert "model 'test-model' not found at http://127.0.0.1:" in result.stderr


def test_unreachable_base_url(hermes: Runner) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = hermes(*chat_args(f"http://127.0.0.1:{port}/v1", "-q", "hi"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"hermes: cannot reach http://127.0.0.1:{port}/v1")
    assert f"cannot reach http://127.0.0.1:{port}/v1" in result.stderr
    assert result.stderr.count("retrying") == 3, "retried before giving up"


def test_bad_chat_inputs(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("chat", "--provider", "nope", "-q", "x")
    assert_clean_failure(result, 2)
    assert "unknown provider 'nope'" in result.stderr
    result = hermes(*chat_args("http://127.0.0.1:9/v1", "--toolsets", "todo,bogus", "-q", "x"))
    assert_clean_failure(result, 2)
    assert "unknown toolset bogus" in result.stderr
    result = hermes(*chat_args("http://127.0.0.1:9/v1", "-r", "nosuchid", "-q", "x"))
    assert_clean_failure(result, 2)
    result = hermes(*chat_args("http://127.0.0.1:9/v1", "-c", "-q", "x"))
    assert_clean_failure(result, 2)
    assert "no earlier session to continue" in result.stderr
    result = hermes(*chat_args("http://127.0.0.1:9/v1"))
    assert_clean_failure(result, 2)
    assert "needs a terminal" in result.stderr
    result = hermes(*chat_args("http://127.0.0.1:9/v1", "-q", "  "))
    assert_clean_failure(result, 2)


@pytest.mark.peer("scripted")
def test_max_turns_exits_non_zero(hermes: Runner, hermes_home: Path) -> None:
    hermes("config", "set", "agent.max_turns", "1")
    with ScriptedLLM([Reply(tool_calls=[("todo", {})])]) as llm:
        result = hermes(*chat_args(llm.openai_base_url, "-q", "loop"))
    assert result.returncode == 1
    assert "limit of 1 model calls" in result.stderr
    assert result.stdout == ""


# --- the interactive session, through a real pseudo-terminal -------------------------


PROMPT = "❯"


def spawn_chat(home: Path, cwd: Path, base_url: str, *extra: str) -> pexpect.spawn:
    return pexpect.spawn(
        str(HERMES),
        chat_args(base_url, *extra),
        env=clean_env(home, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1"),
        cwd=str(cwd),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )


@pytest.mark.peer("scripted")
def test_repl_conversation_and_commands(hermes_home: Path, tmp_path: Path) -> None:
    steps = [
        Reply(tool_calls=[("todo", {"items": [{"task": "write tests"}]})], usage=(120, 9)),
        Reply("All **planned**.", usage=(150, 5)),
        Reply("Second reply."),
    ]
    with ScriptedLLM(steps) as llm:
        child = spawn_chat(hermes_home, tmp_path, llm.openai_base_url)
        child.expect_exact(PROMPT)
        child.sendline("/help")
        child.expect_exact("/compress")
        child.expect_exact(PROMPT)
        child.sendline("plan the work")
        child.expect_exact("todo")
        child.expect_exact("planned")
        child.expect_exact(PROMPT)
        child.sendline("/usage")
        child.expect_exact("tokens in 270")
        child.expect_exact(PROMPT)
        child.sendline("/tools")
        child.expect_exact("session_search")
        child.expect_exact(PROMPT)
        child.sendline("/nonsense")
        child.expect_exact("unknown command /nonsense")
        child.expect_exact(PROMPT)
        child.sendline("/new")
        child.expect_exact("new session")
        child.expect_exact(PROMPT)
        child.sendline("again")
        child.expect_exact("Second reply.")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    assert llm.requests[2].messages[-1] == {"role": "user", "content": "again"}
    assert len(llm.requests[2].messages) == 2, "/new started an empty conversation"
    assert len(StateDB().list_sessions()) == 2
    history = (hermes_home / "chat_history").stat()
    assert history.st_mode & 0o077 == 0


@pytest.mark.peer("scripted")
def test_repl_ctrl_c_stops_the_answer_not_the_session(hermes_home: Path, tmp_path: Path) -> None:
    from peers.llm_server import Hang

    with ScriptedLLM([Hang(20), Reply("Still here.")]) as llm:
        child = spawn_chat(hermes_home, tmp_path, llm.openai_base_url)
        child.expect_exact(PROMPT)
        child.sendline("slow one")
        child.expect_exact("thinking")
        child.sendintr()
        child.expect_exact("stopped")
        child.expect_exact(PROMPT)
        child.sendline("are you there?")
        child.expect_exact("Still here.")
        child.expect_exact(PROMPT)
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    sent = [m["content"] for m in llm.requests[1].messages[1:]]
    assert sent == ["slow one", "are you there?"]


def test_sdk_is_not_imported_before_the_first_message() -> None:
    code = (
        "import sys\n"
        "from hermes_agent.cli import chat, terminal_ui\n"
        "from hermes_agent.agent import loop\n"
        "from hermes_agent.providers import settings\n"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.peer("scripted")
def test_repl_asks_before_a_dangerous_command(hermes_home: Path, tmp_path: Path) -> None:
    victim = tmp_path / "build"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    steps = [
        Reply(tool_calls=[("terminal", {"command": f"rm -rf {victim}"})]),
        Reply("Understood, I left it alone."),
    ]
    with ScriptedLLM(steps) as llm:
        child = spawn_chat(hermes_home, tmp_path, llm.openai_base_url)
        child.expect_exact(PROMPT)
        child.sendline("clean the build")
        child.expect_exact("[yes/no/always]")
        child.expect_exact("answer:")
        child.sendline("no")
        child.expect_exact("Understood, I left it alone.")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert (victim / "keep.txt").read_text() == "precious"
    result = next(m for m in llm.requests[1].messages if m["role"] == "tool")["content"]
    assert "denied" in result or "not run" in result, result
