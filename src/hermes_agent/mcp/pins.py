"""Pinning MCP tool definitions: a tool that changes after its first use is held.

A server can change a tool's description or schema at any time (a "rug
pull": a harmless tool, once trusted, becomes one whose description tells the
model to send it your files). At a tool's first successful use its definition
(name, description, input and output schema) is recorded here by SHA-256;
when the server later offers a different definition, the tool is not offered
to the model until the user approves the change (`hermes mcp trust NAME`,
or ``/mcp trust NAME`` in `hermes chat`).

Kept in ``HERMES_HOME/mcp-pins.json`` (0600, written atomically under the
home lock), like the approved workspace documents in
``trusted-documents.json``: it is the user's decision about content, read by
every front end before offering a tool; it must be out of reach of the
agent's commands (the sandbox hides HERMES_HOME) and needs no query beyond a
lookup, so state.db (a shared transcript store the gateway writes all the
time) would add a migration and a schema for one small mapping.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Any

from hermes_agent import home


def digest(tool: Any) -> str:
    """The SHA-256 of what the model is told about a tool (a ``mcp_types.Tool``)."""
    definition = {
        "name": tool.name,
        "description": tool.description or "",
        "input": tool.input_schema,
        "output": tool.output_schema,
    }
    title = getattr(tool, "title", None)
    if title:
        # The model is told the title when there is no description (tools._description):
        # a title changed after first use is a changed definition too.
        definition["title"] = title
    data = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


_cache: tuple[int, dict[str, dict[str, Any]]] | None = None


@functools.lru_cache(maxsize=8)
def _pins_file(hermes_home_var: str, user_home: str, cwd: str) -> str:
    """The pins file of one HERMES_HOME, as a string (worked out once: it is stat'ed
    before every MCP tool call, and building the path cost more than the stat)."""
    return os.fspath(home.mcp_pins_path())


def stamp() -> int:
    """Changes whenever the pins file does (cheap: one stat)."""
    try:
        st = os.stat(_pins_file(*home.where()))
    except OSError:
        return 0
    # The inode too: a file replaced within the clock's granularity keeps its mtime.
    return hash((st.st_ino, st.st_mtime_ns, st.st_size))


def load() -> dict[str, dict[str, Any]]:
    """``{server: {tool: {"digest", "description", "pinned"}}}`` (cached by mtime)."""
    global _cache
    current = stamp()
    if _cache is not None and _cache[0] == current:
        return _cache[1]
    try:
        data = json.loads(home.mcp_pins_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pins = {str(k): v for k, v in data.items() if isinstance(v, dict)}
    _cache = (current, pins)
    return pins


def pinned(server: str, tool: str) -> str | None:
    entry = load().get(server, {}).get(tool)
    return str(entry.get("digest")) if isinstance(entry, dict) else None


def check(server: str, name: str, value: str) -> str:
    """``new`` (never used), ``same`` (as approved) or ``changed`` for a tool's digest."""
    known = pinned(server, name)
    if known is None:
        return "new"
    return "same" if known == value else "changed"


def held(server: str, tool: Any) -> bool:
    """The tool was used with another definition and the user has not approved this one."""
    known = pinned(server, tool.name)
    return known is not None and known != digest(tool)


def pin(server: str, tools: list[Any]) -> None:
    """Record these definitions as the approved ones (first use, or the user said yes)."""
    from hermes_agent.fsutil import atomic_write
    from hermes_agent.home_lock import home_lock

    home.ensure_home()
    with home_lock("pin MCP tool definitions"):
        global _cache
        _cache = None
        data = dict(load())
        entries = dict(data.get(server, {}))
        for tool in tools:
            entries[tool.name] = {
                "digest": digest(tool),
                "description": (tool.description or "")[:200],
                "pinned": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        data[server] = entries
        atomic_write(
            home.mcp_pins_path(), json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600
        )
        _cache = None


def forget(server: str) -> None:
    """Drop a removed server's pins (`hermes mcp remove`)."""
    from hermes_agent.fsutil import atomic_write
    from hermes_agent.home_lock import home_lock

    if server not in load():
        return
    with home_lock("forget MCP tool pins"):
        global _cache
        _cache = None
        data = dict(load())
        data.pop(server, None)
        atomic_write(
            home.mcp_pins_path(), json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600
        )
        _cache = None
