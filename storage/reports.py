"""Progress reports (进度报送): the queries the report flow, prompts and lookups need.

Plain dataclasses out, nothing of Telegram. Every function runs a fixed number of queries.
Only active tasks can be reported on; withdrawn reports are kept (with `withdrawn_at`) but no
longer count: `task_reports` leaves them out unless asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.plan_model import Comparator, Role
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Assignment, Liaison, Report, ReportPart, Target, Task
from storage.sql import Sql


@dataclass(frozen=True, slots=True)
class TaskChoice:
    """One line of the task picker."""

    task_id: int
    code: str
    title: str
    role: Role
    deadline: date


@dataclass(frozen=True, slots=True)
class TargetInfo:
    id: int
    metric: str
    value: Decimal
    unit: str
    comparator: Comparator
    deadline: date | None


@dataclass(frozen=True, slots=True)
class ReportTask:
    """A task as the report flow and the prompts show it.

    `role` is the role of the department it was loaded for (None when loaded without one).
    """

    id: int
    code: str
    title: str
    deadline: date
    targets: tuple[TargetInfo, ...]
    lead_departments: tuple[str, ...]
    role: Role | None = None
    rule: str | None = None  # the task's reporting rule, else its plan's (None: the default)

    def target(self, target_id: int) -> TargetInfo | None:
        return next((target for target in self.targets if target.id == target_id), None)


@dataclass(frozen=True, slots=True)
class NewReport:
    task_id: int
    department_id: int
    liaison_id: int
    status: ReportStatus
    text: str
    values: list[dict[str, str | int]]  # [{"target_id": 3, "value": "6200"}]
    attachments: list[dict[str, str]]  # [{"kind": "photo", "file_id": "…"}]
    chat_id: int
    message_id: int | None
    cycle_key: str | None
    created_at: datetime | None = None  # the moment the cycle key was named for (None: now)
    # The messages the text came from, in order: (message id, that message's text).
    parts: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One message a report's text came from (storage.models.ReportPart)."""

    message_id: int
    position: int
    text: str


@dataclass(frozen=True, slots=True)
class ReportRecord:
    id: int
    task_id: int
    department_id: int
    department_name: str
    liaison_id: int
    liaison_name: str
    liaison_user_id: int
    status: ReportStatus
    text: str
    values: tuple[dict, ...]
    attachments: tuple[dict, ...]
    chat_id: int
    message_id: int | None
    cycle_key: str | None
    created_at: datetime
    edited_at: datetime | None
    withdrawn_at: datetime | None
    role: Role | None = None  # the department's role on the task (task_reports only)

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_at is not None


@dataclass(frozen=True, slots=True)
class Recipient:
    """A person to notify: their Telegram id and chosen language (None: the default)."""

    liaison_id: int
    telegram_user_id: int
    full_name: str
    locale: str | None
    department_name: str
    language_code: str | None = None  # Telegram's, as last seen


def _lead_first(choice: TaskChoice) -> bool:
    return choice.role is not Role.LEAD


async def department_tasks(department_id: int) -> list[TaskChoice]:
    """The department's active tasks for the picker: lead ones first, then in document order."""
    rows = (
        await Assignment.filter(department_id=department_id, task__withdrawn_at__isnull=True)
        .order_by("task__plan_id", "task__position")
        .values("task_id", "task__code", "task__title", "task__deadline", "role")
    )
    choices = [
        TaskChoice(
            row["task_id"],
            row["task__code"],
            row["task__title"],
            Role(row["role"]),
            row["task__deadline"],
        )
        for row in rows
    ]
    return sorted(choices, key=_lead_first)  # stable: document order within each role


# The check behind every report button, with the task's targets: one plain-SQL query
# (storage.sql), as the ORM's query building cost more than the database's work, three times
# per report. One row per (unit, target): a task has a few of each.
_REPORT_TASK_SQL = """
    SELECT a.department_id, a.role, d.name, t.code, t.title, t.deadline, t.cycle, p.default_cycle,
           g.id, g.metric, g."value", g.unit, g.comparator, g.deadline
    FROM assignments a
    JOIN tasks t ON t.id = a.task_id
    JOIN plans p ON p.id = t.plan_id
    JOIN departments d ON d.id = a.department_id
    LEFT JOIN targets g ON g.task_id = t.id AND g.withdrawn_at IS NULL
    WHERE a.task_id = ? AND t.withdrawn_at IS NULL
    ORDER BY a."position", g."position"
"""


async def _report_task(task_id: int, department_id: int | None) -> ReportTask | None:
    """An active task with its targets and lead units, in one query; with `department_id`,
    None unless that department is one of the task's units (and `role` says which)."""
    rows = await Sql(Task._meta.db).fetch(_REPORT_TASK_SQL, [task_id])
    if not rows:
        return None  # no such task, withdrawn, or (never in an imported plan) without units
    # Each unit in document order, with its role and name (the same on each of its rows).
    units = {row[0]: (Role(row[1]), str(row[2])) for row in rows}
    role = None
    if department_id is not None:
        if department_id not in units:
            return None
        role = units[department_id][0]
    value, deadline = (
        Target._meta.fields_map[name].to_python_value for name in ("value", "deadline")
    )
    first_unit = rows[0][0]
    targets = tuple(
        TargetInfo(target_id, metric, value(amount), unit, Comparator(comparator), deadline(due))
        for (unit_id, *_task, target_id, metric, amount, unit, comparator, due) in rows
        if unit_id == first_unit and target_id is not None
    )
    _department, _role, _name, code, title, due, task_rule, plan_rule = rows[0][:8]
    return ReportTask(
        id=task_id,
        code=code,
        title=title,
        deadline=Task._meta.fields_map["deadline"].to_python_value(due),
        targets=targets,
        lead_departments=tuple(name for unit, name in units.values() if unit is Role.LEAD),
        role=role,
        rule=task_rule or plan_rule,
    )


async def get_report_task(task_id: int) -> ReportTask | None:
    """An active task with its targets (for prompts), or None."""
    return await _report_task(task_id, None)


async def task_for_department(task_id: int, department_id: int) -> ReportTask | None:
    """The task if it is active and the department is one of its units, else None.

    This is the check behind every button that names a task: a forged or stale id, or a task
    of another department, gives None.
    """
    return await _report_task(task_id, department_id)


async def create_report(
    new: NewReport, *, then: Callable[[int], Awaitable[object]] | None = None
) -> ReportRecord | None:
    """Store a report and its parts; None when (chat_id, message_id) of the report or of one of
    its parts is already stored (a duplicated update). `then(report_id)` runs in the same
    transaction (the notifications the report causes: both are stored, or neither)."""
    try:
        async with in_transaction():
            report = await _create_report(new)
            if then is not None:
                await then(report.id)
    except IntegrityError:
        return None
    return await get_report(report.id)


async def _create_report(new: NewReport) -> Report:
    report = await Report.create(
        task_id=new.task_id,
        department_id=new.department_id,
        liaison_id=new.liaison_id,
        status=new.status,
        text=new.text,
        values=list(new.values),
        attachments=list(new.attachments),
        chat_id=new.chat_id,
        message_id=new.message_id,
        cycle_key=new.cycle_key,
        created_at=new.created_at,
    )
    await _add_parts(report.id, new.chat_id, new.parts)
    return report


async def _add_parts(report_id: int, chat_id: int, parts: Sequence[tuple[int, str]]) -> None:
    if parts:
        await ReportPart.bulk_create(
            [
                ReportPart(
                    report_id=report_id, chat_id=chat_id, message_id=message_id,
                    position=index, text=text,
                )
                for index, (message_id, text) in enumerate(parts)
            ]
        )  # fmt: skip


# One report with its department and liaison, read after every store and on every edit or
# withdrawal: plain SQL (storage.sql), as the ORM's two-join query cost more than the database.
_REPORT_SQL = """
    SELECT r.id, r.task_id, r.department_id, d.name, r.liaison_id, l.full_name,
           l.telegram_user_id, r.status, r.text, r."values", r.attachments, r.chat_id,
           r.message_id, r.cycle_key, r.created_at, r.edited_at, r.withdrawn_at
    FROM reports r
    JOIN departments d ON d.id = r.department_id
    JOIN liaisons l ON l.id = r.liaison_id
    WHERE {condition}
"""
_REPORT_BY_ID = _REPORT_SQL.format(condition="r.id = ?")
_REPORT_BY_MESSAGE = _REPORT_SQL.format(condition="r.chat_id = ? AND r.message_id = ?")


def _row_record(row: Sequence[Any], role: Role | None = None) -> ReportRecord:
    """A ReportRecord from a row of `_REPORT_SQL`, converted as the ORM converts the fields."""
    (report_id, task_id, department_id, department_name, liaison_id, liaison_name, user_id,
     status, text, values_json, attachments_json, chat_id, message_id, cycle_key, created_at,
     edited_at, withdrawn_at) = row  # fmt: skip
    fields = Report._meta.fields_map
    json, moment = fields["values"].to_python_value, fields["created_at"].to_python_value
    return ReportRecord(
        id=report_id,
        task_id=task_id,
        department_id=department_id,
        department_name=department_name,
        liaison_id=liaison_id,
        liaison_name=liaison_name,
        liaison_user_id=user_id,
        status=ReportStatus(status),
        text=text,
        values=tuple(json(values_json)),
        attachments=tuple(json(attachments_json)),
        chat_id=chat_id,
        message_id=message_id,
        cycle_key=cycle_key,
        created_at=moment(created_at),
        edited_at=moment(edited_at),
        withdrawn_at=moment(withdrawn_at),
        role=role,
    )


async def _read_report(query: str, values: list[int]) -> ReportRecord | None:
    rows = await Sql(Report._meta.db).fetch(query, values)
    return _row_record(rows[0]) if rows else None


async def get_report(report_id: int) -> ReportRecord | None:
    return await _read_report(_REPORT_BY_ID, [report_id])


async def find_report_by_message(chat_id: int, message_id: int) -> ReportRecord | None:
    """The report whose text came from this Telegram message (for edited messages)."""
    return await _read_report(_REPORT_BY_MESSAGE, [chat_id, message_id])


async def report_exists(chat_id: int, message_id: int) -> bool:
    """Whether this Telegram message is already (part of) a report (a duplicated update): on
    every reply."""
    query = (
        "SELECT 1 FROM reports WHERE chat_id = ? AND message_id = ?"
        " UNION ALL SELECT 1 FROM report_parts WHERE chat_id = ? AND message_id = ?"
    )
    return bool(await Sql(Report._meta.db).fetch(query, [chat_id, message_id] * 2))


async def update_report(
    report_id: int,
    *,
    text: str,
    values: list[dict[str, str | int]],
    edited_at: datetime,
    status: ReportStatus | None = None,
    attachments: list[dict[str, str]] | None = None,
    part: tuple[int, str] | None = None,
    parts: Sequence[tuple[int, str]] | None = None,
) -> ReportRecord | None:
    """Replace a live report's text and values (and status, attachments when given).

    `part` (message id, text): that one part's new text (an edited message). `parts`: all of
    them anew (a report edited with new messages). None when the report does not exist or was
    withdrawn meanwhile.
    """
    fields: dict[str, object] = {"text": text, "values": list(values), "edited_at": edited_at}
    if status is not None:
        fields["status"] = status
    if attachments is not None:
        fields["attachments"] = list(attachments)
    async with in_transaction():
        updated = await Report.filter(id=report_id, withdrawn_at__isnull=True).update(**fields)
        if updated and part is not None:
            message_id, part_text = part
            await ReportPart.filter(report_id=report_id, message_id=message_id).update(
                text=part_text
            )
        if updated and parts is not None:
            chat_id = await Report.filter(id=report_id).values_list("chat_id", flat=True)
            await ReportPart.filter(report_id=report_id).delete()
            await _add_parts(report_id, chat_id[0], parts)
    return await get_report(report_id) if updated else None


async def report_of_message(
    chat_id: int, message_id: int
) -> tuple[ReportRecord, tuple[PartRecord, ...]] | None:
    """The report a Telegram message is part of, with all its parts in order (for edited
    messages). A report stored before parts were kept has none: its message is its whole text."""
    rows = await ReportPart.filter(chat_id=chat_id, message_id=message_id).values_list(
        "report_id", flat=True
    )
    report = (
        await get_report(rows[0]) if rows else await find_report_by_message(chat_id, message_id)
    )
    if report is None:
        return None
    parts = (
        await ReportPart.filter(report_id=report.id)
        .order_by("position")
        .values_list("message_id", "position", "text")
    )
    return report, tuple(PartRecord(*row) for row in parts)


async def withdraw_report(report_id: int, when: datetime) -> ReportRecord | None:
    """Mark a report withdrawn (kept, no longer counted); None if missing or already withdrawn."""
    updated = await Report.filter(id=report_id, withdrawn_at__isnull=True).update(withdrawn_at=when)
    return await get_report(report_id) if updated else None


async def task_reports(
    task_id: int, *, include_withdrawn: bool = False, limit: int | None = None
) -> list[ReportRecord]:
    """A task's reports, newest first, with each department's role on the task."""
    condition = "r.task_id = ?" if include_withdrawn else "r.task_id = ? AND r.withdrawn_at IS NULL"
    query = _REPORT_SQL.format(condition=condition) + " ORDER BY r.created_at DESC, r.id DESC"
    values = [task_id]
    if limit is not None:
        query += " LIMIT ?"
        values.append(limit)
    rows = await Sql(Report._meta.db).fetch(query, values)
    roles = dict(await Assignment.filter(task_id=task_id).values_list("department_id", "role"))
    # Column 2 is the report's department_id.
    return [_row_record(row, _role(roles.get(row[2]))) for row in rows]


def _role(value: str | None) -> Role | None:
    return Role(value) if value else None


# Read when a support unit reports (whom to tell) and when a report is stored (its cycle):
# plain SQL (storage.sql) like the report path's other reads.
_LEAD_LIAISONS_SQL = """
    SELECT DISTINCT l.id, l.telegram_user_id, l.full_name, l.locale, d.name, l.language_code
    FROM liaisons l
    JOIN departments d ON d.id = l.department_id
    JOIN assignments a ON a.department_id = l.department_id
    WHERE a.task_id = ? AND a.role = ? AND l.active = ? AND l.role = ?
    ORDER BY l.id
"""

_ANSWERED_SQL = """
    SELECT DISTINCT cycle_key FROM reports
    WHERE task_id = ? AND department_id = ? AND withdrawn_at IS NULL AND cycle_key IS NOT NULL
"""


async def lead_liaisons(task_id: int) -> list[Recipient]:
    """Active liaisons of the task's lead department(s)."""
    rows = await Sql(Liaison._meta.db).fetch(
        _LEAD_LIAISONS_SQL, [task_id, Role.LEAD.value, True, LiaisonRole.LIAISON.value]
    )
    return [Recipient(*row) for row in rows]


async def answered_cycles(task_id: int, department_id: int) -> set[str]:
    """The cycle keys the department has already answered on the task (live reports)."""
    rows = await Sql(Report._meta.db).fetch(_ANSWERED_SQL, [task_id, department_id])
    return {str(key) for (key,) in rows}
