"""Reading, checking and writing config.yaml.

The effective configuration is ``deep_merge(DEFAULT_CONFIG, config.yaml)``,
with ``${VAR}`` replaced in the settings that promise it. config.yaml holds
only what the user (or the NixOS module) set, never a copy of the defaults, so
a later release can change a default and every install that did not choose
otherwise follows it.

Errors name the file and line (``config.yaml:7: model.default: expected a
string, got 3 (integer)``) and exit with status 2; nothing is written when a
new value would not pass the same check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hermes_agent import home
from hermes_agent.config.merge import deep_merge, get_path
from hermes_agent.config.schema import (
    DEFAULT_CONFIG,
    SECTIONS,
    SETTINGS,
    UNKNOWN_KEY,
    find_problems,
)
from hermes_agent.errors import ConfigError
from hermes_agent.fsutil import atomic_write

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Config:
    """The effective configuration plus what it was made from."""

    def __init__(self, data: dict[str, Any], user: dict[str, Any], path: Path) -> None:
        #: Defaults deep-merged with the file (and interpolated, when loaded so).
        self.data = data
        #: Exactly what config.yaml holds (empty when it does not exist).
        self.user = user
        self.path = path
        #: Non-fatal findings (unknown keys) for the front end to show.
        self.warnings: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        return get_path(self.data, key, default)


def parse_yaml(text: str, path: Path) -> Any:
    """Parse YAML text; a syntax error becomes ``file:line: message``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{path}{line}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def read_user_config(path: Path | None = None) -> tuple[dict[str, Any], str]:
    """Return config.yaml's mapping and its text; both empty when it does not exist."""
    path = path or home.config_path()
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}, ""
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 text") from None
    data = parse_yaml(text, path)
    if data is None:
        return {}, text
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of settings (key: value) at the top level")
    # An empty section (`model:` with every child commented out) means "nothing set".
    for key in [k for k, v in data.items() if v is None and k in SECTIONS]:
        del data[key]
    return data, text


def read_for_update(path: Path | None = None) -> tuple[dict[str, Any], str]:
    """config.yaml as it is, for a command about to rewrite it.

    A file that does not parse is refused rather than replaced by a guess, so
    a typo in config.yaml never costs the user the rest of the file.
    """
    try:
        return read_user_config(path)
    except ConfigError as exc:
        raise ConfigError(
            [*exc.problems, "config.yaml was left unchanged; fix it (hermes config edit) first"]
        ) from None


def key_lines(text: str) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Map each dotted key of a YAML document to its 1-based line.

    Also returns duplicated keys with the line of their first appearance
    (PyYAML keeps the last silently, which hides a user's mistake). Only used
    on the error path, so its cost is irrelevant.
    """
    lines: dict[str, int] = {}
    duplicates: list[tuple[str, int]] = []
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return lines, duplicates

    def walk(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            dotted = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line + 1
            if dotted in lines:
                duplicates.append((dotted, lines[dotted]))
            lines[dotted] = line
            walk(value_node, dotted + ".")

    if root is not None:
        walk(root, "")
    return lines, duplicates


def _located(path: Path, lines: Mapping[str, int], key: str, message: str) -> str:
    probe = key
    while probe and probe not in lines:
        probe = probe.rpartition(".")[0]
    where = f":{lines[probe]}" if probe else ""
    return f"{path}{where}: {key}: {message}"


def expand_vars(value: str, environ: Mapping[str, str], key: str = "") -> str:
    """Replace ``${VAR}`` from ``environ``; ``$$`` is a literal ``$``.

    An unset variable is an error naming the key and the variable: sending a
    literal ``${OLLAMA_URL}`` to a server would fail much less clearly.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name not in environ:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}${{{name}}} is used but {name} is not set (.env or environment)"
            )
        return environ[name]

    return _VAR.sub(replace, value)


def expand_tree(value: Any, environ: Mapping[str, str], key: str = "") -> Any:
    """Apply :func:`expand_vars` to every string inside ``value``."""
    if isinstance(value, str):
        return expand_vars(value, environ, key)
    if isinstance(value, dict):
        return {
            k: expand_tree(v, environ, f"{key}.{k}" if key else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_tree(v, environ, key) for v in value]
    return value


def _interpolate(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for setting in SETTINGS:
        if not setting.interpolate:
            continue
        parts = setting.key.split(".")
        node: Any = data
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(parts[-1]), str):
            try:
                node[parts[-1]] = expand_vars(node[parts[-1]], environ, setting.key)
            except ConfigError as exc:
                problems.extend(exc.problems)
    return problems


def check_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every problem in config.yaml, one located line each (empty when valid)."""
    path = path or home.config_path()
    try:
        user, text = read_user_config(path)
    except ConfigError as exc:
        return exc.problems
    lines, duplicates = key_lines(text)
    problems = [
        _located(path, lines, key, f"set again (first on line {first}); the last one wins")
        for key, first in duplicates
    ]
    found = find_problems(user)
    problems += [_located(path, lines, key, msg) for key, msg in found]
    if all(msg == UNKNOWN_KEY for _, msg in found):
        merged = deep_merge(DEFAULT_CONFIG, user)
        for problem in _interpolate(merged, os.environ if environ is None else environ):
            key, _, message = problem.partition(": ")
            problems.append(_located(path, lines, key, message))
    return problems


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    interpolate: bool = True,
) -> Config:
    """Load the effective configuration.

    A syntax error, a value of the wrong type, or an unset ``${VAR}`` raises
    :class:`ConfigError` listing every such problem with its line. Unknown keys
    only produce warnings, so a config written for a newer release (or by a
    NixOS module with extra keys) still runs.
    """
    path = path or home.config_path()
    user, text = read_user_config(path)
    found = find_problems(user)
    fatal = [(k, m) for k, m in found if m != UNKNOWN_KEY]
    lines: Mapping[str, int] = key_lines(text)[0] if found else {}
    if fatal:
        raise ConfigError([_located(path, lines, k, m) for k, m in fatal])
    data = deep_merge(DEFAULT_CONFIG, user)
    if interpolate:
        problems = _interpolate(data, os.environ if environ is None else environ)
        if problems:
            raise ConfigError(
                [_located(path, lines or key_lines(text)[0], *p.split(": ", 1)) for p in problems]
            )
    config = Config(data, user, path)
    config.warnings = [
        _located(path, lines, k, "unknown key (ignored; see `hermes config check`)")
        for k, _ in found
    ]
    return config


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Render a config tree the way a person would write it by hand."""
    if not data:
        return ""
    return yaml.safe_dump(
        dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )


def save_user_config(data: Mapping[str, Any], path: Path | None = None) -> None:
    """Write config.yaml atomically; a new file is created 0600."""
    atomic_write(path or home.config_path(), dump_yaml(data), mode=0o600)
