"""Arrows run one way: cron (and the tools) never import the gateway, which imports cron.

Before, cron/jobs.py imported gateway/delivery.py and gateway/platforms, and
cron/scheduler.py named gateway/runner.py, while the gateway imported cron:
one circle of 14 files. What both need (delivery targets, platform names)
now lives below both, in delivery_target.py, and the scheduler asks its host
for what it needs through a protocol (CronHost) the gateway satisfies.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hermes_agent
from hermes_agent import delivery_target
from hermes_agent.gateway.platforms import PLATFORMS, REQUEST_ONLY_PLATFORMS

SRC = Path(hermes_agent.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, typing-only included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_cron_never_imports_the_gateway() -> None:
    files = [*sorted((SRC / "cron").glob("*.py")), SRC / "tools" / "cron.py"]
    for path in files:
        gateway = sorted(m for m in _imports(path) if m.startswith("hermes_agent.gateway"))
        assert gateway == [], f"{path.relative_to(SRC)} imports {gateway}"


def test_cron_loads_without_the_gateway() -> None:
    code = (
        "import sys\n"
        "import hermes_agent.cron.jobs, hermes_agent.cron.scheduler, hermes_agent.cron.run\n"
        "import hermes_agent.tools.cron\n"
        "print(sorted(m for m in sys.modules if m.startswith('hermes_agent.gateway')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_gateway_and_the_lower_layer_agree_on_the_platforms() -> None:
    assert set(PLATFORMS) == set(delivery_target.PLATFORM_NAMES)
    assert REQUEST_ONLY_PLATFORMS is delivery_target.REQUEST_ONLY_PLATFORMS


def test_adapters_import_the_base_never_the_registry() -> None:
    # The registry (platforms/__init__.py) imports each adapter when enabled; an adapter
    # importing the registry back would close a circle.
    base = SRC / "gateway" / "platforms" / "base.py"
    assert not any(m.startswith("hermes_agent.gateway.platforms.") for m in _imports(base))
    for path in sorted((SRC / "gateway" / "platforms").glob("*.py")):
        if path.name in ("__init__.py", "base.py"):
            continue
        assert "hermes_agent.gateway.platforms" not in _imports(path), path.name


def test_the_store_is_one_module_per_concern() -> None:
    # StateDB was one class of ~1,100 lines holding eight concerns; each now reads alone.
    from hermes_agent.state.core import StoreCore
    from hermes_agent.state.db import StateDB

    concerns = {"sessions", "messages", "search", "inbox", "pairing", "routes"}
    modules = {cls.__module__.rsplit(".", 1)[-1] for cls in StateDB.__mro__[1:-2]}
    assert modules == concerns
    assert StateDB.__mro__[-2] is StoreCore
    for name in (*concerns, "core", "records", "migrations", "db"):
        lines = (SRC / "state" / f"{name}.py").read_text().count("\n")
        assert lines < 500, f"state/{name}.py has {lines} lines"


def _runtime_imports(path: Path) -> set[str]:
    """Like :func:`_imports`, without those under ``if TYPE_CHECKING:`` (annotations only)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_import_circle_through_the_gateway_cron_or_the_store() -> None:
    modules: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        name: {r for r in map(resolve, _runtime_imports(path)) if r and r != name}
        for name, path in modules.items()
    }
    watched = ("hermes_agent.gateway", "hermes_agent.cron", "hermes_agent.state")

    def reaches(start: str, goal: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    circles = [
        (a, b)
        for a in modules
        if a.startswith(watched)
        for b in graph[a]
        if b.startswith(watched) and reaches(b, a)
    ]
    assert circles == []
