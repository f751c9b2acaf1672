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
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot.plan_model import Comparator, Role
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Assignment, Liaison, Report, ReportPart, Target


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


async def _report_task(task_id: int, department_id: int | None) -> ReportTask | None:
    """An active task with its targets and lead units, in two queries; with `department_id`,
    None unless that department is one of the task's units (and `role` says which)."""
    units = (
        await Assignment.filter(task_id=task_id, task__withdrawn_at__isnull=True)
        .order_by("position")
        .values(
            "department_id",
            "role",
            "department__name",
            "task__code",
            "task__title",
            "task__deadline",
            "task__cycle",
            "task__plan__default_cycle",
        )
    )
    if not units:
        return None  # no such task, withdrawn, or (never in an imported plan) without units
    role = None
    if department_id is not None:
        role = next((Role(u["role"]) for u in units if u["department_id"] == department_id), None)
        if role is None:
            return None
    targets = (
        await Target.filter(task_id=task_id, withdrawn_at__isnull=True)
        .order_by("position")
        .values("id", "metric", "value", "unit", "comparator", "deadline")
    )
    first = units[0]
    return ReportTask(
        id=task_id,
        code=first["task__code"],
        title=first["task__title"],
        deadline=first["task__deadline"],
        targets=tuple(
            TargetInfo(
                target["id"],
                target["metric"],
                target["value"],
                target["unit"],
                Comparator(target["comparator"]),
                target["deadline"],
            )
            for target in targets
        ),
        lead_departments=tuple(
            str(unit["department__name"]) for unit in units if Role(unit["role"]) is Role.LEAD
        ),
        role=role,
        rule=first["task__cycle"] or first["task__plan__default_cycle"],
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


# What a ReportRecord holds, read with the report's department and liaison in one query.
_REPORT_FIELDS = (
    "id",
    "task_id",
    "department_id",
    "department__name",
    "liaison_id",
    "liaison__full_name",
    "liaison__telegram_user_id",
    "status",
    "text",
    "values",
    "attachments",
    "chat_id",
    "message_id",
    "cycle_key",
    "created_at",
    "edited_at",
    "withdrawn_at",
)


def _record(row: dict[str, Any], role: Role | None = None) -> ReportRecord:
    """A ReportRecord from a `.values(*_REPORT_FIELDS)` row."""
    return ReportRecord(
        id=row["id"],
        task_id=row["task_id"],
        department_id=row["department_id"],
        department_name=row["department__name"],
        liaison_id=row["liaison_id"],
        liaison_name=row["liaison__full_name"],
        liaison_user_id=row["liaison__telegram_user_id"],
        status=ReportStatus(row["status"]),
        text=row["text"],
        values=tuple(row["values"]),
        attachments=tuple(row["attachments"]),
        chat_id=row["chat_id"],
        message_id=row["message_id"],
        cycle_key=row["cycle_key"],
        created_at=row["created_at"],
        edited_at=row["edited_at"],
        withdrawn_at=row["withdrawn_at"],
        role=role,
    )


async def _read_report(reports: QuerySet[Report]) -> ReportRecord | None:
    rows = await reports.limit(1).values(*_REPORT_FIELDS)
    return _record(rows[0]) if rows else None


async def get_report(report_id: int) -> ReportRecord | None:
    return await _read_report(Report.filter(id=report_id))


async def find_report_by_message(chat_id: int, message_id: int) -> ReportRecord | None:
    """The report whose text came from this Telegram message (for edited messages)."""
    return await _read_report(Report.filter(chat_id=chat_id, message_id=message_id))


async def report_exists(chat_id: int, message_id: int) -> bool:
    """Whether this Telegram message is already (part of) a report (a duplicated update): on
    every reply."""
    return (
        await Report.filter(chat_id=chat_id, message_id=message_id).exists()
        or await ReportPart.filter(chat_id=chat_id, message_id=message_id).exists()
    )


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
    reports = Report.filter(task_id=task_id)
    if not include_withdrawn:
        reports = reports.filter(withdrawn_at__isnull=True)
    reports = reports.order_by("-created_at", "-id")
    if limit is not None:
        reports = reports.limit(limit)
    rows = await reports.values(*_REPORT_FIELDS)
    roles = dict(await Assignment.filter(task_id=task_id).values_list("department_id", "role"))
    return [_record(row, _role(roles.get(row["department_id"]))) for row in rows]


def _role(value: str | None) -> Role | None:
    return Role(value) if value else None


async def lead_liaisons(task_id: int) -> list[Recipient]:
    """Active liaisons of the task's lead department(s)."""
    rows = (
        await Liaison.filter(
            department__assignments__task_id=task_id,
            department__assignments__role=Role.LEAD,
            active=True,
            role=LiaisonRole.LIAISON,
        )
        .distinct()
        .order_by("id")
        .values(
            "id", "telegram_user_id", "full_name", "locale", "department__name", "language_code"
        )
    )
    return [
        Recipient(
            liaison_id=row["id"],
            telegram_user_id=row["telegram_user_id"],
            full_name=row["full_name"],
            locale=row["locale"],
            department_name=row["department__name"],
            language_code=row["language_code"],
        )
        for row in rows
    ]


async def answered_cycles(task_id: int, department_id: int) -> set[str]:
    """The cycle keys the department has already answered on the task (live reports)."""
    keys = (
        await Report.filter(
            task_id=task_id,
            department_id=department_id,
            withdrawn_at__isnull=True,
            cycle_key__isnull=False,
        )
        .distinct()
        .values_list("cycle_key", flat=True)
    )
    return {str(key) for key in keys}
