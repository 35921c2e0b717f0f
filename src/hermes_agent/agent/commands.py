"""The one table of slash commands, shared by every front end.

``hermes chat`` dispatches from it and prints its ``/help`` from it, the
gateway recognises the commands it offers from it (and answers ``/help``
with them), and ACP announces the ones it offers in
``available_commands_update``. A command is added here once, with the front
ends that offer it; each front end then implements it (a front end asked
for a command it lists but has no handler for says so instead of sending
the text to the model).

This module has no imports beyond the standard library: the chat prompt and
``hermes --help`` read it, and both must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The front ends that read this table.
CHAT = "chat"
GATEWAY = "gateway"
ACP = "acp"
FRONT_ENDS = (CHAT, GATEWAY, ACP)


@dataclass(frozen=True)
class Command:
    """One slash command: what it is called, what it takes, where it exists."""

    #: The name without the slash, lower case.
    name: str
    #: The argument as the help shows it ("" when it takes none), e.g. ``[NAME]``.
    args: str
    #: One line for /help (and ACP's description).
    help: str
    #: The front ends that offer it (a subset of :data:`FRONT_ENDS`).
    where: frozenset[str]
    #: Other names for it (without the slash).
    aliases: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        """``/name ARGS`` as shown in help and error messages."""
        return f"/{self.name} {self.args}".rstrip()


def _c(name: str, args: str, help: str, *where: str, aliases: tuple[str, ...] = ()) -> Command:
    return Command(name, args, help, frozenset(where), aliases)


#: Every slash command, in the order /help lists them. Add a row with a small edit.
COMMANDS: tuple[Command, ...] = (
    _c("help", "", "this list", CHAT, GATEWAY),
    _c("new", "", "start a new session", CHAT, GATEWAY, aliases=("reset",)),
    _c("retry", "", "run your last message again", CHAT, GATEWAY, ACP),
    _c("undo", "", "drop the last exchange from the model's context", CHAT, GATEWAY, ACP),
    _c("stop", "", "stop the answer being written", GATEWAY),
    _c("queue", "PROMPT", "run PROMPT after the current answer", CHAT, GATEWAY, ACP),
    _c(
        "background",
        "PROMPT",
        "run PROMPT as a separate session; say when it is done",
        CHAT,
        GATEWAY,
    ),
    _c("personality", "[NAME]", "list personalities, or switch to one", CHAT, GATEWAY, ACP),
    _c("model", "[NAME]", "show or switch the model", CHAT),
    _c("tools", "", "the tools the agent can use", CHAT),
    _c(
        "rollback",
        "[N]",
        "undo the workspace changes since checkpoint N (1 = the newest)",
        CHAT,
        GATEWAY,
        ACP,
    ),
    _c("image", "FILE", "attach an image (a path, or a dropped file) to your next message", CHAT),
    _c("mcp", "[trust NAME]", "MCP servers, their state and prompts (/SERVER:PROMPT)", CHAT),
    _c("reload-mcp", "", "reconnect the MCP servers (after editing mcp_servers)", CHAT),
    _c("usage", "", "tokens and cost of this session", CHAT, GATEWAY, ACP),
    _c("compress", "", "summarise older messages now to free context", CHAT, ACP),
    _c("title", "TEXT", "name this session", CHAT),
    _c("sessions", "", "recent sessions (resume one with /resume ID)", CHAT),
    _c("resume", "ID", "switch to another session", CHAT),
    _c("exit", "", "leave (Ctrl-D works too)", CHAT, aliases=("quit",)),
)


def offered(front: str) -> list[Command]:
    """The commands ``front`` offers, in table order."""
    return [c for c in COMMANDS if front in c.where]


def lookup(name: str, front: str) -> Command | None:
    """The command called ``name`` (or an alias of it) if ``front`` offers it."""
    name = name.lower()
    for command in COMMANDS:
        if front in command.where and (name == command.name or name in command.aliases):
            return command
    return None


def parse(text: str) -> tuple[str, str] | None:
    """``(name, argument)`` of a message that starts with a slash command, else None.

    The name is lower-cased and loses a ``@BotName`` suffix (Telegram's form in
    groups); the argument is the rest, stripped. Only the shape is checked:
    whether the command exists is :func:`lookup`'s business. A path such as
    ``/etc/hosts is odd`` is not a command (the name must be a plain word).
    """
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    parts = stripped[1:].split(None, 1)
    if not parts:
        return None
    name = parts[0].split("@", 1)[0].lower()
    if not name.isascii() or not name.replace("-", "").replace("_", "").isalnum():
        return None
    return name, parts[1].strip() if len(parts) > 1 else ""


def help_text(front: str) -> str:
    """The /help list for ``front``: one line per command, aligned."""
    rows = offered(front)
    width = max(len(c.usage) for c in rows) + 2
    lines = [f"{c.usage:<{width}}{c.help}" for c in rows]
    return "\n".join(lines)
