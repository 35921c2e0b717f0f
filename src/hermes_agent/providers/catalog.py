"""The providers a user can pick in `hermes setup`, as plain data.

Kept free of imports so the config schema and the setup wizard can use it
without loading any SDK. The provider implementations read the same table.
"""

from __future__ import annotations

from typing import NamedTuple


class ProviderInfo(NamedTuple):
    name: str
    label: str
    #: Wire format spoken: "openai" (chat completions) or "anthropic" (messages).
    wire: str
    #: Endpoint used when `model.base_url` is empty ("" means the SDK's own default).
    base_url: str
    #: Environment variable holding the key when `model.api_key_env` is empty.
    key_env: str
    #: Whether a request without a key makes sense (local servers need none).
    key_required: bool
    default_model: str
    hint: str


PROVIDERS: dict[str, ProviderInfo] = {
    p.name: p
    for p in (
        ProviderInfo(
            "openrouter",
            "OpenRouter (one key, hundreds of models)",
            "openai",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            True,
            "anthropic/claude-sonnet-4",
            "get a key at https://openrouter.ai/keys",
        ),
        ProviderInfo(
            "anthropic",
            "Anthropic (Claude, native API)",
            "anthropic",
            "",
            "ANTHROPIC_API_KEY",
            True,
            "claude-sonnet-4-6",
            "get a key at https://console.anthropic.com/settings/keys",
        ),
        ProviderInfo(
            "openai",
            "OpenAI",
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            True,
            "gpt-4.1",
            "get a key at https://platform.openai.com/api-keys",
        ),
        ProviderInfo(
            "custom",
            "Any OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, LM Studio)",
            "openai",
            "",
            # Not OPENAI_API_KEY: an OpenAI key must never be sent to another host by default.
            "CUSTOM_API_KEY",
            False,
            "",
            "for example http://127.0.0.1:11434/v1 for Ollama",
        ),
    )
}

DEFAULT_PROVIDER = "openrouter"
