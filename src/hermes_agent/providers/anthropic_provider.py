"""Anthropic Messages through the official ``anthropic`` SDK.

Translates the loop's OpenAI-style history into Messages blocks (tool calls
become ``tool_use``, tool results ``tool_result`` inside a user turn, and
consecutive turns of one role are merged, as the API wants alternation). The
system prompt is sent as a cached block: it is stable for a whole session, so
every call after the first reads it (and the tool list before it) from
Anthropic's prompt cache.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from hermes_agent.providers.base import (
    Completion,
    Message,
    SDKProvider,
    TextCallback,
    ToolCall,
    ToolSpec,
    Usage,
)


class AnthropicProvider(SDKProvider):
    sdk = anthropic
    client_class = "AsyncAnthropic"

    async def complete(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text: TextCallback | None = None,
        max_tokens: int | None = None,
        on_reasoning: TextCallback | None = None,
    ) -> Completion:
        if any("images" in m for m in messages):
            from hermes_agent import images

            await images.prepare(messages, images.ANTHROPIC_LIMITS)
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens or self.settings.max_tokens,
            "messages": to_anthropic(messages),
        }
        if system:
            request["system"] = [
                {"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}
            ]
        if tools:
            request["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ]
        try:
            if self.stream:
                return await self._stream(request, on_text, on_reasoning)
            response = await self._client.messages.create(**request)
        except anthropic.APIError as exc:
            raise self.translate(exc) from None
        return _from_message(response)

    async def _stream(
        self,
        request: dict[str, Any],
        on_text: TextCallback | None,
        on_reasoning: TextCallback | None = None,
    ) -> Completion:
        stream = await self._client.messages.create(**request, stream=True)
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        usage = Usage()
        stop = "stop"
        try:
            async for event in stream:
                kind = event.type
                if kind == "message_start":
                    _fill_usage(usage, event.message.usage)
                elif kind == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        text.append(delta.text)
                        if on_text is not None:
                            on_text(delta.text)
                    elif delta.type == "thinking_delta" and on_reasoning is not None:
                        on_reasoning(delta.thinking)
                    elif delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index]["json"] += delta.partial_json
                elif kind == "message_delta":
                    if event.usage is not None:
                        usage.output_tokens = int(event.usage.output_tokens or 0)
                    stop = _stop_reason(event.delta.stop_reason)
        except anthropic.APIStatusError as exc:
            raise self.translate(exc) from None
        except Exception as exc:  # The transport broke mid-stream (peer closed, reset...).
            raise self.broken_stream(exc) from None
        finally:
            await stream.close()
        calls = [ToolCall(b["id"], b["name"], b["json"] or "{}") for _, b in sorted(blocks.items())]
        return Completion("".join(text), calls, usage, stop)


def _fill_usage(usage: Usage, raw: Any) -> None:
    usage.input_tokens = int(getattr(raw, "input_tokens", 0) or 0)
    usage.output_tokens = int(getattr(raw, "output_tokens", 0) or 0)
    usage.cache_read_tokens = int(getattr(raw, "cache_read_input_tokens", 0) or 0)
    usage.cache_write_tokens = int(getattr(raw, "cache_creation_input_tokens", 0) or 0)


def _stop_reason(raw: str | None) -> str:
    return {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}.get(
        raw or "", raw or "stop"
    )


def _from_message(response: Any) -> Completion:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in response.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
    usage = Usage()
    _fill_usage(usage, response.usage)
    return Completion("".join(text), calls, usage, _stop_reason(response.stop_reason))


def _tool_input(arguments: str) -> dict[str, Any]:
    """The model's own arguments, as the object Anthropic requires (``{}`` if malformed)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _image_blocks(message: Message) -> list[dict[str, Any]]:
    """The message's stored images as base64 ``image`` blocks within Anthropic's limits."""
    import base64

    from hermes_agent import images

    blocks: list[dict[str, Any]] = []
    for ref in images.refs_of(message):
        try:
            media_type, data = images.for_provider(ref, images.ANTHROPIC_LIMITS)
        except images.ImageError as exc:
            blocks.append({"type": "text", "text": f"[image not sent: {exc}]"})
            continue
        blocks.append(
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": media_type,
                    "data": base64.b64encode(data).decode("ascii"),
                },
            }
        )
    return blocks


def to_anthropic(messages: list[Message]) -> list[dict[str, Any]]:
    """OpenAI-style history -> alternating Anthropic turns of content blocks."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        blocks: list[dict[str, Any]] = []
        pictures = _image_blocks(message) if "images" in message else []
        if role == "tool":
            result: Any = message.get("content") or "(no output)"
            if pictures:  # A tool_result may hold image blocks beside its text.
                result = [{"type": "text", "text": result}, *pictures]
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": result,
                }
            )
            role = "user"
        else:
            if role == "system":
                role = "user"  # A mid-conversation note (e.g. a summary) is context from us.
            if role == "user":
                blocks.extend(pictures)  # Images first: Anthropic reads them best that way.
            content = message.get("content")
            if content:
                blocks.append({"type": "text", "text": content})
            for call in message.get("tool_calls") or ():
                function = call["function"]
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": function["name"],
                        "input": _tool_input(function.get("arguments", "")),
                    }
                )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns
