"""hermes' own command line, however it is invoked.

The agent must not lift its own gate through hermes' CLI: ``hermes config set
approvals.mode off`` is refused whether it is spelled ``hermes``,
``hermes-agent``, ``/path/to/.venv/bin/hermes``, ``.venv/bin/python
.venv/bin/hermes``, ``python -m hermes_agent``, ``uv run hermes``, ``env
hermes``, a copy or a symbolic link of the console script (recognised by what
the file says, not by its name), or a command whose name is only known when it
runs but whose words are a hermes sub-command that writes.

Any invocation that changes hermes' configuration, secrets or state (``config
set/unset/edit``, ``setup``, ``deploy apply``, ``skills install/remove``,
``cron add/remove/pause/resume``, ``gateway install/pair``, ``sessions
delete/prune``...) is refused; so is any sub-command this table does not
know (a newer hermes may add writers). Read-only ones (``version``,
``--help``, ``config get/show/check``, ``sessions list``...) are safe; those
that start another agent or the service (``chat``, ``cron run``, ``gateway
run``) need approval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hermes_agent.safety.flow import Input, Use
from hermes_agent.safety.targets import check_write
from hermes_agent.safety.verdict import Level
from hermes_agent.safety.words import Field

if TYPE_CHECKING:
    from hermes_agent.safety.parse import Analysis

#: The console scripts (pyproject.toml ``[project.scripts]``) and the module.
NAMES = frozenset(("hermes", "hermes-agent", "hermes-acp"))
MODULE = "hermes_agent"

#: sub-command -> actions that only read ("" = the sub-command without an action).
READ_ONLY: dict[str, frozenset[str]] = {
    "version": frozenset({""}),
    "help": frozenset({""}),
    "tools": frozenset({"", "list"}),
    "config": frozenset({"", "show", "get", "path", "env-path", "check"}),
    "sessions": frozenset({"", "list", "show", "search", "export"}),
    "skills": frozenset({"", "list", "show"}),
    "cron": frozenset({"", "list", "show"}),
    "gateway": frozenset({"status"}),
    "sandbox": frozenset({"", "status"}),
    "deploy": frozenset({"identity"}),
}
#: sub-command -> actions that start an agent or the service: asked, never silent.
STARTS: dict[str, frozenset[str]] = {
    "chat": frozenset({""}),
    "cron": frozenset({"run"}),
    "gateway": frozenset({"run", "stop", ""}),
}
#: Options (of any sub-command) that take a value, so the value is not taken for an action.
_WITH_VALUE = frozenset(
    [
        "-q",
        "--query",
        "-m",
        "--model",
        "--provider",
        "--base-url",
        "--toolsets",
        "-r",
        "--resume",
        "--limit",
        "--format",
        "-o",
        "--output",
        "--schedule",
        "-s",
        "--name",
        "-n",
    ]
)


def _script_mentions_hermes(path: str) -> bool:
    """Whether the file at ``path`` is a hermes console script (its first bytes say so)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except (OSError, ValueError):
        return False
    return head.startswith(b"#!") and MODULE.encode() in head


def is_hermes_program(an: Analysis, word: Field, *, is_file: bool = False) -> bool:
    """Whether the command word ``word`` runs hermes' CLI: by name, or (for a path, or
    any script given to an interpreter: ``is_file``) the file it resolves to, a copy of
    it made earlier in this command, or its contents."""
    if word.dynamic:
        return False
    text = word.text
    name = text.rsplit("/", 1)[-1]
    if name in NAMES:
        return True
    if "/" not in text and not is_file:
        return False
    real = an.real(text)
    if real.rsplit("/", 1)[-1] in NAMES or real in an.hermes_copies:
        return True
    if is_file and f"/{MODULE}/" in real:
        return True  # `python .../hermes_agent/__main__.py`: hermes' own module, run directly
    return real.startswith("/") and _script_mentions_hermes(real)


def arguments_look_like_hermes(args: list[Field]) -> bool:
    """Words that are a hermes sub-command that writes (``config set ...``, ``setup``)."""
    sub, action, _ = _sub_action(args)
    if sub is None or sub not in _KNOWN:
        return False
    return _kind(sub, action) == "writes"


_KNOWN = frozenset(
    (
        "chat",
        "gateway",
        "setup",
        "config",
        "sessions",
        "skills",
        "cron",
        "tools",
        "deploy",
        "version",
        "sandbox",
        "help",
    )
)


def _sub_action(args: list[Field]) -> tuple[str | None, str, bool]:
    """The sub-command, its action, and whether every word was known."""
    ops: list[str] = []
    known = True
    skip = False
    for f in args:
        if skip:
            skip = False
            continue
        if f.dynamic:
            known = False
            if not ops or len(ops) < 2:
                break
            continue
        t = f.text
        if t.startswith("-") and len(t) > 1:
            if t in _WITH_VALUE:
                skip = True
            continue
        ops.append(t)
        if len(ops) >= 2:
            break
    if not ops:
        return None, "", known
    return ops[0], ops[1] if len(ops) > 1 else "", known


def _kind(sub: str, action: str) -> str:
    if action in READ_ONLY.get(sub, frozenset()):
        return "reads"
    if action in STARTS.get(sub, frozenset()):
        return "starts"
    if sub == "chat":
        return "starts"
    return "writes"


def r_hermes(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """hermes' CLI: read-only commands are safe, starting an agent asks, writing is refused."""
    args = argv[1:]
    texts = [f.text for f in args if not f.dynamic]
    if any(t in ("-h", "--help", "--version") for t in texts) and not any(f.dynamic for f in args):
        return Use(read_only=True)
    if base in ("hermes-agent", "hermes-acp") and not arguments_look_like_hermes(args):
        # Today's `hermes-agent` asks the agent its words; an install where it is the
        # full CLI would run them, so words that are a writing sub-command are refused.
        an.add(
            Level.APPROVAL,
            f"{base} starts another hermes agent",
            f"hermes {base}",
            argv,
            gate=True,
        )
        return Use(read_only=True)
    sub, action, known = _sub_action(args)
    shown = " ".join(f.shown for f in argv)
    if sub is None:
        if not known:
            _refuse(an, argv, f"{shown}: hermes with arguments only known when it runs")
            return Use()
        an.add(Level.APPROVAL, "hermes starts another agent", "hermes chat", argv, gate=True)
        return Use(read_only=True)
    kind = _kind(sub, action) if sub in _KNOWN else "writes"
    if not known and kind != "starts":
        _refuse(an, argv, f"{shown}: hermes with arguments only known when it runs")
        return Use()
    if kind == "reads":
        if sub == "sessions" and action == "export":
            for i, f in enumerate(args):
                if f.text in ("-o", "--output") and i + 1 < len(args):
                    check_write(an, args[i + 1], "hermes sessions export writes", argv)
        return Use(read_only=True)
    if kind == "starts":
        an.add(
            Level.APPROVAL,
            f"hermes {' '.join(x for x in (sub, action) if x)} starts another agent or the service",
            f"hermes {sub}",
            argv,
            gate=True,
        )
        return Use(read_only=True)
    what = " ".join(x for x in (sub, action) if x)
    _refuse(
        an,
        argv,
        f"hermes {what} changes hermes' own configuration, secrets or state; the user must run it",
    )
    return Use()


def _refuse(an: Analysis, argv: list[Field], reason: str) -> None:
    an.add(Level.REFUSED, reason, "hermes gate", argv, gate=True)


def module_is_hermes(module: str) -> bool:
    """``python -m hermes_agent`` or any of its sub-modules."""
    return module == MODULE or module.startswith(MODULE + ".")


def record_copy(an: Analysis, sources: list[Field], targets: list[Field]) -> None:
    """``cp .venv/bin/hermes ./h``: remember ``./h`` as hermes for the rest of the command."""
    if any(is_hermes_program(an, s) for s in sources):
        for t in targets:
            if not t.dynamic:
                an.hermes_copies.add(an.real(t.text))
