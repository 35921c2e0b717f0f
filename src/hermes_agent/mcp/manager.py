"""One MCP connection manager per process, shared by chat, gateway, cron and ACP.

:func:`get_manager` returns it. The manager runs its own event loop in a
daemon thread: every server connection lives there, whichever front end (and
whichever event loop: the chat's, the gateway's, a cron job's, ACP's) uses
it. Callers await :meth:`Manager.submit`, which hands a coroutine to that loop;
cancelling the caller cancels the call there, and the SDK then sends
``notifications/cancelled`` to the server.

**Connecting.** Servers connect in parallel in the background as soon as a
scope names them. :meth:`Scope.prepare` (called by the agent before a turn)
waits at most ``mcp.connect_wait`` seconds for the first turn, then goes on:
a slow server never holds the first answer up, and its tools appear in a
later model call when it is ready. A ``required`` server is waited for up
to its ``connect_timeout``; if it cannot connect, the turn fails with
:class:`RequiredServerError` (non-zero exit for `hermes chat -q` and cron).

**State.** Each server is ``connecting``, ``ready``, ``failed`` (with the
reason), ``needs-login`` (``auth: oauth`` without tokens) or ``disabled``.
The state is shown by `hermes mcp list` and ``/mcp``, and told to the model
in the description of the ``mcp_servers`` tool, so it never claims a tool it
does not have.

**Reconnecting.** A server that drops (its process exits, its HTTP endpoint
fails) is reconnected with exponential backoff (1 s doubling to 60 s);
``/reload-mcp`` or :meth:`Manager.reload` reconnects at once.

**Scopes.** :meth:`Manager.global_scope` is the configured ``mcp_servers``;
:meth:`Manager.open_scope` adds servers visible to one scope only (an ACP
session's own servers), stopped when the scope closes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from hermes_agent.errors import ConfigError, HermesError
from hermes_agent.mcp.config import ServerConfig

if TYPE_CHECKING:
    import mcp_types as types
    from mcp import Client

    from hermes_agent.config.loader import Config
    from hermes_agent.tools.registry import Tool

T = TypeVar("T")

CONNECTING = "connecting"
READY = "ready"
FAILED = "failed"
NEEDS_LOGIN = "needs-login"
DISABLED = "disabled"
STOPPED = "stopped"

#: Default of ``mcp.connect_wait``: how long the first turn waits for servers.
DEFAULT_CONNECT_WAIT = 3.0
#: Most tools, prompts and list pages read from one server (a hostile one could send more).
MAX_LISTED = 2000
#: Workspaces whose configured servers run at once (an editor with several projects
#: open); asking for one more stops those of the least recently used.
MAX_WORKSPACES = 4
MAX_PROMPTS = 200
MAX_PAGES = 100
#: A server's list_changed notifications refresh its list at most this often (seconds).
REFRESH_INTERVAL = 1.0
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0


class RequiredServerError(HermesError):
    """A server marked ``required`` could not connect: the run must not go on without it."""


class NeedsLogin(Exception):
    """An ``auth: oauth`` server has no usable tokens: `hermes mcp login NAME` first."""


class ServerGone(Exception):
    """The server is not connected (it dropped, failed or is still connecting)."""


@dataclass
class Status:
    """What the user and the model are told about one server."""

    name: str
    state: str
    reason: str = ""
    tools: int = 0
    where: str = ""
    required: bool = False

    def line(self) -> str:
        text = f"{self.name}: {self.state}"
        if self.state == READY:
            text += f" ({self.tools} tool{'s' if self.tools != 1 else ''})"
        if self.reason:
            text += f": {self.reason}"
        return text


def _oauth_auth(server: ServerConfig, url: str, cache: dict[str, Any]) -> Any:
    """The httpx ``Auth`` for an ``auth: oauth`` server, from :mod:`hermes_agent.mcp.oauth`.

    Kept per connection (``cache``) across reconnects: it holds the token in
    memory and refreshes it. Without tokens the state is ``needs-login``.
    """
    try:
        from hermes_agent.mcp import oauth
    except ImportError:
        raise NeedsLogin("OAuth support is not available in this build") from None
    status = getattr(oauth, "status", None)
    if status is not None and not status(server.name).logged_in:
        raise NeedsLogin("not logged in")
    if cache.get("url") != url or "auth" not in cache:
        cache["auth"] = oauth.auth_for(server.name, url)
        cache["url"] = url
    return cache["auth"]


def _login_required(exc: BaseException) -> bool:
    """Whether ``exc`` (or one inside a group) says a person must log in again."""
    if type(exc).__name__ == "OAuthLoginRequired" or isinstance(exc, NeedsLogin):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_login_required(e) for e in exc.exceptions)
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _login_required(cause)


class Connection:
    """One server: its supervisor task, its SDK client, its tools and its state."""

    def __init__(self, manager: Manager, server: ServerConfig, config: Any, cwd: str) -> None:
        self.manager = manager
        self.server = server
        self.config = config
        self.cwd = cwd
        self.state = CONNECTING if server.enabled else DISABLED
        self.reason = ""
        self.client: Client | None = None
        #: The server's tools as it listed them (include/exclude applied).
        self.tools: list[types.Tool] = []
        #: Bumped whenever ``tools`` changes, so tool wrappers are rebuilt only then.
        self.generation = 0
        self.has_resources = False
        self.has_prompts = False
        self.prompts: list[types.Prompt] = []
        #: SHA-256 of each tool's definition (see :mod:`.pins`), computed once per listing.
        self.digests: dict[str, str] = {}
        self.settled = threading.Event()
        self.attempts = 0
        self.pid = 0
        self._stop = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._dropped: asyncio.Event | None = None
        self._sandbox_state: dict[str, Any] = {}
        self._refreshing = False
        self._auth: dict[str, Any] = {}
        #: Who may answer this server's questions (elicitation): the front end of each
        #: tool call running on it now, one entry per call (see
        #: :mod:`hermes_agent.mcp.elicitation`, which asks only when they are one person).
        self.askers: list[Any] = []
        self._stdio: Any = None

    # --- status ---------------------------------------------------------------------

    def status(self) -> Status:
        return Status(
            self.server.name,
            self.state,
            self.reason,
            len(self.tools) if self.state == READY else 0,
            self.server.describe(),
            self.server.required,
        )

    def _set(self, state: str, reason: str = "") -> None:
        self.state = state
        self.reason = reason
        if state != CONNECTING:
            self.settled.set()

    # --- lifecycle (on the manager's loop) --------------------------------------------

    def start(self) -> None:
        if self.server.enabled and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = BACKOFF_START
        assert self._wake is not None
        while not self._stop:
            self.attempts += 1
            started = time.monotonic()
            self._set_connecting()
            try:
                await self._connect_and_serve()
            except asyncio.CancelledError:
                if self._stop:
                    break
                raise
            except NeedsLogin as exc:
                self._set(NEEDS_LOGIN, f"{exc}; run `hermes mcp login {self.server.name}`")
            except ConfigError as exc:
                self._set(FAILED, "; ".join(exc.problems))
            except BaseException as exc:  # Every failure is a state, never a crash.
                if _login_required(exc):
                    self._set(
                        NEEDS_LOGIN,
                        f"the login expired or was refused; run `hermes mcp login "
                        f"{self.server.name}`",
                    )
                else:
                    self._set(FAILED, _describe_error(exc, self))
            if self._stop:
                break
            if self.state == NEEDS_LOGIN:
                delay = BACKOFF_MAX
            elif time.monotonic() - started > 30:
                delay = BACKOFF_START  # It ran a while: a fresh drop, not a crash loop.
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation that
            # comes with the wake-up, and the stopped connection would reconnect.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            delay = min(delay * 2, BACKOFF_MAX)
        self._set(STOPPED if self.server.enabled else DISABLED, "")

    def _set_connecting(self) -> None:
        # A reconnect after a drop keeps the reason visible ("reconnecting: ...").
        if self.state in (FAILED, READY) and self.reason:
            self.state, self.reason = CONNECTING, f"reconnecting after: {self.reason}"
        else:
            self.state, self.reason = CONNECTING, ""

    async def _connect_and_serve(self) -> None:
        import anyio
        from mcp import Client
        from mcp_types import Implementation

        from hermes_agent import __version__
        from hermes_agent.mcp import elicitation, sampling

        self._dropped = asyncio.Event()
        self._timed_out = False
        loop = asyncio.get_running_loop()
        reason = ""
        with anyio.CancelScope() as scope:
            self._connect_scope = scope
            timer = loop.call_later(self.server.connect_timeout, self._connect_timed_out)
            try:
                async with AsyncExitStack() as stack:
                    transport, ended = await self._transport(stack)
                    client = Client(
                        transport,
                        mode=self.server.mode,
                        client_info=Implementation(name="hermes-agent", version=__version__),
                        message_handler=self._on_message,
                        sampling_callback=sampling.callback_for(self)
                        if self.server.sampling.enabled
                        else None,
                        elicitation_callback=elicitation.callback_for(self),
                    )
                    await stack.enter_async_context(client)
                    self.client = client
                    await self._list()
                    timer.cancel()
                    self._connect_scope = None
                    self._set(READY)
                    waits = [asyncio.ensure_future(self._dropped.wait())]
                    if ended is not None:
                        waits.append(asyncio.ensure_future(ended.wait()))
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiter in waits:
                            waiter.cancel()
                    reason = getattr(transport, "reason", "") or self._drop_reason
                    self.client = None
            finally:
                timer.cancel()
                self._connect_scope = None
                self.client = None
        if scope.cancelled_caught:
            if self._timed_out:
                raise TimeoutError(
                    f"did not answer within connect_timeout ({self.server.connect_timeout:g} s)"
                )
            raise asyncio.CancelledError
        raise ServerGone(reason or "connection lost")

    _connect_scope: Any = None
    _timed_out = False
    _drop_reason = ""

    def _connect_timed_out(self) -> None:
        if self._connect_scope is not None:
            self._timed_out = True
            self._connect_scope.cancel()

    def dropped(self, reason: str) -> None:
        """A call found the connection broken: reconnect (on the manager's loop)."""
        self._drop_reason = reason
        if self._dropped is not None:
            self._dropped.set()

    async def _transport(self, stack: AsyncExitStack) -> tuple[Any, Any]:
        """The SDK transport for this server (entered by the client), and its end event."""
        from hermes_agent.mcp import config as mcp_config

        environ = mcp_config.variables()
        if self.server.stdio:
            from hermes_agent.mcp.stdio import StdioTransport

            env = mcp_config.resolve_map(self.server.env, self.server.name, "env", environ)
            launch = self._launch(env)
            transport = StdioTransport(
                launch.argv, launch.cwd or self.cwd, launch.env, launch.spawn_args(), _log(self)
            )
            self._stdio = transport
            return transport, transport.ended
        url = mcp_config.resolve_vars(self.server.url, self.server.name, "url", environ)
        headers = mcp_config.resolve_map(self.server.headers, self.server.name, "headers", environ)
        auth = _oauth_auth(self.server, url, self._auth) if self.server.auth == "oauth" else None
        if self.server.transport == "sse":
            from mcp.client.sse import sse_client

            return sse_client(
                url, headers=headers, auth=auth, timeout=self.server.connect_timeout
            ), None
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(
            headers=headers,
            auth=auth,
            timeout=httpx2.Timeout(self.server.connect_timeout, read=self.server.max_call_time),
        )
        await stack.enter_async_context(http)
        return streamable_http_client(url, http_client=http), None

    def _launch(self, env: dict[str, str]) -> Any:
        """How the stdio server starts: confined like every command, plus its own additions."""
        import os
        import shutil

        from hermes_agent.safety import sandbox
        from hermes_agent.tools.terminal import Launch, child_env

        if not os.path.isdir(self.cwd):
            raise ConfigError(f"the workspace {self.cwd} does not exist (terminal.cwd)")
        argv = [self.server.command, *self.server.args]
        if os.sep not in argv[0]:
            found = shutil.which(argv[0], path={**os.environ, **env}.get("PATH"))
            if found is None:
                raise ConfigError(f"{argv[0]}: command not found (mcp_servers.{self.server.name})")
            argv[0] = found
        base = child_env(str(n) for n in (self.config.get("sandbox.pass_env") or ()))
        settings = _ServerSandbox(self.config, self.server)
        try:
            confinement = sandbox.confine(cast(Any, settings), self.cwd, self._sandbox_state)
        except sandbox.SandboxError as exc:
            raise ConfigError(f"the server was not started: {exc}") from None
        base.update(env)
        if confinement is None:
            return Launch(argv, self.cwd, base)
        base.update(confinement.env)
        os.makedirs(confinement.env.get("XDG_CACHE_HOME", ""), mode=0o700, exist_ok=True)
        return Launch(
            [*confinement.prefix, *argv],
            self.cwd,
            base,
            ruleset=confinement.ruleset,
            deny_unix_sockets=confinement.deny_unix_sockets,
            drop_capabilities=confinement.drop_capabilities,
            sandbox=confinement.backend,
        )

    async def _list(self) -> None:
        """Fetch the tool list (and whether there are resources and prompts)."""
        client = self.client
        assert client is not None
        caps = client.server_capabilities
        tools: list[types.Tool] = []
        if caps.tools is not None:
            cursor: str | None = None
            for _ in range(MAX_PAGES):  # A paginator that never ends cannot hang the connect.
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                tools.extend(page.tools)
                cursor = page.next_cursor
                if len(tools) >= MAX_LISTED:
                    break
                if not cursor:
                    break
        self.tools = [t for t in tools if self.server.wants(t.name)]
        from hermes_agent.mcp import pins

        self.digests = {t.name: pins.digest(t) for t in self.tools}
        self.has_resources = caps.resources is not None
        self.has_prompts = caps.prompts is not None
        self.prompts = []
        if self.has_prompts:
            with contextlib.suppress(Exception):
                self.prompts = list((await client.list_prompts()).prompts)[:MAX_PROMPTS]
        self.generation += 1

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            if _broken(message):
                self.dropped(_describe_error(message, self))
            return
        method = getattr(message, "method", "")
        changed = ("notifications/tools/list_changed", "notifications/prompts/list_changed")
        if method in changed and self._refreshing:
            self._pending_refresh = True  # Listed again once the running refresh ends.
        elif method in changed and self.client is not None:
            self._refreshing = True
            asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Re-list after list_changed; a flood of notifications costs one listing a second."""
        try:
            await asyncio.sleep(REFRESH_INTERVAL if self._refreshed_recently() else 0)
            self._last_refresh = time.monotonic()
            await self._list()
        except Exception as exc:
            _log(self).note(f"refreshing the tool list failed: {exc}")
        finally:
            self._refreshing = False
        if self._pending_refresh and self.client is not None:
            self._pending_refresh = False
            self._refreshing = True
            asyncio.get_running_loop().create_task(self._refresh())

    _last_refresh = 0.0
    _pending_refresh = False

    def _refreshed_recently(self) -> bool:
        return time.monotonic() - self._last_refresh < REFRESH_INTERVAL

    def wake(self) -> None:
        """Reconnect now (``/reload-mcp``), whatever the backoff says."""
        if self._dropped is not None and self.state == READY:
            self.dropped("reloaded")
        if self._wake is not None:
            self._wake.set()

    async def stop(self) -> None:
        self._stop = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.client = None
        self._set(STOPPED if self.server.enabled else DISABLED)
        from hermes_agent.safety import sandbox

        sandbox.cleanup(self._sandbox_state)

    # --- calls (on the manager's loop) -------------------------------------------------

    def _client(self) -> Client:
        if self.client is None or self.state != READY:
            raise ServerGone(self.status().line())
        return self.client

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        on_progress: Callable[[float, float | None, str | None], None] | None = None,
    ) -> types.CallToolResult:
        """Call ``name``; ``timeout`` is an idle time that progress extends, under a cap."""
        import anyio

        client = self._client()
        idle, cap = self.server.timeout, self.server.max_call_time
        started = anyio.current_time()
        # One cancel scope whose deadline each progress notification pushes back (never
        # past the cap). Cancelled, the SDK sends notifications/cancelled to the server.
        scope = anyio.CancelScope(deadline=started + min(idle, cap))

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            scope.deadline = min(anyio.current_time() + idle, started + cap)
            if on_progress is not None:
                on_progress(progress, total, message)

        try:
            with scope:
                result = await client.call_tool(name, arguments, progress_callback=progress)
        except Exception as exc:
            if _broken(exc):
                self.dropped(_describe_error(exc, self))
            raise
        if scope.cancelled_caught:
            if anyio.current_time() - started >= cap:
                raise TimeoutError(
                    f"the call ran longer than max_call_time ({cap:g} s) and was cancelled"
                )
            raise TimeoutError(
                f"no answer and no progress for {idle:g} s (timeout); the call was cancelled"
            )
        return result

    async def read_resource(self, uri: str) -> Any:
        return await self._client().read_resource(uri)

    async def list_resources(self) -> Any:
        return await self._client().list_resources()

    async def get_prompt(self, name: str, arguments: dict[str, str]) -> Any:
        return await self._client().get_prompt(name, arguments)


class _ServerSandbox:
    """The configuration as :func:`sandbox.confine` reads it, with one server's additions."""

    def __init__(self, config: Any, server: ServerConfig) -> None:
        self.config = config
        self.server = server

    def get(self, key: str, default: Any = None) -> Any:
        if key == "sandbox.writable":
            return [*(self.config.get(key) or ()), *self.server.writable]
        if key == "sandbox.network" and self.server.network is not None:
            return self.server.network
        return self.config.get(key, default)


def _log(connection: Connection) -> Any:
    from hermes_agent import home
    from hermes_agent.mcp.stdio import BoundedLog

    return BoundedLog(home.mcp_log_path(connection.server.name))


def _broken(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (rather than one call failing)."""
    import anyio

    if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | ConnectionError):
        return True
    name = type(exc).__name__
    return name in ("ConnectError", "RemoteProtocolError", "ReadError", "WriteError")


def _describe_error(exc: BaseException, connection: Connection) -> str:
    """One line on why a server failed: no traceback, no secret, a hint where one helps."""
    from hermes_agent.redact import redact

    if isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        if inner:
            return _describe_error(inner[0], connection)
    text = str(exc) or type(exc).__name__
    name = type(exc).__name__
    stdio = connection._stdio
    if stdio is not None and stdio.ended.is_set() and stdio.reason not in text:
        text = f"the server {stdio.reason} ({text})"
    if name == "HTTPStatusError" or "401" in text:
        response = getattr(exc, "response", None)
        code = getattr(response, "status_code", None)
        if code == 401 or " 401" in text:
            text = "the server answered 401 Unauthorized (check headers, or auth: oauth)"
    elif name in ("ConnectError", "ConnectTimeout"):
        text = f"cannot connect: {text}"
    if connection.server.stdio and not isinstance(exc, ConfigError | TimeoutError):
        tail = _log(connection).tail(3)
        if tail:
            text += f" (last lines of {_shown_log(connection)}: {tail!r})"
    elif connection.server.stdio and isinstance(exc, TimeoutError):
        text += f" (see {_shown_log(connection)})"
    return redact(" ".join(text.split()))[:600]


def _shown_log(connection: Connection) -> str:
    from hermes_agent import home

    return str(home.mcp_log_path(connection.server.name))


class Scope:
    """The servers one agent sees: the configured ones, plus a scope's own (ACP)."""

    def __init__(self, manager: Manager, connections: list[Connection], own: bool) -> None:
        self.manager = manager
        self.connections = connections
        self._own = own
        self._prepared = False
        self._tool_cache: dict[str, tuple[int, list[Tool]]] = {}
        #: Per server, how many tools :meth:`tools` left out over ``mcp.max_tools``.
        self.left_out: dict[str, int] = {}
        self.closed = False

    def statuses(self) -> list[Status]:
        return [c.status() for c in self.connections]

    async def prepare(self) -> None:
        """Before a turn: the first time, wait (a little) for servers to be ready.

        Waits at most ``mcp.connect_wait`` seconds for servers still connecting,
        and up to its ``connect_timeout`` for a ``required`` one, which must then
        be ready: :class:`RequiredServerError` otherwise.
        """
        if self._prepared:
            self._check_required()
            return
        budget = _connect_wait(self.connections)
        deadline = time.monotonic() + budget
        required_deadline = {
            id(c): time.monotonic() + c.server.connect_timeout + 1
            for c in self.connections
            if c.server.required
        }
        while True:
            now = time.monotonic()
            waiting = [
                c
                for c in self.connections
                if c.state == CONNECTING
                and (now < deadline or now < required_deadline.get(id(c), 0.0))
            ]
            if not waiting:
                break
            await asyncio.sleep(0.01)
        self._prepared = True
        self._check_required()

    def _check_required(self) -> None:
        for c in self.connections:
            if c.server.required and c.state not in (READY, CONNECTING):
                raise RequiredServerError(
                    f"MCP server {c.server.name!r} is required but not available: "
                    f"{c.status().line()}"
                )
            if c.server.required and c.state == CONNECTING and c.attempts > 1:
                raise RequiredServerError(
                    f"MCP server {c.server.name!r} is required but not available: "
                    f"{c.status().line()}"
                )

    def tools(self) -> list[Tool]:
        """The hermes tools of every ready server, plus the ``mcp_servers`` status tool."""
        from hermes_agent.mcp import tools as mcp_tools

        out: list[Tool] = []
        taken: set[str] = set()
        limit = _max_tools(self.connections)
        self.left_out = {}
        for connection in self.connections:
            if connection.state != READY:
                continue
            key = connection.server.name
            cached = self._tool_cache.get(key)
            pins_stamp = mcp_tools.pins_stamp()
            stamp = hash((connection.generation, pins_stamp, id(connection)))
            if cached is None or cached[0] != stamp:
                cached = (stamp, mcp_tools.server_tools(self, connection, taken))
                self._tool_cache[key] = cached
            for tool in cached[1]:
                if tool.name in taken:  # Two servers whose names collide after sanitising.
                    continue
                if len(out) >= limit:  # Too many tools would flood the model's context.
                    name = connection.server.name
                    self.left_out[name] = self.left_out.get(name, 0) + 1
                    continue
                taken.add(tool.name)
                out.append(tool)
        out.extend(mcp_tools.generic_tools(self))
        return out

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await self.manager.submit(coro)

    def close(self) -> None:
        """Stop the servers this scope brought (an ACP session's own); idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._own:
            self.manager.stop_connections(self.connections)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._own:
            await self.manager.submit(self.manager._stop_all(self.connections))

    def find(self, name: str) -> Connection | None:
        for connection in self.connections:
            if connection.server.name == name:
                return connection
        return None


#: Default of ``mcp.max_tools``: the most MCP tools offered to the model at once.
DEFAULT_MAX_TOOLS = 128


def _max_tools(connections: Iterable[Connection]) -> int:
    for c in connections:
        value = c.config.get("mcp.max_tools") if hasattr(c.config, "get") else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        break
    return DEFAULT_MAX_TOOLS


class AgentView:
    """A scope as one agent sees it: its first turn also tells the user what is not ready.

    The model learns the servers' states from the ``mcp_servers`` tool; the user
    hears it once per agent through ``notice`` (the front end's ``Events.notice``),
    so a failed server is never silent.
    """

    def __init__(self, scope: Scope, notice: Callable[[str], None]) -> None:
        self.scope = scope
        self.notice = notice
        self._told = False

    async def prepare(self) -> None:
        await self.scope.prepare()
        if not self._told:
            self._told = True
            for status in self.scope.statuses():
                if status.state not in (READY, DISABLED):
                    self.notice(f"MCP server {status.line()}")

    def tools(self) -> list[Tool]:
        return self.scope.tools()


def _connect_wait(connections: Iterable[Connection]) -> float:
    for c in connections:
        value = c.config.get("mcp.connect_wait") if hasattr(c.config, "get") else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        break
    return DEFAULT_CONNECT_WAIT


class Manager:
    """The process's MCP connections, on one event loop.

    Two modes. *Attached*: created from the main thread's running loop (`hermes chat`,
    the gateway, ACP: each runs one loop for its whole life), the connections live on
    that loop and a call from it costs no thread switch. *Threaded*: created from
    synchronous code (`hermes mcp`) or from another thread, the connections live on a
    loop in a daemon thread of their own. Either way, a caller on any other loop (a
    cron job's thread) reaches them through :meth:`submit`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.attached = loop is not None
        self._thread: threading.Thread | None = None
        if loop is not None:
            self.loop = loop
        else:
            self.loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run, name="hermes-mcp", daemon=True)
            self._thread.start()
        #: The configured servers of the workspace asked for last (``/mcp``, reload).
        self.connections: dict[str, Connection] = {}
        #: Per workspace: the configuration it was started from, its shared scope and
        #: connections; least recently used first (see :data:`MAX_WORKSPACES`).
        self._shared: dict[str, tuple[Any, Scope, dict[str, Connection]]] = {}
        self._lock = threading.Lock()
        #: Every connection ever started (scopes' own too), for the stop at exit.
        self._every: list[Connection] = []
        self.closed = False

    @property
    def usable(self) -> bool:
        return not self.closed and not self.loop.is_closed()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def submit(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the manager's loop and await it from the caller's loop."""
        if asyncio.get_running_loop() is self.loop:
            return await coro
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the manager's loop from synchronous code (another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _start(self, servers: Sequence[ServerConfig], config: Any, cwd: str) -> list[Connection]:
        connections = [Connection(self, s, config, cwd) for s in servers]
        self._every.extend(connections)

        def start() -> None:
            for connection in connections:
                connection.start()
                if not connection.server.enabled:
                    connection.settled.set()

        self.loop.call_soon_threadsafe(start)
        return connections

    def global_scope(self, config: Config, cwd: str | Path) -> Scope:
        """The configured servers, started on first use and shared by every session in
        workspace ``cwd`` (each workspace has its own, up to :data:`MAX_WORKSPACES`).

        When the configuration changed (``/reload-mcp`` after an edit, a gateway
        that reloads), servers whose definition changed are restarted.
        """
        from hermes_agent.mcp import config as mcp_config

        servers = mcp_config.parse_servers(config.get("mcp_servers"), include_disabled=True)
        key = tuple(servers)
        where = str(cwd)
        with self._lock:
            # One set of servers per workspace: an editor's sessions in two projects each
            # keep theirs. (A single set, restarted for whichever workspace asked last,
            # left the other project's open sessions with stopped servers: their MCP
            # tools were gone.)
            found = self._shared.pop(where, None)
            if found is not None and found[0] == key:
                self._shared[where] = found
                self.connections = found[2]
                return found[1]
            old = found[2] if found is not None else {}
            keep: dict[str, Connection] = {}
            fresh: list[ServerConfig] = []
            for server in servers:
                current = old.get(server.name)
                if current is not None and current.server == server:
                    keep[server.name] = current
                else:
                    fresh.append(server)
            gone = [c for name, c in old.items() if keep.get(name) is not c]
            while len(self._shared) >= MAX_WORKSPACES:  # The least recently used go.
                gone += self._shared.pop(next(iter(self._shared)))[2].values()
            if gone:
                self.stop_connections(gone)
            started = {c.server.name: c for c in self._start(fresh, config, where)}
            self.connections = {s.name: keep.get(s.name) or started[s.name] for s in servers}
            scope = Scope(self, list(self.connections.values()), own=False)
            self._shared[where] = (key, scope, self.connections)
            return scope

    def open_scope(
        self,
        servers: Sequence[ServerConfig],
        *,
        config: Config,
        cwd: str | Path,
        include_global: bool = True,
    ) -> Scope:
        """A scope with its own ``servers`` (visible to it alone), plus the configured ones.

        For ACP sessions, which bring MCP servers per session: call
        :meth:`Scope.close` (or ``await scope.aclose()``) when the session ends, and
        its own servers are stopped.
        """
        own = self._start(list(servers), config, str(cwd))
        shared = self.global_scope(config, cwd).connections if include_global else []
        names = {c.server.name for c in own}
        return Scope(self, [*[c for c in shared if c.server.name not in names], *own], own=True)

    def stop_connections(self, connections: Iterable[Connection]) -> None:
        items = list(connections)
        if items and self.usable:
            asyncio.run_coroutine_threadsafe(self._stop_all(items), self.loop)

    async def _stop_all(self, connections: Iterable[Connection]) -> None:
        await asyncio.gather(*(c.stop() for c in connections), return_exceptions=True)

    def reload(self) -> None:
        """Reconnect every configured server now (``/reload-mcp``), in every workspace."""
        with self._lock:
            every = [c for _, _, found in self._shared.values() for c in found.values()]
        for connection in every or list(self.connections.values()):
            self.loop.call_soon_threadsafe(connection.wake)

    def statuses(self) -> list[Status]:
        return [c.status() for c in self.connections.values()]

    def shutdown(self, timeout: float = 8.0) -> None:
        """Stop every server (their process groups killed) and the manager's loop.

        An attached manager's servers are stopped when their loop ends (``asyncio.run``
        cancels their tasks, which stop their processes); the sandbox's spawner kills
        whatever is left when hermes exits.
        """
        if self.closed:
            return
        self.closed = True
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            self.run_sync(self._stop_all(self._every), timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(2)


_manager: Manager | None = None
_manager_lock = threading.Lock()


def get_manager() -> Manager:
    """The process's one manager, created on first use (stopped at exit)."""
    global _manager
    with _manager_lock:
        if _manager is None or not _manager.usable:
            loop: asyncio.AbstractEventLoop | None = None
            if threading.current_thread() is threading.main_thread():
                with contextlib.suppress(RuntimeError):
                    loop = asyncio.get_running_loop()
            _manager = Manager(loop)
            atexit.register(_manager.shutdown)
        return _manager


def running_manager() -> Manager | None:
    """The manager if one was started (``/mcp`` without starting anything)."""
    return _manager


def scope_for(config: Config, cwd: str | Path) -> Scope | None:
    """The configured servers' scope for a new agent, or None when none is configured."""
    from hermes_agent.mcp import config as mcp_config

    if not mcp_config.any_enabled(config):
        return None
    return get_manager().global_scope(config, cwd)


async def call_from(scope: Scope, make: Callable[[], Awaitable[T]]) -> T:
    async def run() -> T:
        return await make()

    return await scope.call(run())
