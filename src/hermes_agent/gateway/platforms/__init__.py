"""Platform adapters, by config name: the registry the gateway starts them from.

The base every adapter builds on (:class:`Platform`, :class:`Outbound`,
:class:`SendError`, :class:`Backoff`) is in :mod:`.base`, which imports no
adapter; it is re-exported here for the gateway. Each adapter module is
imported only when its platform is enabled (a platform library costs memory
and start-up time), by the functions of :data:`PLATFORMS`.
"""

from __future__ import annotations

from collections.abc import Callable

from hermes_agent.delivery_target import REQUEST_ONLY_PLATFORMS
from hermes_agent.gateway.platforms.base import (
    Backoff,
    Outbound,
    Platform,
    SendError,
    optional_modules_skipped,
)

__all__ = [
    "PLATFORMS",
    "REQUEST_ONLY_PLATFORMS",
    "Backoff",
    "Outbound",
    "Platform",
    "SendError",
    "optional_modules_skipped",
]


def _api_server() -> type[Platform]:
    from hermes_agent.gateway.platforms.api_server import ApiServer

    return ApiServer


def _matrix() -> type[Platform]:
    from hermes_agent.gateway.platforms.matrix import Matrix

    return Matrix


def _discord() -> type[Platform]:
    from hermes_agent.gateway.platforms.discord import Discord

    return Discord


def _slack() -> type[Platform]:
    from hermes_agent.gateway.platforms.slack import Slack

    return Slack


def _irc() -> type[Platform]:
    from hermes_agent.gateway.platforms.irc import IrcPlatform

    return IrcPlatform


def _email() -> type[Platform]:
    from hermes_agent.gateway.platforms.email import EmailPlatform

    return EmailPlatform


def _webhook() -> type[Platform]:
    from hermes_agent.gateway.platforms.webhook import Webhook

    return Webhook


def _telegram() -> type[Platform]:
    from hermes_agent.gateway.platforms.telegram import Telegram

    return Telegram


#: Every platform by its config name, imported only when enabled.
PLATFORMS: dict[str, Callable[[], type[Platform]]] = {
    "api_server": _api_server,
    "matrix": _matrix,
    "discord": _discord,
    "slack": _slack,
    "irc": _irc,
    "email": _email,
    "webhook": _webhook,
    "telegram": _telegram,
}
