"""Checkpoints and rollback, on real workspaces changed by the real tools.

The terminal commands run through the terminal tool, confined by the kernel
where the machine allows it (as in test_terminal_tool.py); files are written
through the file tools' handlers; the shadow repository is real git. The
hostile-workspace tests give the workspace what an attacker controls (its
.gitattributes, its .git/config, symlinks and hard links to outside, file
names that look like options) and check that nothing runs and nothing
outside the workspace is read or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml

from hermes_agent import checkpoints
from hermes_agent.checkpoints import Limits, Store
from hermes_agent.config.loader import load_config
from hermes_agent.providers.base import ToolCall
from hermes_agent.safety import sandbox
from hermes_agent.safety.gate import classify
from hermes_agent.state.db import StateDB
from hermes_agent.tools import terminal as term
from hermes_agent.tools.registry import ToolContext, builtin_registry, dispatch


class User:
    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)

    async def __call__(self, question: str, choices: Sequence[str]) -> str | None:
        return self.answers.pop(0) if self.answers else "yes"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def configure(hermes_home: Path, **settings: Any) -> None:
    tree: dict[str, Any] = {}
    for dotted, value in settings.items():
        node = tree
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    hermes_home.mkdir(parents=True, exist_ok=True)
    (hermes_home / "config.yaml").write_text(yaml.safe_dump(tree))


@pytest.fixture
def make_ctx(hermes_home: Path, ws: Path) -> Iterator[Any]:
    made: list[ToolContext] = []

    def make(**settings: Any) -> ToolContext:
        configure(hermes_home, **settings)
        ctx = ToolContext("sess", str(ws), load_config(), StateDB(), ask=User())
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        term.cleanup(ctx.state)
        ctx.db.close()


TOOLS = {t.name: t for t in builtin_registry().select(["file", "terminal"])}


def call(ctx: ToolContext, name: str, **args: Any) -> str:
    result = asyncio.run(dispatch(ToolCall("c1", name, json.dumps(args)), TOOLS, ctx))
    assert not result.is_error, result.content
    return str(result.content)


def store_of(ctx: ToolContext) -> Store:
    return Store(ctx.cwd, Limits.from_config(ctx.config))


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry below ``root`` (links not followed): mode and content digest."""
    found: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                digest = "link:" + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = "dir"
            found[str(path.relative_to(root))] = (st.st_mode, digest)
    return found


# --- the agent's side ---------------------------------------------------------------------


def test_rollback_over_a_real_terminal_command_and_write_file(make_ctx: Any, ws: Path) -> None:
    (ws / "a.txt").write_text("original a\n")
    (ws / "b.txt").write_text("original b\n")
    (ws / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (ws / "run.sh").chmod(0o755)
    ctx = make_ctx()
    checkpoints.new_turn(ctx.state, "please refactor")
    call(ctx, "write_file", path="a.txt", content="rewritten by the model\n")
    out = call(
        ctx,
        "terminal",
        command="echo changed > b.txt && rm run.sh && mkdir -p made && echo n > made/new.txt",
    )
    assert "exit 0" in out or "exit code 0" in out or "[" in out
    if sandbox.active(ctx.config):  # The command really ran confined.
        assert "sandbox" in sandbox.describe(ctx.config)
    store = store_of(ctx)
    listed = store.listing()
    assert len(listed) == 1  # Only the turn's first change took one.
    assert listed[0].turn == "please refactor"
    assert listed[0].reason.startswith("write_file")
    assert listed[0].session == "sess"

    plan, result = store.restore(listed[0])
    assert sorted(plan.changed) == ["a.txt", "b.txt"]
    assert plan.recreated == ["run.sh"]
    assert plan.new_files == ["made/new.txt"]
    assert (ws / "a.txt").read_text() == "original a\n"
    assert (ws / "b.txt").read_text() == "original b\n"
    assert os.access(ws / "run.sh", os.X_OK)
    assert (ws / "made" / "new.txt").read_text() == "n\n"  # Kept: created since.
    assert result.kept == ["made/new.txt"] and not result.problems
    text = checkpoints.describe_result(plan, result)
    assert "kept" in text and "made/new.txt" in text

    # The restore took a checkpoint of what it replaced: restoring it undoes the restore.
    assert plan.safety is not None
    undo_plan, _ = store.restore(store.resolve(plan.safety.short))
    assert (ws / "a.txt").read_text() == "rewritten by the model\n"
    assert undo_plan.new_files == ["run.sh"]  # Recreated by the restore: kept unless asked.
    store.restore(store.resolve(plan.safety.short), delete_new=True)
    assert not (ws / "run.sh").exists()

    # Asked to, the files created since go too (and their emptied directory).
    plan, result = store.restore(listed[0], delete_new=True)
    assert result.deleted == ["made/new.txt"]
    assert not (ws / "made").exists()


def test_one_checkpoint_per_turn_and_none_for_read_only_commands(make_ctx: Any, ws: Path) -> None:
    (ws / "f.txt").write_text("1")
    ctx = make_ctx()
    checkpoints.new_turn(ctx.state, "look around")
    call(ctx, "terminal", command="ls -la && cat f.txt | wc -c")
    assert not store_of(ctx).exists()  # Read-only: nothing to undo, no checkpoint.
    call(ctx, "terminal", command="echo 2 > f.txt")
    call(ctx, "write_file", path="g.txt", content="g")
    assert len(store_of(ctx).listing()) == 1
    checkpoints.new_turn(ctx.state, "again")
    call(ctx, "patch", path="f.txt", old="2", new="3")
    listed = store_of(ctx).listing()
    assert [c.turn for c in listed] == ["again", "look around"]
    # A turn whose workspace equals the newest checkpoint adds none.
    checkpoints.new_turn(ctx.state, "third")
    store_of(ctx).snapshot("manual")
    checkpoints.new_turn(ctx.state, "fourth")
    call(ctx, "write_file", path="h.txt", content="h")
    assert len(store_of(ctx).listing()) == 3


def test_the_checkpoints_are_as_unreadable_as_hermes_secrets(
    make_ctx: Any, ws: Path, hermes_home: Path
) -> None:
    # A workspace of ~ puts copies of ~/.ssh keys and the like into the checkpoints:
    # neither a confined command nor the file tools may read them there.
    (ws / "notes.txt").write_text("CANARY-7d1f\n")
    ctx = make_ctx()
    checkpoints.new_turn(ctx.state, "t")
    call(ctx, "write_file", path="other.txt", content="x")
    repo = store_of(ctx).git_dir
    marker = repo / "hermes-workspace"  # Holds the workspace's path.
    result = asyncio.run(
        dispatch(ToolCall("r", "read_file", json.dumps({"path": str(marker)})),
                 TOOLS, ctx)
    )  # fmt: skip
    assert result.is_error and str(ws) not in str(result.content)
    if not sandbox.active(ctx.config):
        pytest.skip("no kernel sandbox on this machine: the file tools' part was checked")
    probe = (
        'python3 -c "import sys\n'
        # Spelled so that the classifier cannot see the path: the kernel must stop it.
        f"try:\n print(open(bytes.fromhex('{bytes(marker).hex()}').decode()).read())\n"
        "except OSError as e:\n print('denied', e.errno)\""
    )
    result = asyncio.run(
        dispatch(ToolCall("t", "terminal", json.dumps({"command": probe})), TOOLS, ctx)
    )
    assert str(ws) not in str(result.content)
    assert result.is_error or "denied" in str(result.content)


def test_disabled_by_config(make_ctx: Any) -> None:
    ctx = make_ctx(checkpoints__enabled=False)
    checkpoints.new_turn(ctx.state, "x")
    call(ctx, "write_file", path="a.txt", content="a")
    assert not store_of(ctx).exists()


def test_read_only_verdicts() -> None:
    for command in ("ls -la", "cat a | grep b | head", "cat a 2>/dev/null", "echo hi >&2"):
        assert classify(command, cwd="/tmp").read_only, command
    for command in (
        "cat a > b",
        "echo $(rm x)",
        "env rm x",
        "git status",
        "uniq a b",
        "tree -o out",
        "ls | xargs rm",
        "x=rm; $x f",
        "python3 -c 'print(1)'",
        "sed -i s/a/b/ f",
    ):
        assert not classify(command, cwd="/tmp").read_only, command


# --- what a snapshot holds ------------------------------------------------------------------


def test_ignore_rules_honoured_and_the_users_git_untouched(hermes_home: Path, ws: Path) -> None:
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    (ws / ".gitignore").write_text("*.log\nbuild/\n")
    (ws / "keep.txt").write_text("keep")
    (ws / "noise.log").write_text("noise")
    (ws / "build").mkdir()
    (ws / "build" / "out.bin").write_bytes(b"\0" * 10)
    subprocess.run(["git", "-C", str(ws), "add", "keep.txt"], check=True)
    before = tree_digest(ws / ".git")
    store = Store(ws)
    snap = store.snapshot("test")
    assert snap.checkpoint is not None
    (ws / "keep.txt").write_text("changed")
    (ws / "noise.log").write_text("changed noise")
    plan, _ = store.restore(snap.checkpoint)
    assert plan.changed == ["keep.txt"] and not plan.new_files
    assert (ws / "keep.txt").read_text() == "keep"
    assert (ws / "noise.log").read_text() == "changed noise"  # Ignored: never touched.
    assert tree_digest(ws / ".git") == before  # Byte for byte, index included.
    listed = subprocess.run(
        ["git", f"--git-dir={store.git_dir}", "ls-tree", "-r", "--name-only", snap.checkpoint.tree],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == [".gitignore", "keep.txt"]


def test_nested_repositories_are_included_by_their_own_rules(hermes_home: Path, ws: Path) -> None:
    proj = ws / "proj"
    subprocess.run(["git", "init", "-q", str(proj)], check=True)
    (proj / ".gitignore").write_text("*.log\n")
    (proj / "code.py").write_text("print(1)\n")
    (proj / "debug.log").write_text("noise")
    (proj / "deep").mkdir()
    subprocess.run(["git", "init", "-q", str(proj / "deep")], check=True)
    (proj / "deep" / "inner.txt").write_text("inner")
    (ws / "top.txt").write_text("top")
    before = tree_digest(proj / ".git")
    store = Store(ws)
    snap = store.snapshot("nested")
    assert snap.checkpoint is not None and not snap.notes
    assert sorted(store._entries(snap.checkpoint.tree)) == [
        "proj/.gitignore",
        "proj/code.py",
        "proj/deep/inner.txt",
        "top.txt",
    ]
    (proj / "code.py").write_text("broken\n")
    (proj / "deep" / "inner.txt").unlink()
    store.restore(snap.checkpoint)
    assert (proj / "code.py").read_text() == "print(1)\n"
    assert (proj / "deep" / "inner.txt").read_text() == "inner"
    assert tree_digest(proj / ".git") == before


def test_size_limits_and_notes(make_ctx: Any, ws: Path) -> None:
    (ws / "small.txt").write_text("s")
    (ws / "huge.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    ctx = make_ctx(checkpoints__max_file_mb=1)
    checkpoints.new_turn(ctx.state, "t")
    out = call(ctx, "write_file", path="small.txt", content="S")
    assert "left out of the checkpoint" in out and "huge.bin" in out
    (checkpoint,) = store_of(ctx).listing()
    assert checkpoint.skipped
    assert "left out" in checkpoints.describe(1, checkpoint)
    huge = (ws / "huge.bin").read_bytes()
    plan, _ = store_of(ctx).restore(checkpoint)
    assert plan.changed == ["small.txt"] and "huge.bin" not in plan.new_files
    assert (ws / "huge.bin").read_bytes() == huge
    # A file that has grown past the limit cannot be saved first: it is not overwritten.
    (ws / "grown.bin").write_bytes(b"small")
    snap = store_of(ctx).snapshot("before growth")
    assert snap.checkpoint is not None
    (ws / "grown.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    grown = (ws / "grown.bin").read_bytes()
    plan, result = store_of(ctx).restore(snap.checkpoint)
    assert not plan.recreated and not result.problems
    assert "could not be saved first" in checkpoints.describe_plan(plan)
    assert (ws / "grown.bin").read_bytes() == grown

    ctx = make_ctx(checkpoints__max_total_mb=0.001)
    checkpoints.new_turn(ctx.state, "t2")
    (ws / "more.txt").write_text("x" * 5000)
    out = call(ctx, "write_file", path="small.txt", content="T")
    assert "checkpoint skipped" in out and "max_total_mb" in out

    ctx = make_ctx(checkpoints__max_files=2)
    checkpoints.new_turn(ctx.state, "t3")
    out = call(ctx, "write_file", path="small.txt", content="U")
    assert "checkpoint skipped" in out and "max_files" in out
    checkpoints.new_turn(ctx.state, "t4")  # Not walked again in this session.
    assert "checkpoint" not in call(ctx, "write_file", path="small.txt", content="V")


# --- a hostile workspace -----------------------------------------------------------------------


def test_filters_hooks_and_config_of_the_workspace_never_run(
    hermes_home: Path, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "PWNED"
    evil = f"touch {marker}"
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    with (ws / ".git" / "config").open("a") as handle:
        handle.write(
            f'[filter "evil"]\n\tclean = {evil}\n\tsmudge = {evil}\n\trequired = true\n'
            f'[core]\n\tfsmonitor = {evil}\n[diff "evil"]\n\ttextconv = {evil}\n'
        )
    hooks = ws / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("pre-commit", "post-commit", "post-checkout", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\n{evil}\n")
        (hooks / hook).chmod(0o755)
    # The user's own git configuration, and config passed in the environment.
    fake_home = tmp_path / "userhome"
    fake_home.mkdir()
    (fake_home / ".gitconfig").write_text(f'[filter "evil"]\n\tclean = {evil}\n')
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "filter.evil.clean")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", evil)
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='{evil}'")
    (ws / ".gitattributes").write_text(
        "* filter=evil diff=evil ident\n*.txt eol=crlf\n*.enc working-tree-encoding=UTF-16\n"
    )
    content = {
        "a.txt": b"line one\nline two\r\nmixed $Id$\n",
        "b.enc": b"\xff\xfe not utf-16 at all \x00",
        "c.bin": bytes(range(256)),
        "esc.md": b"\x1b]52;c;cGF5bG9hZA==\x07 \x1b[2J text\n",
    }
    for name, data in content.items():
        (ws / name).write_bytes(data)
    store = Store(ws)
    snap = store.snapshot("hostile")
    assert snap.checkpoint is not None
    for name in content:
        (ws / name).write_bytes(b"overwritten")
    shown_diff = store.diff(snap.checkpoint)
    assert "esc.md" in shown_diff and "\x1b" not in shown_diff  # Cannot drive the terminal.
    store.restore(snap.checkpoint)
    for name, data in content.items():
        assert (ws / name).read_bytes() == data, name  # Byte for byte: no conversion.
    assert not marker.exists()


def test_a_git_program_in_the_workspace_is_never_run(
    hermes_home: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for where in (ws, ws / "bin"):
        where.mkdir(exist_ok=True)
        fake = where / "git"
        fake.write_text(f"#!/bin/sh\ntouch {ws}/PWNED\nexit 1\n")
        fake.chmod(0o755)
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{ws}/bin:.::{path}")
    (ws / "a.txt").write_text("a")
    monkeypatch.chdir(ws)
    snap = Store(ws).snapshot("t")
    assert snap.checkpoint is not None
    assert not (ws / "PWNED").exists()


def test_symlinks_and_hard_links_to_outside_are_never_followed(
    hermes_home: Path, ws: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    (outside / "file.txt").write_text("outside file")
    before = tree_digest(outside)
    (ws / "sub").mkdir()
    (ws / "sub" / "file.txt").write_text("inside")
    (ws / "link-to-secret").symlink_to(outside / "secret.txt")
    (ws / "link-to-dir").symlink_to(outside)
    os.link(outside / "file.txt", ws / "hard.txt")
    store = Store(ws)
    snap = store.snapshot("links")
    assert snap.checkpoint is not None
    blobs = subprocess.run(
        ["git", f"--git-dir={store.git_dir}", "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"TOP SECRET" not in blobs  # Links are stored as links.

    # The agent swaps a directory for a link to outside, and edits through the hard link.
    (ws / "sub" / "file.txt").unlink()
    (ws / "sub").rmdir()
    (ws / "sub").symlink_to(outside)
    (ws / "hard.txt").write_text("changed via workspace")  # (outside's file shares it)
    before = tree_digest(outside)
    plan, result = store.restore(snap.checkpoint)
    assert tree_digest(outside) == before  # Nothing written through the link.
    assert "sub" in plan.new_files and any("sub" in p for p in result.problems)
    assert (ws / "sub").is_symlink()  # Kept: it was created since, and not asked.

    plan, result = store.restore(snap.checkpoint, delete_new=True)
    assert not result.problems, result.problems
    assert tree_digest(outside) == before
    assert (ws / "sub").is_dir() and not (ws / "sub").is_symlink()
    assert (ws / "sub" / "file.txt").read_text() == "inside"
    assert os.readlink(ws / "link-to-secret") == str(outside / "secret.txt")
    # The hard link was replaced, not written into: outside keeps what it had.
    assert (ws / "hard.txt").read_text() == "outside file"
    assert (outside / "file.txt").read_text() == "changed via workspace"


def test_a_link_swapped_in_during_the_restore_is_not_written_through(
    hermes_home: Path, ws: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "d").mkdir()
    for i in range(200):
        (ws / "d" / f"f{i}.txt").write_text(f"v{i}")
    store = Store(ws)
    snap = store.snapshot("race")
    assert snap.checkpoint is not None
    for i in range(200):
        (ws / "d" / f"f{i}.txt").write_text("changed")
    stop = threading.Event()

    def swap() -> None:  # What a background process of the agent could do.
        while not stop.is_set():
            try:
                os.rename(ws / "d", ws / "d.real")
                os.symlink(outside, ws / "d")
                os.unlink(ws / "d")
                os.rename(ws / "d.real", ws / "d")
            except OSError:
                pass

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        for _ in range(5):
            # Each file lands in the real directory or is refused; a refusal is fine.
            with contextlib.suppress(checkpoints.CheckpointError):
                store.restore(snap.checkpoint)
    finally:
        stop.set()
        thread.join()
    assert list(outside.iterdir()) == []


def test_names_like_options_and_odd_bytes(hermes_home: Path, ws: Path, tmp_path: Path) -> None:
    marker = ws / "pwned"  # git runs in the workspace: a relative touch lands here.
    names = [
        "--exec=touch pwned",
        "-rf",
        "--output=x",
        ":(exclude)a",
        "new\nline",
        "tab\tname",
        "*",
        "\x1b[31mred",
    ]
    for name in names:
        (ws / name).write_text(name)
    raw = os.fsencode(ws) + b"/latin1-\xe9"
    with open(raw, "wb") as handle:
        handle.write(b"latin")
    store = Store(ws)
    snap = store.snapshot("names")
    assert snap.checkpoint is not None
    for name in names:
        (ws / name).write_text("changed")
    with open(raw, "wb") as handle:
        handle.write(b"changed")
    plan, result = store.restore(snap.checkpoint)
    assert not result.problems
    for name in names:
        assert (ws / name).read_text() == name
    with open(raw, "rb") as handle:
        assert handle.read() == b"latin"
    assert not marker.exists()
    text = checkpoints.describe_plan(plan)
    assert "\x1b" not in text and "new\\x0aline" in text  # Names cannot forge lines.


def test_a_fifo_where_git_reads_ignore_rules_does_not_hang_the_turn(
    make_ctx: Any, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(ws / ".gitignore")
    monkeypatch.setattr(checkpoints, "LIST_TIMEOUT", 1.0)
    ctx = make_ctx()
    checkpoints.new_turn(ctx.state, "t")
    out = call(ctx, "write_file", path="a.txt", content="a")
    assert "no checkpoint of the workspace could be taken" in out and "FIFO" in out
    assert (ws / "a.txt").read_text() == "a"  # The change itself went ahead.
    checkpoints.new_turn(ctx.state, "t2")  # Not tried again in this session.
    assert "checkpoint" not in call(ctx, "write_file", path="a.txt", content="b")


def test_more_directories_than_a_process_may_hold_open(hermes_home: Path, ws: Path) -> None:
    import resource

    count = 900
    for i in range(count):
        (ws / f"d{i:05d}").mkdir()
        (ws / f"d{i:05d}" / "f.txt").write_text(str(i))
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, limits[1]))  # Fewer than directories.
    try:
        store = Store(ws)
        snap = store.snapshot("many")
        assert snap.checkpoint is not None
        assert len(store._entries(snap.checkpoint.tree)) == count
        for i in range(0, count, 97):
            (ws / f"d{i:05d}" / "f.txt").write_text("changed")
        _, result = store.restore(snap.checkpoint)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    assert len(result.written) == len(range(0, count, 97)) and not result.problems
    assert (ws / "d00097" / "f.txt").read_text() == "97"


def test_names_a_file_system_may_read_as_dot_git_are_never_restored() -> None:
    from hermes_agent.checkpoints import _valid_path

    for bad in (".git/hooks/x", "a/.GIT/config", ".g\u200cit/hooks/x", ".git. /x", "GIT~1/x"):
        assert not _valid_path(bad), bad
    for good in ("git/x", ".gitignore", "a/.github/workflows/ci.yml", "x.git", "digit"):
        assert _valid_path(good), good


def test_a_directory_where_the_checkpoint_had_a_file(hermes_home: Path, ws: Path) -> None:
    (ws / "x").write_text("file x")
    store = Store(ws)
    snap = store.snapshot("t")
    assert snap.checkpoint is not None
    (ws / "x").unlink()
    (ws / "x").mkdir()
    (ws / "x" / "inner.txt").write_text("user's new work")
    plan, _ = store.restore(snap.checkpoint)
    assert plan.new_files == ["x/inner.txt"] and not plan.recreated
    assert any("kept as they are" in n and "x" in n for n in plan.notes)
    assert (ws / "x" / "inner.txt").read_text() == "user's new work"


def test_hermes_home_inside_the_workspace_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "userhome"
    (ws / ".hermes").mkdir(parents=True)
    monkeypatch.setenv("HERMES_HOME", str(ws / ".hermes"))
    (ws / ".hermes" / ".env").write_text("OPENAI_API_KEY=sk-secret\n")
    (ws / "work.txt").write_text("w")
    store = Store(ws)
    snap = store.snapshot("t")
    assert snap.checkpoint is not None
    assert store.git_dir.is_relative_to(ws / ".hermes")
    (ws / "work.txt").write_text("x")
    plan = store.plan(snap.checkpoint)
    assert plan.changed == ["work.txt"] and not plan.new_files
    with pytest.raises(checkpoints.CheckpointError, match="HERMES_HOME itself"):
        Store(ws / ".hermes").snapshot("t")
    # A checkpoint from when HERMES_HOME lived elsewhere (then moved into the workspace,
    # its checkpoints with it) never writes into it.
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "elsewhere"))
    old = Store(ws).snapshot("when .hermes was a plain directory")
    assert old.checkpoint is not None
    shutil.rmtree(ws / ".hermes" / "checkpoints")
    shutil.copytree(tmp_path / "elsewhere" / "checkpoints", ws / ".hermes" / "checkpoints")
    monkeypatch.setenv("HERMES_HOME", str(ws / ".hermes"))
    (ws / ".hermes" / ".env").write_text("OPENAI_API_KEY=sk-new\n")
    Store(ws).restore(old.checkpoint)
    assert (ws / ".hermes" / ".env").read_text() == "OPENAI_API_KEY=sk-new\n"


# --- pruning ---------------------------------------------------------------------------------


def test_a_large_restore_goes_in_batches(
    hermes_home: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "_RESTORE_BATCH", 3000)  # ~3 files of 1 KB a batch
    data = {f"f{i:02d}.bin": os.urandom(1000) for i in range(20)}
    for name, content in data.items():
        (ws / name).write_bytes(content)
    store = Store(ws)
    snap = store.snapshot("t")
    assert snap.checkpoint is not None
    for name in data:
        (ws / name).write_bytes(b"changed")
    _, result = store.restore(snap.checkpoint)
    assert len(result.written) == 20 and not result.problems
    assert all((ws / name).read_bytes() == content for name, content in data.items())


def test_prune_keeps_the_newest_and_drops_their_objects(hermes_home: Path, ws: Path) -> None:
    store = Store(ws, Limits(keep=3))
    for i in range(5):
        (ws / "f.txt").write_text(f"version {i}")
        store.snapshot(f"v{i}")
    listed = store.listing()
    assert [c.reason for c in listed] == ["v4", "v3", "v2"]
    # Objects go when packs pile up, or when asked (`hermes checkpoints prune`).
    assert store.prune() == 0
    git = ["git", f"--git-dir={store.git_dir}", "cat-file", "-e"]
    gone = hashlib.sha1(b"blob 9\0version 0", usedforsecurity=False).hexdigest()
    kept = hashlib.sha1(b"blob 9\0version 2", usedforsecurity=False).hexdigest()
    assert subprocess.run([*git, gone], capture_output=True).returncode != 0
    assert subprocess.run([*git, kept]).returncode == 0
    assert store.prune(keep=1) == 2
    assert [c.reason for c in store.listing()] == ["v4"]
    # Unchanged files are still found after a prune (the stat cache is checked).
    (ws / "g.txt").write_text("g")
    snap = store.snapshot("after prune")
    assert snap.checkpoint is not None
    (ws / "f.txt").write_text("later")
    store.restore(snap.checkpoint)
    assert (ws / "f.txt").read_text() == "version 4"


# --- the command line --------------------------------------------------------------------------


def test_cli_list_diff_restore_prune(hermes: Any, hermes_home: Path, ws: Path) -> None:
    at = ["checkpoints", "--workspace", str(ws)]
    done = hermes(*at, "list")
    assert done.returncode == 0 and "no checkpoints" in done.stdout
    done = hermes(*at, "restore", "1", "--yes")
    assert done.returncode == 1 and "no checkpoints" in done.stderr
    (ws / "a.txt").write_text("one\n")
    Store(ws).snapshot("first", turn="do the thing")
    (ws / "a.txt").write_text("two\n")
    (ws / "new.txt").write_text("new\n")
    done = hermes("checkpoints", "list", "--workspace", str(ws))  # After the action too.
    assert done.returncode == 0 and "first" in done.stdout and "do the thing" in done.stdout
    rows = [json.loads(line) for line in hermes(*at, "list", "--json").stdout.splitlines()]
    assert rows[0]["number"] == 1 and rows[0]["reason"] == "first"
    done = hermes(*at, "diff")
    assert done.returncode == 0 and "-one" in done.stdout and "+two" in done.stdout
    for bad in ("0", "7", "abc", "-1", "1.5"):
        done = hermes(*at, "restore", bad, "--yes")
        assert done.returncode == 2, (bad, done.stderr)
        assert "checkpoint" in done.stderr and "Traceback" not in done.stderr
    done = hermes(*at, "restore", "1")  # No terminal to ask at, no --yes.
    assert done.returncode == 2 and "--yes" in done.stderr
    assert (ws / "a.txt").read_text() == "two\n"
    done = hermes(*at, "restore", "1", "--dry-run")
    assert done.returncode == 0 and "a.txt" in done.stdout and "KEPT" in done.stdout
    done = hermes(*at, "restore", "1", "--yes")
    assert done.returncode == 0, done.stderr
    assert (ws / "a.txt").read_text() == "one\n" and (ws / "new.txt").exists()
    assert "kept" in done.stdout and "undo" in done.stdout
    done = hermes(*at, "prune", "--keep", "0")
    assert done.returncode == 2 and "--keep" in done.stderr
    for bad in ("-1", "nan"):
        done = hermes(*at, "prune", "--max-age-days", bad)
        assert done.returncode == 2 and "--max-age-days" in done.stderr, bad
    done = hermes(*at, "prune", "--keep", "1")
    assert done.returncode == 0 and "1 left" in done.stdout
    done = hermes("checkpoints", "--workspace", str(ws / "missing"), "list")
    assert done.returncode == 2 and "not a directory" in done.stderr


def test_cli_restore_yes_into_a_closed_pipe_still_restores(hermes_home: Path, ws: Path) -> None:
    """`hermes checkpoints restore 1 --yes | head -1`: exit 0 must mean restored."""
    from conftest import HERMES, clean_env

    (ws / "a.txt").write_text("one\n")
    Store(ws).snapshot("first")
    (ws / "a.txt").write_text("two\n")
    proc = subprocess.Popen(
        [str(HERMES), "checkpoints", "--workspace", str(ws), "restore", "1", "--yes"],
        env=clean_env(hermes_home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # The reader left before the plan was printed.
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert (ws / "a.txt").read_text() == "one\n"


@pytest.mark.peer("scripted")
def test_rollback_in_chat(hermes_home: Path, tmp_path: Path) -> None:
    from peers.llm_server import Reply, ScriptedLLM
    from test_chat_cli import PROMPT, spawn_chat

    ws = tmp_path / "ws"  # hermes chat starts here: the workspace.
    ws.mkdir()
    (ws / "notes.md").write_text("my notes\n")
    steps = [
        Reply(tool_calls=[("write_file", {"path": "notes.md", "content": "model's\n"})]),
        Reply(tool_calls=[("terminal", {"command": "echo gen > generated.txt"})]),
        Reply("Done."),
    ]
    with ScriptedLLM(steps) as llm:
        child = spawn_chat(hermes_home, ws, llm.openai_base_url)
        child.expect_exact(PROMPT)
        child.sendline("rewrite my notes")
        child.expect_exact("Done.")
        child.expect_exact(PROMPT)
        assert (ws / "notes.md").read_text() == "model's\n"
        child.sendline("/rollback 5")
        child.expect_exact("no checkpoint 5")
        child.expect_exact(PROMPT)
        child.sendline("/rollback")
        child.expect_exact("notes.md")
        child.expect_exact("generated.txt")
        child.expect_exact("answer:")
        child.sendline("yes")
        child.expect_exact("answer:")  # Delete the file created since? No.
        child.sendline("no")
        child.expect_exact("restored 1 file")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    assert (ws / "notes.md").read_text() == "my notes\n"
    assert (ws / "generated.txt").read_text() == "gen\n"


@pytest.mark.peer("scripted")
def test_rollback_in_a_gateway_chat(hermes_home: Path, tmp_path: Path) -> None:
    from peers.llm_server import Reply, ScriptedLLM
    from test_gateway import Gateway, ask, configure_home, free_port

    work = tmp_path / "work"  # The workspace (terminal.cwd); the gateway's logs go elsewhere.
    work.mkdir()
    (work / "plan.md").write_text("the user's plan\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with ScriptedLLM() as llm:
        llm.add(
            Reply(tool_calls=[("write_file", {"path": "plan.md", "content": "overwritten\n"})]),
            Reply(tool_calls=[("write_file", {"path": "extra.md", "content": "new\n"})]),
            Reply("Rewrote it."),
        )
        port = free_port()
        configure_home(hermes_home, llm, port)
        config = yaml.safe_load((hermes_home / "config.yaml").read_text())
        config.setdefault("terminal", {})["cwd"] = str(work)
        (hermes_home / "config.yaml").write_text(yaml.safe_dump(config))
        gateway = Gateway(hermes_home, port, run_dir)
        try:
            gateway.wait_ready()
            assert ask(gateway, "rewrite my plan", user="a") == "Rewrote it."
            assert (work / "plan.md").read_text() == "overwritten\n"
            shown_plan = ask(gateway, "/rollback", user="a")
            assert "plan.md" in shown_plan and "extra.md" in shown_plan
            assert f"/rollback {Store(work).listing()[0].short} yes" in shown_plan
            assert (work / "plan.md").read_text() == "overwritten\n"  # Only shown.
            assert "no checkpoint 4" in ask(gateway, "/rollback 4 yes", user="a")
            assert ask(gateway, "/rollback 1 maybe", user="a").startswith("usage:")
            done = ask(gateway, "/rollback 1 yes", user="a")
            assert "restored 1 file" in done and "kept" in done
            assert (work / "plan.md").read_text() == "the user's plan\n"
            assert (work / "extra.md").exists()
            assert len(llm.requests) == 3  # The commands never reached the model.
        finally:
            gateway.kill()
