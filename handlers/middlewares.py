"""Middlewares: who is talking (the actor) and in which language to answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from bot.i18n import pick_locale
from bot.people import resolve_actor
from storage.people import set_language_code


class ActorMiddleware(BaseMiddleware):
    """Puts `actor` (bot.people.Actor) into the handler data: one database read.

    A person the bot knows whose Telegram language differs from the stored one gets it stored
    (one write, only on a change): unprompted messages use it when they chose no /lang.
    """

    def __init__(self, admin_ids: tuple[int, ...]) -> None:
        self.admin_ids = admin_ids

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is not None and not user.is_bot:
            actor = await resolve_actor(user.id, user.full_name, self.admin_ids)
            # Telegram leaves language_code out at times: unknown, not "no language".
            language = user.language_code[:16] if user.language_code else None
            if actor.liaison_id is not None and language and language != actor.language_code:
                await set_language_code(actor.liaison_id, language)
                actor = replace(actor, language_code=language)
            data["actor"] = actor
        return await handler(event, data)


class ActorI18nMiddleware(I18nMiddleware):
    """The actor's /lang choice, else their Telegram language when supported, else the default."""

    def __init__(self, i18n: I18n) -> None:
        super().__init__(i18n=i18n)

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        actor = data.get("actor")
        user: User | None = data.get("event_from_user")
        return pick_locale(
            actor.locale if actor else None,
            user.language_code if user else None,
            self.i18n.default_locale,
        )
