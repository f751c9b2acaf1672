"""The one traffic-light and overdue rule (bot.lights) and how lights are shown (bot.labels)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from typing import NamedTuple

import pytest

from bot import lights
from bot.labels import COMPARATOR_SIGNS, DONE_MARK, LIGHT_EMOJI, light_mark
from bot.lights import Light, Reason
from bot.plan_model import Comparator, Role
from storage.enums import ReportStatus

DEADLINE = date(2026, 1, 31)
LATE = date(2026, 2, 1)


class Unit(NamedTuple):
    role: Role
    status: ReportStatus | None


def test_the_deadline_day_itself_is_in_time() -> None:
    assert not lights.task_overdue(DEADLINE, DEADLINE, done=False)
    assert lights.task_overdue(DEADLINE, LATE, done=False)
    assert not lights.task_overdue(DEADLINE, LATE, done=True)


def test_a_task_is_done_when_every_lead_says_so() -> None:
    def done(*units: Unit) -> bool:
        return lights.task_done(unit.status for unit in lights.deciders(units))

    assert done(Unit(Role.LEAD, ReportStatus.DONE), Unit(Role.SUPPORT, None))
    assert not done(Unit(Role.LEAD, ReportStatus.ON_TRACK), Unit(Role.SUPPORT, ReportStatus.DONE))
    assert not done(Unit(Role.LEAD, ReportStatus.DONE), Unit(Role.LEAD, None))
    # No lead named: every unit decides.
    assert done(Unit(Role.SUPPORT, ReportStatus.DONE), Unit(Role.SUPPORT, ReportStatus.DONE))
    assert not done(Unit(Role.SUPPORT, ReportStatus.DONE), Unit(Role.SUPPORT, None))
    assert not done()


def light(status: ReportStatus | None, today: date, *, task_done: bool = False) -> Light:
    return lights.line_judgement(status, DEADLINE, today, task_done=task_done).light


def test_the_light_of_a_line_from_its_latest_report() -> None:
    assert light(ReportStatus.ON_TRACK, LATE) is Light.RED  # overdue
    assert light(None, LATE) is Light.RED
    assert light(ReportStatus.BLOCKED, DEADLINE) is Light.RED
    assert light(ReportStatus.AT_RISK, DEADLINE) is Light.YELLOW
    assert light(ReportStatus.ON_TRACK, DEADLINE) is Light.GREEN
    assert light(ReportStatus.DONE, DEADLINE) is Light.GREEN
    assert light(None, DEADLINE) is Light.PENDING
    # A task done by its lead(s) is green for every unit on it, overdue for none...
    assert light(None, LATE, task_done=True) is Light.GREEN
    assert light(ReportStatus.ON_TRACK, LATE, task_done=True) is Light.GREEN
    # ...unless a unit still says it is blocked or at risk.
    assert light(ReportStatus.AT_RISK, LATE, task_done=True) is Light.YELLOW


def test_a_unit_that_reported_done_is_not_overdue_while_the_lead_is_not() -> None:
    # The case the lookups and the weekly summary decided differently before issue 11.
    judged = lights.line_judgement(ReportStatus.DONE, DEADLINE, LATE, task_done=False)
    assert (judged.light, judged.overdue, judged.reasons) == (Light.GREEN, False, (Reason.DONE,))


def test_a_withdrawn_task_is_never_overdue() -> None:
    judged = lights.line_judgement(None, DEADLINE, LATE, task_done=False, running=False)
    assert (judged.light, judged.overdue) == (Light.PENDING, False)


def test_the_most_urgent_reason_wins_and_impossible_lines_are_refused() -> None:
    judged = lights.judge(overdue=True, status=ReportStatus.AT_RISK, done=False, late=True)
    assert judged.reasons == (Reason.OVERDUE, Reason.AT_RISK, Reason.BEHIND_PACE)
    assert judged.light is Light.RED
    silent = lights.judge(overdue=False, status=None, done=False, silent=True)
    assert (silent.light, silent.reasons) == (Light.RED, (Reason.SILENT,))
    with pytest.raises(ValueError, match="not done"):
        lights.judge(overdue=False, status=ReportStatus.DONE, done=False)


def test_worst_and_count() -> None:
    assert lights.worst([Light.GREEN, Light.PENDING, Light.YELLOW]) is Light.YELLOW
    assert lights.worst([]) is Light.GREEN
    assert lights.count([Light.RED, Light.RED, Light.GREEN]) == {
        Light.RED: 2,
        Light.YELLOW: 0,
        Light.PENDING: 0,
        Light.GREEN: 1,
    }


def test_labels_cover_every_value() -> None:
    assert set(LIGHT_EMOJI) == set(Light)
    assert set(COMPARATOR_SIGNS) == set(Comparator)
    assert light_mark(Light.GREEN, done=True) == DONE_MARK
    assert light_mark(Light.RED, done=True) == LIGHT_EMOJI[Light.RED]
    assert light_mark(Light.PENDING) == "⚪"


def test_the_rule_the_labels_and_the_pager_load_neither_aiogram_nor_tortoise() -> None:
    code = (
        "import sys, bot.lights, bot.labels, bot.paging; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiogram', 'tortoise'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
