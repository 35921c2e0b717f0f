"""Applying a deployment spec to HERMES_HOME: what `hermes deploy apply` does.

The NixOS module runs this at activation and again before every service
start (so a secret that sops-nix or agenix rotated is picked up by a plain
``systemctl restart``), as the service's user. Each step is idempotent:
a file is written only when its content differs, so applying the same spec
twice changes no byte and no modification time.

Steps (the order in which files are written):

1. **Layout**: HERMES_HOME and its directories (:func:`home.ensure_layout`),
   and ``workingDirectory``. Ownership is the caller's business: the command
   runs as the service user.
2. **config.yaml**: ``settings`` deep-merged (:func:`deep_merge`) over the
   current file, Nix winning; keys a user or the agent added are kept; a key
   Nix set on an earlier apply and no longer sets is removed (unless it has
   since become a non-empty mapping, i.e. someone else put keys under it).
   MCP servers from ``mcpServers`` and ``settings.mcp_servers`` are merged
   into ``mcp_servers`` as whole entries: a server Nix declares replaces the
   entry of that name, servers a user added are kept, servers Nix stopped
   declaring are removed. With ``configFile`` the file is copied byte for
   byte instead and ``settings``/``mcpServers`` are ignored. What Nix set is
   recorded in ``HERMES_HOME/.nix-managed-keys.json`` (0600).
3. **documents** into ``workingDirectory``, rewritten when they differ. A
   document Nix stopped declaring is removed if nobody changed it since.
4. **.env** rebuilt from scratch: ``environment``, then each of
   ``environmentFiles`` in order (a later binding wins); 0600, atomic.
5. **auth.json** seeded from ``authFile`` when absent (or, with
   ``authFileForceOverwrite``, whenever it differs); 0600.
6. **.managed** naming the manager (``nixos``, or ``home-manager`` for the
   home-manager module): the CLI's managed mode, whose refusal names it.
7. **.nix-managed-keys.json**, then **stateDir/.container-identity** (container
   mode; removed otherwise). The report says whether the identity changed,
   i.e. whether the container must be recreated.

Everything is read and checked before the first write: a bad spec, a broken
config.yaml, a missing environment file or an unreadable document raises a
:class:`~hermes_agent.errors.HermesError` and leaves every file as it was.
Secret values (``.env``, ``auth.json``) never appear in a message or the
report; variable names do.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermes_agent import home as layout
from hermes_agent.config import loader
from hermes_agent.config.envfile import read_env_file, render_env
from hermes_agent.config.merge import deep_merge, get_parts, leaf_paths, unset_parts
from hermes_agent.config.schema import UNKNOWN_KEY, find_problems
from hermes_agent.deploy.identity import IDENTITY_FILE, container_identity
from hermes_agent.deploy.spec import ENV_NAME, Spec, SpecError, parse_spec
from hermes_agent.errors import EXIT_USAGE, ConfigError, HermesError
from hermes_agent.fsutil import atomic_write, write_secret
from hermes_agent.home_lock import home_lock

STATE_VERSION = 1
ENV_HEADER = (
    "Written by `hermes deploy apply` from services.hermes-agent.environment and\n"
    "environmentFiles. Rebuilt on every apply and service start: edits here are lost."
)
_MISSING = object()
_SECRET = layout.SECRET_FILE_MODE


@dataclass(frozen=True)
class Change:
    """One file (or directory) the apply created, changed or removed."""

    path: Path
    action: str  # created, updated, removed, seeded, overwritten, mode
    detail: str = ""

    def describe(self) -> str:
        return f"{self.path}: {self.action}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Report:
    """What an apply did; never holds a secret value."""

    home: Path
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The container's identity hash (container mode), else None.
    container_identity: str | None = None
    #: True when the identity differs from the one recorded: recreate the container.
    recreate_container: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (`hermes deploy apply --json`)."""
        return {
            "home": str(self.home),
            "changes": [
                {"path": str(c.path), "action": c.action, "detail": c.detail} for c in self.changes
            ],
            "warnings": list(self.warnings),
            "container": None
            if self.container_identity is None
            else {"identity": self.container_identity, "recreate": self.recreate_container},
        }


@dataclass
class _State:
    """What the previous apply set (``.nix-managed-keys.json``)."""

    settings: set[tuple[str, ...]] = field(default_factory=set)
    servers: set[str] = field(default_factory=set)
    documents: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """Stable JSON with one entry per line, so two applies' files diff readably."""

        def block(opening: str, closing: str, items: list[str]) -> str:
            if not items:
                return opening + closing
            return opening + ",".join(f"\n    {item}" for item in items) + f"\n  {closing}"

        def dump(value: Any) -> str:
            return json.dumps(value, ensure_ascii=False)

        fields = [
            f'"version": {STATE_VERSION}',
            '"settings": ' + block("[", "]", [dump(list(p)) for p in sorted(self.settings)]),
            '"mcpServers": ' + block("[", "]", [dump(name) for name in sorted(self.servers)]),
            '"documents": '
            + block("{", "}", [f"{dump(k)}: {dump(v)}" for k, v in sorted(self.documents.items())]),
        ]
        return "{\n" + ",\n".join(f"  {line}" for line in fields) + "\n}\n"


class _Plan:
    """The writes an apply will make, computed before any of them happens."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.steps: list[tuple[Callable[[], None], Change]] = []

    def add(self, change: Change, step: Callable[[], None]) -> None:
        self.steps.append((step, change))

    def write(self, path: Path, data: bytes, action: str, detail: str, mode: int) -> None:
        self.add(Change(path, action, detail), lambda: atomic_write(path, data, mode=mode))

    def secret(self, path: Path, data: bytes, action: str, detail: str = "") -> None:
        self.add(Change(path, action, detail), lambda: write_secret(path, data))

    def remove(self, path: Path, detail: str = "") -> None:
        self.add(Change(path, "removed", detail), lambda: _unlink(path))

    def tighten(self, path: Path) -> None:
        self.add(Change(path, "mode", "set to 0600"), lambda: _chmod(path, _SECRET))

    def run(self) -> None:
        for step, change in self.steps:
            step()
            self.report.changes.append(change)


def apply_spec(spec: Spec | Mapping[str, Any], *, home: Path) -> Report:
    """Apply ``spec`` (checked :class:`Spec` or decoded JSON) to the HERMES_HOME ``home``.

    Raises :class:`HermesError` (a :class:`SpecError` for a bad spec, exit
    status 2) before writing anything when an input is wrong.
    """
    checked = spec if isinstance(spec, Spec) else parse_spec(spec)
    report = Report(home=home)
    fresh = not home.is_dir()
    if fresh:  # Taking the lock creates HERMES_HOME: check every input before that.
        _make_plan(checked, Report(home=home), home, fresh)
    # Everything is read and written under the home's lock: a `hermes config set`, the
    # agent or the gateway writing config.yaml meanwhile would otherwise lose its change
    # (or ours) between the reads of the plan and plan.run().
    with home_lock("hermes deploy apply", root=home):
        _make_plan(checked, report, home, fresh).run()
    return report


def _make_plan(checked: Spec, report: Report, home: Path, fresh: bool) -> _Plan:
    plan = _Plan(report)

    state_path = layout.path(layout.NIX_STATE_FILE, home)
    previous = _read_state(state_path)
    current = _State()

    _plan_layout(plan, home, checked.working_directory, fresh)
    _plan_config(plan, checked, home, previous, current)
    _plan_documents(plan, checked, previous, current)
    _plan_env(plan, checked, home)
    _plan_auth(plan, checked, home)
    _plan_marker(plan, home, checked.manager)
    _plan_file(plan, state_path, current.render().encode("utf-8"), secret=True)
    _plan_identity(plan, checked)
    return plan


# --- state file -----------------------------------------------------------------------


def _read_state(path: Path) -> _State:
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return _State()
    except OSError as exc:
        raise HermesError(f"cannot read {path}: {exc.strerror or exc}") from None
    hint = (
        "delete it to start over (keys Nix set before are then kept in config.yaml as if a "
        "user had set them)"
    )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HermesError(f"{path}: not valid JSON; {hint}", EXIT_USAGE) from None
    try:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError
        settings = {tuple(_strings(p)) for p in data.get("settings", [])}
        servers = set(_strings(data.get("mcpServers", [])))
        documents = data.get("documents", {})
        if not isinstance(documents, dict) or not all(
            isinstance(v, str) for v in documents.values()
        ):
            raise ValueError
    except (ValueError, TypeError):
        raise HermesError(
            f"{path}: not a file `hermes deploy apply` wrote; {hint}", EXIT_USAGE
        ) from None
    return _State(settings, servers, dict(documents))


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError
    return value


# --- layout ---------------------------------------------------------------------------


def _plan_layout(plan: _Plan, home: Path, working: Path, fresh: bool) -> None:
    dirs = [home, *(layout.path(name, home) for name in layout.LAYOUT_DIRS)]
    missing = [d for d in dirs if not d.is_dir()]
    if missing or fresh:
        detail = "HERMES_HOME layout" if fresh else "missing layout directories"
        plan.add(Change(home, "created", detail), lambda: _ensure_layout(home))
    if not working.is_dir():
        plan.add(Change(working, "created", "working directory"), lambda: _ensure_dir(working))


def _ensure_layout(home: Path) -> None:
    layout.ensure_layout(home)


def _ensure_dir(path: Path) -> None:
    layout.ensure_dir(path)


# --- config.yaml ----------------------------------------------------------------------


def _plan_config(plan: _Plan, spec: Spec, home: Path, previous: _State, current: _State) -> None:
    path = layout.path(layout.CONFIG_FILE, home)
    if spec.config_file is not None:
        _plan_config_file(plan, spec, path, current)
        return
    try:
        user, _ = loader.read_user_config(path)
    except ConfigError as exc:
        raise ConfigError(
            [*exc.problems, f"nothing was written; fix or remove {path}, then apply again"]
        ) from None

    nix = copy.deepcopy(spec.settings)
    servers = _nix_servers(nix.pop("mcp_servers", None), spec.mcp_servers)
    checked = dict(nix, mcp_servers=servers) if servers else nix
    problems = find_problems(checked)
    fatal = [f"settings.{key}: {msg}" for key, msg in problems if msg != UNKNOWN_KEY]
    if fatal:
        raise SpecError([*fatal, "nothing was written"])
    plan.report.warnings += [
        f"settings.{key}: unknown to this hermes (written to config.yaml, ignored)"
        for key, msg in problems
        if msg == UNKNOWN_KEY
    ]
    current.settings = set(leaf_paths(nix))
    current.servers = set(servers)

    tree = copy.deepcopy(user)
    for parts in sorted(previous.settings - current.settings):
        value = get_parts(tree, parts, _MISSING)
        if value is _MISSING or (isinstance(value, dict) and value):
            continue  # Gone already, or someone put their own keys under it.
        unset_parts(tree, parts)
    for name in sorted(previous.servers - current.servers):
        if isinstance(tree.get("mcp_servers"), dict):
            unset_parts(tree, ("mcp_servers", name))
    tree = deep_merge(tree, nix)
    if servers:
        if not isinstance(tree.get("mcp_servers"), dict):
            if tree.get("mcp_servers") is not None:
                plan.report.warnings.append(
                    f"{path}: mcp_servers was not a mapping; replaced by the servers Nix declares"
                )
            tree["mcp_servers"] = {}
        for name, server in servers.items():
            tree["mcp_servers"][name] = copy.deepcopy(server)

    user_problems = [(k, m) for k, m in find_problems(tree) if m != UNKNOWN_KEY]
    plan.report.warnings += [
        f"{path}: {key}: {msg} (set outside Nix; fix it with the settings option)"
        for key, msg in user_problems
    ]
    old_text, new_text = loader.dump_yaml(user), loader.dump_yaml(tree)
    if new_text == old_text:
        return
    detail = _diff_keys(user, tree)
    action = "updated" if path.exists() else "created"
    plan.add(Change(path, action, detail), lambda: loader.save_user_config(tree, path))


def _nix_servers(
    from_settings: Any, from_option: Mapping[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``settings.mcp_servers`` and ``mcpServers`` as one mapping (the option wins)."""
    if from_settings is None:
        from_settings = {}
    if not isinstance(from_settings, dict):
        raise SpecError("settings.mcp_servers: expected an object (server name -> definition)")
    servers: dict[str, dict[str, Any]] = {}
    for name, server in from_settings.items():
        if not isinstance(server, dict):
            raise SpecError(f"settings.mcp_servers.{name}: expected an object")
        servers[name] = {k: v for k, v in server.items() if v is not None}
    for name, server in from_option.items():
        servers[name] = deep_merge(servers.get(name, {}), server)
    return servers


def _plan_config_file(plan: _Plan, spec: Spec, path: Path, current: _State) -> None:
    source = spec.config_file
    assert source is not None
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise HermesError(
            f"configFile {source}: cannot read: {exc.strerror or exc}; nothing was written"
        ) from None
    parsed, _ = loader.read_user_config(source)  # A syntax error names the file and line.
    fatal = [f"{source}: {key}: {msg}" for key, msg in find_problems(parsed) if msg != UNKNOWN_KEY]
    if fatal:
        raise SpecError([*fatal, "nothing was written"])
    if spec.settings or spec.mcp_servers:
        plan.report.warnings.append(
            "configFile is set: settings and mcpServers are ignored (config.yaml is a copy of "
            f"{source})"
        )
    # Every key of the copy is Nix's: switching back to `settings` removes the ones it drops.
    current.settings = set(leaf_paths(parsed))
    _plan_file(plan, path, data, secret=False, mode=0o600, detail=f"copied from {source}")


def _diff_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    old = {p: get_parts(before, p) for p in leaf_paths(before)}
    new = {p: get_parts(after, p) for p in leaf_paths(after)}
    changed = [p for p in new if p not in old or _canonical(old[p]) != _canonical(new[p])]
    removed = [p for p in old if p not in new]
    parts = []
    if changed:
        parts.append("set " + _names([".".join(p) for p in changed]))
    if removed:
        parts.append("removed " + _names([".".join(p) for p in removed]))
    return "; ".join(parts)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- documents ------------------------------------------------------------------------


def _plan_documents(plan: _Plan, spec: Spec, previous: _State, current: _State) -> None:
    for doc in spec.documents:
        target = spec.working_directory / doc.name
        if doc.source is not None:
            try:
                data = doc.source.read_bytes()
            except OSError as exc:
                raise HermesError(
                    f"documents.{doc.name}: cannot read {doc.source}: "
                    f"{exc.strerror or exc}; nothing was written"
                ) from None
        else:
            data = (doc.text or "").encode("utf-8")
        if target.is_dir():
            raise HermesError(f"documents.{doc.name}: {target} is a directory; nothing was written")
        current.documents[str(target)] = _digest(data)
        _plan_file(plan, target, data, secret=False, mode=0o644, detail="document")
    for old, digest in sorted(previous.documents.items()):
        if old in current.documents:
            continue
        path = Path(old)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            plan.report.warnings.append(f"{path}: no longer declared, left in place: {exc}")
            continue
        if _digest(data) == digest:
            plan.remove(path, "document no longer declared")
        else:
            plan.report.warnings.append(
                f"{path}: no longer declared but changed since it was installed; left in place"
            )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- .env -----------------------------------------------------------------------------


def _plan_env(plan: _Plan, spec: Spec, home: Path) -> None:
    values = dict(spec.environment)
    for source in spec.environment_files:
        values.update(_read_environment_file(source))
    data = render_env(values, ENV_HEADER).encode("utf-8")
    path = layout.path(layout.ENV_FILE, home)
    before = read_env_file(path).values if path.exists() else {}
    changed = sorted(k for k in set(before) | set(values) if before.get(k) != values.get(k))
    detail = f"{len(values)} variables" + (f"; changed {_names(changed)}" if changed else "")
    _plan_file(plan, path, data, secret=True, detail=detail)


def _read_environment_file(path: Path) -> dict[str, str]:
    """Bindings of one environment file; no error message ever shows a line's content."""
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HermesError(
            f"environment file {path} does not exist; nothing was written (is the secret "
            "deployed, e.g. by sops-nix or agenix, before hermes-agent starts?)"
        ) from None
    except UnicodeDecodeError:
        raise HermesError(f"environment file {path}: not UTF-8 text", EXIT_USAGE) from None
    except OSError as exc:
        raise HermesError(
            f"cannot read environment file {path}: {exc.strerror or exc}; nothing was written"
        ) from None
    values: dict[str, str] = {}
    problems: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            problems.append(
                f"environment file {path}:{line}: expected KEY=value (line not shown: it may "
                "hold a secret)"
            )
        elif binding.key is not None:
            if not ENV_NAME.match(binding.key):
                problems.append(
                    f"environment file {path}:{line}: {binding.key!r} is not a valid variable name"
                )
            else:
                values[binding.key] = binding.value if binding.value is not None else ""
    if problems:
        raise HermesError("\n".join([*problems, "nothing was written"]), EXIT_USAGE)
    return values


# --- auth.json and .managed -----------------------------------------------------------


def _plan_auth(plan: _Plan, spec: Spec, home: Path) -> None:
    path = layout.path(layout.AUTH_FILE, home)
    exists = path.exists()
    if spec.auth_file is not None:
        source = spec.auth_file
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise HermesError(
                f"authFile {source}: cannot read: {exc.strerror or exc}; nothing was written"
            ) from None
        try:
            json.loads(data)
        except UnicodeDecodeError:
            raise HermesError(f"authFile {source}: not UTF-8 text", EXIT_USAGE) from None
        except json.JSONDecodeError as exc:
            raise HermesError(
                f"authFile {source}:{exc.lineno}: not valid JSON ({exc.msg}); nothing was written",
                EXIT_USAGE,
            ) from None
        if not exists:
            plan.secret(path, data, "seeded", f"from {source}")
            return
        if spec.auth_file_force_overwrite and _read_or_none(path) != data:
            plan.secret(path, data, "overwritten", f"from {source} (authFileForceOverwrite)")
            return
    if exists and _mode(path) != _SECRET:
        plan.tighten(path)


def _plan_marker(plan: _Plan, home: Path, manager: str) -> None:
    """``.managed`` holds the manager's name, as config/managed.py reads it."""
    path = layout.path(layout.MANAGED_MARKER, home)
    _plan_file(plan, path, f"{manager}\n".encode(), secret=False, detail=f"managed by {manager}")


# --- container identity ---------------------------------------------------------------


def _plan_identity(plan: _Plan, spec: Spec) -> None:
    path = spec.state_dir / IDENTITY_FILE
    if not spec.container.enable:
        if path.exists():
            plan.remove(path, "container mode is off")
        return
    identity = container_identity(spec)
    recorded = _read_or_none(path)
    plan.report.container_identity = identity
    plan.report.recreate_container = (recorded or b"").strip() != identity.encode()
    detail = "the container must be recreated" if plan.report.recreate_container else ""
    _plan_file(plan, path, (identity + "\n").encode(), secret=False, detail=detail)


# --- helpers --------------------------------------------------------------------------


def _plan_file(
    plan: _Plan,
    path: Path,
    data: bytes,
    *,
    secret: bool,
    mode: int = 0o644,
    detail: str = "",
) -> None:
    """Plan writing ``data`` to ``path`` only if it differs (secrets: and tighten 0600)."""
    existing = _read_or_none(path)
    if existing == data:
        if secret and _mode(path) != _SECRET:
            plan.tighten(path)
        return
    action = "created" if existing is None else "updated"
    if secret:
        plan.secret(path, data, action, detail)
    else:
        plan.write(path, data, action, detail, mode)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise HermesError(f"{path} is a directory; nothing was written") from None
    except OSError as exc:
        raise HermesError(f"cannot read {path}: {exc.strerror or exc}") from None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HermesError(f"cannot remove {path}: {exc.strerror or exc}") from None


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise HermesError(f"cannot change the mode of {path}: {exc.strerror or exc}") from None
