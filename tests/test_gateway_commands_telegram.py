"""/background and /stop in a Telegram chat: a real gateway, the loopback Bot API, a scripted model.

The HTTP API cannot post a message later, so the "done" notice of /background is
checked here, where the bot sends it to the chat like any message.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway_process import GatewayProcess
from peers.llm_server import Hang, Reply, ScriptedLLM
from peers.telegram_api import TelegramAPI
from test_gateway_telegram import ALICE, llm, start, tg, user_text, workdir  # noqa: F401

pytestmark = pytest.mark.peer("telegram_api")


def test_background_posts_its_result_and_stop_ends_an_answer(
    start: Callable[..., GatewayProcess],  # noqa: F811
    tg: TelegramAPI,  # noqa: F811
    llm: ScriptedLLM,  # noqa: F811
) -> None:
    llm.add(Reply("Eleven files."), Hang(20, then=Reply("too late")), Reply("Back."))
    start()
    tg.user_message(ALICE, "/background count the files", username="alice")
    done = tg.wait_for(
        lambda: [m for m in tg.sent(ALICE) if m["text"].startswith("Background task done")]
    )
    assert done[0]["text"].endswith("Eleven files.")
    assert any(m["text"].startswith("Working on it in the background") for m in tg.sent(ALICE))
    assert user_text(llm.requests[0]) == "count the files"
    # /stop while the chat's answer hangs at the model: it arrives, and acts, at once.
    tg.user_message(ALICE, "write an essay", username="alice")
    tg.wait_for(lambda: len(llm.requests) == 2)
    tg.user_message(ALICE, "/stop", username="alice")
    tg.wait_for(lambda: [m for m in tg.sent(ALICE) if m["text"] == "Stopped."], timeout=10)
    assert any(m["text"] == "Stopping the answer." for m in tg.sent(ALICE))
    tg.user_message(ALICE, "still there?", username="alice")
    tg.wait_for(lambda: [m for m in tg.sent(ALICE) if m["text"] == "Back."])
    # The background prompt is not part of the chat's conversation.
    assert "count the files" not in str(llm.requests[2].messages)
    assert "write an essay" in str(llm.requests[2].messages)
