"""Progress reports (进度报送): /report, replies to prompts, edits and withdrawals.

Two ways in, one conversation (aiogram FSM, states in `ReportFlow`):

    /report ─► choose the task ─► choose the status ─► send text, photos, documents ─► Done
    prompt: press a status ───────────────────────────┘                                 │
    prompt: reply to it ─► (text captured) ─► choose the status ──────────────────────┤
                                                       numbers recognised; ambiguous ones asked
                                                                                       ▼
                                       confirm: ✅ submit / ✏️ edit / ✖️ cancel ─► stored

After submission the confirmation message carries ✏️ Edit / ↩️ Withdraw for 24 hours, and editing
one of the Telegram messages the report's text came from updates that part of the report (each
message is a stored part, storage.models.ReportPart). Before submission, editing a message of
the draft updates the draft.

State data stays JSON-serialisable (ids, strings, lists) for a Redis storage later. Every
callback that names a task or a report is checked against the database (forged or stale data
is refused); the in-flow buttons carry a per-conversation `flow` number, so buttons of an old
conversation cannot act on a new one. Duplicated updates: a message id already in the draft
or already stored as a report is ignored silently; a second insert of the same (chat, message)
fails on the unique key and is ignored.

Prompts for the scheduler: `render_prompt(task)` and `prompt_keyboard(task_id)`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from aiogram import Bot, F, Router
from aiogram.exceptions import (
    TelegramBadRequest,
)
from aiogram.filters import Command, Filter, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from pydantic import Field

from bot.labels import COMPARATOR_SIGNS, role_tag
from bot.notices import Waker, support_report_notices
from bot.paging import nearest_page
from bot.people import Access, Actor
from bot.plan_model import Comparator, Role
from bot.reports import (
    IMPLAUSIBLE_FACTOR,
    MAX_ATTACHMENTS,
    MAX_TEXT,
    Problem,
    RecognisedValue,
    Recognition,
    Refused,
    can_change,
    change_deadline,
    compose_text,
    excerpt,
    format_value,
    is_blank,
    keep_answers,
    merge_values,
    question_from_data,
    question_to_data,
    recognise_values,
    report_cycle,
    stored_values,
    text_too_long,
    value_from_data,
    value_to_data,
)
from bot.settings import Settings
from handlers.render import Button, in_rows, keyboard, quote
from storage import deliveries as ledger
from storage.deliveries import NewDelivery
from storage.enums import ReportStatus
from storage.reports import (
    NewReport,
    PartRecord,
    ReportRecord,
    ReportTask,
    TaskChoice,
    create_report,
    department_tasks,
    get_report,
    get_report_task,
    lead_liaisons,
    report_exists,
    report_of_message,
    task_for_department,
    update_report,
    withdraw_report,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 8
PREVIEW_TEXT = 1500  # characters of the report text shown back for confirmation
TITLE_IN_BUTTON = 24
TIME_FORMAT = "%Y-%m-%d %H:%M"


class ReportFlow(StatesGroup):
    choosing_task = State()
    choosing_status = State()
    collecting = State()
    resolving = State()
    confirming = State()


class Step(StrEnum):
    DONE = "done"
    CONFIRM = "ok"
    REDO = "redo"
    CANCEL = "no"


class Manage(StrEnum):
    EDIT = "edit"
    WITHDRAW = "wd"
    WITHDRAW_SURE = "wd!"
    KEEP = "keep"


# Ids and pages in callback data: forged data with a number no row can have (past int32,
# the database's id range) fails to unpack and reaches the stale-button fallback.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class PromptCb(CallbackData, prefix="r1"):
    """A status button under a prompt: names the task (checked on every press)."""

    task_id: Int32
    status: ReportStatus


class TaskCb(CallbackData, prefix="r2"):
    flow: Int32
    task_id: Int32


class PageCb(CallbackData, prefix="r3"):
    flow: Int32
    page: Int32


class StatusCb(CallbackData, prefix="r4"):
    flow: Int32
    status: ReportStatus


class StepCb(CallbackData, prefix="r5"):
    flow: Int32
    action: Step


class ChoiceCb(CallbackData, prefix="r6"):
    flow: Int32
    step: Int32  # which question (0, 1, …): a repeated press cannot answer the next one
    index: Int32


class ManageCb(CallbackData, prefix="r7"):
    report_id: Int32
    action: Manage


STATUS_ORDER = (
    ReportStatus.ON_TRACK,
    ReportStatus.AT_RISK,
    ReportStatus.BLOCKED,
    ReportStatus.DONE,
)


# -- rendering --------------------------------------------------------------------------------


def status_label(status: ReportStatus | str) -> str:
    labels = {
        ReportStatus.ON_TRACK: _("🟢 On track"),
        ReportStatus.AT_RISK: _("🟡 At risk"),
        ReportStatus.BLOCKED: _("🔴 Blocked"),
        ReportStatus.DONE: _("✅ Completed"),
    }
    return labels[ReportStatus(status)]


def role_label(role: Role) -> str:
    return role_tag(role)


def task_heading(task: ReportTask) -> str:
    return f"<b>{quote(task.code)} {quote(task.title)}</b>"


def target_line(target: Any) -> str:
    sign = COMPARATOR_SIGNS.get(Comparator(target.comparator), "")
    return f"{quote(target.metric)} {sign} {format_value(target.value)}{quote(target.unit)}"


def render_prompt(task: ReportTask) -> str:
    """The scheduled question about one task, in the current locale (`i18n.use_locale`)."""
    lines = [
        _("📋 <b>Progress prompt</b>"),
        task_heading(task),
        _("Deadline: {date}").format(date=task.deadline.isoformat()),
    ]
    if task.targets:
        lines.append(_("Targets:"))
        lines += [f"• {target_line(target)}" for target in task.targets]
    lines += [
        "",
        _(
            "Choose the status below, or reply to this message with the progress "
            "(text, photos or documents)."
        ),
    ]
    return "\n".join(lines)


def _status_buttons(make: Any, current: str | None = None) -> list[Button]:
    buttons = []
    for status in STATUS_ORDER:
        label = status_label(status)
        if current == status:
            label = f"· {label} ·"
        buttons.append((label, make(status)))
    return buttons


def prompt_keyboard(task_id: int) -> InlineKeyboardMarkup:
    """Status buttons under a prompt; replying to the prompt also reports on the task."""
    statuses = _status_buttons(lambda status: PromptCb(task_id=task_id, status=status))
    return keyboard(*in_rows(statuses, 2))


def _picker(choices: Sequence[TaskChoice], flow: int, page: int) -> InlineKeyboardMarkup:
    current = nearest_page(choices, page, PAGE_SIZE)
    page = current.number
    builder = InlineKeyboardBuilder()
    for choice in current.items:
        title = excerpt(choice.title, TITLE_IN_BUTTON)
        builder.button(
            text=f"{choice.code} {title} {role_label(choice.role)}",
            callback_data=TaskCb(flow=flow, task_id=choice.task_id),
        )
    sizes = [1] * len(current.items)
    navigation = 0
    if current.has_previous:
        builder.button(text=_("‹ Previous"), callback_data=PageCb(flow=flow, page=page - 1))
        navigation += 1
    if current.has_next:
        builder.button(text=_("Next ›"), callback_data=PageCb(flow=flow, page=page + 1))
        navigation += 1
    if navigation:
        sizes.append(navigation)
    builder.button(text=_("✖️ Cancel"), callback_data=StepCb(flow=flow, action=Step.CANCEL))
    sizes.append(1)
    builder.adjust(*sizes)
    return builder.as_markup()


def _status_keyboard(flow: int, current: str | None = None) -> InlineKeyboardMarkup:
    statuses = _status_buttons(lambda status: StatusCb(flow=flow, status=status), current)
    cancel = (_("✖️ Cancel"), StepCb(flow=flow, action=Step.CANCEL))
    return keyboard(*in_rows(statuses, 2), [cancel])


def _collect_keyboard(flow: int, status: str | None, *, with_status: bool) -> InlineKeyboardMarkup:
    rows = []
    if with_status:
        statuses = _status_buttons(lambda value: StatusCb(flow=flow, status=value), status)
        rows = in_rows(statuses, 2)
    done = (_("✔️ Done"), StepCb(flow=flow, action=Step.DONE))
    cancel = (_("✖️ Cancel"), StepCb(flow=flow, action=Step.CANCEL))
    return keyboard(*rows, [done, cancel])


def _confirm_keyboard(flow: int) -> InlineKeyboardMarkup:
    return keyboard(
        [(_("✅ Confirm and submit"), StepCb(flow=flow, action=Step.CONFIRM))],
        [
            (_("✏️ Edit"), StepCb(flow=flow, action=Step.REDO)),
            (_("✖️ Cancel"), StepCb(flow=flow, action=Step.CANCEL)),
        ],
    )


def _manage_keyboard(report_id: int) -> InlineKeyboardMarkup:
    return keyboard(
        [
            (_("✏️ Edit"), ManageCb(report_id=report_id, action=Manage.EDIT)),
            (_("↩️ Withdraw"), ManageCb(report_id=report_id, action=Manage.WITHDRAW)),
        ]
    )


def _withdraw_keyboard(report_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("↩️ Yes, withdraw"),
        callback_data=ManageCb(report_id=report_id, action=Manage.WITHDRAW_SURE),
    )
    builder.button(
        text=_("Keep it"), callback_data=ManageCb(report_id=report_id, action=Manage.KEEP)
    )
    builder.adjust(2)
    return builder.as_markup()


def _value_lines(task: ReportTask, values: Sequence[RecognisedValue | dict]) -> list[str]:
    lines = []
    for item in values:
        value = value_from_data(item) if isinstance(item, dict) else item
        target = task.target(value.target_id)
        if target is None:
            continue
        lines.append(
            _("• {metric}: {value}{unit} (target {sign} {goal}{unit})").format(
                metric=quote(target.metric),
                value=format_value(value.value),
                unit=quote(target.unit),
                sign=COMPARATOR_SIGNS.get(Comparator(target.comparator), ""),
                goal=format_value(target.value),
            )
        )
    return lines


def _attachment_line(attachments: Sequence[dict]) -> str | None:
    photos = sum(1 for item in attachments if item.get("kind") == "photo")
    documents = len(attachments) - photos
    if not attachments:
        return None
    return _("Attachments: {photos} photo(s), {documents} document(s)").format(
        photos=photos, documents=documents
    )


def _report_body(
    task: ReportTask,
    *,
    status: str,
    text: str,
    values: Sequence[RecognisedValue | dict],
    attachments: Sequence[dict],
    ignored: Sequence[str] = (),
) -> list[str]:
    lines = [
        _("Task: {task}").format(task=task_heading(task)),
        _("Status: {status}").format(status=status_label(status)),
        _("Text: {text}").format(text=quote(excerpt(text, PREVIEW_TEXT))),
    ]
    value_lines = _value_lines(task, values)
    if value_lines:
        lines.append(_("Values toward the targets:"))
        lines += value_lines
    elif task.targets:
        lines.append(
            _(
                "No value recognised for this task's targets. To record one, write the number "
                "with its unit, e.g. {example}."
            ).format(example=quote(f"{format_value(task.targets[0].value)}{task.targets[0].unit}"))
        )
    if ignored:
        lines.append(
            _("Not recorded (ambiguous): {mentions}").format(mentions=quote("、".join(ignored)))
        )
    if line := _attachment_line(attachments):
        lines.append(line)
    return lines


def _stored_body(task: ReportTask, report: ReportRecord, ignored: Sequence[str] = ()) -> list[str]:
    return _report_body(
        task,
        status=report.status,
        text=report.text,
        values=report.values,
        attachments=report.attachments,
        ignored=ignored,
    )


def _local_time(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime(TIME_FORMAT)


def _receipt(task: ReportTask, report: ReportRecord, settings: Settings, *, updated: bool) -> str:
    heading = _("✅ <b>Report updated</b>") if updated else _("✅ <b>Report submitted</b>")
    lines = [heading, *_stored_body(task, report)]
    lines += [
        "",
        _("Submitted at {time}.").format(time=_local_time(report.created_at, settings)),
        _(
            "You can edit or withdraw it until {deadline}; editing your message also updates it."
        ).format(deadline=_local_time(change_deadline(report.created_at), settings)),
    ]
    return "\n".join(lines)


# -- small helpers ----------------------------------------------------------------------------


def _new_flow() -> int:
    return secrets.randbelow(900_000) + 100_000


def _refusal(actor: Actor | None) -> str:
    if actor is None or actor.access is Access.GUEST:
        return _(
            "Only a department's liaison can report progress. Ask a coordinator for an invitation."
        )
    return _("Only a department's liaison can report progress.")


def _can_report(actor: Actor | None) -> bool:
    return actor is not None and actor.can_report


async def _show(
    event: Message | CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    """Answer a message with a new message; after a button press, edit the pressed message."""
    if isinstance(event, Message):
        await event.answer(text, reply_markup=markup)
        return
    message = event.message
    if isinstance(message, Message):
        try:
            await message.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as error:
            if "not modified" in str(error):
                return
            await message.answer(text, reply_markup=markup)
        return
    if event.bot is not None:  # an old, inaccessible message: write a new one
        await event.bot.send_message(event.from_user.id, text, reply_markup=markup)


async def _answer(
    callback: CallbackQuery, text: str | None = None, *, show_alert: bool = False
) -> None:
    """Answer a button press; a press answered before (a redelivered update) is no error."""
    try:
        await callback.answer(text, show_alert=show_alert)
    except TelegramBadRequest as error:
        if "query is too old" not in str(error) and "query ID is invalid" not in str(error):
            raise
        log.info("callback query %s was already answered or expired", callback.id)


async def _answer_stale(callback: CallbackQuery) -> None:
    await _answer(
        callback, _("This step has expired. Send /report to start again."), show_alert=True
    )


async def _flow_matches(callback: CallbackQuery, state: FSMContext, flow: int) -> dict | None:
    data = await state.get_data()
    if data.get("flow") != flow:
        await _answer_stale(callback)
        return None
    return data


def _message_text(message: Message) -> str:
    return message.text or message.caption or ""


def _visible_text(message: Message) -> str:
    """The message's text or caption, stripped; "" when it shows nothing (zero-width
    characters, whitespace, blank-looking letters only)."""
    text = _message_text(message)
    return "" if is_blank(text) else text.strip()


def _no_text(message: Message) -> str:
    """What to say to a message with nothing to add to a report."""
    if _message_text(message):
        return _(
            "This message shows no text (only invisible characters or spaces). "
            "Please send the progress in words, or a photo or document."
        )
    return _("Please send text, a photo or a document.")


def _refused_lines(refused: Sequence[Refused]) -> list[str]:
    """Why numbers were refused: a negative amount, scientific notation."""
    lines = []
    for item in refused:
        if item.problem is Problem.NEGATIVE:
            lines.append(
                _("«{mention}»: a value toward a target cannot be negative.").format(
                    mention=quote(item.mention)
                )
            )
        else:
            lines.append(
                _(
                    "«{mention}»: please write the number in full (e.g. 6200), "
                    "not in scientific notation."
                ).format(mention=quote(item.mention))
            )
    return lines


def _attachment_of(message: Message) -> dict[str, str] | None:
    if message.photo:
        return {"kind": "photo", "file_id": message.photo[-1].file_id}
    if message.document:
        return {"kind": "document", "file_id": message.document.file_id}
    return None


def prompt_task_id(message: Message, bot_id: int) -> int | None:
    """The task of the prompt `message` replies to, if it replies to one of the bot's prompts."""
    reply = message.reply_to_message
    if reply is None or reply.from_user is None or reply.from_user.id != bot_id:
        return None
    markup = reply.reply_markup
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            data = button.callback_data or ""
            if data.startswith(f"{PromptCb.__prefix__}{PromptCb.__separator__}"):
                try:
                    return PromptCb.unpack(data).task_id
                except (TypeError, ValueError):
                    return None
    return None


class PromptReply(Filter):
    """A message replying to one of the bot's prompts; gives `prompt_task_id` to the handler."""

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, Any]:
        task_id = prompt_task_id(message, bot.id)
        return False if task_id is None else {"prompt_task_id": task_id}


def _not_command(message: Message) -> bool:
    return not (message.text or "").startswith("/")


async def _already_reported(message: Message) -> bool:
    """A message that is already a stored report: its update was delivered again."""
    return await report_exists(message.chat.id, message.message_id)


# -- /report and the task picker ---------------------------------------------------------------


async def report_in_group(message: Message, bot_username: str | None = None) -> None:
    if bot_username:
        await message.reply(
            _("Reports are sent in a private chat with me: {link}").format(
                link=f"https://t.me/{bot_username}"
            )
        )
    else:
        await message.reply(_("Reports are sent in a private chat with me."))


async def start_report(message: Message, state: FSMContext, actor: Actor | None = None) -> None:
    if not _can_report(actor):
        await message.answer(_refusal(actor))
        return
    choices = await department_tasks(actor.department_id)
    if not choices:
        await state.clear()
        await message.answer(_("Your department has no tasks to report on."))
        return
    flow = _new_flow()
    await state.set_state(ReportFlow.choosing_task)
    await state.set_data({"flow": flow, "department_id": actor.department_id})
    await message.answer(
        _("<b>Report progress</b> — {department}\nWhich task?").format(
            department=quote(actor.department_name or "")
        ),
        reply_markup=_picker(choices, flow, 0),
    )


async def turn_page(
    callback: CallbackQuery, callback_data: PageCb, state: FSMContext, actor: Actor | None = None
) -> None:
    if await _flow_matches(callback, state, callback_data.flow) is None:
        return
    if not _can_report(actor):
        await _answer(callback, _refusal(actor), show_alert=True)
        return
    choices = await department_tasks(actor.department_id)
    await _answer(callback)
    await _set_buttons(callback, _picker(choices, callback_data.flow, callback_data.page))


async def pick_task(
    callback: CallbackQuery, callback_data: TaskCb, state: FSMContext, actor: Actor | None = None
) -> None:
    data = await _flow_matches(callback, state, callback_data.flow)
    if data is None:
        return
    task = await _task_or_refuse(callback, actor, callback_data.task_id)
    if task is None:
        return
    await state.update_data(task_id=task.id)
    await state.set_state(ReportFlow.choosing_status)
    await _answer(callback)
    await _show(
        callback,
        "\n".join([task_heading(task), _("How is it going? Choose the status:")]),
        _status_keyboard(callback_data.flow),
    )


async def _task_or_refuse(
    callback: CallbackQuery, actor: Actor | None, task_id: int
) -> ReportTask | None:
    """The task if the actor may report on it; otherwise the press is answered with a refusal."""
    if not _can_report(actor):
        await _answer(callback, _refusal(actor), show_alert=True)
        return None
    task = await task_for_department(task_id, actor.department_id)
    if task is None:
        await _answer(
            callback, _("This task is not one of your department's tasks."), show_alert=True
        )
    return task


# -- prompts: a status button, or a reply ------------------------------------------------------


async def prompt_status(
    callback: CallbackQuery,
    callback_data: PromptCb,
    state: FSMContext,
    actor: Actor | None = None,
) -> None:
    if (await state.get_data()).get("query") == callback.id:
        await _answer(callback)  # the same press delivered again: keep the draft under way
        return
    task = await _task_or_refuse(callback, actor, callback_data.task_id)
    if task is None:
        return
    flow = _new_flow()
    await state.set_state(ReportFlow.collecting)
    await state.set_data(
        {
            "flow": flow,
            "query": callback.id,
            "department_id": actor.department_id,
            "task_id": task.id,
            "status": callback_data.status.value,
        }
    )
    await _answer(callback, status_label(callback_data.status))
    # The prompt keeps its buttons (a reply to it must still work): the next step is a new message.
    text, markup = _collect_intro(task, {"flow": flow, "status": callback_data.status.value})
    if isinstance(callback.message, Message):
        await callback.message.answer(text, reply_markup=markup)
    elif callback.bot is not None:
        await callback.bot.send_message(callback.from_user.id, text, reply_markup=markup)


async def prompt_reply(
    message: Message,
    prompt_task_id: int,
    state: FSMContext,
    actor: Actor | None = None,
) -> None:
    if not _can_report(actor):
        await message.answer(_refusal(actor))
        return
    data = await state.get_data()
    if message.message_id in data.get("seen", []) or await _already_reported(message):
        return  # the same update delivered again
    if (
        await state.get_state() == ReportFlow.collecting.state
        and data.get("task_id") == prompt_task_id
    ):
        await collect(message, state, actor)  # more of the report already under way
        return
    task = await task_for_department(prompt_task_id, actor.department_id)
    if task is None:
        await message.answer(_("This task is not one of your department's tasks."))
        return
    if problem := _content_problem(message, [], []):
        await message.answer(problem)  # an ongoing conversation, if any, is left as it was
        return
    flow = _new_flow()
    draft: dict[str, Any] = {"flow": flow, "department_id": actor.department_id, "task_id": task.id}
    await state.set_state(ReportFlow.choosing_status)
    await state.set_data(draft)
    await _add_to_draft(message, state, draft, acknowledge=False)
    await message.answer(
        "\n".join([task_heading(task), _("Got it. How is it going? Choose the status:")]),
        reply_markup=_status_keyboard(flow),
    )


async def prompt_reply_in_group(message: Message) -> None:
    await message.reply(_("Please reply to prompts in our private chat: reports are private."))


# -- status and collecting ------------------------------------------------------------------------


def _collect_intro(task: ReportTask, data: dict) -> tuple[str, InlineKeyboardMarkup]:
    status = data.get("status")
    mode = data.get("mode")
    if mode == "edit":
        text = _(
            "Editing your report on {task} (status: {status}).\n"
            "Send the corrected text: it replaces the old one; photos and documents are added. "
            "Change the status below if needed, then press «Done». "
            "«Done» without new text keeps the old text."
        ).format(task=task_heading(task), status=status_label(status))
    else:
        text = _(
            "{task} · {status}\n"
            "Now send the progress: text, and photos or documents as evidence if you have "
            "them (a caption counts as text). You may send several messages, then press "
            "«Done» or send /done."
        ).format(task=task_heading(task), status=status_label(status))
    return text, _collect_keyboard(data["flow"], status, with_status=mode in ("edit", "redo"))


async def choose_status(
    callback: CallbackQuery, callback_data: StatusCb, state: FSMContext, actor: Actor | None = None
) -> None:
    data = await _flow_matches(callback, state, callback_data.flow)
    if data is None:
        return
    task = await _task_or_refuse(callback, actor, data.get("task_id", 0))
    if task is None:
        await state.clear()
        return
    data["status"] = callback_data.status.value
    await state.update_data(status=data["status"])
    if data.get("texts") and await state.get_state() == ReportFlow.choosing_status.state:
        await _finish(callback, state, actor, data, task)  # a reply to a prompt: the text is in
        return
    await _answer(callback, status_label(callback_data.status))
    await state.set_state(ReportFlow.collecting)
    text, markup = _collect_intro(task, data)
    await _show(callback, text, markup)


def _content_problem(message: Message, texts: list[str], attachments: list[dict]) -> str | None:
    """Why this message cannot be added to a draft holding `texts` and `attachments`, if so."""
    text = _visible_text(message)
    attachment = _attachment_of(message)
    if not text and attachment is None:
        return _no_text(message)
    if text:
        total = len(compose_text([*texts, text]))
        if len(text) > MAX_TEXT or total > MAX_TEXT:
            return _(
                "This is too long: a report holds at most {limit} characters of text "
                "(this would make {length}). Please shorten it."
            ).format(limit=MAX_TEXT, length=max(total, len(text)))
    if attachment is not None and len(attachments) >= MAX_ATTACHMENTS:
        return _("A report holds at most {limit} photos and documents.").format(
            limit=MAX_ATTACHMENTS
        )
    return None


async def _add_to_draft(
    message: Message, state: FSMContext, data: dict, *, acknowledge: bool = True
) -> bool:
    """Add one message to the draft; False (with an answer) when it cannot be part of a report."""
    seen = list(data.get("seen", []))
    if message.message_id in seen:
        return False
    texts = list(data.get("texts", []))
    attachments = list(data.get("attachments", []))
    if problem := _content_problem(message, texts, attachments):
        await message.answer(problem)
        return False
    text = _visible_text(message)
    attachment = _attachment_of(message)
    seen.append(message.message_id)
    changes: dict[str, Any] = {"seen": seen}
    if text:
        texts.append(text)
        changes["texts"] = texts
        # Which message each text came from: edits of that message change that text alone.
        changes["text_ids"] = [*data.get("text_ids", []), message.message_id]
        if data.get("text_message_id") is None:
            changes["text_message_id"] = message.message_id
    else:  # a photo or document alone: a part without text (a caption may be added later)
        changes["media_ids"] = [*data.get("media_ids", []), message.message_id]
    if attachment is not None:
        attachments.append(attachment)
        changes["attachments"] = attachments
    data.update(changes)
    await state.update_data(**changes)
    if acknowledge:
        if message.media_group_id and message.media_group_id in data.get("albums", []):
            return True  # one acknowledgement per album
        if message.media_group_id:
            albums = [*data.get("albums", []), message.media_group_id]
            data["albums"] = albums
            await state.update_data(albums=albums)
        photos = sum(1 for item in attachments if item["kind"] == "photo")
        await message.answer(
            _(
                "Received: {texts} text message(s), {photos} photo(s), {documents} document(s). "
                "Send more, or press «Done»."
            ).format(texts=len(texts), photos=photos, documents=len(attachments) - photos),
            reply_markup=_collect_keyboard(data["flow"], data.get("status"), with_status=False),
        )
    return True


async def collect(message: Message, state: FSMContext, actor: Actor | None = None) -> None:
    if not _can_report(actor):
        await state.clear()
        await message.answer(_refusal(actor))
        return
    await _add_to_draft(message, state, await state.get_data())


async def done_command(message: Message, state: FSMContext, actor: Actor | None = None) -> None:
    await _finish(message, state, actor, await state.get_data())


async def done_button(
    callback: CallbackQuery, callback_data: StepCb, state: FSMContext, actor: Actor | None = None
) -> None:
    data = await _flow_matches(callback, state, callback_data.flow)
    if data is None:
        return
    await _finish(callback, state, actor, data)


async def _finish(
    event: Message | CallbackQuery,
    state: FSMContext,
    actor: Actor | None,
    data: dict,
    task: ReportTask | None = None,
) -> None:
    """The draft is complete: recognise the numbers, ask about ambiguous ones, then preview.
    `task`: the draft's task when the caller has just checked it for this actor."""
    if not _can_report(actor) or data.get("department_id") != actor.department_id:
        await state.clear()
        await _reply_or_alert(event, _refusal(actor))
        return
    if task is None or task.id != data.get("task_id"):
        task = await task_for_department(data.get("task_id", 0), actor.department_id)
    if task is None:
        await state.clear()
        await _reply_or_alert(event, _("This task is not one of your department's tasks."))
        return
    text = compose_text(data.get("texts", [])) or (data.get("old_text") or "")
    if not text:
        await _reply_or_alert(event, _("Please send the progress text first."))
        return
    if text_too_long(text):  # re-checked: an edit's old text may be combined with nothing else
        await _reply_or_alert(event, _("The text is too long. Please /cancel and start again."))
        return
    recognition = recognise_values(text, task.targets)
    if recognition.refused:  # the text must change: back to collecting, where edits count
        await state.set_state(ReportFlow.collecting)
        if isinstance(event, CallbackQuery):
            await _answer(event)
        lines = _refused_lines(recognition.refused)
        lines.append(
            _(
                "Nothing was recorded yet. Edit that message to correct it, then press «Done»; "
                "or send /cancel."
            )
        )
        await _show(
            event,
            "\n".join(lines),
            _collect_keyboard(data["flow"], data.get("status"), with_status=False),
        )
        return
    data.update(
        values=[value_to_data(value) for value in recognition.values],
        questions=[question_to_data(question) for question in recognition.questions],
        ignored=list(recognition.ignored),
        answered=0,
    )
    await state.update_data(
        values=data["values"], questions=data["questions"], ignored=data["ignored"], answered=0
    )
    if isinstance(event, CallbackQuery):
        await _answer(event)
    await _next_question_or_preview(event, state, task, data)


async def _reply_or_alert(event: Message | CallbackQuery, text: str) -> None:
    if isinstance(event, CallbackQuery):
        await _answer(event, text, show_alert=True)
    else:
        await event.answer(text)


async def _next_question_or_preview(
    event: Message | CallbackQuery, state: FSMContext, task: ReportTask, data: dict
) -> None:
    questions = data.get("questions", [])
    flow = data["flow"]
    if questions:
        question = question_from_data(questions[0])
        step = data.get("answered", 0)
        await state.set_state(ReportFlow.resolving)
        builder = InlineKeyboardBuilder()
        for index, option in enumerate(question.options):
            target = task.target(option.target_id)
            if target is None:
                continue
            label = f"{excerpt(target.metric, 20)}: {format_value(option.value)}{target.unit}"
            builder.button(text=label, callback_data=ChoiceCb(flow=flow, step=step, index=index))
        builder.button(
            text=_("Don't record it"),
            callback_data=ChoiceCb(flow=flow, step=step, index=len(question.options)),
        )
        builder.adjust(1)
        targets = {option.target_id for option in question.options}
        target = task.target(next(iter(targets)))
        if question.implausible and target is not None:
            prompt = _(
                "«{mention}» is more than {factor} times the target of {metric} "
                "({goal}{unit}). Is it right? Record it only if it is."
            ).format(
                mention=quote(question.mention),
                factor=IMPLAUSIBLE_FACTOR,
                metric=quote(target.metric),
                goal=format_value(target.value),
                unit=quote(target.unit),
            )
        elif len(targets) == 1 and target is not None:
            prompt = _("«{mention}»: which is the current value of {metric}?").format(
                mention=quote(question.mention), metric=quote(target.metric)
            )
        else:
            prompt = _("«{mention}»: which target does it count toward?").format(
                mention=quote(question.mention)
            )
        await _show(event, prompt, builder.as_markup())
        return
    await state.set_state(ReportFlow.confirming)
    text = compose_text(data.get("texts", [])) or (data.get("old_text") or "")
    lines = [_("<b>Please check your report</b>")]
    lines += _report_body(
        task,
        status=data.get("status") or ReportStatus.ON_TRACK,
        text=text,
        values=data.get("values", []),
        attachments=data.get("attachments", []),
        ignored=data.get("ignored", []),
    )
    await _show(event, "\n".join(lines), _confirm_keyboard(flow))


async def answer_question(
    callback: CallbackQuery, callback_data: ChoiceCb, state: FSMContext, actor: Actor | None = None
) -> None:
    data = await _flow_matches(callback, state, callback_data.flow)
    if data is None:
        return
    if not data.get("questions") or callback_data.step != data.get("answered", 0):
        await _answer_stale(callback)
        return
    task = await _task_or_refuse(callback, actor, data.get("task_id", 0))
    if task is None:
        await state.clear()
        return
    questions = list(data["questions"])
    question = question_from_data(questions.pop(0))
    chosen = None
    if 0 <= callback_data.index < len(question.options):
        chosen = question.options[callback_data.index]
    values = [value_from_data(item) for item in data.get("values", [])]
    ignored = list(data.get("ignored", []))
    if chosen is None:
        ignored.append(question.mention)
    data.update(
        values=[value_to_data(value) for value in merge_values(values, chosen)],
        questions=questions,
        ignored=ignored,
        answered=data.get("answered", 0) + 1,
    )
    await state.update_data(
        values=data["values"], questions=questions, ignored=ignored, answered=data["answered"]
    )
    await _answer(callback)
    await _next_question_or_preview(callback, state, task, data)


# -- confirm, redo, cancel ------------------------------------------------------------------------


async def confirm(
    callback: CallbackQuery,
    callback_data: StepCb,
    state: FSMContext,
    *,
    bot: Bot,
    settings: Settings,
    i18n: I18n,
    actor: Actor | None = None,
    clock: Callable[[], datetime] | None = None,
    sender: Waker | None = None,
) -> None:
    """Store the report. `clock` (workflow data, aware UTC) names the moment, and so the cycle
    the report answers; tests inject virtual time with it. A support unit's report is told to
    the lead unit's liaisons through the ledger (bot.notices); `sender` (workflow data) is woken
    to send it at once."""
    data = await _flow_matches(callback, state, callback_data.flow)
    if data is None:
        return
    if data.get("department_id") != (actor.department_id if actor else None):
        await state.clear()
        await _answer(callback, _refusal(actor), show_alert=True)
        return
    task = await _task_or_refuse(callback, actor, data.get("task_id", 0))
    if task is None:
        await state.clear()
        return
    now = clock() if clock is not None else datetime.now(UTC)
    status = ReportStatus(data.get("status") or ReportStatus.ON_TRACK)
    values = stored_values(value_from_data(item) for item in data.get("values", []))
    text = compose_text(data.get("texts", [])) or (data.get("old_text") or "")
    # The draft is cleared only once the report is committed: a stop or crash in between leaves
    # it for the confirmation Telegram delivers again (a repeat is recognised by its message).
    if data.get("report_id"):
        report = await _apply_edit(callback, data, status=status, text=text, values=values, now=now)
        await state.clear()
        if report is None:
            return
        await _answer(callback, _("Report updated."))
        await _show(
            callback, _receipt(task, report, settings, updated=True), _manage_keyboard(report.id)
        )
        return
    notices: list[NewDelivery] = []

    async def notify_leads(report_id: int) -> None:
        if task.role is Role.SUPPORT:  # the lead unit's liaisons are told, in the same transaction
            notices.extend(
                support_report_notices(
                    await lead_liaisons(task.id),
                    report_id=report_id,
                    task_id=task.id,
                    department_name=actor.department_name or "",
                    status=status,
                    text=text,
                    author_user_id=actor.user_id,
                    now=now,
                    default_locale=settings.default_locale,
                )
            )
            await ledger.enqueue(notices)

    report = await create_report(
        NewReport(
            task_id=task.id,
            department_id=actor.department_id,
            liaison_id=actor.liaison_id,
            status=status,
            text=text,
            values=values,
            attachments=list(data.get("attachments", [])),
            chat_id=callback.message.chat.id if callback.message else callback.from_user.id,
            message_id=data.get("text_message_id"),
            cycle_key=await report_cycle(task, actor.department_id, now, settings),
            created_at=now,
            parts=_draft_parts(data),
        ),
        then=notify_leads,
    )
    await state.clear()
    if report is None:  # the same report arrived twice: the first one is stored
        await _answer(callback)
        return
    await _answer(callback, _("Report submitted."))
    await _show(
        callback, _receipt(task, report, settings, updated=False), _manage_keyboard(report.id)
    )
    if notices and sender is not None:
        sender.wake()  # the notifications go out now, not at the sender's next look


def _draft_parts(data: dict) -> tuple[tuple[int, str], ...]:
    """Every message of the draft with its text ("" for a photo or document alone), in order;
    none for a draft of an older version of the bot, which kept no message ids."""
    texts, ids = data.get("texts", []), data.get("text_ids", [])
    if len(ids) != len(texts):
        return ()
    by_id, media = dict(zip(ids, texts, strict=True)), set(data.get("media_ids", []))
    return tuple(
        (message_id, by_id.get(message_id, ""))
        for message_id in data.get("seen", [])  # in the order they arrived
        if message_id in by_id or message_id in media
    )


async def _apply_edit(
    callback: CallbackQuery,
    data: dict,
    *,
    status: ReportStatus,
    text: str,
    values: list[dict[str, str | int]],
    now: datetime,
) -> ReportRecord | None:
    existing = await get_report(data["report_id"])
    refusal = _change_refusal(existing, callback.from_user.id, now)
    if refusal:
        await _answer(callback, refusal, show_alert=True)
        return None
    report = await update_report(
        existing.id,
        text=text,
        values=values,
        status=status,
        attachments=list(data.get("attachments", [])),
        edited_at=now,
        parts=_draft_parts(data) if data.get("texts") else None,  # None: the old text stays
    )
    if report is None:
        await _answer(callback, _("This report was withdrawn."), show_alert=True)
    return report


async def redo(
    callback: CallbackQuery, callback_data: StepCb, state: FSMContext, actor: Actor | None = None
) -> None:
    data = await _flow_matches(callback, state, callback_data.flow)
    if data is None:
        return
    task = await _task_or_refuse(callback, actor, data.get("task_id", 0))
    if task is None:
        await state.clear()
        return
    changes: dict[str, Any] = {
        "texts": [],
        "text_ids": [],
        "media_ids": [],
        "values": [],
        "questions": [],
        "ignored": [],
        "mode": "edit" if data.get("report_id") else "redo",
    }
    if not data.get("report_id"):
        changes.update(attachments=[], text_message_id=None)
    data.update(changes)
    await state.update_data(**changes)
    await state.set_state(ReportFlow.collecting)
    await _answer(callback)
    if data["mode"] == "redo":
        text = _(
            "{task} · {status}\nSend the progress again (the draft was discarded); "
            "you may change the status below. Then press «Done»."
        ).format(task=task_heading(task), status=status_label(data.get("status")))
        await _show(
            callback, text, _collect_keyboard(data["flow"], data.get("status"), with_status=True)
        )
        return
    text, markup = _collect_intro(task, data)
    await _show(callback, text, markup)


async def cancel_button(callback: CallbackQuery, callback_data: StepCb, state: FSMContext) -> None:
    if await _flow_matches(callback, state, callback_data.flow) is None:
        return
    await state.clear()
    await _answer(callback)
    await _show(callback, _("Cancelled. Nothing was stored."))


async def cancel_command(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("Cancelled. Nothing was stored."))


async def nothing_to_cancel(message: Message) -> None:
    await message.answer(_("Nothing to cancel."))


async def use_buttons(message: Message) -> None:
    await message.answer(_("Please choose with the buttons above, or send /cancel."))


async def ignore(message: Message) -> None:
    """A duplicated delivery of a message that is already stored: documented silence."""


async def expired_step(callback: CallbackQuery) -> None:
    await _answer_stale(callback)


# -- after submission: edit, withdraw, edited messages -----------------------------------------


def _change_refusal(report: ReportRecord | None, user_id: int, now: datetime) -> str | None:
    if report is None or report.liaison_user_id != user_id:
        return _("This is not your report.")
    if report.withdrawn:
        return _("This report was withdrawn.")
    if not can_change(report.created_at, now):
        return _(
            "More than 24 hours have passed since this report was submitted: "
            "it can no longer be changed."
        )
    return None


async def manage(
    callback: CallbackQuery,
    callback_data: ManageCb,
    state: FSMContext,
    settings: Settings,
    actor: Actor | None = None,
) -> None:
    """✏️ Edit / ↩️ Withdraw under a receipt: the author only, for 24 hours."""
    report = await get_report(callback_data.report_id)
    now = datetime.now(UTC)
    refusal = _change_refusal(report, callback.from_user.id, now)
    if refusal is None and (not _can_report(actor) or actor.department_id != report.department_id):
        refusal = _refusal(actor)
    if refusal is not None:
        await _answer(callback, refusal, show_alert=True)
        if report is not None and report.liaison_user_id == callback.from_user.id:
            await _set_buttons(callback, None)
        return
    task = await task_for_department(report.task_id, report.department_id)
    if task is None:
        await _answer(
            callback, _("This task is not one of your department's tasks."), show_alert=True
        )
        return
    action = callback_data.action
    if action in (Manage.WITHDRAW, Manage.KEEP):  # ask first; «Keep it» puts the buttons back
        await _answer(callback)
        ask = action is Manage.WITHDRAW
        await _set_buttons(
            callback, _withdraw_keyboard(report.id) if ask else _manage_keyboard(report.id)
        )
    elif action is Manage.WITHDRAW_SURE:
        await _withdraw(callback, task, report, settings, now)
    else:
        await _reopen(callback, state, task, report)


async def _withdraw(
    callback: CallbackQuery,
    task: ReportTask,
    report: ReportRecord,
    settings: Settings,
    now: datetime,
) -> None:
    withdrawn = await withdraw_report(report.id, now)
    if withdrawn is None:
        await _answer(callback, _("This report was withdrawn."), show_alert=True)
        return
    await _answer(callback, _("Report withdrawn."))
    lines = [
        _("↩️ <b>Report withdrawn</b> ({time}); it is kept but no longer counts.").format(
            time=_local_time(now, settings)
        ),
        *_stored_body(task, withdrawn),
    ]
    await _show(callback, "\n".join(lines))


async def _reopen(
    callback: CallbackQuery, state: FSMContext, task: ReportTask, report: ReportRecord
) -> None:
    """The same conversation as a new report, prefilled with the stored one."""
    if (await state.get_data()).get("query") == callback.id:
        await _answer(callback)  # the same press delivered again
        return
    data = {
        "flow": _new_flow(),
        "query": callback.id,
        "department_id": report.department_id,
        "task_id": report.task_id,
        "status": report.status.value,
        "report_id": report.id,
        "old_text": report.text,
        "attachments": list(report.attachments),
        "mode": "edit",
    }
    await state.set_state(ReportFlow.collecting)
    await state.set_data(data)
    await _answer(callback)
    text, markup = _collect_intro(task, data)
    await _set_buttons(callback, None)
    if isinstance(callback.message, Message):
        await callback.message.answer(text, reply_markup=markup)
    elif callback.bot is not None:
        await callback.bot.send_message(callback.from_user.id, text, reply_markup=markup)


async def _set_buttons(callback: CallbackQuery, markup: InlineKeyboardMarkup | None) -> None:
    """Replace the buttons under the pressed message (None: remove them)."""
    if not isinstance(callback.message, Message):
        return
    if markup is None and not callback.message.reply_markup:
        return
    try:
        await callback.message.edit_reply_markup(reply_markup=markup)
    except TelegramBadRequest:
        log.debug("buttons unchanged")


async def edited_message(message: Message, state: FSMContext, actor: Actor | None = None) -> None:
    """An edited Telegram message that is part of the current draft or of a stored report.

    Part of the draft: the draft's text follows the edit (numbers already recognised are
    recognised again, with new questions or a new preview). Part of a stored report: that
    part's text is replaced and the other parts stay; the numbers are recognised again from the
    whole new text. One that now needs a question is not recorded but named (there is no
    conversation to ask in), unless the value stored before is one of its options: the
    liaison's earlier answer stands. A report stored before parts were kept has its message's
    text as its whole text.
    """
    data = await state.get_data()
    in_draft = (*data.get("text_ids", []), *data.get("media_ids", []))
    if await state.get_state() is not None and message.message_id in in_draft:
        await _edit_draft(message, state, data, actor)
        return
    found = await report_of_message(message.chat.id, message.message_id)
    if found is None or message.from_user is None:
        return  # not a report's message: nothing to do
    reply = await _edit_report(message, *found, actor)
    if reply:
        await message.reply(reply)


async def _edit_report(
    message: Message, report: ReportRecord, parts: Sequence[PartRecord], actor: Actor | None
) -> str | None:
    """Apply an edited message to its stored report; the reply (None: say nothing)."""
    now = datetime.now(UTC)
    refusal = _change_refusal(report, message.from_user.id, now)
    if refusal is None and (not _can_report(actor) or actor.department_id != report.department_id):
        refusal = _refusal(actor)
    if refusal is not None:  # told to the author only
        mine = report.liaison_user_id == message.from_user.id
        return _("Your edit was not recorded: {reason}").format(reason=refusal) if mine else None
    problem, part_text, text = _edited_text(message, parts)
    if problem is not None:
        return problem
    task = await task_for_department(report.task_id, report.department_id)
    if task is None:
        return _("This task is not one of your department's tasks.")
    recognition: Recognition = recognise_values(text, task.targets)
    if recognition.refused:
        reason = "\n".join(_refused_lines(recognition.refused))
        return _("Your edit was not recorded: {reason}").format(reason=reason)
    values, ambiguous = keep_answers(recognition, report.values)
    updated = await update_report(
        report.id,
        text=text,
        values=stored_values(values),
        edited_at=now,
        part=(message.message_id, part_text) if parts else None,
    )
    if updated is None:
        return _("Your edit was not recorded: {reason}").format(
            reason=_("This report was withdrawn.")
        )
    lines = [_("✏️ Your report was updated from your edited message.")]
    lines += _stored_body(task, updated, ambiguous)
    return "\n".join(lines)


def _edited_text(message: Message, parts: Sequence[PartRecord]) -> tuple[str | None, str, str]:
    """(why the edit cannot be taken, the edited part's text, the report's new whole text)."""
    part_text = _visible_text(message)
    texts = [part_text if part.message_id == message.message_id else part.text for part in parts]
    text = compose_text(texts or [part_text])
    # A caption may go (the photo stays a part without text) as long as the report keeps text.
    if not text or not (part_text or (parts and _attachment_of(message) is not None)):
        return _no_text(message), part_text, text
    if text_too_long(text):
        return _too_long(len(text)), part_text, text
    return None, part_text, text


def _too_long(length: int) -> str:
    return _(
        "This is too long: a report holds at most {limit} characters of text "
        "(this would make {length}). Please shorten it."
    ).format(limit=MAX_TEXT, length=length)


async def _edit_draft(message: Message, state: FSMContext, data: dict, actor: Actor | None) -> None:
    """A message of the draft was edited: its text in the draft follows."""
    if not _can_report(actor):
        await state.clear()
        await message.answer(_refusal(actor))
        return
    ids, texts = list(data.get("text_ids", [])), list(data.get("texts", []))
    media = list(data.get("media_ids", []))
    if len(ids) != len(texts):
        return  # a draft of an older version of the bot: it kept no message ids
    text = _visible_text(message)
    if message.message_id in ids:
        index = ids.index(message.message_id)
        if text:
            texts[index] = text
        elif _attachment_of(message) is not None:  # a caption removed: the photo stays
            del texts[index], ids[index]
            media.append(message.message_id)
        else:
            await message.reply(_no_text(message))
            return
    elif text:  # a caption added to a photo or document of the draft
        media.remove(message.message_id)
        by_id = {**dict(zip(ids, texts, strict=True)), message.message_id: text}
        ids = [message_id for message_id in data.get("seen", []) if message_id in by_id]
        texts = [by_id[message_id] for message_id in ids]  # in the order they arrived
    else:
        return  # a photo or document edited without text: nothing the draft holds changed
    if text_too_long(compose_text(texts)):
        await message.reply(_too_long(len(compose_text(texts))))
        return
    changes: dict[str, Any] = {"texts": texts, "text_ids": ids, "media_ids": media}
    if data.get("text_message_id") not in ids:
        changes["text_message_id"] = ids[0] if ids else None
    data.update(changes)
    await state.update_data(**changes)
    await message.reply(_("✏️ Your draft was updated from your edited message."))
    if await state.get_state() in (ReportFlow.resolving.state, ReportFlow.confirming.state):
        await state.set_state(ReportFlow.collecting)  # until _finish has checked the new text
        await _finish(message, state, actor, data)


async def prompt_for(task_id: int) -> tuple[str, InlineKeyboardMarkup] | None:
    """A prompt's text and keyboard for an active task, in the current locale (for jobs)."""
    task = await get_report_task(task_id)
    return None if task is None else (render_prompt(task), prompt_keyboard(task.id))


# -- the router ---------------------------------------------------------------------------------


def build_router() -> Router:
    router = Router(name="reports")
    # A report is a person's: a message without a sender (a channel's) has no one to ask and no
    # conversation state, and goes on to the other routers.
    router.message.filter(F.from_user)
    router.edited_message.filter(F.from_user)
    # One person's updates are handled one at a time by the dispatcher's events isolation
    # (bot.app: in memory, or a Redis lock across processes): an album's photos arrive at once
    # and each adds to the draft with a read-modify-write of the conversation data.
    private = F.chat.type == "private"
    in_group = F.chat.type != "private"
    other_steps = StateFilter(
        ReportFlow.choosing_task,
        ReportFlow.choosing_status,
        ReportFlow.resolving,
        ReportFlow.confirming,
    )
    # Messages: commands first, then replies to prompts, then what the current step expects.
    router.message.register(start_report, Command("report"), private)
    router.message.register(report_in_group, Command("report"), in_group)
    router.message.register(cancel_command, Command("cancel"), StateFilter(ReportFlow))
    router.message.register(nothing_to_cancel, Command("cancel"), StateFilter(None), private)
    router.message.register(done_command, Command("done"), StateFilter(ReportFlow.collecting))
    router.message.register(prompt_reply, PromptReply(), private)
    router.message.register(prompt_reply_in_group, PromptReply(), in_group)
    router.message.register(collect, StateFilter(ReportFlow.collecting), private, _not_command)
    router.message.register(use_buttons, other_steps, private, _not_command)
    # A duplicated delivery of an already stored report message: silence, not the fallback's hint.
    router.message.register(ignore, StateFilter(None), private, _not_command, _already_reported)
    router.edited_message.register(edited_message, private)

    router.callback_query.register(prompt_status, PromptCb.filter())
    router.callback_query.register(
        pick_task, TaskCb.filter(), StateFilter(ReportFlow.choosing_task)
    )
    router.callback_query.register(
        turn_page, PageCb.filter(), StateFilter(ReportFlow.choosing_task)
    )
    router.callback_query.register(
        choose_status,
        StatusCb.filter(),
        StateFilter(ReportFlow.choosing_status, ReportFlow.collecting),
    )
    router.callback_query.register(
        done_button, StepCb.filter(F.action == Step.DONE), StateFilter(ReportFlow.collecting)
    )
    router.callback_query.register(
        answer_question, ChoiceCb.filter(), StateFilter(ReportFlow.resolving)
    )
    router.callback_query.register(
        confirm, StepCb.filter(F.action == Step.CONFIRM), StateFilter(ReportFlow.confirming)
    )
    router.callback_query.register(
        redo, StepCb.filter(F.action == Step.REDO), StateFilter(ReportFlow.confirming)
    )
    router.callback_query.register(
        cancel_button, StepCb.filter(F.action == Step.CANCEL), StateFilter(ReportFlow)
    )
    router.callback_query.register(manage, ManageCb.filter())
    # Buttons of a finished or abandoned conversation.
    router.callback_query.register(expired_step, F.data.regexp(r"^r[2-6]:"))
    return router
