"""Who may talk to the agent through a chat platform: allow-lists and pairing.

A user is let in when their id is in ``gateway.platforms.<name>.allowed_users``,
when the chat is in ``allowed_chats`` (also under an id it had before, see
``StateDB.move_chat``), or when they were paired. Empty lists
let nobody in: a bot that answers the whole internet with the owner's keys
and tools is the failure this module exists to prevent.

Pairing: a user who is not let in gets a one-time code (once; asking again
repeats the same code until it expires) and the owner approves it on the
host with ``hermes gateway pair approve CODE``. The code is short enough to
read out and long enough not to be guessed (32^8 values, single use,
expiring); approving needs access to the host anyway.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.state.db import PairingRequest, StateDB

#: A pairing code is valid this long.
PAIRING_TTL_SECONDS = 3600.0
#: Letters and digits that cannot be mistaken for one another (no 0/O, 1/I/L).
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

PAIRING_MESSAGE = (
    "I only talk to people my owner has approved. To be approved, ask them to run this on "
    "the machine where I run:\n\n    hermes gateway pair approve {code}\n\n"
    "The code is valid for one hour."
)


def new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(code: str) -> str:
    """What the owner typed, in the stored form: ``abcd efgh`` becomes ``ABCD-EFGH``."""
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else code.strip().upper()


class Access:
    """The allow-lists of every platform, read once, and the paired users in state.db."""

    def __init__(self, config: Config, db: StateDB) -> None:
        self.db = db
        self.pairing = bool(config.get("gateway.pairing"))
        self._users: dict[str, frozenset[str]] = {}
        self._chats: dict[str, frozenset[str]] = {}
        platforms = config.get("gateway.platforms") or {}
        for name, section in platforms.items() if isinstance(platforms, dict) else ():
            if not isinstance(section, dict):
                continue
            self._users[name] = frozenset(str(u) for u in section.get("allowed_users") or ())
            self._chats[name] = frozenset(str(c) for c in section.get("allowed_chats") or ())

    def allowed(self, platform: str, user_id: str, chat_id: str) -> bool:
        if user_id and user_id in self._users.get(platform, frozenset()):
            return True
        chats = self._chats.get(platform, frozenset())
        if chat_id and chat_id in chats:
            return True
        if user_id and self.db.is_paired(platform, user_id):
            return True
        # A chat let in under its old id (a Telegram group that became a supergroup).
        return bool(chat_id and chats) and any(
            old in chats for old in self.db.chat_moved_from(platform, chat_id)
        )

    def pairing_code(
        self, platform: str, user_id: str, user_name: str, chat_id: str
    ) -> tuple[str, bool] | None:
        """The user's pairing code and whether it is new (to be sent); None if pairing is off."""
        if not self.pairing or not user_id:
            return None
        self.db.drop_pairing_requests(time.time() - PAIRING_TTL_SECONDS)
        request, created = self.db.pairing_request(
            platform, user_id, user_name, chat_id, new_code()
        )
        return request.code, created


def approve(db: StateDB, code: str) -> PairingRequest | None:
    """Approve a pairing code typed by the owner; None when it is unknown or expired."""
    db.drop_pairing_requests(time.time() - PAIRING_TTL_SECONDS)
    return db.approve_pairing(normalize_code(code))
