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
  ``HERMES_HOME``, ``.env`` or hermes' own code to other users of the machine
  (not to itself: their content stays out of its reach). After each command
  hermes puts the modes of its home, its secret files, its state directories
  and its code (package, venv scripts, site-packages) back.

Both run in hermes, unconfined, between commands: cheap (a few ``stat``
calls), and they see what background processes did by the next command.
They cover the workspace's own repository and those one level below it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import sys
from dataclasses import dataclass, field

from hermes_agent import home

#: ``.git/config`` keys whose value git runs as a program (or that point git at one).
EXECUTING_KEY = re.compile(
    r"""^\s*(
        fsmonitor | hookspath | \w*command | pager | editor | askpass | gitproxy
      | textconv | clean | smudge | process | driver | helper | program | cmd
      | uploadpack | receivepack | path | external | externaldiff | tool | templatedir
      | difffilter | worktree | allow
    )\s*=""",
    re.IGNORECASE | re.VERBOSE,
)
#: A value naming a transport that runs a program (``url = ext::sh -c ...``).
EXECUTING_VALUE = re.compile(r"=\s*\"?\s*(ext|fd)::", re.IGNORECASE)
#: Section headers that carry programs whatever the key (``[alias] x = !rm -rf ~``).
EXECUTING_SECTION = re.compile(
    r"^\s*\[\s*(alias|include|includeif|pager|protocol)\b", re.IGNORECASE
)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)

# Everything below works relative to directory descriptors opened without following
# symlinks, because it runs in hermes, unconfined, on a tree a command controls:
# a `.git/hooks` turned into a symlink to HERMES_HOME must not make hermes read or
# delete HERMES_HOME's files as "hooks".


@dataclass
class RepoState:
    #: ``.git/config``'s text (None: absent), or None with ``config_link`` set.
    config: bytes | None
    config_link: bool = False
    #: What ``.git/hooks`` is: "dir", "link", "missing" or "other".
    hooks_kind: str = "missing"
    #: name -> (content, or the target of a symlink; mode; is a symlink).
    hooks: dict[str, tuple[bytes, int, bool]] = field(default_factory=dict)


def _open_dir(name: str, parent: int | None = None) -> int | None:
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError:
        return None


def _git_dirs(workspace: str) -> list[tuple[str, ...]]:
    """Where repositories may be, as path components under the workspace (none followed)."""
    found: list[tuple[str, ...]] = [(".git",)]
    ws = _open_dir(workspace)
    if ws is None:
        return found
    try:
        with os.scandir(ws) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False) and entry.name != ".git":
                        found.append((entry.name, ".git"))
                if len(found) > 200:
                    break
    finally:
        os.close(ws)
    return found


def _walk(workspace: str, parts: tuple[str, ...]) -> int | None:
    """A descriptor of ``workspace/parts...``, every component opened without following."""
    fd = _open_dir(workspace)
    for part in parts:
        if fd is None:
            return None
        child = _open_dir(part, fd)
        os.close(fd)
        fd = child
    return fd


def _read_at(dir_fd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def _kind(dir_fd: int, name: str) -> tuple[str, int]:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "missing", 0
    if stat.S_ISLNK(info.st_mode):
        return "link", info.st_mode
    if stat.S_ISDIR(info.st_mode):
        return "dir", info.st_mode
    if stat.S_ISREG(info.st_mode):
        return "file", info.st_mode
    return "other", info.st_mode


def _state(git_fd: int) -> RepoState:
    config_kind, _ = _kind(git_fd, "config")
    state = RepoState(
        _read_at(git_fd, "config") if config_kind == "file" else None,
        config_link=config_kind == "link",
    )
    state.hooks_kind, _ = _kind(git_fd, "hooks")
    if state.hooks_kind != "dir":
        return state
    hooks_fd = _open_dir("hooks", git_fd)
    if hooks_fd is None:
        state.hooks_kind = "other"
        return state
    try:
        with os.scandir(hooks_fd) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISLNK(info.st_mode):
                        target = os.readlink(entry.name, dir_fd=hooks_fd)
                        state.hooks[entry.name] = (os.fsencode(target), info.st_mode, True)
                    else:
                        data = _read_at(hooks_fd, entry.name) or b""
                        state.hooks[entry.name] = (data, info.st_mode, False)
    finally:
        os.close(hooks_fd)
    return state


def snapshot(workspace: str) -> dict[tuple[str, ...], RepoState]:
    """The program hooks of the workspace's repositories, as they are now."""
    found = {}
    for parts in _git_dirs(workspace):
        git_fd = _walk(workspace, parts)
        if git_fd is None:
            continue
        try:
            found[parts] = _state(git_fd)
        finally:
            os.close(git_fd)
    return found


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
        if section or EXECUTING_KEY.match(line) or EXECUTING_VALUE.search(line):
            lines.add(" ".join(line.split()).lower())
    return lines


def _put(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    """Replace ``name`` in ``dir_fd`` (a file or a symlink there, never followed)."""
    temp = f".{name}.hermes-restore"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp, dir_fd=dir_fd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, stat.S_IMODE(mode) or 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, data)
        os.fchmod(fd, stat.S_IMODE(mode) or 0o644)
    finally:
        os.close(fd)
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _put_hook(hooks_fd: int, name: str, old: tuple[bytes, int, bool]) -> None:
    data, mode, is_link = old
    if is_link:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=hooks_fd)
        os.symlink(os.fsdecode(data), name, dir_fd=hooks_fd)
    else:
        _put(hooks_fd, name, data, mode)


def _remove(dir_fd: int, name: str) -> bool:
    """Remove an entry (a symlink itself, never its target); False for a directory."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except IsADirectoryError:
        return False
    except FileNotFoundError:
        pass
    except PermissionError:
        return False
    return True


def repair(before: dict[tuple[str, ...], RepoState], workspace: str) -> list[str]:
    """Put back program hooks the last command added or changed; what was undone."""
    undone: list[str] = []
    for parts in _git_dirs(workspace):
        git_fd = _walk(workspace, parts)
        if git_fd is None:
            continue
        try:
            now = _state(git_fd)
            was = before.get(parts, RepoState(None))
            shown = os.path.join(workspace, *parts)
            undone += _repair_config(git_fd, shown, was, now)
            undone += _repair_hooks(git_fd, shown, was, now)
        except OSError:
            undone.append(f"{os.path.join(workspace, *parts)}: could not be checked")
        finally:
            os.close(git_fd)
    return undone


def _repair_config(git_fd: int, shown: str, was: RepoState, now: RepoState) -> list[str]:
    if now.config_link and not was.config_link:
        _remove(git_fd, "config")
        if was.config is not None:
            _put(git_fd, "config", was.config, 0o644)
        return [f"{shown}/config: restored (it was made a symbolic link)"]
    if now.config is None or now.config == was.config:
        return []
    added = _executing_lines(now.config) - _executing_lines(was.config or b"")
    if not added:
        return []
    if was.config is None:
        _remove(git_fd, "config")
    else:
        _put(git_fd, "config", was.config, 0o644)
    return [
        f"{shown}/config: restored (the command added "
        f"{', '.join(sorted(added))[:200]}, which makes git run a program)"
    ]


def _repair_hooks(git_fd: int, shown: str, was: RepoState, now: RepoState) -> list[str]:
    note = "a git hook runs when the user next uses git"
    if now.hooks_kind != was.hooks_kind and now.hooks_kind in ("link", "other", "file"):
        # `.git/hooks` replaced by a symbolic link (to HERMES_HOME, say) or a file: the
        # link itself goes, never what it points to, and the old hooks come back.
        if not _remove(git_fd, "hooks"):
            return [f"{shown}/hooks: replaced by something hermes cannot remove; check it"]
        if was.hooks_kind == "dir":
            os.mkdir("hooks", 0o755, dir_fd=git_fd)
            hooks_fd = _open_dir("hooks", git_fd)
            if hooks_fd is not None:
                try:
                    for name, old in was.hooks.items():
                        _put_hook(hooks_fd, name, old)
                finally:
                    os.close(hooks_fd)
        return [f"{shown}/hooks: restored (it was replaced by a link or a file; {note})"]
    if now.hooks_kind != "dir":
        return []
    undone = []
    hooks_fd = _open_dir("hooks", git_fd)
    if hooks_fd is None:
        return []
    try:
        for name, entry in now.hooks.items():
            previous = was.hooks.get(name)
            if previous == entry or (name.endswith(".sample") and not entry[2]):
                continue  # Unchanged, or a sample: git never runs those.
            if previous is None:
                if _remove(hooks_fd, name):
                    undone.append(f"{shown}/hooks/{name}: removed ({note})")
                else:
                    undone.append(f"{shown}/hooks/{name}: left (a directory); check it")
            else:
                _put_hook(hooks_fd, name, previous)
                undone.append(f"{shown}/hooks/{name}: restored ({note})")
    finally:
        os.close(hooks_fd)
    return undone


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


@functools.lru_cache(maxsize=1)
def _code_paths() -> tuple[str, ...]:
    """hermes' code whose modes a command must not open: the places, the package's
    files, and the venv's scripts (a few hundred ``lstat`` calls, well under 1 ms)."""
    import hermes_agent
    from hermes_agent.safety import places as places_module

    paths = list(places_module.places().code)
    package = os.path.dirname(hermes_agent.__file__)
    for folder, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        paths += [os.path.join(folder, n) for n in (*dirs, *files)]
    scripts = os.path.dirname(sys.executable)
    with contextlib.suppress(OSError):
        paths += [os.path.join(scripts, n) for n in os.listdir(scripts)]
    # Listed once per process: nothing the agent runs can add files to hermes' code.
    return tuple(paths)


def modes() -> dict[str, int]:
    """The modes of HERMES_HOME's entries, the user's credentials and hermes' code, now."""
    found = {}
    from hermes_agent.safety import places as places_module

    root = home.hermes_home()
    paths = [str(root / name) if name else str(root) for name in _WATCHED]
    # The user's credentials: opened to others by a chmod, they would be theirs to read.
    where = places_module.places()
    ssh = os.path.join(where.home, ".ssh")
    paths += [*where.secrets, ssh]
    with contextlib.suppress(OSError):
        paths += [os.path.join(ssh, n) for n in os.listdir(ssh)]
    lstat, is_link = os.lstat, stat.S_ISLNK
    for path in (*paths, *_code_paths()):
        try:
            mode = lstat(path).st_mode
        except OSError:
            continue
        if not is_link(mode):
            found[path] = mode & 0o7777
    return found


def restore_modes(before: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    """Put back the modes a command changed (opened to others, or closed to hermes).

    Returns what was fixed and the modes as they are now (for the next look).
    """
    fixed = []
    now = modes()
    for path, mode in now.items():
        was = before.get(path)
        if was is not None and was != mode:
            with contextlib.suppress(OSError):
                os.chmod(path, was, follow_symlinks=False)
                fixed.append(f"{path}: mode {mode:o} -> {was:o}")
                now[path] = was
    return fixed, now
