"""One editor session: a hermes session in state.db, its turns, updates and approvals.

Turns run one at a time: a prompt that arrives while one runs waits for it
(queued, never dropped). A turn runs as its own task so ``session/cancel``
(or ``$/cancel_request``) can stop it at once, model call and tool alike;
the loop then leaves a history the API accepts, and the prompt is answered
with ``stopReason: cancelled``. A cancel with no turn running does nothing.

Updates (text, tool calls, plans) go through one queue drained by a sender
task, so the loop never waits on the editor; before a prompt is answered
(and before a permission request) the queue is flushed with a deadline, and
an update that fails to send is logged and dropped: it never holds the
answer back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from acp.exceptions import RequestError
from acp.schema import (
    AgentMessageChunk,
    AgentThoughtChunk,
    AllowedOutcome,
    ContentToolCallContent,
    Cost,
    PermissionOption,
    PromptResponse,
    SessionInfoUpdate,
    TextContentBlock,
    ToolCallProgress,
    ToolCallStart,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

from hermes_agent.acp import mapping
from hermes_agent.agent.loop import Events
from hermes_agent.redact import LogRedactor

if TYPE_CHECKING:
    from hermes_agent.acp.agent import ClientProxy
    from hermes_agent.agent.loop import Agent
    from hermes_agent.providers.base import ProviderError, ToolCall
    from hermes_agent.tools.registry import ToolResult

log = logging.getLogger("hermes.acp")

#: How long the answer to a prompt waits for queued updates to leave.
FLUSH_SECONDS = 5.0
#: Approval questions: the gate's and the file guard's choices, as ACP options.
_APPROVAL = {"yes", "no", "always"}
_OPTIONS = {
    "yes": ("allow_once", "Allow once"),
    "always": ("allow_always", "Allow always (this kind, this session)"),
    "no": ("reject_once", "Reject"),
}


class SessionEvents(Events):
    """What the loop says, as ``session/update`` notifications to the editor."""

    def __init__(self, session: AcpSession) -> None:
        self.session = session
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._message_number = 0
        self.message_id = ""
        #: The tool call now running (approval questions belong to it).
        self.current_call: str | None = None
        self._calls: dict[str, tuple[str, dict[str, Any]]] = {}
        #: Per running call: its output so far, redacted, and the redactor holding the
        #: end that is not shown yet (see :meth:`terminal_output`).
        self._output: dict[str, tuple[list[str], LogRedactor]] = {}
        self._last_output = 0.0
        self.new_message()

    # --- sending ------------------------------------------------------------------------

    def new_message(self) -> None:
        """The next text belongs to a new message (after a tool call, a retry, a turn)."""
        self._message_number += 1
        self.message_id = f"{self.session.id}-{int(time.time() * 1000)}-{self._message_number}"

    def send(self, update: Any) -> None:
        self.queue.put_nowait(update)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while not self.queue.empty():
            update = self.queue.get_nowait()
            try:
                await self.session.client.session_update(self.session.id, update)
            except Exception as exc:  # A failed update must never stop the turn.
                log.warning("session %s: an update could not be sent: %s", self.session.id, exc)
            finally:
                self.queue.task_done()

    async def flush(self, seconds: float = FLUSH_SECONDS) -> None:
        """Wait (up to ``seconds``) until every queued update has left."""
        if self._sender is None:
            return
        try:
            # Not wait_for: on Python 3.11 it drops a cancel that comes as the queue empties.
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._sender)
        except TimeoutError:
            log.warning("session %s: updates still queued after %.0f s", self.session.id, seconds)
        except Exception:  # Logged in _drain.
            pass

    # --- the loop's events --------------------------------------------------------------

    def text(self, delta: str) -> None:
        if delta:
            self.send(
                AgentMessageChunk(
                    session_update="agent_message_chunk",
                    content=TextContentBlock(type="text", text=delta),
                    message_id=self.message_id,
                )
            )

    def thought(self, delta: str) -> None:
        if delta:
            self.send(
                AgentThoughtChunk(
                    session_update="agent_thought_chunk",
                    content=TextContentBlock(type="text", text=delta),
                    message_id=self.message_id,
                )
            )

    def retrying(self, error: ProviderError, delay: float, attempt: int) -> None:
        self.notice(f"the model call failed ({error}); trying again in {delay:.0f} s")

    def notice(self, message: str) -> None:
        from hermes_agent.redact import redact

        self.new_message()
        self.text(f"\n[hermes: {redact(message)}]\n")
        self.new_message()

    def tool_started(self, call: ToolCall) -> None:
        from hermes_agent.redact import redact_data

        args = redact_data(mapping.arguments(call.arguments))
        self._calls[call.id] = (call.name, args)
        self.current_call = call.id
        content: list[Any] = []
        if call.name in ("write_file", "patch"):
            diff = mapping.tool_diff(
                call.name, args, self.session.cwd, self.session.current_text(args.get("path"))
            )
            if diff is not None:
                content.append(diff)
        self.send(
            ToolCallStart(
                session_update="tool_call",
                tool_call_id=call.id,
                title=mapping.tool_title(call.name, args),
                kind=mapping.tool_kind(call.name),  # type: ignore[arg-type]
                status="in_progress",
                content=content or None,
                locations=mapping.tool_locations(call.name, args, self.session.cwd) or None,
                raw_input=args,
            )
        )

    def terminal_output(self, chunk: str) -> None:
        """Output of the running command, shown as the tool call's content while it runs.

        Only whole lines are shown (:class:`LogRedactor`): redacting the output so far
        showed the first half of a secret whose second half had not been read yet.
        """
        call = self.current_call
        if call is None or not chunk:
            return
        pieces, redactor = self._output.setdefault(call, ([], LogRedactor()))
        pieces.append(redactor.feed(chunk))
        now = time.monotonic()
        if now - self._last_output < 0.1:
            return  # At most ten updates a second; the result carries the rest.
        self._last_output = now
        self.send(
            ToolCallProgress(
                session_update="tool_call_update",
                tool_call_id=call,
                content=[mapping.text_content("".join(pieces))],
            )
        )

    def tool_finished(self, result: ToolResult, seconds: float) -> None:
        call_id = result.call.id
        name, _ = self._calls.pop(call_id, (result.call.name, {}))
        self._output.pop(call_id, None)
        if self.current_call == call_id:
            self.current_call = None
        content: list[Any] = [mapping.text_content(result.content)]
        self.send(
            ToolCallProgress(
                session_update="tool_call_update",
                tool_call_id=call_id,
                status="failed" if result.is_error else "completed",
                content=content,
                raw_output={"content": result.content[: mapping.MAX_SHOWN]},
            )
        )
        if name == "todo" and not result.is_error:
            items = self.session.agent_state().get("todo") or []
            self.send(mapping.plan_update(items))
        self.new_message()

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        return await self.session.ask(question, choices)


class AcpSession:
    """A hermes session driven by an editor."""

    def __init__(
        self,
        *,
        session_id: str,
        cwd: str,
        client: ClientProxy,
        build: Callable[[SessionEvents], Agent],
        permission_seconds: float,
        close_scope: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.id = session_id
        self.cwd = cwd
        self.client = client
        self.events = SessionEvents(self)
        self.agent = build(self.events)
        self.permission_seconds = permission_seconds
        self._close_scope = close_scope
        self._turns = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self.closed = False

    def agent_state(self) -> dict[str, Any]:
        return self.agent.context.state

    def current_text(self, path: object) -> str | None:
        """A file's text now, for the diff shown before a write; None when unknown.

        Asked before the tool runs, so the path is the model's: it is read only
        when the file guard lets the tools read it (never ``.env``, a key...),
        through the same no-symlink open, and the text is redacted.
        """
        if not isinstance(path, str) or not path:
            return None
        from hermes_agent.redact import redact
        from hermes_agent.tools import pinned
        from hermes_agent.tools.guard import Need, guard_for

        try:
            decision = guard_for(self.agent.context).decide(path, write=False)
            if decision.need is Need.REFUSE or decision.secret:
                return None
            raw, _ = pinned.read_bytes(decision.real)
        except (OSError, ValueError):
            return None
        if len(raw) > 4 << 20 or b"\0" in raw[:8192]:
            return None
        try:
            return redact(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None

    # --- turns --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def prompt(
        self, text: str, run: Callable[[], Awaitable[Any]] | None = None
    ) -> PromptResponse:
        """Run one turn (after any turn already running) and answer the prompt."""
        async with self._turns:
            if self.closed:
                raise RequestError.invalid_params({"sessionId": f"session {self.id} is closed"})
            self._cancelled = False
            self.events.new_message()
            before = self.agent.usage.input_tokens, self.agent.usage.output_tokens
            task = asyncio.ensure_future(run() if run is not None else self.agent.run(text))
            self._task = task
            try:
                await asyncio.wait({task})
            finally:
                if not task.done():  # The prompt itself was cancelled (the connection ended).
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                self._task = None
            stop = "end_turn"
            if task.cancelled():
                stop = "cancelled"
            else:
                error = task.exception()
                if error is not None:
                    await self.events.flush()
                    raise _request_error(error)
                result = task.result()
                if getattr(result, "status", "done") == "max_turns":
                    stop = "max_turn_requests"
            if self._cancelled:
                stop = "cancelled"
            self._after_turn()
            await self.events.flush()
            usage = self.agent.usage
            spent_in = usage.input_tokens - before[0]
            spent_out = usage.output_tokens - before[1]
            return PromptResponse(
                stop_reason=stop,  # type: ignore[arg-type]
                usage=Usage(
                    input_tokens=spent_in,
                    output_tokens=spent_out,
                    total_tokens=spent_in + spent_out,
                ),
            )

    def _after_turn(self) -> None:
        """Usage and the title after a turn (both best effort)."""
        try:
            cost = self.agent.cost_usd
            self.events.send(
                UsageUpdate(
                    session_update="usage_update",
                    used=self.agent.estimated_prompt_tokens(),
                    size=self.agent.context_window(),
                    cost=None if cost is None else Cost(amount=round(cost, 6), currency="USD"),
                )
            )
            self.send_info()
        except Exception as exc:
            log.warning("session %s: usage/title update failed: %s", self.id, exc)

    def send_info(self) -> None:
        session = self.agent.db.get_session(self.id)
        if session is None:
            return
        self.events.send(
            SessionInfoUpdate(
                session_update="session_info_update",
                title=session.title,
                updated_at=iso_time(session.updated_at),
            )
        )

    def cancel(self) -> None:
        """Stop the running turn now; nothing when idle (the next prompt runs normally)."""
        if self.running and self._task is not None:
            self._cancelled = True
            self._task.cancel()

    async def close(self) -> None:
        """Cancel what runs, end tool processes and MCP servers, free the session."""
        self.closed = True
        self.cancel()
        async with self._turns:  # The cancelled turn has ended.
            pass
        await self.events.flush(1.0)
        with contextlib.suppress(Exception):
            await self.agent.aclose()
        if self._close_scope is not None:
            with contextlib.suppress(Exception):
                await self._close_scope()

    # --- approvals ----------------------------------------------------------------------

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        """The agent asks the user: approvals and choices become a permission request.

        A question without choices (free text) cannot be put to an editor, and
        is answered None (nobody to ask), as are a client without permission
        UI, an error, and no answer within ``acp.permission_timeout``.
        """
        if not choices:
            return None
        approval = set(choices) <= _APPROVAL and {"yes", "no"} <= set(choices)
        if approval:
            options = [
                PermissionOption(option_id=c, name=_OPTIONS[c][1], kind=_OPTIONS[c][0])  # type: ignore[arg-type]
                for c in ("yes", "always", "no")
                if c in choices
            ]
        else:
            options = [
                PermissionOption(option_id=str(i), name=str(c)[:200], kind="allow_once")
                for i, c in enumerate(choices)
            ]
        call_id = self.events.current_call or f"ask-{int(time.time() * 1000)}"
        name, args = self.events._calls.get(call_id, ("question", {}))
        content: list[Any] = [
            ContentToolCallContent(
                type="content", content=TextContentBlock(type="text", text=question)
            )
        ]
        if name in ("write_file", "patch"):
            diff = mapping.tool_diff(name, args, self.cwd, self.current_text(args.get("path")))
            if diff is not None:
                content.insert(0, diff)
        tool_call = ToolCallUpdate(
            tool_call_id=call_id,
            title=mapping.tool_title(name, args) if args else question.split("\n")[0][:120],
            kind=mapping.tool_kind(name),  # type: ignore[arg-type]
            status="pending",
            content=content,
        )
        await self.events.flush()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns an answer
            # that is in and drops a session/cancel arriving at the same moment, so a
            # cancelled turn went on and ran the tool the user had just allowed.
            async with asyncio.timeout(self.permission_seconds):
                response = await self.client.request_permission(self.id, tool_call, options)
        except TimeoutError:
            log.info("session %s: no answer to a permission request in time: denied", self.id)
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("session %s: permission request failed (%s): denied", self.id, exc)
            return None
        outcome = response.outcome
        selected = getattr(outcome, "outcome", "") == "selected"
        if not isinstance(outcome, AllowedOutcome) and not selected:
            return None  # "cancelled": the user (or the editor) dismissed it.
        chosen = str(getattr(outcome, "option_id", ""))
        if approval:
            return chosen if chosen in choices else None
        try:
            return str(choices[int(chosen)])
        except (ValueError, IndexError):
            return None


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _request_error(error: BaseException) -> RequestError:
    """A failed turn as the prompt's JSON-RPC error (secrets redacted)."""
    from hermes_agent.providers.base import AuthError, ProviderError
    from hermes_agent.redact import redact

    message = redact(str(error)) or type(error).__name__
    if isinstance(error, AuthError):
        return RequestError.auth_required({"details": message})
    if isinstance(error, ProviderError):
        return RequestError.internal_error({"details": f"the model call failed: {message}"})
    from hermes_agent.errors import UsageError

    if isinstance(error, UsageError):  # The prompt cannot be taken (an image to a blind model).
        return RequestError.invalid_params({"details": message})
    log.error("turn failed", exc_info=error)
    return RequestError.internal_error({"details": message})
