"""What flows through a command: its standard input and output, and its file use.

The walk passes an :class:`Input` to each command and gets its
:class:`Output` back, so that ``echo ... | base64 -d | sh`` can be followed
to the text the shell runs; a command rule returns a :class:`Use` saying which
of its words are files it writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hermes_agent.safety.words import Field

MAX_DEPTH = 8
WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&", "&>|"})


@dataclass(slots=True)
class Input:
    """What a command reads on standard input."""

    piped: bool = False
    data: bytes | None = None
    decoded: bool = False
    downloaded: bool = False
    source: str = "pipe"
    #: Trees whose file names the input lists (``find DIR | xargs cat``).
    names: tuple[str, ...] = ()


@dataclass(slots=True)
class Output:
    """What a command writes on standard output, when that can be known."""

    data: bytes | None = None
    decoded: bool = False
    downloaded: bool = False
    #: Trees whose file names the output lists (``find DIR``, ``fd . DIR``).
    names: tuple[str, ...] = ()


NO_INPUT = Input()
NO_OUTPUT = Output()


@dataclass(slots=True)
class Use:
    """How a command touches paths: what it writes, what it reads, and how widely.

    Words not listed in ``writes``/``into``/``trees`` are judged by what the
    command is: reads of their content when ``read_only`` or ``precise``, and
    possible writes otherwise (a program this table does not know).
    """

    read_only: bool = False
    writes: list[Field] = field(default_factory=list)
    #: Write targets are known exactly (cp, tee...): other mentions are reads.
    precise: bool = False
    #: Recursive delete/move/permission change: a home or root target is catastrophic.
    sweeping: bool = False
    #: Directories the command writes files of unknown names into (``tar -x -C D``,
    #: ``unzip -d D``, ``cp -r src D``): anything protected below them may be overwritten.
    into: list[Field] = field(default_factory=list)
    #: Trees whose file contents the command reads (``grep -r``, ``tar c``, ``cp -r``).
    trees: list[Field] = field(default_factory=list)
    #: Reads only names and metadata, never contents (``ls``, ``stat``, ``du``).
    names_only: bool = False
    #: Trees whose file names the command prints (``find DIR``): a later ``xargs cat``
    #: or ``cat $(...)`` reads them.
    lists: list[Field] = field(default_factory=list)
