"""/summary: the weekly summary on demand, for coordinators and observers.

Used in the coordination group or in a private chat with the bot (elsewhere it would show the
plan's state to people who may not be entitled to it). The summary is computed now, sent as HTML
messages of at most 4096 characters each (or the headline plus a .txt document when very long),
then its chart as a photo when the CJK font is installed (drawn in a worker thread).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.onboarding import coordination_chat_id
from bot.people import Access, Actor
from bot.settings import Settings
from bot.summary_service import build_summary
from handlers.render import split_message

log = logging.getLogger(__name__)

ALLOWED = frozenset({Access.COORDINATOR, Access.OBSERVER})


async def _refused(message: Message, actor: Actor | None, settings: Settings) -> bool:
    """True (and a short reply sent) when this sender or this chat may not see the summary."""
    if actor is None:  # posted as the group (anonymous admin) or as a channel
        await message.answer(
            _(
                "I cannot tell who you are when you post as the group: send the command "
                "from your own account."
            )
        )
        return True
    if actor.access not in ALLOWED:
        await message.answer(_("Only coordinators and observers can see the summary."))
        return True
    if message.chat.type != "private" and message.chat.id != await coordination_chat_id(settings):
        await message.answer(
            _("Use /summary in the coordination group or in a private chat with me.")
        )
        return True
    return False


async def show_summary(
    message: Message, settings: Settings, i18n: I18n, actor: Actor | None = None
) -> None:
    if await _refused(message, actor, settings):
        return
    built = await build_summary(
        datetime.now(UTC), tz=settings.tz, locale=i18n.current_locale, i18n=i18n
    )
    if built is None:
        await message.answer(_("No plan has been imported yet (duban plan import FILE)."))
        return
    summary, rendered = built.summary, built.rendered
    for text in rendered.messages:
        for part in split_message(text):  # already within 4096: a guard, not a second split
            await message.answer(part)
    if rendered.document is not None:
        await message.answer_document(
            BufferedInputFile(rendered.document, filename=rendered.filename or "summary.txt")
        )
    png = await built.chart()
    if png is None:
        return  # no CJK font: text alone (bot.chart logged a warning)
    try:
        await message.answer_photo(
            BufferedInputFile(png, filename=f"duban-summary-{summary.today.isoformat()}.png"),
            caption=_("Task status by department and target progress"),
        )
    except TelegramBadRequest as exc:
        log.warning("The summary chart was refused by Telegram: %s", exc.message)


def build_router() -> Router:
    router = Router(name="summary")
    router.message.register(show_summary, Command("summary"))
    return router
