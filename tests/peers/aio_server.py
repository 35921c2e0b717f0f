"""An aiohttp application served on 127.0.0.1 from a thread with its own event loop.

The loopback platform servers (``discord_api.py``, ``slack_api.py``) are aiohttp
applications, because they speak websockets as well as HTTP. Tests are plain
synchronous code, so the server runs its loop in a thread, and test hooks run
coroutines on that loop through :meth:`LoopThread.call`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopThread:
    """Serve ``app`` on a free port of 127.0.0.1 until :meth:`stop`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="loopback-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("loopback server did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # Reported to start().
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._cleanup())
        self.loop.close()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, timeout: float = 10) -> T:
        """Run ``fn(*args)`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
