"""The system prompt: who the agent is, where it works, and what it knows.

Built once per session and then frozen (kept in state.db with the session, so
each gateway message and a resumed chat send it too), so providers with prompt
caching read it from cache on every later call; it is built again only when
what :func:`prompt_key` covers changed. Sources, in order:

1. hermes' own identity and the working context (date, workspace, platform);
2. ``SOUL.md``: persona and standing instructions, from the workspace when
   the user approved that content (:mod:`.trust`; the NixOS module's
   documents are approved by installing them), else HERMES_HOME;
3. ``USER.md``: who the user is, found the same way;
4. the personality named by ``display.personality``;
5. sections contributed by other parts (the memory snapshot, the skills
   index) through :data:`SECTION_MODULES`.

A part that adds a section is listed in :data:`SECTION_MODULES` by module
name, like the tool modules: the module is imported only when a session's
prompt is built (never by `hermes --help`), and its ``prompt_section(config,
tools)`` gets the session's configuration and the names of the session's
tools, so one process can serve sessions with different settings (the gateway)
and a section can stay silent when its tools are not enabled. Because the
prompt is built once per session, what a section shows is a snapshot: a memory
written during the session appears in the next one.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_agent import home

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.state.db import StateDB

IDENTITY = (
    "You are Hermes, a personal AI agent. You help your user get real work done: you "
    "think before acting, use your tools to find facts rather than guessing, and finish "
    "the task before you answer. Be direct and concise; say plainly when you are unsure "
    "or when something failed."
)

PERSONALITIES = {
    "concise": "Answer in as few words as the task allows. No preamble, no recap.",
    "teacher": "Explain your reasoning step by step so the user learns how, not just what.",
    "friendly": "Be warm and encouraging, while staying precise.",
    "technical": "Assume an expert reader: precise terms, exact commands, no hand-holding.",
}

MAX_DOCUMENT_CHARS = 20_000

#: Modules whose ``prompt_section(config, tools) -> str | None`` adds a section to every
#: session's prompt built with a configuration, in this order.
SECTION_MODULES: tuple[str, ...] = (
    "hermes_agent.tools.memory",
    "hermes_agent.skills.loader",
)


def find_document(name: str, cwd: Path) -> Path | None:
    """``name`` in the workspace if present and trusted, else in HERMES_HOME.

    A workspace copy whose content the user never approved is passed over
    (see :mod:`hermes_agent.agent.trust`): the agent's own commands can write
    the workspace, and what they write must not become its instructions.
    """
    from hermes_agent.agent import trust

    for folder in (cwd, home.hermes_home()):
        candidate = folder / name
        if candidate.is_file() and trust.trusted(candidate):
            return candidate
    return None


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    if len(text) > MAX_DOCUMENT_CHARS:
        text = text[:MAX_DOCUMENT_CHARS] + "\n[... truncated]"
    return text


def personalities(config: Config | None) -> dict[str, str]:
    """Every personality by name: the bundled ones, then ``personalities:`` from config.yaml."""
    found = dict(PERSONALITIES)
    own = config.get("personalities") if config is not None else None
    if isinstance(own, dict):
        found.update({str(k).lower(): str(v) for k, v in own.items() if isinstance(v, str)})
    return found


def personality_style(config: Config | None, name: str) -> str:
    """The style text for ``name`` (a personality's name, or the text itself); "" for none."""
    if not name or name.lower() == "none":
        return ""
    return personalities(config).get(name.lower(), name)


def personality_command(config: Config, db: StateDB, session_id: str, arg: str) -> str:
    """/personality in every front end: list them (no argument), or choose one for the session.

    Only a known name (or ``none``) is accepted: whoever types in a chat picks
    among the styles the owner configured, never writes the prompt. Returns
    what to tell the user; the caller rebuilds a live agent's prompt
    (:meth:`Agent.refresh_prompt`).
    """
    from hermes_agent.errors import UsageError

    known = personalities(config)
    chosen = db.session_personality(session_id)
    current = chosen if chosen is not None else str(config.get("display.personality") or "")
    if not arg.strip():
        lines = [f"{'*' if n == current.lower() else ' '} {n}: {t}" for n, t in known.items()]
        head = "Personalities (/personality NAME switches this conversation; none for none):"
        return "\n".join([head, *lines])
    wanted = arg.strip().lower()
    if wanted != "none" and wanted not in known:
        raise UsageError(f"no personality {arg.strip()!r}; choose one of: {', '.join(known)}, none")
    db.set_personality(session_id, "" if wanted == "none" else wanted)
    return f"personality: {wanted} (for this conversation)"


def prompt_key(*, cwd: Path, personality: str, model: str, tools: Collection[str]) -> str:
    """What a session's prompt was built from, as far as the user chooses it.

    The documents' identity and version (path, size, modification time), the
    personality, the model and the tools: when this changes, a kept prompt is
    built again. Memory and skills are not in it: they are a snapshot taken
    when the session's prompt is built (see the module docstring).
    """
    parts: list[str] = [personality, model, ",".join(sorted(tools))]
    for name in ("SOUL.md", "USER.md"):
        path = find_document(name, cwd)
        if path is None:
            parts.append("-")
            continue
        try:
            st = path.stat()
        except OSError:
            parts.append(f"{path}:?")
            continue
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def build_system_prompt(
    *,
    cwd: Path,
    personality: str = "",
    model: str = "",
    config: Config | None = None,
    tools: Collection[str] = (),
) -> str:
    sections = [
        IDENTITY,
        "## Context\n"
        f"- Date: {time.strftime('%A %Y-%m-%d')}\n"
        f"- Workspace (your working directory): {cwd}\n"
        f"- System: {platform.system()} {platform.release()}"
        + (f"\n- Model: {model}" if model else ""),
    ]
    soul = find_document("SOUL.md", cwd)
    if soul is not None and (text := _read(soul)):
        sections.append(f"## Persona and instructions (SOUL.md)\n{text}")
    user = find_document("USER.md", cwd)
    if user is not None and (text := _read(user)):
        sections.append(f"## About the user (USER.md)\n{text}")
    if personality:
        sections.append(f"## Style\n{personality_style(config, personality)}")
    if config is not None:
        import importlib

        for module in SECTION_MODULES:
            extra = importlib.import_module(module).prompt_section(config, tools)
            if extra:
                sections.append(extra)
    return "\n\n".join(sections)
