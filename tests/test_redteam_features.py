"""Red-team tests of the everyday features (#18) and ACP (#16), through real entry points.

Each test is an attack that worked (or a crash that happened) before its fix:
a hostile chat user, model or workspace against the gateway, the checkpoints and
the log and image readers. Real peers only: a `hermes gateway run` process with its
HTTP API and a scripted model, real git, real files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hermes_agent.checkpoints import Store

pytestmark = pytest.mark.peer("scripted")


def test_rollback_confirmation_restores_the_checkpoint_it_showed(
    hermes_home: Path, tmp_path: Path
) -> None:
    """The plan /rollback shows is confirmed by a second message. When that message named
    a number, a checkpoint taken in between (another chat on the same workspace, a
    /background run) shifted the numbers and "yes" restored another checkpoint than the
    one shown. And ``/rollback ² yes`` ('²'.isdigit() is True, int('²') fails) must be
    a usage answer, not an exception in the gateway's worker."""
    from peers.llm_server import Reply, ScriptedLLM
    from test_gateway import Gateway, ask, configure_home, free_port

    work = tmp_path / "work"
    work.mkdir()
    (work / "plan.md").write_text("the user's plan\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with ScriptedLLM() as llm:
        llm.add(
            Reply(tool_calls=[("write_file", {"path": "plan.md", "content": "overwritten\n"})]),
            Reply("Rewrote it."),
            Reply(tool_calls=[("write_file", {"path": "other.md", "content": "b's\n"})]),
            Reply("Wrote it."),
        )
        port = free_port()
        configure_home(hermes_home, llm, port)
        config = yaml.safe_load((hermes_home / "config.yaml").read_text())
        config.setdefault("terminal", {})["cwd"] = str(work)
        (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
        gateway = Gateway(hermes_home, port, run_dir)
        try:
            gateway.wait_ready()
            assert ask(gateway, "rewrite my plan", user="a", timeout=60) == "Rewrote it."
            shown = ask(gateway, "/rollback", user="a", timeout=60)
            confirm = re.search(r"/rollback \S+ yes", shown)
            assert confirm is not None and "plan.md" in shown, shown
            # Meanwhile another chat changes the workspace: a new checkpoint is newest.
            assert ask(gateway, "write other.md", user="b", timeout=60) == "Wrote it."
            assert len(Store(work).listing()) == 2
            done = ask(gateway, confirm.group(), user="a", timeout=60)
            assert "restored" in done, done
            assert (work / "plan.md").read_text() == "the user's plan\n"  # What was shown.
            for odd in ("/rollback ² yes", "/rollback ١ yes", "/rollback 0 yes"):
                assert ask(gateway, odd, user="a", timeout=60).startswith("usage:"), odd
            assert ask(gateway, "/usage", user="a", timeout=60).startswith("This conversation")
        finally:
            gateway.kill()


def test_checkpoint_numbers_in_other_scripts_are_bad_input(hermes: Any, tmp_path: Path) -> None:
    """`hermes checkpoints diff ²`: '²'.isdigit() is True and int('²') raises; the
    command must answer like any other unknown checkpoint (exit 2), not crash (70)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    Store(ws).snapshot("first")
    for which in ("²", "١", "߁"):
        done = hermes("checkpoints", "--workspace", str(ws), "diff", which)
        assert done.returncode == 2, done.stderr
        assert "no checkpoint" in done.stderr and "internal error" not in done.stderr


def test_ansi_c_escapes_that_are_not_octal_do_not_break_the_gate(
    hermes_home: Path, tmp_path: Path
) -> None:
    """``$'\\8'``, ``$'\\²'`` and ``$'\\U7fffffff'`` in a model's command: the classifier's
    decoder called int(.., 8) on any digit and chr() on any value, so the gate raised
    ValueError and the terminal tool failed on a harmless echo. The decoding of real
    octal and hex escapes (``$'\\162\\155'`` is ``rm``) still reaches the classifier."""
    import asyncio
    import json

    from hermes_agent.config.loader import load_config
    from hermes_agent.providers.base import ToolCall
    from hermes_agent.safety.gate import classify
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools import terminal as term
    from hermes_agent.tools.registry import ToolContext, builtin_registry, dispatch

    ws = tmp_path / "ws"
    ws.mkdir()
    hermes_home.mkdir(parents=True, exist_ok=True)
    (hermes_home / "config.yaml").write_text(yaml.safe_dump({"checkpoints": {"enabled": False}}))

    async def nobody(question: str, choices: Any) -> None:
        return None

    ctx = ToolContext("s", str(ws), load_config(), StateDB(), ask=nobody)
    tools = {t.name: t for t in builtin_registry().select(["terminal"])}
    try:
        for command, shown in (
            (r"echo $'\8'", "\\8"),
            (r"echo $'\²'", "\\²"),
            (r"echo $'a\U7fffffffb' | wc -c", ""),
        ):
            call = ToolCall("t", "terminal", json.dumps({"command": command}))
            result = asyncio.run(dispatch(call, tools, ctx))
            assert not result.is_error, result.content
            assert "ValueError" not in result.content and shown in result.content
    finally:
        term.cleanup(ctx.state)
    assert classify(r"$'\162\155' -rf /", cwd=str(ws)).level >= 2


def test_cron_schedule_with_other_digits_is_bad_input(hermes: Any) -> None:
    """A schedule is written by the user or by the model (the cronjob tool): '²' passed
    str.isdigit() and int() raised, an internal error instead of a clear refusal."""
    for schedule in ("² * * * *", "*/² * * * *", "0 ١ * * *"):
        done = hermes("cron", "add", "-s", schedule, "--prompt", "hi")
        assert done.returncode == 2, done.stderr
        assert "internal error" not in done.stderr and "schedule" in done.stderr


@pytest.mark.peer("mcp")
def test_a_secret_cut_by_a_read_of_mcp_stderr_is_still_redacted(
    hermes_home: Path, tmp_path: Path
) -> None:
    """An MCP server's stderr was redacted chunk by chunk as each read returned: a secret
    written in two pieces (a pipe read ends wherever the writer's buffer did) was in
    neither piece, so it reached logs/mcp/NAME.log in clear; so did a PEM key whose
    END line came in a later read. The log must hold neither, nor `hermes logs` show it."""
    import json
    import subprocess
    import sys

    from conftest import HERMES, clean_env
    from hermes_agent.config.loader import load_config
    from hermes_agent.mcp import config as mcp_config
    from hermes_agent.mcp.manager import READY, get_manager

    secret = "sk-svc-" + "q7Wm3Zp9Lx2Rv8Tn4Yb6" * 2
    body = "MIIEowIBAAKCAQEAx5Jr2" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789" * 3
    pieces = [
        "connecting with token " + secret[:15],
        secret[15:] + " ok\n",
        "-----BEGIN RSA PRIVATE KEY-----\n" + body[:40] + "\n",
        body[40:] + "\n-----END RSA PRIVATE KEY-----\nready\n",
    ]
    ws = tmp_path / "ws"
    ws.mkdir()
    hermes_home.mkdir(exist_ok=True)
    env_file = hermes_home / ".env"
    env_file.write_text(f"SERVICE_API_KEY={secret}\n")
    env_file.chmod(0o600)
    server = {
        "command": sys.executable,
        "args": [str(Path(__file__).parent / "peers" / "mcp_hostile.py")],
        "env": {"HOSTILE_STDERR": json.dumps(pieces)},
        "approval": "auto",
    }
    data = {"mcp_servers": {"h": server}, "mcp": {"connect_wait": 60}}
    (hermes_home / "config.yaml").write_text(yaml.safe_dump(data))
    config = load_config()
    servers = mcp_config.parse_servers(config.get("mcp_servers"))
    scope = get_manager().open_scope(servers, config=config, cwd=ws, include_global=False)
    try:
        import asyncio
        import time

        asyncio.run(scope.prepare())
        deadline = time.monotonic() + 60
        while any(c.state != READY for c in scope.connections):
            assert time.monotonic() < deadline, scope.statuses()
            time.sleep(0.05)
    finally:
        scope.close()
    log = (hermes_home / "logs" / "mcp" / "h.log").read_text()
    assert "ready" in log and "connecting with token" in log, log
    flat = "".join(log.split())
    assert secret not in flat and secret[:15] not in flat and secret[15:] not in flat, log
    assert body[:40] not in flat and body[40:] not in flat, log
    shown = subprocess.run(
        [str(HERMES), "logs", "mcp", "h"],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and "ready" in shown.stdout, shown.stderr
    assert secret[15:] not in "".join(shown.stdout.split())


def test_the_editor_never_sees_part_of_a_secret_in_live_output(
    hermes_home: Path, tmp_path: Path
) -> None:
    """ACP shows a running command's output as it comes; it redacted the output so far,
    so a secret whose first half had been read (the second not yet) was shown half in
    clear. Whole lines only now: the editor sees the line once it is whole, masked."""
    import asyncio

    import acp

    from acp_client import Editor, hermes_acp, write_config
    from peers.llm_server import Reply, ScriptedLLM

    secret = "sk-live-" + "Hq3Zr8Wn5Tx2Vb7Mc4Kp" * 2
    ws = tmp_path / "project"
    ws.mkdir()
    (ws / "creds.txt").write_text(f"token={secret}\n")
    hermes_home.mkdir(parents=True, exist_ok=True)
    (hermes_home / ".env").write_text(f"SERVICE_API_KEY={secret}\n")
    (hermes_home / ".env").chmod(0o600)
    command = "head -c 26 creds.txt; sleep 0.6; tail -c +27 creds.txt; sleep 0.6; echo done"
    steps = [Reply(tool_calls=[("terminal", {"command": command})]), Reply("Shown.")]
    editor = Editor("yes", "yes")

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, ws) as conn:
            sid = (await conn.new_session(cwd=str(ws))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("show the creds")])

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        asyncio.run(scenario())
    shown = [str(u.content) for u in editor.of("tool_call_update")]
    assert any("done" in text for text in shown), shown
    assert not any(secret[:20] in text for text in shown), shown


def test_hermes_logs_shows_bidi_controls_as_text(hermes: Any, hermes_home: Path) -> None:
    """A log line holds text from chat users, web pages and MCP servers. A right-to-left
    override in it made the terminal show the line reordered (another command than the
    one logged); it is shown as \\u202e, like the escape sequences already were."""
    logs = hermes_home / "logs"
    logs.mkdir(parents=True)
    line = "approved: echo \u202egnp.exe\u202c safe \u2066x\u2069 \x1b[2J\u2028next\n"
    (logs / "gateway.log").write_text(line)
    done = hermes("logs", "gateway")
    assert done.returncode == 0, done.stderr
    for char in "\u202e\u202c\u2066\u2069\x1b\u2028":
        assert char not in done.stdout
    assert "\\u202e" in done.stdout and "\\x1b" in done.stdout and "\\u2028" in done.stdout


_PARALLEL_BOMBS = r"""
import os, resource, struct, sys, threading, zlib
from hermes_agent import images

def bomb(w, h, seed):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    c = zlib.compressobj(9)
    row = b"\x00" + bytes([seed]) * (w * 4)
    body = b"".join(c.compress(row) for _ in range(h)) + c.flush()
    head = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", body) + chunk(b"IEND", b"")

files = [bomb(4500, 4500, i) for i in range(3)]
print(max(len(f) for f in files), file=sys.stderr)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
threads = [threading.Thread(target=images.ingest_bytes, args=(f,)) for f in files]
for t in threads:
    t.start()
for t in threads:
    t.join()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


def test_small_image_files_that_decode_huge_are_not_decoded_side_by_side(
    hermes_home: Path,
) -> None:
    """A 100 KB PNG can announce 4500x4500 RGBA pixels (81 MB decoded, more while it is
    scaled and cleaned), under MAX_PIXELS. Each was decoded at full size and copied
    three times (turned, converted, stripped), and as many at once as arrived: three
    from a chat took 1 GB. Now scaled first and one decode at a time per process."""
    import subprocess
    import sys

    from conftest import clean_env

    hermes_home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _PARALLEL_BOMBS],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stderr.split()[0]) < 200_000  # Each file is small...
    grown_mb = int(done.stdout.split()[-1])
    assert grown_mb < 450, f"{grown_mb} MB for three images"  # ...and so is the peak.


def test_times_at_the_ends_of_the_calendar_are_bad_input(hermes: Any, hermes_home: Path) -> None:
    """'9999-12-31T23:59:59-14:00' is a valid ISO time that overflows in UTC: as a
    schedule (the user's or the model's, through the cronjob tool) and in a damaged job
    file it ended `hermes cron add`, `cron list` and `hermes status` with an internal
    error (70), and so did an interval past it ('in 3000000d'). A schedule is refused
    (2); a job file holding such a time is a broken job file."""
    import json

    for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59"):
        done = hermes("cron", "add", "-s", when, "--prompt", "hi")
        assert done.returncode == 2 and "between the years" in done.stderr, done.stderr
    for when in ("every 3000000d", "in 99999999999d", "in 999999999999999999999999m"):
        done = hermes("cron", "add", "-s", when, "--prompt", "hi")
        assert done.returncode == 2 and "at most" in done.stderr, done.stderr
    assert hermes("cron", "add", "-s", "0 9 * * *", "--prompt", "hi", "--name", "j").returncode == 0
    (job,) = (hermes_home / "cron").glob("j-*.json")
    data = json.loads(job.read_text())
    for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        data["next_run"] = when
        job.write_text(json.dumps(data))
        for args in (("status",), ("cron", "list")):
            done = hermes(*args)
            assert done.returncode == 0, (args, done.stderr)
            assert "internal error" not in done.stderr and "j-" in done.stdout + done.stderr


def test_json_outputs_carry_no_raw_terminal_controls(
    hermes: Any, hermes_home: Path, tmp_path: Path
) -> None:
    """`--json` printed with ensure_ascii=False: json.dumps escapes C0 controls but leaves
    C1 (U+009B is CSI to a terminal) and bidi overrides raw. A checkpoint's reason holds
    a file name the model chose, and a platform's state a server's words."""
    import json
    import subprocess
    import time

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    Store(ws).snapshot("write_file x\u009b31m\u202eevil", turn="hi\u009b2J")
    # The status file is read only for a live gateway (a process whose command line says
    # gateway): a sleep named so stands in for it.
    fake = subprocess.Popen(["bash", "-c", "exec -a hermes-gateway sleep 60"])
    try:
        (hermes_home / "gateway.pid").write_text(f"{fake.pid}\n")
        state = {"state": "error\u009b2J\u202e", "since": 1, "detail": "x"}
        status = {"pid": fake.pid, "started_at": 1, "updated_at": 1, "phase": "running"}
        status["platforms"] = {"api": state}
        (hermes_home / "gateway.status.json").write_text(json.dumps(status))
        deadline = time.monotonic() + 10
        while b"gateway" not in Path(f"/proc/{fake.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        outputs = {
            "checkpoints": hermes("checkpoints", "--workspace", str(ws), "list", "--json"),
            "status": hermes("status", "--json"),
            "doctor": hermes("doctor", "--json", "--offline", "--no-probe"),
        }
    finally:
        fake.kill()
        fake.wait()
    assert "\\u009b" in outputs["checkpoints"].stdout and "\\u009b" in outputs["status"].stdout
    for name, done in outputs.items():
        assert done.stdout.strip(), (name, done.stderr)
        assert not any(0x80 <= ord(c) <= 0x9F or c in "\u202e\u2066" for c in done.stdout), name


def test_a_damaged_pid_file_is_a_stale_one(hermes: Any, hermes_home: Path, tmp_path: Path) -> None:
    """gateway.pid holding bytes that are not UTF-8 (a damaged disk, a crash mid-write on
    a file system without atomic rename) raised UnicodeDecodeError where a stale pid was
    expected: `hermes status`, `gateway status|stop` ended with an internal error, and
    `hermes gateway run` could never start again until the file was removed by hand."""
    from peers.llm_server import Reply, ScriptedLLM
    from test_gateway import Gateway, ask, configure_home, free_port

    hermes_home.mkdir(parents=True, exist_ok=True)
    (hermes_home / "gateway.pid").write_bytes(b"\xff\xfe\x001")
    for args in (("status",), ("gateway", "status"), ("gateway", "stop")):
        done = hermes(*args)
        assert "internal error" not in done.stderr and done.returncode in (0, 1), (args, done)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with ScriptedLLM() as llm:
        llm.add(Reply("Up again."))
        port = free_port()
        configure_home(hermes_home, llm, port)
        (hermes_home / "gateway.pid").write_bytes(b"\xff\xfe\x001")
        gateway = Gateway(hermes_home, port, run_dir)
        try:
            gateway.wait_ready()
            assert ask(gateway, "hello", user="a", timeout=60) == "Up again."
        finally:
            gateway.kill()


def test_hermes_logs_follow_redacts_a_key_across_its_lines(
    hermes_home: Path, tmp_path: Path
) -> None:
    """`hermes logs` redacts the lines it shows together (a PEM private key spans lines);
    `-f` redacted each new line alone, so the same key appended while following was
    shown in clear, line by line, where the tail showed [REDACTED]."""
    import signal
    import subprocess
    import time

    from conftest import HERMES, clean_env

    body = ["MIIEowIBAAKCAQEAx5Jr2AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGh"[:64]] * 6
    begin, end = "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"
    pem = "\n".join([begin, *body, end]) + "\n"
    logs = hermes_home / "logs"
    logs.mkdir(parents=True)
    log = logs / "gateway.log"
    log.write_text("started\n")
    out_path = tmp_path / "follow.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            [str(HERMES), "logs", "-f"], env=clean_env(hermes_home), stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while "started" not in out_path.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        with log.open("a") as handle:
            handle.write("a key was printed:\n" + pem + "after the key\n")
        while "after the key" not in out_path.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shown = out_path.read_text()
    assert body[0] not in shown and "[REDACTED]" in shown, shown


@pytest.mark.peer("mcp")
def test_a_workspace_change_through_a_local_mcp_server_can_be_rolled_back(
    hermes_home: Path, tmp_path: Path
) -> None:
    """Checkpoints were taken before write_file, patch and terminal commands only: a model
    overwriting or deleting the user's files through a stdio MCP server (the reference
    filesystem server, rooted at the workspace) left nothing /rollback could restore.
    A read (readOnlyHint) takes no checkpoint."""
    import asyncio

    from test_mcp_client import FILESYSTEM, context, open_scope, ready, setup, tools_of

    if not FILESYSTEM.exists():
        pytest.skip("npm MCP peers not installed")
    from hermes_agent import checkpoints

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.md").write_text("the user's notes\n")
    server = {"command": str(FILESYSTEM), "args": [str(ws)], "approval": "auto"}
    config = setup(hermes_home, ws, {"fs": server})
    scope = open_scope(config, ws)
    try:
        ready(scope)
        tools = tools_of(scope)
        ctx = context(config, ws)
        checkpoints.new_turn(ctx.state, "read my notes")
        read = tools["mcp__fs__read_text_file"].handler({"path": str(ws / "notes.md")}, ctx)
        assert "the user's notes" in asyncio.run(read)
        assert Store(ws).listing() == []  # Reading changes nothing: no checkpoint.
        checkpoints.new_turn(ctx.state, "rewrite them")
        write = tools["mcp__fs__write_file"].handler(
            {"path": str(ws / "notes.md"), "content": "gone\n"}, ctx
        )
        asyncio.run(write)
    finally:
        scope.close()
    assert (ws / "notes.md").read_text() == "gone\n"
    store = Store(ws)
    (taken,) = store.listing()
    assert "mcp fs/write_file" in taken.reason
    store.restore(taken)
    assert (ws / "notes.md").read_text() == "the user's notes\n"


def test_editor_sessions_in_two_projects_both_keep_their_mcp_servers(
    hermes_home: Path, tmp_path: Path
) -> None:
    """The configured MCP servers were one set per process, restarted for the workspace
    that asked last: an editor opening a session in a second project stopped the servers
    of the first project's open session, whose MCP tools were then gone ('no tool named
    mcp__mb__add'). Each workspace now keeps its own."""
    import asyncio
    import sys

    import acp

    from acp_client import Editor, hermes_acp, write_config
    from peers.llm_server import Reply, ScriptedLLM

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    steps = [
        Reply(tool_calls=[("mcp__mb__add", {"a": 1, "b": 2})]),
        Reply("first"),
        Reply("in b"),
        Reply(tool_calls=[("mcp__mb__add", {"a": 2, "b": 2})]),
        Reply("second"),
    ]
    editor = Editor(*(["yes"] * 10))

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, a) as conn:
            in_a = (await conn.new_session(cwd=str(a))).session_id
            await conn.prompt(session_id=in_a, prompt=[acp.text_block("add")])
            in_b = (await conn.new_session(cwd=str(b))).session_id
            await conn.prompt(session_id=in_b, prompt=[acp.text_block("hi")])
            await conn.prompt(session_id=in_a, prompt=[acp.text_block("add again")])

    server = Path(__file__).parent / "peers" / "mcp_misbehaving.py"
    with ScriptedLLM(steps) as llm:
        write_config(
            hermes_home,
            llm.openai_base_url,
            f"mcp_servers:\n  mb:\n    command: {sys.executable}\n    args: ['{server}']\n"
            "    approval: auto\nmcp:\n  connect_wait: 60\n",
        )
        asyncio.run(scenario())
        results = [
            [str(m.get("content")) for m in llm.requests[i].messages if m["role"] == "tool"][-1]
            for i in (1, 4)
        ]
    for result, total in zip(results, ("3", "4"), strict=True):
        assert "no tool named" not in result and total in result, results
