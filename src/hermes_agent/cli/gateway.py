"""`hermes gateway`: run the agent as a service for chat platforms and the HTTP API."""

from __future__ import annotations

import argparse

from hermes_agent.errors import EXIT_FAILURE, HermesError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the agent as a long-running service: messages from the enabled platforms "
        "(gateway.platforms.*) are stored in state.db, answered per conversation, and the "
        "replies sent back. Logs go to HERMES_HOME/logs/gateway.log."
    )
    parser.set_defaults(handler=_usage, parser=parser)
    fmt = parser.formatter_class
    sub = parser.add_subparsers(dest="gateway_command", metavar="ACTION", title="actions")

    run = sub.add_parser(
        "run", help="run the gateway in the foreground until SIGTERM", formatter_class=fmt
    )
    run.add_argument(
        "--replace",
        action="store_true",
        help="stop the gateway already running for this HERMES_HOME and take over",
    )
    run.set_defaults(handler=cmd_run)

    status = sub.add_parser(
        "status", help="whether a gateway is running (exit 1 when not)", formatter_class=fmt
    )
    status.set_defaults(handler=cmd_status)

    stop = sub.add_parser(
        "stop", help="stop the running gateway (it finishes its answers first)", formatter_class=fmt
    )
    stop.set_defaults(handler=cmd_stop)


def _usage(args: argparse.Namespace) -> int:
    args.parser.print_help()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hermes_agent.gateway import runner

    return runner.run(replace=args.replace)


def cmd_status(args: argparse.Namespace) -> int:
    from hermes_agent import home
    from hermes_agent.gateway import runner

    pid = runner.running_pid()
    if pid is None:
        print(f"no gateway is running for {home.hermes_home()}")
        return EXIT_FAILURE
    print(f"gateway running (pid {pid}) for {home.hermes_home()}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from hermes_agent.cli.common import load_config
    from hermes_agent.gateway import runner

    pid = runner.running_pid()
    if pid is None:
        print("no gateway is running")
        return EXIT_FAILURE
    wait = runner.stop_wait_seconds(load_config())
    if not runner.stop_running(pid, wait):
        raise HermesError(f"the gateway (pid {pid}) did not stop within {wait:.0f} s")
    print(f"gateway stopped (pid {pid})")
    return 0
