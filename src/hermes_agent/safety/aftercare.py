"""What the kernel cannot hold, hermes checks around each command and puts back.

Landlock decides by path who may write what, and two things escape that shape:

- **A workspace repository's program hooks.** The workspace must stay
  writable (git itself writes ``.git/index.lock`` and friends next to
  ``.git/config``), yet ``.git/hooks/*`` and some keys of ``.git/config``
  (``core.fsmonitor``, ``core.hooksPath``, ``alias.x = !cmd``,
  ``filter.*.clean``...) make git run a program the next time *the user*
  runs git, outside any sandbox. hermes remembers them before a command and
  looks again after it: a hook that appeared or changed is put back (removed
  or restored), and a ``.git/config`` that gained such a key is restored to
  its previous text. Other changes (``git remote add``, ``git config
  user.email``, ``git push -u``) stay.
- **Mode bits.** Landlock does not mediate ``chmod``: a command could open
  ``HERMES_HOME`` or ``.env`` to other users of the machine (not to itself:
  their content stays out of its reach). After each command hermes puts the
  modes of its home, its secret files and its state directories back.

Both run in hermes, unconfined, between commands: cheap (a few ``stat``
calls), and they see what background processes did by the next command.
They cover the workspace's own repository and those one level below it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hermes_agent import home

#: ``.git/config`` keys whose value git runs as a program (or that point git at one).
EXECUTING_KEY = re.compile(
    r"""^\s*(
        fsmonitor | hookspath | \w*command | pager | editor | askpass | gitproxy
      | textconv | clean | smudge | process | driver | helper | program | cmd
      | uploadpack | receivepack | path | externaldiff | tool | templatedir | difffilter
    )\s*=""",
    re.IGNORECASE | re.VERBOSE,
)
#: Section headers that carry programs whatever the key (``[alias] x = !rm -rf ~``).
EXECUTING_SECTION = re.compile(r"^\s*\[\s*(alias|include|includeif|pager)\b", re.IGNORECASE)


@dataclass
class RepoState:
    config: bytes | None
    hooks: dict[str, tuple[bytes, int]] = field(default_factory=dict)


def _git_dirs(workspace: Path) -> list[Path]:
    found = []
    candidates = [workspace / ".git"]
    with contextlib.suppress(OSError):
        candidates += [e / ".git" for e in workspace.iterdir() if e.is_dir()][:200]
    for candidate in candidates:
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not candidate.is_symlink():
                found.append(candidate)
    return found


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 20)
    except OSError:
        return None


def _hooks(git_dir: Path) -> dict[str, tuple[bytes, int]]:
    hooks: dict[str, tuple[bytes, int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(git_dir / "hooks"):
            if entry.name.endswith(".sample"):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                data = os.readlink(entry.path).encode() if entry.is_symlink() else None
                if data is None and stat.S_ISREG(info.st_mode):
                    data = _read(Path(entry.path))
                hooks[entry.name] = (data or b"", info.st_mode)
    return hooks


def snapshot(workspace: str) -> dict[str, RepoState]:
    """The program hooks of the workspace's repositories, as they are now."""
    return {
        str(git_dir): RepoState(_read(git_dir / "config"), _hooks(git_dir))
        for git_dir in _git_dirs(Path(workspace))
    }


def _executing_lines(text: bytes) -> set[str]:
    lines = set()
    section = False
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = bool(EXECUTING_SECTION.match(line))
            if section:
                lines.add(line.lower())
            continue
        if section or EXECUTING_KEY.match(line):
            lines.add(" ".join(line.split()).lower())
    return lines


def repair(before: dict[str, RepoState], workspace: str) -> list[str]:
    """Put back program hooks the last command added or changed; what was undone."""
    undone: list[str] = []
    after = snapshot(workspace)
    for git_dir, now in after.items():
        was = before.get(git_dir, RepoState(None))
        path = Path(git_dir)
        if now.config != was.config and now.config is not None:
            added = _executing_lines(now.config) - _executing_lines(was.config or b"")
            if added:
                _restore(path / "config", was.config)
                undone.append(
                    f"{path / 'config'}: restored (the command added "
                    f"{', '.join(sorted(added))[:200]}, which makes git run a program)"
                )
        for name, (data, mode) in now.hooks.items():
            old = was.hooks.get(name)
            if old == (data, mode):
                continue
            hook = path / "hooks" / name
            if old is None:
                with contextlib.suppress(OSError):
                    hook.unlink()
                undone.append(f"{hook}: removed (a git hook runs when the user next uses git)")
            else:
                _restore(hook, old[0], old[1])
                undone.append(f"{hook}: restored (a git hook runs when the user next uses git)")
    return undone


def _restore(path: Path, data: bytes | None, mode: int | None = None) -> None:
    with contextlib.suppress(OSError):
        if path.is_symlink() or path.is_dir():
            if path.is_dir() and not path.is_symlink():
                return  # A directory where the file was: left for the user to see.
            path.unlink()
        if data is None:
            path.unlink(missing_ok=True)
            return
        from hermes_agent.fsutil import atomic_write

        atomic_write(path, data, mode=stat.S_IMODE(mode) if mode else 0o644)


#: HERMES_HOME's own entries whose modes a command must not change.
_WATCHED = (
    "",
    home.ENV_FILE,
    home.AUTH_FILE,
    home.MCP_TOKENS_DIR,
    home.CONFIG_FILE,
    home.STATE_DB,
    home.LOGS_DIR,
    home.SESSIONS_DIR,
    home.MEMORIES_DIR,
    home.SKILLS_DIR,
    home.CRON_DIR,
)


def modes() -> dict[str, int]:
    """The modes of HERMES_HOME's own entries, as they are now."""
    found = {}
    root = home.hermes_home()
    for name in _WATCHED:
        path = root / name if name else root
        with contextlib.suppress(OSError):
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode):
                found[str(path)] = stat.S_IMODE(info.st_mode)
    return found


def restore_modes(before: dict[str, int]) -> list[str]:
    """Put back the modes a command changed (opened to others, or closed to hermes)."""
    fixed = []
    for path, now in modes().items():
        was = before.get(path)
        if was is not None and was != now:
            with contextlib.suppress(OSError):
                os.chmod(path, was)
                fixed.append(f"{path}: mode {now:o} -> {was:o}")
    return fixed
