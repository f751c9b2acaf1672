"""Building Telegram updates for handler tests (fed with `dp.feed_update`)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any

from aiogram.types import CallbackQuery, Chat, Message, MessageEntity, Update, User

from tests.mocked_bot import BOT_ID, BOT_USERNAME

_ids = count(1)


def user(user_id: int = 1001, first_name: str = "张三", language_code: str | None = "zh") -> User:
    return User(id=user_id, is_bot=False, first_name=first_name, language_code=language_code)


def private_chat(of: User) -> Chat:
    return Chat(id=of.id, type="private", first_name=of.first_name)


def group_chat(chat_id: int = -100123, title: str = "协调群") -> Chat:
    return Chat(id=chat_id, type="supergroup", title=title)


def message_update(sender: User, text: str, chat: Chat | None = None, **fields: Any) -> Update:
    """A text message; a leading /command gets its bot_command entity as Telegram adds it."""
    entities = None
    if text.startswith("/"):
        length = len(text.split(maxsplit=1)[0])
        entities = [MessageEntity(type="bot_command", offset=0, length=length)]
    message = Message(
        message_id=next(_ids),
        date=datetime.now(UTC),
        chat=chat or private_chat(sender),
        from_user=sender,
        text=text,
        entities=entities,
        **fields,
    )
    return Update(update_id=next(_ids), message=message)


def bot_message(chat: Chat, text: str, **fields: Any) -> Message:
    """A message the bot sent earlier (for replies and button presses)."""
    return Message(
        message_id=next(_ids),
        date=datetime.now(UTC),
        chat=chat,
        from_user=User(id=BOT_ID, is_bot=True, first_name="Duban", username=BOT_USERNAME),
        text=text,
        **fields,
    )


def callback_update(sender: User, data: str, message: Message | None = None) -> Update:
    query = CallbackQuery(
        id=str(next(_ids)),
        from_user=sender,
        chat_instance="ci",
        data=data,
        message=message or bot_message(private_chat(sender), "…"),
    )
    return Update(update_id=next(_ids), callback_query=query)
