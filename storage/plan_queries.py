"""Read-only queries about plans, tasks and departments, for the other layers.

Each returns plain values in a fixed number of queries whatever the plan's size (no N+1). Only
active tasks count: a task withdrawn by a revision is history, not work (storage.plans imports
and revises plans).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from tortoise.queryset import QuerySet

from bot.plan_model import DepartmentKind, Role
from storage.models import Assignment, Department, Plan, Requirement, Target, Task


class DepartmentTask(NamedTuple):
    code: str
    title: str
    role: Role
    deadline: date


@dataclass(frozen=True, slots=True)
class DepartmentTasks:
    name: str
    kind: DepartmentKind
    tasks: tuple[DepartmentTask, ...]


@dataclass(frozen=True, slots=True)
class DepartmentCount:
    name: str
    kind: DepartmentKind
    lead: int
    support: int


@dataclass(frozen=True, slots=True)
class PlanSummary:
    id: int
    title: str
    doc_number: str | None
    issuer: str | None
    issued_on: date | None
    horizon: date
    updated_at: datetime
    tasks: int  # active
    withdrawn_tasks: int
    departments: int  # with at least one active task
    targets: int  # plan goals and targets of active tasks
    requirements: int


_ASSIGNMENT_COLUMNS = (
    "department_id",
    "department__name",
    "department__kind",
    "role",
    "task__code",
    "task__title",
    "task__deadline",
)


async def find_department(name_or_alias: str) -> Department | None:
    """The department with this exact name or, failing that, this alias."""
    name = name_or_alias.strip()
    if department := await Department.get_or_none(name=name):
        return department
    # A few dozen rows: scanning them is simpler than dialect-specific JSON containment.
    for department in await Department.all().order_by("id"):
        if name in department.aliases:
            return department
    return None


async def tasks_by_department(
    department_name: str | None = None, *, plan_id: int | None = None
) -> list[DepartmentTasks]:
    """Active tasks grouped by department, in order of the department's first appearance.

    With `department_name` (a name or an alias): that department only, possibly with no tasks;
    an empty list when no department matches.
    """
    query = _active_assignments(plan_id)
    if department_name is not None:
        department = await find_department(department_name)
        if department is None:
            return []
        query = query.filter(department_id=department.id)
    departments: dict[int, tuple[str, DepartmentKind]] = {}
    tasks: dict[int, list[DepartmentTask]] = defaultdict(list)
    for row in await query.values(*_ASSIGNMENT_COLUMNS):
        key = row["department_id"]
        departments.setdefault(
            key, (row["department__name"], DepartmentKind(row["department__kind"]))
        )
        tasks[key].append(
            DepartmentTask(
                row["task__code"], row["task__title"], Role(row["role"]), row["task__deadline"]
            )
        )
    if department_name is not None and not departments:
        return [DepartmentTasks(department.name, DepartmentKind(department.kind), ())]
    return [
        DepartmentTasks(name, kind, tuple(tasks[key])) for key, (name, kind) in departments.items()
    ]


async def department_task_counts(*, plan_id: int | None = None) -> list[DepartmentCount]:
    """Lead and support counts of active tasks for every department.

    Departments with tasks come in order of first appearance; those without any follow by name.
    """
    rows = await _active_assignments(plan_id).values("department_id", "role")
    departments = {
        row["id"]: row
        for row in await Department.all().order_by("name").values("id", "name", "kind")
    }
    lead: Counter[int] = Counter()
    support: Counter[int] = Counter()
    for row in rows:
        (lead if Role(row["role"]) is Role.LEAD else support)[row["department_id"]] += 1
    with_tasks = list(dict.fromkeys(row["department_id"] for row in rows))
    order = with_tasks + [key for key in departments if key not in lead and key not in support]
    return [
        DepartmentCount(
            departments[key]["name"],
            DepartmentKind(departments[key]["kind"]),
            lead[key],
            support[key],
        )
        for key in order
    ]


async def get_plan_summary() -> PlanSummary | None:
    """The most recently imported plan with its counts, or None before the first import."""
    plan = await Plan.all().order_by("-created_at", "-id").first()
    if plan is None:
        return None
    active = Task.filter(plan_id=plan.id, withdrawn_at__isnull=True)
    tasks = await active.count()
    withdrawn = await Task.filter(plan_id=plan.id, withdrawn_at__isnull=False).count()
    department_ids = await Assignment.filter(
        task__plan_id=plan.id, task__withdrawn_at__isnull=True
    ).values_list("department_id", flat=True)
    targets = Target.filter(plan_id=plan.id, withdrawn_at__isnull=True)
    goals = await targets.filter(task_id__isnull=True).count()
    task_targets = await targets.filter(
        task__withdrawn_at__isnull=True, task_id__isnull=False
    ).count()
    return PlanSummary(
        id=plan.id,
        title=plan.title,
        doc_number=plan.doc_number,
        issuer=plan.issuer,
        issued_on=plan.issued_on,
        horizon=plan.horizon,
        updated_at=plan.updated_at,
        tasks=tasks,
        withdrawn_tasks=withdrawn,
        departments=len(set(department_ids)),
        targets=goals + task_targets,
        requirements=await Requirement.filter(plan_id=plan.id).count(),
    )


def _active_assignments(plan_id: int | None) -> QuerySet[Assignment]:
    query = Assignment.filter(task__withdrawn_at__isnull=True)
    if plan_id is not None:
        query = query.filter(task__plan_id=plan_id)
    # Document order: plan, task, then the unit's place in the task's responsibility clause.
    return query.order_by("task__plan_id", "task__position", "position")
