"""Getting a reply to the user: split at the platform's limit, send, retry, report.

The same for every platform: an adapter only knows how to send one chunk
(:meth:`~hermes_agent.gateway.platforms.Platform.send_text`). Here the
answer is converted to the platform's markup, cut into chunks that fit
(paragraphs, then lines, then sentences, then words; a code block cut in two
is closed and reopened so both halves render), and each chunk is sent with
retries. The number of chunks already delivered is reported after each one,
so a restart resumes after the last delivered chunk instead of sending the
whole answer again. Before each chunk the platform's
:meth:`~hermes_agent.gateway.platforms.Platform.delivery_mark` is stored too:
when a crash (or a timeout) leaves open whether the platform accepted a
chunk, platforms that can look it up (Telegram) are asked before it is sent
again, so the user does not get it twice. Sends to one chat take turns
(:meth:`~hermes_agent.gateway.platforms.Platform.one_send_at_a_time`). When a
chunk cannot be delivered, the user is told so in a short message (that one
is retried too), rather than the failure only reaching a log file.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from hermes_agent.gateway.platforms.base import Backoff, SendError

if TYPE_CHECKING:
    from hermes_agent.gateway.platforms.base import Outbound, Platform

log = logging.getLogger("hermes_agent.gateway")

#: The longest wait a platform's retry_after may impose before we give up on a chunk.
MAX_RETRY_AFTER = 300.0

UNDELIVERED_NOTICE = (
    "Part of my answer could not be delivered ({reason}). It is kept in the gateway's "
    "history; ask again or check `hermes sessions show` on the host."
)


_FENCE = re.compile(r"^\s*(```+|~~~+)(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_message(text: str, limit: int) -> list[str]:
    """Cut ``text`` into chunks of at most ``limit`` characters, at natural boundaries.

    Joining the chunks gives the text back except for whitespace at the cuts
    and, inside code blocks, the fence lines added to close and reopen them.
    """
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    if len(text) <= limit:
        return [text] if text.strip() else []
    chunks: list[str] = []
    rest = text
    fence: str | None = None  # The opening fence line of a code block open at a cut.
    while rest:
        prefix = f"{fence}\n" if fence else ""
        room = limit - len(prefix)
        if len(rest) <= room:
            chunks.append(prefix + rest)
            break
        cut = _cut_point(rest, room)
        open_fence = _open_fence(prefix + rest[:cut])
        if open_fence:  # Cut again, leaving room to close the code block.
            cut = _cut_point(rest, room - 4)
            open_fence = _open_fence(prefix + rest[:cut])
        piece = rest[:cut].rstrip()
        rest = rest[cut:].lstrip("\n ")
        if open_fence:
            piece += "\n```" if open_fence.lstrip().startswith("`") else "\n~~~"
        fence = open_fence
        if piece.strip() or prefix:
            chunks.append(prefix + piece)
    return [c for c in chunks if c.strip()]


def _cut_point(text: str, room: int) -> int:
    """Where to cut ``text`` so the first part holds at most ``room`` characters."""
    window = text[: room + 1]
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator, room // 3)
        if at > 0:
            return at + len(separator)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() > room // 3]
    if ends and ends[-1] <= room:
        return ends[-1]
    at = window.rfind(" ", room // 3)
    if at > 0:
        return at + 1
    return room  # One very long word: a hard cut.


def _open_fence(text: str) -> str | None:
    """The opening fence line of a code block left open at the end of ``text``."""
    open_line: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if not match:
            continue
        if open_line is None:
            open_line = line.strip()
        elif line.strip().startswith(open_line[:3]) and not match.group(2).strip():
            open_line = None
    return open_line


async def deliver(
    platform: Platform,
    message: Outbound,
    *,
    retries: int,
    skip: int = 0,
    on_chunk: Callable[[int, str | None], None] | None = None,
    on_mark: Callable[[str], None] | None = None,
) -> tuple[bool, str]:
    """Send ``message`` chunk by chunk; returns (delivered, reason when not).

    ``skip`` chunks are taken as delivered already (a resumed delivery);
    ``on_chunk(n, sent_id)`` is called with the count of chunks delivered after
    each (and the platform's id of the last one); ``on_mark(mark)`` with the
    platform's :meth:`~Platform.delivery_mark` just before each chunk is handed over.
    """
    chunks = split_message(platform.format(message.text), platform.max_message_length)
    for index, chunk in enumerate(chunks):
        if index < skip:
            continue
        reason, sent_id = await send_with_retries(
            platform, message, chunk, retries=retries, on_mark=on_mark
        )
        if reason is not None:
            log.warning(
                "%s: reply to %s not delivered (chunk %d of %d): %s",
                platform.name,
                message.reply_to,
                index + 1,
                len(chunks),
                reason,
            )
            notice = platform.format(UNDELIVERED_NOTICE.format(reason=reason))
            notice = split_message(notice, platform.max_message_length)[0]
            reason_too, _ = await send_with_retries(platform, message, notice, retries=retries)
            if reason_too is not None:
                log.error("%s: could not tell the user either", platform.name)
            return False, reason
        if on_chunk is not None:
            on_chunk(index + 1, sent_id)
    return True, ""


async def send_with_retries(
    platform: Platform,
    message: Outbound,
    chunk: str,
    *,
    retries: int,
    on_mark: Callable[[str], None] | None = None,
) -> tuple[str | None, str | None]:
    """Send one chunk, retrying transient failures: (None, its id) when sent, else (reason, None).

    A failure that leaves open whether the chunk arrived (a timeout, a dropped
    connection, a 5xx) is checked with the platform before the chunk is sent
    again, where the platform can tell (:meth:`~Platform.was_sent`).
    """
    backoff = Backoff(initial=1.0, maximum=30.0)
    attempt = 0
    async with platform.one_send_at_a_time(message.chat_id):
        while True:
            mark = platform.delivery_mark(message, chunk)
            if mark and on_mark is not None:
                on_mark(mark)
            try:
                sent_id = await platform.send_text(
                    message.chat_id, message.thread_id, chunk, message.reply_to
                )
                return None, sent_id
            except SendError as exc:
                error = exc
            except (TimeoutError, OSError) as exc:
                error = SendError(f"{type(exc).__name__}: {exc}")
            if mark and not error.permanent and error.retry_after is None:
                arrived = await _arrived(platform, message.chat_id, mark)
                if arrived:
                    log.info("%s: the chunk had arrived after all (%s)", platform.name, error)
                    return None, None
            attempt += 1
            if error.permanent or attempt > retries:
                return str(error), None
            delay = backoff.next_delay()
            if error.retry_after is not None:
                if error.retry_after > MAX_RETRY_AFTER:
                    return (
                        f"{error} (the platform asked to wait {error.retry_after:.0f} s)",
                        None,
                    )
                delay = max(delay, error.retry_after)
            log.info(
                "%s: sending failed (%s); retry %d/%d in %.1f s",
                platform.name,
                error,
                attempt,
                retries,
                delay,
            )
            await asyncio.sleep(delay)


async def _arrived(platform: Platform, chat_id: str, mark: str) -> bool | None:
    try:
        arrived = await platform.was_sent(chat_id, mark)
    except Exception as exc:
        arrived = None
        log.debug("%s: checking a chunk failed: %s", platform.name, exc, exc_info=True)
    if arrived is None:  # Sending again is the safe side: a reply twice, not none.
        log.warning(
            "%s: could not check whether a chunk arrived in chat %s; sending it again",
            platform.name,
            chat_id,
        )
    return arrived


async def settle(platform: Platform, chat_id: str, mark: str) -> bool | None:
    """After a restart: whether the chunk a dead gateway was sending with ``mark`` arrived."""
    async with platform.one_send_at_a_time(chat_id):
        return await _arrived(platform, chat_id, mark)
