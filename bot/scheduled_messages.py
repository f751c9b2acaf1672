"""The outbox renderer: a delivery ledger row becomes the message the sender sends.

`make_renderer(settings, i18n)` returns `render(record)` for bot.delivery.Sender (and
jobs.setup_scheduling). It renders in the recipient's language (bot.i18n.pick_locale): for a
liaison's row, the language they chose with /lang, else their Telegram language (stored by the
actor middleware), else the row's payload `locale` (set when the row was planned), else
`settings.default_locale`; for a chat's row (a group), the payload `locale`, else the default.

- prompt (进度提示): the task's prompt with its status buttons (handlers.reports), which the
  report flow answers (a button, or a reply to the message);
- reminder (临期提醒): "due in N days (date)", "due tomorrow", "due today", "overdue", naming
  the targets due that day; a plan goal's reminder goes to the coordination group;
- nudge (催报): "you have not reported on task X for this cycle (due D)", with the status buttons;
- escalation (通报): to the coordination group, naming the silent department and the tasks it
  was nudged about and still has not answered (none: cancelled — a department without a bound
  liaison was never nudged, so it is not escalated; the weekly summary lists it as not reported);
- summary (周报): bot.summary_render's Telegram messages (or its document), then the chart as a
  photo; without the CJK font the text goes alone and a warning is logged;
- notice: to coordinators — a person or chat the bot can no longer reach, or a year the working
  calendar does not cover (key `calendar-uncovered:<year>`, see jobs.planning);
- notification: to a person, about what another person did — a support unit's report on a task
  their unit leads, a change of their role (bot.notices). A row for a private chat with no
  liaison id is rendered in the language of the person behind the chat, as for a liaison.

None (the sender marks the row cancelled) when the send is no longer needed: a prompt, nudge or
escalation whose department has reported for the cycle since it was planned (Report rows for
(department, task, cycle key), not withdrawn) — this is what stops nudges the moment a report
arrives; a task withdrawn since; a liaison who no longer serves the department.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.delivery import OutgoingMessage, Render, RenderResult
from bot.i18n import pick_locale
from bot.notices import render_notification
from bot.plan_model import Role
from bot.schedule import ScheduleConfig
from bot.settings import SUPPORTED_LOCALES, Settings
from bot.summary_service import build_summary
from handlers.render import quote
from handlers.reports import prompt_for, prompt_keyboard, role_label, status_label, target_line
from storage import outbox
from storage.deliveries import DeliveryKind, DeliveryRecord

log = logging.getLogger(__name__)

CALENDAR_REASON = "calendar"
CHART_FILENAME = "duban-summary.png"
_CYCLE_KINDS = (DeliveryKind.PROMPT, DeliveryKind.NUDGE)


def make_renderer(settings: Settings, i18n: I18n) -> Render:
    """The renderer for the sender; see the module docstring."""
    config = ScheduleConfig.from_settings(settings)

    async def render(record: DeliveryRecord) -> RenderResult:
        if record.kind in _CYCLE_KINDS and await _answered(record):
            return None
        locale = await _locale(record, settings)
        if locale is None:
            return None  # the liaison left the department: the send is no longer theirs
        with i18n.context(), i18n.use_locale(locale):
            if record.kind is DeliveryKind.SUMMARY:
                return await _summary(record, settings, locale)
            if record.kind is DeliveryKind.ESCALATION:
                return await _escalation(record, nudges=config.max_nudges > 0)
            return await _RENDERERS.get(record.kind, _notice)(record)

    return render


async def _locale(record: DeliveryRecord, settings: Settings) -> str | None:
    """The recipient's language; None when the row's liaison no longer serves its department."""
    personal = record.kind is DeliveryKind.NOTIFICATION and record.chat_id > 0
    if record.liaison_id is None and personal:
        state = await outbox.person_state(record.chat_id)
    else:
        state = await outbox.liaison_state(record.liaison_id)
    if record.liaison_id is not None and (
        state is None
        or not state.active
        or (record.department_id is not None and state.department_id != record.department_id)
    ):
        return None
    planned = record.payload.get("locale")
    fallback = str(planned) if planned in SUPPORTED_LOCALES else settings.default_locale
    if state is None:
        return fallback
    return pick_locale(state.locale, state.language_code, fallback)


async def _answered(record: DeliveryRecord) -> bool:
    if record.department_id is None or record.task_id is None or not record.cycle_key:
        return False
    done = await outbox.answered_tasks(record.department_id, record.cycle_key, [record.task_id])
    return record.task_id in done


def _task_name(code: str, title: str) -> str:
    return f"<b>{quote(code)} {quote(title)}</b>"


def _day(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value or "")


# -- department sends ----------------------------------------------------------------------------


async def _prompt(record: DeliveryRecord) -> RenderResult:
    if record.task_id is None:
        return None
    prompt = await prompt_for(record.task_id)
    if prompt is None:
        return None  # withdrawn since it was planned
    text, keyboard = prompt
    due = record.payload.get("deadline")
    if due:
        text += "\n" + _("Please report by {date}.").format(date=_day(due))
    return OutgoingMessage(text, reply_markup=keyboard)


async def _nudge(record: DeliveryRecord) -> RenderResult:
    tasks = await outbox.tasks_by_id([record.task_id] if record.task_id else [])
    if not tasks:
        return None
    task = tasks[0]
    text = "\n".join(
        [
            _("🔔 <b>Reminder to report</b>"),
            _(
                "You have not reported on {task} for this cycle (due {date}). "
                "Reply to this message or use /report."
            ).format(
                task=_task_name(task.code, task.title),
                date=_day(record.payload.get("deadline")),
            ),
        ]
    )
    return OutgoingMessage(text, reply_markup=prompt_keyboard(task.id))


def _due_line(days: int, deadline: str) -> str:
    if days < 0:
        return _("It was due on {date} and is overdue.").format(date=deadline)
    if days == 0:
        return _("It is due today ({date}).").format(date=deadline)
    if days == 1:
        return _("It is due tomorrow ({date}).").format(date=deadline)
    return _("It is due in {days} days ({date}).").format(days=days, date=deadline)


async def _target_lines(target_ids: Sequence[int]) -> list[str]:
    targets = await outbox.targets_by_id(target_ids)
    if not targets:
        return []
    return [_("Targets due then:"), *(f"• {target_line(target)}" for target in targets)]


async def _reminder(record: DeliveryRecord) -> RenderResult:
    payload = record.payload
    days = int(payload.get("days_before") or 0)
    deadline = _day(payload.get("deadline"))
    target_ids = [int(item) for item in payload.get("target_ids") or []]
    if record.task_id is not None:
        tasks = await outbox.tasks_by_id([record.task_id])
        if not tasks:
            return None
        task = tasks[0]
        heading = _("❗ <b>Overdue task</b>") if days < 0 else _("⏰ <b>Deadline reminder</b>")
        lines = [heading, _task_name(task.code, task.title), _due_line(days, deadline)]
        lines += await _target_lines(target_ids)
        lines += ["", _("Reply to this message to report on the task.")]
        return OutgoingMessage("\n".join(lines), reply_markup=prompt_keyboard(task.id))
    title = await outbox.plan_title(payload.get("plan_id"))
    if title is None:
        return None
    heading = _("❗ <b>Plan goals overdue</b>") if days < 0 else _("⏰ <b>Plan goals due</b>")
    lines = [heading, f"<b>{quote(title)}</b>", _due_line(days, deadline)]
    lines += await _target_lines(target_ids)
    return OutgoingMessage("\n".join(lines))


# -- coordination group -------------------------------------------------------------------------


async def _escalation(record: DeliveryRecord, *, nudges: bool) -> RenderResult:
    """The department's tasks still unanswered — of those it was nudged about, when nudges are
    configured: a department nobody could nudge (no liaison bound yet) is not "silent"."""
    if record.department_id is None or not record.cycle_key:
        return None
    task_ids = {int(item) for item in record.payload.get("task_ids") or []}
    if record.task_id is not None:
        task_ids.add(record.task_id)
    if nudges:
        task_ids &= await outbox.nudged_tasks(record.department_id, record.cycle_key)
    done = await outbox.answered_tasks(record.department_id, record.cycle_key, task_ids)
    silent = await outbox.tasks_by_id(task_ids - done)
    name = await outbox.department_name(record.department_id)
    if not silent or name is None:
        return None  # it reported after all (or the tasks were withdrawn)
    lines = [
        _("📣 <b>No progress report</b>"),
        _("{department} has not reported for the {cycle} cycle, despite reminders, on:").format(
            department=f"<b>{quote(name)}</b>", cycle=quote(record.cycle_key)
        ),
        *(f"• {quote(task.code)} {quote(task.title)}" for task in silent),
    ]
    return OutgoingMessage("\n".join(lines))


async def _summary(record: DeliveryRecord, settings: Settings, locale: str) -> RenderResult:
    # The summary as of its scheduled time: the same text on a retry.
    built = await build_summary(record.due_at, tz=settings.tz, locale=locale, count_duplicates=True)
    if built is None:
        return None  # no plan imported yet
    rendered = built.rendered
    messages = [OutgoingMessage(text) for text in rendered.messages]
    if rendered.document is not None:
        messages.append(OutgoingMessage("", document=rendered.document, filename=rendered.filename))
    png = await built.chart()
    if png is None:
        log.warning("Weekly summary %s goes out without its chart (no CJK font)", record.key)
    else:
        today = built.summary.today.isoformat()
        caption = _("📊 Weekly summary chart, {date}").format(date=today)
        messages.append(OutgoingMessage(caption, photo=png, filename=CHART_FILENAME))
    return messages


async def _notice(record: DeliveryRecord) -> RenderResult:
    payload = record.payload
    if payload.get("reason") == CALENDAR_REASON:
        years = ", ".join(str(year) for year in payload.get("years") or [])
        return OutgoingMessage(
            "\n".join(
                [
                    _("📅 <b>Working calendar not covered</b>"),
                    _(
                        "The official holidays and make-up working days of {years} are not "
                        "known yet: scheduled sends on those days assume Monday to Friday."
                    ).format(years=years),
                    _("Load the schedule once it is announced: duban calendar load FILE"),
                ]
            )
        )
    chat_id = int(payload.get("chat_id") or 0)
    person = await outbox.person_by_chat(chat_id) if chat_id > 0 else None
    if person is not None:
        who = f"<b>{quote(person.full_name)}</b>"
        if person.department_name:
            who += f" ({quote(person.department_name)})"
        text = _(
            "The bot can no longer reach {person}: they blocked the bot or deleted the chat. "
            "Scheduled messages to them are not delivered until they open the bot again."
        ).format(person=who)
    else:
        text = _(
            "The bot can no longer post in the chat {chat} (removed from the group, or blocked)."
        ).format(chat=chat_id)
    return OutgoingMessage("\n".join([_("⚠️ <b>Unreachable</b>"), text]))


async def _notification(record: DeliveryRecord) -> RenderResult:
    return await render_notification(record, _support_report)


async def _support_report(payload: dict[str, Any], task_id: int | None) -> RenderResult:
    """ "📣 Unit (support) reported on Task: status", then the report's opening (bot.notices)."""
    tasks = await outbox.tasks_by_id([task_id] if task_id else [])
    if not tasks:
        return None  # the task was withdrawn since
    lines = [
        _("📣 {department} {role} reported on {task}: {status}").format(
            department=quote(str(payload.get("department") or "")),
            role=role_label(Role.SUPPORT),
            task=_task_name(tasks[0].code, tasks[0].title),
            status=status_label(str(payload.get("status"))),
        ),
        quote(str(payload.get("text") or "")),
    ]
    return OutgoingMessage("\n".join(lines))


_RENDERERS: dict[DeliveryKind, Callable[[DeliveryRecord], Awaitable[RenderResult]]] = {
    DeliveryKind.PROMPT: _prompt,
    DeliveryKind.NUDGE: _nudge,
    DeliveryKind.REMINDER: _reminder,
    DeliveryKind.NOTICE: _notice,
    DeliveryKind.NOTIFICATION: _notification,
}
