"""The HERMES_HOME lock: real processes writing the same home at the same time.

Before the lock, ten `hermes config set` processes started together lost 34
of 50 keys in five rounds, every one exiting 0. These tests start real CLI
processes (and a holder process) against one home and check what is on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import HERMES, Runner, clean_env
from hermes_agent import home
from hermes_agent.errors import HermesError
from hermes_agent.home_lock import HomeLockTimeoutError, home_lock

WRITERS = 10
ROUNDS = 5


def _start_together(home_dir: Path, argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
    env = clean_env(home_dir)
    return [
        subprocess.Popen(
            [str(HERMES), *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]


def _finish(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)


def test_ten_concurrent_config_set_lose_no_key(hermes_home: Path) -> None:
    hermes_home.mkdir()
    written: dict[str, int] = {}
    for round_ in range(ROUNDS):
        argvs = []
        for writer in range(WRITERS):
            key = f"stress.r{round_}.w{writer}"
            written[key] = round_ * 100 + writer
            argvs.append(["config", "set", "--force", key, str(written[key])])
        _finish(_start_together(hermes_home, argvs))
    data = yaml.safe_load((hermes_home / "config.yaml").read_text())
    assert isinstance(data, dict)
    found = {
        f"stress.{r}.{w}": value
        for r, writers in data["stress"].items()
        for w, value in writers.items()
    }
    assert found == written  # All 50, none lost.


def test_concurrent_set_and_unset_and_secret_writes(hermes_home: Path, hermes: Runner) -> None:
    hermes_home.mkdir()
    for i in range(4):
        assert hermes("config", "set", "--force", f"drop.k{i}", "1").returncode == 0
    argvs = [["config", "unset", f"drop.k{i}"] for i in range(4)]
    argvs += [["config", "set", "--force", f"keep.k{i}", str(i)] for i in range(4)]
    argvs += [["config", "set", f"SERVICE{i}_API_KEY", f"secret-{i}"] for i in range(4)]
    _finish(_start_together(hermes_home, argvs))
    data = yaml.safe_load((hermes_home / "config.yaml").read_text())
    assert data.get("drop", {}) in ({}, None) or not data.get("drop")
    assert data["keep"] == {f"k{i}": i for i in range(4)}
    env_text = (hermes_home / ".env").read_text()
    for i in range(4):
        assert f"SERVICE{i}_API_KEY=secret-{i}" in env_text


HOLDER = textwrap.dedent(
    """
    import sys, time
    from hermes_agent.home_lock import home_lock
    with home_lock("a test holding the lock"):
        print("held", flush=True)
        time.sleep(float(sys.argv[1]))
    """
)


def _hold(home_dir: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(seconds)],
        env=clean_env(home_dir),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_times_out_naming_the_holder(hermes_home: Path, hermes: Runner) -> None:
    hermes_home.mkdir()
    holder = _hold(hermes_home, 30)
    try:
        began = time.monotonic()
        result = hermes("config", "set", "max_turns", "7", env={"HERMES_LOCK_TIMEOUT": "0.5"})
        assert time.monotonic() - began < 25  # Gave up; did not wait for the holder's 30 s.
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert f"pid {holder.pid}" in result.stderr
        assert "a test holding the lock" in result.stderr
        assert "HERMES_LOCK_TIMEOUT" in result.stderr
        assert not (hermes_home / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the next writer goes through.
    assert hermes("config", "set", "max_turns", "7").returncode == 0


def test_a_writer_waits_for_the_holder_then_writes(hermes_home: Path, hermes: Runner) -> None:
    hermes_home.mkdir()
    holder = _hold(hermes_home, 1.0)
    began = time.monotonic()
    result = hermes("config", "set", "max_turns", "9")
    waited = time.monotonic() - began
    holder.wait()
    assert result.returncode == 0, result.stderr
    assert waited >= 0.5  # It waited for the holder instead of writing under it.
    assert yaml.safe_load((hermes_home / "config.yaml").read_text()) == {"max_turns": 9}


def test_reentrant_in_one_thread_and_records_the_pid(hermes_home: Path) -> None:
    with home_lock("outer"), home_lock("inner"):
        text = home.home_lock_path().read_text()
        assert text.split()[0] == str(os.getpid())
        assert "outer" in text
    # Released: another open file description can take it at once.
    import fcntl

    fd = os.open(home.home_lock_path(), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_another_thread_waits_and_times_out(hermes_home: Path) -> None:
    import threading

    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with home_lock("thread"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(60)  # The thread holds the lock (however late it got to run).
    try:
        with pytest.raises(HomeLockTimeoutError, match="another thread"), home_lock(timeout=0.2):
            pass
    finally:
        release.set()
        thread.join()
    with home_lock(timeout=1):
        pass


def test_an_unusable_lock_file_is_a_clear_error(hermes_home: Path, hermes: Runner) -> None:
    home.home_lock_path().mkdir(parents=True)  # A directory where the lock file belongs.
    with pytest.raises(HermesError, match="cannot open the lock"), home_lock():
        pass
    result = hermes("config", "set", "max_turns", "7")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot open the lock" in result.stderr


def test_config_edit_never_overwrites_a_change_made_while_editing(
    hermes_home: Path, hermes: Runner, tmp_path: Path
) -> None:
    assert hermes("config", "set", "max_turns", "4").returncode == 0
    # The "editor" changes the draft while another writer changes config.yaml.
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import subprocess, sys\n"
        f"subprocess.run([{str(HERMES)!r}, 'config', 'set', 'agent.verbose', 'true'], check=True)\n"
        "open(sys.argv[1], 'a').write('timezone: UTC\\n')\n"
    )
    result = hermes("config", "edit", env={"EDITOR": f"{sys.executable} {editor}"})
    assert result.returncode == 1, result.stderr
    assert "changed by another writer while you were editing" in result.stderr
    assert yaml.safe_load((hermes_home / "config.yaml").read_text()) == {
        "max_turns": 4,
        "agent": {"verbose": True},
    }
    draft = hermes_home / ".config.yaml.edit.yaml"
    assert "timezone: UTC" in draft.read_text()  # The user's work is kept.
