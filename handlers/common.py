"""/start (without an invitation), /help, /whoami and /lang: open to everyone, guests included."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.commands import commands_for
from bot.onboarding import coordination_chat_id
from bot.people import Access, Actor
from bot.settings import SUPPORTED_LOCALES, Settings
from handlers.render import quote
from storage.people import set_locale

ACCESS_NAMES = {
    Access.GUEST: lambda: _("guest"),
    Access.OBSERVER: lambda: _("observer"),
    Access.LIAISON: lambda: _("liaison"),
    Access.COORDINATOR: lambda: _("coordinator"),
}


def replied_person_message(message: Message) -> Message | None:
    """The message `message` explicitly replies to, or None.

    In a forum topic Telegram sets `reply_to_message` on every message to the topic's creation
    message (a service message with `forum_topic_created`, whose id is the `message_thread_id`),
    reply or not: that is the topic, not a person's message, so it counts as no reply.
    """
    replied = message.reply_to_message
    if replied is None or replied.forum_topic_created is not None:
        return None
    if message.is_topic_message and replied.message_id == message.message_thread_id:
        return None
    return replied


def help_text(actor: Actor, *, in_group: bool, coordination_group: bool = False) -> str:
    lines = [_("<b>Duban (督办)</b> keeps the plan's tasks moving. Commands for you:"), ""]
    lines += [
        f"/{spec.name} — {spec.description}"
        for spec in commands_for(
            actor.access, in_group=in_group, coordination_group=coordination_group
        )
    ]
    if actor.access is Access.GUEST:
        lines += ["", _("Ask a coordinator for an invitation to join your department.")]
    return "\n".join(lines)


def _or_guest(actor: Actor | None, message: Message) -> Actor:
    """The actor, or a guest for a sender that is no person (an anonymous group admin posts as
    GroupAnonymousBot; ActorMiddleware resolves people only)."""
    if actor is not None:
        return actor
    sender = message.from_user or message.sender_chat or message.chat
    return Actor(user_id=sender.id, full_name=sender.full_name or "", access=Access.GUEST)


async def _help_here(message: Message, actor: Actor, settings: Settings) -> str:
    """The commands `actor` may use in this chat (a group other than the coordination group
    lists no lookups: they are refused there)."""
    if message.chat.type == "private":
        return help_text(actor, in_group=False)
    coordination = message.chat.id == await coordination_chat_id(settings)
    return help_text(actor, in_group=True, coordination_group=coordination)


async def start(message: Message, settings: Settings, actor: Actor | None = None) -> None:
    actor = _or_guest(actor, message)
    greeting = _("Hello, {name}!").format(name=quote(actor.full_name))
    await message.answer(greeting + "\n\n" + await _help_here(message, actor, settings))


async def show_help(message: Message, settings: Settings, actor: Actor | None = None) -> None:
    actor = _or_guest(actor, message)
    await message.answer(await _help_here(message, actor, settings))


async def whoami(message: Message, actor: Actor | None = None) -> None:
    actor = _or_guest(actor, message)
    lines = [
        _("Name: {name}").format(name=quote(actor.full_name)),
        _("Telegram id: <code>{id}</code>").format(id=actor.user_id),
        _("Role: {role}").format(role=ACCESS_NAMES[actor.access]()),
    ]
    if actor.department_name:
        lines.append(_("Department: {name}").format(name=quote(actor.department_name)))
    await message.answer("\n".join(lines))


async def choose_language(
    message: Message, command: CommandObject, i18n: I18n, actor: Actor | None = None
) -> None:
    choice = (command.args or "").strip().lower()
    if actor is None:  # no person to remember a language for (an anonymous group admin): silence
        return
    if choice not in SUPPORTED_LOCALES:
        await message.answer(_("Usage: /lang zh or /lang en"))
        return
    await set_locale(actor.user_id, actor.full_name, choice)
    with i18n.use_locale(choice):
        await message.answer(_("Language set to English."))


def build_router() -> Router:
    router = Router(name="common")
    # /start with an invitation token belongs to handlers.onboarding, which comes first.
    router.message.register(start, CommandStart())
    router.message.register(show_help, Command("help"))
    router.message.register(whoami, Command("whoami"))
    router.message.register(choose_language, Command("lang"))
    return router
