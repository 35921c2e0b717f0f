"""The tool-calling loop that every front end drives.

:meth:`Agent.run` takes one user message and calls the model, runs the tool
calls it asks for (in parallel when every tool allows it), feeds the results
back, and repeats until the model answers without tools or the turn limit is
reached. It knows nothing about terminals or chat platforms: front ends
subclass :class:`Events` to show text, tool activity and retries.

Every message is written to state.db the moment it exists, so a crash or a
Ctrl-C loses nothing, and the history stays valid for the API: a tool call
that was interrupted gets a "cancelled" result before the turn ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hermes_agent import checkpoints
from hermes_agent.agent import compress, models
from hermes_agent.agent.prompt import build_system_prompt, prompt_key
from hermes_agent.providers.base import (
    AuthError,
    Completion,
    Message,
    Provider,
    ProviderError,
    ToolCall,
    Usage,
    complete_with_retries,
)
from hermes_agent.tools.registry import Tool, ToolContext, ToolResult, dispatch

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.fallback import FallbackChain
    from hermes_agent.state.db import StateDB


class Events:
    """What a front end hears from the loop. Every method is optional (no-op here)."""

    def text(self, delta: str) -> None:
        """A piece of the model's answer, as it streams."""

    def retrying(self, error: ProviderError, delay: float, attempt: int) -> None:
        """A call failed and is retried after ``delay`` s; streamed text so far is void."""

    def tool_started(self, call: ToolCall) -> None:
        """A tool call begins."""

    def tool_finished(self, result: ToolResult, seconds: float) -> None:
        """A tool call ended (``result.is_error`` tells how)."""

    def notice(self, message: str) -> None:
        """Something the user should know that is not part of the answer."""

    def thought(self, delta: str) -> None:
        """A piece of the model's reasoning, where the provider streams it (not stored)."""

    def fallback(self, error: ProviderError, message: str) -> None:
        """The model failed with ``error``; another provider goes on (``message`` says
        which, in one line). Streamed text so far is void, as after :meth:`retrying`."""
        self.notice(message)

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        """Ask the user; None means nobody can answer (tools must then play safe)."""
        return None


class ToolSource(Protocol):
    """Tools that change during a session (the MCP servers' tools)."""

    async def prepare(self) -> None:
        """Called before each turn (the first one may wait a little for servers)."""

    def tools(self) -> list[Tool]:
        """The tools to offer now."""


class _ChildEvents(Events):
    """A sub-agent shows its tool activity and asks the user through its parent."""

    def __init__(self, parent: Events) -> None:
        self.parent = parent

    def tool_started(self, call: ToolCall) -> None:
        self.parent.tool_started(call)

    def tool_finished(self, result: ToolResult, seconds: float) -> None:
        self.parent.tool_finished(result, seconds)

    def notice(self, message: str) -> None:
        self.parent.notice(f"(sub-agent) {message}")

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        return await self.parent.ask(question, choices)


@dataclass
class TurnResult:
    text: str
    #: "done", or "max_turns" when the turn limit stopped the work.
    status: str
    model_calls: int
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0


STOPPED_TEMPLATE = (
    "Stopped: this message used the limit of {n} model calls (agent.max_turns). "
    "The work so far is kept; send another message to continue."
)
INTERRUPTED_MARK = " [interrupted by the user]"
#: What an image counts for in the context estimate (characters, at ~4 a token).
IMAGE_CHARS = 6400
CANCELLED_RESULT = "cancelled: the user interrupted this tool call before it finished"


def _redacted(text: str) -> str:
    from hermes_agent.redact import redact

    return redact(text)


class Agent:
    """One conversation (a session in state.db) with one model and a set of tools."""

    def __init__(
        self,
        *,
        provider: Provider,
        tools: list[Tool],
        config: Config,
        db: StateDB,
        session_id: str,
        cwd: Path,
        events: Events | None = None,
        summary_provider: Callable[[], Provider] | None = None,
        system_prompt: str | None = None,
        depth: int = 0,
        fallbacks: FallbackChain | None = None,
    ) -> None:
        self.provider = provider
        #: Providers that go on when ``provider`` fails (``fallback_providers``).
        self.fallbacks = fallbacks
        #: Whether :meth:`aclose` closes ``fallbacks`` even when the provider is shared
        #: (the factory built them for this agent alone: a cron run in the gateway).
        self.owns_fallbacks = False
        #: Who answers in this turn: ``provider`` until it fails, then a fallback.
        self._answering: Provider = provider
        self._fallback_next = 0
        self.tools = {t.name: t for t in tools}
        self._base_tools = dict(self.tools)
        #: Tools that come and go while the session runs (MCP servers connecting, their
        #: lists changing): read before every model call. Set by ``build_agent``.
        self.tool_source: ToolSource | None = None
        self.config = config
        self.db = db
        self.session_id = session_id
        self.cwd = cwd
        self.events = events or Events()
        self._summary_provider = summary_provider
        self.system = system_prompt or self._session_prompt()
        self.history: list[Message] = db.messages(session_id)
        self.max_turns = int(config.get("agent.max_turns") or config.get("max_turns"))
        self.context = ToolContext(
            session_id,
            str(cwd),
            config,
            db,
            ask=self.events.ask,
            depth=depth,
            delegate=self.delegate,
        )
        from hermes_agent.images import vision_supported

        # read_file returns a picture as an image only to a model that takes images.
        self.context.state["vision"] = vision_supported(config, provider.model)
        totals = db.session_usage(session_id) or (0, 0, 0, 0, 0.0)
        self.usage = Usage(*totals[:4])
        self.cost_usd: float | None = totals[4]
        #: A sub-agent starts "tainted" when its parent's turn read untrusted content.
        self.inherited_untrusted = False
        #: Prompt size of the last call (exact, from the provider), for compression.
        self._last_prompt_tokens = 0
        self._chars_since_last_call = sum(len(str(m.get("content") or "")) for m in self.history)

    def _session_prompt(self) -> str:
        """The session's system prompt: built on its first turn, then kept in state.db.

        Every later turn (each gateway message builds an Agent; a resumed chat) sends
        the same prompt, so the provider's prompt cache keeps working and memory and
        skills stay the snapshot the session started with. It is built again when
        what the user chose for it changed (SOUL.md, USER.md, personality, model,
        tools): see :func:`prompt_key`.
        """
        personality = self.personality_text()
        tools = list(self.tools)
        key = prompt_key(
            cwd=self.cwd, personality=personality, model=self.provider.model, tools=tools
        )
        stored = self.db.system_prompt(self.session_id, key)
        if stored is not None:
            return stored
        prompt = build_system_prompt(
            cwd=self.cwd,
            personality=personality,
            model=self.provider.model,
            config=self.config,
            tools=tools,
        )
        return self.db.keep_system_prompt(self.session_id, prompt, key)

    def personality_text(self) -> str:
        """The style the session's prompt gets: /personality's choice, else the config's.

        A name from ``personalities:`` in config.yaml or the bundled ones is
        replaced by its text; any other text is used as it is (the user wrote it).
        """
        from hermes_agent.agent.prompt import personality_style

        chosen = self.db.session_personality(self.session_id)
        name = chosen if chosen is not None else self.config.get("display.personality") or ""
        return personality_style(self.config, name)

    def reload_history(self) -> None:
        """Read the active history again: /undo changed it in state.db."""
        self.history = self.db.messages(self.session_id)
        self._last_prompt_tokens = 0
        self._chars_since_last_call = sum(len(str(m.get("content") or "")) for m in self.history)

    def refresh_prompt(self) -> None:
        """Take up a new personality (/personality): the prompt is built again if it changed."""
        self.system = self._session_prompt()

    async def aclose(self, *, close_provider: bool = True) -> None:
        """End the session's resources: tool processes, and the provider's connections."""
        from hermes_agent.tools.registry import cleanup_state

        cleanup_state(self.context.state)
        if close_provider:
            await self.provider.aclose()
        if self.fallbacks is not None and (close_provider or self.owns_fallbacks):
            await self.fallbacks.aclose()

    # --- history -----------------------------------------------------------------

    def _append(
        self,
        message: Message,
        usage: dict[str, float] | None = None,
        answered_by: tuple[str, str] | None = None,
    ) -> None:
        """Store ``message`` and add it to the history the model is sent, both redacted.

        The model gets what state.db keeps, in this turn as in later ones: a
        secret the user pasted, or one a model wrote into a tool call's
        arguments, is not sent back. Tool results come redacted from
        :func:`dispatch` already.
        """
        if message["role"] != "tool":
            from hermes_agent.redact import redact_message

            message = redact_message(message)
        self.db.add_message(self.session_id, message, usage=usage, answered_by=answered_by)
        self.history.append(message)
        self._chars_since_last_call += (
            len(str(message.get("content") or ""))
            + sum(len(c["function"]["arguments"]) for c in message.get("tool_calls") or ())
            # An image costs the model ~1,600 tokens (Anthropic: w*h/750, at most 1568 px).
            + IMAGE_CHARS * len(message.get("images") or ())
        )

    def _repair_unanswered_calls(self) -> None:
        """Give every tool call without a result a "cancelled" one (the API requires it).

        Only the end of the history can be incomplete, so only it is looked at.
        """
        answered: set[str] = set()
        for message in reversed(self.history):
            if message["role"] == "tool":
                answered.add(message.get("tool_call_id") or "")
                continue
            if message["role"] == "assistant" and message.get("tool_calls"):
                for call in message["tool_calls"]:
                    if call["id"] not in answered:
                        self._append(
                            {
                                "role": "tool",
                                "tool_call_id": call["id"],
                                "content": CANCELLED_RESULT,
                            }
                        )
            break

    # --- the loop ----------------------------------------------------------------

    def tool_specs(self) -> list[Any]:
        if self.tool_source is not None:
            dynamic = {
                t.name: t for t in self.tool_source.tools() if t.name not in self._base_tools
            }
            self.tools = {**self._base_tools, **dynamic}
        return [t.spec() for t in self.tools.values()]

    def estimated_prompt_tokens(self) -> int:
        """Exact size of the last prompt plus ~4 characters a token for what came since."""
        base = self._last_prompt_tokens or (len(self.system) // 4)
        return base + self._chars_since_last_call // 4

    def _resumable(self, text: str) -> TurnResult | bool:
        """For :meth:`run` with ``resume``: is ``text`` the turn the history ends in?

        Returns the finished answer when that turn was already answered (the
        process died before recording that it was), True when the turn was
        started and must go on, False when the message never made it in.
        """
        for index in range(len(self.history) - 1, -1, -1):
            message = self.history[index]
            if message["role"] != "user":
                continue
            if message.get("content") not in (text, _redacted(text)):
                return False
            last = self.history[-1]
            if index < len(self.history) - 1 and last["role"] == "assistant":
                content = str(last.get("content") or "")
                if not last.get("tool_calls") and not content.endswith(INTERRUPTED_MARK):
                    return TurnResult(content, "done", 0, Usage(), 0.0)
            return True
        return False

    async def run(
        self,
        text: str,
        *,
        resume: bool = False,
        on_answer: Callable[[str], None] | None = None,
        images: Sequence[Any] = (),
    ) -> TurnResult:
        """Answer one user message, using tools as needed.

        ``images``: stored images (:class:`hermes_agent.images.ImageRef`) that come
        with the message; a model that does not take images is never sent them
        (:class:`hermes_agent.images.ImageError` says so before anything is stored).

        ``resume``: the message may already be the last user turn of the
        history, from a process that was stopped while answering it (the
        gateway after a crash); then that turn is finished rather than the
        message added a second time.

        ``on_answer``: called with the final answer just before it is stored,
        so a caller can have its own record of it stored in the same write
        (:meth:`StateDB.set_inbound_status` with ``with_next_write``). Not
        called when ``resume`` finds the turn already answered.
        """
        resumed = self._resumable(text) if resume else False
        if isinstance(resumed, TurnResult):
            return resumed
        self._repair_unanswered_calls()
        # Set by tools that read web pages or files; a sub-agent inherits its parent's.
        self.context.state["untrusted_read"] = self.inherited_untrusted
        # A denial binds the turn it was given in (safety/denials.py); a new message is free.
        from hermes_agent.safety import denials

        denials.new_turn(self.context.state, self.context.depth)
        checkpoints.new_turn(self.context.state, text)  # The turn's first change takes one.
        if not self.inherited_untrusted:
            self.context.state.pop("untrusted_sources", None)
        if not resumed:
            self._append(self._user_message(text, images))
        if self.tool_source is not None:
            await self.tool_source.prepare()  # The first turn waits (briefly) for MCP servers.
        self._answering, self._fallback_next = self.provider, 0  # Each turn: the primary.
        turn_usage = Usage()
        turn_cost: float | None = 0.0
        partial: list[str] = []
        try:
            for call_number in range(1, self.max_turns + 1):
                await self._maybe_compress()
                partial.clear()
                completion = await self._call_model(partial)
                turn_usage.add(completion.usage)
                cost = self._cost(completion)
                turn_cost = None if cost is None or turn_cost is None else turn_cost + cost
                if not completion.tool_calls and on_answer is not None:
                    on_answer(completion.text)
                self._append(
                    completion.as_message(),
                    usage=self._usage_row(completion, cost),
                    answered_by=(self._answering.name, self._answering.model),
                )
                partial.clear()
                if not completion.tool_calls:
                    return TurnResult(completion.text, "done", call_number, turn_usage, turn_cost)
                await self._run_tools(completion.tool_calls)
            stop = STOPPED_TEMPLATE.format(n=self.max_turns)
            if on_answer is not None:
                on_answer(stop)
            self._append({"role": "assistant", "content": stop})
            self.events.notice(stop)
            return TurnResult(stop, "max_turns", self.max_turns, turn_usage, turn_cost)
        except asyncio.CancelledError:
            # Keep what the user already saw, and leave a history the API accepts.
            if partial:
                self._append(
                    {
                        "role": "assistant",
                        "content": "".join(partial) + INTERRUPTED_MARK,
                    }
                )
            self._repair_unanswered_calls()
            raise
        finally:
            self._hold_denials()

    def _hold_denials(self) -> None:
        """At the end of a turn, put back what a denial protects and something changed since
        its last tool call: a background process started in the turn may write after it."""
        from hermes_agent.safety import denials

        if self.context.depth == 0 and denials.active(self.context.state):
            for line in denials.undo_changes(self.context.state):
                self.events.notice(f"denied earlier in this turn: {line}")

    def _user_message(self, text: str, refs: Sequence[Any]) -> Message:
        message: Message = {"role": "user", "content": text}
        if not refs:
            return message
        from hermes_agent import images

        if not images.vision_supported(self.config, self.provider.model):
            raise images.ImageError(images.no_vision_message(self.provider.model))
        return images.attach(message, list(refs))

    def _for_model(self, provider: Provider) -> list[Message]:
        """The history as ``provider`` gets it: without images for a model that has no eyes.

        The history may hold images from an earlier model (or a fallback may be
        another model); each becomes a note instead of a provider's 400.
        """
        if not any("images" in m for m in self.history):
            return self.history
        from hermes_agent import images

        if images.vision_supported(self.config, provider.model):
            return self.history
        return [images.without_images(m) if "images" in m else m for m in self.history]

    async def _call_model(self, partial: list[str]) -> Completion:
        def on_text(delta: str) -> None:
            partial.append(delta)
            self.events.text(delta)

        def on_retry(error: ProviderError, delay: float, attempt: int) -> None:
            partial.clear()
            self.events.retrying(error, delay, attempt)

        while True:
            provider = self._answering
            try:
                completion = await complete_with_retries(
                    lambda provider=provider: provider.complete(  # type: ignore[misc]
                        system=self.system,
                        messages=self._for_model(provider),
                        tools=self.tool_specs(),
                        on_text=on_text,
                        on_reasoning=self.events.thought,
                    ),
                    on_retry=on_retry,
                )
                break
            except ProviderError as exc:
                await self._fall_back(exc)
                partial.clear()
        self._last_prompt_tokens = completion.usage.prompt_tokens
        self._chars_since_last_call = 0
        return completion

    async def _fall_back(self, error: ProviderError) -> None:
        """Go on with the next fallback provider after ``error``, or raise it.

        An error another provider would not cure (authentication, a bad request)
        is raised as it is; so is the last provider's error when none is left.
        """
        from hermes_agent.providers import fallback

        if (
            self.fallbacks is None
            or self._fallback_next >= len(self.fallbacks)
            or not fallback.worth_falling_back(error)
        ):
            raise error
        failed = self._answering
        try:
            self._answering = await self.fallbacks.client(self._fallback_next)
        except AuthError as exc:  # Its key is not set: said, with why it was needed.
            raise AuthError(f"{fallback.label(failed)} failed ({error}), and {exc}") from None
        self._fallback_next += 1
        self.events.fallback(error, fallback.Switch(failed, error, self._answering))

    def _cost(self, completion: Completion) -> float | None:
        """This call's cost (the provider's figure, else list price), added to the session's."""
        self.usage.add(completion.usage)
        cost = completion.cost_usd
        if cost is None:
            cost = models.estimate_cost(self._answering.model, completion.usage)
        if cost is None:
            self.cost_usd = None  # Unknown once, unknown for the session: never a guess.
        elif self.cost_usd is not None:
            self.cost_usd += cost
        return cost

    @staticmethod
    def _usage_row(completion: Completion, cost: float | None) -> dict[str, float]:
        usage = completion.usage
        return {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "cost_usd": cost or 0.0,
        }

    async def _run_tools(self, calls: list[ToolCall]) -> None:
        parallel = len(calls) > 1 and all(
            self.tools[c.name].parallel_safe for c in calls if c.name in self.tools
        )
        if parallel:
            results = await asyncio.gather(*(self._run_tool(c) for c in calls))
            for result in results:
                self._append(result.as_message())
        else:
            for call in calls:
                self._append((await self._run_tool(call)).as_message())

    async def _run_tool(self, call: ToolCall) -> ToolResult:
        self.events.tool_started(call)
        started = time.monotonic()
        result = await dispatch(call, self.tools, self.context)
        self.events.tool_finished(result, time.monotonic() - started)
        return result

    # --- delegation ----------------------------------------------------------------

    async def delegate(self, task: str, toolsets: Sequence[str]) -> str:
        """Run ``task`` in a sub-agent (its own session, linked to this one)."""
        from hermes_agent.tools.registry import ToolError

        depth = self.context.depth + 1
        max_depth = int(self.config.get("delegate.max_depth"))
        if depth > max_depth:
            raise ToolError(f"delegation is limited to {max_depth} levels (delegate.max_depth)")
        wanted = set(toolsets)
        unknown = wanted - {t.toolset for t in self.tools.values()}
        if unknown:
            raise ToolError(f"toolsets not available to you: {', '.join(sorted(unknown))}")
        tools = [
            t
            for t in self.tools.values()
            if (not wanted or t.toolset in wanted) and (t.name != "delegate" or depth < max_depth)
        ]
        session = self.db.get_session(self.session_id)
        child_id = self.db.create_session(
            source=session.source if session else "delegate",
            model=self.provider.model,
            cwd=str(self.cwd),
            title=f"delegated: {task[:50]}",
            parent_id=self.session_id,
            parent_kind="delegation",
        )
        child = Agent(
            provider=self.provider,
            tools=tools,
            config=self.config,
            db=self.db,
            session_id=child_id,
            cwd=self.cwd,
            events=_ChildEvents(self.events),
            depth=depth,
            fallbacks=self.fallbacks,
        )
        child.inherited_untrusted = bool(self.context.state.get("untrusted_read"))
        if "untrusted_sources" in self.context.state:
            child.context.state["untrusted_sources"] = list(self.context.state["untrusted_sources"])
        from hermes_agent.safety import denials

        denials.inherit(self.context.state, child.context.state)
        try:
            result = await child.run(task)
        finally:
            await child.aclose(close_provider=False)  # The provider is the parent's.
        self.usage.add(result.usage)
        return f"[sub-agent session {child_id}]\n{result.text}"

    # --- compression ---------------------------------------------------------------

    def context_window(self) -> int:
        return models.context_window(self.provider.model, self.config.get("model.context_length"))

    async def _maybe_compress(self) -> None:
        if not self.config.get("compression.enabled"):
            return
        limit = float(self.config.get("compression.threshold")) * self.context_window()
        if self.estimated_prompt_tokens() > limit:
            await self.compress()

    async def compress(self) -> bool:
        """Summarise the middle of the conversation; keep the session id and the history
        untouched if the summary fails. Returns whether the history changed."""
        parts = compress.split(self.history, keep_tokens=self.context_window() // 4)
        if parts is None:
            self.events.notice("nothing to compress yet")
            return False
        head, middle, tail = parts
        provider = self._summary_provider() if self._summary_provider else self.provider
        try:
            summary = await compress.summarize(provider, middle)
        except ProviderError as exc:
            self.events.notice(f"context compression failed ({exc}); keeping the full history")
            return False
        finally:
            if provider is not self.provider:
                await provider.aclose()
        new_history = [*head, compress.summary_message(summary, len(middle)), *tail]
        self.db.replace_history(self.session_id, new_history)
        self.history = new_history
        self._last_prompt_tokens = 0
        self._chars_since_last_call = sum(len(str(m.get("content") or "")) for m in new_history)
        self.events.notice(
            f"compressed {len(middle)} earlier messages into a summary to stay within the "
            f"{self.context_window():,}-token context"
        )
        return True
