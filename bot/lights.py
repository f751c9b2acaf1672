"""The traffic light (红黄绿灯) and "overdue": one rule for the weekly summary and the lookups.

Pure functions of dates and statuses (no aiogram, no Tortoise, no clock). `bot.summary` applies
them to every (task, department) line of the weekly summary; `bot.lookup` to /tasks, /task and
/overdue, with the same results wherever both show a line.

- A task is done when its lead unit(s) have reported it done (every lead, when there are
  several; every unit, when the task names no lead): `task_done`.
- A task is overdue when its deadline has passed (the deadline day itself still counts as in
  time) and it is not done: `task_overdue`.
- A department's line on a task is done when the task is done or the department itself has
  reported it done; it is overdue when the deadline has passed and the line is not done:
  `line_overdue`. So a unit that reported its own part done is not overdue, even while the
  lead has not finished the task.
- The light of a line (`judge`, `line_light`), the most urgent reason wins:
  🔴 red: overdue, blocked or silent (no report for two reporting cycles);
  🟡 yellow: at risk, or behind pace (lead units only);
  ⚪ pending: no report yet and not silent either;
  🟢 green: on track, or done (a task done by its lead(s) is green for every unit on it).
  Silence and pace need the reporting cycles and the targets: the weekly summary works them
  out; the lookups, which show the latest reports, pass neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from itertools import product
from typing import Protocol, TypeVar

from bot.plan_model import Role
from storage.enums import ReportStatus


class Light(StrEnum):
    """Most urgent first (the order sorts lines and departments)."""

    RED = "red"
    YELLOW = "yellow"
    PENDING = "pending"  # no report yet, not silent either
    GREEN = "green"


URGENCY = {light: rank for rank, light in enumerate(Light)}


class Reason(StrEnum):
    OVERDUE = "overdue"
    BLOCKED = "blocked"
    SILENT = "silent"
    AT_RISK = "at_risk"
    BEHIND_PACE = "behind_pace"
    NO_REPORT = "no_report"
    ON_TRACK = "on_track"
    DONE = "done"


REASON_LIGHT = {
    Reason.OVERDUE: Light.RED,
    Reason.BLOCKED: Light.RED,
    Reason.SILENT: Light.RED,
    Reason.AT_RISK: Light.YELLOW,
    Reason.BEHIND_PACE: Light.YELLOW,
    Reason.NO_REPORT: Light.PENDING,
    Reason.ON_TRACK: Light.GREEN,
    Reason.DONE: Light.GREEN,
}

# Done and overdue -----------------------------------------------------------------------------


class _Unit(Protocol):
    @property
    def role(self) -> Role: ...


U = TypeVar("U", bound=_Unit)


def deciders(units: Sequence[U]) -> list[U]:
    """Whose report of "done" finishes a task: its lead(s), or every unit when none leads."""
    return [unit for unit in units if unit.role is Role.LEAD] or list(units)


def task_done(decider_statuses: Iterable[ReportStatus | None]) -> bool:
    """Every decider's latest report says "done" (a task with no decider is not done)."""
    statuses = list(decider_statuses)
    return bool(statuses) and all(status is ReportStatus.DONE for status in statuses)


def past_due(deadline: date, today: date) -> bool:
    """The deadline has passed: the deadline day itself still counts as in time."""
    return deadline < today


def task_overdue(deadline: date, today: date, *, done: bool) -> bool:
    return past_due(deadline, today) and not done


def line_done(status: ReportStatus | None, *, task_done: bool) -> bool:
    """One department's line on a task: done with the task, or by its own report of "done"."""
    return task_done or status is ReportStatus.DONE


def line_overdue(deadline: date, today: date, *, done: bool) -> bool:
    """`done`: the line's (see `line_done`), not the task's."""
    return past_due(deadline, today) and not done


# The light ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Judgement:
    reasons: tuple[Reason, ...]  # every reason that applies, most urgent first
    light: Light  # of the most urgent reason
    overdue: bool
    silent: bool
    late: bool  # behind pace


def _judgement(
    overdue: bool, status: ReportStatus | None, silent: bool, late: bool, done: bool
) -> Judgement | None:
    reasons = tuple(
        reason
        for reason, applies in (
            (Reason.OVERDUE, overdue),
            (Reason.BLOCKED, status is ReportStatus.BLOCKED),
            (Reason.SILENT, silent),
            (Reason.AT_RISK, status is ReportStatus.AT_RISK),
            (Reason.BEHIND_PACE, late),
            (Reason.NO_REPORT, status is None and not silent and not done),
            (Reason.ON_TRACK, status is ReportStatus.ON_TRACK and not done),
            (Reason.DONE, done),
        )
        if applies
    )
    if not reasons:
        return None
    light = min((REASON_LIGHT[reason] for reason in reasons), key=URGENCY.get)
    return Judgement(reasons, light, overdue, silent, late)


# Every combination, worked out once at import: each of 10^4 summary lines only looks its own up.
JUDGEMENTS = {
    key: judgement
    for key in product(
        (False, True), (None, *ReportStatus), (False, True), (False, True), (False, True)
    )
    if (judgement := _judgement(*key)) is not None
}


def judge(
    *,
    overdue: bool,
    status: ReportStatus | None,
    done: bool,
    silent: bool = False,
    late: bool = False,
) -> Judgement:
    """What one line amounts to; `status` None: no report yet; `done`: the line's (`line_done`).

    ValueError for a combination that cannot occur (a report of "done" on a line not done).
    """
    judgement = JUDGEMENTS.get((overdue, status, silent, late, done))
    if judgement is None:
        raise ValueError(f"no light for status {status} on a line that is not done")
    return judgement


def line_judgement(
    status: ReportStatus | None,
    deadline: date,
    today: date,
    *,
    task_done: bool,
    running: bool = True,
) -> Judgement:
    """A department's line judged from its latest report alone (no silence, no pace), as the
    lookups show it. `running` False: a task withdrawn by a revision, never overdue."""
    done = line_done(status, task_done=task_done)
    overdue = running and line_overdue(deadline, today, done=done)
    return judge(overdue=overdue, status=status, done=done)


def worst(lights: Iterable[Light], default: Light = Light.GREEN) -> Light:
    return min(lights, key=URGENCY.__getitem__, default=default)


def count(lights: Iterable[Light]) -> dict[Light, int]:
    counts = dict.fromkeys(Light, 0)
    for light in lights:
        counts[light] += 1
    return counts
