"""Context compression: summarise the middle of a long conversation.

The first exchange (what the user set out to do) and the most recent turns
(what is happening now) stay word for word; everything between becomes one
summary written by ``compression.summary_model`` (or the main model). The
recent part always starts at a user message, so it holds the latest user
message and no tool result is ever separated from its call.
"""

from __future__ import annotations

from hermes_agent.providers.base import Message, Provider, ProviderError, complete_with_retries

SUMMARY_SYSTEM = (
    "You compress conversations between a user and an AI agent. Write a faithful, dense "
    "summary of the transcript you are given, for the agent to continue the work from. "
    "Keep: the user's goals and preferences, decisions made and why, facts learned (names, "
    "paths, commands, numbers, errors), what was done and its results, and what is still "
    "open. Drop pleasantries and repetition. Use short bullet points. Do not invent anything."
)
SUMMARY_PREFIX = "[Summary of {n} earlier messages, written to save context]\n"
MAX_TOOL_CHARS = 2_000


def _tokens(message: Message) -> int:
    size = len(str(message.get("content") or ""))
    size += sum(len(c["function"]["arguments"]) for c in message.get("tool_calls") or ())
    return size // 4 + 4


def split(
    history: list[Message], *, keep_tokens: int
) -> tuple[list[Message], list[Message], list[Message]] | None:
    """``(head, middle, tail)``, or None when there is nothing worth summarising."""
    users = [i for i, m in enumerate(history) if m["role"] == "user"]
    if len(users) < 2:
        return None
    first = users[0]
    head_end = first + 1
    if (
        head_end < len(history)
        and history[head_end]["role"] == "assistant"
        and not history[head_end].get("tool_calls")
    ):
        head_end += 1
    # The tail: recent messages worth ``keep_tokens``, widened to start at a user message.
    budget = keep_tokens
    start = len(history)
    while start > head_end and budget > 0:
        start -= 1
        budget -= _tokens(history[start])
    before = [i for i in users if head_end <= i <= start]
    after = [i for i in users if i > start]
    if before:
        tail_start = max(before)
    elif after:
        tail_start = min(after)
    else:
        return None
    middle = history[head_end:tail_start]
    if len(middle) < 2:
        return None
    return history[:head_end], middle, history[tail_start:]


def transcript(messages: list[Message]) -> str:
    """Render messages as plain text for the summariser."""
    lines: list[str] = []
    for message in messages:
        role = message["role"]
        content = str(message.get("content") or "")
        pictures = len(message.get("images") or ())
        if pictures:  # The summariser reads text only; it is told the images were there.
            content = f"{content} [{pictures} image(s) shown with this message]".strip()
        if role == "tool":
            if len(content) > MAX_TOOL_CHARS:
                content = content[:MAX_TOOL_CHARS] + " [...]"
            lines.append(f"TOOL RESULT: {content}")
            continue
        if content:
            lines.append(f"{role.upper()}: {content}")
        for call in message.get("tool_calls") or ():
            function = call["function"]
            lines.append(f"ASSISTANT CALLED {function['name']}({function['arguments']})")
    return "\n\n".join(lines)


async def summarize(provider: Provider, middle: list[Message]) -> str:
    """The summary text; raises ProviderError when the call fails or returns nothing."""
    completion = await complete_with_retries(
        lambda: provider.complete(
            system=SUMMARY_SYSTEM,
            messages=[
                {"role": "user", "content": "Transcript to summarise:\n\n" + transcript(middle)}
            ],
            tools=[],
        ),
        attempts=2,
    )
    if not completion.text.strip():
        raise ProviderError("the summary came back empty")
    return completion.text.strip()


def summary_message(summary: str, count: int) -> Message:
    return {"role": "user", "content": SUMMARY_PREFIX.format(n=count) + summary}


def is_summary(message: Message) -> bool:
    return message["role"] == "user" and str(message.get("content") or "").startswith(
        "[Summary of "
    )
