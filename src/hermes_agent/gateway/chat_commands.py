"""Slash commands in gateway chats (the rows of agent/commands.py marked ``gateway``).

A message that is one of these commands is answered here instead of by the
model, except /retry and /queue, which name the text the model gets. /stop is
not here: it must act while an answer runs, so :meth:`Gateway.submit` handles
it before the chat's queue (see ``Gateway.stop_chat``). A slash word that is
not in the table for the gateway (``/start`` from Telegram, a path) goes to
the model as ordinary text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_agent.agent import commands

if TYPE_CHECKING:
    from hermes_agent.gateway.runner import Gateway
    from hermes_agent.state.db import InboundMessage

log = logging.getLogger("hermes_agent.gateway")

NEW_SESSION_REPLY = (
    "Started a new conversation: I no longer see what was said here before. "
    "(It is kept, and your saved memories still apply.)"
)
NOTHING_TO_STOP = "Nothing is being answered in this chat right now."
STOPPED = "Stopped."
#: The table's gateway commands this module answers (/stop: Gateway.submit).
HANDLED = frozenset(
    {"new", "help", "stop", "queue", "background", "undo", "retry", "personality", "usage"}
    | {"rollback"}
)
#: /background runs one chat may have going at once: each holds a model conversation,
#: and a chat (whoever is in it) must not be able to queue work without bound.
MAX_BACKGROUND_PER_CHAT = 3
#: And in the whole gateway: a new chat costs nothing (an API request with a fresh
#: ``user``, a new mail or Slack thread), so a per-chat cap alone bounds nothing.
MAX_BACKGROUND_TOTAL = 8


@dataclass
class Outcome:
    """What a command message becomes: a ``reply`` sent as it is, or a ``prompt`` to run."""

    reply: str | None = None
    prompt: str | None = None


def command_of(text: str) -> tuple[commands.Command, str] | None:
    """The gateway command ``text`` is, with its argument; None for anything else."""
    parsed = commands.parse(text)
    if parsed is None:
        return None
    command = commands.lookup(parsed[0], commands.GATEWAY)
    return None if command is None else (command, parsed[1])


def takes_commands(gateway: Gateway, row: InboundMessage) -> bool:
    """Whether ``row`` may be a command: not when its platform's text is whatever a
    stranger wrote (a webhook's payload, such as an issue comment), where
    ``/rollback 1 yes delete-new`` would otherwise act on the workspace."""
    platform = gateway.platforms.get(row.platform)
    return not (platform is not None and platform.untrusted_input)


def is_stop(text: str) -> bool:
    found = command_of(text)
    return found is not None and found[0].name == "stop"


def _route(gateway: Gateway, row: InboundMessage) -> str | None:
    found = gateway.db.route_and_activity(row.platform, row.chat_id, row.thread_id)
    return None if found is None else found[0]


async def handle(gateway: Gateway, row: InboundMessage) -> Outcome | None:
    """Answer a command message, or None when ``row`` is not a gateway command."""
    if not takes_commands(gateway, row):
        return None
    found = command_of(row.text)
    if found is None:
        return None
    command, arg = found
    name = command.name
    if name == "new":
        if arg:  # "/new plan for today" is a message, not the command.
            return None
        fresh = gateway.new_session(row)
        log.info("inbound %d: new conversation, session %s", row.id, fresh)
        return Outcome(reply=NEW_SESSION_REPLY)
    if name == "help":
        return Outcome(reply="Commands:\n" + commands.help_text(commands.GATEWAY))
    if name == "stop":  # Only reaches here when nothing ran (after a restart, say).
        return Outcome(reply=NOTHING_TO_STOP)
    if name == "queue":
        if not arg:
            return Outcome(reply=f"usage: {command.usage}")
        return Outcome(prompt=arg)  # It waited in this chat's queue for the current answer.
    if name == "background":
        if not arg:
            return Outcome(reply=f"usage: {command.usage}")
        if gateway.background_runs(row) >= MAX_BACKGROUND_PER_CHAT:
            return Outcome(
                reply=f"{MAX_BACKGROUND_PER_CHAT} background tasks are already running in this "
                "chat; send it again when one is done."
            )
        if gateway.background_runs() >= MAX_BACKGROUND_TOTAL:
            return Outcome(
                reply=f"{MAX_BACKGROUND_TOTAL} background tasks are already running in this "
                "gateway; send it again when one is done."
            )
        background = gateway.start_background(row, arg)
        return Outcome(
            reply=f"Working on it in the background (session {background}); "
            "I will post the result here when it is done."
        )
    session_id = _route(gateway, row)
    if name == "undo":
        undone = None if session_id is None else gateway.db.undo_last_exchange(session_id)
        if undone is None:
            return Outcome(reply="Nothing to undo.")
        return Outcome(
            reply="Dropped your last message and its answer from my context "
            "(they stay in the history)."
        )
    if name == "retry":
        text = None if session_id is None else gateway.db.undo_last_exchange(session_id)
        if not text:
            return Outcome(reply="Nothing to retry.")
        return Outcome(prompt=text)
    if name == "personality":
        return Outcome(reply=personality(gateway, row, session_id, arg))
    if name == "usage":
        return Outcome(reply=usage(gateway, session_id))
    if name == "rollback":
        return Outcome(reply=await rollback(gateway, arg))
    return None  # In the table for the gateway but not handled: the model gets it.


def personality(gateway: Gateway, row: InboundMessage, session_id: str | None, arg: str) -> str:
    """List the personalities, or choose one for this chat's conversation."""
    from hermes_agent.agent.prompt import personality_command
    from hermes_agent.errors import UsageError

    if session_id is None:
        session_id = gateway.new_session(row)
    try:
        return personality_command(gateway.config, gateway.db, session_id, arg)
    except UsageError as exc:
        return str(exc)


async def rollback(gateway: Gateway, arg: str) -> str:
    """``/rollback [N] [yes] [delete-new]`` on the gateway's workspace
    (:func:`hermes_agent.checkpoints.rollback_command`)."""
    from hermes_agent import checkpoints

    reply = await checkpoints.rollback_command(gateway.cwd, gateway.config, arg)
    if reply.startswith("restored "):
        log.info("rollback: %s", reply.splitlines()[0])
    return reply


def usage(gateway: Gateway, session_id: str | None) -> str:
    session = None if session_id is None else gateway.db.get_session(session_id)
    if session is None:
        return "No conversation yet."
    return (
        f"This conversation: {session.input_tokens:,} tokens in, "
        f"{session.output_tokens:,} out, ${session.cost_usd:.4f}."
    )
