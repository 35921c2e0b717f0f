"""Sampling: an MCP server asks hermes' model for a completion.

Refused unless the server's ``sampling.enabled`` is true. Then the request
goes to the configured provider (``sampling.model`` or the default model),
with ``max_tokens`` capped by ``sampling.max_tokens_cap``, under
``sampling.timeout``, at most ``sampling.max_rpm`` requests a minute, without
tools, and every request (allowed or refused) is written to the approval
audit log. The server's messages are its own text: they are sent as the user
turn of a separate conversation that never sees the user's session.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermes_agent.mcp.manager import Connection


def callback_for(connection: Connection) -> Any:
    """The SDK's ``sampling_callback`` for one server."""
    import mcp_types as types

    recent: deque[float] = deque()
    sampling = connection.server.sampling

    async def callback(context: Any, params: types.CreateMessageRequestParams) -> Any:
        from hermes_agent.safety.gate import audit

        server = connection.server.name
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "purpose": "mcp sampling",
            "server": server,
            "requested_max_tokens": params.max_tokens,
        }

        def refuse(reason: str) -> types.ErrorData:
            record.update(decision="refused", by=reason)
            _audit(audit, record)
            return types.ErrorData(
                code=types.INVALID_REQUEST, message=f"sampling refused: {reason}"
            )

        if not sampling.enabled:
            return refuse("sampling is not enabled for this server")
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= sampling.max_rpm:
            return refuse(f"more than {sampling.max_rpm} requests a minute (sampling.max_rpm)")
        recent.append(now)
        try:
            # Not wait_for: on Python 3.11 it drops a cancel that comes with the answer.
            async with asyncio.timeout(sampling.timeout):
                text, model = await _complete(connection, params)
        except TimeoutError:
            return refuse(f"no answer within {sampling.timeout:g} s (sampling.timeout)")
        except Exception as exc:
            from hermes_agent.redact import redact

            return refuse(f"the model call failed: {redact(str(exc))[:300]}")
        record.update(decision="allowed", by="sampling.enabled", model=model, chars=len(text))
        _audit(audit, record)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=text),
            model=model,
            stop_reason="endTurn",
        )

    return callback


def _audit(audit: Any, record: dict[str, Any]) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        audit(record)


async def _complete(connection: Connection, params: Any) -> tuple[str, str]:
    from hermes_agent.providers import settings as provider_settings

    sampling = connection.server.sampling
    settings = provider_settings.resolve(connection.config, model=sampling.model or None)
    from dataclasses import replace

    settings = replace(settings, stream=False)
    provider = provider_settings.build(settings)
    messages: list[Any] = []
    for message in params.messages:
        blocks = message.content if isinstance(message.content, list) else [message.content]
        text = "\n".join(str(getattr(b, "text", f"[{getattr(b, 'type', '?')}]")) for b in blocks)
        messages.append(
            {"role": "assistant" if message.role == "assistant" else "user", "content": text}
        )
    try:
        completion = await provider.complete(
            system=params.system_prompt or "",
            messages=messages,
            tools=[],
            max_tokens=min(int(params.max_tokens), sampling.max_tokens_cap),
        )
    finally:
        await provider.aclose()
    return completion.text, settings.model
