"""The ``session_search`` tool: full-text search over past conversations.

Lets the agent recall what was decided or done in earlier sessions ("what
did we name the staging database?") from the FTS index in state.db.
"""

from __future__ import annotations

import time
from typing import Any

from hermes_agent.tools.registry import Tool, ToolContext


async def session_search(args: dict[str, Any], ctx: ToolContext) -> str:
    hits = ctx.db.search(args["query"], limit=int(args.get("limit", 10)))
    hits = [h for h in hits if h.session_id != ctx.session_id] or hits
    if not hits:
        return f"no past messages match {args['query']!r}"
    lines = []
    for hit in hits:
        when = time.strftime("%Y-%m-%d", time.localtime(hit.created_at))
        title = f" ({hit.title})" if hit.title else ""
        lines.append(f"- session {hit.session_id}{title}, {when}, {hit.role}: {hit.snippet}")
    return "\n".join(lines)


TOOLS = [
    Tool(
        name="session_search",
        toolset="session_search",
        description=(
            "Search the text of past conversations with the user (full-text; words or "
            '"quoted phrases"). Use it to recall earlier decisions, names and results.'
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        handler=session_search,
        read_only=True,
        parallel_safe=True,
    )
]
