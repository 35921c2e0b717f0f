"""Route a platform library's own log records into the gateway's log.

Libraries such as discord.py and slack_sdk log to their own loggers
(``discord.gateway``, ``slack_sdk.socket_mode``...). Left alone, their
warnings reach stderr through Python's last-resort handler: unformatted, not
redacted, not in ``logs/gateway.log``, and with full tracebacks for every
dropped connection they recover from. Here their records are handed to the
``hermes_agent`` handlers (redacting formatter, log file and stderr), with a
traceback shortened to its one-line reason.
"""

from __future__ import annotations

import logging

_TARGET = "hermes_agent.gateway.lib"


class _Forward(logging.Handler):
    """Re-emit a library record through the hermes_agent logger tree."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
                record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            target = logging.getLogger(_TARGET)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        except Exception:  # A log line must never break the connection it describes.
            self.handleError(record)


def route_library_logs(levels: dict[str, int]) -> None:
    """Send records of each named logger, at or above its level, to the gateway's log.

    Idempotent: a logger already routed is only given its new level.
    """
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        if not any(isinstance(h, _Forward) for h in logger.handlers):
            logger.addHandler(_Forward())
