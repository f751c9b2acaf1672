"""Notifications: what the bot tells a person about something another person did.

A handler answers the person in front of it directly. Everyone else it tells — the lead unit's
liaisons when a support unit reports, the inviter when an invitation is used, a person whose role
changed — gets a ledger row (kind `notification`), sent by the one Sender like every scheduled
message: paced, retried on 429 / 5xx, and an unreachable recipient is named to the coordinators.

The row holds ids and the raw values the text needs (names as stored, never escaped); the text is
made when the row is sent (`render_notification`, from bot.scheduled_messages' renderer), in the
recipient's language as it is then: a liaison's /lang choice, else their Telegram language, else
the language picked when the row was written (payload `locale`), else the default.

Keys are built from ids, so an event told twice (an update Telegram delivers again) is one row:
- `notice:lead:report<report id>:liaison<liaison id>`: a support unit's report, to a lead liaison;
- `notice:<event>:<origin>:<telegram user id>`: a change of role, where `origin` names the update
  that made it (`m<chat id>.<message id>`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from aiogram.utils.i18n import gettext as _
from aiogram.utils.text_decorations import html_decoration

from bot.delivery import OutgoingMessage, RenderResult
from bot.i18n import pick_locale
from bot.reports import excerpt
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryRecord, NewDelivery

__all__ = [
    "NOTIFY_TEXT",
    "NoticeEvent",
    "Waker",
    "enqueue_notices",
    "person_notice",
    "render_notification",
    "support_report_notices",
    "update_origin",
    "who",
]

NOTIFY_TEXT = 300  # characters of a support unit's report in a lead liaison's notification


class NoticeEvent(StrEnum):
    SUPPORT_REPORT = "support-report"  # a support unit reported on a task this unit leads
    INVITE_USED_LEAD = "invite-used-lead"  # the inviter: someone joined as lead liaison
    INVITE_USED_DEPUTY = "invite-used-deputy"  # the inviter: someone joined as deputy
    LEAD_REPLACED = "lead-replaced"  # the former lead: someone else leads now, you are a deputy
    NOW_LEAD = "now-lead"  # a deputy took over the lead of a department
    NOW_COORDINATOR = "now-coordinator"  # /grant
    RIGHTS_WITHDRAWN = "rights-withdrawn"  # /revoke
    LIAISON_ENDED = "liaison-ended"  # /unbind


class Waker(Protocol):
    def wake(self) -> None: ...


class PersonLike(Protocol):
    @property
    def telegram_user_id(self) -> int: ...
    @property
    def locale(self) -> str | None: ...
    @property
    def language_code(self) -> str | None: ...


class LeadLiaisonLike(PersonLike, Protocol):
    @property
    def liaison_id(self) -> int: ...


def quote(text: object) -> str:
    """HTML-escaped text (as handlers.render.quote, which bot/ cannot import: handlers import
    this module)."""
    return html_decoration.quote(str(text))


def who(user_id: int, full_name: str = "") -> str:
    """“张三 (12345)”, escaped; just the id when the bot knows no name."""
    if not full_name:
        return f"<code>{user_id}</code>"
    return _("{name} (<code>{id}</code>)").format(name=quote(full_name), id=user_id)


def update_origin(chat_id: int, message_id: int) -> str:
    """The part of a key that names the update that caused an event."""
    return f"m{chat_id}.{message_id}"


def _fallback_locale(person: PersonLike, default_locale: str) -> str:
    return pick_locale(person.locale, person.language_code, default_locale)


def support_report_notices(
    recipients: Iterable[LeadLiaisonLike],
    *,
    report_id: int,
    task_id: int,
    department_name: str,
    status: str,
    text: str,
    author_user_id: int,
    now: datetime,
    default_locale: str,
) -> list[NewDelivery]:
    """One row per lead liaison (the author left out) for a support unit's new report."""
    return [
        NewDelivery(
            kind=DeliveryKind.NOTIFICATION,
            key=f"notice:lead:report{report_id}:liaison{recipient.liaison_id}",
            chat_id=recipient.telegram_user_id,
            due_at=now,
            liaison_id=recipient.liaison_id,
            task_id=task_id,
            payload={
                "event": NoticeEvent.SUPPORT_REPORT.value,
                "report_id": report_id,
                "department": department_name,
                "status": str(status),
                "text": excerpt(text, NOTIFY_TEXT),
                "locale": _fallback_locale(recipient, default_locale),
            },
        )
        for recipient in recipients
        if recipient.telegram_user_id != author_user_id
    ]


def person_notice(
    event: NoticeEvent,
    person: PersonLike | None,
    *,
    origin: str,
    now: datetime,
    default_locale: str,
    **values: Any,
) -> list[NewDelivery]:
    """The row telling `person` of a change of role (none without a person)."""
    if person is None:
        return []
    return [
        NewDelivery(
            kind=DeliveryKind.NOTIFICATION,
            key=f"notice:{event.value}:{origin}:{person.telegram_user_id}",
            chat_id=person.telegram_user_id,
            due_at=now,
            payload={
                "event": event.value,
                **values,
                "locale": _fallback_locale(person, default_locale),
            },
        )
    ]


async def enqueue_notices(rows: Iterable[NewDelivery], sender: Waker | None) -> int:
    """Write the rows (a key already there is left alone) and wake the sender so they go out at
    once rather than at its next look at the ledger; how many rows are new."""
    added = await ledger.enqueue(rows)
    if added and sender is not None:
        sender.wake()
    return added


async def render_notification(
    record: DeliveryRecord,
    support_report: Callable[[dict[str, Any], int | None], Awaitable[RenderResult]],
) -> RenderResult:
    """The row's text in the current locale; None (cancelled) when it is no longer needed.

    `support_report` renders a support unit's report (bot.scheduled_messages, beside the report
    views).
    """
    payload = record.payload
    try:
        event = NoticeEvent(payload.get("event"))
    except ValueError:
        return None  # written by a newer version of the bot: nothing this one can say
    if event is NoticeEvent.SUPPORT_REPORT:
        return await support_report(payload, record.task_id)
    department = quote(str(payload.get("department") or ""))
    person = who(int(payload.get("who_id") or 0), str(payload.get("who_name") or ""))
    texts = {
        NoticeEvent.INVITE_USED_LEAD: lambda: _(
            "{who} joined {department} as its lead liaison with your invitation."
        ),
        NoticeEvent.INVITE_USED_DEPUTY: lambda: _(
            "{who} joined {department} as a deputy liaison with your invitation."
        ),
        NoticeEvent.LEAD_REPLACED: lambda: _(
            "{who} is now the lead liaison of {department}; you remain a deputy liaison."
        ),
        NoticeEvent.NOW_LEAD: lambda: _("You are now the lead liaison of {department}."),
        NoticeEvent.NOW_COORDINATOR: lambda: _(
            "You are now a coordinator. Send /help to see your commands."
        ),
        NoticeEvent.RIGHTS_WITHDRAWN: lambda: _("Your coordinator rights have been withdrawn."),
        NoticeEvent.LIAISON_ENDED: lambda: _(
            "You are no longer a liaison of {department}. Thank you for your work!"
        ),
    }
    return OutgoingMessage(texts[event]().format(who=person, department=department))
