"""What the classifier says about a command: a level, the findings behind it.

Kept apart from the analysis so that the gate, the tests and the front ends can
read a verdict without importing the parser.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.IntEnum):
    """How dangerous a command is; a command's level is the highest of its findings."""

    SAFE = 0
    APPROVAL = 1
    REFUSED = 2

    @property
    def label(self) -> str:
        return ("safe", "needs approval", "refused")[self]


@dataclass(frozen=True)
class Finding:
    """One reason a command is not simply safe."""

    level: Level
    reason: str
    #: What an "always" answer remembers for the session, and what names the
    #: finding in the audit log. Opaque cases use ``exact:<command>`` so that
    #: "always" only ever repeats the very same command.
    key: str
    #: The sub-command the finding was made in (static words), matched against
    #: ``approvals.allow`` in smart mode.
    argv: tuple[str, ...] = ()
    #: Touches hermes' own secrets or state: never pre-approved by the allow-list.
    gate: bool = False


@dataclass(frozen=True)
class Verdict:
    """What :func:`classify` found: the level, the reasons and the sub-commands."""

    command: str
    level: Level
    findings: tuple[Finding, ...]
    #: Every simple command found (after unwrapping), as its words.
    commands: tuple[tuple[str, ...], ...]
    #: False when the parser reported a syntax error (the verdict is then at least
    #: "needs approval").
    parsed: bool = True
    #: True only when the command is known to change no file: safe, parsed, every
    #: program one that only reads, nothing redirected into a file. False when unsure
    #: (checkpoints are taken before commands that are not read-only).
    read_only: bool = False

    @property
    def safe(self) -> bool:
        return self.level is Level.SAFE

    @property
    def needs_approval(self) -> bool:
        return self.level is Level.APPROVAL

    @property
    def refused(self) -> bool:
        return self.level is Level.REFUSED

    @property
    def reasons(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for f in sorted(self.findings, key=lambda f: -f.level):
            seen.setdefault(f.reason, None)
        return tuple(seen)
