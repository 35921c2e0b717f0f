"""Option scanning: which words of a command are options, their arguments, operands.

Commands differ only in which short letters and long options take an
argument; the scanners here take that table and do the rest (clusters such
as ``-sSLo FILE``, ``--opt=value``, ``--``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hermes_agent.safety.words import Field


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
