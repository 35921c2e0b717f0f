"""The one small interface every model provider implements, and its retry policy.

The agent loop speaks a single message format (OpenAI chat messages as plain
dicts) and a single call: :meth:`Provider.complete`, which streams text
through a callback and returns the whole reply with its tool calls and token
usage. Each provider translates to its wire format; nothing else in hermes
imports an SDK.

Retries live here, not in the SDKs (whose own retries are turned off), so that
every provider backs off the same way, honours ``Retry-After``, and tells the
front end why it is waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hermes_agent.errors import HermesError

Message = dict[str, Any]


@dataclass
class ToolCall:
    id: str
    name: str
    #: The arguments exactly as the model wrote them (JSON text, maybe malformed).
    arguments: str


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read, cached or not: the size of the context."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass
class Completion:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    #: Why the model stopped: "stop", "tool_calls", "length", ...
    stop_reason: str = "stop"
    #: Cost reported by the provider itself (OpenRouter does), in USD.
    cost_usd: float | None = None

    def as_message(self) -> Message:
        """The assistant message to keep in the history."""
        message: Message = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return message


@dataclass
class ToolSpec:
    """What the model is told about a tool."""

    name: str
    description: str
    parameters: dict[str, Any]


TextCallback = Callable[[str], None]


class Provider(Protocol):
    """A model endpoint. Implementations: ``openai_compat``, ``anthropic``."""

    name: str
    model: str
    base_url: str

    async def complete(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text: TextCallback | None = None,
        max_tokens: int | None = None,
        on_reasoning: TextCallback | None = None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


class ProviderError(HermesError):
    """A failed model call. ``retryable`` errors are retried by :func:`complete_with_retries`."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class AuthError(ProviderError):
    """The key is missing or was rejected: never retried; the message says how to fix it."""


RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
MAX_ATTEMPTS = 4
MAX_RETRY_AFTER = 60.0


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, ValueError, TypeError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Delay before retry number ``attempt`` (1-based): Retry-After wins, else jittered 2^n."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    base: float = min(0.5 * 2 ** (attempt - 1), 8.0)
    return base * (0.75 + random.random() / 2)


def status_error(
    status: int, detail: str, headers: Any, *, who: str, key_env: str, model: str, where: str
) -> ProviderError:
    """The error for an HTTP status from any provider, worded so the user can act on it."""
    if status in (401, 403):
        return AuthError(
            f"{who} rejected the API key in {key_env} (HTTP {status}: {detail}). Fix it with "
            f"`hermes setup` or `hermes config set {key_env} KEY`.",
            status=status,
        )
    if status == 404:
        return ProviderError(
            f"model {model!r} not found at {where} (HTTP 404: {detail}). Check model.default "
            "(`hermes config set model.default ...`) and model.base_url.",
            status=status,
        )
    return ProviderError(
        f"{where} answered HTTP {status}: {detail}",
        retryable=status in RETRY_STATUSES,
        retry_after=parse_retry_after(headers),
        status=status,
    )


def error_detail(body: object, fallback: str) -> str:
    """The human part of an API error body (both wire formats nest it under "error")."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return fallback[:300]


def shown_url(url: str) -> str:
    """``url`` without user info, query or fragment, for messages.

    A base URL may carry a credential (``https://user:key@host/v1``,
    ``...?key=...``) written in config.yaml, where redaction does not know it
    as a secret; an error message naming the endpoint must not repeat it.
    """
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _has_aiohttp() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


class SDKProvider:
    """What the two official SDKs share (both are generated from one template).

    A subclass names its SDK module (``sdk``) and async client class; this
    class builds the client with the SDK's own retries off and turns its
    exceptions into :class:`ProviderError` that name the provider.
    """

    sdk: Any
    client_class: str

    def __init__(self, settings: Any, *, long_lived: bool = False) -> None:
        self.settings = settings
        self.name: str = settings.info.name
        self.model: str = settings.model
        self.base_url: str = settings.base_url
        self.stream: bool = settings.stream
        #: The provider as users know it ("OpenRouter", "Anthropic"), for messages.
        self.who: str = settings.info.label.split(" (")[0]
        options: dict[str, Any] = {}
        if long_lived and _has_aiohttp():
            # The SDK's aiohttp transport: for a client that serves many conversations at
            # once (the gateway), httpx's connection pool scans every pooled connection on
            # each request, which cost ~1.5 ms a call with 50 chats (bench/gateway.py).
            # Importing aiohttp takes ~40 ms, too much for `hermes chat`'s start.
            options["http_client"] = self.sdk.DefaultAioHttpClient(timeout=settings.timeout)
        self._client = getattr(self.sdk, self.client_class)(
            api_key=settings.api_key or "no-key",  # Local servers accept anything.
            base_url=settings.base_url or None,
            timeout=settings.timeout,
            max_retries=0,
            **options,
        )

    async def aclose(self) -> None:
        await self._client.close()

    @property
    def where(self) -> str:
        """The endpoint, as error messages (shown, logged) name it."""
        return shown_url(self.base_url) or self.who

    def translate(self, exc: Exception) -> ProviderError:
        """The SDK's exception, as an error the user can act on."""
        sdk = self.sdk
        if isinstance(exc, sdk.APITimeoutError):
            return ProviderError(
                f"{self.where} did not answer within {self.settings.timeout:g}s", retryable=True
            )
        if isinstance(exc, sdk.APIConnectionError):
            return ProviderError(
                f"cannot reach {self.where}: {exc.__cause__ or exc}", retryable=True
            )
        if isinstance(exc, sdk.APIStatusError):
            return status_error(
                exc.status_code,
                error_detail(exc.body, str(exc.message)),
                exc.response.headers,
                who=self.who,
                key_env=self.settings.key_env,
                model=self.model,
                where=self.where,
            )
        return ProviderError(f"{self.where}: {exc}")

    def broken_stream(self, exc: BaseException) -> ProviderError:
        """A stream that died after it started (peer closed, reset): worth a retry."""
        if isinstance(exc, self.sdk.APIConnectionError) and exc.__cause__ is not None:
            exc = exc.__cause__
        return ProviderError(
            f"the connection to {self.where} broke mid-answer ({type(exc).__name__}: {exc})",
            retryable=True,
        )


RetryCallback = Callable[[ProviderError, float, int], None]


async def complete_with_retries(
    call: Callable[[], Awaitable[Completion]],
    *,
    on_retry: RetryCallback | None = None,
    attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Completion:
    """Run ``call`` until it succeeds, a non-retryable error occurs, or attempts run out.

    ``on_retry(error, delay, attempt)`` lets the front end say why it waits and
    discard text it already showed from a stream that broke half-way.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ProviderError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            delay = backoff_delay(attempt, exc.retry_after)
            if on_retry is not None:
                on_retry(exc, delay, attempt)
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
