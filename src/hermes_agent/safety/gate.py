"""The approval chokepoint: every command the agent can cause to run passes here.

:func:`approve_command` is the one gate for the terminal tool, background jobs
and (later) commands that MCP servers are launched with. It classifies the
command with :func:`classify`, applies ``approvals.mode``, asks the user when
needed, writes one audit line per decision to ``HERMES_HOME/logs/approvals.jsonl``
and raises :class:`ToolError` (with the reason) when the command must not run.

How commands are understood
---------------------------
:func:`classify` parses the command with **tree-sitter-bash** (the bash
grammar used by editors and GitHub, MIT licensed, a compiled parser with
error recovery) into words and sub-commands, then walks the tree. Choices
that were weighed:

- ``bashlex`` is a port of bash's own yacc grammar, but it is GPLv3 (this
  project is MIT), pure Python (0.2-0.5 ms for ``ls -la``), and raises on
  everyday syntax (``[[ ... ]]``, ``$((...))``, ``case``, arrays), which would
  send ordinary commands to the user for approval.
- ``shlex`` with ``punctuation_chars`` only splits tokens: it knows nothing of
  ``$(...)``, backticks, here-documents, functions or nesting, so a hand-made
  parser on top of it would be a second, weaker bash grammar. It is kept as a
  fallback for input that tree-sitter cannot parse, only to escalate.

On the tree, words are evaluated the way bash would as far as that can be
known statically: quotes and escapes removed (``r''m``, ``\\rm``, ``"rm"``,
``$'\\x72m'``), brace expansion (``{rm,-rf,/}``), ``~``/``$HOME``, ``$IFS`` as
a word separator, variables assigned earlier in the same command, and the
output of simple pipelines (``echo ... | base64 -d``, ``xxd -r -p``, ``rev``,
``gunzip``) so that decoded text fed to a shell is parsed and checked too.
Wrappers are looked through (``sudo``, ``env``, ``xargs``, ``timeout``,
``nice``, ``nohup``, ``exec``, ``command``, ``time``, ``find -exec``, ...),
``bash -c``/``sh -c`` strings, ``eval``, aliases, ``trap`` and ``watch``
strings are parsed recursively, and programs are named by their basename
(``/usr/bin/sudo`` is ``sudo``). Anything whose meaning cannot be known
statically (a command name computed at run time, a string built at run time
given to a shell, input that does not parse) needs approval: nothing is
silently safe.

Verdicts: *safe* (runs without asking), *needs approval* (asks the user,
unless the mode or an earlier "always" allows it), *refused* (never runs,
whatever the mode: fork bombs, ``rm -rf /``/``~``/``/*``, writing to disk
devices, formatting devices, and any attempt to change hermes' own approval
settings or ``.env``: the agent cannot lift its own gate).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import HermesError
from hermes_agent.redact import current, outbound_secret, redact, redact_data
from hermes_agent.safety import denials
from hermes_agent.safety.commands import READ_ONLY
from hermes_agent.safety.parse import Analysis
from hermes_agent.safety.verdict import Finding, Level, Verdict
from hermes_agent.safety.words import canonical_name
from hermes_agent.tools.registry import ToolContext, ToolError

if TYPE_CHECKING:
    from hermes_agent.redact import Redactor

__all__ = [
    "ALWAYS_KEY",
    "CHOICES",
    "MODES",
    "Finding",
    "Level",
    "Verdict",
    "allow_matches",
    "approve_command",
    "classify",
]


def classify(command: str, *, cwd: str | None = None) -> Verdict:
    """Classify a shell command: safe, needs approval, or refused, with the reasons.

    Pure apart from reading ``HOME``/``HERMES_HOME`` from the environment (to
    recognise hermes' own files) and fast: well under a millisecond for a
    typical command. ``cwd`` is where the command will start; relative paths
    are resolved against it (so ``echo x > config.yaml`` inside HERMES_HOME is
    recognised).
    """
    analysis = Analysis(command, cwd)
    analysis.run()
    findings = tuple(f for f in analysis.findings.values() if f.level > Level.SAFE)
    level = max((f.level for f in findings), default=Level.SAFE)
    commands = tuple(analysis.commands)
    read_only = (
        level is Level.SAFE
        and analysis.parsed
        and not analysis.wrote
        and bool(commands)
        and all(c and canonical_name(c[0]) in NO_WRITES for c in commands)
    )
    return Verdict(command, level, findings, commands, analysis.parsed, read_only)


#: Programs that never change a file (given no redirection): the classifier's read-only
#: list without those that can write one through an option (``tree -o``, ``file -C``,
#: ``uniq IN OUT``) or change the machine (``date -s``, ``hostname NAME``).
NO_WRITES = frozenset(READ_ONLY - {"tree", "file", "uniq", "date", "hostname"})


# --- the gate ---------------------------------------------------------------------------

MODES = ("manual", "smart", "off")
CHOICES = ("yes", "no", "always")
#: ``ToolContext.state`` key: finding keys the user answered "always" to.
ALWAYS_KEY = "approvals.always"


def allow_matches(entry: str, argv: Sequence[str]) -> bool:
    """Whether an ``approvals.allow`` entry covers a sub-command.

    An entry is a command name followed by words that must appear in the
    command in that order: ``git push`` covers ``git -C repo push --force``;
    ``rm`` covers every ``rm``.
    """
    import shlex

    try:
        words = shlex.split(entry)
    except ValueError:
        words = entry.split()
    if not words or not argv or canonical_name(argv[0]) != canonical_name(words[0]):
        return False
    rest = iter(argv[1:])
    return all(any(word == item for item in rest) for word in words[1:])


class _AuditLog:
    """The audit log's descriptor, kept open between decisions (one per process).

    Opening, checking and closing the file for every line cost more than the rest of
    an MCP tool call's checks together. The descriptor is kept, and before each line
    the name is stat'ed (never following a symlink): if the file there is no longer
    the one held (rotated, replaced, removed, a link put in its place) or HERMES_HOME
    changed, it is opened again, with ``O_NOFOLLOW`` so a symlink at the log's name is
    an error (the decision is then not taken), never a write to the link's target.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fd = -1
        self.path = ""
        self.ident: tuple[int, int] = (0, 0)
        self.pid = os.getpid()

    def descriptor(self, path: str) -> int:
        """An open ``O_APPEND`` descriptor of the regular file at ``path`` (held lock)."""
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if (
            now is not None
            and self.fd >= 0
            and self.path == path
            and (now.st_dev, now.st_ino) == self.ident
            and self.pid == os.getpid()
        ):
            if now.st_mode & 0o077:  # Made readable by others since: private again.
                os.fchmod(self.fd, 0o600)
            return self.fd
        if self.pid != os.getpid():
            # A forked child: the number may have been closed and reused there, so it is
            # forgotten (never written to or closed), and the child opens its own.
            self.fd = -1
        self.close()
        home.ensure_dir(Path(path).parent)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{path} is not a regular file")
            if info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.path, self.ident = fd, path, (info.st_dev, info.st_ino)
        self.pid = os.getpid()
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd, self.path, self.ident = -1, "", (0, 0)


_audit_log = _AuditLog()
if hasattr(os, "register_at_fork"):
    # A child of os.fork() gets a lock of its own (the parent's may be held mid-line).
    os.register_at_fork(after_in_child=lambda: setattr(_audit_log, "lock", threading.Lock()))


#: One encoder for every audit line: ``json.dumps`` with an option builds a new one each time.
_LINE = json.JSONEncoder(ensure_ascii=False)


@functools.lru_cache(maxsize=8)
def _audit_path(hermes_home_var: str, user_home: str, cwd: str) -> str:
    return os.fspath(home.approvals_log_path())


def audit(record: dict[str, Any], redactor: Redactor | None = None) -> None:
    """Append one decision to ``logs/approvals.jsonl`` (0600), secrets redacted.

    One ``write`` per line on an ``O_APPEND`` descriptor: lines from several
    processes or threads never interleave. ``redactor``: see :func:`redact_data`.
    """
    path = _audit_path(*home.where())
    data = (_LINE.encode(redact_data(record, redactor)) + "\n").encode("utf-8")  # Before JSON.
    with _audit_log.lock:
        fd = _audit_log.descriptor(path)
        try:
            written = os.write(fd, data)
        except OSError:
            _audit_log.close()  # Opened again for the next line.
            raise
    if written != len(data):
        raise OSError(f"the audit log took {written} of {len(data)} bytes (disk full?)")


def _summary(verdict: Verdict, limit: int = 6) -> str:
    reasons = verdict.reasons
    text = "; ".join(reasons[:limit])
    if len(reasons) > limit:
        text += f"; and {len(reasons) - limit} more"
    return text


def _kernel_holds(ctx: ToolContext) -> bool:
    """Commands of this context run confined, or the user chose to run them unconfined."""
    from hermes_agent.safety import sandbox

    if str(ctx.config.get("terminal.backend") or "local") != "local":
        return True  # ssh and docker run elsewhere; the local sandbox has no say there.
    return sandbox.mode_of(ctx.config) == "off" or sandbox.active(ctx.config)


async def approve_command(command: str, ctx: ToolContext, *, purpose: str = "terminal") -> None:
    """Let ``command`` run, or raise :class:`ToolError` saying why not.

    The one gate for every command the agent causes to run. Refused commands
    never run. Otherwise ``approvals.mode`` decides: ``off`` runs everything
    else; ``manual`` asks the user (``ctx.ask``) for every command that is not
    safe; ``smart`` asks too, except for sub-commands covered by
    ``approvals.allow``. An "always" answer covers the same kinds of finding
    for the rest of the session. When nobody can answer (``ctx.ask`` returns
    None), the command is denied. Every decision is written to the audit log.
    """
    started = time.perf_counter()
    verdict = classify(command, cwd=ctx.cwd)
    mode = str(ctx.config.get("approvals.mode") or "manual")
    if mode not in MODES:
        mode = "manual"
    if mode == "off" and not _kernel_holds(ctx):
        # Nothing confines the command (the kernel offers no sandbox here): "off" would
        # leave the classifier as the only defence, so ask as in manual mode.
        mode = "manual"
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": ctx.session_id,
        "purpose": purpose,
        "command": command,
        "cwd": ctx.cwd,
        "depth": ctx.depth,
        "mode": mode,
        "verdict": verdict.level.label,
        "reasons": list(verdict.reasons),
    }

    def decide(decision: str, by: str) -> None:
        record["decision"] = decision
        record["by"] = by
        record["check_ms"] = round((time.perf_counter() - started) * 1000, 3)
        try:
            audit(record)
        except (OSError, ValueError, HermesError) as exc:
            raise ToolError(
                f"the command was not run: its approval could not be recorded in the audit "
                f"log ({exc}); fix HERMES_HOME/logs"
            ) from None

    carried = outbound_secret(command)
    if carried is not None:
        # The model was never shown the value (it is redacted everywhere), so a command
        # that spells it out got it by a trick: it must not reach a program or a host.
        decide("refused", "secret in the command")
        raise ToolError(
            f"refused: the command carries the value of {carried}, one of hermes' secrets "
            "(in some spelling). Commands never get hermes' secrets; if a tool needs a "
            "credential, ask the user to configure it for that tool."
        )
    if verdict.refused:
        decide("refused", "policy")
        refused = [f.reason for f in verdict.findings if f.level is Level.REFUSED]
        raise ToolError(
            "refused: " + "; ".join(dict.fromkeys(refused)) + ". This command is never run "
            "by the agent, whatever the approval mode; if it is really needed, ask the user "
            "to run it themselves."
        )
    held = denials.command_refusal(ctx.state, verdict, ctx.cwd)
    if held is not None:
        # The user said no to this effect earlier in the turn, by another route.
        decide("denied", "earlier denial in this turn")
        raise ToolError(held)
    if verdict.safe:
        decide("allowed", "safe")
        return
    if mode == "off":
        decide("allowed", "mode off")
        return
    always: set[str] = ctx.state.setdefault(ALWAYS_KEY, set())
    allow = [str(e) for e in (ctx.config.get("approvals.allow") or ()) if str(e).strip()]
    # After a denial in this turn, nothing is waved through: the user is asked again.
    after_denial = denials.active(ctx.state)
    pending = []
    for finding in verdict.findings:
        if finding.key in always and not after_denial:
            continue
        if (
            not after_denial
            and mode == "smart"
            and not finding.gate
            and finding.argv
            and any(allow_matches(entry, finding.argv) for entry in allow)
        ):
            continue
        pending.append(finding)
    if not pending:
        by = "allow-list" if mode == "smart" and allow else "always"
        if all(f.key in always for f in verdict.findings):
            by = "always"
        decide("allowed", by)
        return
    reasons = "\n".join(f"  - {r}" for r in dict.fromkeys(f.reason for f in pending))
    question = (
        f"The agent wants to run{'' if purpose == 'terminal' else f' ({purpose})'}:\n"
        f"  {command}\n"
        f"It needs your approval because:\n{reasons}\n"
        "Run it? yes = this once, always = allow this kind of command for the rest of the "
        "session, no = do not run it." + denials.question_note(ctx.state)
    )
    answer = await ctx.ask(question, list(CHOICES))
    normalized = (answer or "").strip().lower()
    record["answer"] = answer
    if answer is None:
        denials.record_command(ctx.state, verdict, ctx.cwd)
        decide("denied", "nobody to ask")
        raise ToolError(
            "denied: this command needs the user's approval ("
            + "; ".join(dict.fromkeys(f.reason for f in pending))
            + ") and nobody is there to give it (a run without a terminal, or a scheduled "
            "job). Do it another way, or tell the user what you wanted to run."
        )
    if normalized in ("always", "a"):
        always.update(f.key for f in pending)
        decide("allowed", "user (always)")
        return
    if normalized in ("yes", "y"):
        decide("allowed", "user")
        return
    denials.record_command(ctx.state, verdict, ctx.cwd)
    decide("denied", "user")
    raise ToolError(
        "denied by the user: the command was not run. Do not retry it; ask the user how "
        "they want to proceed."
    )


async def approve_action(
    action: str,
    ctx: ToolContext,
    *,
    purpose: str,
    policy: str,
    key: str,
    payload: str = "",
) -> None:
    """The gate for an action that is not a shell command: an MCP tool call.

    ``policy`` (``auto``, ``ask`` or ``deny``, from the server's configuration)
    decides instead of the command classifier; ``key`` names what an "always"
    answer covers for the rest of the session (one tool of one server).
    ``payload`` (the arguments as sent) is checked like a command: a value of
    one of hermes' secrets never leaves for a server. Every decision is written
    to the audit log; when nobody can answer an ``ask``, the action is denied.
    """
    started = time.perf_counter()
    #: The secrets as of now, for the check and the audit line of a decision taken now
    #: (one look at the secret files instead of two); dropped once the user was asked.
    now = current()
    redactor: Redactor | None = now
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": ctx.session_id,
        "purpose": purpose,
        "action": action,
        # Redacted before it is cut: a cut through a secret leaves a piece that is no
        # longer recognised (the audit redacts the record again, which changes nothing).
        "arguments": redact(payload, now)[:2000],
        "depth": ctx.depth,
        "policy": policy,
    }

    def decide(decision: str, by: str) -> None:
        record["decision"] = decision
        record["by"] = by
        record["check_ms"] = round((time.perf_counter() - started) * 1000, 3)
        try:
            audit(record, redactor)
        except (OSError, ValueError, HermesError) as exc:
            raise ToolError(
                f"not done: the approval could not be recorded in the audit log ({exc}); "
                "fix HERMES_HOME/logs"
            ) from None

    carried = now.outbound_secret(payload) if payload else None
    if carried is not None:
        decide("refused", "secret in the arguments")
        raise ToolError(
            f"refused: the arguments carry the value of {carried}, one of hermes' secrets. "
            "Tools never get hermes' secrets; if a server needs a credential, ask the user to "
            "configure it for that server."
        )
    held = denials.payload_refusal(ctx.state, payload, ctx.cwd)
    if held is not None:
        decide("refused", "an earlier denial in this turn")
        raise ToolError(held)
    if policy == "deny":
        decide("refused", "policy deny")
        raise ToolError(
            f"refused: {action} is denied by the configuration (approval: deny). Do not retry; "
            "tell the user if you need it."
        )
    if policy == "auto":
        decide("allowed", "policy auto")
        return
    always: set[str] = ctx.state.setdefault(ALWAYS_KEY, set())
    if key in always:
        decide("allowed", "always")
        return
    shown = payload if len(payload) <= 600 else payload[:600] + "..."
    question = (
        f"The agent wants to {action}"
        + (f" with:\n  {shown}" if shown else "")
        + "\nAllow it? yes = this once, always = this tool for the rest of the session, "
        "no = do not do it."
    )
    redactor = None  # The user may take minutes: the audit line looks at the secrets again.
    answer = await ctx.ask(question, list(CHOICES))
    record["answer"] = answer
    normalized = (answer or "").strip().lower()
    if answer is None:
        decide("denied", "nobody to ask")
        raise ToolError(
            f"denied: {action} needs the user's approval and nobody is there to give it (a "
            "run without a terminal, or a scheduled job; set approval: auto for this server "
            "in mcp_servers to allow it unattended). Tell the user what you wanted to do."
        )
    if normalized in ("always", "a"):
        always.add(key)
        decide("allowed", "user (always)")
        return
    if normalized in ("yes", "y"):
        decide("allowed", "user")
        return
    decide("denied", "user")
    raise ToolError(
        "denied by the user: it was not done. Do not retry; ask the user how to proceed."
    )
