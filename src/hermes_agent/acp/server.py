"""`hermes-acp` (and `hermes acp`): serve the agent to an editor over ACP on stdio.

stdout is the protocol: the process keeps a private copy of it for JSON-RPC
and points file descriptor 1 (and ``sys.stdout``) at stderr, so nothing else
(a library's print, a warning) can corrupt a frame; stdin is likewise kept
for the protocol and replaced by /dev/null for everything else. Logs go to
``HERMES_HOME/logs/acp.log`` (0600, every line redacted).

The connection is the SDK's (``acp.connection.Connection`` with the router
``acp.agent.router.build_agent_router`` builds, unstable routes on for
``session/close`` and ``session/resume``); the methods the SDK has no route
for (``session/delete``, ``logout``, ``$/cancel_request``) are added to that
router here, not patched into the SDK. An observer notes each request's
JSON-RPC id in a context variable before its handler task starts, which is
how ``$/cancel_request`` finds the prompt it names.

``hermes-acp --setup`` is the terminal auth method: the editor runs it in a
terminal, and it runs `hermes setup`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

EXIT_FAILURE = 1


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from hermes_agent.redact import redact

        return redact(super().format(record))


def _setup_logging() -> None:
    from hermes_agent import home

    path = home.acp_log_path()
    home.ensure_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if os.environ.get("HERMES_DEBUG") else logging.INFO)


async def _protocol_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """stdin/stdout for JSON-RPC only; fd 0 becomes /dev/null and fd 1 stderr for the rest."""
    loop = asyncio.get_running_loop()
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader = asyncio.StreamReader(limit=50 * 1024 * 1024)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop), os.fdopen(out_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


def build_connection(agent: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
    """The SDK's connection and router, with the routes it lacks added around it."""
    from acp.agent.router import build_agent_router
    from acp.connection import Connection, StreamDirection, StreamEvent
    from acp.router import Route

    from hermes_agent.acp.agent import REQUEST_ID, ClientProxy

    router = build_agent_router(agent, use_unstable_protocol=True)
    router.add_route(Route(method="session/delete", func=agent.delete_session, kind="request"))
    router.add_route(Route(method="logout", func=agent.logout, kind="request"))
    router.add_route(
        Route(method="$/cancel_request", func=agent.cancel_request, kind="notification")
    )

    def note_request(event: StreamEvent) -> None:
        # Runs in the receive loop just before the message's handler task is created,
        # which copies this context: the handler sees its own request id.
        if event.direction is StreamDirection.INCOMING:
            message = event.message
            REQUEST_ID.set(message.get("id") if "method" in message else None)

    conn = Connection(router, writer, reader, observers=[note_request], listening=False)
    agent.client = ClientProxy(conn)
    return conn


async def serve() -> int:
    from hermes_agent.acp.agent import HermesAcp
    from hermes_agent.state.db import StateDB

    config = _load_config()
    db = StateDB()
    agent = HermesAcp(config, db)
    reader, writer = await _protocol_streams()
    conn = build_connection(agent, reader, writer)
    logging.getLogger("hermes.acp").info("hermes-acp started (pid %d)", os.getpid())
    try:
        await conn.main_loop()
    finally:
        await agent.shutdown()
        await conn.close()
        db.close()
        logging.getLogger("hermes.acp").info("hermes-acp stopped")
    return 0


def _load_config() -> Any:
    from hermes_agent import home
    from hermes_agent.config.envfile import load_env_file
    from hermes_agent.config.loader import load_config

    for problem in load_env_file(home.env_path()):
        logging.getLogger("hermes.acp").warning("%s", problem)
    config = load_config()
    for message in config.warnings:
        logging.getLogger("hermes.acp").warning("%s", message)
    return config


def configure(parser: argparse.ArgumentParser) -> None:
    """`hermes acp`: the same as `hermes-acp`."""
    parser.description = (
        "Serve the agent to an editor over the Agent Client Protocol on stdin/stdout "
        "(Zed, Neovim, JetBrains, acpx start it for you). Logs: HERMES_HOME/logs/acp.log."
    )
    _arguments(parser)
    parser.set_defaults(handler=lambda args: run(args))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--setup",
        action="store_true",
        help="run `hermes setup` (the editor's terminal sign-in method) and exit",
    )


def run(args: argparse.Namespace) -> int:
    if args.setup:
        os.execv(sys.executable, [sys.executable, "-m", "hermes_agent", "setup"])
    if sys.stdin.isatty():
        print(
            "hermes-acp: this speaks the Agent Client Protocol on stdin/stdout for an editor; "
            "configure your editor to start it (see the README), or use `hermes chat`",
            file=sys.stderr,
        )
        return 2
    for fd, name in ((0, "stdin"), (1, "stdout")):
        # asyncio's pipe transports take pipes, sockets and terminals only (a file is a
        # ValueError deep inside the event loop): say so instead of an internal error.
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            print(
                f"hermes-acp: {name} is a file, not a pipe: an editor starts hermes-acp with "
                "pipes (try `... | hermes-acp | cat`)",
                file=sys.stderr,
            )
            return 2
    try:
        _setup_logging()
    except OSError as exc:
        print(f"hermes-acp: cannot write its log in HERMES_HOME/logs: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return asyncio.run(serve())


def main(argv: Sequence[str] | None = None) -> None:
    """Console script `hermes-acp`."""
    from hermes_agent import __version__
    from hermes_agent.errors import HermesError

    parser = argparse.ArgumentParser(
        prog="hermes-acp",
        description="Serve the hermes agent to an editor over the Agent Client Protocol "
        "(JSON-RPC on stdin/stdout). Logs: HERMES_HOME/logs/acp.log.",
    )
    parser.add_argument("--version", action="version", version=f"hermes-acp {__version__}")
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        code = run(args)
    except HermesError as exc:
        from hermes_agent.redact import redact

        print(f"hermes-acp: {redact(str(exc))}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
