"""Finding, parsing and validating skills.

Skills come from two roots, each holding one directory per skill
(``ROOT/NAME/SKILL.md``, the directory named like the skill):

1. the bundled skills: ``$HERMES_BUNDLED_SKILLS`` when set (the Nix package
   points it at the store), else ``bundled/`` next to this module, shipped in
   the wheel as package data;
2. the user's skills: ``HERMES_HOME/skills``, written by ``hermes skills
   install`` and by the agent itself (``skill_manage``). A user skill with the
   name of a bundled one replaces it: that is how a bundled skill is improved.

``SKILL.md`` starts with YAML front matter::

    ---
    name: git-workflow            # required: lower-case words joined by hyphens
    description: One sentence...  # required: when to use the skill
    tags: [git, vcs]              # optional
    version: 1.0.0                # optional
    ---
    Markdown instructions...

A skill that does not parse is reported (file and reason) and skipped; it
never stops the others from loading. ``skills.disabled`` hides skills by name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config

BUNDLED_ENV = "HERMES_BUNDLED_SKILLS"
SKILL_FILE = home.SKILL_FILE
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 1024
MAX_SKILL_BYTES = 1_000_000
#: Longest description shown in the system prompt's index (the full one in skills_list).
INDEX_DESCRIPTION_CHARS = 320
MAX_LISTED_FILES = 200
_SKIPPED_PARTS = {"__pycache__", "node_modules"}


class SkillError(Exception):
    """A skill that cannot be used; ``str(self)`` names the file (and line) and why."""


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid skill name, or None."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is longer than {MAX_NAME_LENGTH} characters"
    if not NAME_PATTERN.match(name):
        return (
            f"{name!r} is not a valid skill name: use lower-case letters and digits in words "
            "joined by single hyphens (e.g. git-workflow)"
        )
    return None


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    #: The SKILL.md file.
    path: Path
    #: "bundled" or "user".
    source: str
    tags: tuple[str, ...] = ()
    version: str | None = None
    #: A user skill that replaces a bundled skill of the same name.
    overrides: bool = False

    @property
    def directory(self) -> Path:
        return self.path.parent

    def text(self) -> str:
        """The whole SKILL.md as it is on disk now."""
        return self.path.read_text(encoding="utf-8", errors="replace")

    def body(self) -> str:
        """The instructions: SKILL.md without its front matter."""
        try:
            return split_front_matter(self.text(), str(self.path))[1].strip()
        except SkillError:
            return self.text()  # Changed on disk since it was loaded: show it as it is.

    def supporting_files(self) -> list[str]:
        """Files of the skill besides SKILL.md, as relative POSIX paths (hidden ones skipped)."""
        found: list[str] = []
        for folder, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_PARTS)
            relative = Path(folder).relative_to(self.directory)
            for name in sorted(files):
                if name.startswith(".") or (relative == Path(".") and name == SKILL_FILE):
                    continue
                found.append((relative / name).as_posix())
                if len(found) >= MAX_LISTED_FILES:
                    return found
        return found


@dataclass
class Catalog:
    """The skills a session may use, with the ones hidden by config and the broken ones."""

    skills: dict[str, Skill] = field(default_factory=dict)
    disabled: dict[str, Skill] = field(default_factory=dict)
    #: One ``path[:line]: reason`` per skill that could not be loaded.
    problems: list[str] = field(default_factory=list)
    #: Bundled skills by name, overridden or not (to tell the user what a removal restores).
    bundled: dict[str, Skill] = field(default_factory=dict)

    def get(self, name: str) -> Skill | None:
        return self.skills.get(name)


# --- parsing ---------------------------------------------------------------------


def split_front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    """The front matter mapping and the body of a SKILL.md text."""
    import yaml

    text = text.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise SkillError(
            f"{where}:1: must start with YAML front matter: a line '---', then "
            "name: and description:, then '---'"
        )
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        raise SkillError(f"{where}: the front matter is not closed by a line '---'")
    try:
        meta = yaml.safe_load("".join(lines[1:end]))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 2}" if mark is not None else ""
        raise SkillError(
            f"{where}{line}: invalid YAML in the front matter: {exc.problem or exc.context}"
        ) from None
    except yaml.YAMLError as exc:
        raise SkillError(f"{where}: invalid YAML in the front matter: {exc}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SkillError(f"{where}:2: the front matter must be a mapping (key: value lines)")
    return meta, "".join(lines[end + 1 :])


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise SkillError(f"{where}: tags must be a list of strings")
    return tuple(t.strip() for t in value if t.strip())


def parse_skill(text: str, where: str, *, expected_name: str | None = None) -> dict[str, Any]:
    """Validate a SKILL.md text; return its fields (name, description, tags, version, body).

    ``expected_name`` is the directory's name, which must match the skill's.
    """
    meta, body = split_front_matter(text, where)
    name = meta.get("name")
    if not isinstance(name, str):
        raise SkillError(f"{where}: the front matter needs name: (a string)")
    problem = name_problem(name)
    if problem:
        raise SkillError(f"{where}: {problem}")
    if expected_name is not None and name != expected_name:
        raise SkillError(f"{where}: name {name!r} does not match its directory {expected_name!r}")
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        raise SkillError(f"{where}: the front matter needs description: (one or two sentences)")
    description = " ".join(description.split())
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise SkillError(f"{where}: description is longer than {MAX_DESCRIPTION_LENGTH} characters")
    version = meta.get("version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, str | int | float):
            raise SkillError(f"{where}: version must be a string such as 1.0.0")
        version = str(version)
    if not body.strip():
        raise SkillError(f"{where}: the skill has no instructions after the front matter")
    return {
        "name": name,
        "description": description,
        "tags": _tags(meta.get("tags"), where),
        "version": version,
        "body": body,
    }


#: Parsed skills by (path, source, mtime, size, inode): every new session lists the skills
#: in its system prompt, and parsing a dozen YAML headers each time cost the gateway
#: ~50 ms a message. A changed, replaced or touched file has a new key and is read again.
_PARSED: dict[tuple[str, str, int, int, int], Skill] = {}


def load_skill(skill_md: Path, source: str) -> Skill:
    """Read and validate one SKILL.md; :class:`SkillError` says why it cannot be used."""
    try:
        st = skill_md.stat()
    except OSError:
        return _load_skill(skill_md, source)  # Reports the error.
    key = (str(skill_md), source, st.st_mtime_ns, st.st_size, st.st_ino)
    skill = _PARSED.get(key)
    if skill is None:
        skill = _load_skill(skill_md, source)
        if len(_PARSED) > 4096:  # Bounded: a long-running gateway must not grow.
            _PARSED.clear()
        _PARSED[key] = skill
    return skill


def _load_skill(skill_md: Path, source: str) -> Skill:
    where = str(skill_md)
    try:
        size = skill_md.stat().st_size
        if size > MAX_SKILL_BYTES:
            raise SkillError(f"{where}: too large ({size} bytes; at most {MAX_SKILL_BYTES})")
        text = skill_md.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SkillError(f"{where}: not UTF-8 text") from None
    except OSError as exc:
        raise SkillError(f"{where}: cannot read: {exc.strerror or exc}") from None
    fields = parse_skill(text, where, expected_name=skill_md.parent.name)
    return Skill(
        name=fields["name"],
        description=fields["description"],
        path=skill_md,
        source=source,
        tags=fields["tags"],
        version=fields["version"],
    )


# --- discovery -------------------------------------------------------------------


def bundled_dir() -> Path:
    """Where the bundled skills are: ``$HERMES_BUNDLED_SKILLS``, else the package's own."""
    raw = os.environ.get(BUNDLED_ENV, "")
    if raw:
        return Path(raw).expanduser()
    return Path(__file__).resolve().parent / "bundled"


def scan(root: Path, source: str) -> tuple[list[Skill], list[str]]:
    """Every valid skill directly under ``root`` and one problem line per broken one."""
    skills: list[Skill] = []
    problems: list[str] = []
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        if source == "bundled" and os.environ.get(BUNDLED_ENV):
            problems.append(f"{root}: {BUNDLED_ENV} names a directory that does not exist")
        return skills, problems
    except OSError as exc:
        problems.append(f"{root}: cannot list skills: {exc.strerror or exc}")
        return skills, problems
    for entry in entries:
        if entry.name.startswith(".") or entry.name in _SKIPPED_PARTS or not entry.is_dir():
            continue
        skill_md = entry / SKILL_FILE
        if not skill_md.is_file():
            problems.append(
                f"{entry}: no {SKILL_FILE} (a skill is a directory NAME/ holding {SKILL_FILE})"
            )
            continue
        try:
            skills.append(load_skill(skill_md, source))
        except SkillError as exc:
            problems.append(str(exc))
    return skills, problems


def load_catalog(disabled: Iterable[str] = ()) -> Catalog:
    """Bundled skills, then the user's (which replace bundled ones of the same name)."""
    catalog = Catalog()
    merged: dict[str, Skill] = {}
    bundled, problems = scan(bundled_dir(), "bundled")
    catalog.problems.extend(problems)
    for skill in bundled:
        merged[skill.name] = catalog.bundled[skill.name] = skill
    user, problems = scan(home.skills_dir(), "user")
    catalog.problems.extend(problems)
    for skill in user:
        if skill.name in catalog.bundled:
            skill = dataclasses.replace(skill, overrides=True)
        merged[skill.name] = skill
    hidden = set(disabled)
    for name in sorted(merged):
        target = catalog.disabled if name in hidden else catalog.skills
        target[name] = merged[name]
    return catalog


def catalog_for(config: Config) -> Catalog:
    """:func:`load_catalog` with the configuration's ``skills.disabled``."""
    disabled = config.get("skills.disabled") or []
    return load_catalog(d for d in disabled if isinstance(d, str))


# --- the system prompt -----------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def prompt_section(config: Config, tools: Collection[str]) -> str | None:
    """The skills index (names and descriptions) for a new session's system prompt."""
    if "skill_view" not in tools:
        return None  # Without the tool to read them, a list of skills is only noise.
    catalog = catalog_for(config)
    can_write = "skill_manage" in tools
    if not catalog.skills:
        if not can_write:
            return None
        return (
            "## Skills\nNo skills are installed yet. When you work out a procedure worth "
            "repeating, save it as a skill with skill_manage (action=create)."
        )
    intro = (
        "## Skills\nSkills are tested procedures for recurring kinds of work. When a task "
        "matches one, load it with skill_view(name) before you start, and follow it."
    )
    if can_write:
        intro += (
            " When you find a better way, or a procedure worth keeping, save it with "
            "skill_manage (a user skill of the same name replaces a bundled one)."
        )
    lines = [
        f"- {skill.name}: {_clip(skill.description, INDEX_DESCRIPTION_CHARS)}"
        for skill in catalog.skills.values()
    ]
    return intro + "\n" + "\n".join(lines)
