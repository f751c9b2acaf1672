"""What the weekly summary (周报) reads: one plan's tasks, units, targets, liaisons and reports.

`load_summary_data` runs a fixed number of queries (nine) whatever the plan's size: no query
per task, department or report. Every read goes through the ORM (`.values()`, named fields)
except one: each unit's latest report and latest before the week, in one grouped pass, is the
one statement here the ORM cannot express (`_LATEST_SQL`; tests/test_summary_sql.py checks its
table and column names against the models). Plain values out; the traffic lights, pace and
changes are computed in `bot.summary`.

The "latest" report of a (task, department) is defined once, by `storage.lookup.latest_reports`
(the highest id among those not withdrawn); `_LATEST_SQL` reads the same, and a test checks that
the two agree. Reports made after `now` are ignored, so a summary for a past date reads as it
would have then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.queryset import QuerySet
from tortoise.timezone import get_default_timezone

from bot.plan_model import Comparator, DepartmentKind, Role
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Assignment, Department, Liaison, Plan, Report, Target, Task


@dataclass(frozen=True, slots=True)
class PlanRow:
    id: int
    title: str
    doc_number: str | None
    issued_on: date | None
    horizon: date
    default_cycle: str | None  # a Cycle value or an RRULE; None: the bot's default (monthly)
    created_at: datetime  # when it was first imported: no one can be silent before that


# The rows a summary builds once per unit or report (tens of thousands on a large plan) are
# typed tuples: immutable like the frozen dataclasses around them, and built in a third of the
# time (a frozen dataclass's __init__ sets every field through object.__setattr__).


class AssignmentRow(NamedTuple):
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


class ReportRow(NamedTuple):
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


async def load_summary_data(
    now: datetime, since: datetime, *, plan_id: int | None = None
) -> SummaryData | None:
    """Everything the weekly summary of one plan needs, in nine queries.

    `plan_id`: None for the most recently imported plan. None when there is no such plan.
    """
    if now.tzinfo is None or since.tzinfo is None:
        raise ValueError("load_summary_data needs aware datetimes")
    plans = Plan.all() if plan_id is None else Plan.filter(id=plan_id)
    plan = await plans.order_by("-created_at", "-id").first()
    if plan is None:
        return None

    assignments = await _assignments(plan.id)
    targets = await _targets(plan.id, assignments)
    reports = _ReportRows()
    latest, latest_before = await _latest_reports(reports, plan.id, now, since)
    week_rows = await (
        _counted(plan.id, now)
        .filter(created_at__gte=since.astimezone(UTC))
        .order_by("created_at", "id")
        .values(*_REPORT_FIELDS, liaison_name="liaison__full_name")
    )
    week = tuple(reports.row(row) for row in week_rows)
    values, values_before = await _latest_values(
        plan.id, now, {report.id for report in week}, {target.id for target in targets}
    )
    # Last, as it is small: SQLite's driver holds on to a query's rows until the next query.
    liaison_rows = await (
        Liaison.filter(active=True, role=LiaisonRole.LIAISON, department_id__isnull=False)
        .order_by("department_id", "-is_lead", "bound_at", "id")
        .values("id", "department_id", "full_name", "is_lead")
    )
    liaisons = tuple(
        LiaisonRow(row["id"], row["department_id"], row["full_name"], bool(row["is_lead"]))
        for row in liaison_rows
    )
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
        latest=latest,
        latest_before=latest_before,
        week_reports=week,
        values=values,
        values_before=values_before,
    )


def _counted(plan_id: int, now: datetime) -> QuerySet[Report]:
    """Reports that count: not withdrawn, on an active task of the plan, made up to `now`."""
    return Report.filter(
        task__plan_id=plan_id,
        task__withdrawn_at__isnull=True,
        withdrawn_at__isnull=True,
        # In UTC, as stored: SQLite compares the text, and a bound in another offset would be off.
        created_at__lte=now.astimezone(UTC),
    )


_REPORT_FIELDS = ("id", "task_id", "department_id", "liaison_id", "status", "created_at")

# The one statement the ORM cannot express: the latest report of each (task, department) and
# the latest made before `since`, in one grouped pass (the newest ids per group, then those
# reports; one row when both are the same report). `{since}`, `{plan}`, `{now}` are the
# dialect's placeholders (`_placeholders`). The cross join lets SQLite walk the reports in
# order and look each task up; PostgreSQL plans it like any join.
_LATEST_SQL = """
    SELECT r.id AS id, r.task_id AS task_id, r.department_id AS department_id,
           r.liaison_id AS liaison_id, l.full_name AS liaison_name, r.status AS status,
           r.created_at AS created_at, g.newest AS newest, g.newest_before AS newest_before
    FROM (
        SELECT r.task_id, r.department_id, MAX(r.id) AS newest,
               MAX(CASE WHEN r.created_at < {since} THEN r.id END) AS newest_before
        FROM reports r CROSS JOIN tasks t
        WHERE t.id = r.task_id AND t.plan_id = {plan} AND t.withdrawn_at IS NULL
          AND r.withdrawn_at IS NULL AND r.created_at <= {now}
        GROUP BY r.task_id, r.department_id
    ) g
    JOIN reports r ON r.task_id = g.task_id AND r.department_id = g.department_id
        AND r.withdrawn_at IS NULL AND r.id IN (g.newest, g.newest_before)
    LEFT JOIN liaisons l ON l.id = r.liaison_id
"""


def _placeholders(connection: BaseDBAsyncClient) -> dict[str, str]:
    """`_LATEST_SQL`'s parameters in the dialect's own notation, in the order they are bound."""
    dialect = connection.capabilities.dialect
    if dialect == "sqlite":
        return {"since": "?", "plan": "?", "now": "?"}
    if dialect == "postgres":
        return {"since": "$1", "plan": "$2", "now": "$3"}
    raise NotImplementedError(f"no latest-report query for {dialect}")


async def _assignments(plan_id: int) -> tuple[AssignmentRow, ...]:
    """Every unit of every active task, in document order.

    Three reads (tasks, their units, departments) rather than one join that repeats each task's
    and department's text on every unit."""
    tasks = {
        row["id"]: (row["code"], row["title"], row["deadline"], row["cycle"])
        for row in await Task.filter(plan_id=plan_id, withdrawn_at__isnull=True).values(
            "id", "code", "title", "deadline", "cycle"
        )
    }
    departments = {
        row["id"]: (row["name"], row["kind"])  # the ORM gives the enum members
        for row in await Department.all().values("id", "name", "kind")
    }
    units = await (
        Assignment.filter(task__plan_id=plan_id, task__withdrawn_at__isnull=True)
        .order_by("task__position", "position")
        .values("task_id", "department_id", "role")
    )
    # A task or department written between these reads is left for the next summary.
    return tuple(
        AssignmentRow(
            unit["task_id"],
            *tasks[unit["task_id"]],
            unit["department_id"],
            *departments[unit["department_id"]],
            unit["role"],
        )
        for unit in units
        if unit["task_id"] in tasks and unit["department_id"] in departments
    )


async def _targets(plan_id: int, assignments: tuple[AssignmentRow, ...]) -> tuple[TargetRow, ...]:
    """Goals first, then the targets of active tasks in document order."""
    task_order = {
        task_id: index
        for index, task_id in enumerate(dict.fromkeys(row.task_id for row in assignments))
    }
    rows = await (
        Target.filter(plan_id=plan_id, withdrawn_at__isnull=True)
        .order_by("position", "id")
        .values("id", "task_id", "metric", "value", "unit", "comparator", "deadline", "baseline")
    )
    # Those of withdrawn tasks are dropped here rather than with a join that would also drop
    # the goals (task_id null).
    return tuple(
        sorted(
            (
                TargetRow(
                    id=row["id"],
                    task_id=row["task_id"],
                    metric=row["metric"],
                    value=row["value"],
                    unit=row["unit"],
                    comparator=row["comparator"],
                    deadline=row["deadline"],
                    baseline=row["baseline"],
                )
                for row in rows
                if row["task_id"] is None or row["task_id"] in task_order
            ),
            key=lambda target: -1 if target.task_id is None else task_order[target.task_id],
        )
    )


# A report's status from its stored text (`_LATEST_SQL`) or its enum member (the ORM): one
# dictionary lookup, rather than an enum call per row.
_STATUSES: dict[str, ReportStatus] = {status.value: status for status in ReportStatus}


class _ReportRows:
    """ReportRows from named rows, one object per report: the latest report of a unit is often
    its latest before the week too, or one of the week's."""

    def __init__(self) -> None:
        self.by_id: dict[int, ReportRow] = {}
        self.zone = get_default_timezone()
        self.parse = Report._meta.fields_map["created_at"].to_python_value

    def row(self, record: Mapping[str, Any]) -> ReportRow:
        report_id = record["id"]
        known = self.by_id.get(report_id)
        if known is not None:
            return known
        report = self.by_id[report_id] = ReportRow(
            id=report_id,
            task_id=record["task_id"],
            department_id=record["department_id"],
            liaison_id=record["liaison_id"],
            liaison_name=record["liaison_name"] or "",
            status=_STATUSES[record["status"]],
            created_at=self.aware(record["created_at"]),
        )
        return report

    def aware(self, value: datetime | str) -> datetime:
        """What Tortoise's DatetimeField gives (use_tz): aware, in its default timezone."""
        if isinstance(value, str):  # SQLite keeps ISO 8601 text (read by `_LATEST_SQL`)
            try:
                value = datetime.fromisoformat(value)
            except ValueError:  # a form only Tortoise's parser reads
                return self.parse(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=self.zone)
        return value.astimezone(self.zone)


async def _latest_reports(
    reports: _ReportRows, plan_id: int, now: datetime, since: datetime
) -> tuple[tuple[ReportRow, ...], tuple[ReportRow, ...]]:
    """(latest per (task, department) up to `now`, latest per (task, department) before
    `since`), each by report id (the rule of `storage.lookup.latest_reports`)."""
    connection = Report._meta.db
    query = _LATEST_SQL.format(**_placeholders(connection))
    # SQLite compares the stored ISO text, which is UTC: a bound in another offset would be off.
    values = [since.astimezone(UTC), plan_id, now.astimezone(UTC)]
    latest, latest_before = [], []
    for record in await connection.execute_query_dict(query, values):
        report = reports.row(record)
        if report.id == record["newest"]:
            latest.append(report)
        if report.id == record["newest_before"]:
            latest_before.append(report)
    latest.sort(key=_by_id)
    latest_before.sort(key=_by_id)
    return tuple(latest), tuple(latest_before)


def _by_id(report: ReportRow) -> int:
    return report.id


async def _latest_values(
    plan_id: int, now: datetime, week_ids: set[int], known_targets: set[int]
) -> tuple[tuple[ValueRow, ...], tuple[ValueRow, ...]]:
    """(latest value per target up to `now`, latest per target before the week).

    Newest report first, the first seen per target wins. No dates (parsing 10^4 of them is
    what costs on SQLite): a report is from before the week when it is not one of the week's.
    """
    values: dict[int, ValueRow] = {}
    values_before: dict[int, ValueRow] = {}
    rows = await (
        _counted(plan_id, now)
        .exclude(values=[])
        .order_by("-id")
        .values_list("id", "department_id", "values")
    )
    for report_id, department_id, payload in rows:
        earlier = report_id not in week_ids
        for target_id, value in reported_values(payload):
            newest = target_id not in values
            newest_before = earlier and target_id not in values_before
            if target_id in known_targets and (newest or newest_before):
                row = ValueRow(target_id, value, report_id, department_id)
                if newest:
                    values[target_id] = row
                if newest_before:
                    values_before[target_id] = row
    return tuple(values.values()), tuple(values_before.values())


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
