"""`hermes sessions`: list, search, show, export and delete past conversations.

Everything reads the state store (``state.db``); commands that only read do
not create it, so ``hermes sessions`` on a fresh install just says there is
nothing yet. A session is named by its id or any unique start of it
(``hermes sessions show 20261125-09``). Deleting asks first on a terminal and
refuses without one unless ``--yes`` says the caller means it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from hermes_agent import home
from hermes_agent.cli.common import warn
from hermes_agent.errors import EXIT_FAILURE, UsageError
from hermes_agent.fsutil import atomic_write
from hermes_agent.state.db import Session, StateDB, StoredMessage, fts_query

TOOL_RESULT_LINES = 20
TOOL_ARGS_CHARS = 200
DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_FORMS = (
    "a whole number followed by m (minutes), h (hours), d (days) or w (weeks), "
    "e.g. 90m, 12h, 30d, 2w"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=cmd_list, limit=20, source=None)
    fmt = parser.formatter_class
    sub = parser.add_subparsers(dest="sessions_command", metavar="ACTION", title="actions")

    list_ = sub.add_parser(
        "list", help="recent sessions, newest first (the default)", formatter_class=fmt
    )
    list_.add_argument("--limit", type=int, default=20, metavar="N", help="how many (default 20)")
    _add_source(list_)
    list_.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="print a session's transcript", formatter_class=fmt)
    show.add_argument("id", metavar="ID", help="session id or a unique start of one")
    show.set_defaults(handler=cmd_show)

    search = sub.add_parser(
        "search",
        help="full-text search over every message",
        description="Find messages (compacted ones too) containing every word. An argument "
        "with spaces is a phrase whose words must appear in order: "
        'hermes sessions search "exit code" docker. word* matches words starting with word.',
        formatter_class=fmt,
    )
    search.add_argument("query", nargs="+", metavar="QUERY", help="words or quoted phrases")
    search.add_argument("--limit", type=int, default=20, metavar="N", help="most hits (20)")
    _add_source(search)
    search.set_defaults(handler=cmd_search)

    export = sub.add_parser(
        "export", help="write a session as Markdown or JSON lines", formatter_class=fmt
    )
    export.add_argument("id", metavar="ID", help="session id or a unique start of one")
    export.add_argument(
        "--format",
        choices=("md", "jsonl"),
        default="md",
        help="md: a readable transcript (default); jsonl: metadata then one message a line, "
        "compacted ones included",
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write FILE (mode 0600) instead of stdout"
    )
    export.set_defaults(handler=cmd_export)

    delete = sub.add_parser("delete", help="delete one session", formatter_class=fmt)
    delete.add_argument("id", metavar="ID", help="session id or a unique start of one")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=cmd_delete)

    prune = sub.add_parser(
        "prune", help="delete sessions not updated for a while", formatter_class=fmt
    )
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 90m, 12h, 30d, 2w: sessions not updated for that long are deleted",
    )
    _add_source(prune)
    prune.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    prune.set_defaults(handler=cmd_prune)

    reindex = sub.add_parser(
        "reindex",
        help="check the search index and rebuild it from the stored messages",
        description="Check the full-text index of state.db and rebuild it from the stored "
        "messages (which it never changes). Safe while the gateway runs. A missing or "
        "unreadable index is also rebuilt by itself when state.db is opened.",
        formatter_class=fmt,
    )
    reindex.set_defaults(handler=cmd_reindex)


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        metavar="S",
        help="only this source: cli, cron, acp, gateway (all platforms) or gateway:telegram...",
    )


# --- opening the store ----------------------------------------------------------


def _open_existing() -> StateDB | None:
    """The store, or None when it does not exist yet: reading must not create it."""
    if not home.state_db_path().exists():
        return None
    db = StateDB()
    if db.repaired_index is not None:
        warn(f"{db.path}: {db.repaired_index}; it was rebuilt from the stored messages")
    return db


def _open_session(key: str) -> tuple[StateDB, Session]:
    """The open store and the session ``key`` (an id or a unique start of one) names."""
    db = _open_existing()
    if db is None:
        raise UsageError(f"no session matches {key.strip()!r} (there are no sessions yet)")
    try:
        return db, db.resolve(key)
    except BaseException:
        db.close()
        raise


# --- formatting -----------------------------------------------------------------


def _redacted(
    session: Session, records: list[StoredMessage]
) -> tuple[Session, list[StoredMessage]]:
    """The session and its messages as they may be shown or exported: redacted again.

    state.db holds them redacted already, but with the secrets known when they
    were stored: a key added since, or a spelling an older hermes missed, is
    caught here, on the data before it is rendered or serialised.
    """
    from hermes_agent.redact import redact, redact_message

    title = redact(session.title) if session.title else session.title
    return dataclasses.replace(session, title=title), [
        dataclasses.replace(record, message=redact_message(record.message)) for record in records
    ]


def short_time(timestamp: float, now: float | None = None) -> str:
    """Local time, short: ``Nov 25 09:02`` this year, ``2024-11-25`` before."""
    moment = time.localtime(timestamp)
    if moment.tm_year == time.localtime(now).tm_year:
        return f"{_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d} {time.strftime('%H:%M', moment)}"
    return time.strftime("%Y-%m-%d", moment)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _count(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(rows: list[list[str]], right: Iterable[int] = ()) -> list[str]:
    """Rows padded into columns two spaces apart; the last column is never padded."""
    aligned = set(right)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in aligned else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def _text_of(content: Any) -> str:
    """Readable text of a message's content: a string, content parts, or anything JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part.get("text", "") if isinstance(part, dict) and part.get("type") == "text" else ""
            for part in content
        ]
        if any(parts):
            return "\n".join(part for part in parts if part)
    return json.dumps(content, ensure_ascii=False)


def _tool_names(records: list[StoredMessage]) -> dict[str, str]:
    """tool_call_id -> tool name, so a tool result can say which tool produced it."""
    names: dict[str, str] = {}
    for record in records:
        for call in _calls(record.message):
            if isinstance(call.get("id"), str):
                names[call["id"]] = str(_function(call).get("name", "?"))
    return names


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    return [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []


def _function(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    return function if isinstance(function, dict) else {}


def _arguments_text(function: dict[str, Any]) -> str:
    arguments = function.get("arguments", "")
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _result_name(message: dict[str, Any], names: dict[str, str]) -> str:
    name = message.get("name")
    if isinstance(name, str) and name:
        return name
    return names.get(str(message.get("tool_call_id")), "")


# --- list -----------------------------------------------------------------------


#: Controls (but tab and newline), DEL, C1 and bidi overrides: a transcript holds what chat
#: users, web pages and MCP servers wrote, whose escape sequences must not drive the
#: terminal (a clipboard write, a line hidden or redrawn). `export` keeps the raw text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    db = _open_existing()
    if db is None:
        print("no sessions yet")
        return 0
    with db:
        sessions = db.list_sessions(limit=args.limit, source=args.source)
    if not sessions:
        print("no sessions yet" if args.source is None else f"no sessions from {args.source}")
        return 0
    from hermes_agent.redact import redact

    now = time.time()
    rows = [["ID", "UPDATED", "SOURCE", "MODEL", "MSGS", "TOKENS", "TITLE"]]
    for s in sessions:
        rows.append(
            [
                s.id,
                short_time(s.updated_at, now),
                s.source,
                s.model or "-",
                str(s.message_count),
                _count(s.total_tokens),
                _visible(redact(s.title or "")),
            ]
        )
    print("\n".join(_table(rows, right=(4, 5))))
    return 0


# --- show -----------------------------------------------------------------------


def _summary(session: Session) -> str:
    parts = [
        f"source {session.source}",
        f"model {session.model or '-'}",
        f"cwd {session.cwd or '-'}",
        f"created {short_time(session.created_at)}",
        f"updated {short_time(session.updated_at)}",
        f"{session.message_count} messages",
        f"{_count(session.input_tokens)} in / {_count(session.output_tokens)} out tokens",
    ]
    if session.cost_usd:
        parts.append(f"${session.cost_usd:.4f}")
    if session.parent_id:
        parts.append(f"from {session.parent_id} ({session.parent_kind or 'fork'})")
    return " · ".join(parts)


def _indented(text: str, max_lines: int, indent: str = "    ") -> list[str]:
    lines = text.splitlines() or [""]
    shown = [indent + line for line in lines[:max_lines]]
    if len(lines) > max_lines:
        more = len(lines) - max_lines
        shown.append(f"{indent}… {more} more line{'s' if more != 1 else ''}")
    return shown


def render_transcript(session: Session, records: list[StoredMessage]) -> str:
    """The transcript ``show`` prints: role headers, tool calls, results cut short."""
    out = [f"{session.id}  {session.title or '(untitled)'}", _summary(session)]
    names = _tool_names(records)
    for record in records:
        message = record.message
        role = str(message.get("role", "?"))
        label = role
        if role == "tool":
            name = _result_name(message, names)
            label = f"tool {name}".rstrip()
        flags = " (undone)" if record.undone else " (compacted)" if record.compacted else ""
        if record.provider:
            flags += f" · {record.model} via {record.provider}"
        out += ["", f"── {label} · {short_time(record.created_at)}{flags} ──"]
        text = _text_of(message.get("content"))
        if role in ("tool", "system"):
            out += _indented(text, TOOL_RESULT_LINES)
        elif text:
            out.append(text.rstrip("\n"))
        for call in _calls(message):
            function = _function(call)
            arguments = _clip(_one_line(_arguments_text(function)), TOOL_ARGS_CHARS)
            out.append(f"  → {function.get('name', '?')}({arguments})")
    if not records:
        out += ["", "(no messages)"]
    return "\n".join(out) + "\n"


def cmd_show(args: argparse.Namespace) -> int:
    db, session = _open_session(args.id)
    with db:
        records = db.message_records(session.id, include_compacted=True)
    sys.stdout.write(_visible(render_transcript(*_redacted(session, records))))
    return 0


# --- search ---------------------------------------------------------------------


def search_text(words: list[str]) -> str:
    """The query from the command line: one argument with spaces is a phrase.

    ``hermes sessions search "exit code"`` reaches us as one argument; the
    user clearly meant the phrase, not two separate words.
    """
    terms = []
    for word in words:
        if '"' not in word and len(word.split()) > 1:
            word = f'"{word}"'
        terms.append(word)
    return " ".join(terms)


def cmd_search(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    query = search_text(args.query)
    if not fts_query(query):
        raise UsageError(f"nothing to search for in {query!r}: give a word or a quoted phrase")
    db = _open_existing()
    if db is None:
        print("no matches (there are no sessions yet)")
        return 0
    with db:
        hits = db.search(query, limit=args.limit, source=args.source)
    if not hits:
        print(f"no matches for {query}")
        return 0
    from hermes_agent.redact import redact

    rows = [["ID", "DATE", "ROLE", "MATCH"]]
    for hit in hits:
        role = hit.role + (" (compacted)" if hit.compacted else "")
        date = time.strftime("%Y-%m-%d", time.localtime(hit.created_at))
        rows.append([hit.session_id, date, role, _visible(_one_line(redact(hit.snippet)))])
    print("\n".join(_table(rows)))
    return 0


# --- export ---------------------------------------------------------------------


def _fence(text: str, info: str = "") -> list[str]:
    """A code fence longer than any backtick run inside ``text``, so it cannot end early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + info, text.rstrip("\n"), ticks]


def _pretty_arguments(function: dict[str, Any]) -> tuple[str, str]:
    text = _arguments_text(function)
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), "json"
    except ValueError:
        return text, ""


def export_markdown(session: Session, records: list[StoredMessage]) -> str:
    """A Markdown transcript: a metadata header, then each message under its role."""
    out = [f"# {session.title or 'Session ' + session.id}", ""]
    meta = [
        ("Session", f"`{session.id}`"),
        ("Source", session.source),
        ("Model", session.model or "-"),
        ("Working directory", f"`{session.cwd}`" if session.cwd else "-"),
        ("Created", _iso(session.created_at)),
        ("Updated", _iso(session.updated_at)),
        (
            "Tokens",
            f"{session.input_tokens} in, {session.output_tokens} out, "
            f"{session.cache_read_tokens} cache read, {session.cache_write_tokens} cache write",
        ),
        ("Cost", f"${session.cost_usd:.4f}"),
    ]
    if session.parent_id:
        meta.append(("Parent", f"`{session.parent_id}` ({session.parent_kind or 'fork'})"))
    out += [f"- **{key}:** {value}" for key, value in meta]
    names = _tool_names(records)
    for record in records:
        message = record.message
        role = str(message.get("role", "?"))
        heading = role.capitalize()
        if role == "tool":
            name = _result_name(message, names)
            heading = f"Tool result{': ' + name if name else ''}"
            if message.get("tool_call_id"):
                heading += f" (`{message['tool_call_id']}`)"
        if record.compacted:
            heading += " *(undone)*" if record.undone else " *(compacted)*"
        out += ["", f"## {heading}", ""]
        text = _text_of(message.get("content"))
        if role == "tool":
            out += _fence(text)
        elif text:
            out.append(text.rstrip("\n"))
        for call in _calls(message):
            function = _function(call)
            arguments, info = _pretty_arguments(function)
            call_id = f" (`{call['id']}`)" if call.get("id") else ""
            if out[-1]:
                out.append("")
            out += [f"**Tool call** `{function.get('name', '?')}`{call_id}:", ""]
            out += _fence(arguments, info)
    return "\n".join(out) + "\n"


def _answered_by(record: StoredMessage) -> dict[str, object]:
    """Which provider and model wrote a reply, and its cost (fallback providers vary it)."""
    return {"provider": record.provider, "model": record.model, "cost_usd": record.cost_usd}


def export_jsonl(session: Session, records: list[StoredMessage]) -> str:
    """Metadata on the first line, then one message a line, compacted ones flagged.

    The message itself sits under ``"message"`` exactly as stored, so the
    export can be read back without guessing which keys were ours.
    """
    lines = [{"type": "session", **dataclasses.asdict(session)}]
    for record in records:
        lines.append(
            {
                "type": "message",
                "id": record.id,
                "seq": record.seq,
                "created_at": record.created_at,
                "compacted": record.compacted,
                "undone": record.undone,
                **(_answered_by(record) if record.provider else {}),
                "message": record.message,
            }
        )
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def cmd_export(args: argparse.Namespace) -> int:
    db, session = _open_session(args.id)
    with db:
        records = db.message_records(session.id, include_compacted=True)
    render = export_jsonl if args.format == "jsonl" else export_markdown
    text = render(*_redacted(session, records))
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    target = Path(args.output).expanduser()
    if target.is_dir():
        raise UsageError(f"-o {args.output}: is a directory; give a file name")
    atomic_write(target, text, mode=0o600)
    print(f"wrote {len(records)} messages of {session.id} to {target}")
    return 0


# --- delete / prune -------------------------------------------------------------


def _confirm(question: str, what: str) -> bool:
    """Ask y/N on a terminal; without one, refuse: silence must not delete anything."""
    if not sys.stdin.isatty():
        raise UsageError(f"not deleting {what}: no terminal to confirm on; add --yes to delete")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:
        answer = ""
    return answer in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> int:
    db, session = _open_session(args.id)
    with db:
        label = f"{session.id} ({session.title or 'untitled'}, {session.message_count} messages)"
        if not args.yes and not _confirm(f"Delete session {label}?", session.id):
            print("hermes: nothing deleted", file=sys.stderr)
            return EXIT_FAILURE
        if not db.delete_session(session.id):
            raise UsageError(f"session {session.id} was deleted meanwhile")
        _prune_images(db)
    print(f"deleted session {session.id}")
    return 0


def _prune_images(db: StateDB) -> None:
    """Remove stored images that only deleted sessions referred to."""
    from hermes_agent import images

    removed, freed = images.prune(db)
    if removed:
        print(f"removed {removed} stored image{'s' if removed != 1 else ''} ({freed // 1024} KB)")


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m`` or ``2w``; anything else is a UsageError."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match is None or int(match.group(1)) == 0:
        raise UsageError(f"--older-than {text!r}: expected {DURATION_FORMS}")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def cmd_prune(args: argparse.Namespace) -> int:
    seconds = parse_duration(args.older_than)
    span = args.older_than.strip()
    scope = f" from {args.source}" if args.source else ""
    db = _open_existing()
    if db is None:
        print(f"no sessions{scope} older than {span}")
        return 0
    with db:
        count = db.prune(seconds, args.source, dry_run=True)
        if count == 0:
            print(f"no sessions{scope} older than {span}")
            return 0
        plural = "s" if count != 1 else ""
        question = f"Delete {count} session{plural}{scope} not updated for {span}?"
        if not args.yes and not _confirm(question, f"{count} session{plural}"):
            print("hermes: nothing deleted", file=sys.stderr)
            return EXIT_FAILURE
        deleted = db.prune(seconds, args.source)
        _prune_images(db)
    print(f"deleted {deleted} session{'s' if deleted != 1 else ''}{scope} older than {span}")
    return 0


# --- reindex --------------------------------------------------------------------


def cmd_reindex(args: argparse.Namespace) -> int:
    db = _open_existing()
    if db is None:
        print("nothing to index (there are no sessions yet)")
        return 0
    with db:
        at_open = db.repaired_index  # Already rebuilt when it was opened (and said so).
        found, count = db.reindex()
    found = found or at_open
    before = f"found: {found}; " if found else "the index was sound; "
    print(f"{before}rebuilt the search index of {count} message{'s' if count != 1 else ''}")
    return 0
