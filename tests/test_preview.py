"""`duban preview`: the planner's inputs from the database, and the shipped plan's schedule."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.plan_model import ParsedPlan, Role
from bot.plan_parser import parse_plan
from bot.preview import preview, render_preview
from bot.schedule import (
    PlanInput,
    ScheduleConfig,
    ScheduleInputs,
    SendKind,
    TaskInput,
    plan_sends,
)
from bot.settings import Settings
from bot.workcalendar import CalendarError, CalendarExtra, WorkCalendar
from storage.enums import LiaisonRole, ReportStatus
from storage.models import BotSetting, Department, Liaison, Report, Task
from storage.plans import import_plan
from storage.schedule import (
    load_calendar_extra,
    load_schedule_inputs,
    load_work_calendar,
    save_calendar_extra,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
TZ = ZoneInfo("Asia/Shanghai")
# Explicit: Tortoise writes TIMEZONE=UTC into the environment when it starts, and Settings reads
# TIMEZONE from there.
SETTINGS = Settings(_env_file=None, timezone="Asia/Shanghai")
_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2}) ")


async def _import_example() -> None:
    data = EXAMPLE.read_bytes()
    await import_plan(parse_plan(data), hashlib.sha256(data).hexdigest())


async def _liaison(department: Department, user_id: int, **extra) -> Liaison:
    return await Liaison.create(
        telegram_user_id=user_id, full_name=f"联络员{user_id}", department=department, **extra
    )


async def _report(task_code: str, department: Department, liaison: Liaison, key: str, **extra):
    task = await Task.get(code=task_code)
    return await Report.create(
        task=task,
        department=department,
        liaison=liaison,
        status=ReportStatus.ON_TRACK,
        chat_id=liaison.telegram_user_id,
        cycle_key=key,
        **extra,
    )


def _by_day(text: str) -> dict[date, list[str]]:
    days: dict[date, list[str]] = {}
    current = None
    for line in text.splitlines():
        if match := _DAY.match(line):
            current = date.fromisoformat(match[1])
            days[current] = []
        elif line.startswith("  ") and current is not None:
            days[current].append(line.strip())
    return days


async def test_preview_of_the_shipped_plan_over_40_days(db: str) -> None:
    await _import_example()
    ndrc = await Department.get(name="县发改局")
    liaison = await _liaison(ndrc, 7_000_001, is_lead=True)
    await _liaison(ndrc, 7_000_002)
    await _report("2.1.1", ndrc, liaison, "2026-09", message_id=1)
    await _report("2.6.3", ndrc, liaison, "2026-09", message_id=2, withdrawn_at=datetime.now(UTC))
    now = datetime(2026, 9, 10, 10, tzinfo=TZ)

    text = await preview(SETTINGS, 40, now=now)

    assert text.splitlines()[0] == (
        "计划发送 Planned sends 2026-09-10 10:00 – 2026-10-20 10:00 (Asia/Shanghai): 326"
    )
    assert "注意" not in text  # 2026 is covered by the package
    assert text.endswith("未发送任何消息 Nothing was sent.\n")
    days = _by_day(text)
    calendar = WorkCalendar()
    assert all(calendar.is_workday(day) for day in days)
    # Monthly prompts on the 20th at 09:00: Sunday 2026-09-20 is a make-up working day (调休).
    assert set(days) == {
        date(2026, 9, 14),
        date(2026, 9, 20),
        date(2026, 9, 21),
        date(2026, 9, 28),
        date(2026, 9, 29),
        date(2026, 9, 30),
        date(2026, 10, 8),
        date(2026, 10, 12),
        date(2026, 10, 19),
        date(2026, 10, 20),
    }
    september = days[date(2026, 9, 20)]
    assert all(line.startswith("09:00  进度提示 prompt  ") for line in september)
    assert len(september) == 58 - 1  # every (task, unit) but 县发改局 on 2.1.1, reported
    assert (
        "县发改局 (联络员 liaisons: 2) · 2.6.3 推进生产生活绿色低碳 · 2026-09 截止 due 2026-09-28"
        in (" ".join(september))
    )
    assert not any("县发改局" in line and "2.1.1" in line for line in september)
    # Due 09-25 falls in the Mid-Autumn holiday: nudges from 09-28, three working days.
    assert all(line.startswith("09:00  催报 nudge  ") for line in days[date(2026, 9, 28)][:-1])
    assert (
        days[date(2026, 9, 28)][-1] == "09:00  周报 summary  协调群 coordination group · 2026-W40"
    )
    assert "第 3 次 #3" in days[date(2026, 9, 30)][0]
    # Escalations after National Day, and the summary that Monday 10-05 could not carry.
    october_8 = days[date(2026, 10, 8)]
    assert october_8[0] == (  # departments in order of first appearance
        "09:00  通报 escalation  协调群 coordination group · "
        "未报送 not reported: 县发改局 (2.2.1, 2.3.3, 2.6.3) · 2026-09"
    )
    assert "未报送 not reported: 县发改局 (2.1.1" not in " ".join(october_8)
    assert october_8[-1].endswith("2026-W41")
    # The window ends at 10:00 on 10-20: October's prompts (09:00) are in, all 58 of them.
    october_20 = days[date(2026, 10, 20)]
    assert len(october_20) == 58
    assert all(line.startswith("09:00  进度提示 prompt  ") for line in october_20)
    # 6 summaries, 57 + 58 prompts, 3 nudges for each of the 57, one escalation per unit (34).
    assert 6 + 57 + 58 + 3 * 57 + 34 == 326


async def test_the_shipped_plans_prompts_reminders_and_nudges_fall_on_working_days(db: str) -> None:
    await _import_example()
    config = ScheduleConfig.from_settings(SETTINGS)
    calendar = await load_work_calendar()
    inputs = await load_schedule_inputs()
    start = datetime(2026, 9, 10, 10, tzinfo=TZ)
    sends = plan_sends(inputs, start, start + timedelta(days=40), config, calendar)
    prompts = [send for send in sends if send.kind is SendKind.PROMPT]
    assert {send.local_at for send in prompts} == {
        datetime(2026, 9, 20, 9, tzinfo=TZ),
        datetime(2026, 10, 20, 9, tzinfo=TZ),
    }
    for send in sends:
        assert send.local_at.time() == time(9)
        assert calendar.is_workday(send.local_at.date())
        assert send.local_at.day >= 20 or send.kind is not SendKind.PROMPT


async def test_preview_near_the_deadline_shows_reminders_and_the_uncovered_year(db: str) -> None:
    await _import_example()
    await save_calendar_extra(CalendarExtra.parse("year 2027\n2027-12-20 holiday 假设 test day"))
    now = datetime(2027, 11, 25, 10, tzinfo=TZ)

    text = await preview(SETTINGS, 40, now=now)

    notes = [line for line in text.splitlines() if line.startswith("注意")]
    assert notes == [
        "注意 Note: 2028 年节假日安排未录入，按周一至周五计算 — 2028 is not in the holiday "
        "calendar: Monday to Friday assumed."
    ]
    days = _by_day(text)
    reminders = {
        day: [line for line in lines if "临期提醒 reminder" in line] for day, lines in days.items()
    }
    assert len(reminders[date(2027, 12, 1)]) == 58 + 1  # every (task, unit), and the goals
    assert "截止 due 2027-12-31 (提前 30 天 30 days before)" in reminders[date(2027, 12, 1)][0]
    assert "今日截止 due today 2027-12-31" in reminders[date(2027, 12, 31)][0]
    assert "已逾期 overdue since 2027-12-31" in reminders[date(2028, 1, 3)][0]  # Monday
    assert reminders[date(2027, 12, 31)][-1].startswith(
        "09:00  临期提醒 reminder  协调群 coordination group · 方案目标 plan goals"
    )
    # The added holiday moves the December prompt from Monday 12-20 to Tuesday 12-21.
    assert date(2027, 12, 20) not in days
    assert any("进度提示 prompt" in line for line in days[date(2027, 12, 21)])
    # No prompt after the tasks' deadline.
    assert not any(
        "进度提示 prompt" in line
        for day, lines in days.items()
        if day.year == 2028
        for line in lines
    )


async def test_preview_refuses_no_days(db: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await preview(SETTINGS, 0, now=datetime(2026, 9, 10, tzinfo=TZ))


def test_render_preview_lines():
    inputs = ScheduleInputs(
        plans=(PlanInput(1, "实施意见"),),
        tasks=(
            TaskInput(
                12, 1, "2.1.3", "推动城市有机更新", date(2026, 12, 16), None, ((3, Role.LEAD),)
            ),
        ),
        departments={3: "县建设局"},
        liaisons={3: (31,)},
    )
    start = datetime(2026, 12, 14, 0, tzinfo=TZ)
    planned = plan_sends(inputs, start, start + timedelta(days=4), ScheduleConfig(), WorkCalendar())
    text = render_preview(planned, TZ, inputs, start=start, end=start + timedelta(days=4))
    assert text == (
        "计划发送 Planned sends 2026-12-14 00:00 – 2026-12-18 00:00 (Asia/Shanghai): 4\n"
        "\n"
        "2026-12-14 周一 Mon\n"
        "  09:00  周报 summary  协调群 coordination group · 2026-W51\n"
        "\n"
        "2026-12-15 周二 Tue\n"
        "  09:00  临期提醒 reminder  县建设局 (联络员 liaisons: 1) · 2.1.3 推动城市有机更新 · "
        "截止 due 2026-12-16 (提前 1 天 1 days before)\n"
        "\n"
        "2026-12-16 周三 Wed\n"
        "  09:00  临期提醒 reminder  县建设局 (联络员 liaisons: 1) · 2.1.3 推动城市有机更新 · "
        "今日截止 due today 2026-12-16\n"
        "\n"
        "2026-12-17 周四 Thu\n"
        "  09:00  临期提醒 reminder  县建设局 (联络员 liaisons: 1) · 2.1.3 推动城市有机更新 · "
        "已逾期 overdue since 2026-12-16\n"
        "\n"
        "未发送任何消息 Nothing was sent.\n"
    )


def test_render_preview_without_names_or_sends():
    assert render_preview([], TZ) == (
        "计划发送 Planned sends (Asia/Shanghai): 0\n\n(无 none)\n\n"
        "未发送任何消息 Nothing was sent.\n"
    )


# storage.schedule -----------------------------------------------------------------------------


async def test_schedule_inputs_from_the_database(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    await import_plan(revised_plan, "2" * 64)  # withdraws 2.5.3
    builder = await Department.get(name="县建设局")
    first = await _liaison(builder, 8_000_001)
    lead = await _liaison(builder, 8_000_002, is_lead=True)
    await _liaison(builder, 8_000_003, active=False)
    await _liaison(builder, 8_000_004, role=LiaisonRole.OBSERVER)
    await _report("2.1.3", builder, first, "2026-11", message_id=1)
    await _report("2.1.3", builder, first, "2026-10", message_id=2)
    await _report("2.1.3", builder, first, None, message_id=3)
    old = await _report("2.1.3", builder, first, "2025-01", message_id=4)
    await Report.filter(id=old.id).update(created_at=datetime(2025, 1, 20, tzinfo=UTC))

    inputs = await load_schedule_inputs(reports_since=datetime(2026, 1, 1, tzinfo=UTC))

    (plan,) = inputs.plans
    assert plan.default_rule is None
    assert [goal_deadline for _, goal_deadline in plan.goals] == [date(2027, 12, 31)] * 3
    codes = [task.code for task in inputs.tasks]
    assert codes == ["2.1.1", "2.1.2", "2.1.3", "2.4.3", "2.6.1", "2.6.3"]
    housing = inputs.tasks[2]
    assert [(inputs.departments[d], role) for d, role in housing.assignments] == [
        ("县建设局", Role.LEAD),
        ("长兴城投集团", Role.SUPPORT),
    ]
    assert len(housing.targets) == 2 and housing.rule is None
    assert inputs.tasks[3].rule == "quarterly"
    assert inputs.liaisons[builder.id] == (lead.id, first.id)
    task_id = housing.id
    assert inputs.reported == {(builder.id, task_id, "2026-11"), (builder.id, task_id, "2026-10")}
    everything = await load_schedule_inputs()
    assert (builder.id, task_id, "2025-01") in everything.reported


async def test_schedule_inputs_take_a_fixed_number_of_queries(
    db: str, sample_plan: ParsedPlan, caplog: pytest.LogCaptureFixture
) -> None:
    await import_plan(sample_plan, "1" * 64)
    with caplog.at_level(logging.DEBUG, logger="tortoise"):
        await load_schedule_inputs()
    selects = [r for r in caplog.records if r.getMessage().lstrip().upper().startswith("SELECT")]
    assert len(selects) == 7


async def test_calendar_years_are_stored_one_row_each(db: str) -> None:
    assert (await load_work_calendar()).uncovered_years([2027, 2028]) == [2027, 2028]
    first = CalendarExtra.parse("year 2027\nyear 2028\n2027-01-01 holiday\n2028-01-01 holiday")
    assert await save_calendar_extra(first) == [2027, 2028]
    corrected = CalendarExtra.parse("year 2027\n2027-10-01..2027-10-07 holiday 国庆节")
    await save_calendar_extra(corrected)

    extra = await load_calendar_extra()
    assert extra.years == {2027, 2028}
    assert date(2027, 1, 1) not in extra.days
    assert date(2028, 1, 1) in extra.days
    calendar = await load_work_calendar()
    assert calendar.uncovered_years([2027, 2028]) == []
    assert not calendar.is_workday(date(2027, 10, 4))
    stored = await BotSetting.get(key="calendar:2027")
    assert stored.value == "year 2027\n2027-10-01..2027-10-07 holiday 国庆节\n"


async def test_a_damaged_stored_calendar_is_reported(db: str) -> None:
    await BotSetting.create(key="calendar:2027", value="year 2027\n2027-13-01 holiday")
    with pytest.raises(CalendarError, match=r"stored calendar is damaged: calendar:2027:2: "):
        await load_work_calendar()
