"""Plans in the database: `import_plan` stores a plan or revises it in place (the queries other
layers need about plans are in storage.plan_queries).

An import is one transaction: a failure leaves the database as it was. Importing the same document
twice writes nothing. Rows are matched so that ids stay stable across revisions (reports point at
tasks; report values point at targets):

- the plan by doc_number, else by title (only when one side has no doc_number: two different
  文号 are two documents);
- departments by name, or by alias in either direction; aliases are merged, never dropped;
- tasks by content (title and text, then units; bot.plan_revision), not by code alone: a renumbered
  task keeps its id, hence its reports, and takes its new code; a task missing from the revision
  is withdrawn (soft-deleted) with its reports, and restored when a later revision brings it back;
- assignments by (task, department);
- targets by metric and unit within their owner (the plan's goals, or one task), then by unit and
  a similar metric; a target with a new unit is a new target. A target the revision drops is
  withdrawn when reports hold values against it, deleted otherwise;
- requirements by code.

`import_plan(..., dry_run=True)` computes the same result and stores nothing; with
`confirmed=False` an import that would withdraw tasks with reports, or change or withdraw targets
with reported values, stores nothing and raises ConfirmationNeeded.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tortoise.models import Model
from tortoise.transactions import in_transaction

from bot.plan_model import (
    Comparator,
    ParsedPlan,
    ParsedTarget,
    ParsedTask,
    ParsedUnit,
    Role,
)
from bot.plan_revision import (
    TargetContent,
    TaskContent,
    displaced_code,
    display_code,
    match_targets,
    match_tasks,
)
from storage.models import (
    Assignment,
    Department,
    Liaison,
    Plan,
    Report,
    Requirement,
    Target,
    Task,
)

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


@dataclass(frozen=True, slots=True)
class TaskRemoval:
    """A task the revision withdrew, named as the stored plan had it."""

    code: str
    title: str
    reports: int


@dataclass(frozen=True, slots=True)
class FieldChange:
    name: str  # title, text, section, deadline, cycle
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class TargetChange:
    """A target added, changed, restored, withdrawn (it has reported values) or deleted.

    `owner`: the task's code (its new one), or "" for the plan's goals. `reported`: how many
    reports hold a value against the stored target.
    """

    owner: str
    action: str  # "added" | "changed" | "restored" | "withdrawn" | "deleted"
    old: ParsedTarget | None
    new: ParsedTarget | None
    reported: int = 0


@dataclass(frozen=True, slots=True)
class OrphanedDepartment:
    """A department left without any active task while it still has liaisons."""

    name: str
    liaisons: tuple[tuple[str, str | None], ...]  # (full name, username)


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
    tasks_renumbered: tuple[tuple[str, str], ...] = ()  # (old code, new code)
    task_titles: dict[str, str] = field(default_factory=dict)  # new code -> title
    removals: tuple[TaskRemoval, ...] = ()
    field_changes: dict[str, tuple[FieldChange, ...]] = field(default_factory=dict)
    target_changes: tuple[TargetChange, ...] = ()
    departments_orphaned: tuple[OrphanedDepartment, ...] = ()

    @property
    def losses(self) -> list[str]:
        """What needs the operator's confirmation: history moved out of the active plan."""
        lost = [
            f"task {removal.code} {removal.title} would be withdrawn with "
            f"{removal.reports} report(s)"
            for removal in self.removals
            if removal.reports
        ]
        for change in self.target_changes:
            if change.reported and change.action in ("changed", "withdrawn") and change.old:
                owner = f"task {change.owner}" if change.owner else "the plan's goals"
                lost.append(
                    f"target {change.old.metric} ({owner}) would be {change.action} with "
                    f"{change.reported} reported value(s)"
                )
        return lost

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
                self.tasks_renumbered,
            )
        )


class ConfirmationNeeded(Exception):
    """The import would withdraw history (ImportResult.losses); nothing was stored."""

    def __init__(self, result: ImportResult) -> None:
        super().__init__("; ".join(result.losses))
        self.result = result


class _RollBack(Exception):
    def __init__(self, result: ImportResult) -> None:
        super().__init__("roll back")
        self.result = result


async def import_plan(
    parsed: ParsedPlan, source_sha256: str, *, dry_run: bool = False, confirmed: bool = True
) -> ImportResult:
    """Create or update the plan described by `parsed`, all in one transaction.

    `dry_run`: compute the result, store nothing. `confirmed=False`: raise ConfirmationNeeded,
    storing nothing, when the result has losses.
    """
    _validate(parsed)
    try:
        async with in_transaction():
            result = await _Importer(parsed, source_sha256).run()
            if dry_run or (result.losses and not confirmed):
                raise _RollBack(result)
            return result
    except _RollBack as rolled_back:
        if dry_run:
            return rolled_back.result
        raise ConfirmationNeeded(rolled_back.result) from None


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
        self.reports_per_task: Counter[int] = Counter()

    async def run(self) -> ImportResult:
        plan, created = await self._find_or_create_plan()
        await self._sync_departments()
        before = set(
            await Assignment.filter(
                task__plan_id=plan.id, task__withdrawn_at__isnull=True
            ).values_list("department_id", flat=True)
        )
        await self._sync_tasks(plan)
        await self._sync_assignments(plan)
        await self._sync_targets(plan)
        await self._sync_requirements(plan)
        await self._find_orphans(before)
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
        existing = list(await Task.filter(plan_id=plan.id).order_by("position", "id"))
        units: dict[int, set[str]] = defaultdict(set)
        for task_id, name in await Assignment.filter(task__plan_id=plan.id).values_list(
            "task_id", "department__name"
        ):
            units[task_id].add(name)
        self.reports_per_task = Counter(
            await Report.filter(task__plan_id=plan.id).values_list("task_id", flat=True)
        )
        stored = [
            TaskContent(t.code, t.title, t.text, frozenset(units[t.id]), t.withdrawn_at is None)
            for t in existing
        ]
        revised = [
            TaskContent(
                p.code, p.title, p.text, frozenset(self.departments[u.name].name for u in p.units)
            )
            for p in self.parsed.tasks
        ]
        pairs = match_tasks(stored, revised)
        owner = {j: i for i, j in pairs.items()}
        wanted = {task.code for task in self.parsed.tasks}
        final_codes: dict[int, str] = {}
        for j, task in enumerate(existing):
            if j in owner:
                final_codes[j] = self.parsed.tasks[owner[j]].code
            elif task.code in wanted:  # an unmatched task makes way for the document's
                final_codes[j] = displaced_code(task.code, task.id)
        # Codes are unique per plan: move every task whose code changes to a code no task can
        # hold, then give each its final code (all inside the import's transaction).
        moving = [j for j, code in final_codes.items() if existing[j].code != code]
        for j in moving:
            await _update(existing[j], {"code": f"~{existing[j].id}"})
        for j in moving:
            task = existing[j]
            old = stored[j].code
            await _update(task, {"code": final_codes[j]})
            if j in owner and display_code(old) != task.code:
                self.changes["tasks_renumbered"].append((display_code(old), task.code))
        for position, parsed_task in enumerate(self.parsed.tasks):
            values = _task_values(parsed_task)
            if position in pairs:
                task = existing[pairs[position]]
                await self._update_task(task, position, values)
            else:
                task = await Task.create(
                    plan=plan, code=parsed_task.code, position=position, **values
                )
                self.new_codes.add(parsed_task.code)
                self.changes["tasks_added"].append(parsed_task.code)
            self.tasks[parsed_task.code] = task
        now = datetime.now(UTC)
        for j, task in enumerate(existing):
            if j not in owner and task.withdrawn_at is None:
                await _update(task, {"withdrawn_at": now})
                code = display_code(stored[j].code)
                self.changes["tasks_removed"].append(code)
                self.changes["removals"].append(
                    TaskRemoval(code, task.title, self.reports_per_task[task.id])
                )

    async def _update_task(self, task: Task, position: int, values: dict[str, Any]) -> None:
        if task.withdrawn_at is not None:
            self.changes["tasks_added"].append(task.code)
            self.changes["tasks_restored"].append(task.code)
        before = {name: getattr(task, name) for name in values}
        changed = await _update(task, {**values, "position": position, "withdrawn_at": None})
        if content := [name for name in changed if name not in ("position", "withdrawn_at")]:
            self.changes["tasks_changed"].append((task.code, content))
            self.changes["field_changes"].append(
                (
                    task.code,
                    tuple(
                        FieldChange(name, _shown(before[name]), _shown(values[name]))
                        for name in content
                    ),
                )
            )
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
        for target in await Target.filter(plan_id=plan.id).order_by("position", "id"):
            current[target.task_id].append(target)
        reported: Counter[int] = Counter()
        for values in await Report.filter(task__plan_id=plan.id).values_list("values", flat=True):
            reported.update({int(item["target_id"]) for item in values or ()})
        owners: list[tuple[Task | None, tuple[ParsedTarget, ...]]] = [(None, self.parsed.goals)]
        owners += [(self.tasks[task.code], task.targets) for task in self.parsed.tasks]
        now = datetime.now(UTC)
        to_delete: list[int] = []
        for owner, parsed_targets in owners:
            rows = current.get(owner.id if owner else None, [])
            counted = owner is None or owner.code not in self.new_codes
            label = owner.code if owner else ""
            matched = match_targets(
                [TargetContent(r.metric, r.unit, r.withdrawn_at is None) for r in rows],
                [TargetContent(t.metric, t.unit) for t in parsed_targets],
            )
            for position, (parsed_target, index) in enumerate(
                zip(parsed_targets, matched, strict=True)
            ):
                values = {**_target_values(parsed_target), "position": position}
                if index is None:
                    await Target.create(plan=plan, task=owner, **values)
                    if counted:
                        self._target_change(label, "added", None, parsed_target)
                    continue
                target = rows[index]
                old = _parsed_target(target)
                restored = target.withdrawn_at is not None
                changed = await _update(target, {**values, "withdrawn_at": None})
                if restored:
                    self._target_change(label, "restored", old, parsed_target)
                elif [name for name in changed if name not in ("position", "text")]:
                    self._target_change(label, "changed", old, parsed_target, reported[target.id])
                elif changed:
                    self.counters["targets_changed"] += 1
            used = {index for index in matched if index is not None}
            dropped = [row for index, row in enumerate(rows) if index not in used]
            to_delete += await self._drop_targets(label, dropped, reported, now)
        # Targets of withdrawn tasks stay, like the tasks: a restored task finds them again.
        if to_delete:
            await Target.filter(id__in=to_delete).delete()

    async def _drop_targets(
        self, owner: str, rows: list[Target], reported: Counter[int], now: datetime
    ) -> list[int]:
        """Withdraw the dropped targets that hold reported values; return the others' ids."""
        to_delete: list[int] = []
        for target in rows:
            if target.withdrawn_at is not None:
                continue
            if reported[target.id]:
                await _update(target, {"withdrawn_at": now})
                action = "withdrawn"
            else:
                to_delete.append(target.id)
                action = "deleted"
            self._target_change(owner, action, _parsed_target(target), None, reported[target.id])
        return to_delete

    def _target_change(
        self,
        owner: str,
        action: str,
        old: ParsedTarget | None,
        new: ParsedTarget | None,
        reported: int = 0,
    ) -> None:
        self.changes["target_changes"].append(TargetChange(owner, action, old, new, reported))
        self.counters["targets_changed"] += 1

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

    async def _find_orphans(self, before: set[int]) -> None:
        """Departments this plan gave work to, left with no active task in any plan."""
        still = set(
            await Assignment.filter(
                task__withdrawn_at__isnull=True, department_id__in=list(before)
            ).values_list("department_id", flat=True)
        )
        gone = before - still
        if not gone:
            return
        people: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
        for department_id, name, username in (
            await Liaison.filter(department_id__in=list(gone), active=True)
            .order_by("id")
            .values_list("department_id", "full_name", "username")
        ):
            people[department_id].append((name, username))
        for department in await Department.filter(id__in=list(people)).order_by("id"):
            self.changes["departments_orphaned"].append(
                OrphanedDepartment(department.name, tuple(people[department.id]))
            )

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
            tasks_renumbered=tuple(changes["tasks_renumbered"]),
            task_titles={task.code: task.title for task in parsed.tasks},
            removals=tuple(changes["removals"]),
            field_changes=dict(changes["field_changes"]),
            target_changes=tuple(changes["target_changes"]),
            departments_orphaned=tuple(changes["departments_orphaned"]),
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


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _parsed_target(target: Target) -> ParsedTarget:
    return ParsedTarget(
        text=target.text,
        metric=target.metric,
        value=Decimal(target.value),
        unit=target.unit,
        comparator=Comparator(target.comparator),
        deadline=target.deadline,
        baseline=None if target.baseline is None else Decimal(target.baseline),
    )


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
