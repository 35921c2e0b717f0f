"""`hermes`: the command-line entry point.

Start-up is part of the product (`hermes version` in a few tens of
milliseconds), so this module imports only argparse. Each command lives in
its own module, listed in ``COMMANDS`` with its one-line help; only the module
of the command being run is imported, and it adds its own arguments through
``configure(parser)``, setting ``handler`` to the function that runs it.

Errors: a :class:`~hermes_agent.errors.HermesError` becomes ``hermes:
<message>`` on stderr and its exit code; nothing the user can cause ends in a
traceback (set ``HERMES_DEBUG=1`` to see one for a genuine bug).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

# Not `from typing import TYPE_CHECKING`: importing typing costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

#: name -> (module, one-line help). A command appears here only once it works.
COMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("hermes_agent.cli.chat", "talk to the agent (interactive, or once with -q)"),
    "gateway": (
        "hermes_agent.cli.gateway",
        "run the agent as a service for chat platforms and the HTTP API",
    ),
    "acp": (
        "hermes_agent.acp.server",
        "serve the agent to an editor over the Agent Client Protocol (as hermes-acp)",
    ),
    "setup": ("hermes_agent.cli.setup", "choose a provider, API key, model and workspace"),
    "config": ("hermes_agent.cli.config", "show, check and change the configuration"),
    "sessions": (
        "hermes_agent.cli.sessions",
        "list, search, show, export and delete past conversations",
    ),
    "skills": ("hermes_agent.cli.skills", "list, show, install and remove skills"),
    "cron": ("hermes_agent.cli.cron", "schedule prompts for the agent to run (jobs in cron/)"),
    "tools": ("hermes_agent.cli.tools", "list the agent's tools and why each is on or off"),
    "mcp": ("hermes_agent.cli.mcp", "add, list, test and remove MCP servers (and log in)"),
    "checkpoints": (
        "hermes_agent.cli.checkpoints",
        "list, compare and restore checkpoints (undo the agent's changes)",
    ),
    "sandbox": (
        "hermes_agent.cli.sandbox",
        "show what confines the agent's commands, and check that it holds",
    ),
    "deploy": (
        "hermes_agent.cli.deploy",
        "apply a NixOS deployment spec (used by services.hermes-agent)",
    ),
    "doctor": ("hermes_agent.cli.doctor", "check the installation and say what to fix"),
    "status": ("hermes_agent.cli.status", "the gateway, its platforms, next jobs, today's use"),
    "logs": ("hermes_agent.cli.logs", "show the gateway, ACP, approvals or an MCP server's log"),
    "version": ("hermes_agent.cli.version", "show version, Python, HERMES_HOME, install method"),
}

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in hermes, not a user error.


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter without ``import shutil``.

    argparse builds a formatter for every ``add_argument`` and the stock one
    imports shutil (which pulls in bz2 and lzma) to measure the terminal: a
    few milliseconds on every start. ``os.get_terminal_size`` answers the same.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s own arguments are loaded."""
    from hermes_agent import __version__

    parser = argparse.ArgumentParser(
        prog="hermes",
        formatter_class=HelpFormatter,
        description="hermes: a personal AI agent for your terminal, chat apps and editor.",
        epilog="Run `hermes COMMAND --help` for a command's options. Without a command, "
        "`hermes` is `hermes chat` (in a terminal, or with chat options: hermes -q TEXT). "
        "State lives in HERMES_HOME (default ~/.hermes).",
    )
    parser.add_argument("--version", action="version", version=f"hermes-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module, help_text) in COMMANDS.items():
        description = help_text[:1].upper() + help_text[1:] + "."
        child = sub.add_parser(
            name, help=help_text, description=description, formatter_class=HelpFormatter
        )
        if name == command:
            importlib.import_module(module).configure(child)
    return parser


#: The options of `hermes` itself; every other option before a command is `hermes chat`'s.
OWN_OPTIONS = ("--help", "--version")


def _starts_with_chat_option(argv: Sequence[str]) -> bool:
    """Whether ``argv`` opens with an option of `hermes chat` (`hermes -q hi`).

    Bare `hermes` is `hermes chat`, so its options are too. ``-h`` and what
    argparse takes for ``--help``/``--version`` (an unambiguous prefix) stay
    `hermes`'s own: their answers stay as fast as ever.
    """
    if not argv or argv[0] in ("-", "--") or not argv[0].startswith("-"):
        return False
    first = argv[0].split("=", 1)[0]
    if first.startswith("--"):
        return not any(option.startswith(first) for option in OWN_OPTIONS)
    return not first.startswith("-h")


def _command_in(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list and sys.stdin.isatty() and sys.stdout.isatty():
        args_list = ["chat"]  # Bare `hermes` in a terminal: talk, as the original does.
    elif _starts_with_chat_option(args_list):
        args_list = ["chat", *args_list]  # `hermes -q hi` is `hermes chat -q hi`.
    parser = build_parser(_command_in(args_list))
    args = parser.parse_args(args_list)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    return int(handler(args) or 0)


def finish(work: Callable[[], int]) -> NoReturn:
    """Run a command body and exit, mapping every failure to a message and a status.

    Shared by `hermes` and `hermes-agent` so both report errors the same way.
    """
    from hermes_agent.errors import HermesError

    try:
        code = work()
    except HermesError as exc:
        print(f"hermes: {_redacted(str(exc))}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("\nhermes: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # `hermes config show | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except Exception as exc:
        if os.environ.get("HERMES_DEBUG"):
            raise
        print(
            f"hermes: internal error: {type(exc).__name__}: {_redacted(str(exc))}\n"
            "This is a bug in hermes. Run again with HERMES_DEBUG=1 for the traceback "
            "and report it.",
            file=sys.stderr,
        )
        code = EXIT_INTERNAL
    sys.exit(code)


def _redacted(message: str) -> str:
    """An error message as it may be shown: it can quote a provider's answer or a file."""
    from hermes_agent.redact import redact

    return redact(message)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of `hermes`."""
    finish(lambda: run(argv))


if __name__ == "__main__":
    main()
