"""`hermes logs [gateway|acp|approvals|mcp NAME] [-f] [-n N]`: show hermes' logs, redacted.

The work is in :mod:`hermes_agent.logfiles`; this module parses the command
line and prints. A missing log is a one-line message and exit status 1; a
server name that is not a plain name is refused (status 2); Ctrl-C while
following ends with status 0, because that is how following is meant to end.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the last lines of one of hermes' logs (under HERMES_HOME/logs), every line "
        "redacted again: gateway (the default), acp, approvals (the audit log of command "
        "approvals), or mcp NAME (the stderr of one MCP server)."
    )
    parser.add_argument(
        "log",
        nargs="?",
        default="gateway",
        choices=("gateway", "acp", "approvals", "mcp"),
        help="which log (default: gateway)",
    )
    parser.add_argument("name", nargs="?", help="the MCP server's name (with `mcp`)")
    parser.add_argument(
        "-n", "--lines", type=_count, default=50, metavar="N", help="how many lines (default 50)"
    )
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines as they are written (Ctrl-C ends)",
    )
    parser.set_defaults(handler=cmd_logs)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of lines: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the number of lines cannot be negative")
    return value


def cmd_logs(args: argparse.Namespace) -> int:
    from hermes_agent import logfiles
    from hermes_agent.errors import HermesError

    path = logfiles.log_path(args.log, args.name)
    try:
        fd = logfiles.open_log(path)
    except HermesError as exc:
        message = str(exc)
        if args.log == "mcp" and "no log" in message:
            known = logfiles.mcp_servers_with_logs()
            message += (
                f" (servers with a log: {', '.join(known)})"
                if known
                else " (no MCP server has written a log yet)"
            )
        elif "no log" in message:
            message += f" (nothing has written the {args.log} log in this HERMES_HOME yet)"
        raise HermesError(message, exc.exit_code) from None
    out = sys.stdout
    try:
        lines, end = logfiles.last_lines(fd, args.lines)
        if lines:
            out.write(logfiles.clean("\n".join(lines)) + "\n")
        out.flush()
        if not args.follow:
            return 0
        # Redacted across lines, as the lines shown first were (a PEM key, base64 wrapped
        # at 76 columns): each line alone would show a key's body. Lines that could be
        # part of such a block wait for the next line, or for a pause in the writing.
        from hermes_agent.redact import LogRedactor

        redactor = LogRedactor()

        def show(text: str) -> None:
            if text:
                out.write(logfiles.visible(text))
                out.flush()

        try:
            for line in logfiles.follow(path, fd, end, on_idle=lambda: show(redactor.finish())):
                show(redactor.feed(line + "\n"))
        except KeyboardInterrupt:
            show(redactor.finish())
            return 0
        return 0
    finally:
        if not args.follow:
            import os

            os.close(fd)
