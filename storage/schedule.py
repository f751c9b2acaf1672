"""What the send planner needs from the database, and the coordinators' calendar additions.

`load_schedule_inputs` reads active tasks with their rules and deadlines, assignments, target
deadlines, the reports that answer cycles, department names and active liaisons in a fixed
number of queries (seven), whatever the plan's size.

The calendar additions (bot.workcalendar) are kept in bot_settings, one row per declared year
(key `calendar:2027`, value: that year's part of the calendar file), so loading 2028 later leaves
2027 alone.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.plan_model import Role
from bot.schedule import PlanInput, ScheduleInputs, TaskInput
from bot.workcalendar import CalendarError, CalendarExtra, WorkCalendar
from storage.enums import LiaisonRole
from storage.models import Assignment, BotSetting, Department, Liaison, Plan, Report, Target, Task

CALENDAR_KEY_PREFIX = "calendar:"


async def load_schedule_inputs(reports_since: datetime | None = None) -> ScheduleInputs:
    """The planner's inputs for every plan's active tasks.

    `reported` holds the (department, task, cycle key) of reports not withdrawn, created at or
    after `reports_since` (all when None): pass a year before the planning window's start.
    """
    plans = await Plan.all().order_by("id").values("id", "title", "default_cycle")
    tasks = (
        await Task.filter(withdrawn_at__isnull=True)
        .order_by("plan_id", "position")
        .values("id", "plan_id", "code", "title", "deadline", "cycle")
    )
    assignments = (
        await Assignment.filter(task__withdrawn_at__isnull=True)
        .order_by("task_id", "position")
        .values_list("task_id", "department_id", "role")
    )
    targets = (
        await Target.filter(deadline__isnull=False, withdrawn_at__isnull=True)
        .filter(Q(task_id__isnull=True) | Q(task__withdrawn_at__isnull=True))
        .order_by("plan_id", "task_id", "position")
        .values_list("id", "plan_id", "task_id", "deadline")
    )
    return ScheduleInputs(
        plans=_plans(plans, targets),
        tasks=_tasks(tasks, assignments, targets),
        departments=dict(await Department.all().order_by("id").values_list("id", "name")),
        liaisons=await _liaisons(),
        reported=await _reported(reports_since),
    )


def _plans(rows: list[dict], targets: list[tuple]) -> tuple[PlanInput, ...]:
    goals = defaultdict(list)
    for target_id, plan_id, task_id, deadline in targets:
        if task_id is None:
            goals[plan_id].append((target_id, deadline))
    return tuple(
        PlanInput(row["id"], row["title"], row["default_cycle"], tuple(goals[row["id"]]))
        for row in rows
    )


def _tasks(
    rows: list[dict], assignments: list[tuple], targets: list[tuple]
) -> tuple[TaskInput, ...]:
    units = defaultdict(list)
    for task_id, department_id, role in assignments:
        units[task_id].append((department_id, Role(role)))
    deadlines = defaultdict(list)
    for target_id, _, task_id, deadline in targets:
        if task_id is not None:
            deadlines[task_id].append((target_id, deadline))
    return tuple(
        TaskInput(
            id=row["id"],
            plan_id=row["plan_id"],
            code=row["code"],
            title=row["title"],
            deadline=row["deadline"],
            rule=row["cycle"],
            assignments=tuple(units[row["id"]]),
            targets=tuple(deadlines[row["id"]]),
        )
        for row in rows
    )


async def _liaisons() -> dict[int, tuple[int, ...]]:
    """Active liaisons per department, the lead (主联络员) first, then by joining order."""
    rows = (
        await Liaison.filter(active=True, role=LiaisonRole.LIAISON, department_id__isnull=False)
        .order_by("department_id", "-is_lead", "id")
        .values_list("department_id", "id")
    )
    people = defaultdict(list)
    for department_id, liaison_id in rows:
        people[department_id].append(liaison_id)
    return {department: tuple(ids) for department, ids in people.items()}


async def _reported(since: datetime | None) -> frozenset[tuple[int, int, str]]:
    query = Report.filter(withdrawn_at__isnull=True, cycle_key__isnull=False)
    if since is not None:
        query = query.filter(created_at__gte=since)
    rows = await query.distinct().values_list("department_id", "task_id", "cycle_key")
    return frozenset((department, task, key) for department, task, key in rows)


# Calendar additions ---------------------------------------------------------------------------


async def load_calendar_extra() -> CalendarExtra:
    """Every year the coordinators have added, merged (empty when none)."""
    rows = (
        await BotSetting.filter(key__startswith=CALENDAR_KEY_PREFIX)
        .order_by("key")
        .values_list("key", "value")
    )
    extra = CalendarExtra()
    for key, value in rows:
        try:
            extra = extra.merged(CalendarExtra.parse(value, source=key))
        except CalendarError as exc:
            raise CalendarError(f"stored calendar is damaged: {exc}") from None
    return extra


async def load_work_calendar() -> WorkCalendar:
    return WorkCalendar(await load_calendar_extra())


async def save_calendar_extra(extra: CalendarExtra) -> list[int]:
    """Store the years `extra` declares, each replacing what was stored for it; their list."""
    years = sorted(extra.years)
    async with in_transaction():
        for year in years:
            await BotSetting.update_or_create(
                key=f"{CALENDAR_KEY_PREFIX}{year}", defaults={"value": extra.to_text(year)}
            )
    return years
