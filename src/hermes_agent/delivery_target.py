"""Where an unasked message goes: a chat on a platform (``PLATFORM:CHAT[:THREAD]``).

Both the gateway (which sends) and cron and the agent's tools (which name a
chat to send a result to) need this. It lives here, below all of them, so
that the arrows run one way: the gateway imports cron to run the scheduler,
and cron imports only this module, never the gateway. A newcomer can read
cron without the gateway. What cron needs from whoever runs it (sending text
to a chat, the model, the store) is a protocol of its own
(:class:`hermes_agent.cron.scheduler.CronHost`) that the gateway satisfies.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The config name of every chat platform the gateway knows, as in
#: ``gateway.platforms.NAME`` (the gateway's adapter registry is checked against it).
PLATFORM_NAMES = (
    "api_server",
    "matrix",
    "discord",
    "slack",
    "irc",
    "email",
    "webhook",
    "telegram",
)

#: Platforms that only answer requests: there is no chat to send a cron result or a
#: webhook's answer to.
REQUEST_ONLY_PLATFORMS = frozenset({"api_server", "webhook"})


@dataclass(frozen=True)
class Target:
    """A chat to send to unasked (cron results, webhook answers): ``PLATFORM:CHAT[:THREAD]``."""

    platform: str
    chat_id: str
    thread_id: str = ""

    def __str__(self) -> str:
        return f"{self.platform}:{self.chat_id}" + (f":{self.thread_id}" if self.thread_id else "")

    @classmethod
    def parse(cls, text: str) -> Target:
        """``PLATFORM:CHAT_ID[:THREAD_ID]``; ValueError says what is wrong.

        Matrix room ids hold a colon themselves (``!room:example.org``); there the
        thread is recognised by its event id's ``$`` (``matrix:!room:example.org:$event``).
        """
        platform, colon, rest = text.strip().partition(":")
        if not colon or not platform or not rest.strip():
            raise ValueError("expected PLATFORM:CHAT_ID[:THREAD_ID] (e.g. telegram:123456789)")
        if platform == "matrix":
            chat, _, thread = rest.partition(":$")
            thread = f"${thread}" if thread else ""
        elif ":" in rest:
            chat, _, thread = rest.rpartition(":")
        else:
            chat, thread = rest, ""
        if not chat.strip():
            raise ValueError("the chat id is empty")
        return cls(platform.strip(), chat.strip(), thread.strip())
