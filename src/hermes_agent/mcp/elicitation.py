"""A server's questions to the user (MCP elicitation), answered through the front end.

hermes has no form to fill in, and a hostile server must not be able to collect
anything from the user by asking: the one answer a user can give is *accept the
values the server itself proposed* (each field's schema default, SEP-1034) or
decline. A question goes to whoever made the tool call that is running on this
server (``Connection.askers``: the chat prompt, the editor's permission request).
The protocol does not say which call a question belongs to, so while calls
from different people (two gateway chats, two editor sessions) run on one
server, its questions are declined rather than shown to someone who may not
be the one it is about. With nobody to ask, or a field without a default, the
request is declined. URL-mode requests (open a web page) are declined too.
Every decision is audited.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermes_agent.mcp.manager import Connection

Asker = Callable[[str, Sequence[str]], Awaitable[str | None]]

ACCEPT = "accept the proposed values"
DECLINE = "decline"


def defaults_of(schema: Any) -> dict[str, Any] | None:
    """The schema's proposed answer: every property's default; None when a required
    property has none (hermes cannot ask the user to type one)."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict):
        return None
    required = schema.get("required") or []
    values = {
        str(key): spec["default"]
        for key, spec in properties.items()
        if isinstance(spec, dict) and "default" in spec
    }
    if any(str(key) not in values for key in required if isinstance(key, str)):
        return None
    return values


def _visible(text: str) -> str:
    """Control characters shown as escapes: a server's text cannot redraw the question."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def callback_for(connection: Connection) -> Any:
    """The SDK's ``elicitation_callback`` for one server."""
    import mcp_types as types

    async def callback(context: Any, params: Any) -> Any:
        from hermes_agent.redact import redact
        from hermes_agent.safety.gate import audit

        server = connection.server.name
        message = redact(str(getattr(params, "message", "") or ""))[:1000]
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "purpose": "mcp elicitation",
            "server": server,
            "message": message,
        }

        def answer(action: str, by: str, content: dict[str, Any] | None = None) -> Any:
            record.update(decision=action, by=by)
            try:
                audit(record)
            except Exception:  # The audit log is hermes' record; a full disk declines.
                return types.ElicitResult(action="decline")
            return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]

        schema = getattr(params, "requested_schema", None)
        if schema is None:  # URL mode: a web page to open; not offered.
            return answer("decline", "url elicitation is not supported")
        values = defaults_of(schema)
        if values is None:
            return answer("decline", "a required field has no proposed value")
        askers: list[Asker] = []
        for one in connection.askers:  # Equal: the same front end (bound methods are new
            if not any(one == seen for seen in askers):  # objects on each access).
                askers.append(one)
        if not askers:
            return answer("decline", "nobody to ask")
        if len(askers) > 1:
            return answer("decline", "calls of several users are running; whose question")
        (asker,) = askers
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "(no fields)"
        question = _visible(
            f"MCP server {server!r} asks: {message}\nIts proposed answer: {shown[:500]}"
        )
        reply = await asker(question, (ACCEPT, DECLINE))
        if reply == ACCEPT:
            return answer("accept", "user", values)
        return answer("decline", "user" if reply else "no answer")

    return callback
