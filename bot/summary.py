"""The weekly summary (周报 / 通报): pure computation, plain values in and out.

`compute_summary(data, ...)` turns what `storage.summary.load_summary_data` read into a
`WeeklySummary`; `bot.summary_render` writes it as Telegram messages or plain text and
`bot.chart` draws it. `now` comes in with the data (timezone-aware); nothing here reads a clock.

Traffic light (红黄绿灯) of one department on one task (the rule is `bot.lights`, which the lookups
share), the most urgent reason wins:

- 🔴 red: overdue (the deadline has passed — the deadline day itself still counts as in time — and
  neither the task's lead(s) nor this department has reported it done), blocked, or silent: no
  report on the task since `silent_since` (two reporting cycles; by default two months before
  `now`; a task with its own cycle uses two of its cycles). Nobody is silent before the plan
  was imported: a department cannot have missed cycles the bot never asked about.
- 🟡 yellow: at risk, or behind pace (lead units only: the lead answers for the task's targets).
- 🟢 green: on track or done (a task done by its lead(s) is green for every unit on it).
- ⚪ pending: no report yet, and not silent either (the bot has not been running two cycles).

Pace (序时进度) of a target: on a straight line from the plan's issue date (the baseline value
when the document gives one, else 0) to the target's deadline (else the task's, else the plan's
horizon) at its goal value, where should it be today? "At least" targets are behind pace when
the latest reported value is below that line; "at most" targets with a baseline mirror it (above
the line is behind); "at most" targets without a baseline are behind only once over the limit.
Progress in % is the share of the way from the start value to the goal.

"This week" is [since, now] (since = now - 7 days by default); what changed compares the state
before `since` with the state at `now`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import NamedTuple, Protocol

from dateutil.relativedelta import relativedelta

from bot.lights import (
    JUDGEMENTS,
    URGENCY,
    Judgement,
    Light,
    Reason,
    count,
    deciders,
    line_done,
    line_overdue,
    task_overdue,
)
from bot.plan_model import Comparator, Cycle, Role
from storage.enums import ReportStatus
from storage.summary import AssignmentRow, ReportRow, SummaryData, TargetRow, ValueRow

WEEK = timedelta(days=7)
_HUNDRED = Decimal(100)
# percent, expected percent, expected value, behind (see `pace`)
_PaceResult = tuple[Decimal | None, Decimal | None, Decimal | None, bool]


# Two reporting cycles of each named cycle (the first word of a rule such as "monthly:20:25").
_TWO_CYCLES = {
    Cycle.WEEKLY: relativedelta(weeks=2),
    Cycle.MONTHLY: relativedelta(months=2),
    Cycle.QUARTERLY: relativedelta(months=6),
    Cycle.HALF_YEARLY: relativedelta(months=12),
    Cycle.YEARLY: relativedelta(months=24),
}


def two_cycles_before(moment: datetime, cycle: str | None) -> datetime:
    """`moment` minus two reporting cycles of `cycle` ("monthly", "quarterly:20:25", …).

    Unknown rules (an RRULE) and None count as monthly: two months.
    """
    name = (cycle or "").split(":", 1)[0].strip().lower()
    try:
        step = _TWO_CYCLES[Cycle(name)]
    except ValueError:
        step = _TWO_CYCLES[Cycle.MONTHLY]
    return moment - step


# Values out -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetProgress:
    """A plan goal (task_code None) or task target with its latest value against the goal."""

    target_id: int
    task_id: int | None
    task_code: str | None
    metric: str
    unit: str
    goal: Decimal
    comparator: Comparator
    deadline: date
    baseline: Decimal | None
    value: Decimal | None  # latest reported; None: nobody has reported a value yet
    previous_value: Decimal | None  # the latest before this week
    percent: Decimal | None  # progress from the start value toward the goal, in %
    expected_percent: Decimal | None  # where the straight line (序时进度) is today, in %
    expected_value: Decimal | None
    behind: bool  # behind pace

    @property
    def changed(self) -> bool:
        return self.value is not None and self.value != self.previous_value


class TaskLine(NamedTuple):
    """One department on one task (a typed tuple, as storage.summary's rows and for the same
    reason: a summary builds one per unit)."""

    task_id: int
    code: str
    title: str
    role: Role
    deadline: date
    light: Light
    reasons: tuple[Reason, ...]  # every reason that applies, most urgent first
    status: ReportStatus | None  # the department's latest report
    reported_at: datetime | None
    overdue_days: int  # 0 unless overdue
    silent_days: int | None  # days since the last report when silent (None: never reported)
    behind: tuple[TargetProgress, ...] = ()  # targets behind pace (lead lines only)


@dataclass(frozen=True, slots=True)
class DepartmentBlock:
    department_id: int
    name: str
    liaisons: tuple[str, ...]  # active liaisons, the lead liaison first
    lines: tuple[TaskLine, ...]  # red first, then yellow, pending, green; document order within
    reporters: tuple[str, ...]  # liaisons who reported this week

    @property
    def counts(self) -> dict[Light, int]:
        return count(line.light for line in self.lines)

    @property
    def worst(self) -> Light:
        return min((line.light for line in self.lines), key=URGENCY.get, default=Light.GREEN)


@dataclass(frozen=True, slots=True)
class DepartmentContact:
    """A department and the people who answer for it (reporters, or liaisons to chase)."""

    department_id: int
    name: str
    people: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OverdueTask:
    task_id: int
    code: str
    title: str
    deadline: date
    days: int
    leads: tuple[str, ...]  # lead department names (all units when the task names no lead)


@dataclass(frozen=True, slots=True)
class NewReport:
    department: str
    liaison: str
    code: str
    title: str
    status: ReportStatus
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StatusChange:
    department: str
    code: str
    title: str
    before: ReportStatus
    after: ReportStatus


@dataclass(frozen=True, slots=True)
class LightChange:
    department: str
    code: str
    title: str
    before: Light
    after: Light

    @property
    def worse(self) -> bool:
        return URGENCY[self.after] < URGENCY[self.before]


@dataclass(frozen=True, slots=True)
class Changes:
    new_reports: tuple[NewReport, ...] = ()
    status_changes: tuple[StatusChange, ...] = ()
    light_changes: tuple[LightChange, ...] = ()  # the worse first
    target_changes: tuple[TargetProgress, ...] = ()  # targets with a new value this week

    @property
    def empty(self) -> bool:
        return not (
            self.new_reports or self.status_changes or self.light_changes or self.target_changes
        )


class DeliveryIssueLike(Protocol):
    kind: str  # prompt, reminder, nudge, escalation, summary, notice (or any text)
    recipient: str
    task_code: str | None
    reason: str  # expired, failed, unreachable, or the error text


@dataclass(frozen=True, slots=True)
class DeliveryIssue:
    """A scheduled send that expired or could not be delivered (from the delivery ledger)."""

    kind: str
    recipient: str
    task_code: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class WeeklySummary:
    plan_id: int
    plan_title: str
    doc_number: str | None
    now: datetime
    since: datetime
    today: date  # in the summary's timezone
    task_count: int
    task_lights: dict[Light, int]  # tasks by their worst unit's light
    line_lights: dict[Light, int]  # department-task lines by light
    departments: tuple[DepartmentBlock, ...]  # most red first, then most yellow, then plan order
    reported: tuple[DepartmentContact, ...]  # people: who reported this week
    not_reported: tuple[DepartmentContact, ...]  # people: the liaisons (empty: none bound)
    overdue: tuple[OverdueTask, ...]  # most overdue first
    targets: tuple[TargetProgress, ...]  # plan goals first, then task targets in plan order
    changes: Changes = field(default_factory=Changes)
    delivery_issues: tuple[DeliveryIssue, ...] = ()
    # Messages that may have reached their chat twice this week: a try whose answer was lost
    # (network error, timeout) may have been delivered before the retry (the delivery ledger).
    possible_duplicates: int = 0


# Computation ----------------------------------------------------------------------------------


def compute_summary(
    data: SummaryData,
    *,
    silent_since: datetime | None = None,
    delivery_issues: Sequence[DeliveryIssueLike] = (),
    possible_duplicates: int = 0,
    tz: tzinfo | None = None,
) -> WeeklySummary:
    """The weekly summary as of `data.now`.

    `silent_since`: a department with no report on a task since then is silent (red); computed
    by the caller from the plan's reporting rule. By default two cycles of the plan's default
    cycle (`two_cycles_before`): two months when it names none, or names an RRULE.
    `tz`: the timezone whose calendar day is "today" (deadlines are local dates); by default the
    timezone of `data.now`.
    """
    now, since = data.now, data.since
    if now.tzinfo is None or since.tzinfo is None:
        raise ValueError("compute_summary needs aware datetimes")
    zone = tz or now.tzinfo
    today = now.astimezone(zone).date()
    before_day = since.astimezone(zone).date()
    silent_since = silent_since or two_cycles_before(now, data.plan.default_cycle)
    week = now - since

    units = _Units(data.assignments)
    latest, latest_before = _by_unit(data.latest), _by_unit(data.latest_before)
    previous = {row.target_id: row.value for row in data.values_before}
    progress = _progress(data, units, today, previous)
    done_tasks = units.done_tasks(latest)
    lines = _lines(
        data, units, latest, done_tasks, progress, now=now, today=today, silent_since=silent_since
    )
    lights_before = _lights_before(
        data, units, latest_before, before_day, silent_since=silent_since - week
    )

    names = units.names
    liaisons: dict[int, list[str]] = defaultdict(list)
    for liaison in data.liaisons:
        liaisons[liaison.department_id].append(liaison.full_name)
    reporters: dict[int, list[str]] = defaultdict(list)
    for report in data.week_reports:
        if report.liaison_name not in reporters[report.department_id]:
            reporters[report.department_id].append(report.liaison_name)

    blocks = _blocks(lines, names, liaisons, reporters)
    reported = tuple(
        DepartmentContact(department_id, name, tuple(reporters[department_id]))
        for department_id, name in names.items()
        if reporters.get(department_id)
    )
    # Departments with every task done owe no reports.
    finished = {
        block.department_id
        for block in blocks
        if all(Reason.DONE in line.reasons for line in block.lines)
    }
    not_reported = tuple(
        DepartmentContact(department_id, name, tuple(liaisons[department_id]))
        for department_id, name in names.items()
        if not reporters.get(department_id) and department_id not in finished
    )

    task_lights: dict[int, Light] = {}
    for (task_id, _department_id), line in lines.items():
        current = task_lights.get(task_id)
        if current is None or URGENCY[line.light] < URGENCY[current]:
            task_lights[task_id] = line.light

    return WeeklySummary(
        plan_id=data.plan.id,
        plan_title=data.plan.title,
        doc_number=data.plan.doc_number,
        now=now,
        since=since,
        today=today,
        task_count=len(task_lights),
        task_lights=count(task_lights.values()),
        line_lights=count(line.light for line in lines.values()),
        departments=tuple(blocks),
        reported=reported,
        not_reported=not_reported,
        overdue=_overdue(units, done_tasks, today),
        targets=tuple(progress),
        changes=_changes(
            data,
            units,
            latest_before=latest_before,
            lines=lines,
            lights_before=lights_before,
            progress=progress,
        ),
        delivery_issues=tuple(
            DeliveryIssue(item.kind, item.recipient, item.task_code, item.reason)
            for item in delivery_issues
        ),
        possible_duplicates=possible_duplicates,
    )


def pace(
    *,
    goal: Decimal,
    comparator: Comparator,
    baseline: Decimal | None,
    start: date | None,
    deadline: date,
    today: date,
    value: Decimal | None,
) -> _PaceResult:
    """(percent, expected_percent, expected_value, behind) of one target on `today`."""
    return _pace(goal, comparator, baseline, _elapsed(start, deadline, today), value)


def _pace(
    goal: Decimal,
    comparator: Comparator,
    baseline: Decimal | None,
    fraction: Decimal | None,
    value: Decimal | None,
) -> _PaceResult:
    """`pace` with the elapsed share of time already worked out (it is the same for every
    target with the same deadline)."""
    growing = comparator in (Comparator.AT_LEAST, Comparator.MORE_THAN)
    base = baseline if baseline is not None else Decimal(0)
    span = goal - base if growing else base - goal
    if (not growing and baseline is None) or span <= 0:
        # A ceiling with nothing to come down from (or a goal not beyond its start): the share
        # of the goal, behind only once on the wrong side of it.
        percent = None if value is None or goal == 0 else value / goal * _HUNDRED
        behind = value is not None and (value < goal if growing else value > goal)
        return percent, None, None, behind
    percent = None if value is None else (value - base if growing else base - value) / span * 100
    if fraction is None:
        return percent, None, None, False
    expected_value = base + (goal - base) * fraction
    behind = value is not None and (value < expected_value if growing else value > expected_value)
    return percent, fraction * _HUNDRED, expected_value, behind


def _elapsed(start: date | None, deadline: date, today: date) -> Decimal | None:
    """Share of the time from `start` to `deadline` that has passed on `today` (0…1)."""
    if start is None or deadline <= start:
        return None
    total = (deadline - start).days
    done = min(max((today - start).days, 0), total)
    return Decimal(done) / Decimal(total)


class _Units:
    """The plan's units, grouped once for every part of the summary."""

    def __init__(self, assignments: Sequence[AssignmentRow]) -> None:
        # Per active task, in document order; the first is the task's head row.
        self.by_task: dict[int, list[AssignmentRow]] = defaultdict(list)
        # Departments with active tasks, in order of first appearance in the plan.
        self.names: dict[int, str] = {}
        for row in assignments:
            self.by_task[row.task_id].append(row)
            self.names.setdefault(row.department_id, row.department_name)
        # Whose report of "done" finishes a task (bot.lights.deciders).
        self.deciders = {task_id: deciders(rows) for task_id, rows in self.by_task.items()}

    def head(self, task_id: int | None) -> AssignmentRow | None:
        rows = self.by_task.get(task_id) if task_id is not None else None
        return rows[0] if rows else None

    def done_tasks(self, latest: dict[tuple[int, int], ReportRow]) -> set[int]:
        """The tasks whose deciders' latest reports all say "done"."""
        done = ReportStatus.DONE
        # Only a task with some report of "done" can be done: look at those alone.
        candidates = {key[0] for key, report in latest.items() if report.status is done}
        return {
            task_id
            for task_id in candidates & self.deciders.keys()
            if all(
                (report := latest.get((task_id, row.department_id))) is not None
                and report.status is done
                for row in self.deciders[task_id]
            )
        }


def _by_unit(reports: Iterable[ReportRow]) -> dict[tuple[int, int], ReportRow]:
    return {(report.task_id, report.department_id): report for report in reports}


def _paced(
    data: SummaryData, units: _Units, values: Sequence[ValueRow], today: date
) -> Iterator[tuple[TargetRow, AssignmentRow | None, date, Decimal | None, _PaceResult]]:
    """(target, its task's head row, deadline, latest value, pace) for every goal and every
    target of a task with units."""
    latest = {row.target_id: row.value for row in values}
    elapsed: dict[date, Decimal | None] = {}  # by deadline: many targets share one
    start = data.plan.issued_on
    for target in data.targets:
        head = units.head(target.task_id)
        if target.task_id is not None and head is None:
            continue  # a target of a task with no units: not in the summary
        deadline = target.deadline or (head.deadline if head else data.plan.horizon)
        if deadline not in elapsed:
            elapsed[deadline] = _elapsed(start, deadline, today)
        value = latest.get(target.id)
        paced = _pace(target.value, target.comparator, target.baseline, elapsed[deadline], value)
        yield target, head, deadline, value, paced


def _progress(
    data: SummaryData, units: _Units, today: date, previous: dict[int, Decimal]
) -> list[TargetProgress]:
    """Every goal and every target of a task with units, against the latest values."""
    return [
        TargetProgress(
            target_id=target.id,
            task_id=target.task_id,
            task_code=head.code if head else None,
            metric=target.metric,
            unit=target.unit,
            goal=target.value,
            comparator=target.comparator,
            deadline=deadline,
            baseline=target.baseline,
            value=value,
            previous_value=previous.get(target.id),
            percent=percent,
            expected_percent=expected_percent,
            expected_value=expected_value,
            behind=behind,
        )
        for target, head, deadline, value, (
            percent,
            expected_percent,
            expected_value,
            behind,
        ) in _paced(data, units, data.values, today)
    ]


def _lines(
    data: SummaryData,
    units: _Units,
    latest: dict[tuple[int, int], ReportRow],
    done_tasks: Container[int],
    progress: Sequence[TargetProgress],
    *,
    now: datetime,
    today: date,
    silent_since: datetime,
) -> dict[tuple[int, int], TaskLine]:
    """Every (task, department) line as of `now`, given the latest reports as of then."""
    behind: dict[int, list[TargetProgress]] = defaultdict(list)
    for item in progress:
        if item.task_id is not None and item.behind:
            behind[item.task_id].append(item)
    behind_targets = {task_id: tuple(items) for task_id, items in behind.items()}
    lines: dict[tuple[int, int], TaskLine] = {}
    for row, report, judged in _judged(
        data,
        units,
        latest,
        done_tasks,
        behind_targets,
        now=now,
        today=today,
        silent_since=silent_since,
    ):
        lines[row.task_id, row.department_id] = TaskLine(
            task_id=row.task_id,
            code=row.code,
            title=row.title,
            role=row.role,
            deadline=row.deadline,
            light=judged.light,
            reasons=judged.reasons,
            status=report.status if report else None,
            reported_at=report.created_at if report else None,
            overdue_days=(today - row.deadline).days if judged.overdue else 0,
            silent_days=(now - report.created_at).days if judged.silent and report else None,
            behind=behind_targets[row.task_id] if judged.late else (),
        )
    return lines


def _lights_before(
    data: SummaryData,
    units: _Units,
    latest_before: dict[tuple[int, int], ReportRow],
    before_day: date,
    *,
    silent_since: datetime,
) -> dict[tuple[int, int], Light]:
    """The light of every (task, department) line as it was at the start of the week."""
    behind_tasks = {
        target.task_id
        for target, _head, _deadline, _value, (*_percents, behind) in _paced(
            data, units, data.values_before, before_day
        )
        if target.task_id is not None and behind
    }
    return {
        (row.task_id, row.department_id): judged.light
        for row, _report, judged in _judged(
            data,
            units,
            latest_before,
            units.done_tasks(latest_before),
            behind_tasks,
            now=data.since,
            today=before_day,
            silent_since=silent_since,
        )
    }


def _judged(
    data: SummaryData,
    units: _Units,
    latest: dict[tuple[int, int], ReportRow],
    done_tasks: Container[int],
    behind_tasks: Container[int],
    *,
    now: datetime,
    today: date,
    silent_since: datetime,
) -> Iterator[tuple[AssignmentRow, ReportRow | None, Judgement]]:
    """Every unit of every active task with its latest report and what it amounts to."""
    thresholds: dict[str | None, datetime] = {}  # silent when not heard from since, by cycle
    judgements, lead = JUDGEMENTS, Role.LEAD
    for task_id, rows in units.by_task.items():
        head = rows[0]
        if head.cycle not in thresholds:
            cycle = head.cycle
            thresholds[cycle] = two_cycles_before(now, cycle) if cycle else silent_since
        threshold = thresholds[head.cycle]
        watched = data.plan.created_at <= threshold  # the bot was there for those cycles
        task_done = task_id in done_tasks
        task_behind = task_id in behind_tasks
        for row in rows:
            report = latest.get((task_id, row.department_id))
            status = report.status if report else None
            unit_done = line_done(status, task_done=task_done)
            silent = not unit_done and watched
            if report is not None:
                silent = silent and report.created_at < threshold
            overdue = line_overdue(head.deadline, today, done=unit_done)
            late = task_behind and not unit_done and row.role is lead
            yield row, report, judgements[overdue, status, silent, late, unit_done]


def _blocks(
    lines: dict[tuple[int, int], TaskLine],
    names: dict[int, str],
    liaisons: dict[int, list[str]],
    reporters: dict[int, list[str]],
) -> list[DepartmentBlock]:
    """A block per department, the most red first, then the most yellow, then plan order."""
    by_department: dict[int, list[TaskLine]] = defaultdict(list)
    for (_task_id, department_id), line in lines.items():
        by_department[department_id].append(line)
    order = {department_id: index for index, department_id in enumerate(names)}
    blocks = [
        DepartmentBlock(
            department_id=department_id,
            name=names[department_id],
            liaisons=tuple(liaisons[department_id]),
            lines=tuple(sorted(department_lines, key=_line_urgency)),
            reporters=tuple(reporters.get(department_id, ())),
        )
        for department_id, department_lines in by_department.items()
    ]

    def rank(block: DepartmentBlock) -> tuple[int, int, int]:
        counts = block.counts
        return -counts[Light.RED], -counts[Light.YELLOW], order[block.department_id]

    blocks.sort(key=rank)
    return blocks


def _line_urgency(line: TaskLine) -> int:
    return URGENCY[line.light]


def _overdue(units: _Units, done_tasks: Container[int], today: date) -> tuple[OverdueTask, ...]:
    found = []
    for task_id, rows in units.by_task.items():
        head = rows[0]
        if not task_overdue(head.deadline, today, done=task_id in done_tasks):
            continue
        found.append(
            OverdueTask(
                task_id=task_id,
                code=head.code,
                title=head.title,
                deadline=head.deadline,
                days=(today - head.deadline).days,
                leads=tuple(row.department_name for row in units.deciders[task_id]),
            )
        )
    found.sort(key=lambda task: -task.days)  # stable: plan order among equals
    return tuple(found)


def _changes(
    data: SummaryData,
    units: _Units,
    *,
    latest_before: dict[tuple[int, int], ReportRow],
    lines: dict[tuple[int, int], TaskLine],
    lights_before: dict[tuple[int, int], Light],
    progress: Sequence[TargetProgress],
) -> Changes:
    names = units.names
    new_reports = []
    for report in data.week_reports:
        head = units.head(report.task_id)
        if head is not None:
            new_reports.append(
                NewReport(
                    department=names.get(report.department_id, ""),
                    liaison=report.liaison_name,
                    code=head.code,
                    title=head.title,
                    status=report.status,
                    created_at=report.created_at,
                )
            )
    status_changes = []
    for report in data.latest:
        key = (report.task_id, report.department_id)
        old = latest_before.get(key)
        if old is not None and old.status is not report.status and key in lines:
            status_changes.append(
                StatusChange(
                    department=names[report.department_id],
                    code=lines[key].code,
                    title=lines[key].title,
                    before=old.status,
                    after=report.status,
                )
            )
    light_changes = [
        LightChange(
            department=names[key[1]],
            code=line.code,
            title=line.title,
            before=lights_before[key],
            after=line.light,
        )
        for key, line in lines.items()
        if key in lights_before and lights_before[key] is not line.light
    ]
    # Worse first (what turned red), then by how far it moved; plan order among equals.
    light_changes.sort(key=lambda change: (URGENCY[change.after], -URGENCY[change.before]))
    return Changes(
        new_reports=tuple(new_reports),
        status_changes=tuple(status_changes),
        light_changes=tuple(light_changes),
        target_changes=tuple(item for item in progress if item.changed),
    )
