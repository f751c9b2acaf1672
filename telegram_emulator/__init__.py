"""A faithful fake Telegram Bot API server for end-to-end tests and ``duban demo``.

The bot talks to it exactly as to Telegram (aiogram ``AiohttpSession`` with
``TelegramAPIServer.from_base(tg.base_url)``, long polling); tests act as people through the same
object. See :class:`TelegramEmulator`.
"""

from telegram_emulator.actors import png_header
from telegram_emulator.errors import ApiError
from telegram_emulator.formatting import parse_html
from telegram_emulator.limits import FaultRecord, FloodLimits, Violation
from telegram_emulator.params import Upload
from telegram_emulator.server import TelegramEmulator
from telegram_emulator.state import (
    ApiCall,
    BotMessage,
    CallbackQueryRecord,
    EmulatedChat,
    EmulatedUser,
)

__all__ = [
    "ApiCall",
    "ApiError",
    "BotMessage",
    "CallbackQueryRecord",
    "EmulatedChat",
    "EmulatedUser",
    "FaultRecord",
    "FloodLimits",
    "TelegramEmulator",
    "Upload",
    "Violation",
    "parse_html",
    "png_header",
]
