"""``mcp_servers.<name>``: what one MCP server entry may say, checked once, typed.

A server is either **stdio** (``command``, ``args``, ``env``: hermes starts
it, confined like every command of the agent) or **HTTP** (``url``,
``headers``; ``transport: sse`` for a server that only speaks the legacy
SSE transport). Exactly one of ``command`` and ``url``.

``${VAR}`` in ``env``, ``url`` and ``headers`` is resolved by
:func:`resolve_vars` when the server is connected (not when the config is
loaded): from ``HERMES_HOME/.env`` first, then the environment. An unset
variable is an error naming the variable and the server. The NixOS module
renders secret header values as ``${VAR}`` and relies on this function.

Every problem is reported with its dotted key (``mcp_servers.gh.timeout``),
so ``hermes config check`` lists them like any other bad key.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_agent.errors import ConfigError

#: A server's name: it becomes part of tool names (``mcp__<name>__<tool>``).
#: A server name: it is the middle of `mcp__<server>__<tool>`. No '__' inside and no '_' at
#: its end, so the first '__' after the prefix always ends the server's part and two servers
#: can never produce the same tool name (`x_` + `y` and `x` + `_y` would both be mcp__x___y).
NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,38}[A-Za-z0-9-])?$")
POLICIES = ("auto", "ask", "deny")
TRANSPORTS = ("http", "sse")
PROTOCOLS = ("auto", "legacy", "2026-07-28")

#: The message of an unknown key: the same words as config.yaml's (a warning, not an error).
UNKNOWN = "unknown key"
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECT_TIMEOUT = 60.0
DEFAULT_MAX_CALL_TIME = 3600.0

_KEYS = {
    "command",
    "args",
    "env",
    "url",
    "headers",
    "transport",
    "auth",
    "enabled",
    "required",
    "timeout",
    "max_call_time",
    "connect_timeout",
    "tools",
    "approval",
    "tool_approval",
    "sampling",
    "sandbox",
    "protocol",
    "oauth",
}
_SAMPLING_KEYS = {"enabled", "model", "max_tokens_cap", "timeout", "max_rpm"}
_TOOLS_KEYS = {"include", "exclude"}
_SANDBOX_KEYS = {"writable", "network"}


@dataclass(frozen=True)
class Sampling:
    """Whether and how a server may ask hermes' model for a completion."""

    enabled: bool = False
    #: Model id for sampling (empty: the session's configured model).
    model: str = ""
    max_tokens_cap: int = 1024
    timeout: float = 60.0
    max_rpm: int = 10


@dataclass(frozen=True)
class ServerConfig:
    """One checked ``mcp_servers`` entry (``${VAR}`` still unresolved)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: str = "http"
    auth: str = ""
    enabled: bool = True
    required: bool = False
    #: Idle time a call may take without progress, in seconds.
    timeout: float = DEFAULT_TIMEOUT
    #: Absolute cap on one call, progress or not.
    max_call_time: float = DEFAULT_MAX_CALL_TIME
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: ``auto``, ``ask`` or ``deny``; empty: the default (see :func:`policy_for`).
    approval: str = ""
    tool_approval: Mapping[str, str] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)
    writable: tuple[str, ...] = ()
    #: None: the global ``sandbox.network``.
    network: bool | None = None
    #: ``auto`` probes ``server/discover``; ``legacy`` uses the initialize handshake.
    protocol: str = ""
    #: The ``oauth`` block (see :mod:`hermes_agent.mcp.oauth_settings`), ``${VAR}`` unresolved.
    oauth: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stdio(self) -> bool:
        return bool(self.command)

    @property
    def mode(self) -> str:
        """The SDK's ``mode``: the handshake era unless a modern one is safe and wanted.

        A stdio server is never woken with a ``server/discover`` probe it may not
        understand (most speak 2025-era protocol only), and a server that may push
        sampling requests needs the handshake era, where servers can push.
        """
        if self.protocol:
            return self.protocol
        if self.stdio or self.sampling.enabled:
            return "legacy"
        return "auto"

    def wants(self, tool: str) -> bool:
        """Whether ``tool`` passes ``tools.include``/``tools.exclude`` (glob patterns)."""
        from fnmatch import fnmatchcase

        if self.include and not any(fnmatchcase(tool, p) for p in self.include):
            return False
        return not any(fnmatchcase(tool, p) for p in self.exclude)

    def describe(self) -> str:
        """Where the server is, for lists (no header or env values: they may be secrets)."""
        if self.stdio:
            return " ".join([self.command, *self.args])
        return f"{self.url} ({self.transport}{', oauth' if self.auth else ''})"


def _number(value: Any, key: str, problems: list[tuple[str, str]], minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append((key, f"must be a number; got {value!r}"))
        return minimum
    if value < minimum:
        problems.append((key, f"must be at least {minimum:g}; got {value}"))
    return float(value)


def _strings(value: Any, key: str, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        problems.append((key, "must be a list of strings"))
        return ()
    return tuple(str(v) for v in value)


def _string_map(value: Any, key: str, problems: list[tuple[str, str]]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append((key, "must be a mapping of names to strings"))
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or isinstance(v, dict | list) or v is None:
            problems.append((f"{key}.{k}", "must be a string"))
            continue
        out[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _bool(value: Any, key: str, problems: list[tuple[str, str]]) -> bool:
    if not isinstance(value, bool):
        problems.append((key, f"must be true or false; got {value!r}"))
        return False
    return value


def parse_server(name: Any, raw: Any) -> tuple[ServerConfig | None, list[tuple[str, str]]]:
    """One entry checked: ``(server, [])``, or ``(None, [(dotted key, problem), ...])``."""
    prefix = f"mcp_servers.{name}"
    problems: list[tuple[str, str]] = []
    if not isinstance(name, str) or not NAME_RE.match(name) or "__" in name:
        problems.append(
            (
                prefix,
                "a server name is 1-40 letters, digits, '-' or '_' (no '__', not ending in '_'), "
                "starting with a letter or digit: it becomes part of tool names",
            )
        )
        return None, problems
    if not isinstance(raw, dict):
        problems.append((prefix, f"expected a mapping (command or url...); got {raw!r}"))
        return None, problems
    # Unknown keys are warnings, as everywhere in config.yaml (a newer release's keys).
    unknown = [(f"{prefix}.{key}", UNKNOWN) for key in sorted(set(raw) - _KEYS, key=str)]
    command = raw.get("command")
    url = raw.get("url")
    if bool(command) == bool(url):
        problems.append(
            (prefix, "give exactly one of command (a stdio server) or url (an HTTP server)")
        )
    if command is not None and not isinstance(command, str):
        problems.append((f"{prefix}.command", "must be a string"))
    if url is not None and not isinstance(url, str):
        problems.append((f"{prefix}.url", "must be a string"))
    elif isinstance(url, str) and url and not re.match(r"^(https?://|\$\{)", url):
        problems.append((f"{prefix}.url", f"must start with http:// or https://; got {url!r}"))
    args = _strings(raw.get("args"), f"{prefix}.args", problems)
    env = _string_map(raw.get("env"), f"{prefix}.env", problems)
    headers = _string_map(raw.get("headers"), f"{prefix}.headers", problems)
    if command and (raw.get("headers") or raw.get("auth") or raw.get("transport")):
        problems.append(
            (prefix, "headers, auth and transport are for HTTP servers (url), not command")
        )
    if url and (raw.get("args") or raw.get("env")):
        problems.append((prefix, "args and env are for stdio servers (command), not url"))
    transport = raw.get("transport") or "http"
    if transport not in TRANSPORTS:
        problems.append((f"{prefix}.transport", f"must be one of {', '.join(TRANSPORTS)}"))
    auth = raw.get("auth") or ""
    if auth not in ("", "oauth"):
        problems.append((f"{prefix}.auth", f"must be oauth (or absent); got {auth!r}"))
    from hermes_agent.mcp import oauth_settings

    oauth = raw.get("oauth") or {}
    problems.extend(oauth_settings.problems(oauth, f"{prefix}.oauth"))
    if oauth and auth != "oauth":
        problems.append((f"{prefix}.oauth", "OAuth settings need auth: oauth"))
    protocol = raw.get("protocol") or ""
    if protocol and protocol not in PROTOCOLS:
        problems.append((f"{prefix}.protocol", f"must be one of {', '.join(PROTOCOLS)}"))
    enabled = _bool(raw.get("enabled", True), f"{prefix}.enabled", problems)
    required = _bool(raw.get("required", False), f"{prefix}.required", problems)
    timeout = _number(raw.get("timeout", DEFAULT_TIMEOUT), f"{prefix}.timeout", problems, 1)
    connect = _number(
        raw.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        f"{prefix}.connect_timeout",
        problems,
        1,
    )
    cap = _number(
        raw.get("max_call_time", max(DEFAULT_MAX_CALL_TIME, timeout)),
        f"{prefix}.max_call_time",
        problems,
        1,
    )
    tools = raw.get("tools") or {}
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    if not isinstance(tools, dict):
        problems.append((f"{prefix}.tools", "must be a mapping with include and/or exclude"))
    else:
        unknown += [
            (f"{prefix}.tools.{k}", UNKNOWN) for k in sorted(set(tools) - _TOOLS_KEYS, key=str)
        ]
        include = _strings(tools.get("include"), f"{prefix}.tools.include", problems)
        exclude = _strings(tools.get("exclude"), f"{prefix}.tools.exclude", problems)
    approval = raw.get("approval") or ""
    if approval and approval not in POLICIES:
        problems.append((f"{prefix}.approval", f"must be one of {', '.join(POLICIES)}"))
    tool_approval = _string_map(raw.get("tool_approval"), f"{prefix}.tool_approval", problems)
    for tool, policy in tool_approval.items():
        if policy not in POLICIES:
            problems.append(
                (f"{prefix}.tool_approval.{tool}", f"must be one of {', '.join(POLICIES)}")
            )
    sampling = _sampling(raw.get("sampling"), f"{prefix}.sampling", problems, unknown)
    writable: tuple[str, ...] = ()
    network: bool | None = None
    box = raw.get("sandbox") or {}
    if not isinstance(box, dict):
        problems.append((f"{prefix}.sandbox", "must be a mapping with writable and/or network"))
    else:
        unknown += [
            (f"{prefix}.sandbox.{k}", UNKNOWN) for k in sorted(set(box) - _SANDBOX_KEYS, key=str)
        ]
        writable = _strings(box.get("writable"), f"{prefix}.sandbox.writable", problems)
        if "network" in box:
            network = _bool(box["network"], f"{prefix}.sandbox.network", problems)
    unknown += [p for p in problems if p[1] == UNKNOWN]  # Also the oauth block's.
    problems = [p for p in problems if p[1] != UNKNOWN]
    if problems:
        return None, problems + unknown
    return (
        ServerConfig(
            name=name,
            command=str(command or ""),
            args=args,
            env=env,
            url=str(url or ""),
            headers=headers,
            transport=str(transport),
            auth=str(auth),
            enabled=enabled,
            required=required,
            timeout=timeout,
            max_call_time=max(cap, timeout),
            connect_timeout=connect,
            include=include,
            exclude=exclude,
            approval=str(approval),
            tool_approval=tool_approval,
            sampling=sampling,
            writable=writable,
            network=network,
            protocol=str(protocol),
            oauth=dict(oauth),
        ),
        unknown,
    )


def _sampling(
    raw: Any, key: str, problems: list[tuple[str, str]], unknown: list[tuple[str, str]]
) -> Sampling:
    if raw is None:
        return Sampling()
    if not isinstance(raw, dict):
        problems.append((key, "must be a mapping (enabled, model, max_tokens_cap, ...)"))
        return Sampling()
    unknown += [(f"{key}.{name}", UNKNOWN) for name in sorted(set(raw) - _SAMPLING_KEYS, key=str)]
    model = raw.get("model") or ""
    if not isinstance(model, str):
        problems.append((f"{key}.model", "must be a string"))
    defaults = Sampling()
    return Sampling(
        enabled=_bool(raw.get("enabled", False), f"{key}.enabled", problems),
        model=str(model),
        max_tokens_cap=int(
            _number(
                raw.get("max_tokens_cap", defaults.max_tokens_cap),
                f"{key}.max_tokens_cap",
                problems,
                1,
            )
        ),
        timeout=_number(raw.get("timeout", defaults.timeout), f"{key}.timeout", problems, 1),
        max_rpm=int(_number(raw.get("max_rpm", defaults.max_rpm), f"{key}.max_rpm", problems, 1)),
    )


def find_problems(servers: Any) -> list[tuple[str, str]]:
    """Every problem in a ``mcp_servers`` mapping, as ``(dotted key, problem)`` pairs."""
    if servers is None:
        return []
    if not isinstance(servers, dict):
        return [("mcp_servers", "must be a mapping of server names to definitions")]
    problems: list[tuple[str, str]] = []
    for name, raw in servers.items():
        problems.extend(parse_server(name, raw)[1])
    return problems


def servers_from(config: Any) -> list[ServerConfig]:
    """The enabled servers of a configuration (a :class:`Config` or a plain mapping).

    Raises :class:`ConfigError` listing every problem: a server that is
    misconfigured must not silently be left out (the agent would then claim
    tools it does not have).
    """
    raw = config.get("mcp_servers") if hasattr(config, "get") else None
    return parse_servers(raw)


def parse_servers(raw: Any, *, include_disabled: bool = False) -> list[ServerConfig]:
    problems = [(k, m) for k, m in find_problems(raw) if m != UNKNOWN]
    if problems:
        raise ConfigError([f"{key}: {message}" for key, message in problems])
    servers = [parse_server(name, entry)[0] for name, entry in (raw or {}).items()]
    return [s for s in servers if s is not None and (include_disabled or s.enabled)]


def any_enabled(config: Any) -> bool:
    """Cheap check (no parsing) whether MCP must be loaded at all."""
    raw = config.get("mcp_servers")
    if not isinstance(raw, dict):
        return False
    return any(not isinstance(v, dict) or v.get("enabled", True) is not False for v in raw.values())


# --- ${VAR} ---------------------------------------------------------------------------


def variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where ``${VAR}`` is looked up: the environment, with ``HERMES_HOME/.env`` over it.

    ``.env`` is read fresh at each connect, so a token rotated in ``.env`` (by
    hand, or by the NixOS activation) is used by the next reconnect.
    """
    import os

    from hermes_agent import home
    from hermes_agent.config import envfile

    found = dict(os.environ if environ is None else environ)
    # An unreadable .env: `hermes config check` reports it.
    with contextlib.suppress(Exception):
        found.update(envfile.read_env_file(home.env_path()).values)
    return found


def resolve_vars(value: str, server: str, key: str, environ: Mapping[str, str]) -> str:
    """``value`` with ``${VAR}`` replaced (``$$`` is a literal ``$``).

    Raises :class:`ConfigError` naming the variable and the server when a
    variable is unset. Public: the NixOS module renders secret header values as
    ``${VAR}`` and relies on this resolution.
    """
    from hermes_agent.config.loader import expand_vars

    try:
        return expand_vars(value, environ, f"mcp_servers.{server}.{key}")
    except ConfigError as exc:
        raise ConfigError(
            [
                p + f" (needed to connect MCP server {server!r}; set it in HERMES_HOME/.env)"
                for p in exc.problems
            ]
        ) from None


def resolve_map(
    values: Mapping[str, str], server: str, key: str, environ: Mapping[str, str]
) -> dict[str, str]:
    """Every value of ``env`` or ``headers`` resolved; every unset variable reported."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for name, value in values.items():
        try:
            out[name] = resolve_vars(value, server, f"{key}.{name}", environ)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return out


def policy_for(server: ServerConfig, tool: str, approvals_mode: str) -> str:
    """The approval policy of one tool: per-tool, else per-server, else the default.

    The default is ``ask`` (a server's tools act with the user's credentials on
    services hermes cannot confine), except under ``approvals.mode: off``,
    which the user chose to mean "run without asking": there it is ``auto``.
    ``deny`` set anywhere explicit always holds.
    """
    explicit = server.tool_approval.get(tool) or server.approval
    if explicit:
        return explicit
    return "auto" if approvals_mode == "off" else "ask"
