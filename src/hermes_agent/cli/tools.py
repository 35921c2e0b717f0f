"""`hermes tools`: which tools the agent has, and why a tool is off."""

from __future__ import annotations

import argparse

from hermes_agent.cli.common import load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=cmd_list)
    sub = parser.add_subparsers(dest="tools_command", metavar="ACTION", title="actions")
    listing = sub.add_parser("list", help="every tool, whether it is enabled, and why (default)")
    listing.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from hermes_agent.tools.registry import builtin_registry

    config = load_config()
    registry = builtin_registry()
    chosen = set(config.get("toolsets"))
    enabled = {t.name for t in registry.select(chosen & ({"all"} | set(registry.toolsets)))}
    rows = []
    for toolset in registry.toolsets:
        for tool in registry.select([toolset]):
            reason = tool.unavailable(config) if tool.unavailable else None
            if reason:
                status = f"off: {reason}"
            elif tool.name in enabled:
                status = "on" + (" (toolsets: all)" if "all" in chosen else "")
            else:
                status = f"off: toolset {toolset} is not in `toolsets`"
            rows.append((tool.name, toolset, status))
    unknown = sorted(chosen - set(registry.toolsets) - {"all"})
    width = max(len(r[0]) for r in rows)
    set_width = max(len(r[1]) for r in rows)
    for name, toolset, status in rows:
        print(f"{name:<{width}}  {toolset:<{set_width}}  {status}")
    for name in unknown:
        print(f"warning: `toolsets` names {name!r}, which does not exist")
    return 0
