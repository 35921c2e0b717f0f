"""The agent side of ACP: initialize, sessions, prompts, modes, approvals through the editor.

:class:`HermesAcp` answers the editor's requests. Sessions are hermes
sessions in state.db (``source`` ``acp``): ``session/new`` starts one whose
workspace is the editor's ``cwd``; ``session/load`` replays a stored one
whole before answering, ``session/resume`` reopens one without replay, and
any session (the chat's too) can be listed, loaded and deleted. Modes are
hermes' approval modes (``approvals.mode``), offered both as the legacy
``modes`` and as the ``mode`` config option, kept in step.

:class:`ClientProxy` is how the agent calls the editor back (updates,
permission requests, its files): the few client methods of the SDK's
``AgentSideConnection``, over a connection :mod:`.server` builds itself so
it can add the routes the SDK lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acp.exceptions import RequestError
from acp.schema import (
    AgentAuthCapabilities,
    AgentCapabilities,
    AgentMessageChunk,
    AuthenticateResponse,
    AuthEnvVar,
    AvailableCommand,
    AvailableCommandInput,
    AvailableCommandsUpdate,
    ConfigOptionUpdate,
    CreateTerminalRequest,
    CreateTerminalResponse,
    CurrentModeUpdate,
    EnvVarAuthMethod,
    Implementation,
    InitializeResponse,
    KillTerminalRequest,
    KillTerminalResponse,
    ListSessionsResponse,
    LoadSessionResponse,
    LogoutCapabilities,
    McpCapabilities,
    NewSessionResponse,
    PromptCapabilities,
    ReadTextFileRequest,
    ReadTextFileResponse,
    ReleaseTerminalRequest,
    ReleaseTerminalResponse,
    RequestPermissionRequest,
    RequestPermissionResponse,
    ResumeSessionResponse,
    SessionCapabilities,
    SessionCloseCapabilities,
    SessionConfigOptionSelect,
    SessionConfigSelectOption,
    SessionDeleteCapabilities,
    SessionInfo,
    SessionListCapabilities,
    SessionMode,
    SessionModeState,
    SessionNotification,
    SessionResumeCapabilities,
    SetSessionConfigOptionResponse,
    SetSessionModeResponse,
    TerminalAuthMethod,
    TerminalOutputRequest,
    TerminalOutputResponse,
    TerminalToolCallContent,
    TextContentBlock,
    ToolCallProgress,
    UnstructuredCommandInput,
    WaitForTerminalExitRequest,
    WaitForTerminalExitResponse,
    WriteTextFileRequest,
    WriteTextFileResponse,
)
from acp.utils import notify_model, request_model, request_optional_model

from hermes_agent.acp import mapping
from hermes_agent.acp.session import AcpSession, SessionEvents, iso_time

if TYPE_CHECKING:
    from acp.connection import Connection

    from hermes_agent.agent.loop import Agent
    from hermes_agent.config.loader import Config
    from hermes_agent.state.db import StateDB

log = logging.getLogger("hermes.acp")

PROTOCOL_VERSION = 1
#: The JSON-RPC id of the request being handled (set per request task by :mod:`.server`).
REQUEST_ID: ContextVar[Any] = ContextVar("acp_request_id", default=None)
#: Modes: hermes' approval modes, as the editor shows them.
MODES: tuple[tuple[str, str, str], ...] = (
    (
        "manual",
        "Ask",
        "Ask before commands that are not plainly safe and before every file edit",
    ),
    ("smart", "Smart", "Ask before risky commands; edits in the workspace go ahead"),
    ("off", "Full access", "Run commands without asking (the kernel sandbox still confines them)"),
)
LIST_PAGE = 50


class ClientProxy:
    """The editor's methods the agent calls (the SDK's agent-side connection, trimmed)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def session_update(self, session_id: str, update: Any) -> None:
        await notify_model(
            self.conn, "session/update", SessionNotification(session_id=session_id, update=update)
        )

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any]
    ) -> RequestPermissionResponse:
        return await request_model(
            self.conn,
            "session/request_permission",
            RequestPermissionRequest(session_id=session_id, tool_call=tool_call, options=options),
            RequestPermissionResponse,
        )

    async def read_text_file(self, session_id: str, path: str) -> str:
        response = await request_model(
            self.conn,
            "fs/read_text_file",
            ReadTextFileRequest(session_id=session_id, path=path),
            ReadTextFileResponse,
        )
        return response.content

    async def write_text_file(self, session_id: str, path: str, content: str) -> None:
        await request_optional_model(
            self.conn,
            "fs/write_text_file",
            WriteTextFileRequest(session_id=session_id, path=path, content=content),
            WriteTextFileResponse,
        )


class EditorTerminal:
    """Runs the agent's foreground commands in the editor's own terminal (``terminal/*``).

    Only with ``acp.client_terminal: true`` and an editor that offers terminals:
    such a command runs outside hermes' kernel sandbox, so it is the user's
    choice. It comes after the same approval gate (``terminal.runner`` is
    consulted by the terminal tool once the command was approved).
    """

    def __init__(self, client: ClientProxy, session: AcpSession) -> None:
        self.client = client
        self.session = session

    async def __call__(
        self, command: str, timeout: float, max_chars: int
    ) -> tuple[str, int | None, bool]:
        conn, sid = self.client.conn, self.session.id
        created = await request_model(
            conn,
            "terminal/create",
            CreateTerminalRequest(
                session_id=sid,
                command="bash",
                args=["-c", command],
                cwd=self.session.cwd,
                output_byte_limit=max_chars,
            ),
            CreateTerminalResponse,
        )
        terminal_id = created.terminal_id
        call = self.session.events.current_call
        if call is not None:
            self.session.events.send(
                ToolCallProgress(
                    session_update="tool_call_update",
                    tool_call_id=call,
                    content=[TerminalToolCallContent(type="terminal", terminal_id=terminal_id)],
                )
            )
        ids: dict[str, Any] = {"session_id": sid, "terminal_id": terminal_id}
        timed_out = False
        try:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns an
                # exit that is in and drops a cancel arriving with it, so the turn the
                # user cancelled went on to its next step.
                async with asyncio.timeout(timeout):
                    done = await request_model(
                        conn,
                        "terminal/wait_for_exit",
                        WaitForTerminalExitRequest(**ids),
                        WaitForTerminalExitResponse,
                    )
                code = done.exit_code
            except TimeoutError:
                timed_out, code = True, None
                await request_optional_model(
                    conn, "terminal/kill", KillTerminalRequest(**ids), KillTerminalResponse
                )
            output = await request_model(
                conn, "terminal/output", TerminalOutputRequest(**ids), TerminalOutputResponse
            )
            return output.output, code, timed_out
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    request_optional_model(
                        conn, "terminal/kill", KillTerminalRequest(**ids), KillTerminalResponse
                    )
                )
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    request_optional_model(
                        conn,
                        "terminal/release",
                        ReleaseTerminalRequest(**ids),
                        ReleaseTerminalResponse,
                    )
                )


class EditorFiles:
    """The file tools' view of the editor: its buffers, saved or not.

    Set in a session's tool state when the editor offers ``fs/*``; the file
    tools still decide every path with their guard first, and read or write
    through this only what the guard let through.
    """

    def __init__(self, client: ClientProxy, session_id: str, *, read: bool, write: bool) -> None:
        self.client = client
        self.session_id = session_id
        self.can_read = read
        self.can_write = write

    async def read_text(self, path: str) -> str | None:
        """The editor's text of ``path``; None when the editor cannot say (then disk)."""
        if not self.can_read:
            return None
        try:
            return await self.client.read_text_file(self.session_id, path)
        except RequestError as exc:
            log.info("fs/read_text_file %s failed: %s", path, exc)
            return None

    async def write_text(self, path: str, content: str) -> bool:
        """Write through the editor; False when it does not take the write (then disk)."""
        if not self.can_write:
            return False
        try:
            await self.client.write_text_file(self.session_id, path, content)
        except RequestError as exc:
            log.info("fs/write_text_file %s failed: %s", path, exc)
            return False
        return True


def _session_config(base: Config, cwd: str, mode: str) -> Config:
    """The configuration of one editor session: its workspace and approval mode."""
    from hermes_agent.config.loader import Config
    from hermes_agent.config.merge import set_path

    data = copy.deepcopy(base.data)
    set_path(data, "terminal.cwd", cwd)
    set_path(data, "approvals.mode", mode)
    return Config(data, base.user, base.path)


class HermesAcp:
    """The ACP agent: one per connection (one editor), many sessions."""

    def __init__(self, config: Config, db: StateDB) -> None:
        self.config = config
        self.db = db
        self.client: ClientProxy | None = None
        self.client_capabilities: Any = None
        self.sessions: dict[str, AcpSession] = {}
        #: Prompt request ids (for ``$/cancel_request``) and their sessions.
        self.prompt_requests: dict[Any, AcpSession] = {}
        self._background: set[asyncio.Future[None]] = set()
        mode = str(config.get("approvals.mode") or "manual")
        self.default_mode = mode if mode in {m[0] for m in MODES} else "manual"

    # --- connection -----------------------------------------------------------------------

    def _client(self) -> ClientProxy:
        if self.client is None:
            raise RequestError.internal_error({"details": "no client connection"})
        return self.client

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: Any = None,
        client_info: Any = None,
        **_: Any,
    ) -> InitializeResponse:
        from hermes_agent import __version__

        self.client_capabilities = client_capabilities
        log.info("initialize: client %s, protocol %s", client_info, protocol_version)
        self._prewarm()
        key_env = self._key_env()
        auth: list[Any] = []
        if key_env:
            auth.append(
                EnvVarAuthMethod(
                    type="env_var",
                    id="provider-key",
                    name="Provider API key",
                    description=f"The key hermes' configured provider reads from {key_env}",
                    vars=[AuthEnvVar(name=key_env, label=key_env)],
                )
            )
        auth.append(
            TerminalAuthMethod(
                type="terminal",
                id="hermes-setup",
                name="Run hermes setup",
                description="Choose a provider and enter its key in a terminal (`hermes setup`)",
                args=["--setup"],
            )
        )
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(
                load_session=True,
                prompt_capabilities=PromptCapabilities(image=True, embedded_context=True),
                mcp_capabilities=McpCapabilities(http=True),
                session_capabilities=SessionCapabilities(
                    list=SessionListCapabilities(),
                    resume=SessionResumeCapabilities(),
                    close=SessionCloseCapabilities(),
                    delete=SessionDeleteCapabilities(),
                ),
                auth=AgentAuthCapabilities(logout=LogoutCapabilities()),
            ),
            auth_methods=auth,
            agent_info=Implementation(name="hermes-agent", title="Hermes", version=__version__),
        )

    def _prewarm(self) -> None:
        """Import the tools and the provider SDK in the background while the editor opens
        its session (the chat does the same while the user types): the first prompt then
        does not wait for a second or so of imports."""
        import importlib
        import threading

        from hermes_agent.providers.catalog import PROVIDERS
        from hermes_agent.tools.registry import TOOL_MODULES

        info = PROVIDERS.get(str(self.config.get("model.provider")))
        module = "anthropic_provider" if info is not None and info.wire == "anthropic" else ""
        names = [*TOOL_MODULES, f"hermes_agent.providers.{module or 'openai_compat'}", "jsonschema"]

        def load() -> None:
            for name in names:
                with contextlib.suppress(Exception):
                    importlib.import_module(name)

        threading.Thread(target=load, name="acp-prewarm", daemon=True).start()

    def _key_env(self) -> str:
        from hermes_agent.providers.catalog import PROVIDERS

        info = PROVIDERS.get(str(self.config.get("model.provider")))
        if info is None:
            return ""
        return str(self.config.get("model.api_key_env") or info.key_env or "")

    async def authenticate(self, method_id: str, **_: Any) -> AuthenticateResponse:
        """Check that the provider can be used now (after the user set a key or ran setup)."""
        from hermes_agent import home
        from hermes_agent.config.envfile import load_env_file
        from hermes_agent.providers.base import AuthError

        if method_id not in ("provider-key", "hermes-setup"):
            raise RequestError.invalid_params({"methodId": f"unknown auth method {method_id!r}"})
        load_env_file(home.env_path())
        self._reload_config()
        try:
            self._parts(self.config)
        except AuthError as exc:
            raise RequestError.auth_required({"details": str(exc)}) from None
        return AuthenticateResponse()

    async def logout(self, params: Any) -> dict[str, Any]:
        """Hermes keeps no login of its own (keys live in HERMES_HOME/.env): nothing to end."""
        return {}

    def _reload_config(self) -> None:
        from hermes_agent.config.loader import load_config

        with contextlib.suppress(Exception):
            self.config = load_config()

    # --- sessions -------------------------------------------------------------------------

    def _parts(self, config: Config) -> Any:
        from hermes_agent.agent.factory import agent_parts

        return agent_parts(config)

    def _workspace(self, cwd: str) -> str:
        if not cwd or not os.path.isabs(cwd):
            raise RequestError.invalid_params({"cwd": "cwd must be an absolute path"})
        if not os.path.isdir(cwd):
            raise RequestError.invalid_params({"cwd": f"{cwd} is not a directory"})
        return os.path.realpath(cwd)

    async def _open(self, session_id: str, cwd: str, mcp_servers: Any) -> AcpSession:
        """Build the agent of a stored session and keep it open for the editor."""
        from hermes_agent.agent.factory import build_agent
        from hermes_agent.errors import HermesError
        from hermes_agent.providers.base import AuthError

        old = self.sessions.pop(session_id, None)
        if old is not None:
            await old.close()
        stored = self.db.get_session(session_id)
        mode = self.default_mode
        config = _session_config(self.config, cwd, mode)
        try:
            settings, tools, _ = self._parts(config)
        except AuthError as exc:
            raise RequestError.auth_required({"details": str(exc)}) from None
        except HermesError as exc:
            raise RequestError.invalid_params({"details": str(exc)}) from None
        if stored is not None and stored.model and stored.model != settings.model:
            settings = replace(settings, model=stored.model)  # The session keeps its model.
        scope = self._mcp_scope(mcp_servers, config, cwd)
        client = self._client()

        def build(events: SessionEvents) -> Agent:
            return build_agent(
                config=config,
                settings=settings,
                tools=tools,
                db=self.db,
                session_id=session_id,
                cwd=Path(cwd),
                events=events,
            )

        session = AcpSession(
            session_id=session_id,
            cwd=cwd,
            client=client,
            build=build,
            permission_seconds=float(config.get("acp.permission_timeout") or 300),
            close_scope=scope.aclose if scope is not None else None,
        )
        if scope is not None:
            from hermes_agent.mcp.tools import NOTIFY_KEY

            session.agent.tool_source = scope
            session.agent_state()[NOTIFY_KEY] = session.events.notice
        session.settings = settings  # type: ignore[attr-defined]
        session.mode = mode  # type: ignore[attr-defined]
        self._wire_tools(session)
        self.sessions[session_id] = session
        return session

    def _wire_tools(self, session: AcpSession) -> None:
        """Hook the session's tools to the editor: its files, command output, the gate."""
        state = session.agent_state()
        fs = getattr(self.client_capabilities, "fs", None)
        read = bool(getattr(fs, "read_text_file", False))
        write = bool(getattr(fs, "write_text_file", False))
        if read or write:
            state["files.editor"] = EditorFiles(self._client(), session.id, read=read, write=write)
        state["terminal.on_output"] = session.events.terminal_output
        if bool(self.config.get("acp.client_terminal")) and bool(
            getattr(self.client_capabilities, "terminal", False)
        ):
            state["terminal.runner"] = EditorTerminal(self._client(), session)
        state["files.review_writes"] = getattr(session, "mode", "") == "manual"

    def _mcp_scope(self, servers: Any, config: Config, cwd: str) -> Any:
        """The editor's MCP servers for this session only: a scope of the process's MCP
        manager holding them (and the configured ones), stopped when the session ends.

        Values from the editor are taken literally: ``$`` is escaped, so a
        ``${VAR}`` in them never pulls one of hermes' own secrets into a server.
        """
        if not servers:
            return None
        import re

        from hermes_agent.mcp.config import parse_server
        from hermes_agent.mcp.manager import get_manager

        def literal(value: Any) -> str:
            return str(value).replace("$", "$$")

        parsed = []
        for index, server in enumerate(servers):
            raw_name = str(getattr(server, "name", "") or f"server{index}")
            name = re.sub(r"[^A-Za-z0-9_-]", "-", raw_name).replace("__", "_").strip("-_")
            name = (name or f"server{index}")[:40]
            entry: dict[str, Any]
            if getattr(server, "command", None):
                entry = {
                    "command": literal(server.command),
                    "args": [literal(a) for a in server.args or ()],
                    "env": {e.name: literal(e.value) for e in server.env or ()},
                }
            elif getattr(server, "url", None):
                entry = {
                    "url": literal(server.url),
                    "headers": {h.name: literal(h.value) for h in server.headers or ()},
                }
                if getattr(server, "type", "") == "sse":
                    entry["transport"] = "sse"
            else:
                continue
            found, problems = parse_server(name, entry)
            if found is None:
                log.warning("MCP server %r from the editor is ignored: %s", raw_name, problems)
                continue
            parsed.append(found)
        if not parsed:
            return None
        return get_manager().open_scope(parsed, config=config, cwd=cwd)

    def _modes(self, session: AcpSession) -> SessionModeState:
        return SessionModeState(
            current_mode_id=getattr(session, "mode", self.default_mode),
            available_modes=[SessionMode(id=m, name=n, description=d) for m, n, d in MODES],
        )

    def _config_options(self, session: AcpSession) -> list[Any]:
        settings = getattr(session, "settings", None)
        current = session.agent.provider.model
        models = [current]
        for candidate in (
            str(self.config.get("model.default") or ""),
            getattr(getattr(settings, "info", None), "default_model", ""),
        ):
            if candidate and candidate not in models:
                models.append(candidate)
        return [
            SessionConfigOptionSelect(
                type="select",
                id="mode",
                name="Approvals",
                category="mode",
                current_value=getattr(session, "mode", self.default_mode),
                options=[
                    SessionConfigSelectOption(value=m, name=n, description=d) for m, n, d in MODES
                ],
            ),
            SessionConfigOptionSelect(
                type="select",
                id="model",
                name="Model",
                category="model",
                current_value=current,
                options=[SessionConfigSelectOption(value=m, name=m) for m in models],
            ),
        ]

    def _announce(self, session: AcpSession) -> None:
        """After the session's answer: the slash commands and the title."""
        from hermes_agent.agent import commands

        offered = [
            AvailableCommand(
                name=c.name,
                description=c.help,
                input=AvailableCommandInput(root=UnstructuredCommandInput(hint=c.args))
                if c.args
                else None,
            )
            for c in commands.offered(commands.ACP)
        ]

        async def later() -> None:
            await asyncio.sleep(0.01)  # After the response that names the session.
            session.events.send(
                AvailableCommandsUpdate(
                    session_update="available_commands_update", available_commands=offered
                )
            )
            session.send_info()

        self._background.add(asyncio.ensure_future(later()))
        self._background = {t for t in self._background if not t.done()}

    async def new_session(
        self,
        cwd: str,
        additional_directories: list[str] | None = None,
        mcp_servers: list[Any] | None = None,
        **_: Any,
    ) -> NewSessionResponse:
        workspace = self._workspace(cwd)
        config = _session_config(self.config, workspace, self.default_mode)
        from hermes_agent.errors import HermesError
        from hermes_agent.providers.base import AuthError

        try:
            settings, _, _ = self._parts(config)
        except AuthError as exc:
            raise RequestError.auth_required({"details": str(exc)}) from None
        except HermesError as exc:
            raise RequestError.invalid_params({"details": str(exc)}) from None
        session_id = self.db.create_session(source="acp", model=settings.model, cwd=workspace)
        session = await self._open(session_id, workspace, mcp_servers)
        log.info("session %s: new in %s", session_id, workspace)
        self._announce(session)
        return NewSessionResponse(
            session_id=session_id,
            modes=self._modes(session),
            config_options=self._config_options(session),
        )

    def _stored(self, session_id: str) -> Any:
        stored = self.db.get_session(session_id)
        if stored is None:
            raise RequestError.resource_not_found(session_id)
        return stored

    async def load_session(
        self,
        cwd: str,
        session_id: str,
        mcp_servers: list[Any] | None = None,
        **_: Any,
    ) -> LoadSessionResponse:
        self._stored(session_id)
        workspace = self._workspace(cwd)
        session = await self._open(session_id, workspace, mcp_servers)
        for update in mapping.replay(self._whole_conversation(session_id), workspace):
            session.events.send(update)
        await session.events.flush(30.0)
        log.info("session %s: loaded with replay", session_id)
        self._announce(session)
        return LoadSessionResponse(
            modes=self._modes(session), config_options=self._config_options(session)
        )

    def _whole_conversation(self, session_id: str) -> list[Any]:
        """Every message the user saw, for a replay: what compression summarised away
        too (not the summary itself), without exchanges taken back by /undo."""
        import json as _json

        from hermes_agent.agent.compress import is_summary

        records = [r for r in self.db.message_records(session_id, True) if not r.undone]
        seen = {_json.dumps(r.message, sort_keys=True, default=str) for r in records if r.compacted}
        out: list[Any] = [r.message for r in records if r.compacted]
        for record in records:
            if record.compacted or is_summary(record.message):
                continue
            if _json.dumps(record.message, sort_keys=True, default=str) in seen:
                continue  # Kept through compression: already replayed.
            out.append(record.message)
        return out

    async def resume_session(
        self,
        session_id: str,
        cwd: str,
        mcp_servers: list[Any] | None = None,
        **_: Any,
    ) -> ResumeSessionResponse:
        self._stored(session_id)
        session = await self._open(session_id, self._workspace(cwd), mcp_servers)
        self._announce(session)
        return ResumeSessionResponse(
            modes=self._modes(session), config_options=self._config_options(session)
        )

    async def list_sessions(
        self, cwd: str | None = None, cursor: str | None = None, **_: Any
    ) -> ListSessionsResponse:
        try:
            start = int(cursor or 0)
        except ValueError:
            raise RequestError.invalid_params({"cursor": "not a cursor this agent gave"}) from None
        wanted = os.path.realpath(cwd) if cwd else None
        found = [
            s
            for s in self.db.list_sessions(limit=10_000)
            if s.parent_kind != "delegation" and (wanted is None or s.cwd == wanted)
        ]
        page = found[start : start + LIST_PAGE]
        more = start + LIST_PAGE < len(found)
        return ListSessionsResponse(
            sessions=[
                SessionInfo(
                    session_id=s.id,
                    cwd=s.cwd or "/",
                    title=s.title,
                    updated_at=iso_time(s.updated_at),
                )
                for s in page
            ],
            next_cursor=str(start + LIST_PAGE) if more else None,
        )

    async def close_session(self, session_id: str, **_: Any) -> dict[str, Any]:
        session = self.sessions.pop(session_id, None)
        if session is None:
            self._stored(session_id)  # Unknown ids are an error; a stored, idle one is fine.
            return {}
        await session.close()
        log.info("session %s: closed", session_id)
        return {}

    async def delete_session(self, params: Any) -> dict[str, Any]:
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise RequestError.invalid_params({"sessionId": "required"})
        session = self.sessions.pop(session_id, None)
        if session is not None:
            await session.close()
        if not self.db.delete_session(session_id):
            raise RequestError.resource_not_found(session_id)
        log.info("session %s: deleted", session_id)
        return {}

    def _session(self, session_id: str) -> AcpSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise RequestError.invalid_params(
                {"sessionId": f"session {session_id} is not open; load or resume it first"}
            )
        return session

    # --- modes and options ----------------------------------------------------------------

    def _set_mode(self, session: AcpSession, mode: str) -> None:
        from hermes_agent.config.merge import set_path

        if mode not in {m[0] for m in MODES}:
            raise RequestError.invalid_params({"modeId": f"unknown mode {mode!r}"})
        session.mode = mode  # type: ignore[attr-defined]
        set_path(session.agent.config.data, "approvals.mode", mode)
        session.agent_state()["files.review_writes"] = mode == "manual"
        session.events.send(
            CurrentModeUpdate(session_update="current_mode_update", current_mode_id=mode)
        )

    async def set_session_mode(
        self, session_id: str, mode_id: str, **_: Any
    ) -> SetSessionModeResponse:
        session = self._session(session_id)
        self._set_mode(session, mode_id)
        session.events.send(
            ConfigOptionUpdate(
                session_update="config_option_update",
                config_options=self._config_options(session),
            )
        )
        return SetSessionModeResponse()

    async def set_config_option(
        self, config_id: str, session_id: str, value: str | bool, **_: Any
    ) -> SetSessionConfigOptionResponse:
        session = self._session(session_id)
        if config_id == "mode":
            self._set_mode(session, str(value))
        elif config_id == "model":
            await self._set_model(session, str(value))
        else:
            raise RequestError.invalid_params({"configId": f"unknown option {config_id!r}"})
        return SetSessionConfigOptionResponse(config_options=self._config_options(session))

    async def _set_model(self, session: AcpSession, model: str) -> None:
        from hermes_agent.providers import settings as provider_settings

        model = model.strip()
        if not model:
            raise RequestError.invalid_params({"value": "empty model name"})
        if session.running:
            raise RequestError.invalid_params({"value": "wait for the running turn to end"})
        settings = replace(session.settings, model=model)  # type: ignore[attr-defined]
        await session.agent.provider.aclose()
        session.agent.provider = provider_settings.build(settings)
        session.settings = settings  # type: ignore[attr-defined]
        self.db.set_model(session.id, model)

    # --- prompts --------------------------------------------------------------------------

    async def prompt(self, session_id: str, prompt: list[Any], **_: Any) -> Any:
        session = self._session(session_id)
        text = mapping.prompt_text(prompt)
        images = self._images(prompt)
        if not text.strip() and not images:
            raise RequestError.invalid_params({"prompt": "the prompt is empty"})
        request_id = REQUEST_ID.get()
        if request_id is not None:
            self.prompt_requests[request_id] = session
        try:
            run = self._command(session, text) if not images else None
            if images:

                async def run() -> Any:
                    return await session.agent.run(text, images=images)

            return await session.prompt(text, run)
        finally:
            if request_id is not None:
                self.prompt_requests.pop(request_id, None)

    def _images(self, blocks: list[Any]) -> list[Any]:
        """The prompt's images, checked, cleaned and stored like every image hermes takes."""
        import base64
        import binascii

        from hermes_agent.images import ImageError, ingest_bytes

        found: list[Any] = []
        for index, block in enumerate(blocks):
            if getattr(block, "type", None) != "image":
                continue
            try:
                data = base64.b64decode(block.data, validate=True)
                found.append(ingest_bytes(data, label=f"image {index + 1} of the prompt"))
            except ImageError as exc:
                raise RequestError.invalid_params({"prompt": str(exc)}) from None
            except (binascii.Error, ValueError) as exc:
                detail = f"an image is not base64: {exc}"
                raise RequestError.invalid_params({"prompt": detail}) from None
        return found

    def _command(self, session: AcpSession, text: str) -> Any:
        """A slash command from the shared table, run instead of a model turn (or None)."""
        from hermes_agent.agent import commands

        parsed = commands.parse(text)
        if parsed is None:
            return None
        name, argument = parsed
        command = commands.lookup(name, commands.ACP)
        if command is None:
            return None  # Not a command here: the model reads it as text.

        async def say(message: str) -> None:
            session.events.send(
                AgentMessageChunk(
                    session_update="agent_message_chunk",
                    content=TextContentBlock(type="text", text=message),
                    message_id=session.events.message_id,
                )
            )

        async def run() -> None:
            agent = session.agent
            if command.name == "usage":
                cost = agent.cost_usd
                spent = "unknown" if cost is None else f"${cost:.4f}"
                await say(
                    f"tokens in {agent.usage.input_tokens:,} · out {agent.usage.output_tokens:,}"
                    f" · cost {spent} · context ~{agent.estimated_prompt_tokens():,} of "
                    f"{agent.context_window():,} tokens"
                )
            elif command.name == "compress":
                changed = await agent.compress()
                await say("compressed the conversation" if changed else "nothing to compress")
            elif command.name == "queue":
                # Prompts wait their turn anyway: this one runs when its turn comes.
                if not argument:
                    await say("usage: /queue PROMPT")
                    return
                await agent.run(argument)
            elif command.name in ("undo", "retry"):
                dropped = agent.db.undo_last_exchange(session.id)
                if dropped is not None:
                    agent.reload_history()
                if not dropped:
                    await say(f"nothing to {command.name}")
                elif command.name == "undo":
                    await say("dropped your last message and its answer from the context")
                else:
                    await agent.run(dropped)
            elif command.name == "personality":
                await say(self._personality(session, argument))
            elif command.name == "rollback":
                from hermes_agent import checkpoints

                await say(await checkpoints.rollback_command(agent.cwd, agent.config, argument))
            else:
                await say(f"/{command.name} is not available in the editor yet")

        return run

    def _personality(self, session: AcpSession, argument: str) -> str:
        """/personality: list them, or switch this session's (``none`` turns it off)."""
        from hermes_agent.agent.prompt import personalities

        known = personalities(session.agent.config)
        if not argument:
            chosen = self.db.session_personality(session.id)
            current = (chosen if chosen is not None else "") or str(
                self.config.get("display.personality") or ""
            )
            lines = [f"{'*' if n == current.lower() else ' '} {n}: {t}" for n, t in known.items()]
            return "\n".join([*lines, "/personality NAME switches this session; none: off"])
        wanted = argument.strip().lower()
        if wanted != "none" and wanted not in known:
            return f"no personality {argument!r}; choose one of: {', '.join(known)}, none"
        self.db.set_personality(session.id, "" if wanted == "none" else wanted)
        session.agent.refresh_prompt()
        return f"personality: {wanted} (for this session)"

    async def cancel(self, session_id: str, **_: Any) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            session.cancel()

    async def cancel_request(self, params: Any) -> None:
        """``$/cancel_request``: a prompt's request cancelled by id stops its turn."""
        request_id = params.get("requestId") if isinstance(params, dict) else None
        session = self.prompt_requests.get(request_id)
        found = "a prompt" if session else "nothing running"
        log.info("$/cancel_request %r: %s", request_id, found)
        if session is not None:
            session.cancel()

    async def fork_session(self, *args: Any, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("session/fork")

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(f"_{method}")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    async def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close()
        self.sessions.clear()
