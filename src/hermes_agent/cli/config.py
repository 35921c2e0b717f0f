"""`hermes config`: show, check and change config.yaml and `.env`.

`set` parses the value as YAML, checks it against the key's type, and refuses
unknown keys unless ``--force``. Secrets (names like ``*_API_KEY``,
``*_TOKEN``) go to ``.env`` (0600), never into config.yaml. Nothing is written
when the current file cannot be read back, so a broken config.yaml is never
replaced by a half-guess; the user is told which line to fix first.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from hermes_agent import home
from hermes_agent.cli.common import load_config, load_env, warn
from hermes_agent.config import envfile, loader, merge, schema
from hermes_agent.config.managed import require_unmanaged
from hermes_agent.errors import EXIT_USAGE, ConfigError, HermesError, UsageError
from hermes_agent.fsutil import atomic_write
from hermes_agent.home_lock import home_lock


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=cmd_show)
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", title="actions")

    show = sub.add_parser("show", help="print the effective configuration (the default)")
    show.set_defaults(handler=cmd_show)

    get = sub.add_parser("get", help="print one value")
    get.add_argument("key", help="dotted key, e.g. model.default, or a secret name")
    get.set_defaults(handler=cmd_get)

    set_ = sub.add_parser(
        "set",
        help="change one value",
        description="Change one value. VALUE is parsed as YAML (true, 3, [a, b]). "
        "Secret names (*_API_KEY, *_TOKEN, *_SECRET, *_PASSWORD) are stored in .env.",
    )
    set_.add_argument("key", help="dotted key, e.g. model.default, or a secret name")
    set_.add_argument("value", help="the new value, as YAML")
    set_.add_argument("--force", action="store_true", help="accept a key hermes does not know")
    set_.set_defaults(handler=cmd_set)

    unset = sub.add_parser("unset", help="remove a value (its default applies again)")
    unset.add_argument("key")
    unset.set_defaults(handler=cmd_unset)

    edit = sub.add_parser("edit", help="open config.yaml in $VISUAL/$EDITOR, check, then save")
    edit.set_defaults(handler=cmd_edit)

    path = sub.add_parser("path", help="print the path of config.yaml")
    path.set_defaults(handler=lambda _args: _print(home.config_path()))

    env_path = sub.add_parser("env-path", help="print the path of .env")
    env_path.set_defaults(handler=lambda _args: _print(home.env_path()))

    check = sub.add_parser("check", help="validate config.yaml and .env; list every problem")
    check.set_defaults(handler=cmd_check)


def _print(value: object) -> int:
    print(value)
    return 0


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return loader.dump_yaml({"_": value}).split("\n", 1)[1].rstrip() or "{}"
    return str(value)


# --- show / get -----------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    config = load_config(interpolate=False)
    print(f"# {config.path}" + ("" if config.path.exists() else " (not created yet: defaults)"))
    print(loader.dump_yaml(config.data), end="")
    env = envfile.read_env_file(home.env_path())
    if env.values:
        print(f"# {home.env_path()}")
        for key, value in env.values.items():
            shown = envfile.mask(value) if envfile.is_secret_name(key) else value
            print(f"#   {key}={shown}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    key: str = args.key
    if envfile.is_secret_name(key):
        load_env()
        value = os.environ.get(key)
        if value is None:
            raise HermesError(
                f"{key} is not set (neither in {home.env_path()} nor the environment)"
            )
        print(envfile.mask(value))
        return 0
    config = load_config(interpolate=False)
    missing = object()
    value = merge.get_path(config.data, _valid_key(key), missing)
    if value is missing:
        raise UsageError(f"{key} is not set and has no default{_suggest(key)}")
    print(_scalar(value))
    return 0


# --- set / unset ----------------------------------------------------------------


def _valid_key(key: str) -> str:
    try:
        merge.split_key(key)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return key


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, list(schema.SETTINGS_BY_KEY), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _open_parent(key: str) -> schema.Setting | None:
    """The open-mapping setting (like ``mcp_servers``) that ``key`` lies inside, if any."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        setting = schema.SETTINGS_BY_KEY.get(".".join(parts[:i]))
        if setting is not None:
            return setting if setting.kind.rstrip("?") == "dict" else None
    return None


def parse_value(setting: schema.Setting | None, text: str) -> Any:
    """Parse a command-line value as YAML, the way the key's type wants it.

    For a string setting a bare word stays text even when YAML would read it
    as something else (``yes``, ``3.5``, ``null``) or cannot read it at all
    (``@bot:example.org``): the user typed a string.
    """
    try:
        value = loader.parse_yaml(text, Path("<value>"))
    except ConfigError as exc:
        if setting is not None and setting.kind.rstrip("?") == "str":
            return text  # `@bot:example.org`, `%x`: not YAML, but plainly the string meant.
        raise UsageError(f"cannot parse the value as YAML: {exc}") from None
    if setting is not None and setting.kind == "str" and not isinstance(value, str | list | dict):
        return text
    return value


def _has_comments(text: str) -> bool:
    return any(line.lstrip().startswith("#") for line in text.splitlines())


def _save(user: dict[str, Any], old_text: str) -> None:
    loader.save_user_config(user)
    if _has_comments(old_text):
        warn("comments in config.yaml are not kept when hermes rewrites it")


def cmd_set(args: argparse.Namespace) -> int:
    key, text = args.key, args.value
    require_unmanaged("hermes config set")
    if envfile.is_secret_name(key):
        with home_lock("hermes config set"):
            envfile.set_env_value(home.env_path(), key, text)
        print(f"{key} saved in {home.env_path()} (mode 0600)")
        return 0
    _valid_key(key)
    setting = schema.SETTINGS_BY_KEY.get(key)
    if setting is None:
        if key in schema.SECTIONS:
            children = sorted(k for k in schema.SETTINGS_BY_KEY if k.startswith(key + "."))
            raise UsageError(f"{key} is a section; set one of its keys: {', '.join(children)}")
        if _open_parent(key) is None and not args.force:
            raise UsageError(
                f"unknown key {key}{_suggest(key)} (hermes config set --force stores it anyway)"
            )
    value = parse_value(setting, text)
    if setting is not None:
        reason = schema.check_value(setting, value)
        if reason:
            raise UsageError(f"{key}: {reason}")
    # Read, change and write under the home's lock: another writer's change is never lost.
    with home_lock("hermes config set"):
        user, old_text = loader.read_for_update()
        merge.set_path(user, key, value)
        fatal = [(k, m) for k, m in schema.find_problems(user) if m != schema.UNKNOWN_KEY]
        if fatal:  # e.g. `mcp_servers.x 1` under an open mapping whose parent is not a mapping
            raise UsageError("; ".join(f"{k}: {m}" for k, m in fatal))
        _save(user, old_text)
    shown = json.dumps(value) if isinstance(value, dict | list) else _scalar(value)
    print(f"{key} = {shown}  ({home.config_path()})")
    return 0


def cmd_unset(args: argparse.Namespace) -> int:
    key = args.key
    require_unmanaged("hermes config unset")
    if envfile.is_secret_name(key):
        with home_lock("hermes config unset"):
            removed = envfile.unset_env_value(home.env_path(), key)
        if removed:
            print(f"{key} removed from {home.env_path()}")
        else:
            warn(f"{key} is not in {home.env_path()}; nothing to do")
        return 0
    _valid_key(key)
    with home_lock("hermes config unset"):
        user, old_text = loader.read_for_update()
        if not merge.unset_path(user, key):
            warn(f"{key} is not set in {home.config_path()}; nothing to do")
            return 0
        _save(user, old_text)
    default = merge.get_path(schema.DEFAULT_CONFIG, key, None)
    suffix = f"; default: {_scalar(default)}" if key in schema.SETTINGS_BY_KEY else ""
    print(f"{key} removed{suffix}  ({home.config_path()})")
    return 0


# --- edit -----------------------------------------------------------------------


def _editor() -> list[str]:
    for var in ("VISUAL", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            return shlex.split(value)
    for candidate in ("sensible-editor", "nano", "vi"):
        found = shutil.which(candidate)
        if found:
            return [found]
    raise HermesError("no editor found: set VISUAL or EDITOR (for example EDITOR=nano)")


def _ask_yes(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [Y/n] ").strip().lower()
    except EOFError:
        return False
    return answer in ("", "y", "yes")


def cmd_edit(args: argparse.Namespace) -> int:
    require_unmanaged("hermes config edit")
    path = home.config_path()
    home.ensure_home()
    original = _read_original(path)
    draft = path.with_name(f".{path.name}.edit.yaml")
    atomic_write(draft, original, mode=0o600)
    editor = _editor()
    while True:
        try:
            result = subprocess.run([*editor, str(draft)], check=False)
        except OSError as exc:
            raise HermesError(f"cannot start editor {editor[0]}: {exc.strerror or exc}") from None
        if result.returncode != 0:
            raise HermesError(
                f"editor exited with status {result.returncode}; config.yaml unchanged "
                f"(your draft is kept in {draft})"
            )
        edited = draft.read_text(encoding="utf-8", errors="replace")
        if edited == original:
            draft.unlink()
            print("no changes")
            return 0
        problems = loader.check_config(draft)
        fatal = [p for p in problems if not p.endswith(schema.UNKNOWN_KEY)]
        if not fatal:
            break
        for problem in problems:
            print(problem, file=sys.stderr)
        if not _ask_yes("config.yaml was not changed. Edit again?"):
            print(
                f"hermes: config.yaml unchanged; your draft is kept in {draft}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    for problem in problems:
        warn(problem)
    # The editor may have been open for minutes: the lock is not held meanwhile (it would
    # stop the gateway and every script), so the file is compared with what was opened,
    # under the lock, and a change made by someone else is never overwritten.
    with home_lock("hermes config edit"):
        if _read_current(path) != original:
            raise HermesError(
                f"{path} was changed by another writer while you were editing; it was "
                f"left as it is now, and your draft is kept in {draft} (merge it by hand, "
                "or run `hermes config edit` again)"
            )
        atomic_write(path, edited, mode=0o600)
    draft.unlink()
    print(f"saved {path}")
    return 0


def _read_current(path: Path) -> str:
    """config.yaml as :func:`_read_original` reads it, for the check before saving."""
    if not path.exists():
        return _read_original(path)
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise HermesError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_original(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "# hermes configuration: see `hermes config --help` and the README.\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise HermesError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


# --- check ----------------------------------------------------------------------


def _agent_problems() -> list[str]:
    """What `hermes chat` would refuse in a config.yaml whose types are right.

    fallback_providers entries and the provider's base URL are checked when an agent is
    built; without this, `config check` said OK to a file every chat refused.
    """
    from hermes_agent.providers import fallback

    config = loader.load_config()
    where = home.config_path()
    problems: list[str] = []
    try:
        fallback.entries(config)
    except HermesError as exc:
        problems.append(f"{where}: {exc}")
    url = str(config.get("model.base_url") or "")
    if url and not url.lower().startswith(("http://", "https://")):
        problems.append(f"{where}: model.base_url: must start with http:// or https://")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    load_env()  # `${VAR}` may refer to .env; its own bad lines are reported below.
    problems = loader.check_config()
    if not problems:
        problems += _agent_problems()
    env_path = home.env_path()
    env = envfile.read_env_file(env_path)
    problems += env.problems
    try:
        mode = stat.S_IMODE(env_path.stat().st_mode)
    except OSError:
        mode = None
    if mode is not None and mode & 0o077:
        problems.append(
            f"{env_path}: mode {mode:04o} lets others read secrets; run chmod 600 {env_path}"
        )
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return EXIT_USAGE
    print(f"{home.config_path()}: OK")
    return 0
