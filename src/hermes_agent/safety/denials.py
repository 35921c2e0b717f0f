"""A "no" holds for the rest of the turn, whatever route the agent tries next.

When the user denies a file write (or nobody could approve it), or denies a
command, the model may try the same effect another way: ``write_file x``
denied, then ``echo ... > x`` in the terminal (which the classifier calls
safe: the workspace is writable), a Python one-liner, a script it writes
first, an MCP server's write tool. Matching those routes one by one is a
losing game, so this module works on the effect, at the gate:

- Every denial records the files it protected (a denied write's file; the
  existing files a denied command names), with a snapshot of their content.
- For the rest of the turn (:func:`new_turn` starts a turn), the file guard
  refuses writes to them, and the command gate refuses a command that names
  one of them (after the classifier's own word evaluation) unless all it
  runs are plain readers; the other commands that need approval are asked
  again, without "always" or the allow-list, the question saying what was
  denied.
- After every tool call in that turn (:func:`undo_changes`), a protected file
  that changed anyway is put back from its snapshot, through the same
  no-symlink writes as the file tools, and the model is told. That is what
  makes the denial hold for routes nothing foresaw: whatever wrote the file,
  the turn cannot keep the effect.

The state lives in the session's ``ToolContext.state``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_KEY = "approvals.denied"
#: Files larger than this are protected by refusal only (no snapshot to put back).
MAX_SNAPSHOT = 8 << 20
#: Most bytes of copies one turn keeps: a denial without anyone to ask (gateway, cron)
#: is automatic and repeatable, and each copy is held in memory and read again after
#: every tool call. Past this, a file is protected by refusal only.
MAX_TOTAL_SNAPSHOT = 64 << 20
#: At most this many files of one denied command are snapshotted.
MAX_FILES = 200
#: Programs that only read their arguments: naming a protected file is harmless.
READERS = frozenset(
    {
        "cat",
        "head",
        "tail",
        "less",
        "more",
        "wc",
        "grep",
        "rg",
        "diff",
        "cmp",
        "ls",
        "stat",
        "file",
        "md5sum",
        "sha256sum",
        "sha1sum",
        "nl",
        "od",
        "xxd",
        "hexdump",
    }
)
_ABSENT = b"\0hermes:absent\0"


@dataclass
class _Turn:
    #: Real path -> content when denied (``_ABSENT``: it did not exist; None: too big).
    files: dict[str, bytes | None] = field(default_factory=dict)
    #: What was denied, for the messages.
    what: list[str] = field(default_factory=list)


def new_turn(state: dict[str, Any], depth: int = 0) -> None:
    """A new user message: earlier denials no longer bind. A sub-agent's run (depth > 0)
    is part of its parent's turn and keeps the denials it inherited."""
    if depth == 0:
        state.pop(STATE_KEY, None)


def _turn(state: dict[str, Any]) -> _Turn:
    turn = state.get(STATE_KEY)
    if not isinstance(turn, _Turn):
        turn = _Turn()
        state[STATE_KEY] = turn
    return turn


def active(state: dict[str, Any]) -> bool:
    """Whether something was denied in this turn."""
    turn = state.get(STATE_KEY)
    return isinstance(turn, _Turn) and bool(turn.what)


#: What a sub-agent shares with its parent: the turn's denials (one record, so a "no"
#: binds both ways), and how the session reaches the user's files and terminal.
INHERITED = (STATE_KEY, "files.review_writes", "files.editor", "terminal.runner")


def inherit(parent: dict[str, Any], child: dict[str, Any]) -> None:
    """Give a sub-agent's tool state what it must share with its parent's (delegate)."""
    _turn(parent)  # Created now, so the child's denials are the parent's too.
    for key in INHERITED:
        if key in parent:
            child[key] = parent[key]


def _snapshot(path: str) -> bytes | None:
    """The content at ``path`` reached without following any symlink on the way (a
    directory on it swapped for a link leads nowhere: None, never the link's target)."""
    from hermes_agent.tools import pinned

    target = Path(path)
    try:
        with pinned.directory(target.parent) as parent:
            info = os.stat(target.name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return _ABSENT
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SNAPSHOT:
        return None
    try:
        return pinned.read_bytes(target)[0]
    except OSError:
        return None


def _protect(turn: _Turn, path: str) -> None:
    if path not in turn.files and len(turn.files) < MAX_FILES * 4:
        kept = sum(len(v) for v in turn.files.values() if v is not None)
        room = MAX_TOTAL_SNAPSHOT - kept
        try:
            size = os.lstat(path).st_size
        except OSError:
            size = 0
        if size > room:
            turn.files[path] = None  # No room for a copy: protected by refusal only.
            return
        snapshot = _snapshot(path)
        if snapshot is not None and len(snapshot) > room:
            snapshot = None  # Grew since the size was looked at.
        turn.files[path] = snapshot


def record_path(state: dict[str, Any], real: Path | str, what: str) -> None:
    """The user denied writing ``real`` (resolved path)."""
    turn = _turn(state)
    _protect(turn, os.path.realpath(real))
    turn.what.append(what)


def _named(words: tuple[str, ...], cwd: str) -> list[str]:
    """The resolved paths of the words that look like paths (existing or not)."""
    found: list[str] = []
    for word in words[1:]:
        candidates = [word]
        if word.startswith("-") and "=" in word:
            candidates = [word.split("=", 1)[1]]
        for candidate in candidates:
            if not candidate or candidate.startswith("-") or "\0" in candidate:
                continue
            expanded = os.path.expanduser(candidate)
            full = expanded if os.path.isabs(expanded) else os.path.join(cwd, expanded)
            found.append(os.path.realpath(full))
    return found


def record_command(state: dict[str, Any], verdict: Any, cwd: str) -> None:
    """The user denied a command: protect the files it names (and what is under them)."""
    turn = _turn(state)
    turn.what.append(f"the command `{verdict.command[:200]}`")
    count = 0
    for argv in verdict.commands:
        for path in _named(tuple(argv), cwd):
            if os.path.isdir(path) and not os.path.islink(path):
                for root, dirs, files in os.walk(path):
                    dirs[:] = [d for d in dirs if not d.startswith(".git")]
                    for name in files:
                        _protect(turn, os.path.join(root, name))
                        count += 1
                        if count >= MAX_FILES:
                            return
            elif os.path.exists(path) or os.path.islink(path):
                _protect(turn, path)
                count += 1
            if count >= MAX_FILES:
                return


def _describe(turn: _Turn) -> str:
    return "; ".join(dict.fromkeys(turn.what)) or "an earlier action"


def path_refusal(state: dict[str, Any], real: Path | str) -> str | None:
    """Why a write to ``real`` is refused in this turn (a denied write to it), or None."""
    turn = state.get(STATE_KEY)
    if not isinstance(turn, _Turn):
        return None
    key = os.path.realpath(real)
    if key in turn.files:
        return (
            f"refused: in this turn the user denied {_describe(turn)}, which protects {key}. "
            "A denial holds for every way of making the same change; ask the user how they "
            "want to proceed."
        )
    return None


def command_refusal(state: dict[str, Any], verdict: Any, cwd: str) -> str | None:
    """Why a command is refused in this turn: it names a protected file and does more
    than read it. None when it may go on (to the usual gate)."""
    turn = state.get(STATE_KEY)
    if not isinstance(turn, _Turn) or not turn.files:
        return None
    from hermes_agent.safety.words import canonical_name

    # The classifier's evaluated words, and the raw command's tokens: redirection
    # targets (``> notes.txt``) are not among a sub-command's words.
    groups = [tuple(argv) for argv in verdict.commands if argv]
    try:
        import shlex

        lexer = shlex.shlex(verdict.command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        groups.append(("", *lexer))
    except ValueError:
        pass
    writes = any(ch in verdict.command for ch in "<>|;&`$")
    for argv in groups:
        hits = [p for p in _named(argv, cwd) if p in turn.files or _under(p, turn)]
        if not hits:
            continue
        if argv[0] and canonical_name(argv[0]) in READERS and not writes:
            continue
        if not argv[0] and not writes:
            continue  # The raw tokens of a plain command: its own words decided above.
        return (
            f"refused: in this turn the user denied {_describe(turn)}; this command would act "
            f"on {hits[0]}, which that denial protects. A denial holds for every route to the "
            "same effect: do not try another way; ask the user how they want to proceed."
        )
    return None


def _strings(value: Any, out: list[str], limit: int = 1000) -> None:
    if len(out) >= limit:
        return
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(key, out, limit)
            _strings(item, out, limit)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out, limit)


def payload_refusal(state: dict[str, Any], payload: str, cwd: str) -> str | None:
    """Why an action that is not a command (an MCP tool call) is refused in this turn:
    one of its arguments names a file a denial protects. A file too big to put back
    afterwards is protected by this refusal alone, so the refusal must cover every
    tool that can write, including a server's own filesystem tools."""
    turn = state.get(STATE_KEY)
    if not isinstance(turn, _Turn) or not turn.files or not payload:
        return None
    import json

    values: list[str] = []
    try:
        _strings(json.loads(payload), values)
    except ValueError:
        values.append(payload)
    words: list[str] = []
    for value in values:
        for line in value.splitlines() or [value]:
            text = line.strip()
            if text.startswith("file://"):
                from urllib.parse import unquote, urlsplit

                text = unquote(urlsplit(text).path)
            if text and len(text) < 4096:
                words.append(text)
            # A path inside a longer text (a command a server runs: "cat x > notes.txt").
            words.extend(w.strip("<>|&;'\"()`") for w in text.split()[:200] if w != text)
    for path in _named(("", *words[:5000]), cwd):
        if path in turn.files or _under(path, turn):
            return (
                f"refused: in this turn the user denied {_describe(turn)}; this action names "
                f"{path}, which that denial protects. A denial holds for every route to the "
                "same effect: do not try another way; ask the user how they want to proceed."
            )
    return None


def _under(path: str, turn: _Turn) -> bool:
    prefix = path.rstrip("/") + "/"
    return any(p.startswith(prefix) for p in turn.files)


def question_note(state: dict[str, Any]) -> str:
    """A line for approval questions asked after a denial in the same turn."""
    turn = state.get(STATE_KEY)
    if not isinstance(turn, _Turn) or not turn.what:
        return ""
    return f"\nNote: earlier in this turn you denied {_describe(turn)}."


def _put_back(path: str, content: bytes) -> None:
    """Put ``content`` back at ``path`` (or remove what was made there). This runs in
    hermes, unconfined: every step goes through the directory reached from ``/``
    without following a symlink, so a directory on the way swapped for a link to
    HERMES_HOME or the user's files makes it fail (PathChanged), never act there."""
    from hermes_agent.tools import pinned

    target = Path(path)
    with contextlib.suppress(FileNotFoundError), pinned.directory(target.parent) as parent:
        info = os.stat(target.name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode) or (content == _ABSENT and stat.S_ISREG(info.st_mode)):
            # A link put in its place: removed, never followed; a new file: removed.
            os.unlink(target.name, dir_fd=parent)
    if content == _ABSENT:
        return
    pinned.write_atomic(target, content)


def undo_changes(state: dict[str, Any]) -> list[str]:
    """Put back every protected file that changed since its denial; say which."""
    turn = state.get(STATE_KEY)
    if not isinstance(turn, _Turn):
        return []
    undone: list[str] = []
    for path, before in turn.files.items():
        if before is None:
            continue
        now = _snapshot(path)
        if now == before:
            continue
        try:
            _put_back(path, before)
        except OSError as exc:
            undone.append(f"{path} changed and could not be put back ({exc})")
            continue
        undone.append(f"{path} was put back as it was before the denial")
    return undone


def undo_note(state: dict[str, Any]) -> str:
    """:func:`undo_changes`, as a note for the model ('' when nothing changed)."""
    undone = undo_changes(state)
    if not undone:
        return ""
    return (
        "\n[hermes: the user denied this change earlier in this turn; a later action made it "
        "anyway, so it was undone: " + "; ".join(undone) + ". Do not try again.]"
    )
