"""`hermes tools`: every tool with whether it is on, and why not."""

from __future__ import annotations

from conftest import Runner


def test_all_tools_on_by_default(hermes: Runner) -> None:
    result = hermes("tools")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert {"todo", "session_search", "clarify", "delegate"} <= set(lines)
    assert lines["todo"].endswith("on (toolsets: all)")


def test_off_tools_say_why(hermes: Runner) -> None:
    assert hermes("config", "set", "toolsets", "[todo, nosuch]").returncode == 0
    out = hermes("tools", "list").stdout.splitlines()
    row = {line.split()[0]: line for line in out if not line.startswith("warning")}
    assert row["todo"].endswith("  on")
    assert row["delegate"].endswith("off: toolset delegate is not in `toolsets`")
    assert "warning: `toolsets` names 'nosuch', which does not exist" in out
