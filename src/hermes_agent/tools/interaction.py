"""Tools that involve someone else: ``clarify`` asks the user, ``delegate`` a sub-agent.

``clarify`` goes through whichever front end drives the session (the
terminal prompt, a chat platform, the editor); when nobody can answer (a
one-shot run in a script, a cron job) the agent is told to proceed on a stated
assumption instead of waiting forever.

``delegate`` hands a self-contained task to a sub-agent with a subset of the
toolsets, its own session (linked to this one as its parent) and one level
more depth; ``delegate.max_depth`` bounds the nesting.
"""

from __future__ import annotations

from typing import Any

from hermes_agent.tools.registry import Tool, ToolContext, ToolError


async def clarify(args: dict[str, Any], ctx: ToolContext) -> str:
    choices = [str(c) for c in args.get("choices") or ()]
    answer = await ctx.ask(args["question"], choices)
    if answer is None:
        return (
            "No user is available to answer right now. Proceed with your best judgement, "
            "and state the assumption you made in your answer."
        )
    return f"The user answered: {answer}"


async def delegate(args: dict[str, Any], ctx: ToolContext) -> str:
    if ctx.delegate is None:
        raise ToolError("delegation is not available in this session")
    return await ctx.delegate(args["task"], list(args.get("toolsets") or ()))


TOOLS = [
    Tool(
        name="clarify",
        toolset="clarify",
        description=(
            "Ask the user a question when the task is ambiguous and a wrong guess would be "
            "costly. Offer `choices` when the answer is one of a few options. Do not ask "
            "what you can find out yourself."
        ),
        parameters={
            "type": "object",
            "properties": {
                "question": {"type": "string", "minLength": 1},
                "choices": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
            },
            "required": ["question"],
            "additionalProperties": False,
        },
        handler=clarify,
        read_only=True,
    ),
    Tool(
        name="delegate",
        toolset="delegate",
        description=(
            "Give a self-contained sub-task to a sub-agent and get its final answer back. The "
            "sub-agent sees only `task` (include every fact it needs) and the `toolsets` you "
            "list (default: yours). Use it for independent research or work that would "
            "clutter this conversation."
        ),
        parameters={
            "type": "object",
            "properties": {
                "task": {"type": "string", "minLength": 1},
                "toolsets": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["task"],
            "additionalProperties": False,
        },
        handler=delegate,
    ),
]
