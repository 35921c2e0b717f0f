"""A stdio MCP server started confined, and the transport the SDK talks through.

The SDK's own ``stdio_client`` starts the server with ``anyio.open_process``:
unconfined, and leaving the server's children alive after a graceful exit.
Here the server is started like every other command of the agent: through
the sandbox's spawner (:mod:`hermes_agent.safety.spawner`), with the Landlock
ruleset of :func:`hermes_agent.safety.sandbox.confine` (plus the server's own
``sandbox.writable``/``sandbox.network``), the environment of
:func:`hermes_agent.tools.terminal.child_env` (hermes' secrets removed) plus
the server's ``env``. The spawner puts it in its own session and process
group and is the subreaper of whatever it leaves behind, and kills all of it
when hermes goes away, even by SIGKILL (its socket to hermes closes).

Stopping (normal end, error, Ctrl-C, SIGTERM) closes stdin, waits a moment,
then kills the whole process group: no child and no zombie is left.

stderr goes to ``logs/mcp/<name>.log``: redacted, 0600, at most
:data:`LOG_LIMIT` bytes (the older half is kept in ``<name>.log.1``). Lines on
stdout that are not JSON-RPC (a chatty server) go there too instead of
failing the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from hermes_agent.redact import LogRedactor, redact

#: Most bytes one JSON-RPC line from a server may have (big images arrive base64).
MAX_LINE = 32 << 20
#: Most bytes a server's log keeps before it is rotated.
LOG_LIMIT = 1 << 20
#: Seconds a server's unfinished stderr line waits for its end before it is logged.
STDERR_IDLE = 1.0
#: How long a server may take to exit after its stdin closes, then after SIGTERM.
EXIT_GRACE = 2.0
KILL_GRACE = 1.0


class BoundedLog:
    """Append-only, redacted, size-bounded log of one server's stderr."""

    def __init__(self, path: Path, limit: int = LOG_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._fd = -1
        self._size = 0

    def _open(self) -> None:
        from hermes_agent import home

        home.ensure_dir(self.path.parent)
        self._fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        if os.fstat(self._fd).st_mode & 0o077:
            os.fchmod(self._fd, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, text: str) -> None:
        from hermes_agent.redact import redact

        if not text:
            return
        try:
            if self._fd < 0:
                self._open()
            if self._size >= self.limit:
                os.close(self._fd)
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self._open()
            data = redact(text).encode("utf-8", "replace")[: self.limit]
            os.write(self._fd, data)
            self._size += len(data)
        except OSError:
            pass  # A full disk must not take the server down with it.

    def note(self, message: str) -> None:
        self.write(f"[hermes {time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def tail(self, lines: int = 5) -> str:
        """The last lines of the log (for error messages: why did the server stop?)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - 4096))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        kept = [
            line for line in text.splitlines() if line.strip() and not line.startswith("[hermes ")
        ][-lines:]
        return "\n".join(kept)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class StdioTransport:
    """The SDK ``Transport`` for one confined stdio server (an async context manager).

    ``ended`` is set when the server's stdout closes (it exited or crashed);
    ``reason`` then says how, for the server's state.
    """

    def __init__(
        self,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        spawn_args: dict[str, Any],
        log: BoundedLog,
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.spawn_args = spawn_args
        self.log = log
        self.ended = anyio.Event()
        self.reason = ""
        self.pid = 0
        self._child: Any = None
        self._transports: list[Any] = []
        self._stdin: asyncio.StreamWriter | None = None
        self._tg: Any = None
        self._streams: list[Any] = []
        self._stderr = LogRedactor()

    async def __aenter__(
        self,
    ) -> tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]:
        from hermes_agent.safety import spawner

        loop = asyncio.get_running_loop()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (in_w, out_r, err_r):
            os.set_inheritable(fd, False)
        try:
            self._child = await spawner.spawn_async(
                self.argv,
                self.cwd,
                self.env,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                **self.spawn_args,
            )
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        self.pid = self._child.pid
        self.log.note(f"started pid {self.pid}: {' '.join(self.argv)}")
        stdout = asyncio.StreamReader(limit=MAX_LINE, loop=loop)
        stderr = asyncio.StreamReader(limit=1 << 16, loop=loop)
        t1, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout, loop=loop), os.fdopen(out_r, "rb", 0)
        )
        t2, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stderr, loop=loop), os.fdopen(err_r, "rb", 0)
        )
        t3, p3 = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), os.fdopen(in_w, "wb", 0)
        )
        self._transports = [t1, t2, t3]
        self._stdin = asyncio.StreamWriter(t3, p3, None, loop)
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](16)
        self._streams = [read_send, read_recv, write_send, write_recv]
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read_stdout, stdout, read_send)
        self._tg.start_soon(self._read_stderr, stderr)
        self._tg.start_soon(self._write_stdin, write_recv, read_send)
        return read_recv, write_send

    async def _read_stdout(
        self,
        stdout: asyncio.StreamReader,
        out: MemoryObjectSendStream[SessionMessage | Exception],
    ) -> None:
        try:
            async with out:
                while True:
                    try:
                        line = await stdout.readline()
                    except (ValueError, asyncio.LimitOverrunError):
                        self._end(f"wrote a line longer than {MAX_LINE >> 20} MB on stdout")
                        _kill_group(self.pid, signal.SIGKILL)
                        return
                    if not line:
                        break
                    text = line.decode("utf-8", "replace").strip()
                    if not text:
                        continue
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                    except ValueError:
                        # Redacted before it is cut: a cut through a secret hides it.
                        self.log.write(f"[stdout, not JSON-RPC] {redact(text)[:2000]}\n")
                        continue
                    try:
                        await out.send(SessionMessage(message))
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return
        finally:
            code = await self._exit_code(0.5)
            if code is None:
                self._end("closed its stdout")
            else:
                from hermes_agent.tools.terminal import describe_exit

                self._end(f"exited ({describe_exit(code)})")

    async def _exit_code(self, wait: float) -> int | None:
        child = self._child
        if child is None:
            return None
        with anyio.move_on_after(wait):
            code: int = await child.wait_async()
            return code
        return None

    def _end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.log.note(f"server {reason}")
            self.ended.set()

    async def _read_stderr(self, stderr: asyncio.StreamReader) -> None:
        """stderr into the log, redacted by whole lines (:class:`LogRedactor`): a read ends
        wherever the server's buffer did, and a secret cut in two by it was written in
        clear. A line left unfinished is written after :data:`STDERR_IDLE` seconds."""
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                # Not wait_for: on Python 3.11 it drops a cancel that comes with a chunk,
                # and this reader would go on after the server was stopped.
                async with asyncio.timeout(STDERR_IDLE):
                    chunk = await stderr.read(1 << 16)
            except TimeoutError:
                self.log.write(self._stderr.finish())
                continue
            if not chunk:
                self.log.write(self._stderr.feed(decoder.decode(b"", final=True)))
                self.log.write(self._stderr.finish())
                return
            self.log.write(self._stderr.feed(decoder.decode(chunk)))

    async def _write_stdin(
        self,
        messages: MemoryObjectReceiveStream[SessionMessage],
        out: MemoryObjectSendStream[SessionMessage | Exception],
    ) -> None:
        assert self._stdin is not None
        try:
            async with messages:
                async for message in messages:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    self._stdin.write(data.encode() + b"\n")
                    await self._stdin.drain()
        except (OSError, ConnectionError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            await out.aclose()  # The session sees the end instead of waiting forever.

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        with anyio.CancelScope(shield=True):
            await self.stop()
        if self._tg is not None:
            # Outside the shield: a task group is exited where it was entered (anyio's rule).
            self._tg.cancel_scope.cancel()
            with contextlib.suppress(Exception):
                await self._tg.__aexit__(None, None, None)
        return None

    async def stop(self) -> None:
        """Close stdin, give the server a moment, then kill its whole process group."""
        if self._stdin is not None:
            with contextlib.suppress(Exception):
                self._stdin.close()
        running = self._child is not None and self._child.returncode is None
        if running and await self._exit_code(EXIT_GRACE) is None:
            _kill_group(self.pid, signal.SIGTERM)
            if await self._exit_code(KILL_GRACE) is None:
                _kill_group(self.pid, signal.SIGKILL)
                await self._exit_code(KILL_GRACE)
        if self.pid:
            _kill_group(self.pid, signal.SIGKILL)  # What it left running in its group.
        for stream in self._streams:
            with contextlib.suppress(Exception):
                stream.close()
        for transport in self._transports:
            with contextlib.suppress(Exception):
                transport.close()
        self._end("stopped")
        self.log.write(self._stderr.finish())
        self.log.close()
