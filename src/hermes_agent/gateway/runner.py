"""The gateway process: pid file, logs, signals, the inbound queue and session routing.

Flow of one message: an adapter calls :meth:`Gateway.submit`, which stores it
in state.db (``gateway_inbound``, status ``pending``) and only then returns,
so the adapter acknowledges the platform after the message is safe. A
repeated platform message id is not stored twice and not answered twice.
Each conversation (platform, chat, thread) has its own worker task that
answers its messages in order, through the same :class:`Agent` as ``hermes
chat``, on a session of source ``gateway:<platform>``; workers of different
conversations run side by side, at most ``gateway.max_concurrent_sessions``
at a time. The reply is stored with the message (``done``) and handed to the
adapter's :meth:`~hermes_agent.gateway.platforms.Platform.send`.

SIGTERM (or SIGINT) stops taking new messages, lets the running answers
finish for up to ``gateway.shutdown_timeout`` seconds, then cancels the rest;
the next start finishes them (as it does for everything a crash left
``pending`` or ``processing``: a ``processing`` turn is continued, not
started over, so the message is not added to the conversation twice), and
sends replies that were answered but not (fully) delivered, from the first
chunk the platform had not accepted.

Before each chunk is handed to a platform, state.db records that it is on its
way, with the platform's :meth:`~Platform.delivery_mark`. A crash between the
platform accepting the chunk and state.db recording it leaves that mark
behind; the next start asks the platform (:meth:`~Platform.was_sent`)
whether the chunk arrived before sending it again. Telegram can tell (see
its adapter), so there a reply arrives once; on platforms that cannot,
delivery is at least once: the chunk is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.agent.loop import Events
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.access import PAIRING_MESSAGE, Access
from hermes_agent.gateway.chat_commands import NEW_SESSION_REPLY  # noqa: F401  (read here too)
from hermes_agent.gateway.platforms import PLATFORMS, Outbound, Platform
from hermes_agent.gateway.platforms.base import GatewayClosedError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.base import Provider, ProviderError, ToolCall
    from hermes_agent.providers.settings import ProviderSettings
    from hermes_agent.state.db import InboundMessage, StateDB
    from hermes_agent.tools.registry import Tool

log = logging.getLogger("hermes_agent.gateway")

#: How long ``stop``/``--replace`` wait for a gateway to exit, beyond its shutdown_timeout.
STOP_GRACE_SECONDS = 15.0
#: Seconds between typing indicators while an answer is written.
TYPING_INTERVAL = 4.0

RouteKey = tuple[str, str, str]

#: Starts the line that tells a chat user another provider took over (as in `hermes chat`).
FALLBACK_MARK = "↪"

#: A message that is only one of these starts a new conversation (session) for its chat
#: or thread; ``/new@SomeBot`` (Telegram's form in groups) counts too.
NEW_SESSION_COMMANDS = frozenset({"/new", "/reset"})


class GatewayEvents(Events):
    """The loop's events for one inbound message: text goes to its platform.

    ``ask`` returns None: nobody is there to approve, so dangerous commands are
    denied and tools that need an answer play safe. Streamed text is redacted
    as it goes, holding back what could still turn out to be a secret until
    the next tool call or the end of the answer (:meth:`flush`).

    A switch to a fallback provider is logged in full and kept, in its brief
    form, for the reply (:meth:`with_fallbacks`): the chat user learns that
    another model answered, not the endpoint or the provider's error text.
    """

    def __init__(self, platform: Platform | None, inbound: InboundMessage) -> None:
        from hermes_agent.redact import StreamRedactor

        self.platform = platform
        self.inbound = inbound
        self._stream = StreamRedactor()
        #: One line per provider switch in this turn, for the chat user.
        self.fallbacks: list[str] = []

    def text(self, delta: str) -> None:
        if self.platform is not None:
            safe = self._stream.feed(delta)
            if safe:
                self.platform.stream(self.inbound, safe)

    def flush(self) -> None:
        """Send the rest of the streamed text (the model stopped writing)."""
        rest = self._stream.finish()
        self._stream.reset()
        if rest and self.platform is not None:
            self.platform.stream(self.inbound, rest)

    def tool_started(self, call: ToolCall) -> None:
        self.flush()

    def retrying(self, error: ProviderError, delay: float, attempt: int) -> None:
        self._stream.reset()  # The partial answer is void.

    def notice(self, message: str) -> None:
        log.info("inbound %d: %s", self.inbound.id, message)

    def fallback(self, error: ProviderError, message: str) -> None:
        from hermes_agent.providers.fallback import Switch, reason

        self._stream.reset()  # The failed provider's partial answer is void.
        log.warning("inbound %d: %s", self.inbound.id, message)
        brief = message.brief if isinstance(message, Switch) else f"fallback ({reason(error)})"
        self.fallbacks.append(f"{FALLBACK_MARK} {brief}")

    def with_fallbacks(self, text: str) -> str:
        """``text`` after the line(s) saying which provider took over, if one did this turn."""
        return "\n".join([*self.fallbacks, text]) if self.fallbacks else text

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        log.info("inbound %d: nobody can answer %r; refused", self.inbound.id, question)
        return None


class Gateway:
    """The queue, the router and the workers; adapters talk to it through :meth:`submit`."""

    def __init__(
        self,
        *,
        config: Config,
        settings: ProviderSettings,
        tools: list[Tool],
        cwd: Path,
        db: StateDB,
    ) -> None:
        self.config = config
        self.settings = settings
        self.tools = tools
        self.cwd = cwd
        self.db = db
        self.max_concurrent = int(config.get("gateway.max_concurrent_sessions"))
        self.shutdown_timeout = float(config.get("gateway.shutdown_timeout"))
        self.send_retries = int(config.get("gateway.send_retries"))
        self.reset = ResetPolicy.from_config(config)
        self.platforms: dict[str, Platform] = {}
        #: new -> starting (messages are stored, answered once started) -> running -> stopping.
        self._phase = "new"
        self.access = Access(config, db)
        self._semaphore: asyncio.Semaphore | None = None
        self._queues: dict[RouteKey, deque[InboundMessage]] = {}
        self._workers: dict[RouteKey, asyncio.Task[None]] = {}
        #: The answer each conversation is writing (its inbound id and task), for /stop.
        self._running: dict[RouteKey, tuple[int, asyncio.Task[None]]] = {}
        #: Inbound ids whose answer /stop cancelled, and those in the agent's hands.
        self._stopped: set[int] = set()
        self._thinking: set[int] = set()
        #: /background runs going, per chat (each chat may have a few).
        self._background_runs: dict[RouteKey, int] = {}
        #: The fallback_providers clients, shared like the model client.
        self._fallbacks: Any = None
        self._background: set[asyncio.Task[object]] = set()
        self._stopping: asyncio.Event | None = None
        #: One model client for every conversation, built on the first message.
        self._provider: Provider | None = None
        self._provider_lock = asyncio.Lock()
        for name in enabled_platforms(config):
            self.platforms[name] = PLATFORMS[name]()(self, config)
        from hermes_agent.cron.scheduler import Scheduler

        self.scheduler = Scheduler(self)  # Scheduled jobs (cron.enabled); started by serve().

    # --- what adapters call ---------------------------------------------------------

    def submit(
        self,
        *,
        platform: str,
        chat_id: str,
        message_id: str,
        text: str,
        thread_id: str = "",
        user_id: str = "",
        user_name: str = "",
        fingerprint: str | None = None,
        images: Sequence[Any] = (),
    ) -> tuple[InboundMessage | None, bool]:
        """Store a message (before the platform is acknowledged) and queue it.

        Returns the stored row and whether it is new; a message id seen before
        is neither stored nor answered again (the row keeps the ``fingerprint``
        of its first arrival: the platform compares it with the repeat's). A sender the platform's
        allow-lists do not let in gets ``(None, False)``: nothing is stored,
        and they are sent a pairing code instead (once per code).
        """
        if self._phase not in ("starting", "running"):
            raise GatewayClosedError("the gateway is shutting down")
        adapter = self.platforms.get(platform)
        if (adapter is None or adapter.access_control) and not self.access.allowed(
            platform, user_id, chat_id
        ):
            self._refuse(adapter, platform, chat_id, thread_id, user_id, user_name, message_id)
            return None, False
        row, new = self.db.add_inbound(
            platform=platform,
            chat_id=chat_id,
            thread_id=thread_id,
            user_id=user_id,
            message_id=message_id,
            text=text,
            # A platform told the message arrived will not send it again: on disk first.
            durable=adapter is None or not adapter.answers_in_request,
            fingerprint=fingerprint,
            # Already on disk (hermes_agent.images stores before it returns).
            images=[ref.to_dict() for ref in images],
        )
        if new:
            # At debug: state.db records every arrival; the info line is the answer's.
            log.debug("inbound %d from %s chat %s", row.id, platform, chat_id)
            if self._phase == "running" and not self._stop_command(row):
                self._enqueue(row)
            # While the platforms start it stays pending: the resume at the end of
            # the start picks it up, in order with what an earlier run left.
        else:
            log.info("inbound %s from %s is a repeat of %d", message_id, platform, row.id)
        return row, new

    def _refuse(
        self,
        adapter: Platform | None,
        platform: str,
        chat_id: str,
        thread_id: str,
        user_id: str,
        user_name: str,
        message_id: str,
    ) -> None:
        pairing = self.access.pairing_code(platform, user_id, user_name, chat_id)
        if pairing is None:
            log.info("%s: message from user %r refused (not allowed)", platform, user_id)
            return
        code, created = pairing
        if not created:
            log.info("%s: user %r is waiting for pairing approval", platform, user_id)
            return
        log.info(
            "%s: user %r (%s) is not allowed; sent pairing code %s "
            "(approve with `hermes gateway pair approve %s`)",
            platform,
            user_id,
            user_name or "no name",
            code,
            code,
        )
        if adapter is not None:
            message = Outbound(
                platform=platform,
                chat_id=chat_id,
                thread_id=thread_id,
                reply_to=message_id,
                text=PAIRING_MESSAGE.format(code=code),
            )
            self._spawn(self._send_untracked(adapter, message))

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver_text(
        self, platform: str, chat_id: str, thread_id: str, text: str, reply_to: str = ""
    ) -> bool:
        """Send ``text`` to a chat (cron results, webhooks): split, retried, not tracked."""
        adapter = self.platforms.get(platform)
        if adapter is None:
            log.warning("cannot deliver to %s:%s: platform not enabled", platform, chat_id)
            return False
        message = Outbound(
            platform=platform, chat_id=chat_id, thread_id=thread_id, reply_to=reply_to, text=text
        )
        return await self._send_untracked(adapter, message)

    async def _send_untracked(self, adapter: Platform, message: Outbound) -> bool:
        from hermes_agent.gateway.delivery import deliver

        try:
            if await adapter.send(message):
                return True

            def note(_count: int, sent_id: str | None) -> None:
                if sent_id:  # Where the chat's messages got to, for delivery marks.
                    self.db.note_sent(adapter.name, message.chat_id, sent_id)

            delivered, _ = await deliver(adapter, message, retries=self.send_retries, on_chunk=note)
            return delivered
        except Exception:
            log.exception("sending to %s chat %s failed", adapter.name, message.chat_id)
            return False

    # --- queue and workers ----------------------------------------------------------

    def _enqueue(self, row: InboundMessage) -> None:
        key = (row.platform, row.chat_id, row.thread_id)
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(row)
            return
        self._queues[key] = deque([row])
        self._workers[key] = asyncio.create_task(self._work(key), name=f"chat:{key}")

    async def _work(self, key: RouteKey) -> None:
        """Answer one conversation's messages in order; ends when its queue is empty."""
        queue = self._queues[key]
        assert self._semaphore is not None
        try:
            while queue:
                row = queue[0]
                async with self._semaphore:
                    await self._answer_stoppable(key, row)
                queue.popleft()
        finally:
            del self._queues[key]
            del self._workers[key]

    async def _answer_stoppable(self, key: RouteKey, row: InboundMessage) -> None:
        """Answer ``row`` in a task of its own that /stop in the same chat can cancel."""
        task = asyncio.ensure_future(self._answer(row))
        self._running[key] = (row.id, task)
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if row.id not in self._stopped or (current is not None and current.cancelling()):
                raise  # Shutdown: the next start finishes the answer.
            from hermes_agent.gateway.chat_commands import STOPPED

            log.info("inbound %d: answer stopped by /stop", row.id)
            platform = self.platforms.get(row.platform)
            delivery = "sent" if platform is not None and platform.answers_in_request else None
            self.db.set_inbound_status(row.id, "done", reply=STOPPED, delivery=delivery)
            await self._reply(row, platform, STOPPED)
        finally:
            self._running.pop(key, None)
            self._stopped.discard(row.id)

    def _stop_command(self, row: InboundMessage) -> bool:
        """If ``row`` is /stop: cancel the answer its chat is writing and reply; else False.

        Handled as it arrives, not in the chat's queue, where it would wait for
        the very answer it is meant to stop.
        """
        from hermes_agent.gateway import chat_commands

        if not chat_commands.is_stop(row.text) or not chat_commands.takes_commands(self, row):
            return False
        key = (row.platform, row.chat_id, row.thread_id)
        running = self._running.get(key)
        if running is not None and running[0] in self._thinking:
            self._stopped.add(running[0])
            running[1].cancel()
            text = "Stopping the answer."
        else:
            text = chat_commands.NOTHING_TO_STOP
        platform = self.platforms.get(row.platform)
        delivery = "sent" if platform is not None and platform.answers_in_request else None
        self.db.set_inbound_status(row.id, "done", reply=text, delivery=delivery)
        self._spawn(self._reply(row, platform, text))
        return True

    def new_session(self, row: InboundMessage) -> str:
        """A new conversation for ``row``'s chat (/new), routed there from now on."""
        return self._new_session(row)

    def start_background(self, row: InboundMessage, prompt: str) -> str:
        """Run ``prompt`` in a session of its own; post the answer to the chat when done."""
        session_id = self.db.create_session(
            source=f"gateway:{row.platform}",
            model=self.settings.model,
            cwd=str(self.cwd),
            title=f"background: {prompt[:50]}",
        )
        key = (row.platform, row.chat_id, row.thread_id)
        self._background_runs[key] = self._background_runs.get(key, 0) + 1

        async def run() -> None:
            try:
                await self._background_turn(row, session_id, prompt)
            finally:
                left = self._background_runs.pop(key, 1) - 1
                if left:
                    self._background_runs[key] = left

        self._spawn(run())
        return session_id

    def background_runs(self, row: InboundMessage | None = None) -> int:
        """How many /background runs ``row``'s chat has going (no ``row``: all chats)."""
        if row is None:
            return sum(self._background_runs.values())
        return self._background_runs.get((row.platform, row.chat_id, row.thread_id), 0)

    async def _background_turn(self, row: InboundMessage, session_id: str, prompt: str) -> None:
        from hermes_agent.agent.factory import build_agent

        assert self._semaphore is not None
        platform = self.platforms.get(row.platform)
        events = GatewayEvents(None, row)
        try:
            async with self._semaphore:
                agent = build_agent(
                    config=self.config,
                    settings=self.settings,
                    tools=self.tools,
                    db=self.db,
                    session_id=session_id,
                    cwd=self.cwd,
                    events=events,
                    provider=await self.model_client(),
                    fallbacks=await self.fallback_chain(),
                )
                if platform is not None and platform.untrusted_input:
                    agent.inherited_untrusted = True
                try:
                    result = await agent.run(prompt)
                finally:
                    await agent.aclose(close_provider=False)
            text = f"Background task done (session {session_id}):\n" + events.with_fallbacks(
                result.text
            )
        except HermesError as exc:
            failed = f"Background task failed (session {session_id}): {exc}"
            text = "\n".join([failed, *events.fallbacks])
        except Exception as exc:  # A bug must not take the gateway down.
            log.exception("background session %s failed", session_id)
            text = f"Background task failed (session {session_id}): internal error: {exc}"
        from hermes_agent.redact import redact

        await self.deliver_text(row.platform, row.chat_id, row.thread_id, redact(text))

    def _session_for(self, row: InboundMessage) -> str:
        """The session of this conversation: created on its first message, and anew when
        the reset policy says it has gone stale (``gateway.session_reset``)."""
        if row.status == "processing" and row.session_id:
            return row.session_id  # A turn resumed after a restart: its message is there.
        found = self.db.route_and_activity(row.platform, row.chat_id, row.thread_id)
        if found is None:  # A route is deleted with its session (foreign key).
            return self._new_session(row)
        session_id, last_active = found
        platform = self.platforms.get(row.platform)
        if platform is not None and platform.answers_in_request:
            return session_id  # HTTP API callers name their conversation themselves.
        why = self.reset.stale(last_active, row.created_at)
        if why:
            new = self._new_session(row)
            log.info(
                "%s chat %s: new conversation (%s), session %s", row.platform, row.chat_id, why, new
            )
            return new
        return session_id

    def _new_session(self, row: InboundMessage) -> str:
        """Start a session for this conversation and route it there from now on."""
        session_id = self.db.create_session(
            source=f"gateway:{row.platform}", model=self.settings.model, cwd=str(self.cwd)
        )
        self.db.set_route(row.platform, row.chat_id, row.thread_id, session_id)
        return session_id

    async def _answer(self, row: InboundMessage) -> None:
        from hermes_agent.agent.factory import build_agent

        platform = self.platforms.get(row.platform)
        if row.status in ("done", "failed"):  # Answered before; the reply is still owed.
            await self._deliver(row, platform, _reply_of(row))
            return
        # The reply to a request waiting in this process (the HTTP API) is recorded as sent
        # with "done": after a crash its client is gone. A chat's is tracked chunk by chunk.
        delivery = "sent" if platform is not None and platform.answers_in_request else None
        from hermes_agent.gateway import chat_commands

        prompt = row.text
        outcome = await chat_commands.handle(self, row)
        if outcome is not None and outcome.reply is not None:
            self.db.set_inbound_status(row.id, "done", reply=outcome.reply, delivery=delivery)
            await self._reply(row, platform, outcome.reply)
            return
        if outcome is not None and outcome.prompt is not None:
            prompt = outcome.prompt  # /retry, /queue: the model gets this text.
        session_id = self._session_for(row)
        # Stored with the turn's first write, its user message: never one without the other.
        self.db.set_inbound_status(
            row.id, "processing", session_id=session_id, with_next_write=True
        )
        started = time.monotonic()
        events = GatewayEvents(platform, row)
        try:
            agent = build_agent(
                config=self.config,
                settings=self.settings,
                tools=self.tools,
                db=self.db,
                session_id=session_id,
                cwd=self.cwd,
                events=events,
                provider=await self.model_client(),
                fallbacks=await self.fallback_chain(),
            )
        except HermesError as exc:
            await self._fail(row, platform, str(exc))
            return
        if platform is not None and platform.untrusted_input:
            agent.inherited_untrusted = True
        typing = (
            asyncio.create_task(self._keep_typing(platform, row))
            if platform is not None and type(platform).typing is not Platform.typing
            else None
        )
        recorded = False
        # A program waiting on the HTTP API reads the answer alone; a chat is also told
        # when a fallback provider took over (stored with the reply: a resend says it too).
        says_fallbacks = platform is None or not platform.answers_in_request

        def told(text: str) -> str:
            return events.with_fallbacks(text) if says_fallbacks else text

        def on_answer(text: str) -> None:
            # "done" is stored in the same write as the answer (one commit fewer).
            nonlocal recorded
            recorded = True
            self.db.set_inbound_status(
                row.id,
                "done",
                reply=told(text),
                delivery=delivery,
                with_next_write=True,
            )

        from hermes_agent.images import for_turn

        prompt, pictures = for_turn(self.config, agent.provider.model, prompt, row.images)
        self._thinking.add(row.id)
        try:
            result = await agent.run(
                prompt, resume=row.status == "processing", on_answer=on_answer, images=pictures
            )
            events.flush()
        except asyncio.CancelledError:
            # Stopped before the answer: the next start finishes the turn (it stays
            # "processing", which tells the agent the message is in the history already).
            log.info("inbound %d interrupted by shutdown; answered after the next start", row.id)
            raise
        except HermesError as exc:
            # Every provider failed: the switches made on the way are said too.
            fallbacks = events.fallbacks if says_fallbacks else []
            await self._fail(row, platform, "\n".join([str(exc), *fallbacks]))
            return
        except Exception as exc:  # A bug must not take the whole gateway down.
            log.exception("inbound %d: unexpected error", row.id)
            await self._fail(row, platform, f"internal error: {exc}")
            return
        finally:
            self._thinking.discard(row.id)
            if typing is not None:
                typing.cancel()
            with contextlib.suppress(Exception):
                await agent.aclose(close_provider=False)
        log.info(
            "inbound %d answered in %.2f s (%d model calls, session %s)",
            row.id,
            time.monotonic() - started,
            result.model_calls,
            session_id,
        )
        if not recorded:  # Answered before a restart: the turn was not run again.
            self.db.set_inbound_status(row.id, "done", reply=told(result.text), delivery=delivery)
        await self._reply(
            row, platform, told(result.text), result.usage.input_tokens, result.usage.output_tokens
        )

    async def _reply(
        self,
        row: InboundMessage,
        platform: Platform | None,
        text: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """Send the answer to ``row`` (recorded as done): to a waiting request, or a chat."""
        reply = Outbound(
            platform=row.platform,
            chat_id=row.chat_id,
            thread_id=row.thread_id,
            reply_to=row.message_id,
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        if platform is not None and platform.answers_in_request:
            await platform.send(reply)  # Its "done" write marked it sent.
            return
        await self._deliver(row, platform, reply)

    async def _keep_typing(self, platform: Platform | None, row: InboundMessage) -> None:
        """Show the typing indicator while the answer is written (platforms drop it after ~5 s)."""
        if platform is None:
            return
        while True:
            try:
                await platform.typing(row.chat_id, row.thread_id)
            except Exception as exc:  # Cosmetic: never let it disturb the answer.
                log.debug("%s: typing indicator failed: %s", platform.name, exc)
            await asyncio.sleep(TYPING_INTERVAL)

    async def _fail(self, row: InboundMessage, platform: Platform | None, reason: str) -> None:
        log.warning("inbound %d failed: %s", row.id, reason)
        self.db.set_inbound_status(row.id, "failed", error=reason)
        await self._deliver(row, platform, _failure_reply(row, reason))

    async def _deliver(
        self, row: InboundMessage, platform: Platform | None, message: Outbound
    ) -> None:
        """Hand the reply to the platform, recording progress so a restart resumes it."""
        from hermes_agent.gateway.delivery import deliver

        if platform is None:
            log.warning(
                "reply to %s message %s kept in state.db: platform not enabled",
                message.platform,
                message.reply_to,
            )
            return
        try:
            if await platform.send(message):
                self.db.set_delivery(row.id, "sent")
                return
            if row.delivery_mark:  # Left unknown at start: ask once more, with retries.
                row = await self._settle(row, attempts=1 + self.send_retries)
            delivered, _reason = await deliver(
                platform,
                message,
                retries=self.send_retries,
                skip=row.delivered,
                on_chunk=lambda n, sent_id: self.db.set_delivery(
                    row.id, "sending", n, sent_id=sent_id
                ),
                on_mark=lambda mark: self.db.mark_sending(row.id, mark),
            )
        except asyncio.CancelledError:
            raise  # Stopped while sending: the next start sends what is left.
        except Exception:
            log.exception(
                "sending the reply to %s message %s failed", platform.name, message.reply_to
            )
            delivered = False
        self.db.set_delivery(row.id, "sent" if delivered else "failed")

    async def _settle(self, row: InboundMessage, *, attempts: int = 1) -> InboundMessage:
        """A reply a dead gateway was sending: find out whether its last chunk arrived.

        At start, before anything else is sent (a chunk sent meanwhile could be
        taken for it), one attempt; if the platform could not say (it is down),
        the mark stays and :meth:`_deliver` asks again, ``attempts`` times,
        before sending the chunk again.
        """
        from hermes_agent.gateway.delivery import settle
        from hermes_agent.gateway.platforms import Backoff

        platform = self.platforms.get(row.platform)
        if not row.delivery_mark or platform is None:
            return row
        backoff = Backoff(initial=1.0, maximum=30.0)
        arrived = await settle(platform, row.chat_id, row.delivery_mark)
        for _ in range(attempts - 1):
            if arrived is not None:
                break
            await asyncio.sleep(backoff.next_delay())
            arrived = await settle(platform, row.chat_id, row.delivery_mark)
        if arrived:
            log.info(
                "%s: chunk %d of the reply to %s had arrived before the restart; not sent again",
                platform.name,
                row.delivered + 1,
                row.message_id,
            )
            self.db.set_delivery(row.id, "sending", row.delivered + 1)
        elif arrived is False or attempts > 1:
            self.db.set_delivery(row.id, "sending")  # Not there (or no answer): sent again.
        else:
            return row  # Unknown for now: asked again before the chunk is sent.
        return self.db.get_inbound(row.id) or row

    # --- lifetime -------------------------------------------------------------------

    async def model_client(self) -> Provider:
        """The one model client every conversation (and cron run) shares.

        Built on first use, not at start: its SDK is the largest import of the
        gateway (~24 MiB of the idle RSS) and an idle gateway does not need it.
        The import runs in a thread, so connections keep their heartbeats
        while it loads.
        """
        async with self._provider_lock:
            if self._provider is None:
                from hermes_agent.providers import settings as provider_settings

                self._provider = await asyncio.to_thread(
                    lambda: provider_settings.build(self.settings, long_lived=True)
                )
        return self._provider

    async def fallback_chain(self) -> Any:
        """The ``fallback_providers`` chain every conversation shares (None: none set).

        Its clients are built once, when a conversation first needs one.
        """
        async with self._provider_lock:
            if self._fallbacks is None:
                from hermes_agent.providers import fallback

                self._fallbacks = fallback.chain(self.config, self.settings, long_lived=True) or ()
        return self._fallbacks or None

    @property
    def accepting(self) -> bool:
        """Whether messages are being answered (started and not stopping)."""
        return self._phase == "running"

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _log_safety(self) -> None:
        """Once the platforms are up: what confines commands, and documents left out."""
        from hermes_agent.agent import trust
        from hermes_agent.agent.factory import workspace
        from hermes_agent.safety import sandbox

        line = sandbox.describe(self.config)
        (log.info if sandbox.active(self.config) else log.warning)("%s", line)
        with contextlib.suppress(Exception):  # No workspace yet: nothing to say.
            for path in trust.untrusted(workspace(self.config)):
                log.warning(
                    "%s is left out of the prompt: new or changed since the user approved it "
                    "(start `hermes chat` in that folder to approve it)",
                    path,
                )

    async def serve(self) -> None:
        """Start the platforms, resume unfinished messages, run until SIGTERM, drain."""
        loop = asyncio.get_running_loop()
        self._semaphore = asyncio.Semaphore(self.max_concurrent)
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        started: list[Platform] = []
        # What `hermes status` reads: this gateway's phase and each platform's connection.
        from hermes_agent.gateway_status import StatusFile

        status = StatusFile()
        try:
            self._phase = "starting"
            status.phase("starting")
            for platform in self.platforms.values():
                platform.report_state = functools.partial(status.platform, platform.name)
                status.platform(platform.name, "starting")
                await platform.start()
                started.append(platform)
                platform.mark_started()
                log.info("platform %s started", platform.name)
            self._log_safety()
            # Replies owed from before (answered, not delivered), then unanswered messages
            # (including those stored while the platforms started): both go through the
            # conversation's queue, so its order is kept. No await from reading the
            # unfinished ones to "running": nothing can be stored in between and missed.
            owed = [r for r in self.db.undelivered_inbound() if r.platform in self.platforms]
            owed = [await self._settle(row) for row in owed]
            resumed = self.db.unfinished_inbound()
            for row in sorted(owed + resumed, key=lambda r: r.id):
                self._enqueue(row)
            if owed:
                log.info("delivering %d replies left undelivered", len(owed))
            self._phase = "running"
            status.phase("running")
            if resumed:
                log.info("resuming %d unanswered messages", len(resumed))
            await self.scheduler.start()
            log.info("gateway running (pid %d)", os.getpid())
            await self._stopping.wait()
            log.info("stopping: finishing %d running conversations", len(self._workers))
            self._phase = "stopping"
            await asyncio.gather(self._drain(), self.scheduler.stop(self.shutdown_timeout))
        finally:
            self._phase = "stopping"
            status.phase("stopping")
            await self.scheduler.stop(0)
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            for platform in reversed(started):
                try:
                    await platform.stop()
                except Exception:
                    log.exception("stopping platform %s failed", platform.name)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self._provider is not None:
                with contextlib.suppress(Exception):
                    await self._provider.aclose()
            if self._fallbacks:
                with contextlib.suppress(Exception):
                    await self._fallbacks.aclose()
            status.remove()
        log.info("gateway stopped")

    async def _drain(self) -> None:
        workers = list(self._workers.values())
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=self.shutdown_timeout)
        if pending:
            log.warning("cancelling %d conversations still running", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class ResetPolicy:
    """When a gateway conversation starts over by itself (``gateway.session_reset``)."""

    def __init__(self, mode: str, idle_minutes: float, at_hour: int) -> None:
        self.mode = mode
        self.idle_seconds = idle_minutes * 60
        self.at_hour = at_hour

    @classmethod
    def from_config(cls, config: Config) -> ResetPolicy:
        return cls(
            str(config.get("gateway.session_reset.mode")),
            float(config.get("gateway.session_reset.idle_minutes")),
            int(config.get("gateway.session_reset.at_hour")),
        )

    def stale(self, last_active: float, now: float) -> str:
        """Why a conversation last active at ``last_active`` starts over at ``now`` ("": it
        does not). Times are epoch seconds; the daily hour is the local one."""
        if self.mode in ("idle", "both") and now - last_active >= self.idle_seconds:
            return f"{(now - last_active) / 60:.0f} minutes without a message"
        if self.mode in ("daily", "both") and last_active < self._last_reset_hour(now):
            return f"the daily reset at {self.at_hour:02d}:00"
        return ""

    def _last_reset_hour(self, now: float) -> float:
        """The latest ``at_hour:00`` local time at or before ``now``."""
        local = datetime.datetime.fromtimestamp(now)  # Naive local: timestamp() knows DST.
        boundary = local.replace(hour=self.at_hour, minute=0, second=0, microsecond=0)
        if boundary > local:
            boundary -= datetime.timedelta(days=1)
        return boundary.timestamp()


def is_new_session_command(text: str) -> bool:
    """Whether ``text`` is only a command that starts a new conversation (/new, /reset)."""
    words = text.split()
    return len(words) == 1 and words[0].split("@", 1)[0].lower() in NEW_SESSION_COMMANDS


def _reply_of(row: InboundMessage) -> Outbound:
    """The stored reply of an answered message, to deliver it again."""
    if row.status == "failed":
        return _failure_reply(row, row.error or "unknown error")
    return Outbound(
        platform=row.platform,
        chat_id=row.chat_id,
        thread_id=row.thread_id,
        reply_to=row.message_id,
        text=row.reply or "",
    )


def _failure_reply(row: InboundMessage, reason: str) -> Outbound:
    return Outbound(
        platform=row.platform,
        chat_id=row.chat_id,
        thread_id=row.thread_id,
        reply_to=row.message_id,
        text=f"Sorry, I could not answer: {reason}",
        failed=True,
    )


def enabled_platforms(config: Config) -> list[str]:
    """The names of the platforms switched on in the configuration.

    A name under ``gateway.platforms`` that no adapter has is an error naming
    it (a typo there would otherwise leave the platform silently off).
    """
    section = config.get("gateway.platforms") or {}
    unknown = sorted(name for name in section if name not in PLATFORMS)
    if unknown:
        raise UsageError(
            f"{config.path}: gateway.platforms.{unknown[0]}: unknown platform "
            f"{unknown[0]!r} (known: {', '.join(sorted(PLATFORMS))})"
        )
    return [name for name in PLATFORMS if bool(config.get(f"gateway.platforms.{name}.enabled"))]


# --- the pid file ---------------------------------------------------------------------


def _is_gateway(pid: int) -> bool:
    """Whether ``pid`` is alive and (where /proc tells) a hermes gateway."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Alive, someone else's: do not take its place.
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"gateway" in cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True


def running_pid() -> int | None:
    """The pid of the running gateway of this HERMES_HOME, or None (stale files ignored)."""
    try:
        # errors="replace": a damaged file's bytes are a stale pid, not a crash that keeps
        # every later gateway from starting.
        text = home.gateway_pid_path().read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HermesError(f"cannot read {home.gateway_pid_path()}: {exc.strerror}") from None
    try:
        pid = int(text)
    except ValueError:
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    return pid if _is_gateway(pid) else None


def write_pid_file() -> None:
    from hermes_agent.fsutil import atomic_write

    home.ensure_home()
    atomic_write(home.gateway_pid_path(), f"{os.getpid()}\n")


def remove_pid_file() -> None:
    """Remove the pid file if it is still ours (a --replace successor may own it)."""
    path = home.gateway_pid_path()
    try:
        if path.read_text(encoding="utf-8", errors="replace").strip() != str(os.getpid()):
            return
        path.unlink()
    except (FileNotFoundError, ValueError):
        pass


def stop_wait_seconds(config: Config) -> float:
    """How long to wait for a stopping gateway: its shutdown_timeout and some grace."""
    return float(config.get("gateway.shutdown_timeout")) + STOP_GRACE_SECONDS


def stop_running(pid: int, wait: float) -> bool:
    """SIGTERM ``pid`` and wait for it to exit; True when it did."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (of the test that started it, say) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


# --- logging ------------------------------------------------------------------------


def setup_logging() -> None:
    """INFO and up to logs/gateway.log (0600) and stderr, every line redacted."""
    from hermes_agent.redact import RedactingFormatter

    path = home.gateway_log_path()
    home.ensure_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        file_handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise HermesError(f"cannot write {path}: {exc.strerror}") from None
    stderr_handler = logging.StreamHandler()
    root = logging.getLogger("hermes_agent")
    for handler in (file_handler, stderr_handler):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)


# --- the command --------------------------------------------------------------------


def run(*, replace: bool) -> int:
    """``hermes gateway run``: serve in the foreground until SIGTERM."""
    from hermes_agent.agent.factory import agent_parts
    from hermes_agent.cli.common import load_config
    from hermes_agent.state.db import StateDB

    # httpx imports its command-line client (click, rich, pygments: ~4.6 MiB of idle RSS)
    # whenever those are installed; the gateway never runs it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    config = load_config()
    if not enabled_platforms(config) and not has_cron_jobs(config):
        raise UsageError(
            "no platform is enabled and there are no scheduled jobs: nothing to do; turn a "
            "platform on, e.g. `hermes config set gateway.platforms.api_server.enabled true`, "
            "or add a job with `hermes cron add`"
        )
    settings, tools, cwd = agent_parts(config)
    db = StateDB()
    try:
        # Adapters check their settings (keys...) here, before anything is taken over.
        gateway = Gateway(config=config, settings=settings, tools=tools, cwd=cwd, db=db)
        lock = _take_lock(replace=replace, wait=stop_wait_seconds(config))
        try:
            setup_logging()
            write_pid_file()
            try:
                asyncio.run(gateway.serve())
            finally:
                remove_pid_file()
        finally:
            os.close(lock)
    finally:
        db.close()
    return 0


def has_cron_jobs(config: Config) -> bool:
    """Whether the scheduler alone gives a gateway without platforms something to do."""
    if not config.get("cron.enabled"):
        return False
    from hermes_agent.cron.jobs import JobStore

    return bool(JobStore().signature())


def _take_lock(*, replace: bool, wait: float) -> int:
    """Hold ``gateway.lock`` for this process's life: one gateway per HERMES_HOME.

    The pid file says who runs; the lock is what makes two starts at the same
    moment impossible (the kernel drops it when the holder dies, even by SIGKILL).
    With ``replace`` the holder is asked to stop and its lock taken over.
    """
    import fcntl

    home.ensure_home()
    fd = os.open(home.gateway_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    try:
        pid = running_pid()
        shown = f"pid {pid}" if pid is not None else "pid unknown"
        if not replace:
            raise HermesError(
                f"a gateway is already running ({shown}); stop it with "
                "`hermes gateway stop`, or take over with `hermes gateway run --replace`"
            )
        print(f"hermes: stopping the running gateway ({shown})", flush=True)
        if pid is not None and not stop_running(pid, wait):
            raise HermesError(f"the running gateway ({shown}) did not stop; not replacing it")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HermesError(
                        f"the running gateway ({shown}) did not release "
                        f"{home.gateway_lock_path()}; not replacing it"
                    ) from None
                time.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise
