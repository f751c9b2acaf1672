"""The bare aiogram bot that bench/startup.py starts beside `duban run`: aiogram's own floor.

    BOT_TOKEN=… TELEGRAM_API_URL=http://127.0.0.1:PORT python bench/bare_aiogram.py

Built the way bot.app builds ours (AiohttpSession on TelegramAPIServer.from_base, HTML by
default), a Dispatcher with one echo handler, then long polling until SIGTERM. No settings, no
database, no scheduler, no i18n: whatever start-up time and memory this takes, ours cannot avoid.
"""

from __future__ import annotations

import asyncio
import os

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import Message


async def echo(message: Message) -> None:
    await message.answer(message.text or "?")


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["TELEGRAM_API_URL"]))
    bot = Bot(
        token=os.environ["BOT_TOKEN"],
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )
    dispatcher = Dispatcher()
    dispatcher.message.register(echo)
    await dispatcher.start_polling(bot, handle_signals=True)


if __name__ == "__main__":
    asyncio.run(main())
