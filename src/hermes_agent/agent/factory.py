"""Building an agent from the configuration: shared by `hermes chat` and the gateway.

Front ends differ in how they show text and ask for approval; what provider,
tools and workspace a session gets, and how its :class:`Agent` is put
together, is decided here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent.errors import UsageError

if TYPE_CHECKING:
    from hermes_agent.agent.loop import Agent
    from hermes_agent.agent.loop import Events as AgentEvents
    from hermes_agent.config.loader import Config
    from hermes_agent.providers.base import Provider
    from hermes_agent.providers.fallback import FallbackChain
    from hermes_agent.providers.settings import ProviderSettings
    from hermes_agent.state.db import StateDB
    from hermes_agent.tools.registry import Tool


def workspace(config: Config) -> Path:
    raw = config.get("terminal.cwd") or ""
    path = Path(raw).expanduser() if raw else Path.cwd()
    if not path.is_dir():
        raise UsageError(
            f"workspace {path} does not exist (terminal.cwd); create it or run `hermes setup`"
        )
    return path


def agent_parts(
    config: Config,
    *,
    provider: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    toolsets: str | None = None,
) -> tuple[ProviderSettings, list[Tool], Path]:
    """Provider settings, the tools offered and the workspace (shared with the gateway)."""
    from hermes_agent import redact
    from hermes_agent.providers import settings as provider_settings
    from hermes_agent.tools.registry import builtin_registry

    redact.set_enabled(bool(config.get("redaction.enabled")))
    settings = provider_settings.resolve(config, provider=provider, model=model, base_url=base_url)
    from hermes_agent.providers import fallback

    fallback.entries(config)  # A malformed fallback_providers list is reported at start.
    chosen = (
        [t.strip() for t in toolsets.split(",") if t.strip()]
        if toolsets
        else config.get("toolsets")
    )
    # A tool that cannot work with this configuration (no search backend...) is not offered.
    chosen = [t for t in chosen if t != "mcp"]  # MCP tools come from build_agent.
    tools = [
        t
        for t in builtin_registry().select(chosen)
        if t.unavailable is None or t.unavailable(config) is None
    ]
    return settings, tools, workspace(config)


def build_agent(
    *,
    config: Config,
    settings: ProviderSettings,
    tools: list[Tool],
    db: StateDB,
    session_id: str,
    cwd: Path,
    events: AgentEvents,
    provider: Provider | None = None,
    fallbacks: FallbackChain | None = None,
    toolsets: str | None = None,
) -> Agent:
    """An :class:`Agent` on ``session_id`` (shared by the chat and the gateway).

    ``provider``: a client to share (the gateway keeps one for all its
    conversations: a new SDK client per message costs milliseconds and
    megabytes); without it one is built from ``settings``. ``fallbacks``: the
    same for the ``fallback_providers`` chain (built from ``config`` when not
    given; its clients are only built when one is needed).
    """
    from hermes_agent.agent.loop import Agent
    from hermes_agent.providers import fallback
    from hermes_agent.providers import settings as provider_settings

    summary_model = config.get("compression.summary_model")

    def summary_provider() -> Any:
        from dataclasses import replace

        return provider_settings.build(replace(settings, model=summary_model, stream=False))

    agent = Agent(
        provider=provider or provider_settings.build(settings),
        tools=tools,
        config=config,
        db=db,
        session_id=session_id,
        cwd=cwd,
        events=events,
        summary_provider=summary_provider if summary_model else None,
        fallbacks=fallbacks if fallbacks is not None else fallback.chain(config, settings),
    )
    agent.owns_fallbacks = fallbacks is None  # Built here: closed with the agent.
    attach_mcp(agent, config, cwd, events, toolsets)
    return agent


def wants_mcp(config: Config, toolsets: str | None = None) -> bool:
    """Whether MCP servers' tools are offered: ``all`` or ``mcp`` among the toolsets."""
    chosen = (
        [t.strip() for t in toolsets.split(",") if t.strip()]
        if toolsets
        else list(config.get("toolsets") or ())
    )
    return "all" in chosen or "mcp" in chosen


def attach_mcp(
    agent: Agent,
    config: Config,
    cwd: Path,
    events: AgentEvents,
    toolsets: str | None = None,
) -> None:
    """Give ``agent`` the configured MCP servers' tools (the process's one manager).

    Nothing MCP is imported when no server is configured: `hermes chat` without
    MCP starts as fast as before. The servers connect in the background; the
    agent's first turn waits at most ``mcp.connect_wait`` for them.
    """
    from hermes_agent.mcp.config import any_enabled

    if not any_enabled(config) or not wants_mcp(config, toolsets):
        return
    from hermes_agent.mcp.manager import AgentView, scope_for
    from hermes_agent.mcp.tools import NOTIFY_KEY

    scope = scope_for(config, cwd)
    if scope is not None:
        agent.tool_source = AgentView(scope, events.notice)
    agent.context.state[NOTIFY_KEY] = events.notice
