"""Read-only queries behind /tasks, /task, /dept and /overdue (plain dataclasses out).

Every function runs a fixed number of queries whatever the plan's size (no N+1). Only active
tasks count (a task withdrawn by a revision is history), and only reports that were not
withdrawn. "Latest" means the report with the highest id of its (task, department): ids grow
with time, and an edit changes a report in place.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from tortoise.expressions import Subquery
from tortoise.functions import Max
from tortoise.queryset import QuerySet

from bot.plan_model import Comparator, DepartmentKind, Role
from bot.plan_revision import display_code
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Assignment, Department, Liaison, Report, Target, Task
from storage.summary import reported_values


@dataclass(frozen=True, slots=True)
class DepartmentRow:
    id: int
    name: str
    aliases: tuple[str, ...]
    kind: DepartmentKind


@dataclass(frozen=True, slots=True)
class TaskCode:
    id: int
    plan_id: int
    code: str
    title: str
    withdrawn: bool = False  # withdrawn by a plan revision: found by its exact code only


@dataclass(frozen=True, slots=True)
class UnitStatus:
    """One department on one task, with its latest report's status (None: no report yet)."""

    department_id: int
    department_name: str
    role: Role
    status: ReportStatus | None
    reported_at: datetime | None


@dataclass(frozen=True, slots=True)
class BoardTask:
    """An active task with all its units, in document order."""

    id: int
    plan_id: int
    code: str
    title: str
    deadline: date
    units: tuple[UnitStatus, ...]


@dataclass(frozen=True, slots=True)
class DepartmentCard:
    id: int
    name: str
    kind: DepartmentKind
    aliases: tuple[str, ...]
    liaisons: int  # active liaisons bound to it
    lead: int  # active tasks it leads
    support: int  # active tasks it supports


@dataclass(frozen=True, slots=True)
class ReportBrief:
    status: ReportStatus
    liaison_name: str
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CardUnit:
    department_id: int
    department_name: str
    role: Role
    latest: ReportBrief | None


@dataclass(frozen=True, slots=True)
class TargetValue:
    value: Decimal
    reported_at: datetime
    department_id: int


@dataclass(frozen=True, slots=True)
class CardTarget:
    id: int
    text: str
    metric: str
    value: Decimal
    unit: str
    comparator: Comparator
    deadline: date | None
    baseline: Decimal | None
    latest: TargetValue | None  # the latest value reported toward it


@dataclass(frozen=True, slots=True)
class TaskCardData:
    id: int
    plan_id: int
    code: str
    section: str
    title: str
    text: str
    deadline: date
    units: tuple[CardUnit, ...]
    targets: tuple[CardTarget, ...]
    withdrawn_at: datetime | None = None  # a revision dropped it; its reports stay readable


async def all_departments() -> list[DepartmentRow]:
    """Every department, by id (a few dozen rows: the fuzzy matching happens in bot.lookup)."""
    rows = await Department.all().order_by("id").values("id", "name", "aliases", "kind")
    return [
        DepartmentRow(
            row["id"], row["name"], tuple(row["aliases"] or ()), DepartmentKind(row["kind"])
        )
        for row in rows
    ]


async def task_codes() -> list[TaskCode]:
    """Codes and titles of every task, active ones first (for resolving "2.1.3", "1.3" or a
    title); a withdrawn task's code as the document wrote it."""
    rows = await (
        Task.all()
        .order_by("plan_id", "position", "id")
        .values("id", "plan_id", "code", "title", "withdrawn_at")
    )
    return sorted(
        (
            TaskCode(
                row["id"],
                row["plan_id"],
                display_code(row["code"]),
                row["title"],
                row["withdrawn_at"] is not None,
            )
            for row in rows
        ),
        key=lambda code: code.withdrawn,
    )


async def department_card(department_id: int) -> DepartmentCard | None:
    """A department with its liaison count and its active lead / support task counts."""
    department = await Department.get_or_none(id=department_id)
    if department is None:
        return None
    liaisons = await Liaison.filter(
        department_id=department_id, active=True, role=LiaisonRole.LIAISON
    ).count()
    roles = await Assignment.filter(
        department_id=department_id, task__withdrawn_at__isnull=True
    ).values_list("role", flat=True)
    return DepartmentCard(
        id=department.id,
        name=department.name,
        kind=DepartmentKind(department.kind),
        aliases=tuple(department.aliases or ()),
        liaisons=liaisons,
        lead=sum(1 for role in roles if Role(role) is Role.LEAD),
        support=sum(1 for role in roles if Role(role) is Role.SUPPORT),
    )


async def task_board(
    *, department_id: int | None = None, deadline_before: date | None = None
) -> list[BoardTask]:
    """Active tasks with every unit's latest status, in document order; two queries.

    `department_id`: only the tasks that department is on (still with all their units, so that
    the lead's status is known). `deadline_before`: only tasks due before that day.
    """
    tasks = Task.filter(withdrawn_at__isnull=True)
    if deadline_before is not None:
        tasks = tasks.filter(deadline__lt=deadline_before)
    if department_id is not None:
        tasks = tasks.filter(
            id__in=Subquery(Assignment.filter(department_id=department_id).values("task_id"))
        )
    task_ids = Subquery(tasks.values("id"))
    rows = await (
        Assignment.filter(task_id__in=task_ids)
        .order_by("task__plan_id", "task__position", "position")
        .values(
            "task_id",
            "task__plan_id",
            "task__code",
            "task__title",
            "task__deadline",
            "department_id",
            "department__name",
            "role",
        )
    )
    latest = {
        (row["task_id"], row["department_id"]): row
        for row in await latest_reports(Report.filter(task_id__in=task_ids)).values(
            "task_id", "department_id", "status", "created_at"
        )
    }
    heads: dict[int, dict] = {}
    units: dict[int, list[UnitStatus]] = defaultdict(list)
    for row in rows:
        heads.setdefault(row["task_id"], row)
        report = latest.get((row["task_id"], row["department_id"]))
        units[row["task_id"]].append(
            UnitStatus(
                department_id=row["department_id"],
                department_name=row["department__name"],
                role=Role(row["role"]),
                status=ReportStatus(report["status"]) if report else None,
                reported_at=report["created_at"] if report else None,
            )
        )
    return [
        BoardTask(
            id=task_id,
            plan_id=head["task__plan_id"],
            code=head["task__code"],
            title=head["task__title"],
            deadline=head["task__deadline"],
            units=tuple(units[task_id]),
        )
        for task_id, head in heads.items()
    ]


async def task_card(task_id: int) -> TaskCardData | None:
    """One task in full: units with their latest report, targets with their latest reported
    value; four queries. A withdrawn task comes with `withdrawn_at`: its reports are history."""
    task = await Task.get_or_none(id=task_id)
    if task is None:
        return None
    assignments = await (
        Assignment.filter(task_id=task_id)
        .order_by("position")
        .values("department_id", "department__name", "role")
    )
    targets = await Target.filter(task_id=task_id, withdrawn_at__isnull=True).order_by("position")
    # A task collects a report per unit per cycle: a few hundred rows at most over the plan.
    reports = await (
        Report.filter(task_id=task_id, withdrawn_at__isnull=True)
        .order_by("-id")
        .values("department_id", "status", "text", "values", "created_at", "liaison__full_name")
    )
    latest_by_unit: dict[int, ReportBrief] = {}
    latest_values: dict[int, TargetValue] = {}
    for report in reports:  # newest first: the first seen wins
        latest_by_unit.setdefault(
            report["department_id"],
            ReportBrief(
                status=ReportStatus(report["status"]),
                liaison_name=report["liaison__full_name"] or "",
                text=report["text"] or "",
                created_at=report["created_at"],
            ),
        )
        for target_id, value in reported_values(report["values"]):
            latest_values.setdefault(
                target_id, TargetValue(value, report["created_at"], report["department_id"])
            )
    return TaskCardData(
        id=task.id,
        plan_id=task.plan_id,
        code=display_code(task.code),
        section=task.section,
        title=task.title,
        text=task.text,
        deadline=task.deadline,
        units=tuple(
            CardUnit(
                department_id=row["department_id"],
                department_name=row["department__name"],
                role=Role(row["role"]),
                latest=latest_by_unit.get(row["department_id"]),
            )
            for row in assignments
        ),
        targets=tuple(
            CardTarget(
                id=target.id,
                text=target.text,
                metric=target.metric,
                value=target.value,
                unit=target.unit,
                comparator=Comparator(target.comparator),
                deadline=target.deadline,
                baseline=target.baseline,
                latest=latest_values.get(target.id),
            )
            for target in targets
        ),
        withdrawn_at=task.withdrawn_at,
    )


def latest_reports(reports: QuerySet[Report]) -> QuerySet[Report]:
    """The latest report of each (task, department) among `reports`: the one with the highest
    id among those not withdrawn (ids grow with time; an edit changes a report in place).

    The one definition of "latest". The weekly summary reads the same in one grouped SQL pass
    (storage.summary._LATEST_SQL); tests/test_summary_sql.py checks the two agree."""
    newest = (
        reports.filter(withdrawn_at__isnull=True)
        .group_by("task_id", "department_id")
        .annotate(newest_id=Max("id"))
        .values("newest_id")
    )
    return Report.filter(id__in=Subquery(newest))
