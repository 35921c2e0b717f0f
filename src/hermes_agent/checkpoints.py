"""Checkpoints: the workspace as it was before the agent changed it, and the way back.

Before the first change the agent makes to the workspace in a turn (a file
tool's write, a terminal command the classifier does not know to be
read-only), :func:`before_change` takes a *checkpoint*: a commit in a shadow
git repository under ``HERMES_HOME/checkpoints/<hash of the workspace path>``.
The user's own ``.git`` is never read or written; ``/rollback`` in chat and
`hermes checkpoints list|diff|restore|prune` go back to one.

The workspace is attacker-controlled (the model writes it, its programs run
in it), while this module runs as hermes itself, unconfined. So git is only
used for what cannot be tricked by the workspace's content:

- **Reading the workspace is ours.** Git lists the files that are not ignored
  (``ls-files --others --exclude-standard`` with an empty index: directory
  walking and the workspace's ``.gitignore`` rules, nothing more). Every file
  is then opened by this module through directory descriptors with
  ``O_NOFOLLOW`` at every component, checked to be a regular file, and hashed
  into a loose object; git gets the finished entries (``update-index
  --index-info``), which apply no filter, no ``text``/``eol`` conversion and
  no ``ident``. A ``.gitattributes`` filter driver therefore never runs, and
  a file swapped for a symlink to a secret while a snapshot runs is skipped,
  never read through.
- **Writing the workspace is ours too.** A restore writes each file as a new
  file beside its destination, then renames it into place, opening every
  parent directory with ``O_NOFOLLOW``: a symlink in the workspace (even one
  swapped in while the restore runs) is never written through, and a hard
  link is replaced rather than written into.
- **Git runs hardened:** a clean environment (no ``GIT_*`` variables of ours,
  no system or global config, ``HOME`` and ``XDG_CONFIG_HOME`` pointing at
  nothing of the user's), hooks off, fsmonitor off, no external diff or
  textconv, and ``info/attributes`` unsetting every attribute that converts
  content. File names only ever reach git on standard input, NUL-separated,
  never as arguments (a file called ``--exec=...`` is just a name).

Limits (``checkpoints.*`` in config.yaml): files over ``max_file_mb`` are left
out with a note; a snapshot whose new content exceeds ``max_total_mb`` or
whose workspace holds more than ``max_files`` files is skipped with a note;
``keep`` and ``max_age_days`` prune old checkpoints after each new one.

Restoring takes a checkpoint of the current state first (so a restore can be
undone) and never deletes a file created after the checkpoint unless asked
(``delete_new``): such files are listed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.tools.registry import ToolContext

#: ``ToolContext.state`` key: the current turn (set by the agent loop at each message).
TURN_KEY = "checkpoints.turn"
#: ``ToolContext.state`` key: why checkpoints are off for the rest of the session.
OFF_KEY = "checkpoints.off"
REF_PREFIX = "refs/checkpoints/"
MODE_FILE = "100644"
MODE_EXEC = "100755"
MODE_LINK = "120000"
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Unset in info/attributes: every attribute that makes git change content or run a program.
_ATTRIBUTES = "* -text -eol -ident -filter -working-tree-encoding -merge -export-subst\n"
#: A file changed this recently may change again within the clock's resolution: its
#: stat data is not trusted next time (git's "racy" rule).
_RACY_NS = 2_000_000_000
#: Seconds git may take to list the workspace's files. A FIFO named .gitignore makes
#: git wait forever for a writer; the workspace is the attacker's to shape.
LIST_TIMEOUT = 60.0
#: Errors that mean a path is gone or is reached through a link: nothing to keep there.
_GONE = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ELOOP))
#: Repositories nested in the workspace that are listed (each by one git process).
_MAX_NESTED = 200
#: Bytes of file content a restore holds in memory at once.
_RESTORE_BATCH = 64 * 1024 * 1024
#: Directory descriptors kept open while walking (the soft limit is often 1024).
_MAX_OPEN_DIRS = 256
#: More packs than this (one per snapshot with new content) and pruning rewrites them.
_MAX_PACKS = 16
#: Escaped in text shown from the workspace (diffs): control and bidi characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")
#: Escaped in file names: those, line breaks and tabs, and undecodable bytes.
_NAME_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f\x80-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


class CheckpointError(HermesError):
    """A checkpoint could not be taken, found or restored."""


@dataclass(frozen=True)
class Limits:
    """The ``checkpoints.*`` settings."""

    enabled: bool = True
    max_file_mb: float = 10.0
    max_total_mb: float = 500.0
    max_files: int = 50_000
    keep: int = 50
    max_age_days: float = 30.0

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        def num(key: str, default: float) -> float:
            value = config.get(key)
            return default if value is None else float(value)

        enabled = config.get("checkpoints.enabled")
        return cls(
            enabled=True if enabled is None else bool(enabled),
            max_file_mb=num("checkpoints.max_file_mb", cls.max_file_mb),
            max_total_mb=num("checkpoints.max_total_mb", cls.max_total_mb),
            max_files=int(num("checkpoints.max_files", cls.max_files)),
            keep=max(1, int(num("checkpoints.keep", cls.keep))),
            max_age_days=num("checkpoints.max_age_days", cls.max_age_days),
        )


@dataclass(frozen=True)
class Checkpoint:
    """One snapshot of the workspace: a commit in the shadow repository."""

    seq: int
    commit: str
    tree: str
    created: float
    #: What was about to happen ("write_file notes.md", "terminal: make", "before restore").
    reason: str = ""
    session: str = ""
    #: The start of the user's message whose turn this preceded (redacted).
    turn: str = ""
    #: Files left out (too large), for the listing.
    skipped: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.commit[:10]


@dataclass
class Snapshot:
    """What :meth:`Store.snapshot` did."""

    checkpoint: Checkpoint | None
    #: False when the workspace was the same as in the newest checkpoint (no new one).
    created: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    mode: str
    sha: str


@dataclass
class RestorePlan:
    """What restoring ``target`` over the workspace as it is now would do."""

    target: Checkpoint
    #: Paths whose content or mode goes back to the checkpoint's.
    changed: list[str] = field(default_factory=list)
    #: Paths removed since the checkpoint, written again.
    recreated: list[str] = field(default_factory=list)
    #: Files created since the checkpoint: kept unless ``delete_new``.
    new_files: list[str] = field(default_factory=list)
    #: The checkpoint of the current state taken first (the way back).
    safety: Checkpoint | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.changed or self.recreated or self.new_files)


@dataclass
class RestoreResult:
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    #: Paths that could not be restored, with the reason.
    problems: list[str] = field(default_factory=list)


def shown(name: str) -> str:
    """A file name as it may be printed: control and bidi characters escaped.

    File names come from the workspace (the model chooses them): a newline or
    an escape sequence in one must not forge lines of a prompt the user answers.
    """
    return _NAME_UNSAFE.sub(_escape, name)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # A byte that was not UTF-8 (surrogateescape).
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def workspace_key(workspace: Path) -> str:
    """The shadow repository's name for a workspace: a hash of its real path."""
    real = os.path.realpath(workspace)
    return hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]


# --- walking the workspace without following links ----------------------------------------


class _Dirs:
    """Directory descriptors of the workspace, each opened with O_NOFOLLOW from its parent."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fds: dict[str, int] = {}
        self.fds[""] = os.open(root, _O_DIR)

    def open(self, directory: str, *, create: bool = False) -> int:
        """The descriptor of ``directory`` (relative, '/'-separated); OSError if it is not
        a real directory (a symlink or a file anywhere on the way)."""
        fd = self.fds.get(directory)
        if fd is not None:
            return fd
        if len(self.fds) > _MAX_OPEN_DIRS:
            self._trim(directory)
        parent, _, name = directory.rpartition("/")
        parent_fd = self.open(parent, create=create)
        try:
            fd = os.open(name, _O_DIR, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o777, dir_fd=parent_fd)
            fd = os.open(name, _O_DIR, dir_fd=parent_fd)
        self.fds[directory] = fd
        return fd

    def _trim(self, keep: str) -> None:
        """Close every descriptor but the root and ``keep``'s ancestors: a workspace may
        have more directories than a process may hold open (paths come sorted, so the
        ones closed are rarely needed again)."""
        ancestors = {""}
        parts = keep.split("/")
        ancestors.update("/".join(parts[:i]) for i in range(1, len(parts)))
        for key in [k for k in self.fds if k not in ancestors]:
            os.close(self.fds.pop(key))

    def forget(self, directory: str) -> None:
        for key in [k for k in self.fds if k == directory or k.startswith(directory + "/")]:
            os.close(self.fds.pop(key))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _BlobWriter:
    """New file contents, streamed into one pack by ``git fast-import``: one process
    per snapshot instead of one file per object (the first snapshot of a large
    workspace writes thousands). The object ids are computed here, as git would."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None
        self.errors: Any = None

    def add(self, data: bytes) -> str:
        digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
        digest.update(data)
        if self.proc is None:
            import tempfile

            self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by abort)
            try:
                self.proc = subprocess.Popen(
                    self.store._argv("fast-import", "--quiet"),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=self.errors,
                    cwd=self.store.workspace,
                    env=self.store._env(),
                )
            except OSError as exc:
                raise CheckpointError(f"git fast-import could not start: {exc}") from None
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"blob\ndata %d\n" % len(data))
            self.proc.stdin.write(data)
            self.proc.stdin.write(b"\n")
        except BrokenPipeError:
            self.finish()
        return digest.hexdigest()

    def finish(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        code = proc.wait()
        if code != 0:
            self.errors.seek(0)
            lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            raise CheckpointError(
                "git fast-import failed in the checkpoint repository: "
                + shown(lines[-1] if lines else f"exit {code}")
            )

    def abort(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.errors is not None:
            self.errors.close()
            self.errors = None


def _valid_path(path: str) -> bool:
    """A relative path hermes may read or restore: no empty, ``.`` or ``..`` component,
    and none that a file system could take for ``.git`` (a restore must never write
    into a repository's own directory, where git finds hooks)."""
    if not path or "\0" in path:
        return False
    parts = path.split("/")
    if _BAD_PARTS.intersection(parts):
        return False
    if "git" not in _HFS_IGNORED.sub("", path.lower()):
        return True
    return not any(_is_dotgit(p) for p in parts)


def _is_dotgit(part: str) -> bool:
    """``.git`` as macOS (ignorable code points, any case) or Windows (trailing dots
    and spaces, the short name ``git~1``) would read it."""
    name = _HFS_IGNORED.sub("", part).lower().rstrip(". ")
    return name in (".git", "git~1")


_BAD_PARTS = frozenset(("", ".", ".."))
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")


# --- the shadow repository -----------------------------------------------------------------


class Store:
    """The checkpoints of one workspace."""

    def __init__(self, workspace: Path | str, limits: Limits | None = None) -> None:
        real = os.path.realpath(workspace)
        if not os.path.isdir(real):
            raise CheckpointError(f"the workspace {workspace} is not a directory")
        self.workspace = real
        self.limits = limits or Limits()
        self.git_dir = home.checkpoint_repo(workspace_key(Path(real)))
        self._stat_cache_path = self.git_dir / "hermes-stat.json"

    # --- git ---------------------------------------------------------------------------

    def _safe_path(self) -> str:
        """PATH without relative entries and without directories inside the workspace:
        git runs unconfined, so a `git` (or a helper) the agent dropped in the workspace
        must never be the one found."""
        inside = self.workspace.rstrip("/") + "/"
        kept = [
            d
            for d in (os.environ.get("PATH") or "/usr/bin:/bin").split(os.pathsep)
            if d.startswith("/")
            and not os.path.realpath(d).startswith(inside)
            and os.path.realpath(d) != self.workspace
        ]
        return os.pathsep.join(kept) or "/usr/bin:/bin"

    def _git_program(self) -> str:
        import shutil

        found = shutil.which("git", path=self._safe_path())
        if found is None:
            raise CheckpointError("checkpoints need git, which is not installed")
        return found

    def _env(self, index: str | None = None) -> dict[str, str]:
        env = {
            "PATH": self._safe_path(),
            "HOME": str(self.git_dir),
            "XDG_CONFIG_HOME": str(self.git_dir / "no-config"),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_AUTHOR_NAME": "hermes",
            "GIT_AUTHOR_EMAIL": "hermes@localhost",
            "GIT_COMMITTER_NAME": "hermes",
            "GIT_COMMITTER_EMAIL": "hermes@localhost",
        }
        if index is not None:
            env["GIT_INDEX_FILE"] = index
        return env

    def _git(
        self,
        *args: str,
        data: bytes | None = None,
        index: str | None = None,
        check: bool = True,
        init: bool = False,
        timeout: float = 600,
        work_tree: str | None = None,
    ) -> bytes:
        argv = self._argv(*args, init=init, work_tree=work_tree)
        try:
            done = subprocess.run(
                argv,
                input=data,
                stdin=None if data is not None else subprocess.DEVNULL,
                capture_output=True,
                cwd=work_tree or self.workspace,
                env=self._env(index),
                check=False,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise CheckpointError("checkpoints need git, which is not installed") from None
        except subprocess.TimeoutExpired:
            raise CheckpointError(
                f"git {args[0]} took more than {timeout:g} s in {self.workspace} and was "
                "stopped (a FIFO where git reads a .gitignore, or a very large tree?)"
            ) from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise CheckpointError(f"git failed: {exc}") from None
        if check and done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CheckpointError(
                f"git {args[0]} failed in the checkpoint repository {self.git_dir}: "
                + shown(message[-1] if message else f"exit {done.returncode}")
            )
        return done.stdout

    def _argv(self, *args: str, init: bool = False, work_tree: str | None = None) -> list[str]:
        """git with the hardened options: hooks, fsmonitor, global attributes and
        excludes, external diff and transports all off."""
        tree = work_tree or self.workspace
        where = [] if init else [f"--git-dir={self.git_dir}", f"--work-tree={tree}"]
        return [
            self._git_program(),
            *where,
            "--literal-pathspecs",
            "-c", "core.hooksPath=/dev/null",
            "-c", "core.fsmonitor=false",
            "-c", "core.untrackedCache=false",
            "-c", "core.attributesFile=/dev/null",
            "-c", "core.excludesFile=/dev/null",
            "-c", "core.symlinks=true",
            "-c", "core.autocrlf=false",
            "-c", "core.quotePath=true",
            "-c", "core.pager=cat",
            "-c", "safe.directory=*",
            "-c", "gc.auto=0",
            "-c", "maintenance.auto=false",
            "-c", "commit.gpgSign=false",
            "-c", "diff.external=",
            "-c", "protocol.allow=never",
            *args,
        ]  # fmt: skip

    def exists(self) -> bool:
        return (self.git_dir / "HEAD").is_file()

    def _ensure(self) -> None:
        if self.exists():
            return
        home.ensure_dir(self.git_dir.parent)
        home.ensure_dir(self.git_dir)
        self._git("init", "--bare", "-q", "--template=", str(self.git_dir), init=True)
        info = home.ensure_dir(self.git_dir / "info")
        (info / "attributes").write_text(_ATTRIBUTES)
        (self.git_dir / "hermes-workspace").write_text(self.workspace + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One hermes process at a time works on a shadow repository (chat and gateway
        can share a workspace)."""
        self._ensure()
        fd = os.open(self.git_dir / "hermes.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CheckpointError(
                            f"the checkpoint repository {self.git_dir} stayed locked by "
                            "another hermes process for a minute"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    # --- snapshot ----------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        """Files git would track: not ignored by the workspace's rules, ``.git`` left out.

        A repository nested in the workspace (a workspace of ``~/code`` holding
        several) is listed by its own ignore rules, never through its ``.git``; an
        entry ending in ``/`` is one left out (too many, or too deep).
        """
        skip = self._inner_home()
        deadline = time.monotonic() + LIST_TIMEOUT
        paths: list[str] = []
        todo = [""]
        nested = 0
        while todo:
            prefix = todo.pop()
            for path in self._ls_files(prefix, skip if not prefix else "", deadline):
                full = prefix + path
                if full.endswith("/") and nested < _MAX_NESTED and full.count("/") <= 16:
                    nested += 1
                    todo.append(full)
                else:
                    paths.append(full)
        if skip:
            paths = [p for p in paths if p != skip and not p.startswith(skip + "/")]
        paths.sort()
        return paths

    def _ls_files(self, prefix: str, skip: str, deadline: float) -> list[str]:
        """``git ls-files --others`` of the workspace (or of the repository nested at
        ``prefix``), with an empty index: names only, by the ignore rules."""
        empty_index = str(self.git_dir / "hermes-empty-index")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(empty_index)
        extra = ["--exclude=/" + re.sub(r"([*?[\\])", r"\\\1", skip) + "/"] if skip else []
        tree = os.path.join(self.workspace, prefix) if prefix else None
        if tree is not None and (os.path.islink(tree.rstrip("/")) or not os.path.isdir(tree)):
            return []  # Swapped for a link since it was listed: nothing to walk there.
        out = self._git(
            "ls-files",
            "-z",
            "--others",
            "--exclude-standard",
            *extra,
            index=empty_index,
            timeout=max(1.0, deadline - time.monotonic()),
            work_tree=tree,
        )
        return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]

    def _inner_home(self) -> str:
        """HERMES_HOME's path inside the workspace ("" when it is elsewhere): never
        snapshotted (state.db, secrets, and the checkpoints themselves live there)."""
        real_home = os.path.realpath(home.hermes_home())
        rel = os.path.relpath(real_home, self.workspace)
        if rel == ".":
            raise CheckpointError("the workspace is HERMES_HOME itself: no checkpoints of it")
        return "" if rel == ".." or rel.startswith("../") else rel

    # --- what is kept between snapshots ---------------------------------------------------
    #
    # hermes-stat.json: for every file seen, its stat data, object and mode (an unchanged
    # file is not read again), and the stamp of the persistent index (hermes-index) that
    # the same snapshot left, so the next one feeds git only what changed. Saved only with
    # a checkpoint, so every object it names is reachable from the newest checkpoint,
    # which pruning never removes.

    @property
    def _index_path(self) -> Path:
        return self.git_dir / "hermes-index"

    def _index_stamp(self) -> list[int] | None:
        try:
            st = os.stat(self._index_path)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _load_cache(self) -> tuple[dict[str, list[Any]], list[int] | None]:
        try:
            data = json.loads(self._stat_cache_path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}, None
        if not isinstance(data, dict) or data.get("v") != 2:
            return {}, None
        files, stamp = data.get("files"), data.get("index")
        return (files if isinstance(files, dict) else {}), (
            stamp if isinstance(stamp, list) else None
        )

    def _save_cache(self, files: dict[str, list[Any]]) -> None:
        from hermes_agent.fsutil import atomic_write

        record = {"v": 2, "index": self._index_stamp(), "files": files}
        text = json.dumps(record, separators=(",", ":"), check_circular=False)
        atomic_write(self._stat_cache_path, text, mode=0o600)

    def _drop_cache(self) -> None:
        for path in (self._stat_cache_path, self._index_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _scan(
        self, paths: Sequence[str], cache: dict[str, list[Any]], budget: float
    ) -> tuple[dict[str, Entry] | None, dict[str, list[Any]], list[str], int]:
        """Hash the workspace's files, streaming new content into the repository.

        Returns the entries (None when the new content exceeds ``budget`` bytes: the
        scan stops there), the new stat cache, notes and the bytes read anew.
        """
        new_cache: dict[str, list[Any]] = {}
        entries: dict[str, Entry] = {}
        too_big: list[str] = []
        nested: list[str] = []
        unreadable: list[str] = []
        max_file = int(self.limits.max_file_mb * 1024 * 1024)
        fresh_bytes = 0
        now_ns = time.time_ns()
        writer = _BlobWriter(self)
        dirs = _Dirs(self.workspace)
        try:
            for path in paths:
                if path.endswith("/"):
                    nested.append(path)
                    continue
                if not _valid_path(path):
                    continue
                directory, _, name = path.rpartition("/")
                try:
                    dir_fd = dirs.open(directory)
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in _GONE:
                        unreadable.append(path)
                    continue  # Gone, or a link on the way: nothing of ours to keep.
                key = [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                known = cache.get(path)
                if known and known[:5] == key and len(known) == 7:
                    entries[path] = Entry(str(known[6]), str(known[5]))
                    new_cache[path] = known
                    continue
                if stat.S_ISLNK(st.st_mode):
                    try:
                        data = os.fsencode(os.readlink(name, dir_fd=dir_fd))
                    except OSError:
                        continue
                    mode = MODE_LINK
                elif stat.S_ISREG(st.st_mode):
                    if st.st_size > max_file:
                        too_big.append(path)
                        continue
                    read = self._read(dir_fd, name, st, max_file)
                    if read is None:
                        unreadable.append(path)
                        continue
                    data, st = read
                    mode = MODE_EXEC if st.st_mode & 0o100 else MODE_FILE
                    key = [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                else:
                    continue  # FIFOs, sockets, devices: not content.
                fresh_bytes += len(data)
                if fresh_bytes > budget:
                    writer.abort()
                    return None, {}, [], fresh_bytes
                sha = writer.add(data)
                entries[path] = Entry(mode, sha)
                if now_ns - max(st.st_mtime_ns, st.st_ctime_ns) <= _RACY_NS:
                    key = [0, 0, 0, 0, 0]  # May change again unseen: read it next time.
                new_cache[path] = [*key, sha, mode]
            writer.finish()
        finally:
            writer.abort()
            dirs.close()
        notes = []
        if too_big:
            limit = f"{self.limits.max_file_mb:g} MB"
            notes.append(
                f"left out of the checkpoint, larger than {limit} (checkpoints.max_file_mb): "
                + _few(too_big)
            )
        if nested:
            notes.append(
                "git repositories nested too many or too deep, left out of the checkpoint: "
                + _few(nested)
            )
        if unreadable:
            notes.append(
                "left out of the checkpoint, could not be read (permissions, or changed "
                "while being read): " + _few(unreadable)
            )
        return entries, new_cache, notes, fresh_bytes

    @staticmethod
    def _read(
        dir_fd: int, name: str, before: os.stat_result, limit: int
    ) -> tuple[bytes, os.stat_result] | None:
        """The content of a regular file, opened without following a link; None if it is
        no longer the file that was looked at."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_ino != before.st_ino or st.st_size > limit:
                return None
            chunks = []
            total = 0
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    return None
            return b"".join(chunks), st
        except OSError:
            return None
        finally:
            os.close(fd)

    def _write_tree(
        self, entries: dict[str, Entry], before: dict[str, list[Any]] | None, index: Path
    ) -> str:
        """The tree of ``entries``: only what changed since ``before`` (what ``index``
        holds) is given to git; None for ``before`` builds the index afresh."""
        if before is None:
            with contextlib.suppress(FileNotFoundError):
                index.unlink()
            before = {}
        lines = []
        for path, entry in entries.items():
            was = before.get(path)
            if not was or len(was) != 7 or was[5] != entry.sha or was[6] != entry.mode:
                lines.append(f"{entry.mode} {entry.sha}\t".encode() + os.fsencode(path) + b"\0")
        for path in before:
            if path not in entries:
                lines.append(b"0 " + b"0" * 40 + b"\t" + os.fsencode(path) + b"\0")
        if lines or not index.exists():
            self._git("update-index", "-z", "--index-info", data=b"".join(lines), index=str(index))
        return self._git("write-tree", index=str(index)).decode().strip()

    def _tree_now(
        self, extra: Sequence[str] = (), *, persist: bool = False
    ) -> tuple[str | None, dict[str, list[Any]], list[str]]:
        """The workspace as a tree (its objects stored), or None with the reason in the
        notes. ``persist``: through the persistent index (a snapshot); otherwise through
        a temporary one, leaving the kept state alone (a diff, a restore's plan)."""
        paths = self._candidates()
        limits = self.limits
        if len(paths) > limits.max_files:
            return (
                None,
                {},
                [
                    f"checkpoint skipped: the workspace has {len(paths):,} files that are not "
                    f"ignored, more than checkpoints.max_files ({limits.max_files:,}); add "
                    "ignore rules (.gitignore) or raise the limit"
                ],
            )
        if extra:
            paths = list(dict.fromkeys([*paths, *extra]))
        budget = limits.max_total_mb * 1024 * 1024
        for attempt in (1, 2):
            cache, stamp = self._load_cache()
            entries, files, notes, _ = self._scan(paths, cache, budget)
            if entries is None:
                return (
                    None,
                    {},
                    [
                        f"checkpoint skipped: more than {limits.max_total_mb:g} MB of new "
                        "content (checkpoints.max_total_mb)",
                    ],
                )
            if persist:
                index = self._index_path
                before = cache if stamp is not None and stamp == self._index_stamp() else None
            else:
                index = self.git_dir / f"hermes-index-{os.getpid()}"
                before = None
            try:
                return self._write_tree(entries, before, index), files, notes
            except CheckpointError:
                if attempt == 2:
                    raise
                self._drop_cache()  # An object it named is gone: read everything again.
            finally:
                if not persist:
                    with contextlib.suppress(FileNotFoundError):
                        index.unlink()
        raise AssertionError("unreachable")

    def snapshot(
        self,
        reason: str,
        *,
        session: str = "",
        turn: str = "",
        extra: Sequence[str] = (),
    ) -> Snapshot:
        """Take a checkpoint of the workspace (none if it equals the newest one).

        ``extra``: paths to include even if ignored (a restore backs up every file
        it is about to overwrite).
        """
        with self.locked():
            return self._snapshot(reason, session=session, turn=turn, extra=extra)

    def _snapshot(
        self,
        reason: str,
        *,
        session: str,
        turn: str,
        extra: Sequence[str] = (),
        prune: bool = True,
    ) -> Snapshot:
        tree, files, notes = self._tree_now(extra, persist=True)
        if tree is None:
            return Snapshot(None, False, notes)
        listed = self._list()
        if listed and listed[0].tree == tree:
            self._save_cache(files)
            return Snapshot(listed[0], False, notes)
        from hermes_agent.redact import redact

        skipped = [n for n in notes if n.startswith("left out")]
        reason, turn = redact(reason)[:200], redact(" ".join(turn.split()))[:200]
        meta = {"reason": reason, "session": session, "turn": turn, "skipped": skipped}
        message = json.dumps(meta, ensure_ascii=True) + "\n"
        commit = self._git("commit-tree", tree, data=message.encode()).decode().strip()
        seq = (listed[0].seq + 1) if listed else 1
        self._git("update-ref", f"{REF_PREFIX}{seq:010d}", commit, "")
        self._save_cache(files)
        checkpoint = Checkpoint(
            seq, commit, tree, time.time(), reason, session, turn, tuple(skipped)
        )
        if prune:
            self._prune(self.limits.keep, self.limits.max_age_days)
        return Snapshot(checkpoint, True, notes)

    # --- listing -----------------------------------------------------------------------

    def listing(self) -> list[Checkpoint]:
        """Every checkpoint, newest first."""
        if not self.exists():
            return []
        with self.locked():
            return self._list()

    def _list(self) -> list[Checkpoint]:
        out = self._git(
            "for-each-ref",
            "--format=%(refname)%09%(objectname)%09%(tree)%09%(creatordate:unix)%09"
            "%(contents:subject)",
            REF_PREFIX,
        )
        found = []
        for line in out.decode("utf-8", "replace").splitlines():
            parts = line.split("\t", 4)
            if len(parts) != 5:
                continue
            ref, commit, tree, created, subject = parts
            try:
                seq = int(ref.rsplit("/", 1)[-1])
                meta = json.loads(subject)
            except ValueError:
                continue
            if not isinstance(meta, dict):
                meta = {}
            found.append(
                Checkpoint(
                    seq,
                    commit,
                    tree,
                    float(created or 0),
                    str(meta.get("reason", "")),
                    str(meta.get("session", "")),
                    str(meta.get("turn", "")),
                    tuple(str(s) for s in meta.get("skipped", ()) or ()),
                )
            )
        found.sort(key=lambda c: -c.seq)
        return found

    def resolve(self, which: str | int) -> Checkpoint:
        """A checkpoint by its number in the listing (1 = newest) or a commit prefix."""
        listed = self.listing()
        if not listed:
            raise CheckpointError(f"no checkpoints of {self.workspace} yet")
        text = str(which).strip()
        if text.isascii() and text.isdigit() and len(text) < 6:  # Not "²": int() refuses it.
            number = int(text)
            if not 1 <= number <= len(listed):
                raise UsageError(
                    f"no checkpoint {number}: there are {len(listed)} (1 is the newest; "
                    "`hermes checkpoints list` shows them)"
                )
            return listed[number - 1]
        if re.fullmatch(r"[0-9a-f]{6,40}", text):
            matches = [c for c in listed if c.commit.startswith(text)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"{text} matches {len(matches)} checkpoints; give more digits")
        raise UsageError(
            f"no checkpoint {shown(text)!r}: give its number (1 to {len(listed)}, 1 is the "
            "newest) or its id from `hermes checkpoints list`"
        )

    # --- comparing ---------------------------------------------------------------------

    def _entries(self, tree: str) -> dict[str, Entry]:
        out = self._git("ls-tree", "-r", "-z", "--full-tree", tree)
        entries: dict[str, Entry] = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            head, _, raw = record.partition(b"\t")
            mode, kind, sha = head.decode().split(" ")
            path = os.fsdecode(raw)
            if kind == "blob" and mode in (MODE_FILE, MODE_EXEC, MODE_LINK) and _valid_path(path):
                entries[path] = Entry(mode, sha)
        return entries

    def diff(self, checkpoint: Checkpoint, *, stat_only: bool = False) -> str:
        """What changed from ``checkpoint`` to the workspace as it is now (a patch)."""
        with self.locked():
            tree, _, notes = self._tree_now()
            if tree is None:
                raise CheckpointError("; ".join(notes))
            mode = ["--stat"] if stat_only else ["--patch"]
            out = self._git(
                "diff", "--no-ext-diff", "--no-textconv", "--no-color", *mode,
                checkpoint.tree, tree,
            )  # fmt: skip
        from hermes_agent.redact import redact

        # Shown on a terminal: the workspace's bytes must not drive it, nor show secrets.
        text = redact(out.decode("utf-8", "replace"))
        return _CONTROL.sub(_escape, text.replace("\t", "    "))

    def plan(self, checkpoint: Checkpoint) -> RestorePlan:
        """What restoring ``checkpoint`` would change, without changing anything."""
        with self.locked():
            target = self._entries(checkpoint.tree)
            tree, _, notes = self._tree_now(extra=list(target))
            if tree is None:
                raise CheckpointError("; ".join(notes))
            return self._blocked(self._plan(checkpoint, target, self._entries(tree), notes))

    def _blocked(self, plan: RestorePlan) -> RestorePlan:
        """Paths the checkpoint has that are taken now by something the current state's
        checkpoint could not hold (a file grown past the size limit, a FIFO): left
        alone, and said so, rather than overwritten without a copy."""
        dirs = _Dirs(self.workspace)
        blocked = []
        try:
            for path in plan.recreated:
                directory, _, name = path.rpartition("/")
                try:
                    os.stat(name, dir_fd=dirs.open(directory), follow_symlinks=False)
                except OSError:
                    continue
                blocked.append(path)
        finally:
            dirs.close()
        if blocked:
            plan.recreated = [p for p in plan.recreated if p not in blocked]
            plan.notes.append(
                "kept as they are, because they could not be saved first (larger than "
                "checkpoints.max_file_mb, or not regular files): " + _few(blocked)
            )
        return plan

    def _plan(
        self,
        checkpoint: Checkpoint,
        target: dict[str, Entry],
        current: dict[str, Entry],
        notes: list[str],
    ) -> RestorePlan:
        plan = RestorePlan(checkpoint, notes=list(notes))
        inner = self._inner_home()
        if inner:  # HERMES_HOME moved into the workspace since: never written by a restore.
            for path in [p for p in target if p == inner or p.startswith(inner + "/")]:
                del target[path]
        for path, entry in target.items():
            now = current.get(path)
            if now is None:
                plan.recreated.append(path)
            elif now != entry:
                plan.changed.append(path)
        plan.new_files = sorted(p for p in current if p not in target)
        plan.changed.sort()
        plan.recreated.sort()
        return plan

    # --- restoring ---------------------------------------------------------------------

    def restore(
        self, checkpoint: Checkpoint, *, delete_new: bool = False
    ) -> tuple[RestorePlan, RestoreResult]:
        """Put the workspace back as it was in ``checkpoint``.

        First a checkpoint of the current state (every file about to be overwritten
        included, ignored or not), so the restore can be undone; then the changed
        and removed files are written back. Files created since are deleted only
        with ``delete_new``; otherwise they are kept and listed.
        """
        with self.locked():
            target = self._entries(checkpoint.tree)
            safety = self._snapshot(
                f"before restoring checkpoint {checkpoint.short}",
                session="",
                turn="",
                extra=list(target),
                prune=False,  # Not before the files are read back: it could take them.
            )
            if safety.checkpoint is None:
                raise CheckpointError(
                    "nothing was restored: the current state could not be saved first ("
                    + "; ".join(safety.notes)
                    + ")"
                )
            current = self._entries(safety.checkpoint.tree)
            plan = self._blocked(self._plan(checkpoint, target, current, safety.notes))
            plan.safety = safety.checkpoint
            result = self._apply(plan, target, current, delete_new)
            self._prune(self.limits.keep, self.limits.max_age_days)
        return plan, result

    def _apply(
        self,
        plan: RestorePlan,
        target: dict[str, Entry],
        current: dict[str, Entry],
        delete_new: bool,
    ) -> RestoreResult:
        result = RestoreResult()
        writes = sorted([*plan.changed, *plan.recreated])
        dirs = _Dirs(self.workspace)
        try:
            if delete_new:
                # Deleted first: a new file may stand where the checkpoint had a directory.
                for path in plan.new_files:
                    try:
                        directory, _, name = path.rpartition("/")
                        os.unlink(name, dir_fd=dirs.open(directory))
                        result.deleted.append(path)
                    except OSError as exc:
                        result.problems.append(f"{shown(path)}: not deleted ({_why(exc)})")
            else:
                result.kept = list(plan.new_files)
            for batch in self._batches(writes, target):
                blobs = self._blobs({target[p].sha for p in batch})
                for path in batch:
                    entry = target[path]
                    try:
                        self._put(dirs, path, entry, blobs[entry.sha], current, delete_new)
                        result.written.append(path)
                    except OSError as exc:
                        result.problems.append(f"{shown(path)}: not restored ({_why(exc)})")
            if delete_new:
                self._remove_empty_dirs(dirs, result.deleted, target)
        finally:
            dirs.close()
        return result

    def _put(
        self,
        dirs: _Dirs,
        path: str,
        entry: Entry,
        data: bytes,
        current: dict[str, Entry],
        delete_new: bool,
    ) -> None:
        directory, _, name = path.rpartition("/")
        dir_fd = self._parent(dirs, directory, current, delete_new)
        if path not in current:
            try:
                os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:  # There now, yet not in the safety checkpoint: it could not be saved.
                raise OSError(
                    errno.EEXIST,
                    "something is there now that could not be saved first (larger than "
                    "checkpoints.max_file_mb, or not a file); it was kept",
                )
        tmp = f".hermes-restore-{os.getpid()}-{os.urandom(4).hex()}"
        if entry.mode == MODE_LINK:
            os.symlink(os.fsdecode(data), tmp, dir_fd=dir_fd)
        else:
            try:
                old_mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
                perm = stat.S_IMODE(old_mode) if stat.S_ISREG(old_mode) else None
            except FileNotFoundError:
                perm = None
            if perm is None:
                perm = 0o666 & ~_umask()
            perm = perm | ((perm & 0o444) >> 2) if entry.mode == MODE_EXEC else perm & ~0o111
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, perm)
            except BaseException:
                os.close(fd)
                os.unlink(tmp, dir_fd=dir_fd)
                raise
            os.close(fd)
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise

    def _parent(
        self, dirs: _Dirs, directory: str, current: dict[str, Entry], delete_new: bool
    ) -> int:
        """The descriptor of ``directory``, created as needed. A file or symlink standing
        where the checkpoint has a directory was created since (the checkpoint cannot
        have both): it is removed only with ``delete_new``, and only when the safety
        checkpoint (``current``) holds it; otherwise the path is refused."""
        if not directory:
            return dirs.fds[""]
        parts = directory.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in dirs.fds:
                continue
            try:
                dirs.open(sub, create=True)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                if sub not in current:
                    raise OSError(
                        errno.EEXIST, f"{shown(sub)} is in the way and is not in a checkpoint"
                    ) from None
                if not delete_new:
                    raise OSError(
                        errno.EEXIST,
                        f"{shown(sub)}, created since the checkpoint, stands where it had a "
                        "directory; it was kept (delete new files to restore this)",
                    ) from None
                parent, _, name = sub.rpartition("/")
                os.unlink(name, dir_fd=dirs.fds[parent])
                dirs.open(sub, create=True)
        return dirs.fds[directory]

    @staticmethod
    def _remove_empty_dirs(dirs: _Dirs, deleted: list[str], target: dict[str, Entry]) -> None:
        keep = {p.rpartition("/")[0] for p in target}
        for path in deleted:
            directory = path.rpartition("/")[0]
            while directory and directory not in keep:
                parent, _, name = directory.rpartition("/")
                try:
                    parent_fd = dirs.open(parent)
                    dirs.forget(directory)
                    os.rmdir(name, dir_fd=parent_fd)
                except OSError:
                    break
                directory = parent

    def _batches(self, paths: list[str], target: dict[str, Entry]) -> Iterator[list[str]]:
        """``paths`` in groups of at most ~64 MB of content: a large restore is never
        held in memory at once."""
        if not paths:
            return
        shas = sorted({target[p].sha for p in paths})
        out = self._git("cat-file", "--batch-check", data="".join(f"{s}\n" for s in shas).encode())
        sizes: dict[str, int] = {}
        for line in out.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                sizes[parts[0]] = int(parts[2])
        batch: list[str] = []
        total = 0
        for path in paths:
            size = sizes.get(target[path].sha, 0)
            if batch and total + size > _RESTORE_BATCH:
                yield batch
                batch, total = [], 0
            batch.append(path)
            total += size
        if batch:
            yield batch

    def _blobs(self, shas: set[str]) -> dict[str, bytes]:
        if not shas:
            return {}
        order = sorted(shas)
        out = self._git("cat-file", "--batch", data="".join(f"{s}\n" for s in order).encode())
        blobs: dict[str, bytes] = {}
        pos = 0
        for sha in order:
            end = out.index(b"\n", pos)
            header = out[pos:end].split(b" ")
            if len(header) != 3 or header[1] != b"blob":
                raise CheckpointError(f"the checkpoint repository lacks object {sha}")
            size = int(header[2])
            blobs[sha] = out[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
        return blobs

    # --- pruning -----------------------------------------------------------------------

    def prune(self, keep: int | None = None, max_age_days: float | None = None) -> int:
        """Remove checkpoints beyond the newest ``keep`` or older than ``max_age_days``
        (the newest always stays); return how many went."""
        if not self.exists():
            return 0
        with self.locked():
            removed = self._prune(
                self.limits.keep if keep is None else keep,
                self.limits.max_age_days if max_age_days is None else max_age_days,
                objects=True,
            )
            if not removed:
                self._drop_objects()  # Left over by earlier prunes, or by a restore's plan.
            return removed

    def _prune(self, keep: int, max_age_days: float, *, objects: bool = False) -> int:
        listed = self._list()
        cutoff = time.time() - max_age_days * 86400 if max_age_days > 0 else None
        gone = [
            c
            for i, c in enumerate(listed)
            if i > 0 and (i >= max(1, keep) or (cutoff is not None and c.created < cutoff))
        ]
        if not gone:
            return 0
        commands = "".join(f"delete {REF_PREFIX}{c.seq:010d} {c.commit}\n" for c in gone)
        self._git("update-ref", "--stdin", data=commands.encode())
        packs = self.git_dir / "objects" / "pack"
        if objects or (packs.is_dir() and len(list(packs.glob("*.pack"))) > _MAX_PACKS):
            self._drop_objects()
        return len(gone)

    def _drop_objects(self) -> None:
        """Delete the objects no checkpoint needs any more (one pack is rewritten, so
        this is done when packs pile up or on `hermes checkpoints prune`)."""
        self._git("repack", "-a", "-d", "-q")
        self._git("prune", "--expire=now")


def _umask() -> int:
    """The process umask, read without setting it (setting it, even back, races with
    threads creating files meanwhile, as the gateway's do)."""
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _few(paths: Sequence[str], limit: int = 5) -> str:
    text = ", ".join(shown(p) for p in paths[:limit])
    return text + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --- the agent's side: one checkpoint per turn ----------------------------------------------


def new_turn(state: dict[str, Any], text: str) -> None:
    """Called by the agent loop when a user message starts a turn."""
    state[TURN_KEY] = {"text": text, "taken": False}


def _wanted(ctx: ToolContext) -> bool:
    if ctx.state.get(OFF_KEY):
        return False
    turn = ctx.state.setdefault(TURN_KEY, {"text": "", "taken": False})
    if turn.get("taken"):
        return False
    return Limits.from_config(ctx.config).enabled


async def before_change(ctx: ToolContext, what: str) -> str:
    """Take this turn's checkpoint if it is not taken yet; return a note for the tool's
    result when something was left out or the checkpoint failed ("" otherwise)."""
    if not _wanted(ctx):
        return ""
    import asyncio

    turn = ctx.state[TURN_KEY]
    turn["taken"] = True
    limits = Limits.from_config(ctx.config)

    def take() -> Snapshot:
        store = Store(ctx.cwd, limits)
        return store.snapshot(what, session=ctx.session_id, turn=str(turn.get("text", "")))

    try:
        snap = await asyncio.to_thread(take)
    except (HermesError, OSError, subprocess.SubprocessError, ValueError) as exc:
        # The change goes ahead: a checkpoint is a safety net, not a gate. Said once.
        reason = str(exc) if isinstance(exc, HermesError) else f"{type(exc).__name__}: {exc}"
        ctx.state[OFF_KEY] = reason
        return f"\n[no checkpoint of the workspace could be taken: {shown(reason)}]"
    if snap.checkpoint is None and any("max_files" in n for n in snap.notes):
        ctx.state[OFF_KEY] = snap.notes[0]  # The walk alone is costly: not every turn.
    return "".join(f"\n[{note}]" for note in snap.notes)


async def before_command(ctx: ToolContext, command: str) -> str:
    """:func:`before_change` for a terminal command, unless the classifier knows it only
    reads (then the workspace cannot change and no checkpoint is needed)."""
    if not _wanted(ctx):
        return ""
    if str(ctx.config.get("terminal.backend") or "local") == "ssh":
        return ""  # The command runs on another machine, not in this workspace.
    from hermes_agent.safety.gate import classify

    if classify(command, cwd=ctx.cwd).read_only:
        return ""
    return await before_change(ctx, f"terminal: {command}")


# --- words for the front ends -----------------------------------------------------------------


def ago(created: float, now: float | None = None) -> str:
    seconds = max(0, int((now or time.time()) - created))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def describe(number: int, checkpoint: Checkpoint) -> str:
    """One line of a listing: number, id, age, what it preceded, the turn's message."""
    line = f"{number:>3}  {checkpoint.short}  {ago(checkpoint.created):>10}  "
    line += shown(checkpoint.reason)
    if checkpoint.turn:
        line += f'  ("{shown(checkpoint.turn[:60])}")'
    if checkpoint.skipped:
        line += "  [some files left out]"
    return line


def _listed(title: str, paths: Sequence[str], limit: int = 30) -> list[str]:
    if not paths:
        return []
    lines = [f"{title} ({len(paths)}):"]
    lines += [f"  {shown(p)}" for p in paths[:limit]]
    if len(paths) > limit:
        lines.append(f"  ... and {len(paths) - limit} more")
    return lines


def describe_plan(plan: RestorePlan) -> str:
    """What a restore would do, for the user to read before saying yes."""
    target = plan.target
    lines = [f"Restore the workspace to checkpoint {target.short} ({ago(target.created)}):"]
    lines += _listed("put back as they were", plan.changed)
    lines += _listed("written again (removed since)", plan.recreated)
    lines += _listed(
        "created since the checkpoint: KEPT unless you ask to delete them", plan.new_files
    )
    lines += [f"note: {shown(n)}" for n in plan.notes]
    if plan.empty:
        lines.append("The workspace already matches this checkpoint: nothing to change.")
    return "\n".join(lines)


def describe_result(plan: RestorePlan, result: RestoreResult) -> str:
    lines = [f"restored {len(result.written)} file(s) from checkpoint {plan.target.short}"]
    if result.deleted:
        lines += _listed("deleted (created since the checkpoint)", result.deleted)
    if result.kept:
        lines += _listed("kept (created since the checkpoint)", result.kept)
    lines += [f"problem: {p}" for p in result.problems]
    if plan.safety is not None:
        lines.append(
            f"the state before this restore is checkpoint {plan.safety.short}: restore it "
            "to undo this"
        )
    return "\n".join(lines)


#: What ``/rollback`` takes as its checkpoint: a number (1 = newest) or a commit id prefix.
_WHICH = re.compile(r"[0-9]{1,5}|[0-9a-f]{6,40}")


async def rollback_command(cwd: Path | str, config: Config, arg: str) -> str:
    """``/rollback [N] [yes] [delete-new]`` where nobody can be asked mid-command (a gateway
    chat, an editor over ACP): without ``yes`` it shows what going back to checkpoint N
    would change and how to confirm; with ``yes`` it restores (``delete-new`` also deletes
    the files created since). The confirmation is a second message naming the same
    checkpoint by its id (a number would name another one once a newer checkpoint is
    taken); N may be a number or an id.
    """
    import asyncio

    words = arg.split()
    # ASCII only: str.isdigit() also takes "²", which int() then refuses (a traceback).
    which = words.pop(0) if words and _WHICH.fullmatch(words[0].lower()) else "1"
    flags = {w.lower() for w in words}
    if flags - {"yes", "delete-new"} or which.strip("0") == "":
        return "usage: /rollback [N|ID] [yes] [delete-new] (1 = the newest checkpoint)"
    store = Store(Path(cwd), Limits.from_config(config))
    try:
        checkpoint = await asyncio.to_thread(store.resolve, which.lower())
        if "yes" not in flags:
            plan = await asyncio.to_thread(store.plan, checkpoint)
            text = describe_plan(plan)
            if plan.empty:
                return text
            # The confirmation names the checkpoint by its id, not its number: numbers
            # shift when a new checkpoint is taken (a /background run, another chat on
            # the same workspace), and "yes" must restore the plan that was shown.
            ident = checkpoint.short
            confirm = f"Send /rollback {ident} yes to restore"
            if plan.new_files:
                confirm += f" (/rollback {ident} yes delete-new also deletes the new files)"
            return f"{text}\n{confirm}."
        plan, result = await asyncio.to_thread(
            store.restore, checkpoint, delete_new="delete-new" in flags
        )
    except HermesError as exc:
        return str(exc)
    return describe_result(plan, result)
