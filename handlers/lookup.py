"""/tasks, /task, /dept and /overdue: looking things up, privately and in the coordination group.

What they show (report excerpts, liaison names, every unit's status) is for members, so in any
other group they are refused with a short line pointing to a private chat, as /summary is: a
guest may see nothing of a lookup, and a group of guests is no place for one. Their buttons
follow the same rule, for pages posted in a group before it stopped being the coordination group.

Long lists are pages of one message, turned with inline buttons (PageCallback "p1:<view>:<page>");
a department chosen from several is a DepartmentCallback ("d1:<id>"). Views:
  "a"       every department (the coordinator's overview)
  "d<id>"   one department's tasks
  "o"       every overdue task, by lead department
  "o<id>"   one department's overdue tasks
A page or department that no longer exists (stale or forged data) gets a refusal in the callback
answer; nothing else happens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Chat, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import lookup
from bot.labels import COMPARATOR_SIGNS, DONE_MARK, LIGHT_EMOJI, ROLE_NAMES, STATUS_NAMES
from bot.labels import light_mark as _light_mark
from bot.lights import Light
from bot.lookup import DepartmentRow
from bot.onboarding import coordination_chat_id
from bot.paging import Page, paginate
from bot.people import Access, Actor
from bot.plan_model import DepartmentKind
from bot.settings import Settings
from handlers.render import MESSAGE_LIMIT, quote, split_message
from storage.enums import ReportStatus

TASKS_PER_PAGE = 8
DEPARTMENTS_PER_PAGE = 10
OVERDUE_PER_PAGE = 8
MAX_CHOICES = 10  # department buttons offered at once
TITLE_LIMIT = 60  # characters of a task title in a list line
NAME_LIMIT = 40  # characters of a department name in a list line
EXCERPT_LIMIT = 100  # characters of a report's text on a task card
TASK_TEXT_LIMIT = 3000  # characters (escaped) of a task's text on its card
_SENTENCE_ENDS = ("。", "；", "！", "？", ";", "!", "?", "\n")
ALL_WORDS = frozenset({"all", "全部", "所有", "全部单位"})

KIND_NAMES = {
    DepartmentKind.AGENCY: __("government agency"),
    DepartmentKind.TOWNSHIP: __("township or street"),
    DepartmentKind.TOWNSHIP_GROUP: __("all townships, streets and parks"),
    DepartmentKind.COMPANY: __("state-owned company"),
    DepartmentKind.ZONE: __("development zone or park"),
    DepartmentKind.ORGANIZATION: __("people's organisation"),
}
_VIEW = re.compile(r"(?P<kind>[ado])(?P<id>\d{1,10})?")


class PageCallback(CallbackData, prefix="p1"):
    view: str  # "a", "d<id>", "o" or "o<id>" (see the module docstring)
    page: int


class DepartmentCallback(CallbackData, prefix="d1"):
    id: int


Rendered = tuple[str, InlineKeyboardMarkup | None]


# Small pieces ---------------------------------------------------------------------------------


def _guest_refusal() -> str:
    return _("This is for members only. Ask a coordinator for an invitation.")


def _may_look_up(actor: Actor | None) -> bool:
    return actor is not None and actor.access is not Access.GUEST


def _group_refusal() -> str:
    return _("Use this command in a private chat with me or in the coordination group.")


async def _is_open_here(chat: Chat, settings: Settings) -> bool:
    """Lookups answer in private chats and in the coordination group only."""
    return chat.type == "private" or chat.id == await coordination_chat_id(settings)


async def _refused(message: Message, actor: Actor | None, settings: Settings) -> bool:
    """True (and a short reply sent) when this sender or this chat may not see lookups."""
    if not _may_look_up(actor):
        await message.answer(_guest_refusal())
        return True
    if not await _is_open_here(message.chat, settings):
        await message.answer(_group_refusal())
        return True
    return False


async def _refused_button(callback: CallbackQuery, actor: Actor | None, settings: Settings) -> bool:
    if not _may_look_up(actor):
        await callback.answer(_guest_refusal(), show_alert=True)
        return True
    if isinstance(callback.message, Message) and not await _is_open_here(
        callback.message.chat, settings
    ):
        await callback.answer(_group_refusal(), show_alert=True)
        return True
    return False


def _today(settings: Settings) -> date:
    return datetime.now(settings.tz).date()


def _clipped(text: str, limit: int) -> str:
    return quote(lookup.clip(text, limit))


def _quote_within(text: str, limit: int) -> tuple[str, bool]:
    """Escape `text`, cut so that the escaped form has at most `limit` characters."""
    escaped = quote(text)
    if len(escaped) <= limit:
        return escaped, False
    size = 0
    for index, char in enumerate(text):
        size += len(quote(char))
        if size > limit:
            # Prefer the end of a sentence, when one is not too far back.
            end = max(text.rfind(mark, 0, index) for mark in _SENTENCE_ENDS)
            cut = end + 1 if end >= index * 0.7 else index
            return quote(text[:cut].rstrip()), True
    return escaped, False  # not reached: the whole text would have fitted


def _fit(text: str) -> str:
    """A page is one message: in the unlikely case it is too long, drop whole trailing lines."""
    if len(text) <= MESSAGE_LIMIT:
        return text
    cut = text.rfind("\n", 0, MESSAGE_LIMIT - 2)
    return text[: cut if cut > 0 else MESSAGE_LIMIT - 2] + "\n…"


def _date(value: date) -> str:
    return value.isoformat()


def _when(moment: datetime, settings: Settings, today: date) -> str:
    """A report's time in the configured timezone: "03-05 09:30", with the year if not this year."""
    local = moment.astimezone(settings.tz)
    return local.strftime("%m-%d %H:%M" if local.year == today.year else "%Y-%m-%d %H:%M")


def _day(moment: datetime, settings: Settings, today: date) -> str:
    local = moment.astimezone(settings.tz)
    return local.strftime("%m-%d" if local.year == today.year else "%Y-%m-%d")


def _status(
    status: ReportStatus | None, reported_at: datetime | None, settings: Settings, today: date
) -> str:
    name = str(STATUS_NAMES[status])
    if reported_at is None:
        return name
    return _("{status} ({date})").format(status=name, date=_day(reported_at, settings, today))


def _overdue(days: int) -> str:
    return _("⏰ {days} d overdue").format(days=days)


_MARKS = (*LIGHT_EMOJI.values(), DONE_MARK)  # in the order the counts are shown


def _mark(light: Light, status: ReportStatus | None) -> str:
    """A line's light; ✅ for a line its department reported done."""
    return _light_mark(light, done=status is ReportStatus.DONE)


def _light_counts(lines: Sequence[lookup.TaskLine]) -> str:
    counts = Counter(_mark(line.light, line.status) for line in lines)
    return "  ".join(f"{mark} {counts[mark]}" for mark in _MARKS if counts[mark])


def _pager(view: str, page: Page) -> InlineKeyboardMarkup | None:
    if page.count == 1:
        return None
    builder = InlineKeyboardBuilder()
    if page.has_previous:
        builder.button(
            text=_("◀ Previous"), callback_data=PageCallback(view=view, page=page.number - 1)
        )
    if page.has_next:
        builder.button(
            text=_("Next ▶"), callback_data=PageCallback(view=view, page=page.number + 1)
        )
    return builder.as_markup()


def _page_footer(page: Page) -> list[str]:
    if page.count == 1:
        return []
    return ["", _("Page {page} of {count}").format(page=page.number + 1, count=page.count)]


def _choice_markup(
    departments: Sequence[DepartmentRow], callback: Callable[[DepartmentRow], CallbackData]
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for row in departments[:MAX_CHOICES]:
        builder.button(text=lookup.clip(row.name, 24), callback_data=callback(row))
    builder.adjust(2)
    return builder.as_markup()


def _choice_text(match: lookup.DepartmentMatch) -> str:
    lines = [
        _("Several departments match «{query}». Choose one:").format(
            query=_clipped(match.query, NAME_LIMIT)
        )
    ]
    if len(match.matches) > MAX_CHOICES:
        lines.append(
            _("Showing {shown} of {count}; type more of the name to narrow it down.").format(
                shown=MAX_CHOICES, count=len(match.matches)
            )
        )
    return "\n".join(lines)


def _not_found_text(match: lookup.DepartmentMatch) -> str:
    query = _clipped(match.query, NAME_LIMIT)
    if match.suggestions:
        return _("No department «{query}». Did you mean:").format(query=query)
    return _("No department «{query}». Send /tasks all to see every department.").format(
        query=query
    )


async def _send(message: Message, rendered: Rendered) -> None:
    text, markup = rendered
    await message.answer(text, reply_markup=markup)


async def _show(callback: CallbackQuery, rendered: Rendered) -> None:
    """Replace the message under the pressed button with `rendered`, then answer the callback."""
    if not isinstance(callback.message, Message):  # too old for the bot to edit
        await callback.answer(_("This message is too old. Send the command again."))
        return
    text, markup = rendered
    try:
        await callback.message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as error:
        if "message is not modified" not in str(error):
            raise
    await callback.answer()


# Views ----------------------------------------------------------------------------------------


async def render_overview(page: int, settings: Settings) -> Rendered | None:
    today = _today(settings)
    overview = await lookup.department_overview(today)
    current = paginate(overview.departments, page, DEPARTMENTS_PER_PAGE)
    if current is None:
        return None
    lines = [
        _("📊 <b>All departments</b> · tasks: {tasks} · departments: {departments}").format(
            tasks=overview.tasks, departments=len(overview.departments)
        )
    ]
    totals = [
        _("reported {reported} of {assignments}").format(
            reported=overview.reported, assignments=overview.assignments
        )
    ]
    if overview.overdue_tasks:
        totals.append(_("⏰ overdue {count}").format(count=overview.overdue_tasks))
    if overview.blocked:
        totals.append(_("🔴 blocked {count}").format(count=overview.blocked))
    if overview.at_risk:
        totals.append(_("🟡 at risk {count}").format(count=overview.at_risk))
    lines += [" · ".join(totals), ""]
    if not overview.departments:
        lines.append(_("No tasks yet: a coordinator has to import the plan first."))
    for summary in current.items:
        lines.append(f"{_summary_mark(summary)} <b>{_clipped(summary.name, NAME_LIMIT)}</b>")
        details = _("lead {lead} · support {support} · reported {reported}/{total}").format(
            lead=summary.lead,
            support=summary.support,
            reported=summary.reported,
            total=summary.tasks,
        )
        issues = [
            f"{mark}{count}"
            for mark, count in (
                ("⏰", summary.overdue),
                ("🔴", summary.blocked),
                ("🟡", summary.at_risk),
            )
            if count
        ]
        lines.append("    " + " · ".join([details, *issues]))
    lines += _page_footer(current)
    lines.append(_("Details: /tasks DEPARTMENT"))
    return _fit("\n".join(lines)), _pager("a", current)


def _summary_mark(summary: lookup.DepartmentSummary) -> str:
    if summary.overdue or summary.blocked:
        return LIGHT_EMOJI[Light.RED]
    if summary.at_risk:
        return LIGHT_EMOJI[Light.YELLOW]
    if summary.tasks and summary.done == summary.tasks:
        return DONE_MARK
    return LIGHT_EMOJI[Light.GREEN if summary.reported else Light.PENDING]


async def render_department_tasks(
    department_id: int, page: int, settings: Settings
) -> Rendered | None:
    today = _today(settings)
    tasks = await lookup.department_task_list(department_id, today)
    if tasks is None:
        return None
    current = paginate(tasks.lines, page, TASKS_PER_PAGE)
    if current is None:
        return None
    lines = [
        _("📋 <b>{name}</b>: lead {lead} · support {support}").format(
            name=_clipped(tasks.name, NAME_LIMIT), lead=tasks.lead, support=tasks.support
        )
    ]
    if summary := _light_counts(tasks.lines):
        lines.append(summary)
    lines.append("")
    if not tasks.lines:
        lines.append(_("No tasks."))
    for line in current.items:
        lines.append(
            f"{_mark(line.light, line.status)} <code>{quote(line.code)}</code> "
            f"{_clipped(line.title, TITLE_LIMIT)}"
        )
        details = [
            str(ROLE_NAMES[line.role]),
            _("due {date}").format(date=_date(line.deadline)),
        ]
        if line.overdue_days:
            details.append(_overdue(line.overdue_days))
        details.append(_status(line.status, line.reported_at, settings, today))
        lines.append("    " + " · ".join(details))
    lines += _page_footer(current)
    if tasks.lines:
        lines.append(_("Details: /task CODE"))
    return _fit("\n".join(lines)), _pager(f"d{department_id}", current)


async def render_overdue(
    department_id: int | None, page: int, settings: Settings
) -> Rendered | None:
    today = _today(settings)
    name = None
    if department_id is not None:
        department = await lookup.department_card(department_id)
        if department is None:
            return None
        name = _clipped(department.name, NAME_LIMIT)
    overdue = await lookup.overdue_tasks(today, department_id)
    current = paginate(overdue, page, OVERDUE_PER_PAGE)
    if current is None:
        return None
    if not overdue:
        if name is None:
            return _("✅ No overdue tasks."), None
        return _("✅ {name} has no overdue tasks.").format(name=name), None
    count = len({line.task_id for line in overdue})
    if name is None:
        lines = [_("⏰ <b>Overdue tasks</b>: {count}").format(count=count)]
    else:
        lines = [_("⏰ <b>Overdue tasks of {name}</b>: {count}").format(name=name, count=count)]
    if name is not None:
        lines.append("")
    group = None
    for line in current.items:
        if name is None and line.department_id != group:
            group = line.department_id
            lines += ["", f"<b>{_clipped(line.department_name, NAME_LIMIT)}</b>"]
        lines.append(
            f"{_mark(line.light, line.status)} <code>{quote(line.code)}</code> "
            f"{_clipped(line.title, TITLE_LIMIT)}"
        )
        details = [_("due {date}").format(date=_date(line.deadline)), _overdue(line.days)]
        if name is not None:
            details.insert(0, str(ROLE_NAMES[line.role]))
        details.append(str(STATUS_NAMES[line.status]))
        lines.append("    " + " · ".join(details))
    lines += _page_footer(current)
    view = "o" if department_id is None else f"o{department_id}"
    return _fit("\n".join(lines)), _pager(view, current)


async def render_view(view: str, page: int, settings: Settings) -> Rendered | None:
    """The page of a view, or None when the view or the page does not exist (stale, forged)."""
    match = _VIEW.fullmatch(view)
    if match is None:
        return None
    kind, raw_id = match["kind"], match["id"]
    if kind == "a":
        return None if raw_id else await render_overview(page, settings)
    if kind == "d":
        return await render_department_tasks(int(raw_id), page, settings) if raw_id else None
    return await render_overdue(int(raw_id) if raw_id else None, page, settings)


async def render_department_card(department_id: int, settings: Settings) -> Rendered | None:
    card = await lookup.department_card(department_id)
    if card is None:
        return None
    tasks = await lookup.department_task_list(department_id, _today(settings))
    kind = str(KIND_NAMES[card.kind])
    lines = [f"🏢 <b>{quote(card.name)}</b>"]
    if card.liaisons:
        lines.append(_("{kind} · liaisons: {count}").format(kind=kind, count=card.liaisons))
    else:
        lines.append(_("{kind} · no liaison yet").format(kind=kind))
    lines.append(
        _("Tasks: lead {lead} · support {support}").format(lead=card.lead, support=card.support)
    )
    if tasks is not None and (summary := _light_counts(tasks.lines)):
        lines.append(summary)
    if card.aliases:
        lines.append(_("Also known as: {aliases}").format(aliases=quote("、".join(card.aliases))))
    markup = None
    if card.lead or card.support:
        builder = InlineKeyboardBuilder()
        builder.button(text=_("📋 Tasks"), callback_data=PageCallback(view=f"d{card.id}", page=0))
        markup = builder.as_markup()
    return _fit("\n".join(lines)), markup


def render_task_card(
    card: lookup.TaskCard, actor: Actor, settings: Settings, *, private: bool = True
) -> list[str]:
    """The card as one or more messages (a very long task text is shortened, then split).

    In a private chat, a liaison of a unit on the task is pointed to /report.
    """
    today = _today(settings)
    data = card.data
    lines = [
        f"📌 <code>{quote(data.code)}</code> <b>{quote(data.title)}</b>",
        f"<i>{quote(data.section)}</i>",
    ]
    if data.withdrawn_at is not None:
        withdrawn = data.withdrawn_at.astimezone(settings.tz).date()
        lines.append(
            _("⚠️ Withdrawn by a plan revision on {date}; its reports are kept below.").format(
                date=_date(withdrawn)
            )
        )
    due = _("due {date}").format(date=_date(data.deadline))
    lines.append(f"{due} · {_overdue(card.overdue_days)}" if card.overdue_days else due)
    lines += ["", _("<b>Units</b>")]
    for unit, light in zip(data.units, card.lights, strict=True):
        status = unit.latest.status if unit.latest else None
        reported_at = unit.latest.created_at if unit.latest else None
        lines.append(
            f"{_mark(light, status)} {quote(unit.department_name)} · {ROLE_NAMES[unit.role]} · "
            f"{_status(status, reported_at, settings, today)}"
        )
        if unit.latest and card.can_read(unit):
            report = _("{who}, {when}").format(
                who=_clipped(unit.latest.liaison_name, NAME_LIMIT),
                when=_when(unit.latest.created_at, settings, today),
            )
            if text := unit.latest.text.strip():
                report = _("{report}: {text}").format(
                    report=report, text=_clipped(text, EXCERPT_LIMIT)
                )
            lines.append("    " + report)
    if data.targets:
        lines += ["", _("<b>Targets</b>")]
    for target in data.targets:
        sign = COMPARATOR_SIGNS[target.comparator]
        goal = f"{sign}{lookup.format_number(target.value)}{target.unit}"
        lines.append(f"• {_clipped(target.metric, TITLE_LIMIT)} {quote(goal)}")
        if target.latest is None:
            lines.append("    " + _("no value reported yet"))
            continue
        value = quote(f"{lookup.format_number(target.latest.value)}{target.unit}")
        progress = lookup.target_progress(target)
        when = _day(target.latest.reported_at, settings, today)
        if progress is None:
            latest = _("latest {value} · {date}").format(value=value, date=when)
        else:
            latest = _("latest {value} ({percent}%) · {date}").format(
                value=value, percent=progress, date=when
            )
        lines.append("    " + latest)
    text, shortened = _quote_within(data.text.strip(), TASK_TEXT_LIMIT)
    lines += ["", _("<b>Task</b>"), text]
    if shortened:
        lines.append(_("… (shortened)"))
    mine = any(unit.department_id == actor.department_id for unit in data.units)
    if private and actor.can_report and mine and data.withdrawn_at is None:
        lines += ["", _("Report progress: /report")]
    return split_message("\n".join(lines))


# Handlers -------------------------------------------------------------------------------------


async def show_tasks(
    message: Message, command: CommandObject, settings: Settings, actor: Actor | None = None
) -> None:
    """/tasks [DEPARTMENT | all]: a liaison's own department by default; others: the overview."""
    if await _refused(message, actor, settings):
        return
    query = (command.args or "").strip()
    if not query or query.lower() in ALL_WORDS:
        if not query and actor.access is Access.LIAISON and actor.department_id is not None:
            rendered = await render_department_tasks(actor.department_id, 0, settings)
        else:
            rendered = await render_overview(0, settings)
        if rendered is not None:
            await _send(message, rendered)
        return
    match = await lookup.find_departments(query)
    if match.found is not None:
        rendered = await render_department_tasks(match.found.id, 0, settings)
        if rendered is not None:
            await _send(message, rendered)
        return

    def to_tasks(row: DepartmentRow) -> CallbackData:
        return PageCallback(view=f"d{row.id}", page=0)

    if match.matches:
        await message.answer(
            _choice_text(match), reply_markup=_choice_markup(match.matches, to_tasks)
        )
    else:
        markup = _choice_markup(match.suggestions, to_tasks) if match.suggestions else None
        await message.answer(_not_found_text(match), reply_markup=markup)


async def _argument(
    message: Message, command: CommandObject, actor: Actor | None, settings: Settings, usage: str
) -> str | None:
    """The command's argument; None when the sender may not look things up here or gave none
    (either way they have been answered)."""
    if await _refused(message, actor, settings):
        return None
    query = (command.args or "").strip()
    if not query:
        await message.answer(usage)
        return None
    return query


async def show_task(
    message: Message, command: CommandObject, settings: Settings, actor: Actor | None = None
) -> None:
    """/task CODE: the full card of one task."""
    query = await _argument(
        message, command, actor, settings, _("Usage: /task CODE, for example /task 2.1.3")
    )
    if query is None:
        return
    resolution = await lookup.resolve_task(query)
    card = None
    if resolution.task_id is not None:
        card = await lookup.task_card(resolution.task_id, actor, _today(settings))
    if card is not None:
        private = message.chat.type == "private"
        for part in render_task_card(card, actor, settings, private=private):
            await message.answer(part)
    elif resolution.candidates:
        shown = resolution.candidates[:MAX_CHOICES]
        await message.answer(
            _("«{query}» fits several tasks: {codes}. Send the full code.").format(
                query=_clipped(query, NAME_LIMIT), codes=quote(", ".join(shown))
            )
        )
    else:
        await message.answer(
            _("No task «{query}». Send /tasks to see the codes.").format(
                query=_clipped(query, NAME_LIMIT)
            )
        )


async def show_department(
    message: Message, command: CommandObject, settings: Settings, actor: Actor | None = None
) -> None:
    """/dept NAME: fuzzy; one match -> its card, several -> buttons, none -> closest names."""
    query = await _argument(
        message, command, actor, settings, _("Usage: /dept NAME, for example /dept 建设局")
    )
    if query is None:
        return
    match = await lookup.find_departments(query)
    if match.found is not None:
        rendered = await render_department_card(match.found.id, settings)
        if rendered is not None:
            await _send(message, rendered)
        return

    def to_card(row: DepartmentRow) -> CallbackData:
        return DepartmentCallback(id=row.id)

    if match.matches:
        await message.answer(
            _choice_text(match), reply_markup=_choice_markup(match.matches, to_card)
        )
    else:
        markup = _choice_markup(match.suggestions, to_card) if match.suggestions else None
        await message.answer(_not_found_text(match), reply_markup=markup)


async def show_overdue(message: Message, settings: Settings, actor: Actor | None = None) -> None:
    """/overdue: a liaison's own department's; everyone else's by lead department."""
    if await _refused(message, actor, settings):
        return
    own = actor.department_id if actor.access is Access.LIAISON else None
    rendered = await render_overdue(own, 0, settings)
    if rendered is not None:
        await _send(message, rendered)


async def turn_page(
    callback: CallbackQuery,
    callback_data: PageCallback,
    settings: Settings,
    actor: Actor | None = None,
) -> None:
    if await _refused_button(callback, actor, settings):
        return
    rendered = await render_view(callback_data.view, callback_data.page, settings)
    if rendered is None:
        await callback.answer(
            _("This list has changed or the button is no longer valid. Send the command again."),
            show_alert=True,
        )
        return
    await _show(callback, rendered)


async def choose_department(
    callback: CallbackQuery,
    callback_data: DepartmentCallback,
    settings: Settings,
    actor: Actor | None = None,
) -> None:
    if await _refused_button(callback, actor, settings):
        return
    rendered = await render_department_card(callback_data.id, settings)
    if rendered is None:
        await callback.answer(_("No such department any more."), show_alert=True)
        return
    await _show(callback, rendered)


def build_router() -> Router:
    router = Router(name="lookup")
    router.message.register(show_tasks, Command("tasks"))
    router.message.register(show_task, Command("task"))
    router.message.register(show_department, Command("dept"))
    router.message.register(show_overdue, Command("overdue"))
    router.callback_query.register(turn_page, PageCallback.filter(), F.message)
    router.callback_query.register(choose_department, DepartmentCallback.filter(), F.message)
    return router
