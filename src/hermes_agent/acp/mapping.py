"""Hermes values as ACP values: tool calls, prompts, stored history, the todo list.

Pure functions over plain data (no connection, no session): what an editor
shows for a tool call (kind, title, the files it touches, a diff), what the
model reads for a prompt the editor sent (text, embedded files, images), and
how a stored conversation is replayed on ``session/load``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    ContentToolCallContent,
    FileEditToolCallContent,
    PlanEntry,
    TextContentBlock,
    ToolCallLocation,
    ToolCallProgress,
    ToolCallStart,
    UserMessageChunk,
)

#: What kind of work each tool does, for the editor's icon and grouping.
KINDS: dict[str, str] = {
    "read_file": "read",
    "write_file": "edit",
    "patch": "edit",
    "search_files": "search",
    "session_search": "search",
    "terminal": "execute",
    "process": "execute",
    "web_fetch": "fetch",
    "web_search": "fetch",
    "todo": "think",
    "clarify": "other",
    "delegate": "think",
    "skill_view": "read",
    "skills_list": "read",
}
#: Longest tool output shown in the editor (the model gets its own, longer, copy).
MAX_SHOWN = 20_000


def arguments(raw: str) -> dict[str, Any]:
    """A tool call's arguments as a dict ({} when the model wrote something else)."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_kind(name: str) -> str:
    return KINDS.get(name, "other")


def _short(text: str, limit: int = 80) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def tool_title(name: str, args: dict[str, Any]) -> str:
    """One line the editor shows for the call: the command, the file, the query."""
    if name == "terminal" and args.get("command"):
        return _short(str(args["command"]))
    if name in ("read_file", "write_file", "patch") and args.get("path"):
        verb = {"read_file": "Read", "write_file": "Write", "patch": "Edit"}[name]
        return f"{verb} {_short(str(args['path']))}"
    if name == "search_files" and args.get("pattern"):
        return f"Search {_short(str(args['pattern']))}"
    if name in ("web_search", "session_search") and args.get("query"):
        return f"{name.replace('_', ' ').capitalize()}: {_short(str(args['query']))}"
    if name == "web_fetch" and args.get("url"):
        return f"Fetch {_short(str(args['url']))}"
    return name


def _absolute(path: str, cwd: str) -> str:
    expanded = os.path.expanduser(path)
    return os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(cwd, expanded))


def tool_locations(name: str, args: dict[str, Any], cwd: str) -> list[ToolCallLocation]:
    """The files a call touches, so the editor can follow along."""
    path = args.get("path")
    if name in ("read_file", "write_file", "patch", "search_files") and isinstance(path, str):
        line = args.get("offset") if name == "read_file" else None
        number = line if isinstance(line, int) else None
        return [ToolCallLocation(path=_absolute(path, cwd), line=number)]
    return []


def text_content(text: str) -> ContentToolCallContent:
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + f"\n[... {len(text) - MAX_SHOWN} more characters]"
    return ContentToolCallContent(type="content", content=TextContentBlock(type="text", text=text))


def tool_diff(
    name: str, args: dict[str, Any], cwd: str, old_text: str | None
) -> FileEditToolCallContent | None:
    """The change a write_file or patch call proposes, as the editor's diff view.

    ``old_text`` is the file as the tool will see it (the editor's buffer when
    the editor serves the files); None for a new file.
    """
    from hermes_agent.redact import redact

    path = args.get("path")
    if not isinstance(path, str):
        return None
    where = _absolute(path, cwd)
    args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
    if name == "write_file" and isinstance(args.get("content"), str):
        return FileEditToolCallContent(
            type="diff", path=where, old_text=old_text, new_text=args["content"]
        )
    if name == "patch" and isinstance(args.get("old"), str) and isinstance(args.get("new"), str):
        if old_text is None or args["old"] not in old_text:
            return FileEditToolCallContent(
                type="diff", path=where, old_text=args["old"], new_text=args["new"]
            )
        count = -1 if args.get("replace_all") else 1
        return FileEditToolCallContent(
            type="diff",
            path=where,
            old_text=old_text,
            new_text=old_text.replace(args["old"], args["new"], count),
        )
    return None


def plan_entries(items: Sequence[dict[str, Any]]) -> list[PlanEntry]:
    """The todo tool's list as an ACP plan."""
    status = {"pending": "pending", "in_progress": "in_progress", "done": "completed"}
    return [
        PlanEntry(
            content=str(item.get("task", "")),
            priority="medium",
            status=status.get(str(item.get("status")), "completed"),  # type: ignore[arg-type]
        )
        for item in items
        if item.get("status") != "cancelled"
    ]


def plan_update(items: Sequence[dict[str, Any]]) -> AgentPlanUpdate:
    return AgentPlanUpdate(session_update="plan", entries=plan_entries(items))


# --- prompts ------------------------------------------------------------------------------


def prompt_text(blocks: Sequence[Any]) -> str:
    """What the model reads for an editor's prompt.

    Text as it is; an embedded resource (a file the user attached) as its text
    with its URI; a link as its URI; audio as a note. Images go to the model as
    images (see ``HermesAcp._images``), not as text.
    """
    parts: list[str] = []
    for block in blocks:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            if text is not None:
                parts.append(f'\n<context uri="{resource.uri}">\n{text}\n</context>\n')
            else:
                mime = getattr(resource, "mime_type", None) or "binary"
                parts.append(f"[attached {resource.uri} ({mime}; its content is not text)]")
        elif kind == "resource_link":
            parts.append(f"[file: {block.uri}]")
        elif kind == "audio":
            parts.append(
                f"[the user attached audio ({block.mime_type}); hermes does not take audio, "
                "so ask for what you need in words]"
            )
    return "".join(parts)


# --- replay -------------------------------------------------------------------------------


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Provider-shaped parts: keep the text ones.
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def replay(messages: Sequence[dict[str, Any]], cwd: str) -> Iterator[Any]:
    """The session updates that show a stored conversation, in order."""
    for index, message in enumerate(messages):
        role = message.get("role")
        text = _message_text(message)
        if role == "user" and text:
            yield UserMessageChunk(
                session_update="user_message_chunk",
                content=TextContentBlock(type="text", text=text),
                message_id=f"m{index}",
            )
        elif role == "assistant":
            if text:
                yield AgentMessageChunk(
                    session_update="agent_message_chunk",
                    content=TextContentBlock(type="text", text=text),
                    message_id=f"m{index}",
                )
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                name = str(function.get("name", ""))
                args = arguments(str(function.get("arguments", "")))
                yield ToolCallStart(
                    session_update="tool_call",
                    tool_call_id=str(call.get("id")),
                    title=tool_title(name, args),
                    kind=tool_kind(name),  # type: ignore[arg-type]
                    status="completed",
                    locations=tool_locations(name, args, cwd) or None,
                    raw_input=args,
                )
        elif role == "tool":
            yield ToolCallProgress(
                session_update="tool_call_update",
                tool_call_id=str(message.get("tool_call_id")),
                status="failed" if text.startswith("error:") else "completed",
                content=[text_content(text)],
            )
