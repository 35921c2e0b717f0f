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
finish for up to ``gateway.shutdown_timeout`` seconds, then cancels the rest: their rows go
back to ``pending`` and the next start answers them (as it does for
everything a crash left ``pending`` or ``processing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_agent import home
from hermes_agent.agent.loop import Events
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms import PLATFORMS, Outbound, Platform

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.settings import ProviderSettings
    from hermes_agent.state.db import InboundMessage, StateDB
    from hermes_agent.tools.registry import Tool

log = logging.getLogger("hermes_agent.gateway")

#: How long ``stop``/``--replace`` wait for a gateway to exit, beyond its shutdown_timeout.
STOP_GRACE_SECONDS = 15.0

RouteKey = tuple[str, str, str]


class GatewayClosedError(HermesError):
    """The gateway is shutting down and takes no new messages."""


class GatewayEvents(Events):
    """The loop's events for one inbound message: text goes to its platform.

    ``ask`` returns None: nobody is there to approve, so dangerous commands are
    denied and tools that need an answer play safe.
    """

    def __init__(self, platform: Platform | None, inbound: InboundMessage) -> None:
        self.platform = platform
        self.inbound = inbound

    def text(self, delta: str) -> None:
        if self.platform is not None:
            self.platform.stream(self.inbound, delta)

    def notice(self, message: str) -> None:
        log.info("inbound %d: %s", self.inbound.id, message)

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
        self.platforms: dict[str, Platform] = {}
        self.accepting = False
        self._semaphore: asyncio.Semaphore | None = None
        self._queues: dict[RouteKey, deque[InboundMessage]] = {}
        self._workers: dict[RouteKey, asyncio.Task[None]] = {}
        self._stopping: asyncio.Event | None = None
        for name in enabled_platforms(config):
            self.platforms[name] = PLATFORMS[name]()(self, config)

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
    ) -> tuple[InboundMessage, bool]:
        """Store a message (before the platform is acknowledged) and queue it.

        Returns the stored row and whether it is new; a message id seen before
        is neither stored nor answered again.
        """
        if not self.accepting:
            raise GatewayClosedError("the gateway is shutting down")
        row, new = self.db.add_inbound(
            platform=platform,
            chat_id=chat_id,
            thread_id=thread_id,
            user_id=user_id,
            message_id=message_id,
            text=text,
        )
        if new:
            log.info("inbound %d from %s chat %s", row.id, platform, chat_id)
            self._enqueue(row)
        else:
            log.info("inbound %s from %s is a repeat of %d", message_id, platform, row.id)
        return row, new

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
                    await self._answer(row)
                queue.popleft()
        finally:
            del self._queues[key]
            del self._workers[key]

    def _session_for(self, row: InboundMessage) -> str:
        """The session of this conversation, created on its first message."""
        session_id = self.db.route(row.platform, row.chat_id, row.thread_id)
        if session_id is not None and self.db.get_session(session_id) is not None:
            return session_id
        session_id = self.db.create_session(
            source=f"gateway:{row.platform}", model=self.settings.model, cwd=str(self.cwd)
        )
        self.db.set_route(row.platform, row.chat_id, row.thread_id, session_id)
        return session_id

    async def _answer(self, row: InboundMessage) -> None:
        from hermes_agent.agent.factory import build_agent

        platform = self.platforms.get(row.platform)
        session_id = self._session_for(row)
        self.db.set_inbound_status(row.id, "processing", session_id=session_id)
        started = time.monotonic()
        try:
            agent = build_agent(
                config=self.config,
                settings=self.settings,
                tools=self.tools,
                db=self.db,
                session_id=session_id,
                cwd=self.cwd,
                events=GatewayEvents(platform, row),
            )
        except HermesError as exc:
            await self._fail(row, platform, str(exc))
            return
        try:
            result = await agent.run(row.text)
        except asyncio.CancelledError:
            # Stopped before the answer: the next start answers it again.
            self.db.set_inbound_status(row.id, "pending")
            log.info("inbound %d interrupted by shutdown; kept as pending", row.id)
            raise
        except HermesError as exc:
            await self._fail(row, platform, str(exc))
            return
        except Exception as exc:  # A bug must not take the whole gateway down.
            log.exception("inbound %d: unexpected error", row.id)
            await self._fail(row, platform, f"internal error: {exc}")
            return
        finally:
            with contextlib.suppress(Exception):
                await agent.aclose()
        self.db.set_inbound_status(row.id, "done", reply=result.text)
        log.info(
            "inbound %d answered in %.2f s (%d model calls, session %s)",
            row.id,
            time.monotonic() - started,
            result.model_calls,
            session_id,
        )
        await self._deliver(
            platform,
            Outbound(
                platform=row.platform,
                chat_id=row.chat_id,
                thread_id=row.thread_id,
                reply_to=row.message_id,
                text=result.text,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
            ),
        )

    async def _fail(self, row: InboundMessage, platform: Platform | None, reason: str) -> None:
        log.warning("inbound %d failed: %s", row.id, reason)
        self.db.set_inbound_status(row.id, "failed", error=reason)
        await self._deliver(
            platform,
            Outbound(
                platform=row.platform,
                chat_id=row.chat_id,
                thread_id=row.thread_id,
                reply_to=row.message_id,
                text=f"Sorry, I could not answer: {reason}",
                failed=True,
            ),
        )

    async def _deliver(self, platform: Platform | None, message: Outbound) -> None:
        if platform is None:
            log.warning(
                "reply to %s message %s kept in state.db: platform not enabled",
                message.platform,
                message.reply_to,
            )
            return
        try:
            await platform.send(message)
        except Exception:
            log.exception(
                "sending the reply to %s message %s failed", platform.name, message.reply_to
            )

    # --- lifetime -------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def serve(self) -> None:
        """Start the platforms, resume unfinished messages, run until SIGTERM, drain."""
        loop = asyncio.get_running_loop()
        self._semaphore = asyncio.Semaphore(self.max_concurrent)
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        started: list[Platform] = []
        try:
            for platform in self.platforms.values():
                await platform.start()
                started.append(platform)
                log.info("platform %s started", platform.name)
            self.accepting = True
            resumed = self.db.unfinished_inbound()
            for row in resumed:
                self._enqueue(row)
            if resumed:
                log.info("resuming %d unanswered messages", len(resumed))
            log.info("gateway running (pid %d)", os.getpid())
            await self._stopping.wait()
            log.info("stopping: finishing %d running conversations", len(self._workers))
            self.accepting = False
            await self._drain()
        finally:
            self.accepting = False
            for platform in reversed(started):
                try:
                    await platform.stop()
                except Exception:
                    log.exception("stopping platform %s failed", platform.name)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
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


def enabled_platforms(config: Config) -> list[str]:
    """The names of the platforms switched on in the configuration."""
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
        text = home.gateway_pid_path().read_text(encoding="utf-8").strip()
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
        if path.read_text(encoding="utf-8").strip() != str(os.getpid()):
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

    config = load_config()
    if not enabled_platforms(config):
        raise UsageError(
            "no platform is enabled; turn one on, e.g. "
            "`hermes config set gateway.platforms.api_server.enabled true`"
        )
    settings, tools, cwd = agent_parts(config)
    db = StateDB()
    try:
        # Adapters check their settings (keys...) here, before anything is taken over.
        gateway = Gateway(config=config, settings=settings, tools=tools, cwd=cwd, db=db)
        pid = running_pid()
        if pid is not None:
            if not replace:
                raise HermesError(
                    f"a gateway is already running (pid {pid}); stop it with "
                    "`hermes gateway stop`, or take over with `hermes gateway run --replace`"
                )
            print(f"hermes: stopping the running gateway (pid {pid})", flush=True)
            if not stop_running(pid, stop_wait_seconds(config)):
                raise HermesError(f"the running gateway (pid {pid}) did not stop; not replacing it")
        setup_logging()
        write_pid_file()
        try:
            asyncio.run(gateway.serve())
        finally:
            remove_pid_file()
    finally:
        db.close()
    return 0
