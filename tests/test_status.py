"""`hermes status`: a real gateway (IRC against ngircd), cron jobs, and today's sessions.

The gateway is a real `hermes gateway run` subprocess (tests/gateway_process.py)
whose IRC platform talks to Debian's ngircd on 127.0.0.1; the server is killed
and started again so the status shows the connection drop and come back.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from gateway_process import GatewayProcess, write_home
from peers.ircd import IRCServer
from peers.llm_server import ScriptedLLM


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


def status(hermes: Runner) -> dict[str, Any]:
    result = hermes("status", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def wait_status(
    hermes: Runner, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = status(hermes)
        if check(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"status never matched: {json.dumps(data, indent=1)}")
        time.sleep(0.1)


def irc_state(data: dict[str, Any]) -> dict[str, Any]:
    found = [p for p in data["gateway"]["platforms"] if p["name"] == "irc"]
    return found[0] if found else {}


def test_nothing_running_jobs_and_today(
    hermes: Runner, hermes_home: Path, llm: ScriptedLLM
) -> None:
    from hermes_agent.state.db import StateDB

    write_home(hermes_home, llm, {"platforms": {"irc": {"enabled": True, "channels": ["#x"]}}})
    added = hermes("cron", "add", "-s", "every 2h", "-p", "water the plants", "-n", "plants")
    assert added.returncode == 0, added.stderr
    assert hermes("cron", "add", "-s", "in 20m", "-p", "stretch", "-n", "stretch").returncode == 0
    paused = hermes("cron", "add", "-s", "every 1h", "-p", "never", "-n", "paused one")
    assert paused.returncode == 0
    job_ids = {
        job["name"]: job["id"]
        for job in (json.loads(p.read_text()) for p in (hermes_home / "cron").glob("*.json"))
    }
    assert hermes("cron", "pause", job_ids["paused one"]).returncode == 0
    with StateDB() as db:
        today = db.create_session(source="cli", model="m", cwd="/")
        db.add_message(today, {"role": "user", "content": "hi"})
        db.add_message(
            today,
            {"role": "assistant", "content": "hello"},
            usage={"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25},
            answered_by=("openrouter", "m"),
        )
        gateway_session = db.create_session(source="gateway:irc", model="m", cwd="/")
        db.add_message(
            gateway_session,
            {"role": "assistant", "content": "x"},
            usage={"input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5},
            answered_by=("openrouter", "m"),
        )
        old = db.create_session(source="cli", model="m", cwd="/")
        db.add_message(
            old,
            {"role": "assistant", "content": "long ago"},
            usage={"input_tokens": 1, "output_tokens": 1, "cost_usd": 9.0},
            answered_by=("openrouter", "m"),
        )
    # The last session belongs to last week: moved back in time, rows and all.
    import sqlite3

    week_ago = time.time() - 7 * 86400
    with sqlite3.connect(hermes_home / "state.db") as conn:
        conn.execute(
            "UPDATE sessions SET created_at = ?, updated_at = ? WHERE id = ?",
            (week_ago,) * 2 + (old,),
        )
        conn.execute("UPDATE messages SET created_at = ? WHERE session_id = ?", (week_ago, old))
    conn.close()

    data = status(hermes)
    assert data["gateway"]["running"] is False
    assert irc_state(data)["state"] == "not running"
    assert data["job_count"] == 3
    names = [j["name"] for j in data["jobs"]]
    assert names == ["stretch", "plants"]  # Soonest first; the paused one has no next run.
    t = data["today"]
    assert (t["sessions_active"], t["sessions_started"], t["messages"]) == (2, 2, 3)
    assert t["cost_usd"] == pytest.approx(0.75) and t["cost_basis"] == "messages"
    assert t["by_source"] == {"cli": 1, "gateway:irc": 1}

    plain = hermes("status")
    assert plain.returncode == 0
    lines = plain.stdout.splitlines()
    assert lines[1].startswith("gateway: not running")
    assert any(line.strip().startswith("irc") and "not running" in line for line in lines)
    assert any("cron: 3 jobs" in line and "only while the gateway runs" in line for line in lines)
    assert any(job_ids["stretch"] in line for line in lines)
    assert "today: 2 sessions active (2 new), 3 messages, $0.7500" in plain.stdout


def test_an_empty_home_is_read_not_created(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("status")
    assert result.returncode == 0
    assert "gateway: not running" in result.stdout
    assert "cron: no scheduled jobs" in result.stdout
    assert not hermes_home.exists()


def test_a_broken_config_still_says_whether_the_gateway_runs(
    hermes: Runner, hermes_home: Path
) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("model:\n  default: [unclosed\n")
    result = hermes("status")
    assert result.returncode == 2
    assert "gateway: not running" in result.stdout
    assert "config.yaml:3:" in result.stderr and "Traceback" not in result.stderr
    as_json = hermes("status", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["gateway"]["running"] is False


@pytest.mark.peer("ngircd")
def test_running_gateway_and_its_irc_connection_dropping_and_coming_back(
    hermes: Runner, hermes_home: Path, llm: ScriptedLLM, tmp_path: Path
) -> None:
    workdir = tmp_path / "gw"
    workdir.mkdir()
    with IRCServer() as ircd:
        irc = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": ircd.port,
            "tls": False,
            "nick": "hermes",
            "channels": ["#hermes"],
            "allowed_users": ["alice"],
        }
        write_home(hermes_home, llm, {"reconnect_max_delay": 1, "platforms": {"irc": irc}})
        assert (
            hermes("cron", "add", "-s", "every 3h", "-p", "report", "-n", "report").returncode == 0
        )
        gateway = GatewayProcess(hermes_home, workdir)
        try:
            gateway.wait_for_log(r"irc: joined #hermes")
            gateway.wait_ready()
            data = wait_status(hermes, lambda d: irc_state(d).get("state") == "connected")
            assert data["gateway"]["running"] is True
            assert data["gateway"]["pid"] == gateway.proc.pid
            assert data["gateway"]["phase"] == "running"
            assert [j["name"] for j in data["jobs"]] == ["report"]
            status_file = hermes_home / "gateway.status.json"
            assert status_file.stat().st_mode & 0o777 == 0o600

            plain = hermes("status").stdout
            assert f"gateway: running (pid {gateway.proc.pid}" in plain
            assert "irc" in plain and "connected" in plain
            assert "only while the gateway runs" not in plain

            ircd.kill()  # The server goes away: the status says so, and why.
            data = wait_status(hermes, lambda d: irc_state(d).get("state") == "reconnecting")
            assert "connection" in irc_state(data)["detail"]
            ircd.start()
            gateway.wait_for_log(r"irc: joined #hermes", count=2, timeout=30)
            wait_status(hermes, lambda d: irc_state(d).get("state") == "connected")

            assert gateway.terminate() == 0
            data = status(hermes)
            assert data["gateway"]["running"] is False
            assert irc_state(data)["state"] == "not running"
            assert not status_file.exists()  # Removed by the gateway as it stopped.

            # SIGKILL leaves the files behind; the pid check keeps status truthful.
            gateway = GatewayProcess(hermes_home, workdir)
            gateway.wait_ready()
            wait_status(hermes, lambda d: d["gateway"]["running"])
            os.kill(gateway.proc.pid, signal.SIGKILL)
            gateway.proc.wait()
            assert status_file.exists()
            data = status(hermes)
            assert data["gateway"]["running"] is False
            assert irc_state(data)["state"] == "not running"
        finally:
            gateway.kill()
