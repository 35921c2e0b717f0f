"""`hermes gateway`: run the agent as a service for chat platforms and the HTTP API."""

from __future__ import annotations

import argparse
from typing import Any

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

    _configure_service(sub, fmt)
    _configure_pair(sub, fmt)


def _configure_service(sub: argparse._SubParsersAction[argparse.ArgumentParser], fmt: Any) -> None:
    install = sub.add_parser(
        "install",
        help="run the gateway as a service: a systemd user unit (Linux) or launchd agent (macOS)",
        formatter_class=fmt,
        description=(
            "Write ~/.config/systemd/user/hermes-gateway.service (Linux) or "
            "~/Library/LaunchAgents/ai.hermes.gateway.plist (macOS) running this hermes with "
            "`gateway run --replace` for this HERMES_HOME, then enable and start it. Secrets "
            "stay in HERMES_HOME/.env; installing again replaces the service."
        ),
    )
    install.add_argument(
        "--no-start", action="store_true", help="only write the file; print how to start it"
    )
    install.set_defaults(handler=cmd_install)
    uninstall = sub.add_parser(
        "uninstall",
        help="stop and remove the service that `install` wrote (exit 1 when none)",
        formatter_class=fmt,
    )
    uninstall.set_defaults(handler=cmd_uninstall)


def _configure_pair(sub: argparse._SubParsersAction[argparse.ArgumentParser], fmt: Any) -> None:
    pair = sub.add_parser(
        "pair",
        help="let new chat users in: list pairing requests, approve codes, revoke users",
        formatter_class=fmt,
        description=(
            "A user whom no allow-list (gateway.platforms.NAME.allowed_users/allowed_chats) "
            "lets in gets a pairing code from the bot; approving the code lets that user in."
        ),
    )
    pair.set_defaults(handler=cmd_pair_list)
    actions = pair.add_subparsers(dest="pair_command", metavar="ACTION", title="actions")
    listing = actions.add_parser(
        "list", help="pending pairing codes and paired users", formatter_class=fmt
    )
    listing.set_defaults(handler=cmd_pair_list)
    approve = actions.add_parser("approve", help="let the user with CODE in", formatter_class=fmt)
    approve.add_argument("code", help="the code the bot gave the user, e.g. ABCD-EFGH")
    approve.set_defaults(handler=cmd_pair_approve)
    revoke = actions.add_parser("revoke", help="remove a paired user", formatter_class=fmt)
    revoke.add_argument("platform", help="platform name, e.g. telegram")
    revoke.add_argument("user", help="the user's id on that platform (see `pair list`)")
    revoke.set_defaults(handler=cmd_pair_revoke)


def cmd_pair_list(args: argparse.Namespace) -> int:
    import time

    from hermes_agent.gateway.access import PAIRING_TTL_SECONDS
    from hermes_agent.state.db import StateDB

    with StateDB() as db:
        db.drop_pairing_requests(time.time() - PAIRING_TTL_SECONDS)
        requests = db.pairing_requests()
        paired = db.paired_users()
    if not requests and not paired:
        print("no pairing requests and no paired users")
        return 0
    if requests:
        print("waiting for approval:")
        for r in requests:
            name = f" ({r.user_name})" if r.user_name else ""
            age = int((time.time() - r.created_at) // 60)
            print(f"  {r.code}  {r.platform} user {r.user_id}{name}, {age} min ago")
    if paired:
        print("paired users:")
        for platform, user_id, user_name, _approved in paired:
            name = f" ({user_name})" if user_name else ""
            print(f"  {platform} user {user_id}{name}")
    return 0


def cmd_pair_approve(args: argparse.Namespace) -> int:
    from hermes_agent.errors import UsageError
    from hermes_agent.gateway.access import approve
    from hermes_agent.state.db import StateDB

    with StateDB() as db:
        request = approve(db, args.code)
    if request is None:
        raise UsageError(
            f"no pairing request has the code {args.code!r} (codes expire after an hour; "
            "see `hermes gateway pair list`)"
        )
    name = f" ({request.user_name})" if request.user_name else ""
    print(f"approved: {request.platform} user {request.user_id}{name} can talk to the agent now")
    return 0


def cmd_pair_revoke(args: argparse.Namespace) -> int:
    from hermes_agent.state.db import StateDB

    with StateDB() as db:
        removed = db.revoke_pairing(args.platform, args.user)
    if not removed:
        print(f"{args.platform} user {args.user} was not paired")
        return EXIT_FAILURE
    print(f"revoked: {args.platform} user {args.user} is no longer let in by pairing")
    return 0


def _usage(args: argparse.Namespace) -> int:
    args.parser.print_help()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hermes_agent.gateway import runner

    return runner.run(replace=args.replace)


def cmd_install(args: argparse.Namespace) -> int:
    from hermes_agent.gateway import service

    return service.install(start=not args.no_start)


def cmd_uninstall(args: argparse.Namespace) -> int:
    from hermes_agent.gateway import service

    return service.uninstall()


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
