"""Tools and toolsets: what the agent can do, described once for every front end.

A tool is a name, a description, a JSON Schema for its arguments, an async
function, and flags: ``read_only`` (changes nothing outside the session) and
``parallel_safe`` (may run at the same time as other calls of one reply).
Tools belong to a named toolset; ``toolsets`` in config.yaml picks the sets a
session gets (``all`` for every one).

:func:`dispatch` is the single path from a model's tool call to a result:
unknown tools, malformed JSON and schema violations come back to the model as
error results it can correct, never as exceptions in the loop.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hermes_agent.providers.base import ToolCall, ToolSpec
from hermes_agent.redact import current, redact, redact_json_text
from hermes_agent.tools import untrusted

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.redact import Redactor
    from hermes_agent.state.db import StateDB


#: Ask the user a question (optionally with choices); None when nobody can answer
#: (a one-shot run without a terminal, a cron job): callers must then decide safely.
AskUser = Callable[[str, Sequence[str]], Awaitable[str | None]]


async def nobody_to_ask(question: str, choices: Sequence[str]) -> str | None:
    return None


@dataclass
class ToolContext:
    """What a running tool may use: the session, its workspace, its store, the user."""

    session_id: str
    cwd: str
    config: Config
    db: StateDB
    #: Per-session scratch state that tools keep between calls (e.g. the todo list).
    state: dict[str, Any] = field(default_factory=dict)
    #: How a tool reaches the user (approval prompts, clarifying questions).
    ask: AskUser = nobody_to_ask
    #: How many agents deep this one runs (0 = the user's own; delegate adds 1).
    depth: int = 0
    #: Run a sub-agent on a task with some of this agent's toolsets; returns its answer.
    delegate: Callable[[str, Sequence[str]], Awaitable[str]] | None = None


@dataclass
class ToolOutput:
    """A result with images beside its text (``read_file`` on a picture).

    ``images`` are stored references (:meth:`hermes_agent.images.ImageRef.to_dict`),
    never bytes: the provider turns them into its own image blocks.
    """

    text: str
    images: list[dict[str, Any]] = field(default_factory=list)


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[str | ToolOutput]]


@dataclass
class Tool:
    name: str
    toolset: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    read_only: bool = False
    parallel_safe: bool = False
    #: Why the tool cannot work with this configuration (None: it can), for `hermes tools`.
    unavailable: Callable[[Config], str | None] | None = None
    #: Its results carry text from outside the user's control (web pages, files): a
    #: successful call marks the turn (see :mod:`hermes_agent.tools.untrusted`).
    untrusted: bool = False
    #: Its error messages carry outside text too (an MCP server's JSON-RPC errors), so a
    #: failed call also marks the turn. A file tool's errors are hermes' own words.
    untrusted_errors: bool = False
    _validator: Any = field(default=None, repr=False, compare=False)
    #: :func:`_plain_schema` of ``parameters``, worked out with the validator.
    _plain: tuple[dict[str, tuple[str, ...]], frozenset[str], bool] | None = field(
        default=None, repr=False, compare=False
    )

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def validation_error(self, arguments: dict[str, Any]) -> str | None:
        """Why ``arguments`` do not match the schema (every problem), or None."""
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._plain = _plain_schema(self.parameters)
            self._validator = Draft202012Validator(self.parameters)
        if self._plain is not None and _plainly_valid(arguments, *self._plain):
            return None
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if not errors:
            return None
        return "; ".join(
            f"{'.'.join(str(p) for p in e.path) or 'arguments'}: {e.message}" for e in errors
        )


#: JSON types as Python types, strictly: 1.0 is left to jsonschema (which calls it an
#: integer), True is never a number.
_PLAIN_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "null": lambda v: v is None,
}
#: Keywords that say nothing about validity.
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment"})


def _types(schema: Any) -> tuple[str, ...] | None:
    """A property schema's allowed types, when types are all it checks (else None)."""
    if not isinstance(schema, dict) or not set(schema) <= _ANNOTATIONS | {"type"}:
        return None
    kind = schema.get("type")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind) if isinstance(kind, list) else ()
    if not kinds or not all(isinstance(k, str) and k in _PLAIN_TYPES for k in kinds):
        return None
    return kinds


def _plain_schema(
    schema: dict[str, Any],
) -> tuple[dict[str, tuple[str, ...]], frozenset[str], bool] | None:
    """``(property types, required, closed)`` for the most common shape of tool schema:
    an object of typed properties, some required, maybe no others. None for anything
    else (jsonschema then decides alone)."""
    allowed = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
    if not set(schema) <= allowed or schema.get("type") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    closed = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(closed, bool):
        return None
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return None
    types = {name: _types(sub) for name, sub in properties.items()}
    if any(kinds is None for kinds in types.values()):
        return None
    return {k: v for k, v in types.items() if v is not None}, frozenset(required), not closed


def _plainly_valid(
    arguments: dict[str, Any],
    types: dict[str, tuple[str, ...]],
    required: frozenset[str],
    closed: bool,
) -> bool:
    """True only when ``arguments`` certainly match a :func:`_plain_schema` (the same
    answer jsonschema gives, in a microsecond instead of tens: checked on every tool
    call); False sends them to jsonschema, which says what is wrong."""
    if not required <= arguments.keys():
        return False
    for name, value in arguments.items():
        kinds = types.get(name)
        if kinds is None:
            if closed:
                return False
            continue
        if not any(_PLAIN_TYPES[kind](value) for kind in kinds):
            return False
    return True


class ToolError(Exception):
    """Raised by a tool for a failure the model should read and can act on."""


@dataclass
class ToolResult:
    call: ToolCall
    content: str
    is_error: bool = False
    #: The content includes untrusted text (from a tool flagged ``untrusted``).
    untrusted: bool = False
    #: Stored image references the model is shown with the text (see :class:`ToolOutput`).
    images: list[dict[str, Any]] = field(default_factory=list)

    def as_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "tool",
            "tool_call_id": self.call.id,
            "content": self.content,
        }
        if self.images:
            message["images"] = self.images
        return message


class Registry:
    """All known tools by name; :meth:`select` gives a session's tools."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool

    @property
    def toolsets(self) -> list[str]:
        return sorted({t.toolset for t in self._tools.values()})

    def select(self, toolsets: Iterable[str]) -> list[Tool]:
        """Tools of the named sets, in registration order; ``all`` means every set."""
        wanted = set(toolsets)
        # `mcp`: the MCP servers' tools, which the agent gets from the MCP manager.
        unknown = wanted - set(self.toolsets) - {"all", "mcp"}
        if unknown:
            from hermes_agent.errors import UsageError

            raise UsageError(
                f"unknown toolset {', '.join(sorted(unknown))}; "
                f"available: {', '.join(self.toolsets)}, mcp (or all)"
            )
        return [t for t in self._tools.values() if "all" in wanted or t.toolset in wanted]


MAX_RESULT_CHARS = 50_000


async def dispatch(call: ToolCall, tools: dict[str, Tool], ctx: ToolContext) -> ToolResult:
    """Run one tool call; every failure becomes an error result for the model.

    Every result, errors included, leaves through :func:`_redacted`: an error
    can quote what the tool read (``patch``'s "closest text" is a line of the
    file, perhaps a ``TOKEN=`` line), so it is redacted like a result.
    """
    tool = tools.get(call.name)
    if tool is None:
        return _redacted(
            call, f"error: no tool named {call.name!r}; available: {', '.join(tools)}", True
        )
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return _redacted(call, f"error: arguments are not valid JSON ({exc}); send an object", True)
    if not isinstance(arguments, dict):
        return _redacted(call, "error: arguments must be a JSON object", True)
    problem = tool.validation_error(arguments)
    if problem:
        return _redacted(call, f"error: invalid arguments: {problem}", True)
    try:
        output = await tool.handler(arguments, ctx)
    except ToolError as exc:
        if tool.untrusted_errors:  # An MCP server's error is its own text, not hermes'.
            untrusted.record(ctx.state, f"{call.name} {redact_json_text(call.arguments or '')}")
        text = f"error: {exc}{_undo_denied(tool, ctx)}"
        return _redacted(call, text, True, untrusted=tool.untrusted_errors)
    except Exception as exc:  # A bug in a tool must not end the session.
        return _redacted(call, f"error: {call.name} failed: {type(exc).__name__}: {exc}", True)
    undone = _undo_denied(tool, ctx)
    if undone and isinstance(output, str):
        output += undone
    # The secrets as they are now that the tool has run: one look at the secret files
    # for the turn's record of the call and for its result.
    redactor = current()
    if tool.untrusted:
        where = f"{call.name} {redact_json_text(call.arguments or '', redactor)}".strip()
        untrusted.record(ctx.state, where)
    if isinstance(output, ToolOutput):
        result = _redacted(call, output.text, untrusted=tool.untrusted, redactor=redactor)
        result.images = list(output.images)
        return result
    return _redacted(call, output, untrusted=tool.untrusted, redactor=redactor)


def _undo_denied(tool: Tool, ctx: ToolContext) -> str:
    """After a tool that can change things: undo what the user denied earlier in this turn
    (whatever route made it; see :mod:`hermes_agent.safety.denials`), and say so."""
    if tool.read_only or "approvals.denied" not in ctx.state:
        return ""
    from hermes_agent.safety import denials

    return denials.undo_note(ctx.state)


def _redacted(
    call: ToolCall,
    content: str,
    is_error: bool = False,
    *,
    untrusted: bool = False,
    redactor: Redactor | None = None,
) -> ToolResult:
    """The result as the model, the screen and state.db get it: secrets out, then cut."""
    # Before cutting: a cut could split a secret past recognition.
    content = redact(content, redactor)
    if len(content) > MAX_RESULT_CHARS:
        cut = len(content) - MAX_RESULT_CHARS
        content = content[:MAX_RESULT_CHARS] + f"\n[... {cut} more characters cut]"
    return ToolResult(call, content, is_error, untrusted=untrusted)


#: Modules that define ``TOOLS``: every tool hermes ships, grouped in toolsets.
#: A new toolset is one module added here.
TOOL_MODULES: tuple[str, ...] = (
    "hermes_agent.tools.todo",
    "hermes_agent.tools.session_search",
    "hermes_agent.tools.interaction",
    "hermes_agent.tools.memory",
    "hermes_agent.tools.skills",
    "hermes_agent.tools.files",
    "hermes_agent.tools.web",
    "hermes_agent.tools.terminal",
    "hermes_agent.tools.cron",
)


def cleanup_state(state: dict[str, Any]) -> None:
    """End what a session's tools left running (background processes...).

    Every tool module that keeps resources in ``ToolContext.state`` exposes a
    ``cleanup(state)`` function; only modules already imported can hold any.
    """
    import sys

    for name in TOOL_MODULES:
        module = sys.modules.get(name)
        cleanup = getattr(module, "cleanup", None)
        if cleanup is not None:
            cleanup(state)


def builtin_registry() -> Registry:
    """Every tool hermes ships (each module is imported only here, when a session starts)."""
    import importlib

    registry = Registry()
    for name in TOOL_MODULES:
        for tool in importlib.import_module(name).TOOLS:
            registry.add(tool)
    return registry
