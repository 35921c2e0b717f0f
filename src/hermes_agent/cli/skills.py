"""`hermes skills`: list, show, install and remove skills.

Skills are the user's data, so these commands work in managed mode too. The
bundled skills ship with hermes and are read-only: ``remove`` refuses them
(``skills.disabled`` hides one instead), and installing a skill with the same
name as a bundled one replaces it for the agent. ``install`` copies a directory
that holds a valid ``SKILL.md`` into ``HERMES_HOME/skills/NAME`` (NAME from its
front matter), atomically: a failed copy leaves nothing half-installed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
from pathlib import Path

from hermes_agent import home
from hermes_agent.cli.common import load_config, warn
from hermes_agent.errors import EXIT_FAILURE, HermesError, UsageError
from hermes_agent.skills.loader import (
    SKILL_FILE,
    Catalog,
    Skill,
    SkillError,
    bundled_dir,
    catalog_for,
    name_problem,
    parse_skill,
)

_COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".DS_Store")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=cmd_list)
    fmt = parser.formatter_class
    sub = parser.add_subparsers(dest="skills_command", metavar="ACTION", title="actions")

    list_ = sub.add_parser(
        "list",
        help="every skill with its source and description (the default)",
        formatter_class=fmt,
    )
    list_.set_defaults(handler=cmd_list)

    show = sub.add_parser(
        "show", help="print a skill's SKILL.md and its files", formatter_class=fmt
    )
    show.add_argument("name", metavar="NAME")
    show.set_defaults(handler=cmd_show)

    install = sub.add_parser(
        "install",
        help="copy a skill directory (holding SKILL.md) into HERMES_HOME/skills",
        formatter_class=fmt,
    )
    install.add_argument("path", metavar="PATH", help="the skill's directory (or its SKILL.md)")
    install.add_argument(
        "--force", action="store_true", help="replace an installed user skill of the same name"
    )
    install.set_defaults(handler=cmd_install)

    remove = sub.add_parser("remove", help="delete a user skill", formatter_class=fmt)
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler=cmd_remove)


def _catalog() -> Catalog:
    catalog = catalog_for(load_config())
    for problem in catalog.problems:
        warn(f"skipped a skill: {problem}")
    return catalog


def _source(skill: Skill, disabled: bool) -> str:
    if disabled:
        return "disabled"
    if skill.source == "user":
        return "override" if skill.overrides else "user"
    return "bundled"


def _columns() -> int:
    try:
        return max(60, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 100


def cmd_list(args: argparse.Namespace) -> int:
    catalog = _catalog()
    rows = [(s, False) for s in catalog.skills.values()]
    rows += [(s, True) for s in catalog.disabled.values()]
    if not rows:
        print(f"no skills: install one with `hermes skills install PATH` ({home.skills_dir()})")
        return 0
    rows.sort(key=lambda row: row[0].name)
    width = max(len("NAME"), *(len(s.name) for s, _ in rows))
    room = max(20, _columns() - width - 12)
    print(f"{'NAME':<{width}}  {'SOURCE':<8}  DESCRIPTION")
    for skill, disabled in rows:
        text = skill.description
        if len(text) > room:
            text = text[: room - 3].rstrip() + "..."
        print(f"{skill.name:<{width}}  {_source(skill, disabled):<8}  {text}")
    return 0


def _lookup(name: str, catalog: Catalog) -> tuple[Skill, bool]:
    if name in catalog.skills:
        return catalog.skills[name], False
    if name in catalog.disabled:
        return catalog.disabled[name], True
    places = [str(bundled_dir() / name), str(home.user_skill_dir(name))]
    broken = [
        p
        for p in catalog.problems
        for place in places
        if p.startswith((place + os.sep, place + ":"))
    ]
    if broken:
        raise UsageError(f"the skill {name!r} could not be loaded: {broken[0]}")
    close = difflib.get_close_matches(name, [*catalog.skills, *catalog.disabled], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (hermes skills list)"
    raise UsageError(f"no skill named {name!r}{hint}")


def cmd_show(args: argparse.Namespace) -> int:
    skill, disabled = _lookup(args.name, _catalog())
    try:
        text = skill.text()
    except OSError as exc:
        raise HermesError(f"cannot read {skill.path}: {exc.strerror or exc}") from None
    if disabled:
        warn(f"{skill.name} is disabled (skills.disabled): the agent does not see it")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    files = skill.supporting_files()
    if files:
        print(f"\nsupporting files in {skill.directory}:")
        for name in files:
            print(f"  {name}")
    return 0


def _read_source(path: Path) -> tuple[Path, str]:
    """The skill directory named by PATH and its SKILL.md text."""
    source = path.expanduser()
    if source.is_file() and source.name == SKILL_FILE:
        source = source.parent
    if not source.is_dir():
        what = "does not exist" if not source.exists() else f"is not a directory or {SKILL_FILE}"
        raise UsageError(f"{source} {what}; give a skill's directory (it holds {SKILL_FILE})")
    skill_md = source / SKILL_FILE
    if not skill_md.is_file():
        raise UsageError(f"{source} holds no {SKILL_FILE}; it is not a skill directory")
    try:
        return source, skill_md.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{skill_md}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{skill_md}: cannot read: {exc.strerror or exc}") from None


def cmd_install(args: argparse.Namespace) -> int:
    source, text = _read_source(Path(args.path))
    try:
        fields = parse_skill(text, str(source / SKILL_FILE))
    except SkillError as exc:
        raise UsageError(f"not installed: {exc}") from None
    name: str = fields["name"]
    config = load_config()
    destination = home.user_skill_dir(name)
    if destination.exists() and source.resolve() == destination.resolve():
        raise UsageError(f"{source} is already the installed skill {name!r}")
    if (destination.exists() or destination.is_symlink()) and not args.force:
        raise UsageError(
            f"a user skill named {name!r} is already installed ({destination}); "
            "add --force to replace it"
        )
    from hermes_agent.tools.write_guard import scan

    reason = scan(text)
    if reason:
        warn(f"{source / SKILL_FILE}: {reason}; installing it because you asked, check it")
    root = home.ensure_dir(home.skills_dir())
    staging = root / f".installing-{name}-{os.getpid()}"
    retired = root / f".replaced-{name}-{os.getpid()}"
    from hermes_agent.home_lock import home_lock

    try:
        shutil.copytree(source, staging, ignore=_COPY_IGNORE, ignore_dangling_symlinks=True)
        with home_lock("hermes skills install"):  # The agent's skill_manage writes here too.
            if (destination.exists() or destination.is_symlink()) and not args.force:
                raise UsageError(f"the skill {name!r} was installed meanwhile ({destination})")
            if destination.exists() or destination.is_symlink():
                os.replace(destination, retired)
            os.replace(staging, destination)
    except (OSError, shutil.Error) as exc:
        raise HermesError(f"cannot install {source} into {destination}: {exc}") from None
    finally:
        for leftover in (staging, retired):
            if leftover.is_symlink():
                leftover.unlink()
            elif leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    catalog = catalog_for(config)
    replaces = " (it replaces the bundled skill of that name)" if name in catalog.bundled else ""
    print(f"installed skill {name} into {destination}{replaces}")
    if name in catalog.disabled:
        warn(f"{name} is disabled (skills.disabled): the agent will not see it")
    return 0


def _confirm(question: str, what: str) -> bool:
    """Ask y/N on a terminal; without one, refuse: silence must not delete anything."""
    if not sys.stdin.isatty():
        raise UsageError(f"not removing {what}: no terminal to confirm on; add --yes to remove")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:
        answer = ""
    return answer in ("y", "yes")


def cmd_remove(args: argparse.Namespace) -> int:
    name: str = args.name
    problem = name_problem(name)
    if problem:
        raise UsageError(problem)
    catalog = catalog_for(load_config())
    destination = home.user_skill_dir(name)
    if not (destination.is_dir() or destination.is_symlink()):
        if name in catalog.bundled:
            raise UsageError(
                f"{name} is a bundled skill and cannot be removed; to hide it from the agent: "
                f"hermes config set skills.disabled '[{name}]'"
            )
        raise UsageError(f"no user skill named {name!r} in {home.skills_dir()}")
    if not args.yes and not _confirm(f"Remove the skill {name} ({destination})?", name):
        print("hermes: nothing removed", file=sys.stderr)
        return EXIT_FAILURE
    from hermes_agent.home_lock import home_lock

    try:
        with home_lock("hermes skills remove"):  # Not in the middle of a skill_manage write.
            if destination.is_symlink():
                destination.unlink()
            elif destination.exists():
                shutil.rmtree(destination)
    except OSError as exc:
        raise HermesError(f"cannot remove {destination}: {exc.strerror or exc}") from None
    back = "; the bundled skill of that name is used again" if name in catalog.bundled else ""
    print(f"removed skill {name}{back}")
    return 0
