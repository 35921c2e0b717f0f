"""`hermes logs`: the last lines, redacted again; following across rotation; names refused."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import HERMES, Runner, clean_env
from helpers import assert_clean_failure

SECRET = "s3cr3t-Planted-Value-9f8e7d6c5b4a"


def _home_with_log(home: Path, lines: list[str], name: str = "gateway.log") -> Path:
    path = home / "logs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_last_n_lines_default_50_and_n(hermes: Runner, hermes_home: Path) -> None:
    _home_with_log(hermes_home, [f"line {i}" for i in range(1, 201)])
    result = hermes("logs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"line {i}" for i in range(151, 201)]
    result = hermes("logs", "gateway", "-n", "3")
    assert result.stdout.splitlines() == ["line 198", "line 199", "line 200"]
    assert hermes("logs", "-n", "0").stdout == ""


def test_a_long_log_is_read_from_its_end(hermes: Runner, hermes_home: Path) -> None:
    # 200,000 lines (about 3 MB): only the tail is read, and the first line of the
    # block that was read is not shown cut in half.
    path = _home_with_log(hermes_home, [])
    with path.open("w") as handle:
        for i in range(200_000):
            handle.write(f"entry number {i:06d} " + "x" * 3 + "\n")
    result = hermes("logs", "-n", "2000")
    lines = result.stdout.splitlines()
    assert len(lines) == 2000
    assert lines[0] == f"entry number {198_000:06d} xxx"
    assert lines[-1] == f"entry number {199_999:06d} xxx"


def test_output_is_redacted_and_control_characters_are_shown(
    hermes: Runner, hermes_home: Path
) -> None:
    # The secret was added to .env after the line was written: the writer could not know it.
    _home_with_log(
        hermes_home,
        [f"connecting with {SECRET}", "colour \x1b[31mred\x1b[0m and a bell \x07", "plain"],
    )
    (hermes_home / ".env").write_text(f"SERVICE_TOKEN={SECRET}\n")
    (hermes_home / ".env").chmod(0o600)
    result = hermes("logs", "-n", "5")
    assert result.returncode == 0
    assert SECRET not in result.stdout
    assert "connecting with [REDACTED]" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "colour \\x1b[31mred\\x1b[0m and a bell \\x07" in result.stdout


def test_approvals_log_written_by_the_gate(hermes: Runner, hermes_home: Path) -> None:
    from hermes_agent.safety.gate import audit

    audit({"command": "rm -rf build", "decision": "approved", "note": f"key {SECRET}"})
    (hermes_home / ".env").write_text(f"OTHER_API_KEY={SECRET}\n")
    (hermes_home / ".env").chmod(0o600)
    result = hermes("logs", "approvals", "-n", "1")
    assert result.returncode == 0, result.stderr
    assert '"command": "rm -rf build"' in result.stdout
    assert SECRET not in result.stdout


def test_mcp_server_log_and_hostile_names(hermes: Runner, hermes_home: Path) -> None:
    _home_with_log(hermes_home, ["server said hello"], name="mcp/everything.log")
    result = hermes("logs", "mcp", "everything")
    assert result.returncode == 0 and result.stdout == "server said hello\n"
    for name in ("../../etc/passwd", "..", "a/b", "/etc/passwd", ".hidden", "x\x00y"[:1] + "\n"):
        assert_clean_failure(hermes("logs", "mcp", name), 2)
    missing = hermes("logs", "mcp", "other")
    assert_clean_failure(missing, 1)
    assert "servers with a log: everything" in missing.stderr
    assert_clean_failure(hermes("logs", "mcp"), 2)
    assert_clean_failure(hermes("logs", "gateway", "extra"), 2)


def test_missing_log_and_links_are_refused(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    result = hermes("logs", "acp")
    assert_clean_failure(result, 1)
    assert "no log at" in result.stderr and "acp.log" in result.stderr
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{SECRET}\n")
    (hermes_home / "logs").mkdir(parents=True, exist_ok=True)
    (hermes_home / "logs" / "gateway.log").symlink_to(outside)
    result = hermes("logs")
    assert_clean_failure(result, 1)
    assert "symbolic link" in result.stderr and SECRET not in result.stdout
    fifo = hermes_home / "logs" / "acp.log"
    os.mkfifo(fifo)
    result = hermes("logs", "acp")  # Would block for ever if it were opened for reading.
    assert_clean_failure(result, 1)
    assert "not a regular file" in result.stderr


def _wait_for(path: Path, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared; output so far:\n{path.read_text()}")


def test_follow_across_rotation_and_truncation_ends_cleanly_on_ctrl_c(
    hermes_home: Path, tmp_path: Path
) -> None:
    log = _home_with_log(hermes_home, ["old 1", "old 2"])
    (hermes_home / ".env").write_text(f"SERVICE_TOKEN={SECRET}\n")
    (hermes_home / ".env").chmod(0o600)
    out_path = tmp_path / "follow.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            [str(HERMES), "logs", "-f", "-n", "1"],
            env=clean_env(hermes_home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(out_path, "old 2")
        with log.open("a") as handle:
            handle.write("appended 1\n")
            handle.write("half a li")  # A line without its end yet is held back...
        _wait_for(out_path, "appended 1")
        with log.open("a") as handle:
            handle.write(f"ne with {SECRET}\n")  # ...and shown whole, redacted.
        _wait_for(out_path, "half a line with [REDACTED]")
        # Rotation as logrotate (or the MCP log's own .1) does it: rename, new file.
        with log.open("a") as handle:
            handle.write("last words of the old file\n")
        log.rename(log.with_name("gateway.log.1"))
        log.write_text("first of the new file\n")
        _wait_for(out_path, "first of the new file")
        # copytruncate: the same file emptied in place, then written again.
        with log.open("r+") as handle:
            handle.truncate(0)
        _wait_for(out_path, "was truncated")  # Seen empty (not after a fixed 0.5 s).
        log.write_text("after truncation\n")
        content = _wait_for(out_path, "after truncation")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    content = out_path.read_text()
    assert SECRET not in content
    assert "Traceback" not in content
    order = [
        "old 2",
        "appended 1",
        "half a line with [REDACTED]",
        "last words of the old file",
        "was rotated",
        "first of the new file",
        "after truncation",
    ]
    positions = [content.index(text) for text in order]
    assert positions == sorted(positions), content
    assert "old 1" not in content


def test_a_line_without_end_is_shown_in_bounded_pieces(tmp_path: Path) -> None:
    from hermes_agent import logfiles

    path = tmp_path / "huge.log"
    path.write_bytes(b"")
    fd = logfiles.open_log(path)
    lines = logfiles.follow(path, fd, 0, poll=0.01)
    with path.open("ab") as handle:
        handle.write(b"x" * (logfiles.MAX_LINE_BYTES * 2 + 10))
    first, second = next(lines), next(lines)
    assert len(first) == len(second) == logfiles.MAX_LINE_BYTES
    with path.open("ab") as handle:
        handle.write(b"tail\n")
    assert next(lines) == "x" * 10 + "tail"
    lines.close()
