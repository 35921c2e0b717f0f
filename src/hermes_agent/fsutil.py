"""Atomic file writes: a reader sees the old file or the new one, never half.

Every file under HERMES_HOME is written through :func:`atomic_write`: a
temporary file in the same directory (so the rename never crosses a file
system), ``fsync``, ``os.replace``, then ``fsync`` of the directory so the
rename itself survives a power cut. The file keeps the mode it had; a new file
gets the mode the caller asks for (0600 for secrets).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from hermes_agent.errors import HermesError
from hermes_agent.home import SECRET_FILE_MODE, ensure_dir


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode`` applies when the file is new; an existing file keeps its mode
    (a user who made config.yaml 0600 keeps it so). Missing parent
    directories are created 0700. Failure raises :class:`HermesError` naming
    the path, and leaves the old file untouched.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    parent = ensure_dir(path.parent)
    try:
        keep = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        keep = mode
    except OSError as exc:
        raise _write_error(path, exc) from None
    tmp_name = ""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, keep)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        os.replace(tmp_name, path)
        tmp_name = ""
        _fsync_dir(parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def write_secret(path: Path, data: str | bytes) -> None:
    """Write a file that holds secrets: created 0600, and forced back to 0600.

    Unlike :func:`atomic_write`, a secret file that somebody loosened is
    tightened again: a group-readable ``.env`` is a leak, not a preference.
    """
    atomic_write(path, data, mode=SECRET_FILE_MODE)
    try:
        if stat.S_IMODE(path.stat().st_mode) != SECRET_FILE_MODE:
            os.chmod(path, SECRET_FILE_MODE)
    except OSError as exc:
        raise _write_error(path, exc) from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Not every platform lets a directory be opened; the data is already synced.
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> HermesError:
    return HermesError(f"cannot write {path}: {exc.strerror or exc}")
