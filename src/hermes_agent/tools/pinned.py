"""Opening exactly the file the guard checked, even when the path changes meanwhile.

The guard resolves a path (every symlink followed) and decides on the result;
the file tools then open that resolved path. Between the two a command of the
same session (a background process in the workspace) can swap a directory on
the way for a symlink to ``HERMES_HOME``: opened by name, the path would lead
somewhere the guard never saw. The kernel sandbox cannot help, because the
file tools run in hermes' own process.

So the tools open the resolved path one component at a time from ``/``, each
relative to the directory opened before it, with ``O_NOFOLLOW``: the resolved
path has no symlink in it, so one that appears later makes the open fail
instead of being followed. A write goes to a temp file in the directory so
opened and is renamed over the name there, atomically; a symlink that took
the final name's place is replaced, never followed. Errors are
:class:`PathChanged` (the race) or the :class:`OSError` of the operation.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

#: Open a directory only to walk through it (Linux: O_PATH, which needs no read right).
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_MODE = 0o644


class PathChanged(OSError):
    """A symlink (or something that is not a directory) appeared on the checked path."""


@contextlib.contextmanager
def directory(path: Path, *, create: bool = False) -> Iterator[int]:
    """A descriptor of the directory ``path`` (absolute, already resolved), walked from
    ``/`` without following any symlink; missing directories are made when ``create``
    (with the user's umask, like any directory they make)."""
    if not path.is_absolute():
        raise ValueError(f"not an absolute path: {path}")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.parts[1:]:
            try:
                step = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                step = _step(part, fd)
            except OSError as exc:
                if _is_link(part, fd) or isinstance(exc, NotADirectoryError):
                    raise PathChanged(
                        f"{part} on the way to {path} is no longer a directory"
                    ) from None
                raise
            os.close(fd)
            fd = step
        yield fd
    finally:
        os.close(fd)


def _step(part: str, fd: int) -> int:
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError:
        if _is_link(part, fd):
            raise PathChanged(f"{part} became a symlink while it was being made") from None
        raise


def _is_link(name: str, fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_read(path: Path) -> tuple[int, os.stat_result]:
    """A read descriptor of the regular file ``path`` and its status, opened as above.

    Non-blocking, so a FIFO swapped in cannot hang the tool; the caller gets the
    status to check (a regular file, which inode) on what was really opened.
    """
    with directory(path.parent) as parent:
        try:
            fd = os.open(
                path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent
            )
        except OSError:
            if _is_link(path.name, parent):
                raise PathChanged(f"{path} became a symlink after it was checked") from None
            raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise PathChanged(f"{path} is no longer a regular file")
    os.set_blocking(fd, True)
    return fd, info


def read_bytes(path: Path) -> tuple[bytes, os.stat_result]:
    """The whole content of ``path`` (opened as :func:`open_read`) and its status."""
    fd, info = open_read(path)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), info


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace (or create) ``path`` with ``data`` in the directory the walk reaches.

    An existing file keeps its permissions; a new one is 0644. Returns whether
    the file existed. The temp file is removed on any failure, leaving the old
    file as it was.
    """
    with directory(path.parent, create=True) as parent:
        name = path.name
        try:
            old = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISLNK(old.st_mode):
            raise PathChanged(f"{path} became a symlink after it was checked")
        if old is not None and not stat.S_ISREG(old.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        mode = stat.S_IMODE(old.st_mode) if old is not None else _NEW_FILE_MODE
        temp = f".{name[:64]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=parent,
        )
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
        with contextlib.suppress(OSError):
            sync = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
            try:
                os.fsync(sync)
            finally:
                os.close(sync)
        return old is not None
