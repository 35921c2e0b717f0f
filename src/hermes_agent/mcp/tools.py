"""An MCP server's tools, resources and prompts as hermes tools.

**Names** are ``mcp__<server>__<tool>``, sanitised to what every provider
accepts (``^[a-zA-Z0-9_-]{1,64}$``): a name that had to change, or is too
long, gets a deterministic suffix from the SHA-256 of the original, so two
tools never silently share a name. The server's own tool name is what is
called.

**Schemas** are normalised to what OpenAI and Anthropic accept: an object at
the root, local ``$ref`` inlined (a recursive one becomes "any value"),
keywords they reject removed, bounded in size; a schema that is still not
valid JSON Schema is replaced by "an object" (the server checks arguments
anyway).

**Descriptions and results come from the server**, which may be hostile:
descriptions are cut and labelled with the server, results are wrapped as
untrusted content (:mod:`hermes_agent.tools.untrusted`) and pass redaction in
``dispatch`` like every tool result.

**Calls** pass the approval gate (:func:`hermes_agent.safety.gate.approve_action`)
with the server's or tool's policy (``auto``/``ask``/``deny``); a tool whose
definition changed after its first use is held (:mod:`.pins`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Any

from hermes_agent.mcp import pins
from hermes_agent.tools.registry import Tool, ToolContext, ToolError

if TYPE_CHECKING:
    import mcp_types as types

    from hermes_agent.mcp.manager import Connection, Scope

NAME_MAX = 64
#: Key in ``ToolContext.state``: a callable showing a line to the user (``Events.notice``).
NOTIFY_KEY = "notify"
_BAD = re.compile(r"[^A-Za-z0-9_-]")
DESCRIPTION_MAX = 1500
SCHEMA_MAX = 30_000
#: Most JSON nodes inlining ``$ref`` may make (a schema within SCHEMA_MAX has far fewer).
SCHEMA_NODES = 20_000
#: Most characters of one result's text before it is cut (the wrapper survives the cut).
RESULT_MAX = 40_000
#: Most bytes of one binary item (image, audio, blob) kept from a result.
BLOB_MAX = 20 << 20
#: JSON Schema keywords providers reject or that mean nothing to them.
_DROP = {
    "$schema",
    "$id",
    "$comment",
    "$anchor",
    "$dynamicAnchor",
    "$dynamicRef",
    "$vocabulary",
    "$defs",
    "definitions",
}


def pins_stamp() -> int:
    return pins.stamp()


# --- names -------------------------------------------------------------------------------


def _suffix(raw: str) -> str:
    return "_" + hashlib.sha256(raw.encode()).hexdigest()[:8]


def tool_name(server: str, tool: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The provider-safe name of ``tool`` of ``server``, distinct from every name in ``taken``."""
    raw = f"mcp__{server}__{tool}"
    clean = _BAD.sub("_", raw)
    if clean != raw or len(clean) > NAME_MAX:
        suffix = _suffix(raw)
        clean = clean[: NAME_MAX - len(suffix)] + suffix
    if clean in taken:  # "a_b" beside "a.b": the later one gets its own suffix.
        suffix = _suffix(raw + "\x00")
        clean = clean[: NAME_MAX - len(suffix)] + suffix
    return clean


# --- schemas -----------------------------------------------------------------------------


def normalize_schema(schema: Any) -> dict[str, Any]:
    """A JSON Schema both OpenAI and Anthropic accept for a tool's arguments."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    root = copy.deepcopy(schema)
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(root.get(key), dict):
            for name, value in root[key].items():
                defs[f"#/{key}/{name}"] = value
    try:
        out = _inline(root, defs, (), [SCHEMA_NODES])
    except _TooBig:
        out = {}
    if not isinstance(out, dict):
        out = {}
    if out.get("type") != "object" or any(k in out for k in ("anyOf", "oneOf", "allOf", "not")):
        # Providers want a plain object at the root: keep its properties if it has any.
        props = out.get("properties") if isinstance(out.get("properties"), dict) else {}
        out = {"type": "object", "properties": props}
    if not isinstance(out.get("properties"), dict):
        out["properties"] = {}
    required = out.get("required")
    if required is not None:
        kept = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        if kept:
            out["required"] = kept
        else:
            out.pop("required")
    if len(json.dumps(out, default=str)) > SCHEMA_MAX:
        out = {"type": "object", "properties": {}}
    try:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(out)
    except Exception:
        out = {"type": "object", "properties": {}}
    return out


class _TooBig(Exception):
    """Inlining went past :data:`SCHEMA_NODES`."""


def _inline(node: Any, defs: dict[str, Any], stack: tuple[str, ...], budget: list[int]) -> Any:
    """``node`` with local ``$ref`` inlined. ``budget`` counts the nodes made: references
    that fan out (each definition using the next ten times) would otherwise expand
    exponentially within the depth limit, on hermes' main thread."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(node, list):
        return [_inline(item, defs, stack, budget) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref)
        if target is None or ref in stack or len(stack) > 12:
            # Unknown or recursive: "any value" here, described so the model knows.
            kind = ref.rsplit("/", 1)[-1]
            note = node.get("description") or f"(a value of the recursive type {kind})"
            return {"description": str(note)[:300]}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs, (*stack, ref), budget)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key in ("properties", "patternProperties", "dependentSchemas") and isinstance(
            value, dict
        ):
            out[key] = {str(k): _inline(v, defs, stack, budget) for k, v in value.items()}
        else:
            out[key] = _inline(value, defs, stack, budget)
    declared = out.get("type")
    is_array = declared == "array" or (isinstance(declared, list) and "array" in declared)
    if is_array and "items" not in out:
        out["items"] = {}  # OpenAI rejects an array schema without items.
    return out


# --- descriptions and results --------------------------------------------------------------


def _description(server: str, text: str | None, title: str | None = None) -> str:
    body = " ".join((text or title or "").split())
    if len(body) > DESCRIPTION_MAX:
        body = body[: DESCRIPTION_MAX - 3] + "..."
    return f"[MCP server {server}] {body}".rstrip()


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MB"


def _decode(data: str) -> bytes | None:
    try:
        return base64.b64decode(data[: (BLOB_MAX * 4) // 3 + 4], validate=False)
    except ValueError:
        return None


def render(result: Any, server: str, tool: str) -> tuple[str, list[dict[str, Any]]]:
    """A call's result as text for the model (untrusted-wrapped) and image references.

    Text, images, audio, embedded resources, resource links and
    ``structuredContent`` are all kept: text as text, images as images where
    hermes can show the model images (else described), other binary content
    described with its type and size.
    """
    import mcp_types as types

    parts: list[str] = []
    images: list[dict[str, Any]] = []
    for block in result.content or ():
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(_image(block.data, block.mime_type, f"{server}/{tool}", images))
        elif isinstance(block, types.AudioContent):
            size = len(block.data) * 3 // 4
            parts.append(f"[audio ({block.mime_type}, {_kb(size)}): not shown to the model]")
        elif isinstance(block, types.ResourceLink):
            extra = f" ({block.mime_type})" if block.mime_type else ""
            desc = f": {block.description}" if block.description else ""
            parts.append(f"[resource link {block.name} {block.uri}{extra}{desc}]")
        elif isinstance(block, types.EmbeddedResource):
            parts.append(_resource_text(block.resource, f"{server}/{tool}", images))
        else:
            parts.append(f"[{getattr(block, 'type', 'unknown')} content]")
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        shown = json.dumps(structured, ensure_ascii=False)
        if not any(_same_json(p, structured) for p in parts):
            parts.append(f"[structured content]\n{shown}")
    body = "\n".join(parts) if parts else "(no content)"
    if len(body) > RESULT_MAX:
        cut = len(body) - RESULT_MAX
        body = body[:RESULT_MAX] + f"\n[... {cut} more characters of this result were cut]"
    from hermes_agent.tools import untrusted

    return untrusted.wrap(body, f"MCP server {server} (tool {tool})"), images


def _same_json(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def _resource_text(resource: Any, label: str, images: list[dict[str, Any]]) -> str:
    import mcp_types as types

    mime = f" ({resource.mime_type})" if getattr(resource, "mime_type", None) else ""
    if isinstance(resource, types.TextResourceContents):
        return f"[embedded resource {resource.uri}{mime}]\n{resource.text}"
    blob = getattr(resource, "blob", "") or ""
    if (resource.mime_type or "").startswith("image/"):
        return _image(blob, resource.mime_type or "", label, images)
    return f"[embedded resource {resource.uri}{mime}, {_kb(len(blob) * 3 // 4)} of binary data]"


def _image(data: str, mime: str, label: str, images: list[dict[str, Any]]) -> str:
    """Store an image for the model when hermes can show images; describe it otherwise."""
    raw = _decode(data)
    if raw is None:
        return f"[image ({mime}): not valid base64]"
    try:
        from hermes_agent import images as image_store
        from hermes_agent.tools import registry

        if not hasattr(registry, "ToolOutput"):
            raise ImportError
        ref = image_store.ingest_bytes(raw, label=f"image from MCP {label}")
        images.append(ref.to_dict())
        return f"[image {ref.describe()}]"
    except Exception:
        return f"[image ({mime}, {_kb(len(raw))}): not shown to the model]"


# --- tools -------------------------------------------------------------------------------


def server_tools(scope: Scope, connection: Connection, taken: set[str]) -> list[Tool]:
    """The hermes tools of one ready server (held tools left out)."""
    out: list[Tool] = []
    names = set(taken)
    for mcp_tool in sorted(connection.tools, key=lambda t: t.name):
        if pins.held(connection.server.name, mcp_tool):
            continue
        name = tool_name(connection.server.name, mcp_tool.name, names)
        if name in names:
            continue  # Two hashes colliding: left out rather than shadowing another tool.
        try:
            parameters = normalize_schema(mcp_tool.input_schema)
        except (RecursionError, ValueError, TypeError):  # A schema nested past reason.
            parameters = {"type": "object", "properties": {}}
        names.add(name)
        out.append(
            Tool(
                name=name,
                toolset="mcp",
                description=_description(
                    connection.server.name, mcp_tool.description, mcp_tool.title
                ),
                parameters=parameters,
                handler=_handler(scope, connection, mcp_tool.name),
                untrusted=True,
                untrusted_errors=True,
            )
        )
    return out


def held_tools(connection: Connection) -> list[str]:
    return [t.name for t in connection.tools if pins.held(connection.server.name, t)]


def _current(connection: Connection, name: str) -> types.Tool | None:
    for tool in connection.tools:
        if tool.name == name:
            return tool
    return None


def _policy(connection: Connection, tool: str, ctx: ToolContext) -> str:
    from hermes_agent.mcp.config import policy_for

    return policy_for(connection.server, tool, str(ctx.config.get("approvals.mode") or "manual"))


def _progress_reporter(ctx: ToolContext, label: str) -> Any:
    """Progress notifications shown through the front end (at most one a second)."""
    loop = asyncio.get_running_loop()
    notify = ctx.state.get(NOTIFY_KEY)
    last = [0.0]

    def show(value: float, total: float | None, message: str | None) -> None:
        now = time.monotonic()
        if notify is None or now - last[0] < 1.0:
            return
        last[0] = now
        amount = f"{value / total:.0%}" if total else f"{value:g}"
        text = f"{label}: {amount}" + (
            f" {' '.join(str(message).split())[:200]}" if message else ""
        )
        from hermes_agent.redact import redact

        notify(redact(text))

    def from_thread(value: float, total: float | None, message: str | None) -> None:
        loop.call_soon_threadsafe(show, value, total, message)

    return from_thread


async def _call(scope: Scope, coro: Any, server: str) -> Any:
    try:
        return await scope.manager.submit(coro)
    except Exception as exc:
        # The error types are imported only when one happened: not on every call.
        raise _call_error(scope, exc, server) from None


def _call_error(scope: Scope, exc: Exception, server: str) -> ToolError:
    """What the model is told when a call failed (the server's words marked as its own)."""
    from mcp.shared.exceptions import MCPError

    from hermes_agent.mcp.manager import ServerGone, _describe_error

    if isinstance(exc, ServerGone):
        return ToolError(
            f"MCP server {server!r} is not available ({exc}); its tools cannot be used now. "
            "Tell the user instead of pretending the call succeeded."
        )
    if isinstance(exc, TimeoutError):
        return ToolError(f"MCP server {server!r}: {exc}")
    if isinstance(exc, MCPError):
        # The message is the server's own text: marked like its results.
        return ToolError(
            f"MCP server {server!r} answered with an error:\n{_server_said(str(exc), server)}"
        )
    connection = scope.find(server)
    reason = _describe_error(exc, connection) if connection else str(exc)
    return ToolError(f"MCP server {server!r}: the call failed:\n{_server_said(reason, server)}")


def _server_said(text: str, server: str) -> str:
    """An error message that may hold a server's words, between the untrusted markers."""
    from hermes_agent.tools import untrusted

    return untrusted.wrap(text[:RESULT_MAX], f"MCP server {server} (error)")


#: ``json.dumps(args, ensure_ascii=False)`` without building an encoder for every call.
_ARGUMENTS = json.JSONEncoder(ensure_ascii=False)


def _handler(scope: Scope, connection: Connection, tool: str) -> Any:
    # Imported and worked out once per tool, not per call: a call's own checks should
    # cost little beside the server's answer (bench/mcp_calls.py).
    from hermes_agent.mcp.config import policy_for
    from hermes_agent.safety.gate import approve_action
    from hermes_agent.tools import untrusted

    server = connection.server.name
    action = f"call the tool {tool!r} of MCP server {server!r}"
    key = f"mcp:{server}:{tool}"
    label = f"{server}/{tool}"
    # A stdio server runs here, in the workspace (a filesystem server writes it): its
    # calls change the workspace like write_file does, so the turn's checkpoint is
    # taken first, unless the tool says it only reads. Without it a model could
    # overwrite or delete files through such a server that /rollback cannot bring back.
    local = bool(connection.server.command)
    from hermes_agent import checkpoints

    async def run(args: dict[str, Any], ctx: ToolContext) -> Any:
        current = _current(connection, tool)
        if current is None:
            raise ToolError(f"MCP server {server!r} no longer offers the tool {tool!r}")
        digest = connection.digests.get(tool) or pins.digest(current)
        pinned = pins.check(server, tool, digest)
        if pinned == "changed":
            raise ToolError(
                f"the tool {tool!r} of MCP server {server!r} changed its definition since it "
                f"was first used; it is held until the user approves the change "
                f"(`hermes mcp trust {server}` or /mcp trust {server})"
            )
        payload = _ARGUMENTS.encode(args)
        mode = str(ctx.config.get("approvals.mode") or "manual")
        await approve_action(
            action,
            ctx,
            purpose="mcp",
            policy=policy_for(connection.server, tool, mode),
            key=key,
            payload=payload,
        )
        if pinned == "new":
            pins.pin(server, [current])
        note = ""
        if local and not _reads_only(current):
            note = await checkpoints.before_change(ctx, f"mcp {label}")
        progress = _progress_reporter(ctx, label)
        asker = ctx.ask  # The server's questions during this call go to its user.
        connection.askers.append(asker)
        try:
            result = await _call(scope, connection.call_tool(tool, args, progress), server)
        finally:
            connection.askers.remove(asker)
        text, images = render(result, server, tool)
        if result.is_error:
            untrusted.record(ctx.state, f"MCP {server}/{tool}")
            raise ToolError(f"the tool reported an error:\n{text}{note}")
        text += note
        if images:
            from hermes_agent.tools import registry

            output_type = getattr(registry, "ToolOutput", None)
            if output_type is not None:
                return output_type(text, images)
        return text

    return run


def _reads_only(tool: Any) -> bool:
    """Whether the server annotates ``tool`` as one that changes nothing (``readOnlyHint``)."""
    annotations = getattr(tool, "annotations", None)
    return getattr(annotations, "read_only_hint", None) is True


def generic_tools(scope: Scope) -> list[Tool]:
    """``mcp_servers`` (the state of every server), and resources/prompts where offered."""
    out = [_status_tool(scope)]
    ready = [c for c in scope.connections if c.state == "ready"]
    with_resources = sorted(c.server.name for c in ready if c.has_resources)
    with_prompts = sorted(c.server.name for c in ready if c.has_prompts)
    if with_resources:
        out.append(_resources_tool(scope, with_resources))
    if with_prompts:
        out.append(_prompts_tool(scope, with_prompts))
    return out


def status_text(scope: Scope) -> str:
    lines = []
    for connection in scope.connections:
        line = connection.status().line()
        left_out = scope.left_out.get(connection.server.name, 0)
        if left_out:
            line += (
                f" ({left_out} of its tools not offered: over mcp.max_tools; choose with "
                f"mcp_servers.{connection.server.name}.tools.include)"
            )
        held = held_tools(connection) if connection.state == "ready" else []
        if held:
            line += f" (held until the user approves their changed definitions: {', '.join(held)})"
        lines.append(line)
    return "\n".join(lines)


def _status_tool(scope: Scope) -> Tool:
    summary = "; ".join(c.status().line()[:200] for c in scope.connections)
    if any(scope.left_out.values()):
        summary += "; some tools are not offered (mcp.max_tools): call this tool for which"

    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        return status_text(scope) or "no MCP servers are configured"

    return Tool(
        name="mcp_servers",
        toolset="mcp",
        description=(
            "The MCP servers configured and their state. Only the tools of servers that are "
            "ready are available: never claim to have used a tool of a server that is "
            "connecting, failed or needs login; tell the user instead. A connecting server's "
            f"tools appear once it is ready. Now: {summary}"
        )[:3000],
        parameters={"type": "object", "properties": {}},
        handler=run,
        read_only=True,
        parallel_safe=True,
    )


def _connection(scope: Scope, name: str) -> Connection:
    connection = scope.find(name)
    if connection is None:
        raise ToolError(f"no MCP server named {name!r}")
    return connection


def _resources_tool(scope: Scope, servers: list[str]) -> Tool:
    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        from hermes_agent.safety.gate import approve_action
        from hermes_agent.tools import untrusted

        server = str(args["server"])
        connection = _connection(scope, server)
        uri = str(args.get("uri") or "")
        await approve_action(
            f"{'read the resource ' + repr(uri) if uri else 'list the resources'} of MCP "
            f"server {server!r}",
            ctx,
            purpose="mcp",
            policy=_policy(connection, "resources", ctx),
            key=f"mcp:{server}:resources",
            payload=uri,
        )
        if not uri:
            listed = await _call(scope, connection.list_resources(), server)
            lines = [
                f"{r.uri} {r.name}" + (f" ({r.mime_type})" if r.mime_type else "")
                for r in listed.resources[:500]
            ]
            body = "\n".join(lines) or "(no resources)"
        else:
            read = await _call(scope, connection.read_resource(uri), server)
            body = "\n".join(_resource_text(c, server, []) for c in read.contents)
        if len(body) > RESULT_MAX:
            body = body[:RESULT_MAX] + f"\n[... {len(body) - RESULT_MAX} more characters cut]"
        untrusted.record(ctx.state, f"MCP {server} resources")
        return untrusted.wrap(body, f"MCP server {server} (resources)")

    return Tool(
        name="mcp_resources",
        toolset="mcp",
        description=(
            "List the resources of an MCP server (no uri), or read one (uri). Servers with "
            f"resources: {', '.join(servers)}."
        ),
        parameters={
            "type": "object",
            "properties": {
                "server": {"type": "string", "enum": servers},
                "uri": {"type": "string", "description": "the resource to read; empty lists"},
            },
            "required": ["server"],
        },
        handler=run,
        untrusted=True,
        untrusted_errors=True,
    )


def _prompts_tool(scope: Scope, servers: list[str]) -> Tool:
    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        from hermes_agent.safety.gate import approve_action
        from hermes_agent.tools import untrusted

        server = str(args["server"])
        connection = _connection(scope, server)
        name = str(args.get("name") or "")
        if not name:
            lines = [
                f"{p.name}: {' '.join((p.description or '').split())[:200]}"
                + (f" (arguments: {', '.join(a.name for a in p.arguments)})" if p.arguments else "")
                for p in connection.prompts
            ]
            body = "\n".join(lines) or "(no prompts)"
        else:
            arguments = {str(k): str(v) for k, v in (args.get("arguments") or {}).items()}
            await approve_action(
                f"get the prompt {name!r} of MCP server {server!r}",
                ctx,
                purpose="mcp",
                policy=_policy(connection, "prompts", ctx),
                key=f"mcp:{server}:prompts",
                payload=json.dumps(arguments, ensure_ascii=False),
            )
            got = await _call(scope, connection.get_prompt(name, arguments), server)
            body = prompt_text(got)
        untrusted.record(ctx.state, f"MCP {server} prompts")
        return untrusted.wrap(body, f"MCP server {server} (prompts)")

    return Tool(
        name="mcp_prompts",
        toolset="mcp",
        description=(
            "List the prompts of an MCP server (no name), or get one (name, arguments). "
            f"Servers with prompts: {', '.join(servers)}."
        ),
        parameters={
            "type": "object",
            "properties": {
                "server": {"type": "string", "enum": servers},
                "name": {"type": "string"},
                "arguments": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["server"],
        },
        handler=run,
        untrusted=True,
        untrusted_errors=True,
    )


def prompt_text(result: Any) -> str:
    """A prompt's messages as text (for the model, or as a `/` command's message)."""
    lines = []
    for message in result.messages:
        content = message.content
        text = getattr(content, "text", None)
        if text is None:
            resource = getattr(content, "resource", None)
            text = _resource_text(resource, "prompt", []) if resource is not None else ""
        lines.append(f"{message.role}: {text}")
    return "\n".join(lines)
