"""What the weekly summary reads from the database (storage.summary), on the real plan.

Runs on SQLite and on PostgreSQL (the `db` fixture). Liaisons and reports are created directly.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.plan_model import ParsedPlan
from bot.plan_parser import parse_plan
from bot.settings import Settings
from bot.summary import Light, compute_summary
from bot.summary_service import (
    load_weekly_summary,
    summary_for_cli,
    summary_moment,
)
from storage.db import close_db, init_db
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Department, Liaison, Plan, Report, Target, Task
from storage.plans import import_plan
from storage.summary import SummaryData, load_summary_data
from tests.conftest import lead, support, target, task

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "changxing-2023-65.txt"
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=TZ)
SINCE = NOW - timedelta(days=7)
_messages = itertools.count(1)


async def import_real_plan() -> ParsedPlan:
    data = EXAMPLE.read_bytes()
    parsed = parse_plan(data)
    await import_plan(parsed, hashlib.sha256(data).hexdigest())
    # Imported long ago: silence can be judged.
    await Plan.all().update(created_at=datetime(2025, 1, 1, tzinfo=UTC))
    return parsed


async def liaison(department: str, name: str, user_id: int, **extra) -> Liaison:
    return await Liaison.create(
        telegram_user_id=user_id,
        full_name=name,
        department=await Department.get(name=department),
        **extra,
    )


async def report(
    code: str,
    person: Liaison,
    status: ReportStatus,
    days_ago: float,
    values: list[dict] | None = None,
    **extra,
) -> Report:
    return await Report.create(
        task=await Task.get(code=code),
        department_id=person.department_id,
        liaison=person,
        status=status,
        values=values or [],
        chat_id=person.telegram_user_id,
        message_id=next(_messages),
        created_at=NOW - timedelta(days=days_ago),
        **extra,
    )


async def test_latest_reports_week_reports_and_values_on_the_real_plan(db: str) -> None:
    parsed = await import_real_plan()
    housing, elevators = await Target.filter(task__code="2.1.3").order_by("position")
    gdp = await Target.get(task_id=None, metric="地区生产总值")
    lee = await liaison("县建设局", "李四", 11, is_lead=True)
    wang = await liaison("县发改局", "王五", 12)
    await liaison("县建设局", "赵六", 13)
    await liaison("县民政局", "离职", 14, active=False)
    await Liaison.create(telegram_user_id=15, full_name="督办", role=LiaisonRole.COORDINATOR)

    await report(
        "2.1.3", lee, ReportStatus.ON_TRACK, 40, [{"target_id": housing.id, "value": "4000"}]
    )
    await report("2.1.3", lee, ReportStatus.AT_RISK, 10, [{"target_id": elevators.id, "value": 60}])
    await report("2.1.3", lee, ReportStatus.AT_RISK, 2)  # no values: the earlier ones stand
    await report("2.1.1", wang, ReportStatus.ON_TRACK, 3, [{"target_id": gdp.id, "value": "980.5"}])
    await report("2.1.1", wang, ReportStatus.BLOCKED, 1, withdrawn_at=NOW)  # withdrawn
    await report("2.2.1", wang, ReportStatus.DONE, -1)  # after `now`: not yet
    bad = [{"target_id": "x", "value": "1"}, {"target_id": housing.id, "value": "abc"}, "junk"]
    await report("2.2.1", wang, ReportStatus.ON_TRACK, 30, bad)

    data = await load_summary_data(NOW, SINCE)

    assert data is not None
    assert data.plan.title == parsed.title and data.plan.issued_on == date(2023, 12, 29)
    assert len({row.task_id for row in data.assignments}) == len(parsed.tasks)
    assert len(data.assignments) == sum(len(item.units) for item in parsed.tasks)
    assert [t.metric for t in data.targets[: len(parsed.goals)]] == [g.metric for g in parsed.goals]
    assert len(data.targets) == len(parsed.goals) + sum(len(t.targets) for t in parsed.tasks)
    assert [
        (row.department_id, row.full_name) for row in data.liaisons if row.full_name != "王五"
    ] == [
        (lee.department_id, "李四"),
        (lee.department_id, "赵六"),
    ]
    latest = {(r.task_id, r.liaison_name): r for r in data.latest}
    codes = {row.task_id: row.code for row in data.assignments}
    assert sorted((codes[t], r.status.value) for (t, _), r in latest.items()) == [
        ("2.1.1", "on_track"),
        ("2.1.3", "at_risk"),
        ("2.2.1", "on_track"),
    ]
    assert sorted((codes[r.task_id], r.status.value) for r in data.latest_before) == [
        ("2.1.3", "at_risk"),
        ("2.2.1", "on_track"),
    ]
    assert [(codes[r.task_id], r.liaison_name) for r in data.week_reports] == [
        ("2.1.1", "王五"),
        ("2.1.3", "李四"),
    ]
    values = {row.target_id: row.value for row in data.values}
    assert values == {
        housing.id: Decimal(4000),
        elevators.id: Decimal(60),
        gdp.id: Decimal("980.5"),
    }
    assert {row.target_id: row.value for row in data.values_before} == {
        housing.id: Decimal(4000),
        elevators.id: Decimal(60),
    }

    summary = compute_summary(data)
    assert [c.name for c in summary.reported] == ["县发改局", "县建设局"]
    assert "县民政局" in [c.name for c in summary.not_reported]
    goal = next(t for t in summary.targets if t.target_id == gdp.id)
    assert goal.task_code is None and goal.value == Decimal("980.5")


async def test_the_latest_report_is_the_one_with_the_highest_id(db: str) -> None:
    await import_real_plan()
    lee = await liaison("县建设局", "李四", 11)
    this_week = await report("2.1.3", lee, ReportStatus.ON_TRACK, 2)
    dated_earlier = await report("2.1.3", lee, ReportStatus.BLOCKED, 20)  # a higher id

    data = await load_summary_data(NOW, SINCE)

    assert [row.id for row in data.latest] == [dated_earlier.id]
    assert [row.id for row in data.latest_before] == [dated_earlier.id]
    assert [row.id for row in data.week_reports] == [this_week.id]
    assert data.latest[0].created_at == NOW - timedelta(days=20)
    assert data.latest[0].created_at.utcoffset() == timedelta(0)  # read back in UTC


async def test_withdrawn_tasks_and_an_empty_database(db: str, sample_plan, revised_plan) -> None:
    assert await load_summary_data(NOW, SINCE) is None
    await import_plan(sample_plan, "1" * 64)
    await import_plan(revised_plan, "2" * 64)  # withdraws 2.5.3
    data = await load_summary_data(NOW, SINCE)
    assert "2.5.3" not in {row.code for row in data.assignments}
    with pytest.raises(ValueError, match="aware"):
        await load_summary_data(datetime(2026, 11, 30), SINCE)  # noqa: DTZ001 - on purpose


def synthetic_plan(tasks: int) -> ParsedPlan:
    """A plan with `tasks` tasks, a department pair and a target each (tasks / 2 departments)."""
    return ParsedPlan(
        title=f"合成方案{tasks}",
        doc_number=None,
        issuer=None,
        issued_on=date(2024, 1, 1),
        horizon=date(2027, 12, 31),
        tasks=tuple(
            task(
                f"2.{index // 9 + 1}.{index % 9 + 1}",
                f"任务{index}",
                lead(f"单位{index // 2}"),
                support(f"单位{index // 2 + 1000}"),
                targets=(target(f"指标{index}", "100", "个"),),
            )
            for index in range(tasks)
        ),
    )


async def fill_reports() -> None:
    """Three reports per (task, department), some with values, and a liaison per department."""
    people = {}
    for department in await Department.all():
        people[department.id] = await Liaison.create(
            telegram_user_id=10_000 + department.id,
            full_name=f"联络员{department.id}",
            department=department,
        )
    targets = {row.task_id: row.id for row in await Target.all()}
    rows = []
    for item in await Task.all().prefetch_related("assignments"):
        for assignment in item.assignments:
            for days_ago, status in (
                (30, ReportStatus.ON_TRACK),
                (12, ReportStatus.AT_RISK),
                (2, ReportStatus.ON_TRACK),
            ):
                rows.append(
                    Report(
                        task_id=item.id,
                        department_id=assignment.department_id,
                        liaison_id=people[assignment.department_id].id,
                        status=status,
                        values=[{"target_id": targets[item.id], "value": str(days_ago)}]
                        if days_ago != 2
                        else [],
                        chat_id=1,
                        message_id=next(_messages),
                        created_at=NOW - timedelta(days=days_ago),
                    )
                )
    await Report.bulk_create(sorted(rows, key=lambda row: row.created_at))


async def count_selects(caplog: pytest.LogCaptureFixture) -> tuple[int, SummaryData | None]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        data = await load_summary_data(NOW, SINCE)
    selects = [
        record
        for record in caplog.records
        if record.getMessage().lstrip().upper().startswith("SELECT")
    ]
    return len(selects), data


async def test_the_number_of_queries_does_not_grow_with_the_plan(
    database_factory, caplog: pytest.LogCaptureFixture
) -> None:
    counts = {}
    for size in (4, 60):
        await init_db(await database_factory())
        try:
            plan = synthetic_plan(size)
            await import_plan(plan, f"{size:064d}")
            await fill_reports()
            counts[size], data = await count_selects(caplog)
            assert len({row.task_id for row in data.assignments}) == size
            assert len(data.latest) == 2 * size  # every (task, department)
            assert len(data.week_reports) == 2 * size  # the ones 2 days ago
            assert {row.value for row in data.values} == {Decimal(12)}  # the latest with values
            assert {row.value for row in data.values_before} == {Decimal(12)}
            # On track, but 12 of 100 where the straight line is at 72 %: behind pace.
            assert compute_summary(data).task_lights[Light.YELLOW] == size
        finally:
            await close_db()
    assert counts[4] == counts[60] == 9


async def test_summary_for_cli_prints_the_summary_and_writes_the_chart(
    db: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=db, default_locale="zh", timezone="Asia/Shanghai")
    assert "尚未导入方案" in await summary_for_cli(settings, date(2026, 11, 30), None)

    await import_real_plan()
    lee = await liaison("县建设局", "李<四>", 11)
    await report("2.1.3", lee, ReportStatus.BLOCKED, 2)
    chart = tmp_path / "chart.png"

    text = await summary_for_cli(settings, date(2026, 11, 30), chart)

    assert text.startswith("📋 督办周报 · 2026年11月30日星期一")
    assert "🔴 2.1.3 推动城市有机更新（牵头） 受阻" in text
    assert "县建设局：李<四>" in text  # plain text: not escaped
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # --date D looks at the end of that day: a report made on the 29th is not "this week" on
    # the 21st.
    earlier = await summary_for_cli(settings, date(2026, 11, 21), None)
    assert "受阻" not in earlier
    assert summary_moment(date(2026, 11, 21), TZ) == datetime(2026, 11, 21, 23, 59, 59, tzinfo=TZ)
    assert (await load_weekly_summary(NOW, tz=TZ)).plan_title.startswith("长兴县政府办公室")


async def test_reports_an_hour_after_a_local_now_are_not_yet_counted(db: str) -> None:
    # Stored times are UTC; `now` in Asia/Shanghai (as `duban summary --date` passes it) must
    # bound them by the instant, not by the text (SQLite compares text).
    await import_real_plan()
    lee = await liaison("县建设局", "李四", 11, is_lead=True)
    before = await report("2.1.3", lee, ReportStatus.ON_TRACK, 1 / 24)
    await report("2.1.3", lee, ReportStatus.BLOCKED, -1 / 24)

    data = await load_summary_data(NOW, SINCE)

    assert [row.id for row in data.latest] == [before.id]
    assert [row.id for row in data.week_reports] == [before.id]
