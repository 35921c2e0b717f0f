"""The ``todo`` tool: a task list the agent keeps for itself during a session.

Writing the plan down keeps long, multi-step work on track; the list lives in
the session's tool state and is shown back whole after every change.
"""

from __future__ import annotations

from typing import Any

from hermes_agent.tools.registry import Tool, ToolContext, ToolError

STATUSES = ("pending", "in_progress", "done", "cancelled")
_MARK = {"pending": "[ ]", "in_progress": "[>]", "done": "[x]", "cancelled": "[-]"}


def render(items: list[dict[str, Any]]) -> str:
    if not items:
        return "(the todo list is empty)"
    return "\n".join(f"{_MARK[i['status']]} {i['id']}. {i['task']}" for i in items)


async def todo(args: dict[str, Any], ctx: ToolContext) -> str:
    items: list[dict[str, Any]] = ctx.state.setdefault("todo", [])
    if "items" in args:
        if not args.get("merge", False):
            items.clear()
        by_id = {i["id"]: i for i in items}
        for raw in args["items"]:
            existing = by_id.get(raw.get("id")) if raw.get("id") is not None else None
            if existing is not None:
                existing.update({k: v for k, v in raw.items() if k in ("task", "status")})
                continue
            if "task" not in raw:
                raise ToolError(f"item {raw.get('id')} is new and needs a task")
            new_id = raw.get("id") or (max((i["id"] for i in items), default=0) + 1)
            item = {"id": new_id, "task": raw["task"], "status": raw.get("status", "pending")}
            items.append(item)
            by_id[new_id] = item
    return render(items)


TOOLS = [
    Tool(
        name="todo",
        toolset="todo",
        description=(
            "Keep a task list for multi-step work. Call with no arguments to read it; with "
            "`items` to replace it, or with `items` and merge=true to add or update items by id "
            f"(statuses: {', '.join(STATUSES)}). Returns the whole list."
        ),
        parameters={
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer", "minimum": 1},
                            "task": {"type": "string", "minLength": 1},
                            "status": {"enum": list(STATUSES)},
                        },
                        "additionalProperties": False,
                    },
                },
                "merge": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        handler=todo,
        read_only=True,
        parallel_safe=False,
    )
]
