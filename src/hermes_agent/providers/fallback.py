"""Fallback providers: who answers when the configured model cannot.

``fallback_providers:`` in config.yaml is an ordered list of ``{provider,
model, base_url?, api_key_env?}``. When a model call fails after its retries
(:func:`~hermes_agent.providers.base.complete_with_retries`), or fails at
once with an error another provider may not have (HTTP 5xx, 429, overloaded,
a model that is gone: 404), the agent loop goes on with the next entry for
the rest of that turn and says so in one line. The next turn starts with the
configured provider again, so a provider that recovers is used again.

Errors a second provider would not cure are not skipped: an authentication
failure (401/403, or a key that is not set) means the user's configuration is
wrong or a key was revoked, and the turn stops with that error; a 400 (a
request the model refuses, a context too long) would most likely fail the
same way elsewhere.

A :class:`FallbackChain` builds each fallback client on first use (its SDK
may not even be imported otherwise) and keeps it: the gateway shares one
chain across all its conversations, like its primary client.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hermes_agent.errors import UsageError
from hermes_agent.providers.base import AuthError, ProviderError
from hermes_agent.providers.catalog import PROVIDERS

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.base import Provider
    from hermes_agent.providers.settings import ProviderSettings

ENTRY_KEYS = frozenset({"provider", "model", "base_url", "api_key_env"})
#: Statuses after which another provider is worth asking (retried first when retryable).
FALLBACK_STATUSES = frozenset({404, 408, 409, 425, 429, 500, 502, 503, 504, 529})


def entries(config: Config) -> list[dict[str, str]]:
    """The configured fallback entries, checked; a malformed one is a UsageError.

    Called when an agent is set up, so a typo in config.yaml is reported at
    start, not in the middle of the first outage.
    """
    raw = config.get("fallback_providers") or []
    if not isinstance(raw, list):
        raise UsageError("fallback_providers must be a list of {provider, model} entries")
    checked: list[dict[str, str]] = []
    for number, entry in enumerate(raw, start=1):
        where = f"fallback_providers entry {number}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} must be a mapping with provider and model")
        unknown = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
        if unknown:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(ENTRY_KEYS))}"
            )
        for key, value in entry.items():
            if not isinstance(value, str):
                raise UsageError(f"{where}: {key} must be a string")
        name = entry.get("provider", "")
        if name not in PROVIDERS:
            raise UsageError(
                f"{where}: unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}"
            )
        if not entry.get("model", "").strip():
            raise UsageError(f"{where}: model is missing")
        if name == "custom" and not entry.get("base_url", "").strip():
            raise UsageError(f"{where}: provider custom needs a base_url")
        url = entry.get("base_url", "").strip()
        if url and not url.lower().startswith(("http://", "https://")):
            raise UsageError(f"{where}: base_url must start with http:// or https://")
        checked.append({k: v.strip() for k, v in entry.items()})
    return checked


def settings_for(
    entry: Mapping[str, str], primary: ProviderSettings, environ: Mapping[str, str] | None = None
) -> ProviderSettings:
    """The provider settings of one fallback entry (streaming, timeouts: the primary's).

    A key that is not set raises :class:`AuthError`: reported, never skipped.
    """
    from hermes_agent.providers.settings import ProviderSettings

    env = os.environ if environ is None else environ
    info = PROVIDERS[entry["provider"]]
    key_env = entry.get("api_key_env") or info.key_env
    api_key = env.get(key_env, "")
    if not api_key and info.key_required:
        raise AuthError(
            f"fallback provider {info.name} needs {key_env}, which is not set. "
            f"Run `hermes config set {key_env} YOUR_KEY`, or remove it from fallback_providers."
        )
    return ProviderSettings(
        info=info,
        model=entry["model"],
        base_url=(entry.get("base_url") or info.base_url).rstrip("/"),
        key_env=key_env,
        api_key=api_key,
        stream=primary.stream,
        timeout=primary.timeout,
        max_tokens=primary.max_tokens,
    )


def worth_falling_back(error: ProviderError) -> bool:
    """Whether ``error`` (after its retries) is one another provider may not have."""
    if isinstance(error, AuthError):
        return False
    if error.retryable:  # Its retries ran out: timeouts, broken connections, 5xx, 429.
        return True
    if error.status is not None:
        return error.status in FALLBACK_STATUSES or error.status >= 500
    return "overloaded" in str(error).lower()


def label(provider: Any) -> str:
    """``model via provider`` for messages."""
    return f"{provider.model} via {provider.name}"


def reason(error: ProviderError) -> str:
    """Why a provider was left, in two or three words: ``HTTP 503``, ``unavailable``.

    For people other than the operator (a chat user on the gateway): the full
    error names the endpoint and quotes the provider's answer, which are the
    operator's business (and a log line's).
    """
    if error.status is not None:
        return f"HTTP {error.status}"
    return "overloaded" if "overloaded" in str(error).lower() else "unavailable"


class Switch(str):
    """The one line that says a turn goes on with another provider.

    A ``str`` (the full line: who failed, the error, who goes on) so every
    :meth:`~hermes_agent.agent.loop.Events.fallback` handler can print it as it is;
    :attr:`brief` is the short form for a chat, without the endpoint or the
    provider's error text.
    """

    failed: str
    answering: str
    brief: str

    def __new__(cls, failed: Any, error: ProviderError, answering: Any) -> Switch:
        line = super().__new__(
            cls, f"{label(failed)} failed ({error}); going on with {label(answering)}"
        )
        line.failed, line.answering = label(failed), label(answering)
        line.brief = f"{line.failed} failed ({reason(error)}); going on with {line.answering}"
        return line


class FallbackChain:
    """The fallback providers of a configuration, each client built once, on first use."""

    def __init__(
        self, entries: list[dict[str, str]], primary: ProviderSettings, *, long_lived: bool = False
    ) -> None:
        self._entries = entries
        self._primary = primary
        self._long_lived = long_lived
        self._clients: dict[int, Provider] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def client(self, index: int) -> Provider:
        """The client of entry ``index`` (0-based), built now if it is the first use.

        Built in a thread: importing an SDK takes long enough to stall a gateway's
        other conversations.
        """
        from hermes_agent.providers import settings as provider_settings

        async with self._lock:
            client = self._clients.get(index)
            if client is None:
                settings = settings_for(self._entries[index], self._primary)
                client = await asyncio.to_thread(
                    lambda: provider_settings.build(settings, long_lived=self._long_lived)
                )
                self._clients[index] = client
        return client

    async def aclose(self) -> None:
        """Close the clients built so far."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def chain(
    config: Config, primary: ProviderSettings, *, long_lived: bool = False
) -> FallbackChain | None:
    """The configuration's fallback chain, or None when it lists none."""
    found = entries(config)
    return FallbackChain(found, primary, long_lived=long_lived) if found else None
