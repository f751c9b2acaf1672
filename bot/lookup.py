"""Lookup services behind /tasks, /task, /dept and /overdue: plain values in and out.

- Department names are matched fuzzily (`match_departments`): exact name, then alias, then
  substring, then the name's core (县建设局 -> 建设), and finally the closest names by similarity
  as suggestions.
- Task codes are accepted as stored ("2.1.3") or without the leading top-level section ("1.3")
  when that is unambiguous (`resolve_code`); failing that, a title fragment naming one task.
- A task is overdue when its deadline has passed (the deadline day itself still counts as in
  time) and its lead unit has not reported it done; with several leads, all of them must.
- The traffic light of a department on a task, and whether its line is overdue, follow the
  weekly summary's rule (`bot.lights.line_judgement`): a department that reported its own part
  done is green and not overdue, even on a task whose lead has not finished it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal

from bot import lights
from bot.lights import URGENCY, Light
from bot.people import Access, Actor
from bot.plan_model import Comparator, Role
from storage import lookup as store
from storage.enums import ReportStatus
from storage.lookup import (
    BoardTask,
    CardTarget,
    CardUnit,
    DepartmentCard,
    DepartmentRow,
    TaskCardData,
    TaskCode,
    UnitStatus,
)


def is_overdue(deadline: date, units: Sequence[UnitStatus | CardUnit], today: date) -> bool:
    """Past its deadline and not reported done by its lead (every lead, when there are several)."""
    return lights.task_overdue(deadline, today, done=_task_done(units))


def _task_done(units: Sequence[UnitStatus | CardUnit]) -> bool:
    return lights.task_done(_status(unit) for unit in lights.deciders(units))


def _status(unit: UnitStatus | CardUnit) -> ReportStatus | None:
    if isinstance(unit, CardUnit):
        return unit.latest.status if unit.latest else None
    return unit.status


# Text helpers ---------------------------------------------------------------------------------


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters: whitespace collapsed, cut with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)].rstrip() + "…"


def format_number(value: Decimal) -> str:
    """9000.0000 -> "9000", 47.4200 -> "47.42" (never an exponent)."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def target_progress(target: CardTarget) -> int | None:
    """Percent of the way from the baseline (or zero) to the target, for "at least" targets."""
    growing = target.comparator in (Comparator.AT_LEAST, Comparator.MORE_THAN)
    if target.latest is None or not growing:
        return None
    base = target.baseline or Decimal(0)
    span = target.value - base
    if span <= 0:
        return None
    percent = (target.latest.value - base) / span * 100
    return max(int(percent.to_integral_value(rounding=ROUND_FLOOR)), 0)


# Departments ----------------------------------------------------------------------------------

_BRACKETS = str.maketrans({"<": "(", ">": ")", "〈": "(", "〉": ")", "《": "(", "》": ")"})
_PREFIXES = ("浙江省", "湖州市", "长兴县", "长兴", "县委", "省", "市", "县")
_SUFFIXES = ("管委会", "委员会", "办公室", "分局", "集团", "公司", "中心", "局", "办", "部", "委")
_MIN_SIMILARITY = 0.3


def normalise_name(text: str) -> str:
    """Width, case, spaces and bracket styles folded: 各乡镇<街道、园区> == 各乡镇(街道、园区)."""
    folded = unicodedata.normalize("NFKC", text).translate(_BRACKETS).lower()
    return "".join(folded.split())


def _core(name: str) -> str:
    """The distinctive part of a department name: 县建设局 -> 建设, 长兴县建设局 -> 建设."""
    core = name
    for prefix in _PREFIXES:
        if core.startswith(prefix) and len(core) > len(prefix):
            core = core[len(prefix) :]
            break
    for suffix in _SUFFIXES:
        if core.endswith(suffix) and len(core) > len(suffix):
            core = core[: -len(suffix)]
            break
    return core


@dataclass(frozen=True, slots=True)
class DepartmentMatch:
    """What a department query found: `matches` (one: found; several: choose), else
    `suggestions`, the closest names."""

    query: str
    matches: tuple[DepartmentRow, ...] = ()
    suggestions: tuple[DepartmentRow, ...] = ()

    @property
    def found(self) -> DepartmentRow | None:
        return self.matches[0] if len(self.matches) == 1 else None


def match_departments(
    query: str, departments: Sequence[DepartmentRow], *, suggestions: int = 3
) -> DepartmentMatch:
    """Exact name, then alias, then substring, then core match; else the closest names."""
    wanted = normalise_name(query)
    if not wanted:
        return DepartmentMatch(query)
    spellings = [
        (row, [normalise_name(name) for name in (row.name, *row.aliases)]) for row in departments
    ]
    stages = (
        lambda names: names[0] == wanted,
        lambda names: wanted in names[1:],
        lambda names: any(wanted in name or name in wanted for name in names),
        lambda names: bool(_core(wanted)) and any(_core(wanted) in _core(n) for n in names),
    )
    for stage in stages:
        found = tuple(row for row, names in spellings if stage(names))
        if found:
            return DepartmentMatch(query, matches=found)
    scored = []
    for row, names in spellings:
        score = max(difflib.SequenceMatcher(None, wanted, name).ratio() for name in names)
        if score >= _MIN_SIMILARITY:
            scored.append((score, row))
    scored.sort(key=lambda item: -item[0])  # stable: equal scores keep the department order
    return DepartmentMatch(query, suggestions=tuple(row for _, row in scored[:suggestions]))


async def find_departments(query: str) -> DepartmentMatch:
    return match_departments(query, await store.all_departments())


_MAX_ID = 2**31 - 1  # ids are 32-bit columns: a larger one (forged) is an error in PostgreSQL


def _valid_id(value: int) -> bool:
    return 0 < value <= _MAX_ID


async def department_card(department_id: int) -> DepartmentCard | None:
    """None when there is no such department (ids from callback data may be forged)."""
    if not _valid_id(department_id):
        return None
    return await store.department_card(department_id)


# Tasks of one department ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskLine:
    """One task as seen by one department."""

    task_id: int
    code: str
    title: str
    role: Role
    deadline: date
    status: ReportStatus | None  # the department's latest report
    reported_at: datetime | None
    overdue_days: int  # 0: not overdue
    light: Light


@dataclass(frozen=True, slots=True)
class DepartmentTaskList:
    department_id: int
    name: str
    lines: tuple[TaskLine, ...]  # most urgent first, then document order
    lights: dict[Light, int] = field(default_factory=dict)

    @property
    def lead(self) -> int:
        return sum(1 for line in self.lines if line.role is Role.LEAD)

    @property
    def support(self) -> int:
        return sum(1 for line in self.lines if line.role is Role.SUPPORT)


def _line(task: BoardTask, unit: UnitStatus, today: date, task_done: bool) -> TaskLine:
    judged = lights.line_judgement(unit.status, task.deadline, today, task_done=task_done)
    return TaskLine(
        task_id=task.id,
        code=task.code,
        title=task.title,
        role=unit.role,
        deadline=task.deadline,
        status=unit.status,
        reported_at=unit.reported_at,
        overdue_days=(today - task.deadline).days if judged.overdue else 0,
        light=judged.light,
    )


def _urgency(line: TaskLine) -> tuple[int, bool]:
    """Most urgent light first; among green lines, on track before done."""
    return URGENCY[line.light], line.status is ReportStatus.DONE


async def department_task_list(department_id: int, today: date) -> DepartmentTaskList | None:
    """The department's active tasks with its own latest status; None: no such department."""
    if not _valid_id(department_id):
        return None
    department = next(
        (row for row in await store.all_departments() if row.id == department_id), None
    )
    if department is None:
        return None
    lines = [
        _line(task, unit, today, _task_done(task.units))
        for task in await store.task_board(department_id=department_id)
        for unit in task.units
        if unit.department_id == department_id
    ]
    lines.sort(key=_urgency)  # stable: document order within a light
    counts = lights.count(line.light for line in lines)
    return DepartmentTaskList(department.id, department.name, tuple(lines), counts)


# All departments ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DepartmentSummary:
    department_id: int
    name: str
    lead: int
    support: int
    reported: int  # tasks with at least one report from it
    at_risk: int
    blocked: int
    overdue: int  # tasks it leads that are overdue and it has not reported done (support units
    # are not chased for them)
    done: int

    @property
    def tasks(self) -> int:
        return self.lead + self.support


@dataclass(frozen=True, slots=True)
class Overview:
    departments: tuple[DepartmentSummary, ...]  # red first, then yellow, then document order
    tasks: int
    overdue_tasks: int
    assignments: int
    reported: int
    at_risk: int
    blocked: int


async def department_overview(today: date) -> Overview:
    """One summary per department with active tasks (two queries in all)."""
    board = await store.task_board()
    rows: dict[int, dict] = {}
    overdue_tasks = 0
    for task in board:
        task_done = _task_done(task.units)
        overdue_tasks += lights.task_overdue(task.deadline, today, done=task_done)
        for unit in task.units:
            row = rows.setdefault(
                unit.department_id,
                {
                    "name": unit.department_name,
                    "lead": 0,
                    "support": 0,
                    "reported": 0,
                    "at_risk": 0,
                    "blocked": 0,
                    "overdue": 0,
                    "done": 0,
                },
            )
            row["lead" if unit.role is Role.LEAD else "support"] += 1
            row["reported"] += unit.status is not None
            row["at_risk"] += unit.status is ReportStatus.AT_RISK
            row["blocked"] += unit.status is ReportStatus.BLOCKED
            row["done"] += unit.status is ReportStatus.DONE
            unit_done = lights.line_done(unit.status, task_done=task_done)
            overdue = lights.line_overdue(task.deadline, today, done=unit_done)
            row["overdue"] += overdue and unit.role is Role.LEAD
    summaries = [DepartmentSummary(department_id=key, **row) for key, row in rows.items()]
    summaries.sort(key=lambda s: (-(s.overdue + s.blocked), -s.at_risk))
    return Overview(
        departments=tuple(summaries),
        tasks=len(board),
        overdue_tasks=overdue_tasks,
        assignments=sum(s.tasks for s in summaries),
        reported=sum(s.reported for s in summaries),
        at_risk=sum(s.at_risk for s in summaries),
        blocked=sum(s.blocked for s in summaries),
    )


# Overdue --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverdueLine:
    """An overdue task under one department: its lead (everyone's view) or the viewer's own."""

    task_id: int
    code: str
    title: str
    deadline: date
    days: int
    department_id: int
    department_name: str
    role: Role
    status: ReportStatus | None  # that department's latest report
    light: Light  # that department's line (green when it reported its own part done)


async def overdue_tasks(today: date, department_id: int | None = None) -> list[OverdueLine]:
    """Overdue tasks grouped by department, the most overdue first within each group.

    Without `department_id`: under their lead unit(s), departments with the most overdue tasks
    first. With it: that department's overdue tasks, whatever its role.
    """
    lines = []
    for task in await store.task_board(department_id=department_id, deadline_before=today):
        if not is_overdue(task.deadline, task.units, today):
            continue
        for unit in task.units:
            mine = unit.department_id == department_id if department_id else unit.role is Role.LEAD
            if mine:
                lines.append(
                    OverdueLine(
                        task_id=task.id,
                        code=task.code,
                        title=task.title,
                        deadline=task.deadline,
                        days=(today - task.deadline).days,
                        department_id=unit.department_id,
                        department_name=unit.department_name,
                        role=unit.role,
                        status=unit.status,
                        light=lights.line_judgement(
                            unit.status, task.deadline, today, task_done=False
                        ).light,
                    )
                )
    sizes: dict[int, int] = {}
    first: dict[int, int] = {}
    for index, line in enumerate(lines):
        sizes[line.department_id] = sizes.get(line.department_id, 0) + 1
        first.setdefault(line.department_id, index)
    lines.sort(
        key=lambda line: (-sizes[line.department_id], first[line.department_id], line.deadline)
    )
    return lines


# One task -------------------------------------------------------------------------------------

_CODE_SEPARATORS = re.compile(r"[.。．、,，\-_/\s]+")
_MAX_CODE_PARTS = 6
_MAX_PART_DIGITS = 4


def normalise_code(query: str) -> str | None:
    """ "2.1.3", "２．１．３", "2、1、3", "2.1.3." -> "2.1.3"; None when it is not a code."""
    text = unicodedata.normalize("NFKC", query).strip()
    parts = [part for part in _CODE_SEPARATORS.split(text) if part]
    if not parts or len(parts) > _MAX_CODE_PARTS:
        return None
    if not all(
        part.isascii() and part.isdigit() and len(part) <= _MAX_PART_DIGITS for part in parts
    ):
        return None
    return ".".join(str(int(part)) for part in parts)


@dataclass(frozen=True, slots=True)
class CodeResolution:
    task_id: int | None = None
    candidates: tuple[str, ...] = ()  # several tasks fit: their codes


def resolve_code(query: str, codes: Sequence[TaskCode]) -> CodeResolution:
    """Exact code, then the short form without the top-level section, then a title fragment.

    Two plans with the same code: the most recently imported plan's task. A task withdrawn by a
    revision is found by its exact code only, when no active task has that code (the latest
    withdrawn one).
    """
    withdrawn = [item for item in codes if item.withdrawn]
    codes = [item for item in codes if not item.withdrawn]
    code = normalise_code(query)
    if code is not None:
        exact = [item for item in codes if item.code == code]
        if exact:
            return CodeResolution(max(exact, key=lambda item: item.plan_id).id)
        if gone := [item for item in withdrawn if item.code == code]:
            return CodeResolution(max(gone, key=lambda item: (item.plan_id, item.id)).id)
        short = [item for item in codes if item.code.partition(".")[2] == code]
    else:
        wanted = normalise_name(query)
        short = [item for item in codes if wanted and wanted in normalise_name(item.title)]
    distinct = list(dict.fromkeys(item.code for item in short))
    if len(distinct) == 1:
        return CodeResolution(max(short, key=lambda item: item.plan_id).id)
    return CodeResolution(candidates=tuple(distinct))


async def resolve_task(query: str) -> CodeResolution:
    return resolve_code(query, await store.task_codes())


@dataclass(frozen=True, slots=True)
class TaskCard:
    data: TaskCardData
    overdue_days: int
    readable: frozenset[int]  # departments whose report text and author the viewer may read
    lights: tuple[Light, ...] = ()  # of data.units, in their order

    def can_read(self, unit: CardUnit) -> bool:
        return unit.department_id in self.readable


def readable_departments(actor: Actor, units: Sequence[CardUnit]) -> frozenset[int]:
    """Coordinators and observers read every unit's reports; a liaison reads their own unit's,
    and every unit's on a task their unit leads. Others see statuses only."""
    everyone = frozenset(unit.department_id for unit in units)
    if actor.access in (Access.COORDINATOR, Access.OBSERVER):
        return everyone
    if actor.access is not Access.LIAISON or actor.department_id is None:
        return frozenset()
    leads = {unit.department_id for unit in units if unit.role is Role.LEAD}
    return everyone if actor.department_id in leads else everyone & {actor.department_id}


async def task_card(task_id: int, actor: Actor, today: date) -> TaskCard | None:
    data = await store.task_card(task_id) if _valid_id(task_id) else None
    if data is None:
        return None
    running = data.withdrawn_at is None
    task_done = _task_done(data.units)
    overdue = running and lights.task_overdue(data.deadline, today, done=task_done)
    return TaskCard(
        data=data,
        overdue_days=(today - data.deadline).days if overdue else 0,
        readable=readable_departments(actor, data.units),
        lights=tuple(
            lights.line_judgement(
                _status(unit), data.deadline, today, task_done=task_done, running=running
            ).light
            for unit in data.units
        ),
    )
