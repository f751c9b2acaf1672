"""Queries other layers use, and the report table's guard against duplicate updates."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from tortoise.exceptions import IntegrityError

from bot.plan_model import DepartmentKind, ParsedPlan, Role
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Department, Liaison, Plan, Report, Target, Task
from storage.plan_queries import (
    DepartmentCount,
    DepartmentTask,
    department_task_counts,
    find_department,
    get_plan_summary,
    tasks_by_department,
)
from storage.plans import import_plan
from storage.reports import get_report_task, task_for_department
from tests.conftest import lead, support

DEADLINE = date(2027, 12, 31)


async def test_tasks_by_department_in_order_of_first_appearance(
    db: str, sample_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)

    groups = await tasks_by_department()

    assert [group.name for group in groups] == [
        "县发改局",
        "县自然资源和规划局",
        "县建设局",
        "生态环境局长兴分局",
        "县农业农村局",
        "各乡镇<街道、园区>",
        "县民政局",
        "县大数据局",
        "县政务办",
        "县委改革办",
        "县委宣传部",
        "县综合行政执法局",
        "县文广旅体局",
    ]
    planning = groups[1]
    assert planning.kind is DepartmentKind.AGENCY
    assert planning.tasks == (
        DepartmentTask("2.1.1", "优化全域发展布局", Role.SUPPORT, DEADLINE),
        ("2.1.2", "完善国土空间规划", Role.LEAD, DEADLINE),
        ("2.1.3", "推动城市有机更新", Role.SUPPORT, DEADLINE),
    )
    assert groups[5].kind is DepartmentKind.TOWNSHIP_GROUP


async def test_tasks_of_one_department_by_name_or_alias(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    await import_plan(revised_plan, "2" * 64)  # withdraws 2.5.3, 县委改革办's only task

    [propaganda] = await tasks_by_department("文明办")
    assert propaganda.name == "县委宣传部"
    assert [task.code for task in propaganda.tasks] == ["2.6.1"]
    assert await tasks_by_department("县委改革办") == [(await tasks_by_department("县数改办"))[0]]
    assert (await tasks_by_department("县委改革办"))[0].tasks == ()
    assert await tasks_by_department("不存在的单位") == []
    assert "县委改革办" not in [group.name for group in await tasks_by_department()]


async def test_tasks_by_department_runs_a_fixed_number_of_queries(
    db: str, sample_plan: ParsedPlan, caplog: pytest.LogCaptureFixture
) -> None:
    await import_plan(sample_plan, "1" * 64)
    with caplog.at_level(logging.DEBUG, logger="tortoise"):
        await tasks_by_department()
        await department_task_counts()
    selects = [r for r in caplog.records if r.getMessage().lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3  # one for tasks_by_department, two for the counts


async def test_department_task_counts_skip_withdrawn_tasks(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    await import_plan(revised_plan, "2" * 64)

    counts = {count.name: count for count in await department_task_counts()}

    assert counts["县发改局"] == DepartmentCount("县发改局", DepartmentKind.AGENCY, 2, 0)
    assert counts["县自然资源和规划局"] == DepartmentCount(
        "县自然资源和规划局", DepartmentKind.AGENCY, 1, 1
    )
    assert counts["长兴城投集团"].kind is DepartmentKind.COMPANY
    assert (counts["县大数据局"].lead, counts["县大数据局"].support) == (0, 0)
    # Departments without active tasks come last, by name.
    names = [count.name for count in await department_task_counts()]
    idle = ["县大数据局", "县委改革办", "县政务办"]
    assert names[-3:] == sorted(idle)


async def test_find_department_by_name_then_alias(db: str, sample_plan: ParsedPlan) -> None:
    await import_plan(sample_plan, "1" * 64)
    assert (await find_department("县数改办")).name == "县委改革办"
    assert (await find_department(" 各街道 ")).name == "各乡镇<街道、园区>"
    assert (await find_department("县建设局")).name == "县建设局"
    assert await find_department("县建设") is None


async def test_plan_summary_counts_the_latest_plan(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    assert await get_plan_summary() is None
    await import_plan(sample_plan, "1" * 64)
    result = await import_plan(revised_plan, "2" * 64)

    summary = await get_plan_summary()

    assert summary is not None
    assert summary.id == result.plan_id
    assert (summary.title, summary.doc_number) == (sample_plan.title, "长政办发〔2023〕65号")
    assert summary.tasks == 6 and summary.withdrawn_tasks == 1
    assert summary.departments == 11  # 13 - 县大数据局, 县政务办, 县委改革办 + 长兴城投集团
    assert summary.targets == 6
    assert summary.requirements == 3


async def test_a_duplicate_telegram_update_cannot_store_a_report_twice(
    db: str, sample_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    task = await Task.get(code="2.1.3")
    department = await Department.get(name="县建设局")
    housing = await Target.get(task_id=task.id, position=0)
    liaison = await Liaison.create(
        telegram_user_id=5_000_000_001, full_name="王联络", department=department
    )
    assert liaison.role is LiaisonRole.LIAISON and liaison.active
    fields = {
        "task": task,
        "department": department,
        "liaison": liaison,
        "status": ReportStatus.ON_TRACK,
        "text": "已筹集 6200 套",
        "values": [{"target_id": housing.id, "value": str(Decimal("6200"))}],
        "attachments": [{"kind": "photo", "file_id": "AgAC-1"}],
        "chat_id": -1_001_234_567_890,
        "cycle_key": "2026-11",
    }
    first = await Report.create(**fields, message_id=42)

    with pytest.raises(IntegrityError):
        await Report.create(**fields, message_id=42)

    stored = await Report.get(id=first.id)
    assert stored.values == [{"target_id": housing.id, "value": "6200"}]
    assert stored.status is ReportStatus.ON_TRACK
    assert stored.created_at.utcoffset() is not None
    # Reports typed in without a Telegram message (message_id NULL) are not duplicates.
    await Report.create(**fields, message_id=None)
    await Report.create(**fields, message_id=None)
    assert await Report.filter(task_id=task.id).count() == 3


async def test_a_report_task_carries_the_task_rule_else_the_plan_rule(
    db: str, sample_plan: ParsedPlan
) -> None:
    # The rule names the cycle a report answers (bot.reports.report_cycle), so a task's own
    # rule must win over its plan's, and a withdrawn task or a foreign department gets None.
    await import_plan(sample_plan, "1" * 64)
    task = await Task.get(code="2.1.2")
    department = await Department.get(name="县自然资源和规划局")
    other = await Department.get(name="县委宣传部")

    assert (await task_for_department(task.id, department.id)).rule is None
    await Plan.filter(id=task.plan_id).update(default_cycle="quarterly")
    loaded = await task_for_department(task.id, department.id)
    assert (loaded.rule, loaded.role) == ("quarterly", Role.LEAD)
    await Task.filter(id=task.id).update(cycle="weekly:MO:FR")
    assert (await task_for_department(task.id, department.id)).rule == "weekly:MO:FR"
    assert (await get_report_task(task.id)).rule == "weekly:MO:FR"
    assert await task_for_department(task.id, other.id) is None


async def test_a_report_task_lists_each_target_once_and_its_leads_in_order(
    db: str, sample_plan: ParsedPlan
) -> None:
    # Units and targets come from one query (a row per unit and target): neither may repeat.
    plan = replace(
        sample_plan,
        tasks=tuple(
            replace(item, units=(lead("县建设局"), support("县自然资源和规划局"), lead("县发改局")))
            if item.code == "2.1.3"
            else item
            for item in sample_plan.tasks
        ),
    )
    await import_plan(plan, "1" * 64)
    task = await Task.get(code="2.1.3")
    planning = await Department.get(name="县自然资源和规划局")

    loaded = await task_for_department(task.id, planning.id)

    assert [(t.metric, t.value) for t in loaded.targets] == [
        ("累计筹集保障性租赁住房", Decimal("9000")),
        ("实施电梯加装", Decimal("100")),
    ]
    assert loaded.lead_departments == ("县建设局", "县发改局")
    assert loaded.role is Role.SUPPORT
    assert (await get_report_task(task.id)).targets == loaded.targets
    no_targets = await Task.get(code="2.1.1")
    assert (await get_report_task(no_targets.id)).targets == ()
