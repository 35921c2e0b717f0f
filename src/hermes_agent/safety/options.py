"""Option scanning: which words of a command are options, their arguments, operands.

Commands differ only in which short letters and long options take an
argument; the scanners here take that table and do the rest (clusters such
as ``-sSLo FILE``, ``--opt=value``, ``--``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hermes_agent.safety.words import UNKNOWN, Field


def scan_operands(
    args: Sequence[Field],
    *,
    noarg: str = "",
    witharg: str = "",
    long_witharg: Iterable[str] = (),
    stop_at_first: bool = True,
) -> tuple[list[int], bool]:
    """Indices of operands in ``args`` (skipping options), and whether that was certain.

    With ``stop_at_first`` (commands that take a command after their options),
    scanning stops at the first operand. An option this table does not know
    makes the answer uncertain: its argument may have been taken for an operand.
    """
    long_with = frozenset(long_witharg)
    out: list[int] = []
    certain = True
    i, n = 0, len(args)
    while i < n:
        f = args[i]
        t = f.text
        if f.dynamic:
            out.append(i)
            certain = certain and not t.startswith("-")
            if stop_at_first:
                return out, False
            i += 1
            continue
        if t == "--":
            out.extend(range(i + 1, n) if not stop_at_first else [i + 1] if i + 1 < n else [])
            return out, certain
        if t.startswith("--") and len(t) > 2:
            key = t.split("=", 1)[0]
            if "=" not in t and key in long_with:
                i += 2
                continue
            i += 1
            continue
        if t.startswith("-") and len(t) > 1:
            skip_next = False
            for j, ch in enumerate(t[1:], 1):
                if ch in witharg:
                    skip_next = j == len(t) - 1
                    break
                if ch not in noarg:
                    certain = False
            i += 2 if skip_next else 1
            continue
        out.append(i)
        if stop_at_first:
            return out, certain
        i += 1
    return out, certain


def cluster_has(args: Sequence[Field], letters: str, longs: Iterable[str] = ()) -> bool:
    """Whether any short-option cluster has one of ``letters``, or any long option matches."""
    long_set = frozenset(longs)
    for f in args:
        t = f.text
        if t == "--":
            return False
        if t.startswith("--"):
            if t.split("=", 1)[0] in long_set:
                return True
        elif (
            t.startswith("-")
            and len(t) > 1
            and not t[1].isdigit()
            and any(ch in letters for ch in t[1:])
        ):
            return True
    return False


@dataclass(frozen=True)
class Spec:
    """Which options of one command take an argument.

    ``short`` lists the letters that take one (``-o FILE``, ``-oFILE``, or the
    last letter of a cluster such as ``-sSLo FILE``); ``long`` the long options
    that do (``--output FILE``; ``--output=FILE`` is always understood).
    ``old_style`` commands (tar, ar) also take a first word without a dash as a
    cluster whose letters consume the following words in order (``tar czf out.tgz``).
    """

    short: str = ""
    long: frozenset[str] = frozenset()
    old_style: bool = False
    #: Single-dash words that are whole options, not clusters (``-TT``, ``-exec``).
    words: frozenset[str] = frozenset()


def spec(short: str = "", long: str = "", *, old_style: bool = False, words: str = "") -> Spec:
    """A :class:`Spec` from a string of letters and a space-separated list of long options."""
    return Spec(short, frozenset(long.split()), old_style, frozenset(words.split()))


@dataclass
class Parsed:
    """A command's words, sorted: options with their values, flags, operands."""

    #: (option, value) for options that take an argument, in order: ``("-o", FILE)``,
    #: ``("--output", FILE)``; a whole-word option from ``Spec.words`` keeps its name.
    values: list[tuple[str, Field]]
    #: Short letters and long options seen without a value (``"r"``, ``"--recursive"``).
    flags: set[str]
    operands: list[Field]

    def has(self, *names: str) -> bool:
        """Whether any of ``names`` (letters like ``"r"`` or ``"--long"``) was given."""
        return any(n in self.flags for n in names) or any(o in names for o, _ in self.values)

    def get(self, *names: str) -> list[Field]:
        """The values of the options ``names`` (``"-o"``, ``"--output"``), in order."""
        return [v for o, v in self.values if o in names]


def parse_options(args: Sequence[Field], table: Spec) -> Parsed:
    """Sort ``args`` into options, their values and operands, the way getopt does
    (GNU style: options may follow operands until ``--``)."""
    values: list[tuple[str, Field]] = []
    flags: set[str] = set()
    operands: list[Field] = []
    i, n = 0, len(args)
    first = True
    while i < n:
        f = args[i]
        t = f.text
        i += 1
        if f.dynamic and t.startswith(UNKNOWN):
            operands.append(f)
            first = False
            continue
        if t == "--":
            operands.extend(args[i:])
            break
        if t.startswith("--") and len(t) > 2:
            if "=" in t:
                name, value = t.split("=", 1)
                values.append((name, Field(value, f.raw, f.dynamic)))
            elif t in table.long and i < n:
                values.append((t, args[i]))
                i += 1
            else:
                flags.add(t)
            first = False
            continue
        if t in table.words:
            if i < n:
                values.append((t, args[i]))
                i += 1
            first = False
            continue
        old = first and table.old_style and t and not t.startswith("-") and t.isalpha()
        if (t.startswith("-") and len(t) > 1) or old:
            letters = t if old else t[1:]
            for j, ch in enumerate(letters):
                if ch in table.short:
                    rest = letters[j + 1 :]
                    if rest and not old:
                        values.append(("-" + ch, Field(rest, f.raw, f.dynamic)))
                    elif i < n:
                        values.append(("-" + ch, args[i]))
                        i += 1
                    if not old:
                        break
                else:
                    flags.add(ch)
            first = False
            continue
        operands.append(f)
        first = False
    return Parsed(values, flags, operands)
