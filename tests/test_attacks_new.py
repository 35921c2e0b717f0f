"""Attacks on the surfaces added late (denials' put-back, MCP, checkpoints, logs...).

Each test is a hole that was found and closed, or an attack that must keep
failing: the real tools through ``dispatch``, the real sandbox and peers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hermes_agent.config.loader import load_config
from hermes_agent.providers.base import ToolCall
from hermes_agent.safety import denials
from hermes_agent.state.db import StateDB
from hermes_agent.tools import files, terminal
from hermes_agent.tools.registry import ToolContext, ToolResult, dispatch

TOOLS = {t.name: t for t in [*files.TOOLS, *terminal.TOOLS]}


class User:
    """Answers approval questions from a script."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)

    async def __call__(self, question: str, choices: Sequence[str]) -> str | None:
        return self.answers.pop(0) if self.answers else None


@pytest.fixture
def ctx(hermes_home: Path, tmp_path: Path) -> Iterator[ToolContext]:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("approvals:\n  mode: manual\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    context = ToolContext("test-session", str(workspace), load_config(), StateDB())
    context.state["files.review_writes"] = True  # An editor's Ask mode: every edit asks.
    yield context
    context.db.close()


def call(ctx: ToolContext, name: str, **arguments: Any) -> ToolResult:
    return asyncio.run(dispatch(ToolCall("c", name, json.dumps(arguments)), TOOLS, ctx))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_putting_back_a_denied_new_file_never_deletes_through_a_planted_symlink(
    ctx: ToolContext, tmp_path: Path, hermes_home: Path
) -> None:
    """A write of a new file is denied (its "before" is: absent). The model then makes a
    directory on that path a symlink to HERMES_HOME (a Makefile, which does not name the
    protected path). The put-back, which runs unconfined in hermes, must not delete the
    file of the same name it now reaches through the link (here config.yaml)."""
    victim = hermes_home / "config.yaml"
    workspace = Path(ctx.cwd)
    (workspace / "Makefile").write_text(f"all:\n\tln -s {hermes_home} d\n")
    ctx.ask = User("no")
    denied = call(ctx, "write_file", path="d/config.yaml", content="x\n")
    assert denied.is_error and "denied" in denied.content
    ran = call(ctx, "terminal", command="make")
    assert (workspace / "d").is_symlink(), ran.content
    assert victim.exists(), f"hermes deleted {victim} through a symlink: {ran.content}"
    assert "approvals" in victim.read_text()
    # Nothing outside was touched by a later round either.
    denials.undo_changes(ctx.state)
    assert victim.exists()


def test_putting_back_a_denied_file_never_unlinks_a_symlink_through_a_planted_directory_link(
    ctx: ToolContext, tmp_path: Path
) -> None:
    """The protected file existed; a directory on its path becomes a link to a directory
    outside where a symlink of the same name lives: hermes must not remove that link."""
    workspace = Path(ctx.cwd)
    (workspace / "d").mkdir()
    (workspace / "d" / "notes.txt").write_text("keep\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").symlink_to("/etc/hostname")
    ctx.ask = User("no")
    assert call(ctx, "write_file", path="d/notes.txt", content="x\n").is_error
    (workspace / "d" / "notes.txt").unlink()
    (workspace / "d").rmdir()
    (workspace / "d").symlink_to(outside)
    denials.undo_changes(ctx.state)
    assert (outside / "notes.txt").is_symlink()
