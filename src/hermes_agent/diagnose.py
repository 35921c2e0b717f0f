"""What can be wrong with an installation, checked, each finding with what to do.

`hermes doctor` prints these; the module sits below the front ends so that
ACP or the gateway could run the same checks. Each check returns a
:class:`Finding` whose status is ``ok``, ``warn`` (works, but look at it),
``fail`` (something the user must fix) or ``skip`` (not checked, and why).

Rules the checks follow:

- Secrets are never read into a message: keys are reported by *name* and
  where they come from (``.env`` or the environment), never by value, and
  every text leaving :func:`run` passes redaction anyway (a provider's error
  body may quote what it was sent).
- Nothing is repaired or created: state.db is opened read-only (no
  migration, no index rebuild), HERMES_HOME is not created, no file of
  hermes' is written. A diagnosis must not change what it diagnoses. (MCP
  servers started for their check write their own logs, as in any session.)
- Network checks are the cheapest call each service has (``GET /models``)
  with a short timeout, all at once in threads, under one deadline;
  ``network=False`` skips them and says so.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)

#: Default timeout of one network check, in seconds.
NETWORK_TIMEOUT = 5.0
#: Below this much free space on HERMES_HOME's file system: fail (state.db and logs
#: cannot grow, an atomic write of config.yaml may fail half-way).
DISK_FAIL_BYTES = 64 * 1024 * 1024
#: Below this much: warn.
DISK_WARN_BYTES = 1024 * 1024 * 1024
#: A state.db larger than this gets a hint about pruning old sessions.
DB_LARGE_BYTES = 1024 * 1024 * 1024

#: The secrets each chat platform needs, as groups: every group must have one of its
#: names set. Kept here (not read from the adapters) so the check imports no platform
#: library; tests/test_doctor.py holds it to the adapters' own constants.
PLATFORM_SECRETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "api_server": (("API_SERVER_KEY",),),
    "telegram": (("TELEGRAM_BOT_TOKEN",),),
    "discord": (("DISCORD_BOT_TOKEN",),),
    "slack": (("SLACK_BOT_TOKEN",), ("SLACK_APP_TOKEN",)),
    "matrix": (("MATRIX_ACCESS_TOKEN", "MATRIX_PASSWORD"),),
    "email": (("EMAIL_PASSWORD",),),
    "irc": (),  # IRC_PASSWORD is optional.
    "webhook": (),  # One secret per route: gateway.platforms.webhook.routes.*.secret_env.
}
#: The library each platform imports (its pip extra), looked up without importing it.
PLATFORM_MODULES: dict[str, tuple[str, str]] = {
    "api_server": ("aiohttp", "api-server"),
    "webhook": ("aiohttp", "webhook"),
    "telegram": ("telegram", "telegram"),
    "discord": ("discord", "discord"),
    "slack": ("slack_bolt", "slack"),
    "matrix": ("nio", "matrix"),
}


@dataclass
class Finding:
    """One check's result: what was looked at, how it stands, and what to do."""

    name: str
    status: str
    summary: str
    fix: str = ""
    details: list[str] = field(default_factory=list)

    def redacted(self) -> Finding:
        from hermes_agent.redact import redact

        return Finding(
            self.name,
            self.status,
            redact(self.summary),
            redact(self.fix),
            [redact(d) for d in self.details],
        )


@dataclass
class Report:
    home: str
    findings: list[Finding]
    network: bool
    seconds: float

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed): what the exit status reports."""
        return not any(f.status == FAIL for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "home": self.home,
            "network": self.network,
            "seconds": round(self.seconds, 3),
            "counts": {s: sum(f.status == s for f in self.findings) for s in STATUSES},
            "checks": [asdict(f) for f in self.findings],
        }


# --- the environment as hermes would see it -------------------------------------------


def environment() -> tuple[dict[str, str], dict[str, str]]:
    """The variables a hermes process would have, and where each secret-named one is from.

    ``.env`` is read, not loaded: the process environment is left as it is
    (variables already set win, as in :func:`hermes_agent.config.envfile.load_env_file`).
    """
    from hermes_agent.config.envfile import read_env_file

    env = dict(os.environ)
    origin = {k: "environment" for k in env}
    for key, value in read_env_file(home.env_path()).values.items():
        if key not in env:
            env[key] = value
            origin[key] = ".env"
    return env, origin


# --- local checks ---------------------------------------------------------------------


def check_config(env: Mapping[str, str]) -> tuple[Finding, Config]:
    """config.yaml parses and every value has the right type (`hermes config check`'s rules).

    Returns the configuration the other checks use: the defaults when the file is
    broken, so they can still say something.
    """
    from hermes_agent.config import loader, schema
    from hermes_agent.config.managed import manager
    from hermes_agent.config.merge import deep_merge
    from hermes_agent.errors import ConfigError

    path = home.config_path()
    problems = loader.check_config(path, env)
    fatal = [p for p in problems if not p.endswith(schema.UNKNOWN_KEY)]
    fix = (
        "change services.hermes-agent.settings in configuration.nix, then nixos-rebuild switch"
        if manager() == "nixos"
        else "run `hermes config edit` (or `hermes config check` for the full list)"
    )
    try:
        config = loader.load_config(path, environ=env)
    except ConfigError:
        config = loader.Config(deep_merge(schema.DEFAULT_CONFIG, {}), {}, path)
    if fatal:
        shown = fatal[:5] + ([f"... and {len(fatal) - 5} more"] if len(fatal) > 5 else [])
        return Finding(
            "config",
            FAIL,
            f"{path} has {len(fatal)} problem{'s' if len(fatal) != 1 else ''}; "
            "the checks below use the defaults",
            fix,
            shown,
        ), config
    if problems:
        return Finding(
            "config",
            WARN,
            f"{path}: {len(problems)} unknown key{'s' if len(problems) != 1 else ''} (ignored)",
            "remove or correct them: `hermes config edit`",
            problems[:5],
        ), config
    where = str(path) if path.exists() else f"{path} does not exist: the defaults apply"
    return Finding("config", OK, f"{where} is valid" if path.exists() else where), config


def check_env_file() -> Finding:
    """``.env`` holds the keys: only its owner may read it, and every line must parse."""
    from hermes_agent.config.envfile import read_env_file

    path = home.env_path()
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Finding(".env", OK, f"no {path}: keys come from the environment only")
    except OSError as exc:
        return Finding(".env", FAIL, f"cannot look at {path}: {exc.strerror}", "check its mode")
    if stat.S_ISLNK(st.st_mode):
        try:
            st = path.stat()
        except OSError:
            return Finding(".env", FAIL, f"{path} is a broken symbolic link", f"remove {path}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Finding(
            ".env",
            FAIL,
            f"{path} has mode {mode:04o}: other users can read your keys",
            f"chmod 600 {path}",
        )
    problems = read_env_file(path).problems
    if st.st_uid != os.getuid():
        return Finding(
            ".env", WARN, f"{path} belongs to uid {st.st_uid}, not to you", "chown it or check"
        )
    if problems:
        return Finding(
            ".env",
            WARN,
            f"{path}: {len(problems)} line{'s' if len(problems) != 1 else ''} cannot be parsed "
            "(skipped)",
            "fix them with `hermes config edit`'s sibling: your editor, KEY=value per line",
            problems[:5],
        )
    return Finding(".env", OK, f"{path} is private (mode {mode:04o})")


def provider_targets(config: Config, env: Mapping[str, str]) -> tuple[list[Any], list[Finding]]:
    """The providers a turn may use (the configured one, then the fallbacks), as settings.

    A provider that cannot be set up (no key, no base URL) becomes a finding instead.
    """
    from hermes_agent.errors import HermesError
    from hermes_agent.providers import settings as provider_settings
    from hermes_agent.providers.base import AuthError

    targets: list[Any] = []
    findings: list[Finding] = []
    primary = None
    try:
        primary = provider_settings.resolve(config, environ=env)
        targets.append(("provider", primary))
    except AuthError:
        findings.append(Finding("provider", SKIP, "not checked: it has no key (see keys)"))
    except HermesError as exc:
        findings.append(Finding("provider", FAIL, str(exc), "run `hermes setup`"))
    try:
        fallback: Any = importlib.import_module("hermes_agent.providers.fallback")
        entries = fallback.entries(config)
    except ImportError:
        entries = []
    except HermesError as exc:
        findings.append(Finding("fallback providers", FAIL, str(exc), "hermes config edit"))
        entries = []
    for number, entry in enumerate(entries, start=1):
        if primary is None:
            break
        try:
            targets.append((f"fallback {number}", fallback.settings_for(entry, primary, env)))
        except HermesError as exc:
            findings.append(Finding(f"fallback {number} key", FAIL, str(exc), "hermes setup"))
    return targets, findings


def check_keys(config: Config, env: Mapping[str, str], origin: Mapping[str, str]) -> Finding:
    """Which provider keys are set (names and where from, never values)."""
    from hermes_agent.providers.catalog import PROVIDERS

    name = str(config.get("model.provider"))
    info = PROVIDERS.get(name)
    key_env = str(config.get("model.api_key_env") or (info.key_env if info else ""))
    present = sorted(
        {p.key_env for p in PROVIDERS.values() if env.get(p.key_env)}
        | ({key_env} if key_env and env.get(key_env) else set())
    )
    details = [f"{k} (from {origin.get(k, 'environment')})" for k in present]
    if info is None:
        return Finding(
            "keys", FAIL, f"model.provider {name!r} is not a known provider", "hermes setup"
        )
    if key_env and env.get(key_env):
        return Finding(
            "keys", OK, f"{key_env} is set for {name} (from {origin.get(key_env)})", "", details
        )
    if not info.key_required:
        return Finding("keys", OK, f"{name} needs no key ({key_env} is not set)", "", details)
    return Finding(
        "keys",
        FAIL,
        f"{key_env} is not set, so {name} cannot be used",
        f"run `hermes setup`, or `hermes config set {key_env} YOUR_KEY`",
        details or ["no provider key is set at all"],
    )


def check_tools(config: Config) -> Finding:
    """The tools of the chosen toolsets that cannot work here, each with its reason."""
    from hermes_agent.tools.registry import builtin_registry

    registry = builtin_registry()
    chosen = {str(t) for t in config.get("toolsets") or ()}
    unknown = sorted(chosen - set(registry.toolsets) - {"all"})
    tools = registry.select(chosen - set(unknown))
    off = []
    for tool in tools:
        try:
            reason = tool.unavailable(config) if tool.unavailable else None
        except Exception as exc:  # one tool's bug must not end the check.
            reason = f"its check failed: {type(exc).__name__}: {exc}"
        if reason:
            off.append(f"{tool.name}: {reason}")
    details = off + [f"toolsets names {u!r}, which does not exist" for u in unknown]
    on = len(tools) - len(off)
    summary = f"{on} of {len(tools)} tools of the chosen toolsets can work"
    if unknown:
        return Finding("tools", WARN, summary, "fix `toolsets` (hermes tools list)", details)
    # A tool off for want of an optional backend (web search) is how it should be: said,
    # with the reason, but not a warning on every fresh install.
    return Finding("tools", OK, summary, "", details)


def check_sandbox(config: Config, probe: dict[str, str] | None) -> Finding:
    """The kernel confinement of commands, and (with ``probe``) whether it held."""
    from hermes_agent.safety import sandbox

    mode = sandbox.mode_of(config)
    line = sandbox.describe(config)
    if mode == "off":
        return Finding(
            "sandbox",
            WARN,
            line,
            "set sandbox.mode: enforce unless you confine hermes another way",
        )
    if not sandbox.active(config):
        return Finding(
            "sandbox",
            WARN,
            line,
            "install bubblewrap or use a kernel with Landlock (see `hermes sandbox status`)",
        )
    if probe is None:
        return Finding("sandbox", OK, line, "", ["live probe not run"])
    expected = {"write temp dir": "allowed"}
    leaks = [
        f"{name}: {outcome}"
        for name, outcome in probe.items()
        if outcome not in (expected.get(name, "denied"), "missing")
    ]
    if leaks:
        return Finding(
            "sandbox",
            FAIL,
            "the live probe got through the sandbox",
            "run `hermes sandbox status` and report it",
            leaks,
        )
    return Finding("sandbox", OK, line, "", [f"live probe: {len(probe)} checks held"])


def sandbox_probe(config: Config, cwd: str | None = None) -> dict[str, str]:
    """Start a probe exactly as the terminal tool starts a command; what it could do.

    It tries to read hermes' secrets, write HERMES_HOME and hermes' code, and
    write its temp directory. Shared by `hermes sandbox status` and the doctor.
    """
    import asyncio
    import sys

    import hermes_agent
    from hermes_agent.agent.factory import workspace
    from hermes_agent.errors import HermesError
    from hermes_agent.safety import sandbox
    from hermes_agent.tools import terminal

    if cwd is None:
        try:
            cwd = str(workspace(config))
        except HermesError:
            cwd = os.getcwd()
    state: dict[str, Any] = {}
    tmp = sandbox.session_tmp(state)
    package = os.path.dirname(hermes_agent.__file__)
    checks = [
        ("read .env", "read", str(home.env_path())),
        ("read auth.json", "read", str(home.auth_path())),
        ("write HERMES_HOME", "write", str(home.hermes_home() / ".sandbox-probe")),
        ("open config.yaml to write", "append", str(home.config_path())),
        ("write hermes' code", "write", os.path.join(package, ".sandbox-probe")),
        ("write temp dir", "write", os.path.join(tmp, "probe")),
    ]

    class _Ctx:
        pass

    ctx: Any = _Ctx()
    ctx.config = config
    ctx.state = state
    try:
        launch = terminal.confined(
            [sys.executable, "-I", "-c", _PROBE, json.dumps(checks)], cwd, ctx
        )
        result = asyncio.run(terminal.run(launch, 30, 100_000))
        found: dict[str, str] = json.loads(result.output.strip().splitlines()[-1])
    except Exception as exc:  # the probe failing is a finding, not a crash.
        found = {"probe": f"could not run: {exc}"}
    finally:
        sandbox.cleanup(state)
    return found


# Run inside the sandbox: one outcome per check, as JSON.
_PROBE = r"""
import json, os, sys
checks = json.loads(sys.argv[1])
out = {}
for name, how, path in checks:
    try:
        if how == "read":
            with open(path, "rb") as handle:
                handle.read(1)
        elif how == "append":
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(path)
        out[name] = "allowed"
    except FileNotFoundError:
        out[name] = "missing"
    except PermissionError:
        out[name] = "denied"
    except OSError as exc:
        out[name] = f"error: {exc.strerror}"
print(json.dumps(out))
"""


def check_platforms(config: Config, env: Mapping[str, str]) -> Finding:
    """Each enabled chat platform: its secrets present, its library installed. No connection."""
    from importlib.util import find_spec

    section = config.get("gateway.platforms") or {}
    if not isinstance(section, dict):
        section = {}
    unknown = sorted(str(n) for n in section if n not in PLATFORM_SECRETS)
    enabled = [n for n in PLATFORM_SECRETS if config.get(f"gateway.platforms.{n}.enabled")]
    if not enabled and not unknown:
        return Finding("gateway platforms", OK, "no chat platform is enabled")
    problems = [f"{n}: unknown platform (known: {', '.join(PLATFORM_SECRETS)})" for n in unknown]
    good = []
    for name in enabled:
        missing = [" or ".join(g) for g in PLATFORM_SECRETS[name] if not any(env.get(k) for k in g)]
        if name == "webhook":
            routes = config.get("gateway.platforms.webhook.routes") or {}
            for route, spec in routes.items() if isinstance(routes, dict) else ():
                secret = spec.get("secret_env") if isinstance(spec, dict) else None
                if not isinstance(secret, str) or not secret:
                    problems.append(f"webhook route {route}: no secret_env")
                elif not env.get(secret):
                    missing.append(f"{secret} (route {route})")
            if not routes:
                problems.append("webhook: enabled without any route")
        module = PLATFORM_MODULES.get(name)
        if module is not None and find_spec(module[0]) is None:
            problems.append(
                f"{name}: its library is not installed (pip install 'hermes-agent[{module[1]}]')"
            )
        if missing:
            problems.append(f"{name}: {', '.join(missing)} not set")
        elif module is None or find_spec(module[0]) is not None:
            good.append(name)
    if problems:
        return Finding(
            "gateway platforms",
            FAIL,
            f"{len(enabled)} enabled; {len(good)} ready ({', '.join(good) or 'none'})",
            f"add the missing secrets to {home.env_path()}, or disable the platform",
            problems,
        )
    return Finding("gateway platforms", OK, f"credentials present for: {', '.join(good)}")


def mcp_servers(config: Config) -> tuple[list[Any], Finding | None]:
    """The configured MCP servers (parsed by the MCP package when it is present)."""
    raw = config.get("mcp_servers") or {}
    if not raw:
        return [], None
    try:
        mcp_config: Any = importlib.import_module("hermes_agent.mcp.config")
        servers = list(mcp_config.servers_from(config))
    except ImportError:
        return [], Finding(
            "mcp", SKIP, f"{len(raw)} server(s) configured; this build has no MCP client"
        )
    except Exception as exc:  # a bad entry is a finding.
        return [], Finding("mcp", FAIL, f"mcp_servers: {exc}", "hermes config check")
    return servers, None


def check_mcp_commands(servers: list[Any]) -> Finding | None:
    """stdio servers: is their command there? (HTTP servers are checked over the network.)"""
    missing = []
    for server in servers:
        command = str(getattr(server, "command", "") or "")
        if command and shutil.which(command) is None:
            missing.append(f"{server.name}: command {command!r} not found")
    if missing:
        return Finding(
            "mcp commands", FAIL, "an MCP server's program is missing", "install it", missing
        )
    return None


def check_state_db() -> Finding:
    """state.db opens, passes SQLite's quick_check, and how big it is (read-only)."""
    path = home.state_db_path()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Finding("state.db", OK, f"{path} does not exist yet (created on first use)")
    except OSError as exc:
        return Finding("state.db", FAIL, f"cannot look at {path}: {exc.strerror}")
    for suffix in ("-wal",):
        with contextlib.suppress(OSError):
            size += Path(f"{path}{suffix}").stat().st_size
    fix = (
        f"stop hermes, keep a copy of {path}, then try `sqlite3 {path} .recover | sqlite3 "
        "recovered.db` and put recovered.db in its place (or move state.db away to start empty)"
    )
    try:
        uri = f"{path.as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        return Finding("state.db", FAIL, f"cannot open {path}: {exc}", fix)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return Finding("state.db", WARN, f"{path} is busy: {exc}", "run doctor again")
        return Finding("state.db", FAIL, f"{path} is damaged: {exc}", fix)
    except sqlite3.DatabaseError as exc:
        return Finding("state.db", FAIL, f"{path} is damaged: {exc}", fix)
    finally:
        conn.close()
    result = [str(r[0]) for r in rows]
    if result != ["ok"]:
        return Finding("state.db", FAIL, f"{path} failed SQLite's integrity check", fix, result[:5])
    shown = f"{path}: intact, {_size(size)}, {sessions} sessions"
    if size > DB_LARGE_BYTES:
        return Finding("state.db", WARN, shown, "prune old sessions: `hermes sessions prune`")
    return Finding("state.db", OK, shown)


def check_disk() -> Finding:
    """Free space (and inodes) on the file system that holds HERMES_HOME."""
    where = home.hermes_home()
    probe = where
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError as exc:
        return Finding("disk", WARN, f"cannot measure free space at {probe}: {exc.strerror}")
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    shown = f"{_size(free)} free of {_size(total)} at {probe}"
    fix = "free some space (old logs, `hermes sessions prune`) or move HERMES_HOME"
    if free < DISK_FAIL_BYTES or (st.f_files and st.f_favail == 0):
        why = "no inodes left" if st.f_files and st.f_favail == 0 else "nearly full"
        return Finding("disk", FAIL, f"{shown}: {why}; hermes cannot save state", fix)
    if free < DISK_WARN_BYTES:
        return Finding("disk", WARN, f"{shown}: running low", fix)
    return Finding("disk", OK, shown)


def check_home() -> Finding:
    """HERMES_HOME exists, is a directory, and is not open to other users."""
    path = home.hermes_home()
    try:
        st = path.stat()
    except FileNotFoundError:
        return Finding("HERMES_HOME", WARN, f"{path} does not exist yet", "run `hermes setup`")
    except OSError as exc:
        return Finding("HERMES_HOME", FAIL, f"cannot look at {path}: {exc.strerror}")
    if not stat.S_ISDIR(st.st_mode):
        return Finding("HERMES_HOME", FAIL, f"{path} is not a directory", "move it away")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o002:
        return Finding(
            "HERMES_HOME", FAIL, f"{path} is writable by everyone ({mode:04o})", f"chmod 700 {path}"
        )
    if not os.access(path, os.W_OK):
        return Finding("HERMES_HOME", FAIL, f"{path} is not writable by you", "check its owner")
    if mode & 0o007:
        return Finding(
            "HERMES_HOME", WARN, f"{path} is open to other users ({mode:04o})", f"chmod 700 {path}"
        )
    return Finding("HERMES_HOME", OK, f"{path} (mode {mode:04o})")


def check_managed() -> Finding:
    """Whether NixOS (or another manager) owns the configuration."""
    from hermes_agent.config.managed import manager

    name = manager()
    if name is None:
        return Finding("managed mode", OK, "not managed: `hermes config` and `setup` may write")
    how = (
        "change services.hermes-agent in configuration.nix, then nixos-rebuild switch"
        if name == "nixos"
        else f"change the configuration through {name}"
    )
    return Finding(
        "managed mode", OK, f"managed by {name}: configuration changes are refused", "", [how]
    )


# --- network checks -------------------------------------------------------------------


def _shown_url(url: str) -> str:
    """``url`` without user info or query, for messages."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _get(url: str, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    """GET ``url``; (status, body). A redirect is reported, never followed: the key in
    ``headers`` must not go to another host. urllib is imported here, not at the top:
    `hermes doctor --offline` never pays for it."""
    import urllib.error
    import urllib.request

    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")  # urllib would also open file:// and ftp://

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=dict(headers), method="GET")
    try:
        with opener.open(request, timeout=timeout) as answer:
            return int(answer.status), answer.read(2_000_000)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            return int(exc.code), exc.read(20_000)
        return int(exc.code), b""


def _network_reason(exc: BaseException, timeout: float) -> str:
    reason: Any = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return str(reason) or type(reason).__name__


def check_provider(label: str, settings: Any, timeout: float) -> Finding:
    """The cheapest call the provider has: its models list, with the configured key."""
    wire = settings.info.wire
    name = f"{label}: {settings.info.name}"
    if wire == "anthropic":
        base = settings.base_url or "https://api.anthropic.com"
        url = f"{base}/v1/models"
        headers = {"anthropic-version": "2023-06-01"}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
    else:
        url = f"{settings.base_url}/models"
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    headers["User-Agent"] = "hermes-doctor"
    shown = _shown_url(url)
    where = "model.base_url" if label == "provider" else f"the base_url of {label}"
    began = time.monotonic()
    try:
        status, body = _get(url, headers, timeout)
    except Exception as exc:  # Refused, timed out, not HTTP at all (http.client's errors).
        return Finding(
            name,
            FAIL,
            f"cannot reach {shown}: {_network_reason(exc, timeout)}",
            f"check the network and {where} (`hermes doctor --offline` skips this)",
        )
    ms = (time.monotonic() - began) * 1000
    if status in (401, 403):
        return Finding(
            name,
            FAIL,
            f"{shown} refused the key in {settings.key_env} (HTTP {status})",
            f"set a valid key: `hermes config set {settings.key_env} YOUR_KEY`",
        )
    if 300 <= status < 400:
        return Finding(
            name, WARN, f"{shown} answered with a redirect (HTTP {status})", f"check {where}"
        )
    if status == 404:
        return Finding(
            name,
            WARN,
            f"{shown} answered 404: reachable, but no models list there",
            f"check {where} (an OpenAI-compatible URL usually ends in /v1)",
        )
    if status == 429:
        return Finding(name, WARN, f"{shown} is reachable but rate-limits you (HTTP 429)")
    if status >= 400:
        return Finding(name, WARN, f"{shown} answered HTTP {status}", "try again later")
    ids = _model_ids(body)
    if ids and settings.model not in ids:
        return Finding(
            name,
            WARN,
            f"{shown} reachable ({ms:.0f} ms) but does not list the model {settings.model!r}",
            "check model.default (`hermes setup`)",
            sorted(ids)[:10],
        )
    return Finding(name, OK, f"{shown} reachable ({ms:.0f} ms), model {settings.model}")


def _model_ids(body: bytes) -> set[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return set()
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return set()
    return {str(i["id"]) for i in items if isinstance(i, dict) and "id" in i}


def check_mcp_http(server: Any, env: Mapping[str, str], timeout: float) -> Finding:
    """An HTTP MCP server answers at all (any HTTP status counts: no session is opened).

    Used when this build has no MCP connection manager to ask.
    """
    url = str(server.url)
    with contextlib.suppress(Exception):
        mcp_config: Any = importlib.import_module("hermes_agent.mcp.config")
        url = mcp_config.resolve_vars(url, server.name, "url", env)
    shown = _shown_url(url)
    try:
        status, _ = _get(url, {"Accept": "application/json, text/event-stream"}, timeout)
    except (OSError, ValueError) as exc:  # urllib.error.URLError is an OSError.
        return Finding(
            f"mcp: {server.name}",
            FAIL,
            f"cannot reach {shown}: {_network_reason(exc, timeout)}",
            f"start the server or fix mcp_servers.{server.name}.url",
        )
    return Finding(
        f"mcp: {server.name}", OK, f"{shown} answers (HTTP {status}); session not opened"
    )


def check_mcp_live(config: Config, budget: float) -> list[Finding]:
    """Ask the MCP connection manager to connect every configured server, for ``budget`` s.

    Servers start as they would for a session (stdio ones confined like every
    command); whatever is still connecting when the budget ends is reported
    so, and every server is stopped again before the doctor exits.
    """
    from hermes_agent.agent.factory import workspace
    from hermes_agent.errors import HermesError

    manager_module: Any = importlib.import_module("hermes_agent.mcp.manager")
    try:
        cwd = str(workspace(config))
    except HermesError:
        cwd = os.getcwd()
    manager = manager_module.Manager()
    try:
        scope = manager.global_scope(config, cwd)
        # A server that failed is retried with backoff, and is "connecting" again in
        # between: each server's first settled state is the answer.
        settled: dict[str, Any] = {}
        deadline = time.monotonic() + budget
        while True:
            current = list(scope.statuses())
            for st in current:
                if st.state != "connecting":
                    settled.setdefault(st.name, st)
            if len(settled) == len(current) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        statuses = [settled.get(st.name, st) for st in current]
    finally:
        manager.shutdown(timeout=3.0)
    findings = []
    for st in statuses:
        name = f"mcp: {st.name}"
        where = f" ({st.where})" if getattr(st, "where", "") else ""
        if st.state == "ready":
            findings.append(Finding(name, OK, f"ready, {st.tools} tools{where}"))
        elif st.state == "connecting":
            findings.append(
                Finding(
                    name,
                    WARN,
                    f"still connecting after {budget:g} s{where}",
                    f"`hermes logs mcp {st.name}` shows what it said",
                )
            )
        elif st.state == "disabled":
            findings.append(Finding(name, SKIP, f"disabled{where}"))
        elif st.state == "needs-login":
            findings.append(
                Finding(name, WARN, f"needs a login{where}", f"run `hermes mcp login {st.name}`")
            )
        else:
            status = FAIL if getattr(st, "required", False) or st.state == "failed" else WARN
            findings.append(
                Finding(
                    name,
                    status,
                    f"{st.state}: {st.reason}{where}",
                    f"`hermes logs mcp {st.name}`; fix mcp_servers.{st.name}",
                )
            )
    return findings


# --- running them ---------------------------------------------------------------------

Job = Callable[[], "Finding | list[Finding]"]


def _in_parallel(jobs: list[tuple[str, Job]], deadline: float) -> list[list[Finding]]:
    """Run ``jobs`` in daemon threads; a job still running at ``deadline`` is a failure.

    Daemon threads, not a pool: a DNS lookup cannot be interrupted, and the
    command must end on time whatever a resolver does.
    """
    results: list[list[Finding] | None] = [None] * len(jobs)

    def work(index: int, job: Job) -> None:
        try:
            found = job()
            results[index] = found if isinstance(found, list) else [found]
        except Exception as exc:  # A check's bug becomes its finding.
            results[index] = [Finding(jobs[index][0], FAIL, f"check failed: {exc}")]

    threads = [
        threading.Thread(target=work, args=(i, job), daemon=True, name=f"doctor:{name}")
        for i, (name, job) in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [
        result
        if result is not None
        else [Finding(jobs[i][0], FAIL, "no answer before the doctor's deadline")]
        for i, result in enumerate(results)
    ]


def run(*, network: bool = True, timeout: float = NETWORK_TIMEOUT, probe: bool = True) -> Report:
    """Every check, in a fixed order; network checks (and the sandbox probe) in parallel."""
    began = time.monotonic()
    env, origin = environment()
    config_finding, config = check_config(env)
    findings = [
        _safe("HERMES_HOME", check_home),
        config_finding,
        _safe(".env", check_env_file),
        _safe("keys", check_keys, config, env, origin),
    ]
    targets, target_findings = provider_targets(config, env)
    findings += target_findings
    servers, mcp_finding = mcp_servers(config)
    live_mcp = bool(servers) and _has_module("hermes_agent.mcp.manager") and _has_module("mcp")

    slow: list[tuple[str, Job]] = []
    if network:
        for label, settings in targets:
            slow.append((label, functools.partial(check_provider, label, settings, timeout)))
        if live_mcp:
            slow.append(("mcp", functools.partial(check_mcp_live, config, timeout)))
        else:
            for server in servers:
                if getattr(server, "url", ""):
                    name = f"mcp: {server.name}"
                    slow.append((name, functools.partial(check_mcp_http, server, env, timeout)))
    sandbox_result: dict[str, dict[str, str]] = {}
    if probe:
        from hermes_agent.safety import sandbox

        if sandbox.active(config):

            def run_probe() -> Finding:
                sandbox_result["probe"] = sandbox_probe(config)
                return Finding("sandbox probe", OK, "")

            slow.append(("sandbox probe", run_probe))
    # The MCP manager stops its servers within 3 s after its budget.
    deadline = time.monotonic() + timeout + (6.0 if live_mcp else 3.0)
    slow_results = [f for group in _in_parallel(slow, deadline) for f in group] if slow else []

    net_findings = [f for f in slow_results if f.name != "sandbox probe"]
    probe_finding = next((f for f in slow_results if f.name == "sandbox probe"), None)
    findings += [f for f in net_findings if not f.name.startswith("mcp")]
    if not network:
        what = "provider and MCP servers" if servers else "providers"
        findings.append(Finding("network", SKIP, f"{what} not contacted (--offline)"))
    findings.append(_safe("tools", check_tools, config))
    sandbox_finding = _safe("sandbox", check_sandbox, config, sandbox_result.get("probe"))
    if probe_finding is not None and probe_finding.status == FAIL:
        sandbox_finding = Finding("sandbox", FAIL, probe_finding.summary, "hermes sandbox status")
    findings.append(sandbox_finding)
    if mcp_finding is not None:
        findings.append(mcp_finding)
    elif servers:
        commands = check_mcp_commands(servers)
        if commands is not None:
            findings.append(commands)
        findings += [f for f in net_findings if f.name.startswith("mcp")]
        if not live_mcp:
            stdio = [s.name for s in servers if getattr(s, "command", "")]
            if stdio:
                findings.append(
                    Finding(
                        "mcp",
                        SKIP,
                        f"stdio servers not started (no MCP client here): {', '.join(stdio)}",
                    )
                )
    findings += [
        _safe("gateway platforms", check_platforms, config, env),
        _safe("state.db", check_state_db),
        _safe("disk", check_disk),
        _safe("managed mode", check_managed),
    ]
    return Report(
        home=str(home.hermes_home()),
        findings=[f.redacted() for f in findings],
        network=network,
        seconds=time.monotonic() - began,
    )


def _safe(name: str, check: Callable[..., Finding], *args: Any) -> Finding:
    """Run one check; its own failure (a bug, a module that does not load) is its finding.

    The doctor is what people run when something is broken: it must report
    every other check even when one of them cannot run.
    """
    try:
        return check(*args)
    except Exception as exc:
        return Finding(
            name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}", "report it"
        )


def _has_module(name: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
