"""`hermes cron`: the real CLI in subprocesses, with the loopback ScriptedLLM for `run`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from conftest import Runner
from hermes_agent.cron.jobs import JobStore, RunLock
from hermes_agent.state.db import StateDB
from peers.llm_server import Error, Reply, ScriptedLLM


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


def configure(home: Path, llm: ScriptedLLM | None = None, **extra: object) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = dict(extra)
    if llm is not None:
        config["model"] = {
            "provider": "custom",
            "base_url": llm.openai_base_url,
            "default": "test-model",
        }
    (home / "config.yaml").write_text(yaml.safe_dump(config))


def added_id(stdout: str) -> str:
    match = re.match(r"added ([a-z0-9-]+):", stdout)
    assert match, stdout
    return match.group(1)


def next_local(hour: int, zone: ZoneInfo) -> datetime:
    """The next hh:00 in ``zone`` from now (what `0 hh * * *` should give)."""
    now = datetime.now(zone)
    candidate = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def test_cron_is_a_command_and_help_lists_its_actions(hermes: Runner) -> None:
    top = hermes("--help")
    assert top.returncode == 0 and re.search(r"^\s+cron\s+schedule prompts", top.stdout, re.M)
    result = hermes("cron", "--help")
    assert result.returncode == 0
    for action in ("list", "add", "remove", "pause", "resume", "run", "show"):
        assert action in result.stdout
    assert hermes("cron", "add", "--help").returncode == 0


def test_add_and_list_show_the_next_run_in_local_time(hermes: Runner, hermes_home: Path) -> None:
    new_york = ZoneInfo("America/New_York")
    env = {"TZ": "America/New_York"}
    result = hermes(
        "cron", "add", "-s", "0 9 * * *", "-p", "standup notes", "--name", "standup", env=env
    )
    assert result.returncode == 0, result.stderr
    job_id = added_id(result.stdout)
    expected = next_local(9, new_york)
    assert f"next run {expected:%a %Y-%m-%d} 09:00 (America/New_York)" in result.stdout
    assert "no gateway is running" in result.stderr
    data = json.loads((hermes_home / "cron" / f"{job_id}.json").read_text())
    assert datetime.fromisoformat(data["next_run"]) == expected.astimezone(UTC)
    listing = hermes("cron", "list", env=env)
    assert listing.returncode == 0
    header, row = listing.stdout.splitlines()
    assert "NEXT RUN (America/New_York)" in header
    assert row.split()[:3] == [job_id, "standup", "0"]
    assert f"{expected:%a %Y-%m-%d} 09:00" in row and "never ran" in row and "local" in row
    # cron.timezone overrides the system's zone.
    configure(hermes_home, cron={"timezone": "Asia/Tokyo"})
    tokyo = hermes("cron", "add", "-s", "30 7 * * *", "-p", "tea", env=env)
    assert "(Asia/Tokyo)" in tokyo.stdout and " 07:30 " in tokyo.stdout
    assert "NEXT RUN (Asia/Tokyo)" in hermes("cron", env=env).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "every 5 fortnights", "-p", "x"], "schedule 'every 5 fortnights': unknown unit"),
        (["-s", "0 25 * * *", "-p", "x"], "schedule '0 25 * * *': hour field '25'"),
        (["-s", "0 9 * *", "-p", "x"], "a cron expression has 5 fields, this has 4"),
        (["-s", "2001-01-01T00:00", "-p", "x"], "that time is in the past"),
        (["-s", "@daily"], "no prompt: give it with -p TEXT"),
        (["-s", "@daily", "-p", "   "], "the prompt is empty"),
        (["-s", "@daily", "-p", "x", "--deliver", "pigeon:7"], "unknown platform 'pigeon'"),
        (["-s", "@daily", "-p", "x", "--deliver", "api_server:7"], "only answers requests"),
        (["-s", "@daily", "-p", "x", "--deliver", "telegram"], "expected 'local' or PLATFORM"),
        (["-s", "@daily", "-p", "x", "--skill", "no-such"], "no skill named 'no-such'"),
        (["-s", "@daily", "-p", "x", "--grace", "soon"], "duration 'soon'"),
    ],
)
def test_add_refuses_bad_input_with_exit_2(
    hermes: Runner, hermes_home: Path, args: list[str], message: str
) -> None:
    result = hermes("cron", "add", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list((hermes_home / "cron").glob("*.json")) == []


def test_add_without_a_schedule_is_a_usage_error(hermes: Runner) -> None:
    result = hermes("cron", "add", "-p", "x")
    assert result.returncode == 2 and "--schedule" in result.stderr


def test_prompt_from_stdin_options_and_show(hermes: Runner, hermes_home: Path) -> None:
    skill = hermes_home / "skills" / "release-notes"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: release-notes\ndescription: Write release notes.\n---\nList the changes.\n"
    )
    result = hermes(
        "cron",
        "add",
        "-s",
        "every 2h",
        "-p",
        "-",
        "--skill",
        "release-notes",
        "--missed",
        "run_once",
        "--grace",
        "10m",
        input="Draft the release notes\nfor this week.\n",
    )
    assert result.returncode == 0, result.stderr
    job_id = added_id(result.stdout)
    assert job_id.startswith("draft-the-release-notes")
    data = json.loads((hermes_home / "cron" / f"{job_id}.json").read_text())
    assert data["prompt"] == "Draft the release notes\nfor this week."
    assert data["skills"] == ["release-notes"]
    assert data["missed"] == "run_once" and data["grace"] == 600
    assert data["schedule"] == "every 2h"
    shown = hermes("cron", "show", job_id[:10])
    assert shown.returncode == 0
    assert "schedule:  every 2h" in shown.stdout and "skills:    release-notes" in shown.stdout
    assert "missed:    run_once (grace 600 s)" in shown.stdout
    assert "    for this week." in shown.stdout


def test_pause_resume_and_remove(hermes: Runner, hermes_home: Path) -> None:
    job_id = added_id(hermes("cron", "add", "-s", "*/5 * * * *", "-p", "ping").stdout)
    other = added_id(hermes("cron", "add", "-s", "@hourly", "-p", "pong").stdout)
    paused = hermes("cron", "pause", job_id)
    assert paused.returncode == 0 and paused.stdout.startswith(f"paused {job_id}")
    row = next(line for line in hermes("cron", "list").stdout.splitlines() if job_id in line)
    assert "paused" in row
    assert json.loads((hermes_home / "cron" / f"{job_id}.json").read_text())["paused"] is True
    resumed = hermes("cron", "resume", job_id)
    assert resumed.returncode == 0 and "next run" in resumed.stdout
    assert json.loads((hermes_home / "cron" / f"{job_id}.json").read_text())["paused"] is False
    removed = hermes("cron", "remove", job_id)
    assert removed.returncode == 0 and removed.stdout.startswith(f"removed {job_id}")
    assert not (hermes_home / "cron" / f"{job_id}.json").exists()
    assert (hermes_home / "cron" / f"{other}.json").exists()
    for action in ("remove", "pause", "resume", "run", "show"):
        missing = hermes("cron", action, job_id)
        assert missing.returncode == 2
        assert f"no scheduled job {job_id!r}" in missing.stderr


def test_an_ambiguous_prefix_names_the_candidates(hermes: Runner) -> None:
    first = added_id(hermes("cron", "add", "-s", "@daily", "-p", "x", "-n", "same name").stdout)
    second = added_id(hermes("cron", "add", "-s", "@daily", "-p", "y", "-n", "same name").stdout)
    result = hermes("cron", "pause", "same-name")
    assert result.returncode == 2
    assert "matches 2 jobs" in result.stderr and first in result.stderr and second in result.stderr


def test_list_reports_a_broken_job_file_and_shows_the_others(
    hermes: Runner, hermes_home: Path
) -> None:
    job_id = added_id(hermes("cron", "add", "-s", "@daily", "-p", "fine").stdout)
    (hermes_home / "cron" / "broken.json").write_text("{not json")
    result = hermes("cron", "list")
    assert result.returncode == 0
    assert job_id in result.stdout
    assert f"skipped a job file: {hermes_home / 'cron' / 'broken.json'}:1: not valid JSON" in (
        result.stderr
    )
    shown = hermes("cron", "show", "broken")
    assert shown.returncode == 1 and "not valid JSON" in shown.stderr


def test_bad_time_zone_setting_is_named(hermes: Runner, hermes_home: Path) -> None:
    configure(hermes_home, cron={"timezone": "Europe/Atlantis"})
    result = hermes("cron", "list")
    assert result.returncode == 2
    assert "cron.timezone: unknown time zone 'Europe/Atlantis'" in result.stderr


def test_jobs_are_user_state_in_managed_mode(hermes: Runner) -> None:
    env = {"HERMES_MANAGED": "nixos"}
    job_id = added_id(hermes("cron", "add", "-s", "@daily", "-p", "x", env=env).stdout)
    assert hermes("cron", "pause", job_id, env=env).returncode == 0
    assert hermes("cron", "remove", job_id, env=env).returncode == 0


def test_run_runs_a_job_now_and_prints_its_result(
    hermes: Runner, hermes_home: Path, llm: ScriptedLLM
) -> None:
    configure(hermes_home, llm)
    llm.add(Reply("Three new issues since yesterday."))
    job_id = added_id(hermes("cron", "add", "-s", "@daily", "-p", "summarise new issues").stdout)
    result = hermes("cron", "run", job_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Three new issues since yesterday."
    (output,) = (hermes_home / "cron" / "output" / job_id).glob("*.md")
    assert f"result saved to {output}" in result.stderr
    assert output.read_text().rstrip().endswith("Three new issues since yesterday.")
    job = JobStore().get(job_id)
    assert job is not None and job.runs == 1 and job.last_status == "ok"
    assert job.last_output == str(output)
    with StateDB() as db:
        (session,) = db.list_sessions(source="cron")
    assert session.source == f"cron:{job_id}"
    # The model got the prompt, told that nobody can answer during the run.
    sent = llm.requests[0].messages[-1]["content"]
    assert "running unattended" in sent and sent.endswith("summarise new issues")
    listed = hermes("cron", "list").stdout
    assert "ok " in next(line for line in listed.splitlines() if job_id in line)


def test_run_reports_a_failing_provider_and_records_it(
    hermes: Runner, hermes_home: Path, llm: ScriptedLLM
) -> None:
    configure(hermes_home, llm)
    llm.add(Error(401))
    job_id = added_id(hermes("cron", "add", "-s", "@daily", "-p", "x").stdout)
    result = hermes("cron", "run", job_id)
    assert result.returncode == 1
    assert f"the job {job_id} failed:" in result.stderr and "Traceback" not in result.stderr
    job = JobStore().get(job_id)
    assert job is not None and job.last_status == "error" and job.last_error
    (output,) = (hermes_home / "cron" / "output" / job_id).glob("*.md")
    assert "- status: error" in output.read_text()


def test_run_refuses_a_job_that_is_running_elsewhere(
    hermes: Runner, hermes_home: Path, llm: ScriptedLLM
) -> None:
    configure(hermes_home, llm)
    job_id = added_id(hermes("cron", "add", "-s", "@daily", "-p", "x").stdout)
    lock = RunLock(job_id)
    assert lock.acquire()
    try:
        result = hermes("cron", "run", job_id)
    finally:
        lock.release()
    assert result.returncode == 1
    assert "is running right now" in result.stderr
    assert llm.requests == []


def test_run_without_a_provider_says_what_to_set(hermes: Runner, hermes_home: Path) -> None:
    job_id = added_id(hermes("cron", "add", "-s", "@daily", "-p", "x").stdout)
    result = hermes("cron", "run", job_id)
    assert result.returncode != 0 and "OPENROUTER_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
