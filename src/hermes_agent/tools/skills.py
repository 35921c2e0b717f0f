"""The ``skills`` toolset: list skills, read one on demand, and write the agent's own.

The system prompt carries only the index (names and descriptions, see
:func:`hermes_agent.skills.loader.prompt_section`); ``skill_view`` loads a
body, or one of the skill's supporting files, when a task calls for it.

``skill_manage`` lets the agent keep what it learned: it creates, rewrites,
patches and deletes *user* skills in ``HERMES_HOME/skills`` (and their
supporting files). Bundled skills are read-only; to improve one, the agent
creates a user skill of the same name, which replaces it. Every write is
validated (a SKILL.md that would not load is refused), scanned for prompt
injection and secrets, and by default approved by the user
(``skills.write_approval``); in a turn that read untrusted content the user is
asked even when that is off (``memory.write_approval``). Nobody to ask means no.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from hermes_agent import home
from hermes_agent.skills.loader import (
    SKILL_FILE,
    Catalog,
    Skill,
    SkillError,
    catalog_for,
    name_problem,
    parse_skill,
)
from hermes_agent.tools import write_guard
from hermes_agent.tools.registry import Handler, Tool, ToolContext, ToolError, ToolOutput

MAX_VIEW_BYTES = 100_000
MAX_WRITE_CHARS = 100_000
ACTIONS = ("create", "edit", "patch", "delete", "write_file", "remove_file")


# --- finding a skill and its files ---------------------------------------------------


def _unknown(name: str, catalog: Catalog) -> ToolError:
    if name in catalog.disabled:
        return ToolError(f"the skill {name!r} is disabled (skills.disabled)")
    close = difflib.get_close_matches(name, list(catalog.skills), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ToolError(f"no skill named {name!r}{hint} (skills_list shows every skill)")


def _find(name: str, ctx: ToolContext) -> Skill:
    catalog = catalog_for(ctx.config)
    skill = catalog.get(name)
    if skill is None:
        raise _unknown(name, catalog)
    return skill


def _relative(raw: str) -> PurePosixPath:
    """A supporting file's path inside a skill, refused when it could leave the skill."""
    path = PurePosixPath(raw.strip())
    if not raw.strip() or path.is_absolute() or ".." in path.parts:
        raise ToolError(f"file {raw!r}: give a path relative to the skill's directory")
    if any(part.startswith(".") for part in path.parts):
        raise ToolError(f"file {raw!r}: hidden files are not part of a skill")
    return path


def _inside(directory: Path, relative: PurePosixPath) -> Path:
    target = directory / relative
    if not target.resolve().is_relative_to(directory.resolve()):
        raise ToolError(f"file {relative}: leads outside the skill's directory")
    return target


def _label(skill: Skill) -> str:
    if skill.source == "bundled":
        return "bundled, read-only"
    return "user skill, replaces the bundled one" if skill.overrides else "user skill"


# --- skills_list and skill_view ----------------------------------------------------------


async def skills_list(args: dict[str, Any], ctx: ToolContext) -> str:
    catalog = catalog_for(ctx.config)
    tag = (args.get("tag") or "").strip().lower()
    skills = [s for s in catalog.skills.values() if not tag or tag in (t.lower() for t in s.tags)]
    lines: list[str] = []
    if skills:
        lines.append(
            f"{len(skills)} skill{'s' if len(skills) != 1 else ''}; read one with skill_view(name):"
        )
        for skill in skills:
            tags = f"; tags: {', '.join(skill.tags)}" if skill.tags else ""
            lines.append(f"- {skill.name} ({_label(skill)}{tags}): {skill.description}")
    elif tag:
        lines.append(f"no skill is tagged {tag!r}")
    else:
        lines.append("no skills are installed; create one with skill_manage(action=create)")
    if catalog.disabled:
        lines.append(f"Disabled by skills.disabled: {', '.join(catalog.disabled)}")
    if catalog.problems:
        lines.append("Could not be loaded (fix or remove them):")
        lines.extend(f"- {problem}" for problem in catalog.problems)
    return "\n".join(lines)


def _read_file(path: Path, shown: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_VIEW_BYTES + 1)
    except FileNotFoundError:
        raise ToolError(f"{shown} does not exist") from None
    except IsADirectoryError:
        raise ToolError(f"{shown} is a directory; name a file in it") from None
    except OSError as exc:
        raise ToolError(f"cannot read {shown}: {exc.strerror or exc}") from None
    cut = len(data) > MAX_VIEW_BYTES
    data = data[:MAX_VIEW_BYTES]
    if b"\0" in data[:8192]:
        raise ToolError(f"{shown} is a binary file; only text files can be viewed")
    text = data.decode("utf-8", errors="replace")
    return text + (f"\n[... cut at {MAX_VIEW_BYTES} bytes]" if cut else "")


async def skill_view(args: dict[str, Any], ctx: ToolContext) -> str:
    skill = _find(args["name"], ctx)
    files = skill.supporting_files()
    if args.get("file"):
        relative = _relative(args["file"])
        if str(relative) == SKILL_FILE:
            return skill.text()
        target = _inside(skill.directory, relative)
        if not target.exists():
            listing = ", ".join(files) if files else "none"
            raise ToolError(
                f"skill {skill.name} has no file {relative}; its supporting files: {listing}"
            )
        return _read_file(target, f"{skill.name}/{relative}")
    try:
        body = skill.body()
    except OSError as exc:
        raise ToolError(f"cannot read {skill.path}: {exc.strerror or exc}") from None
    meta = _label(skill) + (f", version {skill.version}" if skill.version else "")
    parts = [f"# Skill: {skill.name} ({meta})", skill.description, "", body]
    if files:
        parts += [
            "",
            f"Supporting files (read one with skill_view(name={skill.name!r}, file=...)):",
            *(f"- {f}" for f in files),
        ]
    return "\n".join(parts)


# --- skill_manage ------------------------------------------------------------------


def _need(args: dict[str, Any], key: str, action: str, what: str) -> str:
    value = args.get(key)
    if value is None or (key != "new_text" and not str(value).strip()):
        raise ToolError(f"action={action} needs `{key}`: {what}")
    text = str(value)
    if len(text) > MAX_WRITE_CHARS:
        raise ToolError(f"`{key}` is {len(text)} characters; at most {MAX_WRITE_CHARS}")
    return text


def _read_for_patch(path: Path, shown: str) -> str:
    if not path.is_file():
        raise ToolError(f"{shown} does not exist")
    if path.stat().st_size > MAX_WRITE_CHARS * 4:
        raise ToolError(f"{shown} is too large to patch; rewrite it with write_file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{shown} is not UTF-8 text; it cannot be patched") from None


def _validate_skill_md(text: str, name: str) -> None:
    try:
        parse_skill(text, SKILL_FILE, expected_name=name)
    except SkillError as exc:
        raise ToolError(f"refused: the SKILL.md would not load: {exc}") from None


def _read_only(name: str, catalog: Catalog) -> ToolError:
    if name in catalog.bundled:
        return ToolError(
            f"{name!r} is a bundled skill and bundled skills are read-only; to improve it, "
            "create a user skill of the same name (action=create with its full SKILL.md, "
            "e.g. skill_view's text with your changes): it replaces the bundled one"
        )
    return ToolError(f"there is no user skill named {name!r}; create it with action=create")


def _write(path: Path, text: str, *, before: str | None = None, new: bool = False) -> None:
    """Write a skill file under the HERMES_HOME lock.

    The user may take minutes to approve, and another session (or the
    gateway) may write the same skill meanwhile: ``new`` refuses when the
    file appeared since, ``before`` when its text is no longer the one the
    change was computed from. Either way nothing is lost silently.
    """
    from hermes_agent.fsutil import atomic_write
    from hermes_agent.home_lock import home_lock

    with home_lock("skill_manage tool"):
        if new and path.exists():
            raise ToolError(f"{path} was created by another session meanwhile; not replaced")
        if before is not None and _read_for_patch(path, str(path)) != before:
            raise ToolError(
                f"{path} was changed by another session while this change waited; "
                "read it again (skill_view) and redo the change"
            )
        atomic_write(path, text, mode=0o600)


def _remove_empty_parents(path: Path, stop: Path) -> None:
    parent = path.parent
    while parent != stop and parent.is_relative_to(stop):
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


async def skill_manage(args: dict[str, Any], ctx: ToolContext) -> str:
    action, name = args["action"], args["name"]
    problem = name_problem(name)
    if problem:
        raise ToolError(problem)
    catalog = catalog_for(ctx.config)
    if name in catalog.disabled:
        raise ToolError(f"the skill {name!r} is disabled (skills.disabled); not changing it")
    directory = home.user_skill_dir(name)
    skill_md = directory / SKILL_FILE
    exists = skill_md.is_file()
    always = bool(ctx.config.get("skills.write_approval", True))
    note = (
        "\nThe system prompt's skill index changes from the next session; skill_view shows "
        "the skill as it is now."
    )

    if action == "create":
        content = _need(args, "content", action, "the whole SKILL.md (front matter and body)")
        if exists:
            raise ToolError(
                f"the user skill {name!r} already exists ({skill_md}); use action=edit or patch"
            )
        _validate_skill_md(content, name)
        write_guard.check(content, f"skill {name}")
        await write_guard.approve(
            ctx, f"create the skill {name!r}:\n{write_guard.preview(content)}", always=always
        )
        _write(skill_md, content, new=True)
        replaces = " It replaces the bundled skill of that name." if name in catalog.bundled else ""
        return f"created the skill {name!r} in {directory}.{replaces}{note}"

    if not exists:
        if action == "delete" and directory.is_dir():
            pass  # A broken leftover without SKILL.md: let the agent clean it up.
        else:
            raise _read_only(name, catalog)

    if action == "edit":
        content = _need(args, "content", action, "the whole new SKILL.md")
        _validate_skill_md(content, name)
        write_guard.check(content, f"skill {name}")
        await write_guard.approve(
            ctx, f"rewrite the skill {name!r}:\n{write_guard.preview(content)}", always=always
        )
        _write(skill_md, content)
        return f"rewrote the skill {name!r} ({skill_md}).{note}"

    if action == "patch":
        old_text = _need(args, "old_text", action, "the exact text to replace")
        new_text = _need(args, "new_text", action, "its replacement ('' deletes it)")
        relative = _relative(args.get("file") or SKILL_FILE)
        target = _inside(directory, relative)
        current = _read_for_patch(target, f"{name}/{relative}")
        count = current.count(old_text)
        if count == 0:
            raise ToolError(
                f"`old_text` does not occur in {name}/{relative}; read it with skill_view and "
                "copy the exact text (whitespace included)"
            )
        if count > 1:
            raise ToolError(
                f"`old_text` occurs {count} times in {name}/{relative}; include more of the "
                "surrounding text so that it occurs once"
            )
        updated = current.replace(old_text, new_text, 1)
        if str(relative) == SKILL_FILE:
            _validate_skill_md(updated, name)
        if new_text:
            write_guard.check(new_text, f"skill {name}")
        await write_guard.approve(
            ctx,
            f"patch {name}/{relative}, replacing:\n{write_guard.preview(old_text, 300)}\n"
            f"with:\n{write_guard.preview(new_text, 300)}",
            always=always,
        )
        _write(target, updated, before=current)
        return f"patched {name}/{relative}.{note}"

    if action == "delete":
        await write_guard.approve(
            ctx, f"delete the skill {name!r} ({directory}) with all its files?", always=always
        )
        if directory.is_symlink():
            directory.unlink()
        else:
            shutil.rmtree(directory)
        back = " The bundled skill of that name is in use again." if name in catalog.bundled else ""
        return f"deleted the skill {name!r}.{back}"

    relative = _relative(_need(args, "file", action, "the supporting file's relative path"))
    if str(relative) == SKILL_FILE:
        raise ToolError(f"{SKILL_FILE} is changed with action=edit or patch")
    target = _inside(directory, relative)

    if action == "write_file":
        if args.get("content") is None:
            raise ToolError("action=write_file needs `content`: the file's text")
        content = str(args["content"])
        if len(content) > MAX_WRITE_CHARS:
            raise ToolError(f"`content` is {len(content)} characters; at most {MAX_WRITE_CHARS}")
        if target.is_dir():
            raise ToolError(f"{name}/{relative} is a directory")
        write_guard.check(content, f"{name}/{relative}")
        await write_guard.approve(
            ctx, f"write {name}/{relative}:\n{write_guard.preview(content)}", always=always
        )
        _write(target, content)
        return f"wrote {name}/{relative} ({len(content)} characters).{note}"

    # remove_file
    if not target.is_file():
        files = ", ".join(Skill(name, "", skill_md, "user").supporting_files()) or "none"
        raise ToolError(f"skill {name} has no file {relative}; its supporting files: {files}")
    await write_guard.approve(ctx, f"delete {name}/{relative}?", always=always)
    target.unlink()
    _remove_empty_parents(target, directory)
    return f"removed {name}/{relative}."


def _wrap_os_errors(handler: Handler) -> Handler:
    """Report a failing file system call as a tool error naming the file."""

    async def run(args: dict[str, Any], ctx: ToolContext) -> str | ToolOutput:
        from hermes_agent.errors import HermesError

        try:
            result = await handler(args, ctx)
        except HermesError as exc:
            raise ToolError(str(exc)) from None
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise ToolError(f"file system error{where}: {exc.strerror or exc}") from None
        return result

    return run


TOOLS = [
    Tool(
        name="skills_list",
        toolset="skills",
        description=(
            "List the skills you have (name, where it comes from, tags, description), "
            "optionally only those with `tag`. Skills that failed to load are reported too."
        ),
        parameters={
            "type": "object",
            "properties": {"tag": {"type": "string"}},
            "additionalProperties": False,
        },
        handler=skills_list,
        read_only=True,
        parallel_safe=True,
    ),
    Tool(
        name="skill_view",
        toolset="skills",
        description=(
            "Read a skill's instructions before doing a task it covers, with the list of its "
            "supporting files; with `file` (a path from that list), read that file instead."
        ),
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "file": {"type": "string", "minLength": 1},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        handler=_wrap_os_errors(skill_view),
        read_only=True,
        parallel_safe=True,
    ),
    Tool(
        name="skill_manage",
        toolset="skills",
        description=(
            "Keep what you learn as skills (in the user's skills directory). "
            "action=create: a new skill from `content`, a whole SKILL.md: front matter "
            "`---`, `name: NAME`, `description: when to use it`, optional `tags: [...]`, `---`, "
            "then concrete steps, commands and pitfalls. action=edit: replace SKILL.md with "
            "`content`. action=patch: replace `old_text` (exactly once) with `new_text` in "
            "SKILL.md or in `file`. action=delete: remove the skill. action=write_file / "
            "remove_file: a supporting `file` (e.g. templates/x.md). Names: lower-case words "
            "joined by hyphens. Bundled skills are read-only: create a user skill of the same "
            "name to replace one. The user may be asked to approve."
        ),
        parameters={
            "type": "object",
            "properties": {
                "action": {"enum": list(ACTIONS)},
                "name": {"type": "string", "minLength": 1, "maxLength": 64},
                "content": {"type": "string"},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"},
                "file": {"type": "string"},
            },
            "required": ["action", "name"],
            "additionalProperties": False,
        },
        handler=_wrap_os_errors(skill_manage),
        read_only=False,
        parallel_safe=False,
    ),
]
