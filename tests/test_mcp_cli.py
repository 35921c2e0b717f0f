"""`hermes chat -q` with MCP tools, `hermes mcp`, and the processes left after every exit path.

The model is aimock with scripted replies; the MCP servers are the npm
reference server (stdio and Streamable HTTP) and the misbehaving Python server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml

from conftest import HERMES, Runner, clean_env
from helpers import assert_clean_failure
from peers.aimock import Aimock
from peers.llm_server import Reply, ScriptedLLM
from test_chat_cli import PROMPT, spawn_chat
from test_mcp_client import EVERYTHING, MISBEHAVING, http_everything  # noqa: F401

pytestmark = [
    pytest.mark.peer("mcp"),
    pytest.mark.skipif(not EVERYTHING.exists(), reason="npm MCP peers not installed"),
]


def chat_args(base_url: str, *extra: str) -> list[str]:
    return ["chat", "--provider", "custom", "--base-url", base_url, "-m", "test-model", *extra]


def write_config(home: Path, workspace: Path, servers: dict[str, Any], **more: Any) -> None:
    home.mkdir(exist_ok=True)
    workspace.mkdir(exist_ok=True)
    data = {
        "mcp_servers": servers,
        "mcp": {"connect_wait": 60},
        "terminal": {"cwd": str(workspace)},
        **more,
    }
    (home / "config.yaml").write_text(yaml.safe_dump(data))


def misbehaving(**extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(MISBEHAVING)], **extra}


def test_chat_calls_a_stdio_and_an_http_servers_tools(
    hermes: Runner,
    hermes_home: Path,
    tmp_path: Path,
    http_everything: str,  # noqa: F811
) -> None:
    write_config(
        hermes_home,
        tmp_path / "ws",
        {
            "local": {"command": str(EVERYTHING), "args": ["stdio"], "approval": "auto"},
            "remote": {"url": http_everything, "approval": "auto"},
        },
    )
    fixtures = [
        {"match": {"toolCallId": "call_sum"}, "response": {"content": "Both servers answered."}},
        {
            "match": {"toolCallId": "call_echo"},
            "response": {
                "toolCalls": [
                    {
                        "id": "call_sum",
                        "name": "mcp__remote__get-sum",
                        "arguments": {"a": 40, "b": 2},
                    }
                ]
            },
        },
        {
            "match": {"userMessage": "use the servers"},
            "response": {
                "toolCalls": [
                    {
                        "id": "call_echo",
                        "name": "mcp__local__echo",
                        "arguments": {"message": "marco"},
                    }
                ]
            },
        },
    ]
    with Aimock(fixtures) as mock:
        result = hermes(*chat_args(mock.openai_base_url, "-q", "use the servers"))
        journal = mock.journal()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Both servers answered.\n"
    requests = [entry["body"] for entry in journal]
    offered = {t["function"]["name"] for t in requests[0]["tools"]}
    assert {"mcp__local__echo", "mcp__remote__get-sum", "mcp_servers"} <= offered
    results = [m["content"] for m in requests[-1]["messages"] if m["role"] == "tool"]
    assert "Echo: marco" in results[0] and "42" in results[1]
    assert all(r.startswith("[untrusted content from MCP server") for r in results)


def test_toolsets_on_the_command_line_decide_mcp_too(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    """`--toolsets file` offers no MCP tool (and starts no server); `--toolsets file,mcp`
    offers them: the command line wins over the configured toolsets, for MCP as well."""
    write_config(
        hermes_home,
        tmp_path / "ws",
        {"local": {"command": str(EVERYTHING), "args": ["stdio"], "approval": "auto"}},
    )
    fixtures = [{"match": {"userMessage": "hi"}, "response": {"content": "hello"}}]
    offered: dict[str, set[str]] = {}
    for toolsets in ("file", "file,mcp"):
        with Aimock(fixtures) as mock:
            result = hermes(*chat_args(mock.openai_base_url, "--toolsets", toolsets, "-q", "hi"))
            journal = mock.journal()
        assert result.returncode == 0, result.stderr
        offered[toolsets] = {t["function"]["name"] for t in journal[0]["body"]["tools"]}
    assert not any(name.startswith("mcp") for name in offered["file"]), offered["file"]
    assert "read_file" in offered["file"]
    assert "mcp__local__echo" in offered["file,mcp"]
    unknown = hermes(*chat_args("http://127.0.0.1:9", "--toolsets", "nope", "-q", "hi"))
    assert unknown.returncode != 0 and "mcp (or all)" in unknown.stderr


def test_required_server_that_cannot_connect_stops_a_one_shot_run(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    write_config(
        hermes_home,
        tmp_path / "ws",
        {"needed": {"command": "/bin/false", "required": True, "connect_timeout": 5}},
    )
    with Aimock([{"match": {"userMessage": "hi"}, "response": {"content": "hello"}}]) as mock:
        result = hermes(*chat_args(mock.openai_base_url, "-q", "hi"))
        journal = mock.journal()
    assert_clean_failure(result, 1)
    assert "'needed' is required but not available" in result.stderr
    assert "exit code 1" in result.stderr
    assert journal == []  # The model was never asked.


def _pids(directory: Path, prefix: str) -> list[int]:
    return [int(p.read_text()) for p in directory.glob(f"{prefix}-*.pid")]


def _gone(pid: int) -> bool:
    """Neither running nor a zombie."""
    return not Path(f"/proc/{pid}").exists()


def _wait_gone(pids: list[int], timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if not _gone(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_no_child_and_no_zombie_whatever_ends_hermes(
    hermes_home: Path, tmp_path: Path, how: str
) -> None:
    ws = tmp_path / "ws"
    marks = ws / "marks"  # Inside the workspace: the server runs confined.
    marks.mkdir(parents=True)
    write_config(
        hermes_home,
        ws,
        {"mb": misbehaving(approval="auto", timeout=600, env={"MARK_DIR": str(marks)})},
    )
    fixtures = [
        {
            "match": {"toolCallId": "call_spawn"},
            "response": {
                "toolCalls": [{"id": "call_hang", "name": "mcp__mb__hang", "arguments": {}}]
            },
        },
        {
            "match": {"userMessage": "start"},
            "response": {
                "toolCalls": [{"id": "call_spawn", "name": "mcp__mb__spawn", "arguments": {}}]
            },
        },
    ]
    with Aimock(fixtures) as mock:
        proc = subprocess.Popen(
            [str(HERMES), *chat_args(mock.openai_base_url, "-q", "start")],
            env=clean_env(hermes_home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ws,
        )
        try:
            deadline = time.monotonic() + 60
            while not _pids(marks, "child"):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server never spawned its child"
                time.sleep(0.05)
            # Into the hanging call: the server notes it (a fixed 0.5 s after the spawn
            # could signal before the model's next step reached the server).
            deadline = time.monotonic() + 60
            while not (marks / "hanging").exists():
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the hanging call never reached the server"
                time.sleep(0.05)
            servers, children = _pids(marks, "server"), _pids(marks, "child")
            assert servers and children and not any(_gone(p) for p in servers + children)
            proc.send_signal(getattr(signal, how))
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _wait_gone(servers + children) == [], "processes left after hermes ended"


def test_normal_end_leaves_no_child(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    marks = tmp_path / "ws" / "marks"
    marks.mkdir(parents=True)
    write_config(
        hermes_home,
        tmp_path / "ws",
        {"mb": misbehaving(approval="auto", env={"MARK_DIR": str(marks)})},
    )
    fixtures = [
        {"match": {"toolCallId": "call_spawn"}, "response": {"content": "spawned"}},
        {
            "match": {"userMessage": "start"},
            "response": {
                "toolCalls": [{"id": "call_spawn", "name": "mcp__mb__spawn", "arguments": {}}]
            },
        },
    ]
    with Aimock(fixtures) as mock:
        result = hermes(*chat_args(mock.openai_base_url, "-q", "start"))
    assert result.returncode == 0, result.stderr
    pids = _pids(marks, "server") + _pids(marks, "child")
    assert len(pids) == 2
    assert _wait_gone(pids) == []


def test_mcp_add_list_test_trust_remove(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "cwd"
    added = hermes("mcp", "add", "ev", "--command", str(EVERYTHING), "--args", "stdio")
    assert added.returncode == 0, added.stderr
    assert "mcp__ev__echo" in added.stdout and "saved mcp_servers.ev" in added.stdout
    config = yaml.safe_load((hermes_home / "config.yaml").read_text())
    assert config["mcp_servers"]["ev"] == {"command": str(EVERYTHING), "args": ["stdio"]}
    assert oct((hermes_home / "config.yaml").stat().st_mode & 0o777) == "0o600"

    failed = hermes("mcp", "add", "broken", "--command", "/bin/false")
    assert_clean_failure(failed, 1)
    assert "not saved" in failed.stderr
    assert "broken" not in (hermes_home / "config.yaml").read_text()

    again = hermes("mcp", "add", "ev", "--url", "http://127.0.0.1:9/mcp")
    assert_clean_failure(again, 2)
    neither = hermes("mcp", "add", "x")
    assert_clean_failure(neither, 2)

    listed = hermes("mcp", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ev: ready (15 tools)" in listed.stdout

    tested = hermes("mcp", "test", "ev")
    assert tested.returncode == 0 and "mcp__ev__get-sum" in tested.stdout
    assert hermes("mcp", "trust", "ev", "--yes").stdout.startswith("ev: no tool changed")
    assert_clean_failure(hermes("mcp", "test", "nope"), 2)

    removed = hermes("mcp", "remove", "ev")
    assert removed.returncode == 0, removed.stderr
    left = yaml.safe_load((hermes_home / "config.yaml").read_text()) or {}
    assert "ev" not in (left.get("mcp_servers") or {})
    assert ws.exists()


def test_managed_mode_refuses_add_and_remove(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text(
        yaml.safe_dump({"mcp_servers": {"ev": {"command": str(EVERYTHING), "args": ["stdio"]}}})
    )
    env = {"HERMES_MANAGED": "true"}
    added = hermes("mcp", "add", "x", "--command", str(EVERYTHING), env=env)
    assert_clean_failure(added, 3)
    assert "NixOS" in added.stderr
    assert_clean_failure(hermes("mcp", "remove", "ev", env=env), 3)
    # A declared server without OAuth: nothing to log into, so add is refused as well.
    assert_clean_failure(hermes("mcp", "add", "ev", env=env), 3)


def test_config_check_reports_bad_servers(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text(
        yaml.safe_dump({"mcp_servers": {"gh": {"command": "x", "url": "http://h/mcp"}}})
    )
    checked = hermes("config", "check")
    assert checked.returncode == 2
    assert "mcp_servers.gh" in checked.stdout and "exactly one of command" in checked.stdout


def test_status_tool_reports_failures_to_the_model(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    write_config(
        hermes_home,
        tmp_path / "ws",
        {"broken": {"command": "/bin/false", "connect_timeout": 5}},
        mcp={"connect_wait": 5},
    )
    fixtures = [{"match": {"userMessage": "what tools"}, "response": {"content": "none"}}]
    with Aimock(fixtures) as mock:
        result = hermes(*chat_args(mock.openai_base_url, "-q", "what tools"))
        journal = mock.journal()
    assert result.returncode == 0, result.stderr
    assert "MCP server broken: failed" in result.stderr  # The user is told too.
    tools = {t["function"]["name"]: t["function"] for t in journal[0]["body"]["tools"]}
    assert not any(name.startswith("mcp__broken") for name in tools)
    assert "broken: failed" in tools["mcp_servers"]["description"]
    assert json.dumps(tools["mcp_servers"]["parameters"]) == '{"type": "object", "properties": {}}'
    assert os.environ.get("HERMES_HOME") == str(hermes_home)


@pytest.mark.peer("scripted")
def test_repl_mcp_commands_and_prompts(hermes_home: Path, tmp_path: Path) -> None:
    write_config(
        hermes_home,
        tmp_path,
        {"ev": {"command": str(EVERYTHING), "args": ["stdio"], "approval": "auto"}},
    )
    with ScriptedLLM([Reply("Prompt answered.")]) as llm:
        child = spawn_chat(hermes_home, tmp_path, llm.openai_base_url)
        child.expect_exact(PROMPT)
        deadline = time.monotonic() + 120  # Starting node on a loaded machine.
        while True:
            child.sendline("/mcp")
            if child.expect_exact(["ev: ready (15 tools)", "ev: connecting"]) == 0:
                break
            assert time.monotonic() < deadline, "the server never connected"
            child.expect_exact(PROMPT)
            time.sleep(0.3)  # The interval between looks, not a wait for anything.
        child.expect_exact("/ev:simple-prompt")
        child.expect_exact(PROMPT)
        child.sendline("/ev:simple-prompt")
        child.expect_exact("Prompt answered.")
        child.expect_exact(PROMPT)
        child.sendline("/reload-mcp")
        child.expect_exact("reconnecting the MCP servers")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        sent = llm.requests[0].body["messages"]
    assert "This is a simple prompt without arguments." in sent[-1]["content"]


def test_cron_job_with_mcp_tools_and_a_required_server(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    """Cron runs build their agent like chat: MCP tools work, a missing required server fails."""
    write_config(
        hermes_home,
        tmp_path / "ws",
        {"ev": {"command": str(EVERYTHING), "args": ["stdio"], "approval": "auto"}},
    )
    fixtures = [
        {"match": {"toolCallId": "call_e"}, "response": {"content": "cron got the echo"}},
        {
            "match": {"userMessage": "nightly"},
            "response": {
                "toolCalls": [
                    {"id": "call_e", "name": "mcp__ev__echo", "arguments": {"message": "night"}}
                ]
            },
        },
    ]
    with Aimock(fixtures) as mock:
        config = yaml.safe_load((hermes_home / "config.yaml").read_text())
        config["model"] = {"provider": "custom", "base_url": mock.openai_base_url, "default": "m"}
        (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
        added = hermes("cron", "add", "-s", "@daily", "-p", "nightly report")
        job_id = added.stdout.split()[1].rstrip(":")
        ran = hermes("cron", "run", job_id)
        assert ran.returncode == 0, ran.stderr
        assert "cron got the echo" in ran.stdout
        journal = mock.journal()
        results = [m["content"] for m in journal[-1]["body"]["messages"] if m["role"] == "tool"]
        assert "Echo: night" in results[0]
        config["mcp_servers"]["gone"] = {
            "command": "/bin/false",
            "required": True,
            "connect_timeout": 5,
        }
        (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
        failed = hermes("cron", "run", job_id)
    assert failed.returncode == 1
    assert "'gone' is required but not available" in failed.stderr
