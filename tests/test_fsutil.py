"""Atomic writes: readers see the old or the new file, never a mix; modes are kept."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from hermes_agent.errors import HermesError
from hermes_agent.fsutil import atomic_write, write_secret


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_requested_mode_and_parents_are_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write(target, "hello", mode=0o640)
    assert target.read_text() == "hello"
    assert mode(target) == 0o640
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("old")
    os.chmod(target, 0o604)
    atomic_write(target, "new", mode=0o600)
    assert target.read_text() == "new"
    assert mode(target) == 0o604


def test_secret_is_0600_even_when_it_was_loosened(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    write_secret(target, "A=1\n")
    assert mode(target) == 0o600
    os.chmod(target, 0o644)
    write_secret(target, "A=2\n")
    assert mode(target) == 0o600
    assert target.read_text() == "A=2\n"


def test_failure_leaves_old_file_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("old contents")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(HermesError, match=f"cannot write {target}: No space left on device"):
        atomic_write(target, "new contents")
    monkeypatch.undo()
    assert target.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_unwritable_location_is_reported_by_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(HermesError, match=f"cannot create directory {blocker}/sub"):
        atomic_write(blocker / "sub" / "file", "x")


def test_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "state.yaml"
    versions = [(chr(ord("a") + i) * 200_000) for i in range(6)]
    atomic_write(target, versions[0])
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(20):
            for text in versions:
                atomic_write(target, text)
    finally:
        stop.set()
        thread.join()
    assert seen <= set(versions), "a reader saw a file that was never written whole"
