"""What hermes knows about well-known models: context window and list price.

Used for compression (when is the context "full"?) and for the cost shown by
`/usage`. Unknown models get a conservative window and no price: hermes shows
"cost unknown" rather than a made-up number. OpenRouter reports the real cost
of each call, which wins over this table.
"""

from __future__ import annotations

from hermes_agent.providers.base import Usage

DEFAULT_CONTEXT = 128_000

# (substring of the model id, context window, USD per million input, output tokens).
# Checked in order; the first match wins, so specific names come first.
_MODELS: tuple[tuple[str, int, float, float], ...] = (
    ("claude-opus-4", 200_000, 15.0, 75.0),
    ("claude-sonnet-4", 200_000, 3.0, 15.0),
    ("claude-3-7-sonnet", 200_000, 3.0, 15.0),
    ("claude-haiku-4", 200_000, 1.0, 5.0),
    ("claude-3-5-haiku", 200_000, 0.8, 4.0),
    ("gpt-4.1-nano", 1_047_576, 0.1, 0.4),
    ("gpt-4.1-mini", 1_047_576, 0.4, 1.6),
    ("gpt-4.1", 1_047_576, 2.0, 8.0),
    ("gpt-4o-mini", 128_000, 0.15, 0.6),
    ("gpt-4o", 128_000, 2.5, 10.0),
)


def _lookup(model: str) -> tuple[str, int, float, float] | None:
    name = model.lower()
    return next((row for row in _MODELS if row[0] in name), None)


def context_window(model: str, configured: int | None = None) -> int:
    if configured:
        return configured
    row = _lookup(model)
    return row[1] if row else DEFAULT_CONTEXT


def estimate_cost(model: str, usage: Usage) -> float | None:
    """List-price cost of ``usage`` in USD, or None for a model not in the table.

    Cache reads are billed at a tenth of the input price and cache writes at
    1.25x, as Anthropic and OpenAI do.
    """
    row = _lookup(model)
    if row is None:
        return None
    _, _, price_in, price_out = row
    return (
        usage.input_tokens * price_in
        + usage.cache_read_tokens * price_in * 0.1
        + usage.cache_write_tokens * price_in * 1.25
        + usage.output_tokens * price_out
    ) / 1_000_000
