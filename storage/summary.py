"""What the weekly summary (周报) reads: one plan's tasks, units, targets, liaisons and reports.

`load_summary_data` runs a fixed number of queries (nine) whatever the plan's size: no query
per task, department or report, and SQL picks the latest reports. Plain values out; the
traffic lights, pace and changes are computed in `bot.summary`.

As elsewhere (storage.lookup), the "latest" report of a (task, department) is the one with the
highest id among those that were not withdrawn: ids grow with time and an edit changes a report
in place. Reports made after `now` are ignored, so a summary for a past date reads as it would
have then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from tortoise.timezone import get_default_timezone

from bot.plan_model import Comparator, DepartmentKind, Role
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Liaison, Plan, Report, Target, Task
from storage.sql import Converter, Sql


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

    sql = Sql(Report._meta.db)
    assignments = await _assignments(sql, plan.id)
    targets = await _targets(sql, plan.id, assignments)
    reports = _ReportRows()
    latest, latest_before = await _latest_reports(sql, reports, plan.id, now, since)
    week = tuple(
        reports.row(record) for record in await sql.fetch(_WEEK_SQL, [plan.id, now, since])
    )
    values, values_before = await _latest_values(
        sql, plan.id, now, {report.id for report in week}, {target.id for target in targets}
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


# The queries over assignments and reports return tens of thousands of rows on a large plan. They
# are plain SQL (storage.sql), read as tuples: building them with the ORM converts every column of
# every row through its field (parsing 10^5 dates on SQLite is most of the cost), and cannot
# express the latest-per-(task, department) aggregate in one pass. The conversions below mirror
# Tortoise's own (aware datetimes in its default timezone, dates, enums), so the rows are what the
# ORM would give. Datetime bounds go to the driver in UTC (storage.sql.Sql).

# Reports that count: not withdrawn, on an active task of the plan, made up to `now`. Written
# as a cross join so that SQLite walks the reports (the table, or an index that covers the
# query) in order and looks the task up, rather than walking the task index and jumping around
# the table for every task's reports (twice slower on 10^5 reports); PostgreSQL plans a cross
# join like any other join.
_COUNTED = (
    "FROM reports r CROSS JOIN tasks t"
    " WHERE t.id = r.task_id AND t.plan_id = ? AND t.withdrawn_at IS NULL"
    " AND r.withdrawn_at IS NULL AND r.created_at <= ?"
)

_REPORT_COLUMNS = (
    "r.id, r.task_id, r.department_id, r.liaison_id, l.full_name, r.status, r.created_at"
)

# The latest report of each (task, department), and the latest made before `since`, in one pass:
# the newest ids per group, then those reports (one row when both are the same report). Both
# halves read only the reports index on (task_id, department_id, withdrawn_at, created_at,
# status, liaison_id) on SQLite: the grouping walks it in order, and the join finds each unit's
# few entries in it rather than looking every report up in the table (twice slower on 10^5).
_LATEST_SQL = f"""
    SELECT {_REPORT_COLUMNS}, g.newest, g.newest_before
    FROM (
        SELECT r.task_id, r.department_id, MAX(r.id) AS newest,
               MAX(CASE WHEN r.created_at < ? THEN r.id END) AS newest_before
        {_COUNTED}
        GROUP BY r.task_id, r.department_id
    ) g
    JOIN reports r ON r.task_id = g.task_id AND r.department_id = g.department_id
        AND r.withdrawn_at IS NULL AND r.id IN (g.newest, g.newest_before)
    LEFT JOIN liaisons l ON l.id = r.liaison_id
"""

# The week's reports, oldest first; few, so through the (task_id, created_at) index.
_WEEK_SQL = f"""
    SELECT {_REPORT_COLUMNS}
    FROM reports r
    JOIN tasks t ON t.id = r.task_id
    LEFT JOIN liaisons l ON l.id = r.liaison_id
    WHERE t.plan_id = ? AND t.withdrawn_at IS NULL
      AND r.withdrawn_at IS NULL AND r.created_at <= ? AND r.created_at >= ?
    ORDER BY r.created_at, r.id
"""

# Reports carrying values, newest first (an empty list is stored as '[]' on both databases).
_VALUES_SQL = f"""
    SELECT r.id, r.department_id, r."values"
    {_COUNTED}
      AND r."values" <> '[]'
    ORDER BY r.id DESC
"""

# A plan's units in three reads (tasks, their units, departments) rather than one join that
# repeats each task's and department's text on every unit: half the time on 30,000 units.
_TASKS_SQL = """
    SELECT id, code, title, deadline, cycle
    FROM tasks
    WHERE plan_id = ? AND withdrawn_at IS NULL
"""

_UNITS_SQL = """
    SELECT a.task_id, a.department_id, a.role
    FROM assignments a
    JOIN tasks t ON t.id = a.task_id
    WHERE t.plan_id = ? AND t.withdrawn_at IS NULL
    ORDER BY t."position", a."position"
"""

_DEPARTMENTS_SQL = "SELECT id, name, kind FROM departments"

_TARGETS_SQL = """
    SELECT id, task_id, metric, "value", unit, comparator, deadline, baseline
    FROM targets
    WHERE plan_id = ? AND withdrawn_at IS NULL
    ORDER BY task_id, "position"
"""


async def _assignments(sql: Sql, plan_id: int) -> tuple[AssignmentRow, ...]:
    """Every unit of every active task, in document order."""
    deadline = Converter(Task._meta.fields_map["deadline"].to_python_value)
    tasks = {
        task_id: (code, title, deadline(due), cycle)
        for task_id, code, title, due, cycle in await sql.fetch(_TASKS_SQL, [plan_id])
    }
    kind, role = Converter(DepartmentKind), Converter(Role)
    departments = {
        department_id: (name, kind(department_kind))
        for department_id, name, department_kind in await sql.fetch(_DEPARTMENTS_SQL, [])
    }
    # A task or department written between these reads is left for the next summary.
    return tuple(
        AssignmentRow(task_id, *tasks[task_id], department_id, *departments[department_id], role(r))
        for task_id, department_id, r in await sql.fetch(_UNITS_SQL, [plan_id])
        if task_id in tasks and department_id in departments
    )


async def _targets(
    sql: Sql, plan_id: int, assignments: tuple[AssignmentRow, ...]
) -> tuple[TargetRow, ...]:
    """Goals first, then the targets of active tasks in document order."""
    fields = Target._meta.fields_map
    decimal = Converter(fields["value"].to_python_value)  # both columns: DECIMAL(20,4)
    deadline = Converter(fields["deadline"].to_python_value)
    comparator = Converter(Comparator)
    task_order = {
        task_id: index
        for index, task_id in enumerate(dict.fromkeys(row.task_id for row in assignments))
    }
    # Those of withdrawn tasks are dropped here rather than with a join that would also drop
    # the goals (task_id null).
    return tuple(
        sorted(
            (
                TargetRow(
                    id=target_id,
                    task_id=task_id,
                    metric=metric,
                    value=decimal(value),
                    unit=unit,
                    comparator=comparator(comparison),
                    deadline=deadline(due),
                    baseline=decimal(baseline),
                )
                for (
                    target_id,
                    task_id,
                    metric,
                    value,
                    unit,
                    comparison,
                    due,
                    baseline,
                ) in await sql.fetch(_TARGETS_SQL, [plan_id])
                if task_id is None or task_id in task_order
            ),
            key=lambda target: -1 if target.task_id is None else task_order[target.task_id],
        )
    )


class _ReportRows:
    """ReportRows from SQL rows, one object per report: the latest report of a unit is often
    its latest before the week too, or one of the week's."""

    def __init__(self) -> None:
        self.by_id: dict[int, ReportRow] = {}
        self.status = Converter(ReportStatus)
        self.zone = get_default_timezone()
        self.parse = Report._meta.fields_map["created_at"].to_python_value

    def row(self, record: Sequence[Any]) -> ReportRow:
        report_id = record[0]
        known = self.by_id.get(report_id)
        if known is not None:
            return known
        _id, task_id, department_id, liaison_id, liaison_name, status, created_at = record[:7]
        report = self.by_id[report_id] = ReportRow(
            id=report_id,
            task_id=task_id,
            department_id=department_id,
            liaison_id=liaison_id,
            liaison_name=liaison_name or "",
            status=self.status(status),
            created_at=self.aware(created_at),
        )
        return report

    def aware(self, value: datetime | str) -> datetime:
        """What Tortoise's DatetimeField gives (use_tz): aware, in its default timezone."""
        if isinstance(value, str):  # SQLite keeps ISO 8601 text
            try:
                value = datetime.fromisoformat(value)
            except ValueError:  # a form only Tortoise's parser reads
                return self.parse(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=self.zone)
        return value.astimezone(self.zone)


async def _latest_reports(
    sql: Sql, reports: _ReportRows, plan_id: int, now: datetime, since: datetime
) -> tuple[tuple[ReportRow, ...], tuple[ReportRow, ...]]:
    """(latest per (task, department) up to `now`, latest per (task, department) before
    `since`), each by report id."""
    latest, latest_before = [], []
    for record in await sql.fetch(_LATEST_SQL, [since, plan_id, now]):
        report = reports.row(record)
        newest, newest_before = record[7], record[8]
        if report.id == newest:
            latest.append(report)
        if report.id == newest_before:
            latest_before.append(report)
    latest.sort(key=_by_id)
    latest_before.sort(key=_by_id)
    return tuple(latest), tuple(latest_before)


def _by_id(report: ReportRow) -> int:
    return report.id


async def _latest_values(
    sql: Sql, plan_id: int, now: datetime, week_ids: set[int], known_targets: set[int]
) -> tuple[tuple[ValueRow, ...], tuple[ValueRow, ...]]:
    """(latest value per target up to `now`, latest per target before the week).

    Newest report first, the first seen per target wins. No dates (parsing 10^4 of them is
    what costs on SQLite): a report is from before the week when it is not one of the week's.
    """
    decode = Report._meta.fields_map["values"].to_python_value
    values: dict[int, ValueRow] = {}
    values_before: dict[int, ValueRow] = {}
    for report_id, department_id, payload in await sql.fetch(_VALUES_SQL, [plan_id, now]):
        earlier = report_id not in week_ids
        for target_id, value in reported_values(decode(payload)):
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
