"""Onboarding and roles: /start TOKEN, /invite, /grant, /revoke, /unbind, /bindgroup.

This router must come before handlers.common: `/start TOKEN` is handled here, plain `/start`
there. Decisions worth knowing (the rules themselves live in bot.onboarding):

- /invite works in a private chat only: an invitation posted in a group could be taken by anyone.
- `/start TOKEN` from a coordinator leaves the token unused: coordinators do not become liaisons.
- `/start TOKEN` counts failures (unknown, used, expired token): past bot.onboarding's limit the
  person is told when to try again, and even a valid token waits until then.
- /revoke also ends the revoked person's open invitations (answered like expired ones).
- /grant, /revoke and /unbind take a numeric user id (shown by /whoami), an @username the bot has
  seen, or no argument in a reply to the person's message. In a forum topic Telegram fills
  `reply_to_message` with the topic's creation message even for a bare command: that names
  nobody (handlers.common.replied_person_message).
- The people concerned are told in a private message when possible (a person who never started
  the bot cannot be written to; that is not an error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BotCommandScopeChat, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot import onboarding
from bot.commands import COORDINATION_MENU, command_menu
from bot.i18n import pick_locale
from bot.labels import ROLE_NAMES
from bot.onboarding import (
    GrantOutcome,
    PersonRef,
    RedeemOutcome,
    Redemption,
    RevokeOutcome,
    UnbindOutcome,
    UnknownDepartmentError,
)
from bot.people import Access, Actor
from bot.settings import SUPPORTED_LOCALES, Settings
from handlers.common import replied_person_message
from handlers.render import quote, split_message
from storage.plan_queries import DepartmentTask

log = logging.getLogger(__name__)

LEAD_WORDS = frozenset({"lead", "--lead"})  # `/invite 县建设局 lead`: the invitee leads
GROUP_TYPES = ("group", "supergroup")


# Rendering ----------------------------------------------------------------------------------------


def _when(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


def _who(user_id: int, person: PersonRef | None = None, name: str = "") -> str:
    """“张三 (12345)”, escaped; just the id when the bot knows no name."""
    full_name = (person.full_name if person else "") or name
    if not full_name:
        return f"<code>{user_id}</code>"
    return _("{name} (<code>{id}</code>)").format(name=quote(full_name), id=user_id)


def task_lines(tasks: tuple[DepartmentTask, ...]) -> list[str]:
    if not tasks:
        return [_("Your department has no tasks in the plan yet.")]
    lines = [_("Your department's tasks ({count}):").format(count=len(tasks))]
    lines += [
        _("<code>{code}</code> {title} ({role})").format(
            code=quote(task.code), title=quote(task.title), role=ROLE_NAMES[task.role]
        )
        for task in tasks
    ]
    return lines


def greeting(redemption: Redemption, name: str) -> str:
    result = redemption.result
    department = quote(result.department.name if result.department else "")
    name = quote(name)
    if result.outcome is RedeemOutcome.ALREADY_MEMBER:
        head = (
            _("You already are the lead liaison of {department}.")
            if result.is_lead
            else _("You already are a liaison of {department}.")
        ).format(department=department)
        lines = [head]
    elif result.is_lead:
        lines = [
            _("Welcome, {name}! You are now the lead liaison of {department}.").format(
                name=name, department=department
            )
        ]
    else:
        lead = result.lead.full_name if result.lead else ""
        lines = [
            _(
                "Welcome, {name}! You are now a deputy liaison of {department}; "
                "the lead liaison is {lead}."
            ).format(name=name, department=department, lead=quote(lead) or "—")
        ]
    if result.previous_department is not None:
        lines.append(
            _("You no longer answer for {department}.").format(
                department=quote(result.previous_department.name)
            )
        )
    lines += ["", *task_lines(redemption.tasks), ""]
    lines.append(
        _(
            "Send /report to report progress on a task, /tasks to see them with their status, "
            "/help for everything else."
        )
    )
    return "\n".join(lines)


def refusal(redemption: Redemption, settings: Settings) -> str:
    result = redemption.result
    department = quote(result.department.name) if result.department else ""
    if result.outcome is RedeemOutcome.USED:
        return _(
            "This invitation has already been used: each one works once. "
            "Ask a coordinator for a new one."
        )
    if result.outcome is RedeemOutcome.EXPIRED and result.expires_at is not None:
        return _("This invitation expired on {date}. Ask a coordinator for a new one.").format(
            date=_when(result.expires_at, settings)
        )
    if result.outcome is RedeemOutcome.LIMITED and result.retry_at is not None:
        return _(
            "Too many invitations that did not work in a short time. Try again after {time}."
        ).format(time=_when(result.retry_at, settings))
    if result.outcome is RedeemOutcome.COORDINATOR:
        return _(
            "You are a coordinator, so this invitation was not used: coordinators see every "
            "department without joining one. Forward it to the liaison of {department}."
        ).format(department=department)
    return _(
        "This invitation is not valid. Check that the link was copied completely, "
        "or ask a coordinator for a new one."
    )


async def answer_long(message: Message, text: str) -> None:
    for chunk in split_message(text):
        await message.answer(chunk)


# Telling the people concerned -------------------------------------------------------------------


async def notify(
    bot: Bot,
    i18n: I18n,
    settings: Settings,
    person: PersonRef | None,
    render: Callable[[], str],
) -> None:
    """A private message in the person's language; silently skipped when Telegram refuses it."""
    if person is None:
        return
    with i18n.use_locale(pick_locale(person.locale, person.language_code, settings.default_locale)):
        text = render()
    with suppress(TelegramForbiddenError, TelegramBadRequest):
        await bot.send_message(person.telegram_user_id, text)


async def set_coordinator_menu(bot: Bot, i18n: I18n, settings: Settings, user_id: int) -> None:
    """The coordinator's command menu in their private chat, in every language."""
    await _set_chat_menu(bot, i18n, settings, user_id, Access.COORDINATOR, in_group=False)


async def set_coordination_group_menu(
    bot: Bot, i18n: I18n, settings: Settings, chat_id: int
) -> None:
    """The coordination group's menu: the lookups and the summary other groups do not offer."""
    await _set_chat_menu(bot, i18n, settings, chat_id, COORDINATION_MENU, in_group=True)


async def _set_chat_menu(
    bot: Bot, i18n: I18n, settings: Settings, chat_id: int, access: Access, *, in_group: bool
) -> None:
    with suppress(TelegramForbiddenError, TelegramBadRequest):
        for language in (None, *SUPPORTED_LOCALES):
            with i18n.use_locale(language or settings.default_locale):
                menu = command_menu(access, in_group=in_group, coordination_group=in_group)
            await bot.set_my_commands(
                menu, scope=BotCommandScopeChat(chat_id=chat_id), language_code=language
            )


async def clear_chat_menu(bot: Bot, chat_id: int) -> None:
    """Back to the menu every private chat (or every group) has."""
    with suppress(TelegramForbiddenError, TelegramBadRequest):
        for language in (None, *SUPPORTED_LOCALES):
            await bot.delete_my_commands(
                scope=BotCommandScopeChat(chat_id=chat_id), language_code=language
            )


# Guards and arguments ---------------------------------------------------------------------------


async def _refuse_unless_coordinator(message: Message, actor: Actor | None) -> bool:
    """True (and a reply sent) when the sender may not use a coordinator command."""
    if actor is None:
        await message.answer(
            _(
                "I cannot tell who you are when you post as the group: send the command "
                "from your own account."
            )
        )
        return True
    if not actor.is_coordinator:
        await message.answer(_("Only coordinators can use this command."))
        return True
    return False


@dataclass(frozen=True, slots=True)
class Target:
    user_id: int
    full_name: str = ""
    username: str | None = None


class BadTargetError(Exception):
    """The command names nobody usable; the message is the localized answer."""


async def _target(message: Message, command: CommandObject, usage: str) -> Target:
    argument = (command.args or "").strip()
    if argument:
        user_id = await onboarding.resolve_user(argument)
        if user_id is not None:
            return Target(user_id)
        if argument.startswith("@"):
            raise BadTargetError(
                _(
                    "I do not know {username} yet: ask them to send me /start, "
                    "or use their numeric id (they see it with /whoami)."
                ).format(username=quote(argument))
            )
        raise BadTargetError(
            _(
                "“{text}” is not a Telegram user id: send the number that /whoami shows them, "
                "or reply to one of their messages."
            ).format(text=quote(argument[:64]))
        )
    replied = replied_person_message(message)
    if replied is not None and replied.from_user is not None:
        if replied.from_user.is_bot:
            raise BadTargetError(_("That is a bot, not a person."))
        return Target(replied.from_user.id, replied.from_user.full_name, replied.from_user.username)
    raise BadTargetError(usage)


async def _coordinator_target(
    message: Message, command: CommandObject, actor: Actor | None, usage: str
) -> Target | None:
    """The person a coordinator command (/grant, /revoke, /unbind) names; None when the sender
    may not use it or names nobody usable (either way they have been answered)."""
    if await _refuse_unless_coordinator(message, actor):
        return None
    try:
        return await _target(message, command, usage)
    except BadTargetError as exc:
        await message.answer(str(exc))
        return None


# /start TOKEN -----------------------------------------------------------------------------------


async def redeem(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    i18n: I18n,
    bot: Bot,
    actor: Actor | None = None,
) -> None:
    if actor is None:  # no person to bind (a message without a sender): silence
        return
    sender = message.from_user
    redemption = await onboarding.redeem_invitation(
        (command.args or "").strip(),
        user_id=actor.user_id,
        full_name=sender.full_name if sender else actor.full_name,
        username=sender.username if sender else None,
        is_coordinator=actor.is_coordinator,
    )
    result = redemption.result
    if result.outcome not in (RedeemOutcome.BOUND, RedeemOutcome.ALREADY_MEMBER):
        await message.answer(refusal(redemption, settings))
        return
    name = sender.full_name if sender else actor.full_name
    await answer_long(message, greeting(redemption, name))
    if result.outcome is not RedeemOutcome.BOUND or result.department is None:
        return
    department = result.department.name
    if result.created_by is not None:
        await notify(
            bot,
            i18n,
            settings,
            result.created_by,
            lambda: (
                _("{who} joined {department} as its lead liaison with your invitation.")
                if result.is_lead
                else _("{who} joined {department} as a deputy liaison with your invitation.")
            ).format(who=_who(actor.user_id, name=name), department=quote(department)),
        )
    if result.replaced_lead is not None:
        await notify(
            bot,
            i18n,
            settings,
            result.replaced_lead,
            lambda: _(
                "{who} is now the lead liaison of {department}; you remain a deputy liaison."
            ).format(who=_who(actor.user_id, name=name), department=quote(department)),
        )
    if result.promoted is not None and result.previous_department is not None:
        previous = result.previous_department.name
        await notify(
            bot,
            i18n,
            settings,
            result.promoted,
            lambda: _("You are now the lead liaison of {department}.").format(
                department=quote(previous)
            ),
        )


async def redeem_in_group(message: Message) -> None:
    """An invitation sent in a group: refused, token untouched."""
    await message.answer(
        _(
            "Invitations work in a private chat with me: open the link, or send me the "
            "/start command directly."
        )
    )


# /invite ----------------------------------------------------------------------------------------


async def invite(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    bot: Bot,
    actor: Actor | None = None,
    bot_username: str | None = None,
) -> None:
    if await _refuse_unless_coordinator(message, actor):
        return
    if message.chat.type != "private":
        await message.answer(
            _(
                "Send /invite to me in a private chat: an invitation posted in a group "
                "could be used by anyone in it."
            )
        )
        return
    words = (command.args or "").split()
    as_lead = bool(words) and words[-1].lower() in LEAD_WORDS
    department = " ".join(words[:-1] if as_lead else words)
    if not department:
        await message.answer(
            _(
                "Usage: /invite DEPARTMENT — its full name or an alias (find it with /dept). "
                "Add “lead” at the end to make the invitee the department's lead liaison."
            )
        )
        return
    try:
        invitation = await onboarding.create_invitation(
            department, created_by=actor.user_id, as_lead=as_lead
        )
    except UnknownDepartmentError as exc:
        await message.answer(unknown_department(exc))
        return
    username = bot_username or (await bot.me()).username
    lines = [
        _("Invitation to join {department}, single use, valid until {date}:").format(
            department=quote(invitation.department), date=_when(invitation.expires_at, settings)
        )
    ]
    if link := invitation.link(username):
        lines.append(quote(link))
    lines.append(
        _("Or send the bot: {command}").format(
            command=f"<code>{quote(invitation.start_command)}</code>"
        )
    )
    if invitation.as_lead:
        lines.append(
            _("Whoever uses it becomes the lead liaison of {department}.").format(
                department=quote(invitation.department)
            )
        )
    lines += [
        "",
        _("Forward this to the liaison only: whoever opens it first joins the department."),
    ]
    await message.answer("\n".join(lines))


def unknown_department(error: UnknownDepartmentError) -> str:
    lines = [_("No department is called “{name}”.").format(name=quote(error.query[:100]))]
    if error.suggestions:
        lines.append(_("Did you mean:"))
        lines += [f"<code>/invite {quote(name)}</code>" for name in error.suggestions]
    else:
        lines.append(_("Send /dept NAME to find it, or /tasks to see every department."))
    return "\n".join(lines)


# /grant, /revoke, /unbind -----------------------------------------------------------------------


async def grant(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    i18n: I18n,
    bot: Bot,
    actor: Actor | None = None,
) -> None:
    target = await _coordinator_target(
        message,
        command,
        actor,
        _(
            "Usage: /grant USER_ID (the number /whoami shows them), or reply /grant "
            "to one of their messages."
        ),
    )
    if target is None:
        return
    result = await onboarding.grant(
        target.user_id,
        full_name=target.full_name,
        username=target.username,
        admin_ids=settings.admin_ids,
    )
    who = _who(target.user_id, result.person, target.full_name)
    if result.outcome is GrantOutcome.ALREADY:
        await message.answer(_("{who} already is a coordinator.").format(who=who))
        return
    lines = [_("{who} is now a coordinator.").format(who=who)]
    if result.left_department is not None:
        lines.append(
            _("They no longer answer for {department}.").format(
                department=quote(result.left_department.name)
            )
        )
    if result.promoted is not None and result.left_department is not None:
        lines.append(
            _("{who} is now the lead liaison of {department}.").format(
                who=_who(result.promoted.telegram_user_id, result.promoted),
                department=quote(result.left_department.name),
            )
        )
    await message.answer("\n".join(lines))
    await set_coordinator_menu(bot, i18n, settings, target.user_id)
    await notify(
        bot,
        i18n,
        settings,
        result.person,
        lambda: _("You are now a coordinator. Send /help to see your commands."),
    )
    if result.promoted is not None and result.left_department is not None:
        left = result.left_department.name
        await notify(
            bot,
            i18n,
            settings,
            result.promoted,
            lambda: _("You are now the lead liaison of {department}.").format(
                department=quote(left)
            ),
        )


async def revoke(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    i18n: I18n,
    bot: Bot,
    actor: Actor | None = None,
) -> None:
    target = await _coordinator_target(
        message,
        command,
        actor,
        _("Usage: /revoke USER_ID, or reply /revoke to one of their messages."),
    )
    if target is None:
        return
    result = await onboarding.revoke(target.user_id, by=actor.user_id, admin_ids=settings.admin_ids)
    who = _who(target.user_id, result.person, target.full_name)
    if result.outcome is RevokeOutcome.CONFIGURED:
        text = _(
            "{who} is a coordinator by the bot's configuration (ADMIN_IDS), which a command "
            "cannot change: remove the id from ADMIN_IDS and restart the bot."
        )
    elif result.outcome is RevokeOutcome.NOT_COORDINATOR:
        text = _("{who} is not a coordinator.")
    elif result.outcome is RevokeOutcome.LAST:
        text = _(
            "{who} is the only coordinator left; the bot would have none. Grant someone else first."
        )
    elif result.self_revoked:
        text = _("You are no longer a coordinator.")
    else:
        text = _("{who} is no longer a coordinator.")
    lines = [text.format(who=who)]
    if result.invitations:
        lines.append(
            _("Their open invitations ({count}) no longer work.").format(count=result.invitations)
            if not result.self_revoked
            else _("Your open invitations ({count}) no longer work.").format(
                count=result.invitations
            )
        )
    await message.answer("\n".join(lines))
    if result.outcome is not RevokeOutcome.REVOKED:
        return
    await clear_chat_menu(bot, target.user_id)
    if not result.self_revoked:
        await notify(
            bot,
            i18n,
            settings,
            result.person,
            lambda: _("Your coordinator rights have been withdrawn."),
        )


async def unbind(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    i18n: I18n,
    bot: Bot,
    actor: Actor | None = None,
) -> None:
    target = await _coordinator_target(
        message,
        command,
        actor,
        _("Usage: /unbind USER_ID, or reply /unbind to one of their messages."),
    )
    if target is None:
        return
    result = await onboarding.unbind(target.user_id, admin_ids=settings.admin_ids)
    who = _who(target.user_id, result.person, target.full_name)
    if result.outcome is UnbindOutcome.UNKNOWN:
        await message.answer(_("I know nobody with the id {id}.").format(id=target.user_id))
        return
    if result.outcome is UnbindOutcome.COORDINATOR:
        await message.answer(
            _("{who} is a coordinator, not a liaison (see /revoke).").format(who=who)
        )
        return
    if result.outcome is UnbindOutcome.NOT_LIAISON or result.department is None:
        await message.answer(_("{who} is not an active liaison.").format(who=who))
        return
    department = result.department.name
    lines = [
        _("{who} is no longer a liaison of {department}. Their reports ({count}) are kept.").format(
            who=who, department=quote(department), count=result.reports
        )
    ]
    if result.promoted is not None:
        lines.append(
            _("{who} is now the lead liaison of {department}.").format(
                who=_who(result.promoted.telegram_user_id, result.promoted),
                department=quote(department),
            )
        )
    await message.answer("\n".join(lines))
    await notify(
        bot,
        i18n,
        settings,
        result.person,
        lambda: _("You are no longer a liaison of {department}. Thank you for your work!").format(
            department=quote(department)
        ),
    )
    await notify(
        bot,
        i18n,
        settings,
        result.promoted,
        lambda: _("You are now the lead liaison of {department}.").format(
            department=quote(department)
        ),
    )


# /bindgroup and group migration -----------------------------------------------------------------


async def bind_group(
    message: Message, bot: Bot, i18n: I18n, settings: Settings, actor: Actor | None = None
) -> None:
    if await _refuse_unless_coordinator(message, actor):
        return
    if message.chat.type not in GROUP_TYPES:
        await message.answer(
            _(
                "Send /bindgroup in the group that should become the coordination group "
                "(add me to it first)."
            )
        )
        return
    binding = await onboarding.bind_coordination_group(
        message.chat.id, message.chat.title, settings
    )
    if binding.already:
        await message.answer(_("This group already is the coordination group."))
        return
    await set_coordination_group_menu(bot, i18n, settings, message.chat.id)
    if binding.previous_id is not None:
        await clear_chat_menu(bot, binding.previous_id)
    lines = [
        _(
            "This group is now the coordination group: summaries and escalations "
            "will be posted here."
        )
    ]
    if binding.previous_id is not None:
        previous = f"<code>{binding.previous_id}</code>"
        if binding.previous_title:
            previous = f"{quote(binding.previous_title)} {previous}"
        lines.append(
            _("It replaces the previous coordination group, {group}.").format(group=previous)
        )
    await message.answer("\n".join(lines))


async def follow_migration(message: Message, bot: Bot, i18n: I18n, settings: Settings) -> None:
    """A group became a supergroup (new chat id): the coordination group follows it."""
    if message.migrate_to_chat_id is not None and await onboarding.follow_group_migration(
        message.chat.id, message.migrate_to_chat_id, settings
    ):
        log.info("Coordination group %s moved to %s", message.chat.id, message.migrate_to_chat_id)
        await set_coordination_group_menu(bot, i18n, settings, message.migrate_to_chat_id)


def build_router() -> Router:
    router = Router(name="onboarding")
    # Before handlers.common: its CommandStart() would also match /start TOKEN.
    router.message.register(redeem, CommandStart(deep_link=True), F.chat.type == "private")
    router.message.register(redeem_in_group, CommandStart(deep_link=True))
    router.message.register(invite, Command("invite"))
    router.message.register(grant, Command("grant"))
    router.message.register(revoke, Command("revoke"))
    router.message.register(unbind, Command("unbind"))
    router.message.register(bind_group, Command("bindgroup"))
    router.message.register(follow_migration, F.migrate_to_chat_id)
    return router
