"""Checks before the agent writes text that later sessions will trust (memory, skills).

Memory entries and skills are read back into future system prompts, so they
are the most valuable target for a prompt injection: a web page that gets
one line into ``MEMORY.md`` speaks in every later session. Two defences live
here, shared by the memory and skills tools:

- :func:`scan` refuses text that carries prompt-injection markers (role
  tags, "ignore previous instructions", hidden Unicode) or looks like a
  secret (well-known key shapes, values from ``.env`` and secret-named
  environment variables). It is a tripwire, not a proof: the agent gets the
  reason and can rephrase a genuine note.
- :func:`approve` asks the user before a write when the configuration says so,
  and in particular when the current turn read untrusted content (the tools
  that fetch web pages or read files set ``ctx.state["untrusted_read"]``; the
  agent loop clears it at each user message). No answer counts as no.
"""

from __future__ import annotations

import os
import re
import unicodedata

from hermes_agent import home
from hermes_agent.tools.registry import ToolContext, ToolError

#: Key in ``ToolContext.state``: truthy when this turn read content from outside.
UNTRUSTED_READ = "untrusted_read"
#: Key in ``ToolContext.state``: what untrusted sources this turn read (optional).
UNTRUSTED_SOURCES = "untrusted_sources"

_I = re.IGNORECASE
_M = re.MULTILINE

INJECTION_MARKERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b(ignore|disregard|forget|override|bypass)\b[^\n.]{0,30}?"
            r"\b(previous|prior|above|earlier|preceding|original|system|safety|developer)\b"
            r"[^\n.]{0,15}?\b(instructions?|prompts?|directives|guidelines|guardrails|rules)\b"
            r"|\b(ignore|disregard|forget)\s+(all|any|your)\s+"
            r"(instructions?|prompts?|directives|guidelines|rules)\b",
            _I,
        ),
        "it tells the reader to ignore its instructions",
    ),
    (
        re.compile(r"\b(new|updated|revised|real)\s+(system\s+)?instructions?\s*:", _I),
        "it announces new instructions",
    ),
    (
        re.compile(r"\byou are now (a|an|no longer|free|unrestricted|in \w+ mode|DAN)\b", _I),
        "it tries to redefine who the agent is",
    ),
    (
        re.compile(
            r"<\|?\s*(im_start|im_end|system|endoftext|eot_id)\s*\|?>|\[/?INST\]|<</?SYS>>", _I
        ),
        "it contains chat-template control tokens",
    ),
    (
        re.compile(
            # Upper case only: "System: Debian 12" is an ordinary note.
            r"</?\s*(?i:system|instructions?)\s*>|^\s*(SYSTEM|ASSISTANT|DEVELOPER)\s*:",
            _M,
        ),
        "it pretends to be a system or assistant message",
    ),
    (
        re.compile(
            r"\b(do not|don't|never)\s+(tell|inform|alert|warn)\s+the user\b"
            r"|\bwithout (telling|informing|asking) the user\b",
            _I,
        ),
        "it asks the agent to hide something from the user",
    ),
    (
        re.compile(
            r"\b(reveal|repeat|print|output|leak|exfiltrate)\b[^\n.]{0,20}?"
            r"\b(your|the)\s+(system prompt|instructions)\b",
            _I,
        ),
        "it asks for the system prompt to be disclosed",
    ),
    (
        re.compile(
            r"\b(send|post|upload|exfiltrate|forward|email)\b[^\n.]{0,40}?"
            r"\b(api[ _-]?keys?|credentials|secrets|passwords|tokens|\.env|auth\.json|ssh keys?)"
            r"[^\n]{0,60}?\b(to|at)\s+(https?://|\S+@\S+|\d{1,3}(\.\d{1,3}){3})",
            _I,
        ),
        "it asks for credentials to be sent somewhere",
    ),
    (
        re.compile(
            r"\b(curl|wget|nc|ncat)\b[^\n]{0,200}\$\{?[A-Z_]*(KEY|TOKEN|SECRET|PASSWORD)", _I
        ),
        "it sends a secret-named variable over the network",
    ),
)

SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\bsk-(ant-|or-|proj-)?[A-Za-z0-9_\-]{20,}"), "an API key (sk-...)"),
    (
        re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}"),
        "a GitHub token",
    ),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), "a Slack token"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), "a Google API key"),
    (re.compile(r"\b\d{8,10}:[A-Za-z0-9_\-]{35}\b"), "a Telegram bot token"),
    (re.compile(r"\b[rs]k_live_[A-Za-z0-9]{20,}"), "a Stripe key"),
    (
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        "a JSON web token",
    ),
    (
        # `password: s3cr3t-value`, `API_KEY="abc123..."`: a long value with letters and
        # digits right after a secret-like name (``os.environ[...]`` has no digit: allowed).
        re.compile(
            r"\b(password|passwd|passphrase|secret|api[_-]?key|access[_-]?token|auth[_-]?token"
            r"|client[_-]?secret|private[_-]?key)\b['\"]?\s*[:=]\s*['\"]?"
            r"(?=[^\s'\"]*\d)(?=[^\s'\"]*[A-Za-z])[A-Za-z0-9_\-+/=.~!@#%^&*]{10,}",
            _I,
        ),
        "a credential assigned to a secret-like name",
    ),
)

#: Secret-like environment variable names whose values must never be written down.
_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", _I)
_MIN_SECRET_LENGTH = 8

# Characters that render as nothing (or reorder text) and can hide instructions.
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)


def _known_secret_values() -> dict[str, str]:
    """Secret values hermes holds: ``.env`` entries and secret-named environment variables."""
    from hermes_agent.config.envfile import read_env_file

    values = dict(read_env_file(home.env_path()).values)
    values.update({k: v for k, v in os.environ.items() if _SECRET_NAME.search(k)})
    return {
        name: value
        for name, value in values.items()
        if len(value) >= _MIN_SECRET_LENGTH and not value.isspace()
    }


def scan(text: str) -> str | None:
    """Why ``text`` must not be stored (injection marker or secret), or None if it may.

    The reason never repeats the secret itself.
    """
    hidden = _INVISIBLE.search(text)
    if hidden:
        code = f"U+{ord(hidden.group()):04X}"
        name = unicodedata.name(hidden.group(), "invisible character")
        return f"it contains an invisible Unicode character ({code} {name}) that can hide text"
    for pattern, reason in INJECTION_MARKERS:
        if pattern.search(text):
            return f"it looks like a prompt injection: {reason}"
    for pattern, what in SECRET_SHAPES:
        if pattern.search(text):
            return (
                f"it looks like it contains a secret ({what}); never store credentials, "
                "store where they are kept instead (e.g. 'the key is in .env')"
            )
    for name, value in _known_secret_values().items():
        if value in text:
            return f"it contains the value of {name}, a secret; store the name, never the value"
    return None


def check(text: str, what: str) -> None:
    """:func:`scan`, raising the refusal as a :class:`ToolError` for the model."""
    reason = scan(text)
    if reason:
        raise ToolError(f"refused to write {what}: {reason}")


def preview(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"


async def approve(ctx: ToolContext, action: str, *, always: bool) -> None:
    """Ask the user before a write if needed; raise :class:`ToolError` unless they say yes.

    A question is asked when ``always`` is set (a ``*.write_approval`` that covers
    every write), or when this turn read untrusted content and
    ``memory.write_approval`` is on: then the write may have been requested by a
    web page or file rather than by the user. ``action`` describes the write
    ("save to MEMORY.md: ..."). Nobody to ask (a one-shot run without a terminal,
    a cron job) means no.
    """
    untrusted = bool(ctx.state.get(UNTRUSTED_READ)) and bool(
        ctx.config.get("memory.write_approval", True)
    )
    if not (always or untrusted):
        return
    why = ""
    if untrusted:
        sources = ctx.state.get(UNTRUSTED_SOURCES)
        named = (
            f" ({', '.join(str(s)[:80] for s in sources[:3])})"
            if isinstance(sources, list) and sources
            else ""
        )
        why = f"This turn read untrusted content{named}, which may have asked for this write. "
    question = f"{why}Allow the agent to {action}"
    answer = await ctx.ask(question, ["yes", "no"])
    if answer is None:
        raise ToolError(
            "refused: this write needs the user's approval and nobody can answer here"
            + (" (the turn read untrusted content)" if untrusted else "")
            + "; tell the user what you wanted to save so they can decide"
        )
    if answer.strip().lower() not in ("yes", "y"):
        raise ToolError("refused: the user did not approve this write; do not retry it")
