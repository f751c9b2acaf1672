"""A Bot whose session records requests instead of calling Telegram (aiogram's tests/mocked_bot.py).

Handler tests feed updates with `dp.feed_update(bot, update)` and read `bot.session.requests`.
Results can be queued with `bot.add_result_for(Method, ok=True, result=...)`; without one, a
plausible success is returned (a Message for send/edit methods, True otherwise).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from itertools import count
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.enums import ParseMode
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import Chat, Message, ResponseParameters, User

BOT_ID = 42
BOT_USERNAME = "duban_bot"


class MockedSession(BaseSession):
    def __init__(self) -> None:
        super().__init__()
        self.responses: deque[Response[Any]] = deque()
        self.requests: deque[TelegramMethod[Any]] = deque()
        self.closed = True
        self._message_ids = count(1000)

    def add_result(self, response: Response[Any]) -> Response[Any]:
        self.responses.append(response)
        return response

    def get_request(self) -> TelegramMethod[Any]:
        return self.requests.pop()

    async def close(self) -> None:
        self.closed = True

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109
    ) -> TelegramType:
        self.closed = False
        self.requests.append(method)
        if self.responses:
            response = self.responses.popleft()
            self.check_response(
                bot=bot,
                method=method,
                status_code=response.error_code or 200,
                content=response.model_dump_json(),
            )
            return response.result  # type: ignore[return-value]
        return self._default_result(method)

    def _default_result(self, method: TelegramMethod[Any]) -> Any:
        returning = getattr(method, "__returning__", None)
        if returning is Message or (isinstance(returning, type) and issubclass(returning, Message)):
            chat_id = getattr(method, "chat_id", None) or 1
            return Message(
                message_id=next(self._message_ids),
                date=datetime.now(UTC),
                chat=Chat(id=chat_id, type="private" if int(chat_id) > 0 else "supergroup"),
                from_user=User(id=BOT_ID, is_bot=True, first_name="Duban", username=BOT_USERNAME),
                text=getattr(method, "text", None),
                reply_markup=getattr(method, "reply_markup", None),
            )
        return True

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        yield b""


class MockedBot(Bot):
    session: MockedSession

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            kwargs.pop("token", "42:TEST"),
            session=MockedSession(),
            default=DefaultBotProperties(parse_mode=ParseMode.HTML),
            **kwargs,
        )
        self._me = User(
            id=BOT_ID,
            is_bot=True,
            first_name="Duban",
            username=BOT_USERNAME,
            can_join_groups=True,
            can_read_all_group_messages=False,
            supports_inline_queries=False,
        )

    def add_result_for(
        self,
        method: type[TelegramMethod[TelegramType]],
        ok: bool,
        result: TelegramType | None = None,
        description: str | None = None,
        error_code: int = 200,
        migrate_to_chat_id: int | None = None,
        retry_after: int | None = None,
    ) -> Response[TelegramType]:
        response = Response[method.__returning__](  # type: ignore[name-defined]
            ok=ok,
            result=result,
            description=description,
            error_code=error_code,
            parameters=ResponseParameters(
                migrate_to_chat_id=migrate_to_chat_id, retry_after=retry_after
            ),
        )
        self.session.add_result(response)
        return response

    def get_request(self) -> TelegramMethod[Any]:
        return self.session.get_request()

    def sent_texts(self) -> list[str]:
        return [getattr(r, "text", None) or "" for r in self.session.requests if hasattr(r, "text")]
