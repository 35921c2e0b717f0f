"""`hermes acp` driven by an independent client: the TypeScript SDK (@agentclientprotocol/sdk).

tests/peers/acp_scenario.mjs runs issue 16's scenario on one connection
(initialize, new session, an edit approved, one denied that must not happen
through the terminal either, a read of an unsaved buffer, a cancel by
``$/cancel_request`` in the middle of a tool call, a prompt that works after
it, list, close, load with replay, delete) and prints what it saw.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from acp_client import write_config
from conftest import HERMES, clean_env
from peers.llm_server import Reply, ScriptedLLM

PEERS = Path(__file__).parent / "peers"
SDK = PEERS / "node_modules" / "@agentclientprotocol" / "sdk"

pytestmark = [
    pytest.mark.peer("scripted"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not SDK.is_dir(), reason="tests/peers/install.sh has not run"),
]


def test_the_typescript_client_runs_the_whole_scenario(hermes_home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    notes = workspace / "notes.txt"
    notes.write_text("keep me\n")
    draft = workspace / "draft.md"
    draft.write_text("saved text\n")
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "approved\n"})]),
        Reply("Written."),
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "denied\n"})]),
        Reply(tool_calls=[("terminal", {"command": "printf sneaky > notes.txt"})]),
        Reply("I could not change it."),
        Reply(tool_calls=[("read_file", {"path": "draft.md"})]),
        Reply("Read it."),
        Reply(tool_calls=[("terminal", {"command": "echo started; sleep 30"})]),
        Reply("Still here."),
    ]
    with ScriptedLLM(steps) as llm:
        write_config(hermes_home, llm.openai_base_url)
        config = tmp_path / "scenario.json"
        config.write_text(
            json.dumps(
                {
                    "command": [str(HERMES), "acp"],
                    "cwd": str(workspace),
                    "env": clean_env(hermes_home),
                    "draft": str(draft),
                    "unsaved": "UNSAVED draft text\n",
                }
            )
        )
        run = subprocess.run(
            ["node", str(PEERS / "acp_scenario.mjs"), str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=PEERS,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        read_result = [m for m in llm.requests[6].messages if m["role"] == "tool"][-1]
        after_cancel = llm.requests[-1].messages
    assert seen["protocolVersion"] == 1
    assert seen["capabilities"]["loadSession"] is True
    assert set(seen["capabilities"]["sessionCapabilities"]) >= {"list", "close", "delete"}
    assert seen["authMethods"] == ["provider-key", "hermes-setup"]
    assert seen["stops"] == ["end_turn", "end_turn", "end_turn", "cancelled", "end_turn"]
    # Approved: the edit shows as a diff, lands in the editor's buffer.
    assert seen["permissions"][0]["diff"] and seen["permissions"][0]["kinds"] == [
        "allow_once",
        "allow_always",
        "reject_once",
    ]
    assert seen["buffers"][str(notes)] == "approved\n"
    # Denied: asked once; the terminal route is refused, the disk never changed.
    assert len(seen["permissions"]) == 2
    assert any("denial" in failure for failure in seen["failed"])
    assert notes.read_text() == "keep me\n"
    # The unsaved buffer was read through the editor and reached the model.
    assert str(draft) in seen["reads"]
    assert "UNSAVED draft text" in read_result["content"]
    # The cancel stopped the tool at once, and the next prompt worked.
    assert seen["cancelMs"] < 5000
    assert seen["text"].endswith("Still here.")
    assert any("cancelled" in str(m.get("content")) for m in after_cancel if m["role"] == "tool")
    assert {"agent_message_chunk", "tool_call", "tool_call_update", "usage_update"} <= set(
        seen["kinds"]
    )
    assert {"edit", "execute", "read"} <= set(seen["toolKinds"])
    # List, close, load with replay, delete.
    assert [s["id"] for s in seen["listed"]] == [seen["sessionId"]]
    assert seen["listed"][0]["title"] == "write notes"
    assert seen["replayUser"] == [
        "write notes",
        "change it",
        "read the draft",
        "run the long thing",
        "still there?",
    ]
    assert "tool_call" in seen["replay"] and "agent_message_chunk" in seen["replay"]
    assert seen["sessionId"] not in seen["afterDelete"]
