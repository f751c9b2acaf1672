"""The emulated world: users, chats, messages and what the bot did to them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EmulatedUser:
    """A Telegram account the tests act as."""

    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def to_api(self) -> dict[str, Any]:
        """The User object."""
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


# Chat member statuses as the Bot API spells them.
CREATOR, ADMINISTRATOR, MEMBER, LEFT, KICKED = (
    "creator",
    "administrator",
    "member",
    "left",
    "kicked",
)


@dataclass
class EmulatedChat:
    """A private chat (id == user id), a group (negative id) or a supergroup (-100…)."""

    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None
    username: str | None = None
    user: EmulatedUser | None = None  # the other party of a private chat
    members: dict[int, str] = field(default_factory=dict)  # user id -> status
    bot_status: str = MEMBER
    started: bool = False  # private: the user has written to the bot
    blocked: bool = False  # private: the user blocked the bot
    migrated_to: int | None = None  # group upgraded to this supergroup
    pinned_message_id: int | None = None
    last_message_id: int = 0

    @property
    def is_group(self) -> bool:
        """Group or supergroup."""
        return self.type != "private"

    def next_message_id(self) -> int:
        """Message ids grow per chat, shared by the bot and the people in it."""
        self.last_message_id += 1
        return self.last_message_id

    def to_api(self) -> dict[str, Any]:
        """The Chat object embedded in messages."""
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private" and self.user is not None:
            data["first_name"] = self.user.first_name
            if self.user.last_name:
                data["last_name"] = self.user.last_name
            if self.user.username:
                data["username"] = self.user.username
        else:
            data["title"] = self.title or ""
            if self.username:
                data["username"] = self.username
        return data

    def to_full_api(self) -> dict[str, Any]:
        """The ChatFullInfo object getChat returns."""
        data = self.to_api()
        data.update(
            accent_color_id=abs(self.id) % 7,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        if self.pinned_message_id is not None:
            data["pinned_message_id"] = self.pinned_message_id
        return data


@dataclass
class BotMessage:
    """A message the bot sent, with its current state and every earlier version.

    Item access reads the current Message JSON: ``msg["text"]``, ``msg.get("reply_markup")``.
    """

    chat_id: int
    message_id: int
    method: str
    data: dict[str, Any]
    versions: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    # A reply keyboard (or its removal) is not part of the returned Message, so it lives here.
    reply_keyboard: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get`` on the current Message JSON."""
        return self.data.get(key, default)

    @property
    def text(self) -> str | None:
        """Plain text (tags removed), or the caption of a media message."""
        return self.data.get("text", self.data.get("caption"))

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        """The inline keyboard currently attached, if any."""
        return self.data.get("reply_markup")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline buttons row by row, flattened."""
        markup = self.reply_markup or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]

    @property
    def callback_data(self) -> list[str]:
        """callback_data of every inline button, in order."""
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    @property
    def edited(self) -> bool:
        """True once the bot edited it."""
        return len(self.versions) > 1


@dataclass
class ApiCall:
    """One HTTP call the bot made and how the emulator answered it."""

    method: str
    params: dict[str, Any]  # as sent: form values are strings, uploads are Upload objects
    time: float  # emulator clock when the request arrived
    seq: int = 0  # event order when the request arrived
    done_seq: int | None = None  # event order when it was answered (or dropped)
    status: int = 0  # HTTP status; 0 while pending or when the connection was dropped
    response: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when Telegram would have said ``"ok": true``."""
        return self.status == 200

    @property
    def result(self) -> Any:
        """The ``result`` of a successful call."""
        return (self.response or {}).get("result")

    @property
    def description(self) -> str | None:
        """The error description of a failed call."""
        return (self.response or {}).get("description")

    def arg(self, name: str, default: Any = None) -> Any:
        """One parameter, JSON-decoded when it was sent JSON-serialized (reply_markup, …)."""
        value = self.params.get(name, default)
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


@dataclass
class CallbackQueryRecord:
    """A button press and whether the bot answered it."""

    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    answered: bool = False
    answer: dict[str, Any] | None = None


def iter_inline_buttons(markup: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Every button of an inline keyboard markup."""
    for row in (markup or {}).get("inline_keyboard", []):
        yield from row
