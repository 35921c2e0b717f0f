"""Platform adapters: each turns platform events into inbound messages and sends replies.

An adapter never calls the agent. It hands what arrives to
:meth:`hermes_agent.gateway.runner.Gateway.submit` (which stores the message
in state.db before returning, so the adapter acknowledges only what is safe)
and gets the answer back through :meth:`Platform.send`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway
    from hermes_agent.state.db import InboundMessage


@dataclass(frozen=True)
class Outbound:
    """A reply to one inbound message."""

    platform: str
    chat_id: str
    thread_id: str
    #: The platform's id of the message this answers.
    reply_to: str
    text: str
    #: True when the agent could not answer; ``text`` then says why.
    failed: bool = False
    input_tokens: int = 0
    output_tokens: int = 0


class Platform:
    """The interface every adapter implements; ``name`` is its key under gateway.platforms."""

    name = ""

    def __init__(self, gateway: Gateway, config: Config) -> None:
        self.gateway = gateway
        self.config = config

    async def start(self) -> None:
        """Connect or listen; raise a HermesError when that is impossible."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Disconnect; called once, after in-flight work was finished or persisted."""
        raise NotImplementedError

    async def send(self, message: Outbound) -> None:
        """Deliver a reply to the platform."""
        raise NotImplementedError

    def stream(self, inbound: InboundMessage, delta: str) -> None:
        """A piece of the answer to ``inbound`` as the model writes it (optional)."""


def _api_server() -> type[Platform]:
    from hermes_agent.gateway.platforms.api_server import ApiServer

    return ApiServer


#: Every platform by its config name, imported only when enabled.
PLATFORMS: dict[str, Callable[[], type[Platform]]] = {"api_server": _api_server}
