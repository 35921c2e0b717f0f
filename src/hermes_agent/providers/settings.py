"""Which provider, model, endpoint and key a session uses, and building it.

Resolution order for each value: the command-line flag, then config.yaml,
then the provider's own default from :mod:`~hermes_agent.providers.catalog`.
A missing key is reported here, before any request, as one line naming the
variable and the command that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_agent.errors import UsageError
from hermes_agent.providers.base import AuthError
from hermes_agent.providers.catalog import PROVIDERS, ProviderInfo

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.base import Provider


@dataclass
class ProviderSettings:
    info: ProviderInfo
    model: str
    #: "" means the SDK's default endpoint (Anthropic).
    base_url: str
    key_env: str
    api_key: str
    stream: bool
    timeout: float
    max_tokens: int


def resolve(
    config: Config,
    *,
    provider: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProviderSettings:
    env = os.environ if environ is None else environ
    name = provider or config.get("model.provider")
    if name not in PROVIDERS:
        raise UsageError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")
    info = PROVIDERS[name]
    # Values in config.yaml belong to the configured provider; another one given
    # with --provider starts from its own defaults instead.
    own = provider is None or provider == config.get("model.provider")
    chosen_model = model or (config.get("model.default") if own else "") or info.default_model
    if not chosen_model.strip():
        raise UsageError("no model chosen: pass -m MODEL or run `hermes setup`")
    url = base_url if base_url is not None else (config.get("model.base_url") if own else "")
    url = (url or info.base_url).rstrip("/")
    if info.name == "custom" and not url:
        raise UsageError(
            "provider `custom` needs a base URL: pass --base-url or run `hermes setup`"
        )
    if not url.lower().startswith(("http://", "https://")):
        # Else every call fails as "cannot reach" and is retried as if the network were down.
        raise UsageError(
            f"the base URL is not an http(s) URL (it must start with http:// or https://): "
            f"{url[:80]!r}"
        )
    key_env = (config.get("model.api_key_env") if own else "") or info.key_env
    api_key = env.get(key_env, "")
    if not api_key and info.key_required:
        raise AuthError(
            f"{key_env} is not set, so {info.label.split(' (')[0]} cannot be used. "
            f"Run `hermes setup`, or `hermes config set {key_env} YOUR_KEY`."
        )
    return ProviderSettings(
        info=info,
        model=chosen_model.strip(),
        base_url=url,
        key_env=key_env,
        api_key=api_key,
        stream=bool(config.get("streaming.enabled")),
        timeout=float(config.get("model.timeout")),
        max_tokens=int(config.get("model.max_tokens")),
    )


def build(settings: ProviderSettings, *, long_lived: bool = False) -> Provider:
    """Create the provider; this is where an SDK is imported, never earlier.

    ``long_lived``: the client serves many conversations for a long time (the
    gateway); it then uses the SDK's aiohttp transport when aiohttp is installed.
    """
    if settings.info.wire == "anthropic":
        from hermes_agent.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(settings, long_lived=long_lived)
    from hermes_agent.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(settings, long_lived=long_lived)
