"""Bad bytes in what a user pipes or types: the question still runs, with one warning.

Before, one invalid UTF-8 byte or a NUL on stdin to `hermes chat -q -` ended
in "internal error ... a bug in hermes" (exit 70). These run the real CLI
against the loopback ScriptedLLM and check what the model received.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import HERMES, clean_env
from peers.llm_server import Reply, ScriptedLLM


def _chat(
    home: Path, cwd: Path, url: str, *extra: bytes, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    argv: list[str | bytes] = [
        str(HERMES),
        "chat",
        "--provider",
        "custom",
        "--base-url",
        url,
        "-m",
        "m",
        *extra,
    ]
    return subprocess.run(
        argv,
        input=stdin,
        env=clean_env(home),
        capture_output=True,
        cwd=cwd,
        check=False,
        timeout=60,
    )


@pytest.mark.peer("scripted")
@pytest.mark.parametrize(
    ("raw", "sent", "warning"),
    [
        (b"caf\xe9 au lait?", "caf\ufffd au lait?", b"1 invalid UTF-8 sequence replaced"),
        (b"what\x00 is\x00 this?", "what is this?", b"2 NUL characters removed"),
        (b"\xff\xfe\x00h\x00i", "\ufffd\ufffdhi", b"NUL character"),
    ],
)
def test_stdin_with_bad_bytes_still_asks(
    hermes_home: Path, tmp_path: Path, raw: bytes, sent: str, warning: bytes
) -> None:
    with ScriptedLLM([Reply("Answered.")]) as llm:
        result = _chat(hermes_home, tmp_path, llm.openai_base_url, b"-q", b"-", stdin=raw)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Answered.\n"
    assert b"internal error" not in result.stderr and b"Traceback" not in result.stderr
    assert b"the question on stdin is not clean UTF-8 text" in result.stderr
    assert warning in result.stderr
    assert llm.requests[0].messages[-1]["content"] == sent


@pytest.mark.peer("scripted")
def test_argument_with_bad_bytes_still_asks(hermes_home: Path, tmp_path: Path) -> None:
    with ScriptedLLM([Reply("Answered.")]) as llm:
        result = _chat(hermes_home, tmp_path, llm.openai_base_url, b"-q", b"na\xefve")
    assert result.returncode == 0, result.stderr
    assert b"the question is not clean UTF-8 text" in result.stderr
    assert llm.requests[0].messages[-1]["content"] == "na\ufffdve"


def test_clean_stdin_gives_no_warning(hermes_home: Path, tmp_path: Path) -> None:
    with ScriptedLLM([Reply("Fine.")]) as llm:
        result = _chat(
            hermes_home, tmp_path, llm.openai_base_url, b"-q", b"-", stdin="héron �".encode()
        )
    assert result.returncode == 0 and result.stderr == b""
    assert llm.requests[0].messages[-1]["content"] == "héron �"


def test_cron_prompt_on_stdin_with_bad_bytes(hermes_home: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(HERMES), "cron", "add", "-s", "every 1h", "-p", "-", "--name", "x"],
        input=b"summar\xefze\x00 the news",
        env=clean_env(hermes_home),
        capture_output=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert b"the prompt on stdin is not clean UTF-8 text" in result.stderr
    (job,) = (hermes_home / "cron").glob("*.json")
    assert "summar\ufffdze the news" in job.read_text()
