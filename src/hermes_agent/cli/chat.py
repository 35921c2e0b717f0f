"""`hermes chat`: talk to the agent in a terminal, or ask once with ``-q``.

The interactive session uses prompt_toolkit (history, multi-line with
Alt-Enter or Esc-Enter) and shows the prompt before any provider SDK is
loaded: the SDK is imported in a background thread while the user types.
Ctrl-C during an answer ends that turn, not the session; Ctrl-D or ``/exit``
ends the session. ``hermes-agent`` is the same one-shot path as a script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.agent.factory import agent_parts, build_agent
from hermes_agent.cli.common import load_config
from hermes_agent.errors import EXIT_FAILURE, HermesError, UsageError

if TYPE_CHECKING:
    from hermes_agent.agent.loop import Agent
    from hermes_agent.cli.terminal_ui import TerminalEvents
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.settings import ProviderSettings
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools.registry import Tool

EXIT_INTERRUPTED = 130


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by `hermes chat` and `hermes-agent`."""
    parser.add_argument(
        "-q", "--query", metavar="TEXT", help="ask once, print the answer, exit (- reads stdin)"
    )
    parser.add_argument("-m", "--model", help="model id for this session (default: model.default)")
    parser.add_argument("--provider", help="openrouter, anthropic, openai or custom")
    parser.add_argument(
        "--base-url", metavar="URL", help="API endpoint (OpenAI-compatible or Anthropic)"
    )
    parser.add_argument(
        "--toolsets", metavar="LIST", help="comma-separated toolsets, or all (default: toolsets)"
    )
    parser.add_argument(
        "--image",
        metavar="FILE",
        action="append",
        dest="images",
        help="show the model this image with the (first) message; repeatable",
    )
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "-r", "--resume", metavar="ID", help="continue the session with this id (or unique prefix)"
    )
    resume.add_argument(
        "-c",
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue the most recent session",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Talk to the agent. Without -q: an interactive session (/help lists its commands). "
        "With -q: one question, the answer on stdout, exit status 0 on success."
    )
    add_agent_arguments(parser)
    parser.set_defaults(handler=run)


def agent_main(argv: list[str] | None = None) -> None:
    """Console script `hermes-agent`: the one-shot path of `hermes chat -q`."""
    from hermes_agent.cli.main import HelpFormatter, finish

    parser = argparse.ArgumentParser(
        prog="hermes-agent",
        formatter_class=HelpFormatter,
        description="Ask the hermes agent once and print its answer "
        "(the same flags as `hermes chat -q`).",
    )
    add_agent_arguments(parser)
    parser.add_argument("prompt", nargs="*", help="the question (instead of -q)")
    args = parser.parse_args(argv)
    if args.prompt:
        if args.query is not None:
            parser.error("give the question either with -q or as arguments, not both")
        args.query = " ".join(args.prompt)
    if args.query is None:
        parser.error("no question: hermes-agent 'your question' (or -q TEXT, or -q - for stdin)")
    finish(lambda: run(args))


# --- session setup --------------------------------------------------------------------


def _shown(value: object) -> str:
    """An error or a title as the REPL prints it: secrets redacted, rich markup escaped."""
    from rich.markup import escape

    from hermes_agent.redact import redact

    return escape(redact(str(value)))


@dataclass
class ChatSetup:
    config: Config
    settings: ProviderSettings
    db: StateDB
    session_id: str
    resumed: bool
    tools: list[Tool]
    cwd: Path
    #: `--toolsets` as given (None: the configured ones); decides MCP too.
    toolsets: str | None = None


def prepare(args: argparse.Namespace) -> ChatSetup:
    """Everything a chat needs except the SDK: config, provider settings, session, tools."""
    from hermes_agent.state.db import StateDB

    config = load_config()
    settings, tools, cwd = agent_parts(
        config,
        provider=args.provider,
        model=args.model,
        base_url=args.base_url,
        toolsets=args.toolsets,
    )
    db = StateDB()
    try:
        resumed = True
        if args.resume:
            session_id = db.resolve(args.resume).id
        elif args.continue_last:
            last = db.latest_session(source="cli")
            if last is None:
                raise UsageError("no earlier session to continue; start one with `hermes chat`")
            session_id = last.id
        else:
            resumed = False
            session_id = db.create_session(source="cli", model=settings.model, cwd=str(cwd))
        if resumed:
            db.set_model(session_id, settings.model)
    except BaseException:
        db.close()
        raise
    return ChatSetup(config, settings, db, session_id, resumed, tools, cwd, args.toolsets)


def make_agent(setup: ChatSetup, events: TerminalEvents) -> Agent:
    return build_agent(
        toolsets=setup.toolsets,
        config=setup.config,
        settings=setup.settings,
        tools=setup.tools,
        db=setup.db,
        session_id=setup.session_id,
        cwd=setup.cwd,
        events=events,
    )


async def run_cancellable(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a turn so that Ctrl-C cancels it (and only it)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError):  # Not the main thread, or no signals here.
        return await task
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run(args: argparse.Namespace) -> int:
    if args.query is not None:
        return one_shot(args)
    if not sys.stdin.isatty():
        raise UsageError(
            "an interactive chat needs a terminal; use -q TEXT (or -q - to read stdin)"
        )
    return Repl(args).run()


# --- one shot -------------------------------------------------------------------------


def _take_images(paths: list[str], setup: ChatSetup) -> list[Any]:
    """The images named with ``--image``, stored; refused at once for a model without vision."""
    if not paths:
        return []
    from hermes_agent import images

    if not images.vision_supported(setup.config, setup.settings.model):
        raise images.ImageError(images.no_vision_message(setup.settings.model))
    if len(paths) > images.MAX_PER_MESSAGE:  # The gateway's limit per message too.
        raise UsageError(f"at most {images.MAX_PER_MESSAGE} images go with one message")
    return [images.ingest_file(images.pasted_path(p)) for p in paths]


def _warn_untrusted(setup: ChatSetup) -> None:
    """Say on stderr which workspace documents are left out of the prompt, and why."""
    from hermes_agent.agent import trust

    for path in trust.untrusted(setup.cwd):
        print(
            f"hermes: {path} is left out of the prompt: it is new or changed since you last "
            "approved it (start `hermes chat` in that folder to approve it)",
            file=sys.stderr,
        )


def _warn_unconfined(setup: ChatSetup) -> None:
    """Say on stderr when the agent's commands will run without a kernel sandbox."""
    if not any(t.name == "terminal" for t in setup.tools):
        return
    from hermes_agent.safety import sandbox

    if not sandbox.active(setup.config) and sandbox.mode_of(setup.config) == "enforce":
        print(f"hermes: {sandbox.describe(setup.config)}", file=sys.stderr)


def one_shot(args: argparse.Namespace) -> int:
    from hermes_agent.cli.common import clean_argument, read_stdin_text
    from hermes_agent.cli.terminal_ui import TerminalEvents

    if args.query == "-":
        query = read_stdin_text("the question on stdin")
    else:
        query = clean_argument(args.query, "the question")
    if not query.strip():
        raise UsageError("the question is empty")
    setup = prepare(args)
    try:
        refs = _take_images(args.images or [], setup)
    except BaseException:
        # A refused image ends the run before any message: leave no empty session behind.
        if not setup.resumed:
            setup.db.delete_session(setup.session_id)
        setup.db.close()
        raise
    events = TerminalEvents(plain=True, compact=bool(setup.config.get("display.compact")))
    _warn_unconfined(setup)
    _warn_untrusted(setup)

    async def go() -> int:
        agent = make_agent(setup, events)
        try:
            result = await run_cancellable(agent.run(query, images=refs))
        finally:
            events.finish()
            await agent.aclose()
        if result.status == "done" and not events.streamed:
            events.print_answer(result.text)
        return 0 if result.status == "done" else EXIT_FAILURE

    try:
        return asyncio.run(go())
    except asyncio.CancelledError:
        print("hermes: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        setup.db.close()


# --- interactive ----------------------------------------------------------------------

#: Said after the command list in /help.
KEYS_HELP = "Enter sends; Alt-Enter (or Esc then Enter) adds a new line. Ctrl-C stops an answer."


def _prewarm_sdk(wire: str) -> None:
    """Import the provider SDK while the user types (it takes up to a second or two)."""

    def load() -> None:
        module = "anthropic_provider" if wire == "anthropic" else "openai_compat"
        # A failure here is reported properly when the module is used.
        for name in (
            "hermes_agent.cli.terminal_ui",
            "rich.markdown",
            "rich.live",
            f"hermes_agent.providers.{module}",
            "jsonschema",
        ):
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    # Started a moment later, so the imports do not compete with drawing the prompt
    # for the interpreter lock; nobody types a message in a quarter of a second.
    timer = threading.Timer(0.25, load)
    timer.name = "sdk-prewarm"
    timer.daemon = True
    timer.start()


class Repl:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.setup = prepare(args)
        self.agent: Agent | None = None
        self._events: TerminalEvents | None = None
        #: /background runs still going (cancelled when the chat ends).
        self.background: set[asyncio.Task[None]] = set()
        #: Images (/image, --image) that go with the next message sent.
        self.images: list[Any] = _take_images(args.images or [], self.setup)

    @property
    def events(self) -> TerminalEvents:
        """The rich-based output, created on first use: the prompt must not wait for rich."""
        if self._events is None:
            from hermes_agent.cli.terminal_ui import TerminalEvents

            self._events = TerminalEvents(
                compact=bool(self.setup.config.get("display.compact")),
                verbose=bool(self.setup.config.get("agent.verbose")),
            )
        return self._events

    @property
    def console(self) -> Any:
        return self.events.out

    def run(self) -> int:
        try:
            return asyncio.run(self.main())
        finally:
            self.setup.db.close()

    def banner(self) -> None:
        """One line about the session, in plain ANSI (rich is not loaded yet)."""
        if self.setup.config.get("display.compact"):
            return
        s = self.setup
        state = "resumed" if s.resumed else "new"
        bold, cyan, dim, reset = ("\x1b[1m", "\x1b[36m", "\x1b[2m", "\x1b[0m")
        if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
            bold = cyan = dim = reset = ""
        print(
            f"{bold}hermes{reset} · {s.settings.model} via {s.settings.info.name} · "
            f"{state} session {cyan}{s.session_id}{reset} · {len(s.tools)} tools · /help"
        )
        if s.resumed:
            count = len(s.db.messages(s.session_id))
            print(f"{dim}{count} earlier messages loaded{reset}")
        if any(t.name == "terminal" for t in s.tools):
            from hermes_agent.safety import sandbox

            print(f"{dim}{sandbox.describe(s.config)}{reset}")

    async def review_documents(self, session: Any) -> None:
        """Ask before a new or changed workspace SOUL.md/USER.md steers the agent."""
        from hermes_agent.agent import trust

        for path in trust.untrusted(self.setup.cwd):
            print(
                f"{path.name} in the workspace is new or changed since you last approved it; "
                "it would become part of the agent's instructions."
            )
            try:
                answer = await session.prompt_async(f"Read {path} into the prompt? [y/N] ")
            except (EOFError, KeyboardInterrupt):
                answer = ""
            if answer.strip().lower() in ("y", "yes"):
                trust.trust(path)
            else:
                print(f"{path.name} is left out of this session's prompt.")

    async def main(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()

        @bindings.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        history = home.chat_history_path()
        home.ensure_home()
        if not history.exists():
            history.touch(mode=0o600)  # What the user types may include secrets.
        session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)), key_bindings=bindings
        )
        self.banner()
        _prewarm_sdk(self.setup.settings.info.wire)
        try:  # MCP servers start connecting now, while the user types the first message.
            self._mcp_scope()
        except HermesError as exc:
            self.console.print(f"[red]{_shown(exc)}[/]")
        await self.review_documents(session)
        while True:
            try:
                text = await session.prompt_async("❯ ")
            except KeyboardInterrupt:
                self.console.print("[dim](Ctrl-D or /exit to leave)[/]")
                continue
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text.startswith("/"):
                if await self.command(text) == "exit":
                    break
                continue
            await self.turn(text)
        if self.background:
            print(f"cancelling {len(self.background)} background task(s)")
            for task in list(self.background):
                task.cancel()
            await asyncio.gather(*self.background, return_exceptions=True)
        if self.agent is not None:
            await self.agent.aclose()
        return 0

    def _agent(self) -> Agent:
        if self.agent is None:
            self.agent = make_agent(self.setup, self.events)
        return self.agent

    async def turn(self, text: str) -> None:
        from hermes_agent.providers.base import ProviderError

        try:
            agent = self._agent()
        except HermesError as exc:
            self.console.print(f"[red]{_shown(exc)}[/]")
            return
        self.events.streamed = False
        self.events.waiting()
        refs, self.images = self.images, []
        try:
            result = await run_cancellable(agent.run(text, images=refs))
        except asyncio.CancelledError:
            self.events.finish()
            self.console.print("[yellow]⏹ stopped[/]")
            return
        except (ProviderError, HermesError) as exc:
            self.events.finish()
            self.console.print(f"[red]✗ {_shown(exc)}[/]")
            return
        self.events.finish()
        if not self.events.streamed and result.status == "done":
            self.events.print_answer(result.text)

    # --- slash commands -------------------------------------------------------------------

    async def command(self, line: str) -> str | None:
        """Run a slash command from the table (agent/commands.py): ``cmd_<name>``."""
        from hermes_agent.agent import commands

        parsed = commands.parse(line)
        name, rest = parsed if parsed is not None else (line[1:].split(" ", 1)[0], "")
        if ":" in name and await self.mcp_prompt(line):  # /SERVER:PROMPT of an MCP server.
            return None
        command = commands.lookup(name, commands.CHAT)
        handler: Callable[[str], Coroutine[Any, Any, str | None]] | None = (
            getattr(self, f"cmd_{command.name.replace('-', '_')}", None)
            if command is not None
            else None
        )
        if handler is None:
            self.console.print(f"unknown command /{name}; /help lists them", markup=False)
            return None
        try:
            return await handler(rest)
        except HermesError as exc:
            self.console.print(f"[red]{_shown(exc)}[/]")
            return None

    async def cmd_image(self, arg: str) -> None:
        """Attach an image (a path, or a file dropped on the terminal) to the next message."""
        from hermes_agent import images

        if not arg.strip():
            attached = ", ".join(ref.describe() for ref in self.images) or "none"
            self.console.print(f"usage: /image FILE; attached now: {attached}", markup=False)
            return
        model = self.agent.provider.model if self.agent is not None else self.setup.settings.model
        if not images.vision_supported(self.setup.config, model):
            raise images.ImageError(images.no_vision_message(model))
        if len(self.images) >= images.MAX_PER_MESSAGE:
            raise UsageError(f"at most {images.MAX_PER_MESSAGE} images go with one message")
        path = images.pasted_path(arg)
        if not path.is_absolute():
            path = self.setup.cwd / path
        ref = await asyncio.to_thread(images.ingest_file, path, label=str(path))
        self.images.append(ref)
        self.console.print(
            f"🖼 attached {ref.describe()}; it goes with your next message", markup=False
        )

    def _mcp_scope(self) -> Any:
        from hermes_agent.mcp.config import any_enabled

        if not any_enabled(self.setup.config):
            return None
        from hermes_agent.mcp.manager import scope_for

        return scope_for(self.setup.config, self.setup.cwd)

    async def cmd_mcp(self, arg: str) -> None:
        """The servers and their state; ``/mcp trust NAME`` approves changed tools."""
        from hermes_agent.cli.mcp import plain

        scope = self._mcp_scope()
        if scope is None:
            self.console.print("no MCP servers configured (hermes mcp add ...)", markup=False)
            return
        words = arg.split()
        if words[:1] == ["trust"] and len(words) == 2:
            from hermes_agent.mcp import pins
            from hermes_agent.mcp.tools import held_tools

            connection = scope.find(words[1])
            if connection is None:
                raise UsageError(f"no MCP server named {words[1]!r}")
            held = [t for t in connection.tools if t.name in held_tools(connection)]
            for tool in held:
                shown = " ".join((tool.description or "").split())[:300]
                self.console.print(f"{plain(tool.name)} now says: {plain(shown)}", markup=False)
            if held:
                pins.pin(connection.server.name, held)
            self.console.print(
                f"approved: {', '.join(t.name for t in held)}" if held else "nothing held",
                markup=False,
            )
            return
        from hermes_agent.mcp.tools import status_text

        lines = status_text(scope).splitlines()
        self.console.print("\n".join(plain(line) for line in lines), markup=False)
        for connection in scope.connections:
            for prompt in connection.prompts:
                about = " ".join((prompt.description or "").split())[:80]
                self.console.print(
                    f"  /{connection.server.name}:{plain(prompt.name)}  {plain(about)}",
                    markup=False,
                )

    async def cmd_reload_mcp(self, _: str) -> None:
        """Reload config.yaml's mcp_servers and reconnect every server now."""
        from hermes_agent.cli.common import load_config as reload_config

        self.setup.config = reload_config()
        if self.agent is not None:
            self.agent.config = self.setup.config
        scope = self._mcp_scope()
        if scope is None:
            self.console.print("no MCP servers configured", markup=False)
            return
        scope.manager.reload()
        if self.agent is not None:
            from hermes_agent.mcp.manager import AgentView

            self.agent.tool_source = AgentView(scope, self.events.notice)
        self.console.print("reconnecting the MCP servers; /mcp shows their state", markup=False)

    async def mcp_prompt(self, line: str) -> bool:
        """``/SERVER:PROMPT [ARG | key=value ...]``: an MCP prompt, sent as your message."""
        scope = self._mcp_scope()
        head, _, rest = line[1:].partition(" ")
        server, _, name = head.partition(":")
        connection = scope.find(server) if scope is not None else None
        prompt = next(
            (p for p in (connection.prompts if connection else []) if p.name == name), None
        )
        if connection is None or prompt is None:
            return False
        from hermes_agent.mcp.tools import _call, prompt_text

        arguments: dict[str, str] = {}
        declared = [a.name for a in prompt.arguments or []]
        pairs = [w.partition("=") for w in rest.split()]
        if rest and all(sep for _, sep, _ in pairs):
            arguments = {k: v for k, _, v in pairs}
        elif rest and declared:
            arguments = {declared[0]: rest.strip()}
        try:
            got = await _call(scope, connection.get_prompt(name, arguments), server)
        except Exception as exc:
            self.console.print(f"[red]{_shown(exc)}[/]")
            return True
        await self.turn(prompt_text(got))
        return True

    async def cmd_help(self, _: str) -> None:
        from hermes_agent.agent import commands

        self.console.print(commands.help_text(commands.CHAT) + "\n" + KEYS_HELP, markup=False)

    async def cmd_exit(self, _: str) -> str:
        return "exit"

    async def _switch(self, session_id: str, resumed: bool) -> None:
        if self.agent is not None:
            await self.agent.aclose()
            self.agent = None
        self.setup.session_id = session_id
        self.setup.resumed = resumed

    async def cmd_new(self, _: str) -> None:
        s = self.setup
        await self._switch(
            s.db.create_session(source="cli", model=s.settings.model, cwd=str(s.cwd)), False
        )
        self.console.print(f"new session [cyan]{s.session_id}[/]")

    async def cmd_resume(self, arg: str) -> None:
        if not arg:
            raise UsageError("usage: /resume ID (see /sessions)")
        session = self.setup.db.resolve(arg)
        await self._switch(session.id, True)
        self.console.print(f"resumed [cyan]{session.id}[/] ({session.message_count} messages)")

    async def cmd_model(self, arg: str) -> None:
        s = self.setup
        if not arg:
            self.console.print(f"{s.settings.model} via {s.settings.info.name}")
            return
        from dataclasses import replace

        s.settings = replace(s.settings, model=arg)
        s.db.set_model(s.session_id, arg)
        if self.agent is not None:
            await self.agent.provider.aclose()
            from hermes_agent.providers import settings as provider_settings

            self.agent.provider = provider_settings.build(s.settings)
        self.console.print(f"model: {arg} (for this session; the default stays in config.yaml)")

    async def cmd_tools(self, _: str) -> None:
        if not self.setup.tools:
            self.console.print("no tools enabled (toolsets)")
        for tool in self.setup.tools:
            summary = tool.description.split(". ")[0]
            self.console.print(f"[cyan]{tool.name}[/] [dim]({tool.toolset})[/] {summary}")

    async def cmd_usage(self, _: str) -> None:
        from hermes_agent.agent import models

        s = self.setup
        session = s.db.get_session(s.session_id)
        if session is None:
            return
        spent = self.agent.cost_usd if self.agent is not None else session.cost_usd
        cost = "unknown (model not in the price table)" if spent is None else f"${spent:.4f}"
        window = models.context_window(s.settings.model, s.config.get("model.context_length"))
        used = self.agent.estimated_prompt_tokens() if self.agent else 0
        self.console.print(
            f"tokens in {session.input_tokens:,} · out {session.output_tokens:,} · "
            f"cache read {session.cache_read_tokens:,} · "
            f"cache write {session.cache_write_tokens:,}\n"
            f"cost {cost} · context ~{used:,} of {window:,} tokens"
        )
        by: dict[str, list[float | None]] = {}
        for provider, model, reply_cost in s.db.answered_by(s.session_id):
            by.setdefault(f"{model} via {provider}", []).append(reply_cost)
        if len(by) > 1:  # Fallback providers answered some of it.
            parts = []
            for who, costs in by.items():
                known = [c for c in costs if c is not None]
                parts.append(f"{who} ×{len(costs)}" + (f" (${sum(known):.4f})" if known else ""))
            self.console.print("replies: " + ", ".join(parts), markup=False, highlight=False)

    async def cmd_compress(self, _: str) -> None:
        agent = self._agent()
        self.events.waiting("compressing…")
        try:
            await run_cancellable(agent.compress())
        finally:
            self.events.finish()

    async def cmd_title(self, arg: str) -> None:
        if not arg:
            raise UsageError("usage: /title TEXT")
        self.setup.db.set_title(self.setup.session_id, arg)
        self.console.print(f"title: {arg}")

    async def cmd_rollback(self, arg: str) -> None:
        """Put the workspace back as it was before a turn's changes: show, ask, restore."""
        from hermes_agent import checkpoints

        s = self.setup
        store = checkpoints.Store(s.cwd, checkpoints.Limits.from_config(s.config))
        which = arg.strip() or "1"
        if not (which.isascii() and which.isdigit()) or int(which) < 1:
            raise UsageError("usage: /rollback [N] (1 = the newest checkpoint, 2 = the one before)")
        checkpoint = await asyncio.to_thread(store.resolve, which)
        plan = await asyncio.to_thread(store.plan, checkpoint)
        self.console.print(checkpoints.describe_plan(plan), markup=False, highlight=False)
        if plan.empty:
            return
        answer = await self.events.ask("Restore the workspace to this checkpoint?", ["yes", "no"])
        self.events.finish()
        if (answer or "").strip().lower() not in ("y", "yes"):
            self.console.print("nothing was changed", markup=False)
            return
        delete_new = False
        if plan.new_files:
            reply = await self.events.ask(
                f"Also delete the {len(plan.new_files)} file(s) created since the checkpoint?",
                ["no", "yes"],
            )
            self.events.finish()
            delete_new = (reply or "").strip().lower() in ("y", "yes")
        plan, result = await asyncio.to_thread(store.restore, checkpoint, delete_new=delete_new)
        text = checkpoints.describe_result(plan, result)
        self.console.print(text, markup=False, highlight=False)

    async def cmd_sessions(self, _: str) -> None:
        for session in self.setup.db.list_sessions(limit=10):
            mark = "*" if session.id == self.setup.session_id else " "
            title = _shown(session.title or "")
            self.console.print(f"{mark} [cyan]{session.id}[/] {title}", markup=True)

    # --- /undo, /retry, /queue, /background, /personality ----------------------------------

    def _undo(self) -> str | None:
        """Take the last exchange out of the context (kept in state.db); its user text."""
        s = self.setup
        text = s.db.undo_last_exchange(s.session_id)
        if text is not None and self.agent is not None:
            self.agent.reload_history()
        return text

    async def cmd_undo(self, _: str) -> None:
        text = self._undo()
        if text is None:
            self.console.print("nothing to undo")
            return
        self.console.print(
            f"dropped your last message ({_shown(text.splitlines()[0][:60] if text else '')}) "
            "and its answer from the context; they stay in the session's history"
        )

    async def cmd_retry(self, _: str) -> None:
        text = self._undo()
        if not text:
            self.console.print("nothing to retry")
            return
        self.console.print(f"[dim]retrying: {_shown(text.splitlines()[0][:60])}[/]")
        await self.turn(text)

    async def cmd_queue(self, arg: str) -> None:
        """Run ``arg`` after the current answer: in the REPL nothing runs while the prompt is
        shown (lines typed during an answer wait for it anyway), so it runs now."""
        if not arg:
            raise UsageError("usage: /queue PROMPT")
        await self.turn(arg)

    async def cmd_personality(self, arg: str) -> None:
        from hermes_agent.agent.prompt import personality_command

        s = self.setup
        self.console.print(
            personality_command(s.config, s.db, s.session_id, arg), markup=False, highlight=False
        )
        if arg and self.agent is not None:
            self.agent.refresh_prompt()

    async def cmd_background(self, arg: str) -> None:
        from hermes_agent.agent.loop import Events

        if not arg:
            raise UsageError("usage: /background PROMPT")
        s = self.setup
        session_id = s.db.create_session(
            source="cli", model=s.settings.model, cwd=str(s.cwd), title=f"background: {arg[:50]}"
        )
        # Nobody answers its questions: the prompt is the user's, so dangerous commands wait
        # for an approval that cannot come and are refused, as in the gateway.
        agent = build_agent(
            config=s.config,
            settings=s.settings,
            tools=s.tools,
            db=s.db,
            session_id=session_id,
            cwd=s.cwd,
            events=Events(),
            toolsets=s.toolsets,
        )
        task = asyncio.ensure_future(self._background(agent, session_id, arg))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        self.console.print(
            f"running in the background as session [cyan]{session_id}[/]; "
            "its answer appears here when it is done"
        )

    async def _background(self, agent: Agent, session_id: str, prompt: str) -> None:
        from prompt_toolkit.application import run_in_terminal

        from hermes_agent.providers.base import ProviderError

        try:
            result = await agent.run(prompt)
            text = f"[green]✓ background session {session_id} done:[/]\n{_shown(result.text)}"
        except (ProviderError, HermesError) as exc:
            text = f"[red]✗ background session {session_id} failed: {_shown(exc)}[/]"
        finally:
            await agent.aclose()
        await run_in_terminal(lambda: self.console.print(text))
