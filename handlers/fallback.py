"""Catch-alls: what no feature router handled. Registered last, by handlers.build_routers."""

from __future__ import annotations

import logging
from contextlib import suppress

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import CallbackQuery, ErrorEvent, Message
from aiogram.utils.i18n import gettext as _

log = logging.getLogger(__name__)


async def unknown_command(message: Message) -> None:
    await message.answer(_("Unknown command. Send /help to see what I can do."))


async def unexpected_private_message(message: Message) -> None:
    """Text, stickers, voice… in a private chat outside any conversation."""
    await message.answer(_("I only understand commands here. Send /help to see them."))


async def stale_button(callback: CallbackQuery) -> None:
    """Buttons from an old message, or callback data that was forged or truncated."""
    await callback.answer(_("This button is no longer valid."), show_alert=False)


async def on_error(event: ErrorEvent) -> None:
    """Log the traceback for us; tell the user something short instead of going silent."""
    log.error("Unhandled error in update %s", event.update.update_id, exc_info=event.exception)
    sorry = _("Something went wrong. Please try again.")
    # Telling the user may fail too (a callback query is answered once; the chat may be gone):
    # that must not raise again inside the error handler.
    with suppress(TelegramBadRequest, TelegramForbiddenError):
        if event.update.callback_query:
            await event.update.callback_query.answer(sorry)
        elif event.update.message and event.update.message.chat.type == "private":
            await event.update.message.answer(sorry)


def build_router() -> Router:
    router = Router(name="fallback")
    router.message.register(unknown_command, F.text.startswith("/"))
    # In groups the bot stays silent on ordinary chatter; in private chats it points to /help.
    router.message.register(unexpected_private_message, F.chat.type == "private")
    router.callback_query.register(stale_button)
    router.errors.register(on_error)
    return router
