"""Plans in the database: `import_plan`, and the queries other layers need about plans, tasks and
departments (at the end of this module).

An import is one transaction: a failure leaves the database as it was. Importing the same document
twice writes nothing. Rows are matched so that ids stay stable across revisions (reports point at
tasks; report values point at targets):

- the plan by doc_number, else by title (only when one side has no doc_number: two different
  文号 are two documents);
- departments by name, or by alias in either direction; aliases are merged, never dropped;
- tasks by code; a task missing from the revision is withdrawn (soft-deleted), and restored when a
  later revision brings it back;
- assignments by (task, department);
- targets by metric and unit within their owner (the plan's goals, or one task), then by
  position;
- requirements by code.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from tortoise.models import Model
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot.plan_model import (
    DepartmentKind,
    ParsedPlan,
    ParsedTarget,
    ParsedTask,
    ParsedUnit,
    Role,
)
from storage.models import Assignment, Department, Plan, Requirement, Target, Task

UnitRoles = tuple[tuple[str, Role], ...]  # (department name, role) in the task's order

_DECIMAL_STEP = Decimal("0.0001")  # Target.value and .baseline have 4 decimal places
_DECIMAL_LIMIT = Decimal(10) ** 16  # max_digits=20 minus those 4


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """How many of each the imported document holds."""

    tasks: int
    departments: int
    targets: int
    requirements: int


@dataclass(frozen=True)
class ImportResult:
    """What an import did. On a first import every task is in `tasks_added`.

    `tasks_restored` lists withdrawn tasks the document brought back; they are in `tasks_added`
    too. `targets_changed` and `requirements_changed` count rows added, changed or removed
    (targets of newly added tasks are not counted: they come with the task).
    `positions_updated` counts rows whose only change was their place in the document.
    """

    plan_id: int
    created: bool
    counts: ImportCounts
    tasks_added: tuple[str, ...] = ()
    tasks_removed: tuple[str, ...] = ()
    tasks_restored: tuple[str, ...] = ()
    tasks_changed: dict[str, list[str]] = field(default_factory=dict)
    units_reassigned: dict[str, tuple[UnitRoles, UnitRoles]] = field(default_factory=dict)
    targets_changed: int = 0
    requirements_changed: int = 0
    plan_fields_changed: tuple[str, ...] = ()
    departments_added: tuple[str, ...] = ()
    departments_updated: tuple[str, ...] = ()
    positions_updated: int = 0

    @property
    def changed(self) -> bool:
        return self.created or any(
            (
                self.tasks_added,
                self.tasks_removed,
                self.tasks_changed,
                self.units_reassigned,
                self.targets_changed,
                self.requirements_changed,
                self.plan_fields_changed,
                self.departments_added,
                self.departments_updated,
                self.positions_updated,
            )
        )


async def import_plan(parsed: ParsedPlan, source_sha256: str) -> ImportResult:
    """Create or update the plan described by `parsed`, all in one transaction."""
    _validate(parsed)
    async with in_transaction():
        return await _Importer(parsed, source_sha256).run()


def _validate(parsed: ParsedPlan) -> None:
    """Refuse a document the tables cannot hold, before anything is written."""
    for kind, codes in (
        ("task", [task.code for task in parsed.tasks]),
        ("requirement", [item.code for item in parsed.requirements]),
    ):
        if duplicates := sorted({code for code in codes if codes.count(code) > 1}):
            raise ValueError(f"duplicate {kind} codes: {', '.join(duplicates)}")
    targets = [*parsed.goals, *(target for task in parsed.tasks for target in task.targets)]
    for target in targets:
        for number in (target.value, target.baseline):
            if number is not None and abs(number) >= _DECIMAL_LIMIT:
                raise ValueError(f"target value out of range: {target.text}")


def _decimal(value: Decimal | None) -> Decimal | None:
    # Stored with 4 decimal places: compare what the database will hold, or a re-import of a
    # value such as 1.23456 would always look changed.
    return None if value is None else value.quantize(_DECIMAL_STEP)


def _changed_fields(row: Model, values: dict[str, Any]) -> list[str]:
    return sorted(name for name, value in values.items() if getattr(row, name) != value)


async def _update(row: Model, values: dict[str, Any]) -> list[str]:
    """Write the fields of `values` that differ from `row`; return their names."""
    changed = _changed_fields(row, values)
    if changed:
        for name in changed:
            setattr(row, name, values[name])
        await row.save(update_fields=changed)
    return changed


class _Importer:
    """The state of one import; `run` is the whole algorithm, top to bottom."""

    def __init__(self, parsed: ParsedPlan, source_sha256: str) -> None:
        self.parsed = parsed
        self.source_sha256 = source_sha256
        self.departments: dict[str, Department] = {}  # unit name as written -> department
        self.department_names: dict[int, str] = {}
        self.tasks: dict[str, Task] = {}  # code -> task, for the tasks in the document
        self.new_codes: set[str] = set()
        self.changes: dict[str, Any] = defaultdict(list)
        self.counters: dict[str, int] = defaultdict(int)

    async def run(self) -> ImportResult:
        plan, created = await self._find_or_create_plan()
        await self._sync_departments()
        await self._sync_tasks(plan)
        await self._sync_assignments(plan)
        await self._sync_targets(plan)
        await self._sync_requirements(plan)
        result = self._result(plan, created)
        if result.changed and not created:
            # Bump updated_at whenever anything in the plan changed, not only its own columns.
            await plan.save(update_fields=[*result.plan_fields_changed, "updated_at"])
        return result

    async def _find_or_create_plan(self) -> tuple[Plan, bool]:
        parsed = self.parsed
        plan = None
        if parsed.doc_number:
            plan = await Plan.get_or_none(doc_number=parsed.doc_number)
        if plan is None:
            candidates = Plan.filter(title=parsed.title).order_by("-id")
            if parsed.doc_number:
                candidates = candidates.filter(doc_number__isnull=True)
            plan = await candidates.first()
        values = {
            "title": parsed.title,
            "doc_number": parsed.doc_number,
            "issuer": parsed.issuer,
            "issued_on": parsed.issued_on,
            "horizon": parsed.horizon,
            "source_sha256": self.source_sha256,
        }
        if plan is None:
            return await Plan.create(**values), True
        if parsed.doc_number is None:
            del values["doc_number"]  # a document read without its 文号 does not erase it
        # Saved at the end of run(), together with updated_at.
        changed = _changed_fields(plan, values)
        for name in changed:
            setattr(plan, name, values[name])
        self.changes["plan_fields_changed"] = changed
        return plan, False

    async def _sync_departments(self) -> None:
        existing = await Department.all().order_by("id")
        by_name = {department.name: department for department in existing}
        by_alias: dict[str, Department] = {}
        for department in existing:
            for alias in department.aliases:
                by_alias.setdefault(alias, department)
        for unit, aliases in _units_with_all_aliases(self.parsed):
            department = (
                by_name.get(unit.name)
                or by_alias.get(unit.name)
                or next((by_name[alias] for alias in aliases if alias in by_name), None)
            )
            if department is None:
                department = await Department.create(
                    name=unit.name, aliases=list(aliases), kind=unit.kind
                )
                by_name[unit.name] = department
                self.changes["departments_added"].append(unit.name)
            elif await _update(department, _department_values(department, unit, aliases)):
                self.changes["departments_updated"].append(department.name)
            for alias in department.aliases:
                by_alias.setdefault(alias, department)
            self.departments[unit.name] = department
        self.department_names = {d.id: d.name for d in [*existing, *self.departments.values()]}

    async def _sync_tasks(self, plan: Plan) -> None:
        existing = {
            task.code: task for task in await Task.filter(plan_id=plan.id).order_by("position")
        }
        for position, parsed_task in enumerate(self.parsed.tasks):
            values = _task_values(parsed_task)
            task = existing.get(parsed_task.code)
            if task is None:
                task = await Task.create(
                    plan=plan, code=parsed_task.code, position=position, **values
                )
                self.new_codes.add(parsed_task.code)
                self.changes["tasks_added"].append(parsed_task.code)
            else:
                await self._update_task(task, position, values)
            self.tasks[parsed_task.code] = task
        now = datetime.now(UTC)
        for code, task in existing.items():
            if code not in self.tasks and task.withdrawn_at is None:
                await _update(task, {"withdrawn_at": now})
                self.changes["tasks_removed"].append(code)

    async def _update_task(self, task: Task, position: int, values: dict[str, Any]) -> None:
        if task.withdrawn_at is not None:
            self.changes["tasks_added"].append(task.code)
            self.changes["tasks_restored"].append(task.code)
        changed = await _update(task, {**values, "position": position, "withdrawn_at": None})
        if content := [name for name in changed if name not in ("position", "withdrawn_at")]:
            self.changes["tasks_changed"].append((task.code, content))
        elif changed == ["position"]:
            self.counters["positions_updated"] += 1

    async def _sync_assignments(self, plan: Plan) -> None:
        current: dict[int, list[Assignment]] = defaultdict(list)
        for assignment in await Assignment.filter(task__plan_id=plan.id).order_by("position"):
            current[assignment.task_id].append(assignment)
        to_create: list[Assignment] = []
        to_delete: list[int] = []
        for parsed_task in self.parsed.tasks:
            task = self.tasks[parsed_task.code]
            wanted = self._wanted_assignments(parsed_task)
            rows = current.get(task.id, [])
            before = tuple((self.department_names[a.department_id], a.role) for a in rows)
            after = tuple((department.name, role) for department, role in wanted)
            if parsed_task.code not in self.new_codes and set(before) != set(after):
                self.changes["units_reassigned"].append((parsed_task.code, (before, after)))
            by_department = {assignment.department_id: assignment for assignment in rows}
            for position, (department, role) in enumerate(wanted):
                assignment = by_department.pop(department.id, None)
                if assignment is None:
                    to_create.append(
                        Assignment(task=task, department=department, role=role, position=position)
                    )
                    continue
                changed = await _update(assignment, {"role": role, "position": position})
                if changed == ["position"]:
                    self.counters["positions_updated"] += 1
            to_delete += [assignment.id for assignment in by_department.values()]
        if to_delete:
            await Assignment.filter(id__in=to_delete).delete()
        if to_create:
            await Assignment.bulk_create(to_create)

    def _wanted_assignments(self, parsed_task: ParsedTask) -> list[tuple[Department, Role]]:
        # Two spellings of one unit (a name and its alias) in one clause: the first one counts.
        wanted: dict[int, tuple[Department, Role]] = {}
        for unit in parsed_task.units:
            department = self.departments[unit.name]
            wanted.setdefault(department.id, (department, unit.role))
        return list(wanted.values())

    async def _sync_targets(self, plan: Plan) -> None:
        current: dict[int | None, list[Target]] = defaultdict(list)
        for target in await Target.filter(plan_id=plan.id).order_by("position"):
            current[target.task_id].append(target)
        owners: list[tuple[Task | None, tuple[ParsedTarget, ...]]] = [(None, self.parsed.goals)]
        owners += [(self.tasks[task.code], task.targets) for task in self.parsed.tasks]
        to_delete: list[int] = []
        for owner, parsed_targets in owners:
            rows = current.get(owner.id if owner else None, [])
            counted = owner is None or owner.code not in self.new_codes
            matched, unmatched = _match_targets(rows, parsed_targets)
            for position, (parsed_target, target) in enumerate(
                zip(parsed_targets, matched, strict=True)
            ):
                values = {**_target_values(parsed_target), "position": position}
                if target is None:
                    await Target.create(plan=plan, task=owner, **values)
                    self.counters["targets_changed"] += int(counted)
                elif await _update(target, values):
                    self.counters["targets_changed"] += 1
            to_delete += [target.id for target in unmatched]
        # Targets of withdrawn tasks stay, like the tasks: a restored task finds them again.
        if to_delete:
            await Target.filter(id__in=to_delete).delete()
            self.counters["targets_changed"] += len(to_delete)

    async def _sync_requirements(self, plan: Plan) -> None:
        rows = {item.code: item for item in await Requirement.filter(plan_id=plan.id)}
        for position, parsed_item in enumerate(self.parsed.requirements):
            values = {"section": parsed_item.section, "title": parsed_item.title}
            values["text"] = parsed_item.text
            item = rows.pop(parsed_item.code, None)
            if item is None:
                await Requirement.create(
                    plan=plan, code=parsed_item.code, position=position, **values
                )
                self.counters["requirements_changed"] += 1
                continue
            changed = await _update(item, {**values, "position": position})
            if changed == ["position"]:
                self.counters["positions_updated"] += 1
            elif changed:
                self.counters["requirements_changed"] += 1
        if rows:
            await Requirement.filter(id__in=[item.id for item in rows.values()]).delete()
            self.counters["requirements_changed"] += len(rows)

    def _result(self, plan: Plan, created: bool) -> ImportResult:
        parsed = self.parsed
        changes = self.changes
        return ImportResult(
            plan_id=plan.id,
            created=created,
            counts=ImportCounts(
                tasks=len(parsed.tasks),
                departments=len({d.id for d in self.departments.values()}),
                targets=len(parsed.goals) + sum(len(task.targets) for task in parsed.tasks),
                requirements=len(parsed.requirements),
            ),
            tasks_added=tuple(changes["tasks_added"]),
            tasks_removed=tuple(changes["tasks_removed"]),
            tasks_restored=tuple(changes["tasks_restored"]),
            tasks_changed=dict(changes["tasks_changed"]),
            units_reassigned=dict(changes["units_reassigned"]),
            targets_changed=self.counters["targets_changed"],
            requirements_changed=self.counters["requirements_changed"],
            plan_fields_changed=tuple(changes["plan_fields_changed"]),
            departments_added=tuple(changes["departments_added"]),
            departments_updated=tuple(changes["departments_updated"]),
            positions_updated=self.counters["positions_updated"],
        )


def _units_with_all_aliases(parsed: ParsedPlan) -> list[tuple[ParsedUnit, tuple[str, ...]]]:
    """Each distinct unit in document order, with the aliases of all its occurrences."""
    aliases: dict[str, list[str]] = defaultdict(list)
    for task in parsed.tasks:
        for unit in task.units:
            aliases[unit.name] += [a for a in unit.aliases if a not in aliases[unit.name]]
    return [(unit, tuple(aliases[unit.name])) for unit in parsed.units()]


def _department_values(
    department: Department, unit: ParsedUnit, aliases: tuple[str, ...]
) -> dict[str, Any]:
    merged = [*department.aliases]
    for alias in (unit.name, *aliases):
        if alias != department.name and alias not in merged:
            merged.append(alias)
    values: dict[str, Any] = {"aliases": merged}
    # The kind follows the unit written under the department's own name only: units reached
    # through an alias may be classified differently, and would flip it on every import.
    if unit.name == department.name:
        values["kind"] = unit.kind
    return values


def _task_values(task: ParsedTask) -> dict[str, Any]:
    return {
        "section": task.section,
        "title": task.title,
        "text": task.text,
        "deadline": task.deadline,
        "cycle": task.cycle.value if task.cycle else None,
    }


def _match_targets(
    rows: list[Target], parsed: tuple[ParsedTarget, ...]
) -> tuple[list[Target | None], list[Target]]:
    """Pair stored targets with the document's: same metric and unit first, then same place.

    Reports store values against target ids, so a target inserted before others in a revision
    must not shift the later ones onto each other's rows.
    """
    free = list(rows)
    matched: list[Target | None] = [None] * len(parsed)
    for index, target in enumerate(parsed):
        row = next((r for r in free if (r.metric, r.unit) == (target.metric, target.unit)), None)
        if row is not None:
            matched[index] = row
            free.remove(row)
    for index in range(len(parsed)):
        row = next((r for r in free if r.position == index), None)
        if matched[index] is None and row is not None:
            matched[index] = row
            free.remove(row)
    return matched, free


def _target_values(target: ParsedTarget) -> dict[str, Any]:
    return {
        "text": target.text,
        "metric": target.metric,
        "value": _decimal(target.value),
        "unit": target.unit,
        "comparator": target.comparator,
        "deadline": target.deadline,
        "baseline": _decimal(target.baseline),
    }


# Queries ------------------------------------------------------------------------------------
# Read-only, returning plain dataclasses, each a fixed number of queries whatever the plan's size
# (no N+1). Only active tasks count: a task withdrawn by a revision is history, not work.


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
    goals = await Target.filter(plan_id=plan.id, task_id__isnull=True).count()
    task_targets = await Target.filter(
        plan_id=plan.id, task__withdrawn_at__isnull=True, task_id__isnull=False
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
