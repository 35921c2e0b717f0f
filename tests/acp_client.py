"""An editor for the ACP tests: the official Python SDK's client side, with buffers.

``Editor`` records every ``session/update``, answers permission requests from
a script, and serves ``fs/*`` like an editor: its open buffers (unsaved text)
first, the disk otherwise; writes land in a buffer, as an editor shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import acp
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    CreateTerminalResponse,
    DeniedOutcome,
    FileSystemCapabilities,
    ReadTextFileResponse,
    RequestPermissionResponse,
    TerminalOutputResponse,
    WaitForTerminalExitResponse,
    WriteTextFileResponse,
)

from conftest import HERMES, clean_env


def write_config(home: Path, base_url: str, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(
        "model:\n"
        "  provider: custom\n"
        f"  base_url: {base_url}\n"
        "  default: test-model\n"
        "approvals:\n"
        "  mode: manual\n" + extra
    )


class Editor:
    """The client side of the tests."""

    def __init__(self, *answers: str | None, hold: float = 0.0) -> None:
        #: Option ids to choose, in order (None: dismiss the request).
        self.answers: list[str | None] = list(answers)
        self.hold = hold
        self.updates: list[tuple[str, Any]] = []
        self.permissions: list[tuple[Any, list[Any]]] = []
        self.buffers: dict[str, str] = {}
        self.reads: list[str] = []
        self.changed = asyncio.Event()
        self.terminals = {}

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        self.updates.append((session_id, update))
        self.changed.set()

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any], **_: Any
    ) -> RequestPermissionResponse:
        self.permissions.append((tool_call, options))
        self.changed.set()
        if self.hold:
            await asyncio.sleep(self.hold)
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=answer)
        )

    async def read_text_file(self, session_id: str, path: str, **_: Any) -> ReadTextFileResponse:
        self.reads.append(path)
        if path in self.buffers:
            return ReadTextFileResponse(content=self.buffers[path])
        try:
            return ReadTextFileResponse(content=Path(path).read_text())
        except FileNotFoundError:
            raise acp.RequestError.resource_not_found(path) from None

    async def write_text_file(
        self, session_id: str, path: str, content: str, **_: Any
    ) -> WriteTextFileResponse:
        self.buffers[path] = content
        return WriteTextFileResponse()

    # --- the editor's terminal (terminal/*) ------------------------------------------------

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        cwd: str | None = None,
        **_: Any,
    ) -> CreateTerminalResponse:
        proc = await asyncio.create_subprocess_exec(
            command,
            *(args or []),
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        terminal_id = f"t{len(self.terminals) + 1}"
        self.terminals[terminal_id] = {"proc": proc, "argv": [command, *(args or [])]}
        return CreateTerminalResponse(terminal_id=terminal_id)

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> WaitForTerminalExitResponse:
        term = self.terminals[terminal_id]
        term["output"] = (await term["proc"].stdout.read()).decode()
        return WaitForTerminalExitResponse(exit_code=await term["proc"].wait())

    async def terminal_output(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> TerminalOutputResponse:
        return TerminalOutputResponse(
            output=self.terminals[terminal_id].get("output", ""), truncated=False
        )

    async def kill_terminal(self, session_id: str, terminal_id: str, **_: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.terminals[terminal_id]["proc"].kill()

    async def release_terminal(self, session_id: str, terminal_id: str, **_: Any) -> None:
        self.terminals[terminal_id]["released"] = True

    # --- what the tests look at ---------------------------------------------------------

    def kinds(self, session_id: str | None = None) -> list[str]:
        return [u.session_update for s, u in self.updates if session_id is None or s == session_id]

    def of(self, kind: str, session_id: str | None = None) -> list[Any]:
        return [
            u
            for s, u in self.updates
            if u.session_update == kind and (session_id is None or s == session_id)
        ]

    def text(self, session_id: str | None = None) -> str:
        return "".join(u.content.text for u in self.of("agent_message_chunk", session_id))

    async def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


FS = ClientCapabilities(fs=FileSystemCapabilities(read_text_file=True, write_text_file=True))


@contextlib.asynccontextmanager
async def hermes_acp(
    editor: Editor, home: Path, cwd: Path, capabilities: ClientCapabilities | None = FS
) -> AsyncIterator[Any]:
    """`hermes acp` as an editor starts it, initialized."""
    async with acp.spawn_agent_process(
        editor,
        str(HERMES),
        "acp",
        env=clean_env(home),
        cwd=str(cwd),
        use_unstable_protocol=True,
    ) as (conn, _process):
        conn.init = await conn.initialize(
            protocol_version=1, client_capabilities=capabilities or ClientCapabilities()
        )
        yield conn
