"""OpenAI chat completions through the official ``openai`` SDK.

Serves OpenRouter (the default), OpenAI, and any OpenAI-compatible server
(Ollama, vLLM, llama.cpp, LM Studio) through ``model.base_url``. The SDK's own
retries are off: :func:`~hermes_agent.providers.base.complete_with_retries`
owns the policy, and every SDK error is translated here into a
:class:`~hermes_agent.providers.base.ProviderError` with a message a user can act on.

Requests go through the SDK's generic ``post`` (its documented way to send a
body as given) with the JSON encoded here, and come back as plain dicts
(``cast_to=object``): the typed ``chat.completions.create`` type-walks the
parameters and builds a pydantic model for every streamed chunk, which was half
of the gateway's time per message (bench/gateway.py). The part of the body that
is the same on every call of a session (model, tools) is encoded once. The SDK
still builds the request, authenticates, decodes the event stream and raises
its errors.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import orjson

from hermes_agent.providers.base import (
    Completion,
    Message,
    ProviderError,
    SDKProvider,
    TextCallback,
    ToolCall,
    ToolSpec,
    Usage,
)

#: Encoded request heads kept per provider (a gateway serves sessions with a few tool sets).
HEAD_CACHE_SIZE = 16


class OpenAICompatProvider(SDKProvider):
    sdk = openai
    client_class = "AsyncOpenAI"

    def __init__(self, settings: Any, *, long_lived: bool = False) -> None:
        super().__init__(settings, long_lived=long_lived)
        self._heads: dict[tuple[Any, ...], bytes] = {}

    def _head(self, tools: list[ToolSpec], max_tokens: int | None) -> bytes:
        """The JSON body without ``messages`` and its closing brace (cached per tool set)."""
        key = (max_tokens, tuple((t.name, t.description) for t in tools))
        head = self._heads.get(key)
        if head is None:
            request: dict[str, Any] = {"model": self.model, "stream": self.stream}
            if self.stream:
                request["stream_options"] = {"include_usage": True}
            if max_tokens:
                request["max_tokens"] = max_tokens
            if self.name == "openrouter":
                request["usage"] = {"include": True}  # OpenRouter reports cost.
            if tools:
                request["tools"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        },
                    }
                    for t in tools
                ]
            if len(self._heads) >= HEAD_CACHE_SIZE:
                self._heads.clear()
            head = self._heads[key] = json.dumps(request)[:-1].encode()
        return head

    def _body(
        self,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int | None,
    ) -> bytes:
        if any("images" in m for m in messages):
            messages = with_image_parts(messages)
        wire = [{"role": "system", "content": system}, *messages] if system else messages
        try:
            # orjson: the history is encoded on every call, ~25x faster than json.dumps.
            encoded = orjson.dumps(wire)
        except orjson.JSONEncodeError:  # A lone surrogate, say: json escapes it.
            encoded = json.dumps(wire).encode()
        return b"".join((self._head(tools, max_tokens), b', "messages": ', encoded, b"}"))

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

            await images.prepare(messages, images.OPENAI_LIMITS)
        body = self._body(system, messages, tools, max_tokens or self.settings.max_tokens)
        try:
            answer = await self._client.post(
                "/chat/completions",
                cast_to=object,
                content=body,
                options={"headers": {"Content-Type": "application/json"}},
                stream=self.stream,
                stream_cls=openai.AsyncStream[object],
            )
            if self.stream:
                return await self._stream(answer, on_text, on_reasoning)
            return self._parse(answer)
        except openai.APIError as exc:
            raise self.translate(exc) from None

    async def _stream(
        self,
        stream: Any,
        on_text: TextCallback | None,
        on_reasoning: TextCallback | None = None,
    ) -> Completion:
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage()
        cost: float | None = None
        finish = "stop"
        try:
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("usage"):
                    usage, cost = _usage(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if content:
                        text.append(content)
                        if on_text is not None:
                            on_text(content)
                    # The model's reasoning, where the endpoint streams it (OpenRouter's
                    # `reasoning`, DeepSeek's and vLLM's `reasoning_content`): shown, not kept.
                    reasoning = delta.get("reasoning") or delta.get("reasoning_content")
                    if reasoning and isinstance(reasoning, str) and on_reasoning is not None:
                        on_reasoning(reasoning)
                    for tc in delta.get("tool_calls") or ():
                        slot = calls.setdefault(
                            int(tc.get("index") or 0), {"id": "", "name": "", "arguments": ""}
                        )
                        if tc.get("id"):
                            slot["id"] = tc["id"]
                        function = tc.get("function") or {}
                        slot["name"] += function.get("name") or ""
                        slot["arguments"] += function.get("arguments") or ""
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        except openai.APIStatusError as exc:
            raise self.translate(exc) from None
        except Exception as exc:  # The transport broke mid-stream (peer closed, reset...).
            raise self.broken_stream(exc) from None
        finally:
            await stream.close()
        tool_calls = [
            ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"] or "{}")
            for i, c in sorted(calls.items())
        ]
        return Completion("".join(text), tool_calls, usage, finish, cost)

    def _parse(self, response: Any) -> Completion:
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices:
            raise ProviderError(f"{self.name} returned no answer (empty choices)", retryable=True)
        choice = choices[0]
        message = choice.get("message") or {}
        tool_calls = [
            ToolCall(
                tc.get("id") or f"call_{i}",
                tc["function"].get("name") or "",
                tc["function"].get("arguments") or "{}",
            )
            for i, tc in enumerate(message.get("tool_calls") or ())
            if isinstance(tc.get("function"), dict)
        ]
        raw_usage = response.get("usage")
        usage, cost = _usage(raw_usage) if isinstance(raw_usage, dict) else (Usage(), None)
        return Completion(
            message.get("content") or "",
            tool_calls,
            usage,
            choice.get("finish_reason") or "stop",
            cost,
        )


def _image_parts(message: Message) -> list[dict[str, Any]]:
    from hermes_agent import images

    parts: list[dict[str, Any]] = []
    for ref in images.refs_of(message):
        try:
            media_type, data = images.for_provider(ref, images.OPENAI_LIMITS)
        except images.ImageError as exc:
            parts.append({"type": "text", "text": f"[image not sent: {exc}]"})
            continue
        parts.append({"type": "image_url", "image_url": {"url": images.data_url(media_type, data)}})
    return parts


def with_image_parts(messages: list[Message]) -> list[Message]:
    """The history with stored image references as chat-completions content parts.

    A user message's images become ``image_url`` parts (``data:`` URLs) after its
    text. A tool result cannot hold images on this wire (tool content is text only),
    so the images of a run of tool results follow it in one user message that names
    the call each came from: the model sees them right after the results.
    """
    wire: list[Message] = []
    pending: list[dict[str, Any]] = []
    for message in messages:
        if pending and message["role"] != "tool":
            wire.append({"role": "user", "content": pending})
            pending = []
        if "images" not in message:
            wire.append(message)
            continue
        plain = {k: v for k, v in message.items() if k != "images"}
        parts = _image_parts(message)
        if message["role"] == "tool" and parts:
            wire.append(plain)
            call_id = message.get("tool_call_id") or ""
            pending.append({"type": "text", "text": f"[image returned by tool call {call_id}]"})
            pending.extend(parts)
        elif message["role"] == "user" and parts:
            text = plain.get("content")
            plain["content"] = ([{"type": "text", "text": text}] if text else []) + parts
            wire.append(plain)
        else:
            wire.append(plain)
    if pending:
        wire.append({"role": "user", "content": pending})
    return wire


def _usage(raw: dict[str, Any]) -> tuple[Usage, float | None]:
    prompt = int(raw.get("prompt_tokens") or 0)
    details = raw.get("prompt_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    usage = Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cache_read_tokens=cached,
    )
    cost = raw.get("cost")
    return usage, float(cost) if isinstance(cost, int | float) else None
