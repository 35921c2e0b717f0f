"""`hermes acp` driven by the official Python SDK's client side, against a scripted model.

Each test starts the real agent process over stdio (as an editor does) with a
HERMES_HOME of its own and a loopback model server whose replies are scripted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import acp
import pytest

from acp_client import Editor, hermes_acp, write_config
from conftest import HERMES, clean_env
from hermes_agent.state.db import StateDB
from peers.llm_server import Hang, Reply, ScriptedLLM

pytestmark = pytest.mark.peer("scripted")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "project"
    ws.mkdir()
    (ws / "notes.txt").write_text("keep me\n")
    return ws


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def tool_results(llm: ScriptedLLM, index: int) -> list[str]:
    return [str(m.get("content")) for m in llm.requests[index].messages if m["role"] == "tool"]


def test_initialize_prompt_streams_edit_approved_then_denied_by_every_route(
    hermes_home: Path, workspace: Path
) -> None:
    notes = workspace / "notes.txt"
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "approved\n"})]),
        Reply("Written the notes."),
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "denied\n"})]),
        Reply(tool_calls=[("terminal", {"command": "echo sneaky > notes.txt"})]),
        Reply("I could not change it."),
    ]
    editor = Editor("yes", "no")

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            init = conn.init
            assert init.protocol_version == 1
            caps = init.agent_capabilities
            assert caps.load_session and caps.prompt_capabilities.embedded_context
            assert caps.prompt_capabilities.image and caps.mcp_capabilities.http
            assert caps.session_capabilities.close is not None
            assert caps.session_capabilities.delete is not None
            assert {m.id for m in init.auth_methods} == {"provider-key", "hermes-setup"}
            assert init.agent_info.name == "hermes-agent"
            session = await conn.new_session(cwd=str(workspace))
            sid = session.session_id
            assert session.modes.current_mode_id == "manual"
            assert {o.id for o in session.config_options} == {"mode", "model"}
            first = await conn.prompt(session_id=sid, prompt=[acp.text_block("write notes")])
            assert first.stop_reason == "end_turn"
            # The edit went through the editor (its buffer), after an approval showing the diff.
            assert editor.buffers[str(notes)] == "approved\n"
            call, options = editor.permissions[0]
            assert [o.kind for o in options] == ["allow_once", "allow_always", "reject_once"]
            diffs = [c for c in call.content if c.type == "diff"]
            assert diffs and diffs[0].new_text == "approved\n" and diffs[0].old_text == "keep me\n"
            started = editor.of("tool_call", sid)[0]
            assert started.kind == "edit" and started.locations[0].path == str(notes)
            chunks = editor.of("agent_message_chunk", sid)
            assert "".join(c.content.text for c in chunks) == "Written the notes."
            assert all(c.message_id for c in chunks)
            await editor.wait_for(lambda: editor.of("available_commands_update", sid))
            announced = editor.of("available_commands_update", sid)[0]
            names = {c.name for c in announced.available_commands}
            assert {"usage", "compress"} <= names and "exit" not in names
            assert editor.of("usage_update", sid) and editor.of("session_info_update", sid)

            second = await conn.prompt(session_id=sid, prompt=[acp.text_block("change it")])
            assert second.stop_reason == "end_turn"
            assert len(editor.permissions) == 2, "the terminal route was not asked again"
            finished = editor.of("tool_call_update", sid)
            terminal = [u for u in finished if u.status == "failed"]
            assert terminal and "denial" in terminal[-1].content[0].content.text
            assert editor.buffers[str(notes)] == "approved\n"

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())
    assert notes.read_text() == "keep me\n", "nothing reached the disk by another route"
    log = (hermes_home / "logs" / "acp.log").read_text()
    assert "hermes-acp started" in log


def test_file_reads_see_the_editors_unsaved_buffer(hermes_home: Path, workspace: Path) -> None:
    draft = workspace / "draft.md"
    draft.write_text("saved text\n")
    steps = [Reply(tool_calls=[("read_file", {"path": "draft.md"})]), Reply("Read it.")]
    editor = Editor()
    editor.buffers[str(draft)] = "UNSAVED TEXT in the editor\n"

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("read the draft")])

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())
        seen = tool_results(llm, 1)
    assert str(draft) in editor.reads
    assert "UNSAVED TEXT in the editor" in seen[0] and "saved text" not in seen[0]


def test_cancel_mid_tool_call_and_mid_model_call_then_prompts_work(
    hermes_home: Path, workspace: Path
) -> None:
    # A sleep no other process runs (the pid of this test), matched whole: on a shared
    # machine 'sleep 30' also matched someone else's 'sleep 300'.
    sleep = f"sleep 90.{os.getpid()}"
    steps = [
        Reply(tool_calls=[("terminal", {"command": f"echo started; {sleep}"})]),
        Hang(90),
        Reply("Still here."),
        Reply("And queued."),
    ]
    editor = Editor()

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.cancel(session_id=sid)  # Idle: nothing happens, nothing poisoned.
            turn = asyncio.ensure_future(
                conn.prompt(session_id=sid, prompt=[acp.text_block("run the long thing")])
            )
            await editor.wait_for(
                lambda: any("started" in str(u.content) for u in editor.of("tool_call_update"))
            )
            began = time.monotonic()
            await conn.cancel(session_id=sid)
            assert (await turn).stop_reason == "cancelled"
            # Only tells the cancel from the command's 90 s, with room for a loaded machine.
            assert time.monotonic() - began < 45
            hanging = asyncio.ensure_future(
                conn.prompt(session_id=sid, prompt=[acp.text_block("think")])
            )
            # Cancelled while the model call hangs: once the model has the request (a
            # fixed 0.5 s could cancel before it was sent, and the hang go to the next).
            async with asyncio.timeout(60):
                while len(llm.requests) < 2:
                    await asyncio.sleep(0.02)
            began = time.monotonic()
            await conn.cancel(session_id=sid)
            assert (await hanging).stop_reason == "cancelled"
            assert time.monotonic() - began < 45, "the cancel waited for the model's 90 s"
            # Two prompts at once: the second waits for the first, none is dropped.
            one = conn.prompt(session_id=sid, prompt=[acp.text_block("still there?")])
            two = conn.prompt(session_id=sid, prompt=[acp.text_block("and queued?")])
            answers = await asyncio.gather(one, two)
            assert [a.stop_reason for a in answers] == ["end_turn", "end_turn"]
            assert editor.text(sid).endswith("Still here.And queued.")

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())
        history = llm.requests[-1].messages
    cancelled = [m for m in history if m["role"] == "tool"]
    assert cancelled and "cancelled" in cancelled[0]["content"]
    alive = subprocess.run(["pgrep", "-f", f"^{re.escape(sleep)}$"], capture_output=True)
    assert not alive.stdout, "the cancelled command runs on"


def test_load_replays_list_resume_close_delete_and_the_chat_continues(
    hermes_home: Path, workspace: Path, tmp_path: Path
) -> None:
    steps = [
        Reply(tool_calls=[("todo", {"items": [{"task": "pack"}, {"task": "go"}]})]),
        Reply("Planned."),
        Reply("Resumed answer."),
        Reply("From the terminal."),
        Reply("Back in the editor."),
    ]
    other = tmp_path / "elsewhere"
    other.mkdir()

    async def first_editor() -> str:
        editor = Editor()
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("plan my trip")])
            plan = editor.of("plan", sid)
            assert plan and [e.content for e in plan[-1].entries] == ["pack", "go"]
            await conn.new_session(cwd=str(other))
            return sid

    async def second_editor(sid: str) -> None:
        editor = Editor()
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            listed = await conn.list_sessions(cwd=str(workspace))
            assert [s.session_id for s in listed.sessions] == [sid]
            assert listed.sessions[0].title == "plan my trip" and listed.sessions[0].updated_at
            everything = await conn.list_sessions()
            assert len(everything.sessions) == 2
            await conn.load_session(cwd=str(workspace), session_id=sid)
            replayed = editor.kinds(sid)
            assert replayed[:4] == [
                "user_message_chunk",
                "tool_call",
                "tool_call_update",
                "agent_message_chunk",
            ]
            assert editor.of("user_message_chunk")[0].content.text == "plan my trip"
            assert editor.text(sid) == "Planned."
            await conn.close_session(session_id=sid)
            editor.updates.clear()
            await conn.resume_session(cwd=str(workspace), session_id=sid)
            assert "user_message_chunk" not in editor.kinds(sid), "resume does not replay"
            answer = await conn.prompt(session_id=sid, prompt=[acp.text_block("again")])
            assert answer.stop_reason == "end_turn" and "Resumed answer." in editor.text(sid)

    async def third_editor(sid: str) -> None:
        editor = Editor()
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            await conn.load_session(cwd=str(workspace), session_id=sid)
            await conn.prompt(session_id=sid, prompt=[acp.text_block("after the chat")])
            raw = conn._conn  # session/delete: the Python SDK has no method for it yet.
            await raw.send_request("session/delete", {"sessionId": sid})
            with pytest.raises(acp.RequestError):
                await raw.send_request("session/delete", {"sessionId": sid})
            left = await conn.list_sessions()
            assert sid not in [s.session_id for s in left.sessions]

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        sid = asyncio.run(first_editor())
        asyncio.run(second_editor(sid))
        chat = subprocess.run(
            [str(HERMES), "chat", "-r", sid, "-q", "what did we plan?"],
            env=clean_env(hermes_home),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=workspace,
        )
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip() == "From the terminal."
        sent = [m.get("content") for m in llm.requests[3].messages if m["role"] == "user"]
        assert sent == ["plan my trip", "again", "what did we plan?"]
        asyncio.run(third_editor(sid))
        last = [m.get("content") for m in llm.requests[4].messages if m["role"] == "user"]
        assert last[-2:] == ["what did we plan?", "after the chat"]
    assert StateDB().get_session(sid) is None


def test_modes_and_model_options_and_a_permission_nobody_answers(
    hermes_home: Path, workspace: Path
) -> None:
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "x\n"})]),
        Reply("Gave up."),
        Reply(tool_calls=[("write_file", {"path": "new.txt", "content": "free\n"})]),
        Reply("Done."),
    ]
    editor = Editor(hold=60.0)  # Never answers within acp.permission_timeout (1 s).

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("edit")])
            failed = [u for u in editor.of("tool_call_update", sid) if u.status == "failed"]
            assert failed and "nobody is there" in failed[0].content[0].content.text
            changed = await conn.set_config_option(config_id="mode", session_id=sid, value="smart")
            current = {o.id: o.current_value for o in changed.config_options}
            assert current["mode"] == "smart"
            await editor.wait_for(lambda: editor.of("current_mode_update", sid))
            assert editor.of("current_mode_update", sid)[-1].current_mode_id == "smart"
            await conn.prompt(session_id=sid, prompt=[acp.text_block("write a new file")])
            assert len(editor.permissions) == 1, "Smart mode does not ask for workspace edits"
            model = await conn.set_config_option(
                config_id="model", session_id=sid, value="other-model"
            )
            assert {o.id: o.current_value for o in model.config_options}["model"] == "other-model"
            with pytest.raises(acp.RequestError):
                await conn.set_session_mode(session_id=sid, mode_id="yolo")

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url, "acp:\n  permission_timeout: 1\n")
        run(scenario())
    assert StateDB().list_sessions()[0].model == "other-model"


def test_stdout_carries_only_the_protocol_and_bad_starts_fail_clearly(
    hermes_home: Path, workspace: Path
) -> None:
    broken = hermes_home
    broken.mkdir()
    (broken / "config.yaml").write_text("model: [unclosed\n")
    result = subprocess.run(
        [str(HERMES), "acp"],
        input="",
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=workspace,
    )
    assert result.returncode != 0 and result.stdout == ""
    assert "config.yaml" in result.stderr and "Traceback" not in result.stderr
    (broken / "config.yaml").write_text("")
    garbage = subprocess.run(
        [str(HERMES), "acp"],
        input="not json\n" + json.dumps({"jsonrpc": "2.0", "id": 1, "method": "nope"}) + "\n",
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=workspace,
    )
    lines = [json.loads(line) for line in garbage.stdout.splitlines() if line.strip()]
    assert lines and all(line.get("jsonrpc") == "2.0" for line in lines)
    assert any(line.get("error", {}).get("code") == -32601 for line in lines)
    # stdout (or stdin) a file, not a pipe: a one-line error, not exit 70 from asyncio.
    requests = workspace / "requests.jsonl"
    requests.write_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "nope"}) + "\n")
    output = workspace / "out.jsonl"
    for to_file in (True, False):
        with requests.open("rb") as src, output.open("wb") as out:
            started = subprocess.Popen(
                [str(HERMES), "acp"],
                stdin=subprocess.PIPE if to_file else src,
                stdout=out if to_file else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=clean_env(hermes_home),
                cwd=workspace,
            )
            _, err = started.communicate(timeout=30)
        assert started.returncode == 2, err
        assert b"not a pipe" in err and b"Traceback" not in err


EVERYTHING = Path(__file__).parent / "peers" / "node_modules" / ".bin" / "mcp-server-everything"


def tool_names(request: object) -> set[str]:
    body = getattr(request, "body", {}) or {}
    return {t["function"]["name"] for t in body.get("tools") or ()}


@pytest.mark.peer("mcp-server-everything")
@pytest.mark.skipif(not EVERYTHING.exists(), reason="tests/peers/install.sh has not run")
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_an_editors_mcp_servers_stdio_and_http_serve_their_session_only(
    hermes_home: Path, workspace: Path
) -> None:
    import os
    import socket

    from acp.schema import HttpMcpServer, McpServerStdio

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    http = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    steps = [
        Reply(tool_calls=[("mcp__ev__echo", {"message": "from the editor"})]),
        Reply("Echoed."),
        Reply("No such tool here."),
    ]
    editor = Editor("yes")

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            server = McpServerStdio(name="ev", command=str(EVERYTHING), args=["stdio"], env=[])
            web = HttpMcpServer(
                type="http", name="web", url=f"http://127.0.0.1:{port}/mcp", headers=[]
            )
            servers = [server, web]
            mine = (await conn.new_session(cwd=str(workspace), mcp_servers=servers)).session_id
            other = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=mine, prompt=[acp.text_block("echo it")])
            finished = [u for u in editor.of("tool_call_update", mine) if u.status]
            assert "Echo: from the editor" in finished[0].content[0].content.text
            await conn.prompt(session_id=other, prompt=[acp.text_block("echo it too")])
            await conn.close_session(session_id=mine)

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP MCP server did not start"
                time.sleep(0.05)
        with ScriptedLLM(steps) as llm:
            write_config(hermes_home, llm.openai_base_url, "mcp:\n  connect_wait: 30\n")
            run(scenario())
            requests = llm.requests
    finally:
        os.killpg(http.pid, 9)
        http.wait()
    assert {"mcp__ev__echo", "mcp__web__echo"} <= tool_names(requests[0])
    assert not any(n.startswith(("mcp__ev__", "mcp__web__")) for n in tool_names(requests[2]))
    assert "echo" in str(editor.permissions[0][0].title)


def test_a_prompt_with_an_image_and_an_attached_file(hermes_home: Path, workspace: Path) -> None:
    import base64
    import io

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(picture, format="PNG")
    data = base64.b64encode(picture.getvalue()).decode()
    attached = acp.resource_block(
        acp.embedded_text_resource("file:///project/spec.md", "The spec says: be brief.")
    )
    editor = Editor()

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            blocks = [acp.text_block("What colour?"), acp.image_block(data, "image/png"), attached]
            answer = await conn.prompt(session_id=sid, prompt=blocks)
            assert answer.stop_reason == "end_turn"

    with ScriptedLLM([Reply("Red.")]) as llm:
        write_config(hermes_home, llm.openai_base_url)
        config = (
            (hermes_home / "config.yaml")
            .read_text()
            .replace("  default: test-model\n", "  default: test-model\n  vision: 'true'\n")
        )
        (hermes_home / "config.yaml").write_text(config)
        run(scenario())
        sent = llm.requests[0].messages[-1]
    parts = sent["content"]
    assert any(p.get("type") == "image_url" for p in parts), parts
    text = " ".join(str(p.get("text", "")) for p in parts)
    assert "What colour?" in text and "The spec says: be brief." in text
    assert "file:///project/spec.md" in text


def test_the_editors_terminal_only_when_opted_in_and_still_behind_the_gate(
    hermes_home: Path, workspace: Path
) -> None:
    from acp.schema import ClientCapabilities, FileSystemCapabilities

    steps = [
        Reply(tool_calls=[("terminal", {"command": "echo in-the-editor"})]),
        Reply(tool_calls=[("terminal", {"command": "sudo -n true"})]),
        Reply("Done."),
    ]
    editor = Editor("no")
    caps = ClientCapabilities(fs=FileSystemCapabilities(), terminal=True)

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace, caps) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("run")])
            shown = [
                c
                for u in editor.of("tool_call_update", sid)
                for c in u.content or ()
                if c.type == "terminal"
            ]
            assert shown and shown[0].terminal_id == "t1"

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url, "acp:\n  client_terminal: true\n")
        run(scenario())
        results = tool_results(llm, 2)
    assert [t["argv"] for t in editor.terminals.values()] == [["bash", "-c", "echo in-the-editor"]]
    assert all(t.get("released") for t in editor.terminals.values())
    assert "in-the-editor" in results[0] and "in the editor's terminal" in results[0]
    assert "denied by the user" in results[1], "the gate still decides"
    assert len(editor.permissions) == 1


def test_auth_required_until_the_key_is_set_then_authenticate(
    hermes_home: Path, workspace: Path
) -> None:
    import os

    editor = Editor()

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            methods = {m.id: m for m in conn.init.auth_methods}
            assert methods["provider-key"].vars[0].name == "OPENAI_API_KEY"
            assert methods["hermes-setup"].args == ["--setup"]
            with pytest.raises(acp.RequestError) as refused:
                await conn.new_session(cwd=str(workspace))
            assert refused.value.code == -32000
            with pytest.raises(acp.RequestError):
                await conn.authenticate(method_id="provider-key")
            env = hermes_home / ".env"
            env.write_text("OPENAI_API_KEY=sk-test-acp-0123456789\n")
            os.chmod(env, 0o600)
            await conn.authenticate(method_id="provider-key")
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            answer = await conn.prompt(session_id=sid, prompt=[acp.text_block("hi")])
            assert answer.stop_reason == "end_turn"

    with ScriptedLLM([Reply("Signed in.")]) as llm:
        hermes_home.mkdir()
        (hermes_home / "config.yaml").write_text(
            f"model:\n  provider: openai\n  base_url: {llm.openai_base_url}\n"
            "  default: test-model\n"
        )
        run(scenario())
        assert llm.requests[0].headers.get("authorization") == "Bearer sk-test-acp-0123456789"
    assert "sk-test-acp" not in (hermes_home / "logs" / "acp.log").read_text()


def test_the_diff_preview_never_shows_a_protected_file(hermes_home: Path, workspace: Path) -> None:
    steps = [
        Reply(tool_calls=[("write_file", {"path": str(hermes_home / ".env"), "content": "x"})]),
        Reply("Refused."),
    ]
    editor = Editor()

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("edit the env")])

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        (hermes_home / ".env").write_text("SOME_TOKEN=do-not-show-this-value\n")
        (hermes_home / ".env").chmod(0o600)
        run(scenario())
    shown = json.dumps([u.model_dump(mode="json") for _, u in editor.updates])
    assert "do-not-show-this-value" not in shown
    assert not editor.permissions


def test_slash_commands_from_the_shared_table(hermes_home: Path, workspace: Path) -> None:
    editor = Editor()

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id

            async def say(text: str) -> str:
                before = len(editor.text(sid))
                await conn.prompt(session_id=sid, prompt=[acp.text_block(text)])
                return editor.text(sid)[before:]

            assert await say("hello") == "One."
            assert "tokens in" in await say("/usage")
            assert await say("/retry") == "Two."
            assert "personality: concise" in await say("/personality concise")
            assert "dropped" in await say("/undo")

    with ScriptedLLM([Reply("One."), Reply("Two.")]) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())
        retried = llm.requests[1].messages
    assert [m["content"] for m in retried if m["role"] == "user"] == ["hello"]
    assert not any(m.get("content") == "One." for m in retried)


def test_rollback_from_the_editor(hermes_home: Path, workspace: Path) -> None:
    """/rollback over ACP: shows the plan, and restores on the `/rollback ID yes` it names."""
    steps = [
        Reply(tool_calls=[("terminal", {"command": "echo changed > notes.txt"})]),
        Reply("Edited."),
    ]
    editor = Editor("yes")

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id

            async def say(text: str) -> str:
                before = len(editor.text(sid))
                await conn.prompt(session_id=sid, prompt=[acp.text_block(text)])
                return editor.text(sid)[before:]

            assert "Edited." in await say("edit the notes")
            assert (workspace / "notes.txt").read_text() == "changed\n"
            plan = await say("/rollback")
            confirm = re.search(r"/rollback ([0-9a-f]{10}) yes", plan)
            assert "notes.txt" in plan and confirm is not None, plan
            assert (workspace / "notes.txt").read_text() == "changed\n"
            done = await say(confirm.group())
            assert "restored 1 file" in done, done
            assert "usage" in await say("/rollback 1 maybe")

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())
    assert (workspace / "notes.txt").read_text() == "keep me\n"


def test_cancel_while_a_permission_request_waits(hermes_home: Path, workspace: Path) -> None:
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "x\n"})]),
        Reply("Next prompt works."),
    ]
    editor = Editor("yes", hold=90.0)  # The user never gets to answer.

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            turn = asyncio.ensure_future(
                conn.prompt(session_id=sid, prompt=[acp.text_block("edit")])
            )
            await editor.wait_for(lambda: bool(editor.permissions))
            began = time.monotonic()
            await conn.cancel(session_id=sid)
            assert (await turn).stop_reason == "cancelled"
            # Only tells the cancel from the editor's 90 s hold, with room for load.
            assert time.monotonic() - began < 45
            editor.hold = 0
            after = await conn.prompt(session_id=sid, prompt=[acp.text_block("go on")])
            assert after.stop_reason == "end_turn"

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())
    assert (workspace / "notes.txt").read_text() == "keep me\n"


class _HeldAnswer:
    """The editor's side of its pipe to the agent: the answer to a permission request is
    held and written in ONE write with the next message (the cancel), so the agent reads
    both at once, as when the user allows and presses stop in the same instant."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.held is None and b'"outcome"' in data:
            self.held = data
            return
        if self.held:
            data, self.held = self.held + data, b""
        self._writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def test_a_cancel_that_comes_with_the_permission_answer_stops_the_turn(
    hermes_home: Path, workspace: Path
) -> None:
    """The answer and session/cancel reach the agent together. Python 3.11's
    asyncio.wait_for returned the answer and dropped the cancel: the turn said
    'cancelled' yet ran on, the allowed tool and then the model again."""
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "x\n"})]),
        Reply("Next prompt works."),
    ]
    editor = Editor("yes")

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sender = conn._conn._transport._sender
            pipe = sender._writer = _HeldAnswer(sender._writer)
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            turn = asyncio.ensure_future(
                conn.prompt(session_id=sid, prompt=[acp.text_block("edit")])
            )
            async with asyncio.timeout(60):
                while pipe.held is None:
                    await asyncio.sleep(0.01)
            await conn.cancel(session_id=sid)  # Written together with the held answer.
            assert (await turn).stop_reason == "cancelled"
            assert len(llm.requests) == 1, "the cancelled turn asked the model again"
            after = await conn.prompt(session_id=sid, prompt=[acp.text_block("go on")])
            assert after.stop_reason == "end_turn"
            assert editor.text(sid).endswith("Next prompt works.")

    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        run(scenario())


def test_the_hermes_acp_console_script_entry_point(hermes_home: Path, tmp_path: Path) -> None:
    import sys
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    target = scripts["project"]["scripts"]["hermes-acp"]
    assert target == "hermes_agent.acp.server:main"
    code = (
        "import sys; from hermes_agent.acp.server import main; sys.argv[0] = 'hermes-acp'; main()"
    )
    version = subprocess.run(
        [sys.executable, "-c", code, "--version"],
        capture_output=True,
        text=True,
        env=clean_env(hermes_home),
        timeout=60,
    )
    assert version.returncode == 0 and version.stdout.startswith("hermes-acp ")
    wrong = subprocess.run(
        [sys.executable, "-c", code, "--bogus"],
        capture_output=True,
        text=True,
        env=clean_env(hermes_home),
        timeout=60,
    )
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr


def test_load_replays_what_compression_summarised_away(hermes_home: Path, workspace: Path) -> None:
    from hermes_agent.agent import compress

    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text(
        "model:\n  provider: custom\n  base_url: http://127.0.0.1:9/v1\n  default: m\n"
    )
    db = StateDB()
    sid = db.create_session(source="cli", model="m", cwd=str(workspace))
    turns = [("user", "first question"), ("assistant", "first answer")]
    turns += [("user", "second question"), ("assistant", "second answer")]
    for role, text in turns:
        db.add_message(sid, {"role": role, "content": text})
    tail = db.messages(sid)[2:]
    db.replace_history(sid, [compress.summary_message("they asked twice", 2), *tail])
    db.add_message(sid, {"role": "user", "content": "third question"})
    db.close()
    editor = Editor()

    async def scenario() -> None:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            await conn.load_session(cwd=str(workspace), session_id=sid)

    run(scenario())
    shown = [u.content.text for _, u in editor.updates if hasattr(u, "content") and u.content]
    assert shown == [
        "first question",
        "first answer",
        "second question",
        "second answer",
        "third question",
    ]


def test_reasoning_streams_as_thought_chunks_and_is_not_stored(
    hermes_home: Path, workspace: Path
) -> None:
    editor = Editor()

    async def scenario() -> str:
        async with hermes_acp(editor, hermes_home, workspace) as conn:
            sid = (await conn.new_session(cwd=str(workspace))).session_id
            await conn.prompt(session_id=sid, prompt=[acp.text_block("think first")])
            return sid

    reply = Reply("The answer.", reasoning="Weighing the options carefully.")
    with ScriptedLLM([reply]) as llm:
        write_config(hermes_home, llm.openai_base_url)
        sid = asyncio.run(scenario())
    thoughts = editor.of("agent_thought_chunk", sid)
    assert "".join(t.content.text for t in thoughts) == "Weighing the options carefully."
    assert editor.kinds(sid).index("agent_thought_chunk") < editor.kinds(sid).index(
        "agent_message_chunk"
    )
    stored = json.dumps(StateDB().messages(sid))
    assert "Weighing" not in stored and "The answer." in stored
