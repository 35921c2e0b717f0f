"""`hermes mcp`: add, list, test, trust and remove MCP servers (login/logout: OAuth).

``add`` connects to the server and lists its tools before it saves anything:
a server that cannot connect is not written to config.yaml (``--no-test``
saves it anyway). Writes go through the HERMES_HOME lock like `hermes config
set`. Under managed mode (NixOS) ``add`` and ``remove`` refuse, except that
``add`` of a server the managed configuration already declares performs the
OAuth login only: that is the documented headless bootstrap on a NixOS host.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from hermes_agent.errors import EXIT_FAILURE, HermesError, UsageError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.mcp.config import ServerConfig
    from hermes_agent.mcp.manager import Connection

#: C0/C1 controls, DEL and bidi overrides: a server's names, descriptions and errors
#: may carry escape sequences that would erase or hide what the user is shown.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def plain(text: object) -> str:
    """Text from an MCP server as it may be printed: controls shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Manage the MCP servers whose tools the agent can use."
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="connect to a server, list its tools, then save it")
    add.add_argument("name", help="server name (letters, digits, - and _)")
    where = add.add_mutually_exclusive_group()
    where.add_argument("--command", help="program of a stdio server")
    where.add_argument("--url", help="URL of a Streamable HTTP (or --transport sse) server")
    add.add_argument(
        "--args", nargs=argparse.REMAINDER, default=[], help="arguments of --command (the rest)"
    )
    add.add_argument("--auth", choices=["oauth"], help="log in with OAuth 2.1 first")
    add.add_argument("--header", action="append", default=[], metavar="K=V")
    add.add_argument("--env", action="append", default=[], metavar="K=V")
    add.add_argument("--transport", choices=["http", "sse"], help="sse: a legacy SSE server")
    add.add_argument("--no-test", action="store_true", help="save without connecting first")
    add.set_defaults(handler=cmd_add)
    listing = sub.add_parser("list", help="the configured servers and their live state")
    listing.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to wait for servers (default: each one's connect_timeout)",
    )
    listing.set_defaults(handler=cmd_list)
    test = sub.add_parser("test", help="connect to one server and list its tools")
    test.add_argument("name")
    test.set_defaults(handler=cmd_test)
    trust = sub.add_parser("trust", help="approve tools whose definition changed since first use")
    trust.add_argument("name")
    trust.add_argument("--yes", action="store_true", help="approve without asking")
    trust.set_defaults(handler=cmd_trust)
    remove = sub.add_parser("remove", help="remove a server from config.yaml")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_remove)
    login = sub.add_parser("login", help="log in to an OAuth server (headless: prints a URL)")
    login.add_argument("name")
    login.set_defaults(handler=cmd_login)
    logout = sub.add_parser("logout", help="forget an OAuth server's tokens")
    logout.add_argument("name")
    logout.set_defaults(handler=cmd_logout)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} takes KEY=VALUE; got {value!r}")
        out[key.strip()] = rest
    return out


def _load() -> Config:
    from hermes_agent.cli.common import load_config

    return load_config()


def _servers(config: Config, *, include_disabled: bool = True) -> list[ServerConfig]:
    from hermes_agent.mcp.config import parse_servers

    return parse_servers(config.get("mcp_servers"), include_disabled=include_disabled)


def _find(config: Config, name: str) -> ServerConfig:
    for server in _servers(config):
        if server.name == name:
            return server
    raise UsageError(f"no MCP server named {name!r} in mcp_servers (see `hermes mcp list`)")


def _cwd(config: Config) -> str:
    from hermes_agent.agent.factory import workspace

    return str(workspace(config))


def _connect(config: Config, servers: list[ServerConfig], wait: float | None = None) -> Any:
    """A scope with just ``servers``, connected (or failed) within their connect_timeout."""
    from hermes_agent.mcp.manager import CONNECTING, get_manager

    scope = get_manager().open_scope(servers, config=config, cwd=_cwd(config), include_global=False)
    limit = max((s.connect_timeout for s in servers), default=0) + 1 if wait is None else wait
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(
        c.state == CONNECTING and c.attempts <= 1 for c in scope.connections
    ):
        time.sleep(0.02)
    return scope


def _print_tools(connection: Connection) -> None:
    from hermes_agent.mcp import pins
    from hermes_agent.mcp.tools import tool_name

    taken: set[str] = set()
    for tool in sorted(connection.tools, key=lambda t: t.name):
        name = tool_name(connection.server.name, tool.name, taken)
        taken.add(name)
        first = " ".join((tool.description or tool.title or "").split())[:90]
        mark = (
            "  [held: changed since first use]" if pins.held(connection.server.name, tool) else ""
        )
        print(f"  {name}  {plain(first)}{mark}")


def _login(server: ServerConfig, url: str) -> None:
    try:
        from hermes_agent.mcp import oauth
    except ImportError:
        raise HermesError("OAuth login is not available in this build") from None
    result = oauth.login(server.name, url)
    how = getattr(result, "how", "done")
    status = getattr(result, "status", None)
    print(f"{server.name}: logged in ({how}); {status.describe() if status else ''}".rstrip("; "))


def _resolved_url(server: ServerConfig) -> str:
    from hermes_agent.mcp import config as mcp_config

    return mcp_config.resolve_vars(server.url, server.name, "url", mcp_config.variables())


def cmd_add(args: argparse.Namespace) -> int:
    from hermes_agent.config.managed import manager, require_unmanaged
    from hermes_agent.mcp.config import parse_server

    name = args.name
    managed = manager()
    if managed is not None:
        config = _load()
        declared = {s.name: s for s in _servers(config)}
        server = declared.get(name)
        if server is not None and (args.auth == "oauth" or server.auth == "oauth") and server.url:
            # The documented bootstrap on a NixOS host: tokens only, config.yaml untouched.
            _login(server, _resolved_url(server))
            return 0
        require_unmanaged("hermes mcp add")
    if not args.command and not args.url:
        raise UsageError("give --command CMD (a stdio server) or --url URL (an HTTP server)")
    entry: dict[str, Any] = {}
    if args.command:
        entry["command"] = args.command
        if args.args:
            entry["args"] = list(args.args)
        if args.env:
            entry["env"] = _pairs(args.env, "--env")
        if args.header or args.auth or args.transport:
            raise UsageError("--header, --auth and --transport are for --url servers")
    else:
        entry["url"] = args.url
        if args.header:
            entry["headers"] = _pairs(args.header, "--header")
        if args.auth:
            entry["auth"] = args.auth
        if args.transport:
            entry["transport"] = args.transport
        if args.env or args.args:
            raise UsageError("--env and --args are for --command servers")
    server, problems = parse_server(name, entry)
    if server is None:
        raise UsageError("; ".join(f"{k}: {m}" for k, m in problems))
    config = _load()
    if name in (config.get("mcp_servers") or {}):
        raise UsageError(f"an MCP server named {name!r} exists; `hermes mcp remove {name}` first")
    if server.auth == "oauth":
        _login(server, _resolved_url(server))
    if not args.no_test:
        scope = _connect(config, [server])
        connection = scope.connections[0]
        try:
            if connection.state != "ready":
                raise HermesError(
                    f"{connection.status().line()}\nnot saved (fix it, or add --no-test to save "
                    "anyway)"
                )
            # Saved before the listing: `hermes mcp add ... | head` closes stdout while the
            # tools print, and a BrokenPipeError then ended the command (exit 0) unsaved.
            _save_entry(name, entry)
            print(f"{name}: connected, {len(connection.tools)} tools:")
            _print_tools(connection)
        finally:
            scope.close()
    else:
        _save_entry(name, entry)
    from hermes_agent import home

    print(f"saved mcp_servers.{name} in {home.config_path()}")
    return 0


def _save_entry(name: str, entry: dict[str, Any] | None) -> None:
    """Set (or with None remove) ``mcp_servers.NAME`` under the home lock, atomically."""
    from hermes_agent.config import loader, merge, schema
    from hermes_agent.home_lock import home_lock

    with home_lock("hermes mcp"):
        user, _ = loader.read_for_update()
        if entry is None:
            merge.unset_path(user, f"mcp_servers.{name}")
        else:
            servers = user.get("mcp_servers")
            if not isinstance(servers, dict):
                user["mcp_servers"] = servers = {}
            servers[name] = entry
        fatal = [(k, m) for k, m in schema.find_problems(user) if m != schema.UNKNOWN_KEY]
        if fatal:
            raise UsageError("; ".join(f"{k}: {m}" for k, m in fatal))
        loader.save_user_config(user)


def cmd_remove(args: argparse.Namespace) -> int:
    from hermes_agent.config.managed import require_unmanaged
    from hermes_agent.mcp import pins

    require_unmanaged("hermes mcp remove")
    config = _load()
    if args.name not in (config.get("mcp_servers") or {}):
        raise UsageError(f"no MCP server named {args.name!r} in mcp_servers")
    _save_entry(args.name, None)
    pins.forget(args.name)
    print(f"removed mcp_servers.{args.name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    config = _load()
    servers = _servers(config)
    if not servers:
        print("no MCP servers configured (hermes mcp add NAME --command ... | --url ...)")
        return 0
    enabled = [s for s in servers if s.enabled]
    scope = _connect(config, enabled, args.wait) if enabled else None
    try:
        for server in servers:
            connection = scope.find(server.name) if scope is not None else None
            line = connection.status().line() if connection else f"{server.name}: disabled"
            flags = " [required]" if server.required else ""
            print(f"{line}{flags}\n  {server.describe()}")
            if server.auth == "oauth":
                print(f"  oauth: {_oauth_status(server.name)}")
    finally:
        if scope is not None:
            scope.close()
    return 0


def _oauth_status(name: str) -> str:
    try:
        from hermes_agent.mcp import oauth

        return str(oauth.status(name).describe())
    except Exception as exc:
        return f"unknown ({exc})"


def cmd_test(args: argparse.Namespace) -> int:
    config = _load()
    server = _find(config, args.name)
    from dataclasses import replace

    scope = _connect(config, [replace(server, enabled=True)])
    connection = scope.connections[0]
    try:
        print(plain(connection.status().line()))
        if connection.state != "ready":
            from hermes_agent import home

            if server.stdio:
                print(f"log: {home.mcp_log_path(server.name)}", file=sys.stderr)
            return EXIT_FAILURE
        _print_tools(connection)
        return 0
    finally:
        scope.close()


def cmd_trust(args: argparse.Namespace) -> int:
    from hermes_agent.mcp import pins

    config = _load()
    server = _find(config, args.name)
    scope = _connect(config, [server])
    connection = scope.connections[0]
    try:
        if connection.state != "ready":
            raise HermesError(plain(connection.status().line()))
        held = [t for t in connection.tools if pins.held(server.name, t)]
        if not held:
            print(f"{server.name}: no tool changed since its first use")
            return 0
        if args.yes:
            # Approve before printing: `... --yes | head` closing stdout must not leave the
            # command exiting 0 with nothing approved.
            pins.pin(server.name, held)
        for tool in held:
            description = " ".join((tool.description or tool.title or "").split())
            print(f"{plain(tool.name)} changed; its definition now:\n  {plain(description[:500])}")
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("confirm with --yes (no terminal to ask)")
            answer = input(f"Approve the new definition of {len(held)} tool(s)? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing changed")
                return EXIT_FAILURE
            pins.pin(server.name, held)
        print(f"approved: {plain(', '.join(t.name for t in held))}")
        return 0
    finally:
        scope.close()


def cmd_login(args: argparse.Namespace) -> int:
    config = _load()
    server = _find(config, args.name)
    if not server.url or server.auth != "oauth":
        raise UsageError(f"{args.name} is not an auth: oauth server")
    _login(server, _resolved_url(server))
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    try:
        from hermes_agent.mcp import oauth
    except ImportError:
        raise HermesError("OAuth is not available in this build") from None
    from hermes_agent import home

    try:
        home.mcp_token_path(args.name)  # A name that could leave mcp-tokens/ is bad input.
    except HermesError as exc:
        raise UsageError(str(exc)) from None
    removed = oauth.logout(args.name)
    print(f"{args.name}: {'tokens removed' if removed else 'was not logged in'}")
    return 0
