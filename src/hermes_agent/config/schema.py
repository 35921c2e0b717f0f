"""Every configuration key: its default, its type and what it means.

``SETTINGS`` is the single source: ``DEFAULT_CONFIG`` is built from it, `hermes
config set` and `hermes config check` validate against it, the README's
configuration reference is generated from it (``scripts/gen_config_docs.py``)
and the Nix config-drift check compares its keys. A key belongs here only when
some part of hermes reads it.

Kinds: ``str``, ``int``, ``number`` (int or float), ``bool``, ``list[str]``,
``dict`` (an open mapping whose entries a later part validates); a trailing
``?`` allows ``null``.
"""

from __future__ import annotations

import copy
from typing import Any

from hermes_agent.providers.catalog import DEFAULT_PROVIDER, PROVIDERS


class Setting:
    """One configuration key (dotted path) with its default and meaning."""

    __slots__ = ("choices", "default", "doc", "interpolate", "key", "kind", "maximum", "minimum")

    def __init__(
        self,
        key: str,
        default: Any,
        kind: str,
        doc: str,
        *,
        choices: tuple[str, ...] = (),
        minimum: float | None = None,
        maximum: float | None = None,
        interpolate: bool = False,
    ) -> None:
        self.key = key
        self.default = default
        self.kind = kind
        self.doc = doc
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        #: ``${VAR}`` in the value is replaced from the environment when loaded.
        self.interpolate = interpolate


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model.provider",
        DEFAULT_PROVIDER,
        "str",
        "Who serves the model: `openrouter`, `anthropic`, `openai`, or `custom` "
        "(any OpenAI-compatible endpoint named by `model.base_url`).",
        choices=tuple(PROVIDERS),
    ),
    Setting(
        "model.default",
        PROVIDERS[DEFAULT_PROVIDER].default_model,
        "str",
        "Model id sent to the provider (OpenRouter ids look like `anthropic/claude-sonnet-4`).",
    ),
    Setting(
        "model.base_url",
        "",
        "str",
        "Endpoint of the API. Empty: the provider's own (OpenRouter: "
        "`https://openrouter.ai/api/v1`). `${VAR}` is replaced from the environment.",
        interpolate=True,
    ),
    Setting(
        "model.api_key_env",
        "",
        "str",
        "Name of the environment variable (or `.env` entry) holding the API key. Empty: the "
        "provider's usual one (`OPENROUTER_API_KEY`, `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`).",
    ),
    Setting(
        "model.max_tokens",
        8192,
        "int",
        "Most tokens the model may write in one reply.",
        minimum=1,
    ),
    Setting(
        "model.context_length",
        None,
        "int?",
        "The model's context window in tokens, for compression. Empty: known models' own "
        "size, else 128000.",
        minimum=1024,
    ),
    Setting(
        "model.timeout",
        300,
        "number",
        "Seconds to wait for the provider before the request counts as failed (and is retried).",
        minimum=1,
    ),
    Setting(
        "toolsets",
        ["all"],
        "list[str]",
        "Toolsets the agent may use (`hermes chat` then `/tools` lists them; today `todo` and "
        "`session_search`); `all` enables every one.",
    ),
    Setting(
        "max_turns",
        90,
        "int",
        "Most model calls the agent makes for one message before it stops and says so.",
        minimum=1,
    ),
    Setting(
        "agent.max_turns",
        None,
        "int?",
        "Overrides `max_turns` when set (the NixOS module's historical spelling).",
        minimum=1,
    ),
    Setting(
        "agent.verbose",
        False,
        "bool",
        "Show tool arguments and full tool results while the agent works.",
    ),
    Setting(
        "terminal.backend",
        "local",
        "str",
        "Where the terminal tool runs commands: `local`, `ssh` or `docker`.",
        choices=("local", "ssh", "docker"),
    ),
    Setting(
        "terminal.cwd",
        "",
        "str",
        "The workspace: working directory of the terminal and file tools. Empty: the "
        "directory hermes was started in. `~` and `${VAR}` are expanded.",
        interpolate=True,
    ),
    Setting(
        "terminal.timeout",
        180,
        "int",
        "Seconds a foreground command may run before it is stopped.",
        minimum=1,
    ),
    Setting(
        "compression.enabled",
        True,
        "bool",
        "Summarise the middle of a long conversation instead of failing at the context limit.",
    ),
    Setting(
        "compression.threshold",
        0.85,
        "number",
        "Fraction of the model's context window at which compression starts.",
        minimum=0.1,
        maximum=1.0,
    ),
    Setting(
        "compression.summary_model",
        "",
        "str",
        "Model that writes the summary. Empty: the main model.",
    ),
    Setting(
        "memory.memory_enabled",
        True,
        "bool",
        "Keep agent notes in `memories/MEMORY.md` and show them to the agent at session start.",
    ),
    Setting(
        "memory.user_profile_enabled",
        True,
        "bool",
        "Keep a profile of the user in `memories/USER.md` and show it at session start.",
    ),
    Setting(
        "display.compact",
        False,
        "bool",
        "Terse terminal output: one line per tool call, no banners.",
    ),
    Setting(
        "display.personality",
        "",
        "str",
        "Name of a personality added to the system prompt. Empty: none.",
    ),
    Setting(
        "skills.disabled",
        [],
        "list[str]",
        "Names of skills the agent must not see or load.",
    ),
    Setting(
        "streaming.enabled",
        True,
        "bool",
        "Stream the model's answer as it is written instead of waiting for the whole reply.",
    ),
    Setting(
        "mcp_servers",
        {},
        "dict",
        "MCP servers by name: `command`/`args`/`env` for stdio, or `url`/`headers` for HTTP. "
        "`${VAR}` is replaced in `env`, `url` and `headers`.",
    ),
)

SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}

#: Dotted prefixes that are sections (mappings holding settings), e.g. ``model``.
SECTIONS: frozenset[str] = frozenset(
    ".".join(s.key.split(".")[:i]) for s in SETTINGS for i in range(1, s.key.count(".") + 1)
)


def _build_defaults() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for setting in SETTINGS:
        *parents, leaf = setting.key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(setting.default)
    return tree


DEFAULT_CONFIG: dict[str, Any] = _build_defaults()


def default_config() -> dict[str, Any]:
    """A fresh deep copy of ``DEFAULT_CONFIG`` that the caller may change."""
    return copy.deepcopy(DEFAULT_CONFIG)


def type_name(value: Any) -> str:
    """Name a YAML value's type the way a user thinks of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "dict": "a mapping",
}


def check_value(setting: Setting, value: Any) -> str | None:
    """Return why ``value`` does not fit ``setting``, or None when it does."""
    kind = setting.kind
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    ok: bool
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind == "dict":
        ok = isinstance(value, dict)
    else:  # pragma: no cover - a programming error in SETTINGS
        raise AssertionError(f"unknown kind {kind!r} for {setting.key}")
    if not ok:
        expected = _EXPECTED[kind] + (" or null" if setting.kind.endswith("?") else "")
        return f"expected {expected}, got {_show(value)} ({type_name(value)})"
    if setting.choices and value not in setting.choices:
        return f"must be one of {', '.join(setting.choices)}; got {_show(value)}"
    if setting.minimum is not None and value < setting.minimum:
        return f"must be at least {setting.minimum:g}; got {value}"
    if setting.maximum is not None and value > setting.maximum:
        return f"must be at most {setting.maximum:g}; got {value}"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def find_problems(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Check a user configuration tree; return ``(dotted key, problem)`` pairs.

    Unknown keys are reported as problems too; the loader decides whether an
    unknown key is fatal (`config check`) or a warning (every other command).
    """
    problems: list[tuple[str, str]] = []
    for raw_key, value in data.items():
        key = f"{prefix}{raw_key}"
        if not isinstance(raw_key, str):
            problems.append((key, f"keys must be strings, got {type_name(raw_key)}"))
            continue
        setting = SETTINGS_BY_KEY.get(key)
        if setting is not None:
            reason = check_value(setting, value)
            if reason:
                problems.append((key, reason))
        elif key in SECTIONS:
            if isinstance(value, dict):
                problems.extend(find_problems(value, key + "."))
            elif value is not None:  # An empty section (`model:`) is harmless.
                problems.append(
                    (key, f"expected a mapping, got {_show(value)} ({type_name(value)})")
                )
        else:
            problems.append((key, UNKNOWN_KEY))
    return problems


UNKNOWN_KEY = "unknown key"
