"""What the weekly summary (周报) reads: one plan's tasks, units, targets, liaisons and reports.

`load_summary_data` runs a fixed number of queries (eight) whatever the plan's size: no query
per task, department or report. Plain dataclasses out; the traffic lights, pace and changes are
computed in `bot.summary`.

As elsewhere (storage.lookup), the "latest" report of a (task, department) is the one with the
highest id among those that were not withdrawn: ids grow with time and an edit changes a report
in place. Reports made after `now` are ignored, so a summary for a past date reads as it would
have then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from tortoise.expressions import Subquery
from tortoise.functions import Max
from tortoise.queryset import QuerySet

from bot.plan_model import Comparator, DepartmentKind, Role
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Assignment, Liaison, Plan, Report, Target


@dataclass(frozen=True, slots=True)
class PlanRow:
    id: int
    title: str
    doc_number: str | None
    issued_on: date | None
    horizon: date
    default_cycle: str | None  # a Cycle value or an RRULE; None: the bot's default (monthly)
    created_at: datetime  # when it was first imported: no one can be silent before that


@dataclass(frozen=True, slots=True)
class AssignmentRow:
    """One department on one active task, in document order."""

    task_id: int
    code: str
    title: str
    deadline: date
    cycle: str | None  # the task's own reporting cycle, when the document states one
    department_id: int
    department_name: str
    department_kind: DepartmentKind
    role: Role


@dataclass(frozen=True, slots=True)
class TargetRow:
    """A plan goal (task_id None) or a target of an active task, in document order."""

    id: int
    task_id: int | None
    metric: str
    value: Decimal
    unit: str
    comparator: Comparator
    deadline: date | None
    baseline: Decimal | None


@dataclass(frozen=True, slots=True)
class LiaisonRow:
    """An active liaison of a department; a department's lead liaison comes first."""

    id: int
    department_id: int
    full_name: str
    is_lead: bool


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: int
    task_id: int
    department_id: int
    liaison_id: int
    liaison_name: str
    status: ReportStatus
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ValueRow:
    """The latest value reported toward a target."""

    target_id: int
    value: Decimal
    report_id: int
    department_id: int


@dataclass(frozen=True, slots=True)
class SummaryData:
    plan: PlanRow
    now: datetime
    since: datetime  # start of the week under review (usually now - 7 days)
    assignments: tuple[AssignmentRow, ...]
    targets: tuple[TargetRow, ...]
    liaisons: tuple[LiaisonRow, ...]
    latest: tuple[ReportRow, ...]  # per (task, department), made up to `now`
    latest_before: tuple[ReportRow, ...]  # per (task, department), made before `since`
    week_reports: tuple[ReportRow, ...]  # made in [since, now], oldest first
    values: tuple[ValueRow, ...]  # per target, up to `now`
    values_before: tuple[ValueRow, ...]  # per target, before `since`


_REPORT_COLUMNS = (
    "id",
    "task_id",
    "department_id",
    "liaison_id",
    "liaison__full_name",
    "status",
    "created_at",
)


async def load_summary_data(
    now: datetime, since: datetime, *, plan_id: int | None = None
) -> SummaryData | None:
    """Everything the weekly summary of one plan needs, in eight queries.

    `plan_id`: None for the most recently imported plan. None when there is no such plan.
    """
    if now.tzinfo is None or since.tzinfo is None:
        raise ValueError("load_summary_data needs aware datetimes")
    plans = Plan.all() if plan_id is None else Plan.filter(id=plan_id)
    plan = await plans.order_by("-created_at", "-id").first()
    if plan is None:
        return None

    assignment_rows = await (
        Assignment.filter(task__plan_id=plan.id, task__withdrawn_at__isnull=True)
        .order_by("task__position", "position")
        .values(
            "task_id",
            "task__code",
            "task__title",
            "task__deadline",
            "task__cycle",
            "department_id",
            "department__name",
            "department__kind",
            "role",
        )
    )
    assignments = tuple(
        AssignmentRow(
            task_id=row["task_id"],
            code=row["task__code"],
            title=row["task__title"],
            deadline=row["task__deadline"],
            cycle=row["task__cycle"],
            department_id=row["department_id"],
            department_name=row["department__name"],
            department_kind=DepartmentKind(row["department__kind"]),
            role=Role(row["role"]),
        )
        for row in assignment_rows
    )
    active_tasks = {row.task_id for row in assignments}

    # Goals and the targets of every task; those of withdrawn tasks are dropped here rather
    # than with a join that would also drop the goals (task_id null).
    target_rows = await (
        Target.filter(plan_id=plan.id)
        .order_by("task_id", "position")
        .values("id", "task_id", "metric", "value", "unit", "comparator", "deadline", "baseline")
    )
    task_order = {
        task_id: index
        for index, task_id in enumerate(dict.fromkeys(row.task_id for row in assignments))
    }
    targets = tuple(
        sorted(
            (
                TargetRow(
                    id=row["id"],
                    task_id=row["task_id"],
                    metric=row["metric"],
                    value=Decimal(row["value"]),
                    unit=row["unit"],
                    comparator=Comparator(row["comparator"]),
                    deadline=row["deadline"],
                    baseline=None if row["baseline"] is None else Decimal(row["baseline"]),
                )
                for row in target_rows
                if row["task_id"] is None or row["task_id"] in active_tasks
            ),
            key=lambda target: -1 if target.task_id is None else task_order[target.task_id],
        )
    )

    liaison_rows = await (
        Liaison.filter(active=True, role=LiaisonRole.LIAISON, department_id__isnull=False)
        .order_by("department_id", "-is_lead", "bound_at", "id")
        .values("id", "department_id", "full_name", "is_lead")
    )
    liaisons = tuple(
        LiaisonRow(row["id"], row["department_id"], row["full_name"], bool(row["is_lead"]))
        for row in liaison_rows
    )

    reports = Report.filter(
        task__plan_id=plan.id,
        task__withdrawn_at__isnull=True,
        withdrawn_at__isnull=True,
        created_at__lte=now,
    )
    before = reports.filter(created_at__lt=since)
    latest = await _latest(reports).values(*_REPORT_COLUMNS)
    latest_before = await _latest(before).values(*_REPORT_COLUMNS)
    week = await (
        reports.filter(created_at__gte=since).order_by("created_at", "id").values(*_REPORT_COLUMNS)
    )
    # Values: only the reports carrying any, newest first; the first seen per target wins. No
    # dates (parsing 10^5 of them is what costs on SQLite): a report is from before the week
    # when it is not one of the week's reports.
    week_ids = {row["id"] for row in week}
    value_rows = await (
        reports.exclude(values=[]).order_by("-id").values_list("id", "department_id", "values")
    )
    known_targets = {target.id for target in targets}
    values: dict[int, ValueRow] = {}
    values_before: dict[int, ValueRow] = {}
    for report_id, department_id, payload in value_rows:
        earlier = report_id not in week_ids
        for target_id, value in reported_values(payload):
            if target_id not in known_targets:
                continue
            row = ValueRow(target_id, value, report_id, department_id)
            values.setdefault(target_id, row)
            if earlier:
                values_before.setdefault(target_id, row)

    return SummaryData(
        plan=PlanRow(
            id=plan.id,
            title=plan.title,
            doc_number=plan.doc_number,
            issued_on=plan.issued_on,
            horizon=plan.horizon,
            default_cycle=plan.default_cycle,
            created_at=plan.created_at,
        ),
        now=now,
        since=since,
        assignments=assignments,
        targets=targets,
        liaisons=liaisons,
        latest=tuple(_report(row) for row in sorted(latest, key=lambda row: row["id"])),
        latest_before=tuple(
            _report(row) for row in sorted(latest_before, key=lambda row: row["id"])
        ),
        week_reports=tuple(_report(row) for row in week),
        values=tuple(values.values()),
        values_before=tuple(values_before.values()),
    )


def _latest(reports: QuerySet[Report]) -> QuerySet[Report]:
    """The latest report of each (task, department) among `reports` (one query with a subquery)."""
    newest = (
        reports.group_by("task_id", "department_id")
        .annotate(newest_id=Max("id"))
        .values("newest_id")
    )
    return Report.filter(id__in=Subquery(newest))


def _report(row: dict) -> ReportRow:
    return ReportRow(
        id=row["id"],
        task_id=row["task_id"],
        department_id=row["department_id"],
        liaison_id=row["liaison_id"],
        liaison_name=row["liaison__full_name"] or "",
        status=ReportStatus(row["status"]),
        created_at=row["created_at"],
    )


def reported_values(values: object) -> list[tuple[int, Decimal]]:
    """(target id, value) pairs of a report's `values`, skipping anything malformed."""
    pairs = []
    for item in values if isinstance(values, list) else ():
        if not isinstance(item, dict):
            continue
        target_id, value = item.get("target_id"), item.get("value")
        if not isinstance(target_id, int) or isinstance(value, bool) or value is None:
            continue
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            continue
        if number.is_finite():
            pairs.append((target_id, number))
    return pairs
