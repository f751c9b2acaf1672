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
from datetime import UTC, datetime
from typing import Generic, TypeVar

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BotCommandScopeChat, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot import onboarding
from bot.commands import COORDINATION_MENU, command_menu
from bot.labels import ROLE_NAMES
from bot.notices import NoticeEvent, Waker, enqueue_notices, person_notice, update_origin, who
from bot.onboarding import (
    GrantOutcome,
    GrantResult,
    PersonRef,
    RedeemOutcome,
    RedeemResult,
    Redemption,
    RevokeOutcome,
    RevokeResult,
    UnbindOutcome,
    UnbindResult,
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
    return who(user_id, (person.full_name if person else "") or name)


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


Event = tuple[NoticeEvent, PersonRef | None, dict[str, object]]


R = TypeVar("R")


class Notices(Generic[R]):
    """The notices a command's change causes, for people other than the sender.

    Passed as the service's `then`, it writes them to the ledger (bot.notices) in the change's
    own transaction: both are stored or neither. `wake()` once it is committed sends them at
    once. Keys name the update, so a redelivered update adds nothing."""

    def __init__(
        self,
        message: Message,
        settings: Settings,
        sender: Waker | None,
        clock: Callable[[], datetime] | None,
        events: Callable[[R], list[Event]],
    ) -> None:
        self._origin = update_origin(message.chat.id, message.message_id)
        self._settings = settings
        self._sender = sender
        self._clock = clock
        self._events = events
        self.added = 0

    async def __call__(self, result: R) -> None:
        now = self._clock() if self._clock is not None else datetime.now(UTC)
        rows = [
            row
            for event, person, values in self._events(result)
            for row in person_notice(
                event,
                person,
                origin=self._origin,
                now=now,
                default_locale=self._settings.default_locale,
                **values,
            )
        ]
        self.added += await enqueue_notices(rows, None)  # woken once committed: wake()

    def wake(self) -> None:
        if self.added and self._sender is not None:
            self._sender.wake()


def _redeem_events(result: RedeemResult, user_id: int, name: str) -> list[Event]:
    if result.department is None:
        return []
    joined = {"who_id": user_id, "who_name": name, "department": result.department.name}
    previous = result.previous_department.name if result.previous_department else None
    invited = NoticeEvent.INVITE_USED_LEAD if result.is_lead else NoticeEvent.INVITE_USED_DEPUTY
    return [
        (invited, result.created_by, joined),
        (NoticeEvent.LEAD_REPLACED, result.replaced_lead, joined),
        (NoticeEvent.NOW_LEAD, result.promoted if previous else None, {"department": previous}),
    ]


def _grant_events(result: GrantResult) -> list[Event]:
    left = result.left_department.name if result.left_department else None
    return [
        (NoticeEvent.NOW_COORDINATOR, result.person, {}),
        (NoticeEvent.NOW_LEAD, result.promoted if left else None, {"department": left}),
    ]


def _revoke_events(result: RevokeResult) -> list[Event]:
    if result.self_revoked:
        return []
    return [(NoticeEvent.RIGHTS_WITHDRAWN, result.person, {})]


def _unbind_events(result: UnbindResult) -> list[Event]:
    department = result.department.name if result.department else None
    return [
        (NoticeEvent.LIAISON_ENDED, result.person, {"department": department}),
        (NoticeEvent.NOW_LEAD, result.promoted, {"department": department}),
    ]


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
    sender: Waker | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    if actor is None:  # no person to bind (a message without a sender): silence
        return
    author = message.from_user
    name = author.full_name if author else actor.full_name
    notices = Notices(
        message,
        settings,
        sender,
        clock,
        lambda result: _redeem_events(result, actor.user_id, name),
    )
    redemption = await onboarding.redeem_invitation(
        (command.args or "").strip(),
        user_id=actor.user_id,
        full_name=name,
        username=author.username if author else None,
        is_coordinator=actor.is_coordinator,
        then=notices,
    )
    result = redemption.result
    if result.outcome not in (RedeemOutcome.BOUND, RedeemOutcome.ALREADY_MEMBER):
        await message.answer(refusal(redemption, settings))
        return
    await answer_long(message, greeting(redemption, name))
    notices.wake()


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
    sender: Waker | None = None,
    clock: Callable[[], datetime] | None = None,
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
    notices = Notices(message, settings, sender, clock, _grant_events)
    result = await onboarding.grant(
        target.user_id,
        full_name=target.full_name,
        username=target.username,
        admin_ids=settings.admin_ids,
        then=notices,
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
    notices.wake()


async def revoke(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    i18n: I18n,
    bot: Bot,
    actor: Actor | None = None,
    sender: Waker | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    target = await _coordinator_target(
        message,
        command,
        actor,
        _("Usage: /revoke USER_ID, or reply /revoke to one of their messages."),
    )
    if target is None:
        return
    notices = Notices(message, settings, sender, clock, _revoke_events)
    result = await onboarding.revoke(
        target.user_id, by=actor.user_id, admin_ids=settings.admin_ids, then=notices
    )
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
    notices.wake()


async def unbind(
    message: Message,
    command: CommandObject,
    *,
    settings: Settings,
    i18n: I18n,
    bot: Bot,
    actor: Actor | None = None,
    sender: Waker | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    target = await _coordinator_target(
        message,
        command,
        actor,
        _("Usage: /unbind USER_ID, or reply /unbind to one of their messages."),
    )
    if target is None:
        return
    notices = Notices(message, settings, sender, clock, _unbind_events)
    result = await onboarding.unbind(target.user_id, admin_ids=settings.admin_ids, then=notices)
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
    notices.wake()


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
