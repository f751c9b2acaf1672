"""Shared state of the emulated Telegram: people, chats, messages and the update queue."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telegram_emulator.errors import ApiError, bad_request, forbidden
from telegram_emulator.files import FileStore
from telegram_emulator.state import (
    ADMINISTRATOR,
    CREATOR,
    KICKED,
    LEFT,
    MEMBER,
    BotMessage,
    CallbackQueryRecord,
    EmulatedChat,
    EmulatedUser,
)

# Update types Telegram withholds unless asked for explicitly in allowed_updates.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


@dataclass
class _Queued:
    update: dict[str, Any]
    # A forced re-delivery survives the next offset confirmation once, so the same update
    # really reaches the bot twice.
    forced: bool = False

    @property
    def update_id(self) -> int:
        return int(self.update["update_id"])

    @property
    def kind(self) -> str:
        return next((key for key in self.update if key != "update_id"), "")


def member_json(user: dict[str, Any], status: str) -> dict[str, Any]:
    """A ChatMember object with the fields its status requires."""
    data: dict[str, Any] = {"status": status, "user": user}
    if status == CREATOR:
        data["is_anonymous"] = False
    elif status == ADMINISTRATOR:
        data.update(
            can_be_edited=False,
            is_anonymous=False,
            can_manage_chat=True,
            can_delete_messages=True,
            can_manage_video_chats=True,
            can_restrict_members=True,
            can_promote_members=False,
            can_change_info=True,
            can_invite_users=True,
            can_post_stories=False,
            can_edit_stories=False,
            can_delete_stories=False,
            can_send_welcome_messages=False,
            can_pin_messages=True,
        )
    elif status == KICKED:
        data["until_date"] = 0
    return data


class World:
    """Everything the emulator knows, independent of HTTP."""

    def __init__(self, bot: EmulatedUser, *, privacy_mode: bool) -> None:
        self.bot = bot
        self.privacy_mode = privacy_mode
        self.users: dict[int, EmulatedUser] = {}
        self.chats: dict[int, EmulatedChat] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # every live message
        self.sent: list[BotMessage] = []  # the bot's messages in send order
        self._sent_index: dict[tuple[int, int], BotMessage] = {}
        self.files = FileStore()
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.callback_queries: dict[str, CallbackQueryRecord] = {}
        self.callback_answers: list[dict[str, Any]] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.bot_settings: dict[tuple[str, str], Any] = {}  # (what, language/chat) -> value
        self.webhook_url = ""
        self.allowed_updates: frozenset[str] | None = None
        self.updates: list[dict[str, Any]] = []  # every update ever queued, in order
        self.deliveries: Counter[int] = Counter()  # update_id -> times returned by getUpdates
        self.update_seq: dict[int, int] = {}  # update_id -> event sequence number when queued
        self._queue: list[_Queued] = []
        self._last_update_id = 0
        self._seq = 0
        self._changed = asyncio.Event()
        self.update_listeners: list[Callable[[], None]] = []  # wake long polls

    # -- event plumbing -------------------------------------------------------------------------

    def next_seq(self) -> int:
        """A global event counter: tests compare orderings, never wall time."""
        self._seq += 1
        return self._seq

    def notify(self) -> None:
        """Wake everything waiting for a change (new update, message, call)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout: float) -> None:  # noqa: ASYNC109 - a bounded wait helper
        """Wait for the next change, at most ``timeout`` seconds."""
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass

    # -- updates ----------------------------------------------------------------------------------

    def enqueue(self, update: dict[str, Any], *, forced: bool = False) -> int:
        """Queue an update for getUpdates; assigns update_id unless the dict has one."""
        if "update_id" not in update:
            self._last_update_id += 1
            update = {"update_id": self._last_update_id, **update}
        else:
            self._last_update_id = max(self._last_update_id, int(update["update_id"]))
        queued = _Queued(update, forced)
        self._queue.append(queued)
        self._queue.sort(key=lambda q: q.update_id)  # Telegram returns updates by update_id
        self.updates.append(update)
        self.update_seq[queued.update_id] = self.next_seq()
        for listener in self.update_listeners:
            listener()
        self.notify()
        return queued.update_id

    def confirm(self, offset: int) -> None:
        """Forget updates below ``offset``; a negative offset keeps only the last -offset ones."""
        if offset > 0:
            self._queue = [q for q in self._queue if q.update_id >= offset or q.forced]
        elif offset < 0:
            self._queue = self._queue[offset:]

    def take(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` unconfirmed updates of an allowed type (they stay until confirmed)."""
        allowed = self.allowed_updates
        kept = []
        for queued in self._queue:
            if allowed is None or not allowed:
                wanted = queued.kind not in _OPT_IN_UPDATES
            else:
                wanted = queued.kind in allowed
            # Telegram drops updates of a type the bot did not ask for.
            if wanted:
                kept.append(queued)
        self._queue = kept
        batch = self._queue[:limit]
        for queued in batch:
            queued.forced = False
            self.deliveries[queued.update_id] += 1
        return [queued.update for queued in batch]

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by the bot."""
        return [queued.update for queued in self._queue]

    def drop_pending(self) -> None:
        """deleteWebhook(drop_pending_updates=True)."""
        self._queue.clear()

    # -- chats and messages -------------------------------------------------------------------

    def chat(self, chat_id: Any) -> EmulatedChat:
        """Resolve a chat_id parameter (number or @username) or raise "chat not found"."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            for chat in self.chats.values():
                if chat.username and chat.username.lower() == name and chat.is_group:
                    return chat
            raise bad_request("chat not found")
        try:
            key = int(chat_id)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        chat = self.chats.get(key)
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def check_bot_can_write(self, chat: EmulatedChat) -> None:
        """The 403s (and the migration 400) Telegram answers before anything is sent."""
        if chat.type == "private":
            if chat.blocked:
                raise forbidden("bot was blocked by the user")
            if not chat.started:
                raise forbidden("bot can't initiate conversation with a user")
            return
        if chat.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        kind = "group chat" if chat.type == "group" else "supergroup chat"
        if chat.bot_status == KICKED:
            raise forbidden(f"bot was kicked from the {kind}")
        if chat.bot_status not in (MEMBER, ADMINISTRATOR):
            raise forbidden(f"bot is not a member of the {kind}")

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The live message, if it exists."""
        return self.messages.get((chat_id, message_id))

    def record_bot_message(self, method: str, message: dict[str, Any]) -> BotMessage:
        """Store a message the bot just sent successfully."""
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        self.messages[(chat_id, message_id)] = message
        record = BotMessage(chat_id, message_id, method, message, [message])
        self.sent.append(record)
        self._sent_index[(chat_id, message_id)] = record
        self.notify()
        return record

    def record_edit(self, message: dict[str, Any]) -> None:
        """Replace a bot message with its edited state, keeping the history."""
        key = (message["chat"]["id"], message["message_id"])
        self.messages[key] = message
        record = self._sent_index.get(key)
        if record is not None:
            record.data = message
            record.versions.append(message)
        self.notify()

    def record_delete(self, chat_id: int, message_id: int) -> None:
        """Remove a message; a bot message stays in the log, flagged deleted."""
        self.messages.pop((chat_id, message_id), None)
        record = self._sent_index.get((chat_id, message_id))
        if record is not None:
            record.deleted = True
        self.notify()

    def bot_message(self, chat_id: int, message_id: int) -> BotMessage | None:
        """The log record of a bot message."""
        return self._sent_index.get((chat_id, message_id))

    def new_message(self, chat: EmulatedChat, sender: EmulatedUser) -> dict[str, Any]:
        """The common head of a Message: id, sender, chat, date."""
        return {
            "message_id": chat.next_message_id(),
            "from": sender.to_api(),
            "chat": chat.to_api(),
            "date": int(time.time()),
        }

    def is_bot_admin(self, chat: EmulatedChat) -> bool:
        """Administrators see every group message and may delete and pin."""
        return chat.bot_status in (ADMINISTRATOR, CREATOR)

    def member_status(self, chat: EmulatedChat, user_id: int) -> str:
        """Status of a user (or the bot) in a chat."""
        if user_id == self.bot.id:
            return chat.bot_status if chat.is_group else MEMBER
        if chat.type == "private":
            return MEMBER if chat.user is not None and chat.user.id == user_id else LEFT
        return chat.members.get(user_id, LEFT)
