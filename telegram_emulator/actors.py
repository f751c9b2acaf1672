"""Acting as people: create users and chats, send messages, press buttons, block the bot."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from telegram_emulator.formatting import command_entities, leading_command
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
    iter_inline_buttons,
)
from telegram_emulator.world import World, member_json

ChatRef = EmulatedChat | EmulatedUser | int
MessageRef = BotMessage | dict[str, Any]

_PRESENT = (CREATOR, ADMINISTRATOR, MEMBER)
# Service-message keys: Telegram delivers these to bots even in privacy mode.
_SERVICE_KEYS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "group_chat_created",
        "supergroup_chat_created",
        "new_chat_title",
        "pinned_message",
    }
)


def png_header(width: int, height: int) -> bytes:
    """The smallest bytes that identify a PNG of the given size (enough for Telegram here)."""
    return (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + width.to_bytes(4, "big")
        + height.to_bytes(4, "big")
        + b"\x08\x02\x00\x00\x00"
    )


class UserActions:
    """The test-facing side: everything a person could do in a Telegram client."""

    world: World

    def __init__(self) -> None:
        self._next_user_id = 10_000_001
        self._next_group = 1
        self._next_query = 1

    # -- setting the scene ----------------------------------------------------------------------

    def add_user(
        self,
        first_name: str = "Tester",
        *,
        user_id: int | None = None,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = None,
        started: bool = False,
    ) -> EmulatedUser:
        """A person with a private chat (id == user id); ``started`` = has pressed Start."""
        if user_id is None:
            while self._next_user_id in self.world.users:
                self._next_user_id += 1
            user_id = self._next_user_id
            self._next_user_id += 1
        if user_id in self.world.users or user_id <= 0:
            raise ValueError(f"user id {user_id} is taken or not positive")
        user = EmulatedUser(user_id, first_name, username, last_name, language_code)
        self.world.users[user_id] = user
        self.world.chats[user_id] = EmulatedChat(user_id, "private", user=user, started=started)
        return user

    def add_group(
        self,
        title: str,
        *,
        members: Iterable[EmulatedUser] = (),
        admins: Iterable[EmulatedUser] = (),
        creator: EmulatedUser | None = None,
        supergroup: bool = False,
        username: str | None = None,
        bot_admin: bool = False,
        bot_member: bool = True,
        chat_id: int | None = None,
    ) -> EmulatedChat:
        """A group (or supergroup) the bot is already in, with people in it."""
        if chat_id is None:
            base = -1_001_000_000_000 if supergroup else -4_000_000_000
            chat_id = base - self._next_group
            self._next_group += 1
        if chat_id >= 0 or chat_id in self.world.chats:
            raise ValueError(f"group id {chat_id} is taken or not negative")
        chat = EmulatedChat(
            chat_id,
            "supergroup" if supergroup else "group",
            title=title,
            username=username,
            bot_status=ADMINISTRATOR if bot_admin else MEMBER if bot_member else LEFT,
        )
        for user in members:
            chat.members[user.id] = MEMBER
        for user in admins:
            chat.members[user.id] = ADMINISTRATOR
        if creator is not None:
            chat.members[creator.id] = CREATOR
        self.world.chats[chat_id] = chat
        return chat

    def add_member(self, chat: EmulatedChat, user: EmulatedUser, *, admin: bool = False) -> None:
        """Put a person into a group silently (scene setting, no update)."""
        chat.members[user.id] = ADMINISTRATOR if admin else MEMBER

    def private_chat(self, user: EmulatedUser) -> EmulatedChat:
        """The user's private chat with the bot."""
        return self.world.chats[user.id]

    def chat_of(self, ref: ChatRef) -> EmulatedChat:
        """Resolve a chat given as chat, user (their private chat) or id."""
        if isinstance(ref, EmulatedChat):
            return ref
        if isinstance(ref, EmulatedUser):
            return self.world.chats[ref.id]
        return self.world.chats[ref]

    # -- messages -------------------------------------------------------------------------------

    def _bot_sees(self, chat: EmulatedChat, message: dict[str, Any]) -> bool:  # noqa: PLR0911
        """Privacy mode: in groups a bot sees commands, replies to it and service messages."""
        if chat.type == "private":
            return True
        if chat.bot_status not in (MEMBER, ADMINISTRATOR, CREATOR):
            return False
        if not self.world.privacy_mode or self.world.is_bot_admin(chat):
            return True
        if _SERVICE_KEYS.intersection(message):
            return True
        reply = message.get("reply_to_message")
        if reply is not None and reply.get("from", {}).get("id") == self.world.bot.id:
            return True
        command = leading_command(message.get("text") or message.get("caption") or "")
        if command is None:
            return False
        mention = command[1]
        return mention is None or mention.lower() == (self.world.bot.username or "").lower()

    def _post(
        self,
        user: EmulatedUser,
        chat: ChatRef | None,
        content: dict[str, Any],
        reply_to: MessageRef | None = None,
    ) -> dict[str, Any]:
        target = self.chat_of(chat if chat is not None else user)
        if target.type == "private":
            if target.user is None or target.user.id != user.id:
                raise ValueError(f"{user.first_name} cannot write in another person's chat")
            if target.blocked:
                raise RuntimeError("the user blocked the bot: press_start() or unblock_bot() first")
            target.started = True
        else:
            if target.members.get(user.id) not in _PRESENT:
                raise ValueError(f"{user.first_name} is not a member of {target.title!r}")
            if target.migrated_to is not None:
                raise RuntimeError(f"{target.title!r} became supergroup {target.migrated_to}")
        message = self.world.new_message(target, user)
        if reply_to is not None:
            original = self._current(reply_to)
            message["reply_to_message"] = {
                k: v for k, v in original.items() if k != "reply_to_message"
            }
        message.update(content)
        self.world.messages[(target.id, message["message_id"])] = message
        if self._bot_sees(target, message):
            self.world.enqueue({"message": message})
        return message

    def _current(self, ref: MessageRef) -> dict[str, Any]:
        data = ref.data if isinstance(ref, BotMessage) else ref
        current = self.world.message(data["chat"]["id"], data["message_id"])
        if current is None:
            raise LookupError(f"message {data['message_id']} was deleted")
        return current

    def send_text(
        self,
        user: EmulatedUser,
        chat: ChatRef | None,
        text: str,
        reply_to: MessageRef | None = None,
    ) -> dict[str, Any]:
        """A text message; /commands get bot_command entities. ``chat=None``: private chat."""
        content: dict[str, Any] = {"text": text}
        if entities := command_entities(text):
            content["entities"] = entities
        return self._post(user, chat, content, reply_to)

    def press_start(self, user: EmulatedUser, payload: str | None = None) -> dict[str, Any]:
        """Press Start (or Restart after blocking): sends ``/start [payload]``."""
        if self.private_chat(user).blocked:
            self.unblock_bot(user)
        return self.send_text(user, None, f"/start {payload}" if payload else "/start")

    def send_photo(
        self,
        user: EmulatedUser,
        chat: ChatRef | None = None,
        *,
        caption: str | None = None,
        content: bytes | None = None,
        width: int = 1280,
        height: int = 960,
        reply_to: MessageRef | None = None,
    ) -> dict[str, Any]:
        """A photo; the bot can fetch the largest size with getFile."""
        data = content if content is not None else png_header(width, height)
        stored = self.world.files.add("photo", data, width=width, height=height)
        body: dict[str, Any] = {"photo": self.world.files.photo_sizes(stored)}
        self._caption(body, caption)
        return self._post(user, chat, body, reply_to)

    def send_document(
        self,
        user: EmulatedUser,
        chat: ChatRef | None = None,
        *,
        content: bytes = b"test document\n",
        file_name: str = "document.txt",
        mime_type: str | None = None,
        caption: str | None = None,
        reply_to: MessageRef | None = None,
    ) -> dict[str, Any]:
        """A file; the bot can download ``content`` through getFile."""
        stored = self.world.files.add("document", content, file_name=file_name, mime_type=mime_type)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": stored.mime_type,
            "file_size": len(content),
        }
        body: dict[str, Any] = {"document": document}
        self._caption(body, caption)
        return self._post(user, chat, body, reply_to)

    def send_sticker(
        self,
        user: EmulatedUser,
        chat: ChatRef | None = None,
        *,
        emoji: str = "👍",
        reply_to: MessageRef | None = None,
    ) -> dict[str, Any]:
        """A static sticker."""
        stored = self.world.files.add(
            "sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", width=512, height=512
        )
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": len(stored.content),
        }
        return self._post(user, chat, {"sticker": sticker}, reply_to)

    def send_voice(
        self,
        user: EmulatedUser,
        chat: ChatRef | None = None,
        *,
        duration: int = 3,
        content: bytes = b"OggS\x00\x02voice",
        reply_to: MessageRef | None = None,
    ) -> dict[str, Any]:
        """A voice note (OGG/Opus)."""
        stored = self.world.files.add(
            "voice", content, file_name="voice.ogg", mime_type="audio/ogg"
        )
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(content),
        }
        return self._post(user, chat, {"voice": voice}, reply_to)

    @staticmethod
    def _caption(body: dict[str, Any], caption: str | None) -> None:
        if caption:
            body["caption"] = caption
            if entities := command_entities(caption):
                body["caption_entities"] = entities

    def edit_text(self, user: EmulatedUser, message: MessageRef, new_text: str) -> dict[str, Any]:
        """The user edits their message: an ``edited_message`` update."""
        current = self._current(message)
        if current.get("from", {}).get("id") != user.id:
            raise ValueError("people can only edit their own messages")
        if "text" not in current:
            raise ValueError("only text messages can be edited here")
        edited = {k: v for k, v in current.items() if k not in ("text", "entities", "edit_date")}
        edited["text"] = new_text
        if entities := command_entities(new_text):
            edited["entities"] = entities
        edited["edit_date"] = max(int(time.time()), current["date"])
        chat = self.world.chats[current["chat"]["id"]]
        self.world.messages[(chat.id, current["message_id"])] = edited
        if self._bot_sees(chat, edited):
            self.world.enqueue({"edited_message": edited})
        return edited

    def press(
        self,
        user: EmulatedUser,
        bot_message: MessageRef,
        callback_data: str,
        *,
        strict: bool = True,
    ) -> str:
        """Press an inline button; returns the callback query id the bot must answer.

        ``strict`` requires a button with that data on the message as it is now (a real client
        can press nothing else); pass ``strict=False`` to forge stale or foreign data.
        """
        current = self._current(bot_message)
        if current.get("from", {}).get("id") != self.world.bot.id:
            raise ValueError("only the bot's messages carry inline buttons")
        if strict:
            available = [
                b["callback_data"]
                for b in iter_inline_buttons(current.get("reply_markup"))
                if "callback_data" in b
            ]
            if callback_data not in available:
                raise ValueError(f"no button with callback_data {callback_data!r}: {available}")
        query_id = str(4_400_000_000_000_000_000 + self._next_query)
        self._next_query += 1
        chat_id = current["chat"]["id"]
        self.world.callback_queries[query_id] = CallbackQueryRecord(
            query_id, user.id, chat_id, current["message_id"], callback_data
        )
        self.world.enqueue(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user.to_api(),
                    "message": current,
                    "chat_instance": str(abs(chat_id) * 7 + 1_000_000_007),
                    "data": callback_data,
                }
            }
        )
        return query_id

    # -- membership -----------------------------------------------------------------------------

    def _member_update(self, chat: EmulatedChat, by: EmulatedUser, old: str, new: str) -> None:
        bot = self.world.bot.to_api()
        self.world.enqueue(
            {
                "my_chat_member": {
                    "chat": chat.to_api(),
                    "from": by.to_api(),
                    "date": int(time.time()),
                    "old_chat_member": member_json(bot, old),
                    "new_chat_member": member_json(bot, new),
                }
            }
        )

    def block_bot(self, user: EmulatedUser) -> None:
        """The user blocks the bot: later sends get 403 "bot was blocked by the user"."""
        chat = self.private_chat(user)
        chat.blocked = True
        self._member_update(chat, user, MEMBER, KICKED)

    def unblock_bot(self, user: EmulatedUser) -> None:
        """The user unblocks the bot."""
        chat = self.private_chat(user)
        chat.blocked = False
        self._member_update(chat, user, KICKED, MEMBER)

    def _actor(self, chat: EmulatedChat, by: EmulatedUser | None) -> EmulatedUser:
        if by is not None:
            return by
        ranked = sorted(
            chat.members.items(), key=lambda kv: _PRESENT.index(kv[1]) if kv[1] in _PRESENT else 9
        )
        if not ranked:
            raise ValueError("the group has nobody who could do that; pass by=")
        return self.world.users[ranked[0][0]]

    def kick_bot(self, group: EmulatedChat, by: EmulatedUser | None = None) -> None:
        """Remove the bot from a group: later sends get 403 "bot was kicked from the … chat"."""
        old = group.bot_status
        group.bot_status = KICKED
        self._member_update(group, self._actor(group, by), old, KICKED)

    def add_bot(
        self, group: EmulatedChat, by: EmulatedUser | None = None, *, admin: bool = False
    ) -> None:
        """Add (or promote) the bot: my_chat_member plus a new_chat_members service message."""
        actor = self._actor(group, by)
        old = group.bot_status
        group.bot_status = ADMINISTRATOR if admin else MEMBER
        self._member_update(group, actor, old, group.bot_status)
        if old not in _PRESENT:
            self._service(
                group,
                actor,
                {
                    "new_chat_members": [self.world.bot.to_api()],
                    "new_chat_member": self.world.bot.to_api(),
                    "new_chat_participant": self.world.bot.to_api(),
                },
            )

    def _service(self, chat: EmulatedChat, actor: EmulatedUser, content: dict[str, Any]) -> None:
        message = self.world.new_message(chat, actor)
        message.update(content)
        self.world.messages[(chat.id, message["message_id"])] = message
        if self._bot_sees(chat, message):
            self.world.enqueue({"message": message})

    def upgrade_group(self, group: EmulatedChat) -> EmulatedChat:
        """Upgrade a group to a supergroup: the old id then answers 400 with migrate_to_chat_id."""
        if group.type != "group":
            raise ValueError("only basic groups can be upgraded")
        actor = self._actor(group, None)
        supergroup = self.add_group(group.title or "", supergroup=True)
        supergroup.members = dict(group.members)
        supergroup.bot_status = group.bot_status
        self._service(group, actor, {"migrate_to_chat_id": supergroup.id})
        group.migrated_to = supergroup.id
        self._service(supergroup, actor, {"migrate_from_chat_id": group.id})
        return supergroup

    # -- raw updates ------------------------------------------------------------------------------

    def deliver_raw(self, update: dict[str, Any]) -> int:
        """Queue any dict as an update (malformed ones too); returns its update_id.

        With an explicit ``update_id`` the update is delivered even if that id was confirmed.
        """
        return self.world.enqueue(dict(update), forced="update_id" in update)

    def redeliver(self, update_id: int) -> int:
        """Deliver an earlier update again, same update_id, as after a crash before confirming."""
        for update in reversed(self.world.updates):
            if update["update_id"] == update_id:
                return self.world.enqueue(dict(update), forced=True)
        raise LookupError(f"no update {update_id} was ever queued")
