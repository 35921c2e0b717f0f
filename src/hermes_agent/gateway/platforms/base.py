"""The base of every platform adapter: :class:`Platform`, :class:`Outbound`, retries.

Each adapter turns platform events into inbound messages and sends replies.
An adapter never calls the agent. It hands what arrives to
:meth:`hermes_agent.gateway.runner.Gateway.submit` (which stores the message
in state.db before returning, so the adapter acknowledges only what is safe)
and gets the answer back one chunk at a time through :meth:`Platform.send_text`:
splitting long answers, retrying failed sends and telling the user when a
reply could not be delivered are the gateway's job (``gateway/delivery.py``),
the same for every platform.

Connections are kept up by :meth:`Platform.supervise`: the adapter writes one
``connect_once`` coroutine that connects and serves until the connection
ends; the base runs it again after an exponential, jittered delay, forever
(a gateway that gives up after a long outage is a gateway that is down), and
a watchdog restarts a connection that went silent for ``watchdog_seconds``.

This module imports no adapter; the registry of adapters is the package's
``__init__`` (which imports each one only when it is enabled), so the arrows
run one way: adapters -> base, registry -> adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_agent.errors import HermesError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway
    from hermes_agent.state.db import InboundMessage

log = logging.getLogger("hermes_agent.gateway")


class GatewayClosedError(HermesError):
    """The gateway is shutting down and takes no new messages.

    Defined here, beside the base class, because adapters catch it: they import
    the base, never the runner (which imports them through the registry).
    """


@dataclass(frozen=True)
class Outbound:
    """A reply to one inbound message."""

    platform: str
    chat_id: str
    thread_id: str
    #: The platform's id of the message this answers.
    reply_to: str
    text: str
    #: True when the agent could not answer; ``text`` then says why.
    failed: bool = False
    input_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        # Every reply a platform is handed passes here: the answer, a failure's reason,
        # a cron job's output, a resent reply read back from state.db.
        from hermes_agent.redact import redact

        object.__setattr__(self, "text", redact(self.text))


class SendError(Exception):
    """Sending one chunk failed.

    ``retry_after`` is the platform's own "try again in N seconds" (rate
    limits); ``permanent`` says retrying cannot help (chat gone, bot blocked,
    message rejected), so the gateway stops at once.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class Backoff:
    """Exponential delays with full jitter, capped, never giving up."""

    def __init__(self, *, initial: float = 1.0, maximum: float = 60.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt: random in [cap/2, cap], cap growing."""
        cap = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return cap / 2 + random.random() * cap / 2

    def reset(self) -> None:
        self.attempt = 0


class Platform:
    """The interface every adapter implements; ``name`` is its key under gateway.platforms."""

    name = ""
    #: The most characters one message may hold; longer answers are split.
    max_message_length = 4096
    #: False for platforms that authenticate requests themselves (HTTP API, webhooks):
    #: the gateway's allow-lists and pairing then do not apply.
    access_control = True
    #: True when a message's text comes from whoever can reach the endpoint rather than
    #: a known user (webhook payloads): the turn is then treated like one that read a
    #: web page, so memory and skill writes need approval.
    untrusted_input = False
    #: Restart a supervised connection that reported nothing through :meth:`alive`
    #: for this many seconds (0: no watchdog). Set it above the platform's heartbeat.
    watchdog_seconds = 0.0
    #: :meth:`send` hands the reply to a request waiting in this process (the HTTP API):
    #: nothing can be resent after a crash, so the gateway records answer and delivery
    #: in one write, after the hand-over.
    answers_in_request = False
    #: Told of each change of the connection's state (``connected``, ``reconnecting``
    #: with the reason); the gateway sets it to write ``gateway.status.json``.
    report_state: Callable[[str, str], None] | None = None
    #: The connection's last reported state ("" before the gateway started the platform).
    connection_state = ""
    _attempt = 0

    def __init__(self, gateway: Gateway, config: Config) -> None:
        """Read settings and secrets; raise UsageError naming what is missing. No I/O."""
        self.gateway = gateway
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []
        self._last_alive = time.monotonic()
        self._reconnect_max = float(config.get("gateway.reconnect_max_delay"))
        self._chat_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    # --- what adapters implement ----------------------------------------------------

    async def start(self) -> None:
        """Check credentials, then start serving (usually through :meth:`supervise`).

        Raise a HermesError naming the platform when it cannot work (bad token).
        """
        raise NotImplementedError

    async def stop(self) -> None:
        """Disconnect; called once, after in-flight work was finished or persisted."""
        await self.stop_supervised()

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> str | None:
        """Send one chunk (already formatted, within ``max_message_length``).

        Returns the platform's id of the message when it gives one. Raise
        :class:`SendError` when it was not delivered.
        """
        raise NotImplementedError

    def delivery_mark(self, message: Outbound, chunk: str) -> str:
        """What to note, just before ``chunk`` of ``message`` is sent, to find it again later.

        The gateway stores it with the reply before the send; if the process dies
        before the platform's answer is recorded, :meth:`was_sent` gets it back
        after the restart. ``""`` (the default): this platform cannot tell, and an
        unconfirmed chunk is sent again.
        """
        return ""

    async def was_sent(self, chat_id: str, mark: str) -> bool | None:
        """Whether the one chunk sent to ``chat_id`` after ``mark`` was taken arrived.

        None when that cannot be told (the chunk is then sent again: a reply
        twice is better than none).
        """
        return None

    def format(self, text: str) -> str:
        """The model's Markdown in the platform's own markup (default: unchanged)."""
        return text

    async def typing(self, chat_id: str, thread_id: str) -> None:
        """Show that an answer is being written (optional)."""

    def stream(self, inbound: InboundMessage, delta: str) -> None:
        """A piece of the answer to ``inbound`` as the model writes it (optional)."""

    async def send(self, message: Outbound) -> bool:
        """Deliver a whole reply, for platforms that do not deliver chunk by chunk.

        Returns True when this platform delivered it itself; the default
        returns False and the gateway delivers through :meth:`send_text`.
        """
        return False

    @contextlib.asynccontextmanager
    async def one_send_at_a_time(self, chat_id: str) -> AsyncIterator[None]:
        """Hold while sending to ``chat_id``: chunks, cron results and notices never overlap.

        A chat's messages then arrive in the order they were sent, and a
        :meth:`delivery_mark` taken inside covers every message sent to the chat
        before it.
        """
        entry = self._chat_locks.get(chat_id)
        if entry is None:
            entry = self._chat_locks[chat_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._chat_locks[chat_id]  # Nobody holds or waits: keep only live chats.

    # --- connection supervision -----------------------------------------------------

    def alive(self) -> None:
        """Note that the connection just showed signs of life (an event, a heartbeat)."""
        self._last_alive = time.monotonic()
        if self.connection_state in ("connecting", "reconnecting"):
            self.set_connection_state("connected")

    def mark_started(self) -> None:
        """Record the state after :meth:`start` returned.

        A supervised connection is ``connecting`` until it shows life (or runs
        :data:`_SETTLED_SECONDS` without failing); a platform that only listens
        (the HTTP API, webhooks) is ``connected`` once started.
        """
        if self.connection_state != "reconnecting":
            self.set_connection_state("connecting" if self._tasks else "connected")

    def set_connection_state(self, state: str, detail: str = "") -> None:
        """Record the connection's state, and tell :attr:`report_state` when it changed."""
        if state == self.connection_state and not detail:
            return
        self.connection_state = state
        if self.report_state is not None:
            self.report_state(state, detail)

    def _settled(self, attempt: int) -> None:
        """An attempt that has not failed for a while counts as connected (no alive() needed)."""
        if attempt == self._attempt and self.connection_state in ("connecting", "reconnecting"):
            self.set_connection_state("connected")

    def supervise(self, label: str, connect_once: Callable[[], Awaitable[None]]) -> None:
        """Run ``connect_once`` for ever: again after each end or error, with backoff.

        The backoff restarts from its first step once a connection lived for
        longer than the current delay cap, so a brief blip after days of
        uptime reconnects within a second or two.
        """
        self._tasks.append(
            asyncio.create_task(self._supervise(label, connect_once), name=f"{self.name}:{label}")
        )

    async def _supervise(self, label: str, connect_once: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(maximum=self._reconnect_max)
        while True:
            started = time.monotonic()
            self._last_alive = started  # The watchdog's clock; not yet a sign of a connection.
            self._attempt += 1
            settled = asyncio.get_running_loop().call_later(
                _SETTLED_SECONDS, self._settled, self._attempt
            )
            reason = "the connection ended"
            try:
                await self._with_watchdog(connect_once())
            except asyncio.CancelledError:
                raise
            except _SilentError:
                reason = f"nothing heard for {self.watchdog_seconds:.0f} s"
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                settled.cancel()
            self.set_connection_state("reconnecting", f"{label}: {reason}")
            if time.monotonic() - started > min(self._reconnect_max, 30.0):
                backoff.reset()
            delay = backoff.next_delay()
            log.warning(
                "%s %s: %s; reconnecting in %.1f s (attempt %d)",
                self.name,
                label,
                reason,
                delay,
                backoff.attempt,
            )
            await asyncio.sleep(delay)

    async def _with_watchdog(self, work: Awaitable[None]) -> None:
        if self.watchdog_seconds <= 0:
            await work
            return
        task = asyncio.ensure_future(work)
        try:
            while not task.done():
                silent_for = time.monotonic() - self._last_alive
                if silent_for > self.watchdog_seconds:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    raise _SilentError
                wait = max(0.05, self.watchdog_seconds - silent_for)
                await asyncio.wait({task}, timeout=wait)
            task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def stop_supervised(self) -> None:
        """Cancel every supervised connection and wait for them to end."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


#: An attempt that has run this long without failing counts as a connection made again.
_SETTLED_SECONDS = 10.0


class _SilentError(Exception):
    """The watchdog found a connection silent for too long."""


@contextlib.contextmanager
def optional_modules_skipped(*names: str) -> Iterator[None]:
    """Make ``import name`` fail inside the block, for modules a library only tries.

    A library that imports an optional module "if installed" pays its memory in every
    gateway whether or not it is used (python-telegram-bot and pytz: 2.6 MiB of idle
    RSS, for pytz time zones we never pass). Modules already imported are left alone;
    after the block, importing them works again (the library keeps its fallback).
    """
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
