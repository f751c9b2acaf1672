"""Lookup services: fuzzy departments, task codes, statuses, overdue, cards (bot.lookup)."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from bot import lookup
from bot.lights import Light, Reason
from bot.lookup import TaskCard, match_departments, normalise_code, resolve_code
from bot.paging import nearest_page, paginate
from bot.people import Access, Actor
from bot.plan_model import Comparator, DepartmentKind, ParsedPlan, Role
from bot.summary_service import load_weekly_summary
from storage.enums import LiaisonRole, ReportStatus
from storage.lookup import (
    CardTarget,
    CardUnit,
    DepartmentRow,
    ReportBrief,
    TargetValue,
    TaskCode,
    UnitStatus,
)
from storage.models import Department, Liaison, Report, Target, Task
from storage.plans import import_plan

HORIZON = date(2027, 12, 31)
BEFORE = date(2026, 3, 2)  # a Monday well before the plan's deadline
AFTER = date(2028, 1, 10)  # after it: every task not done by its lead is overdue

# Pure functions -------------------------------------------------------------------------------

DEPARTMENTS = [
    DepartmentRow(1, "县发改局", (), DepartmentKind.AGENCY),
    DepartmentRow(2, "县自然资源和规划局", (), DepartmentKind.AGENCY),
    DepartmentRow(3, "县建设局", (), DepartmentKind.AGENCY),
    DepartmentRow(4, "生态环境局长兴分局", (), DepartmentKind.AGENCY),
    DepartmentRow(5, "各乡镇<街道、园区>", ("各乡镇", "各街道"), DepartmentKind.TOWNSHIP_GROUP),
    DepartmentRow(6, "县委改革办", ("县数改办",), DepartmentKind.AGENCY),
    DepartmentRow(7, "县委宣传部", ("文明办",), DepartmentKind.AGENCY),
    DepartmentRow(8, "县交通运输局", (), DepartmentKind.AGENCY),
    DepartmentRow(9, "雉城街道", (), DepartmentKind.TOWNSHIP),
]


def names(match: lookup.DepartmentMatch) -> list[str]:
    return [row.name for row in match.matches]


@pytest.mark.parametrize(
    "query",
    ["县建设局", "建设局", "建设", " 县建设局 ", "长兴县建设局", "市建设局", "县建设"],
)
def test_the_construction_bureau_is_found_however_it_is_written(query: str) -> None:
    match = match_departments(query, DEPARTMENTS)
    assert match.found is not None and match.found.name == "县建设局", names(match)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("文明办", "县委宣传部"),  # alias
        ("县数改办", "县委改革办"),
        ("各街道", "各乡镇<街道、园区>"),
        ("各乡镇（街道、园区）", "各乡镇<街道、园区>"),  # full-width brackets
        ("发改委", "县发改局"),  # core 发改
        ("自然资源", "县自然资源和规划局"),
        ("生态环境局", "生态环境局长兴分局"),
    ],
)
def test_aliases_brackets_and_cores(query: str, expected: str) -> None:
    assert names(match_departments(query, DEPARTMENTS)) == [expected]


def test_an_exact_name_beats_substrings() -> None:
    rows = [*DEPARTMENTS, DepartmentRow(10, "县建设局机关", (), DepartmentKind.AGENCY)]
    assert names(match_departments("县建设局", rows)) == ["县建设局"]
    assert names(match_departments("建设局", rows)) == ["县建设局", "县建设局机关"]


def test_several_matches_are_offered_to_choose() -> None:
    match = match_departments("县委", DEPARTMENTS)
    assert match.found is None
    assert names(match) == ["县委改革办", "县委宣传部"]
    assert names(match_departments("街道", DEPARTMENTS)) == ["各乡镇<街道、园区>", "雉城街道"]


def test_no_match_suggests_the_closest_names() -> None:
    match = match_departments("住建局", DEPARTMENTS)
    assert match.matches == ()
    assert match.suggestions[0].name == "县建设局"
    assert len(match.suggestions) <= 3
    assert match_departments("xyz", DEPARTMENTS).suggestions == ()
    assert match_departments("   ", DEPARTMENTS) == lookup.DepartmentMatch("   ")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("2.1.3", "2.1.3"),
        ("２．１．３", "2.1.3"),
        ("2、1、3", "2.1.3"),
        ("2.1.3.", "2.1.3"),
        (" 02.1.3 ", "2.1.3"),
        ("1.3", "1.3"),
        ("7", "7"),
        ("2.1.x", None),
        ("abc", None),
        ("", None),
        ("9" * 50, None),
        ("1.2.3.4.5.6.7", None),
    ],
)
def test_normalise_code(query: str, code: str | None) -> None:
    assert normalise_code(query) == code


CODES = [
    TaskCode(1, 1, "2.1.1", "优化全域发展布局"),
    TaskCode(2, 1, "2.1.3", "推动城市有机更新"),
    TaskCode(3, 1, "2.4.3", "建设“老有所养”幸福养老服务体系"),
    TaskCode(4, 1, "3.4.3", "另一项任务"),
]


def test_resolve_code_exact_short_ambiguous_and_unknown() -> None:
    assert resolve_code("2.1.3", CODES).task_id == 2
    assert resolve_code("1.3", CODES).task_id == 2  # short form, unambiguous
    ambiguous = resolve_code("4.3", CODES)
    assert ambiguous.task_id is None
    assert ambiguous.candidates == ("2.4.3", "3.4.3")
    assert resolve_code("9.9", CODES) == lookup.CodeResolution()
    assert resolve_code("2.1", CODES) == lookup.CodeResolution()  # a section, not a task


def test_resolve_code_by_title_fragment() -> None:
    assert resolve_code("有机更新", CODES).task_id == 2
    assert resolve_code("不存在", CODES) == lookup.CodeResolution()


def test_the_latest_plan_wins_when_two_plans_share_a_code() -> None:
    codes = [*CODES, TaskCode(9, 2, "2.1.3", "新方案的任务")]
    assert resolve_code("2.1.3", codes).task_id == 9
    assert resolve_code("1.3", codes).task_id == 9


def unit(role: Role, status: ReportStatus | None, department_id: int = 1) -> UnitStatus:
    return UnitStatus(department_id, "x", role, status, None)


def test_overdue_needs_a_passed_deadline_and_no_done_from_the_lead() -> None:
    deadline = date(2026, 1, 31)
    in_progress = [unit(Role.LEAD, ReportStatus.ON_TRACK), unit(Role.SUPPORT, ReportStatus.DONE)]
    assert not lookup.is_overdue(deadline, in_progress, date(2026, 1, 31))  # the day itself
    assert lookup.is_overdue(deadline, in_progress, date(2026, 2, 1))
    done = [unit(Role.LEAD, ReportStatus.DONE), unit(Role.SUPPORT, None)]
    assert not lookup.is_overdue(deadline, done, date(2026, 2, 1))
    two_leads = [unit(Role.LEAD, ReportStatus.DONE), unit(Role.LEAD, None, 2)]
    assert lookup.is_overdue(deadline, two_leads, date(2026, 2, 1))


def test_paginate_refuses_pages_that_do_not_exist() -> None:
    items = list(range(25))
    first = paginate(items, 0, 10)
    assert first.items == tuple(range(10)) and first.count == 3
    assert not first.has_previous and first.has_next
    last = paginate(items, 2, 10)
    assert last.items == (20, 21, 22, 23, 24) and not last.has_next
    assert paginate(items, 3, 10) is None
    assert paginate(items, -1, 10) is None
    assert paginate([], 0, 10).count == 1  # an empty list still has its first page


def test_the_nearest_page_for_the_report_pickers_buttons() -> None:
    items = list(range(25))
    assert nearest_page(items, 7, 10) == paginate(items, 2, 10)
    assert nearest_page(items, -3, 10) == paginate(items, 0, 10)
    assert nearest_page([], 4, 10).items == ()


def test_clip_and_format_number() -> None:
    assert lookup.clip("第一行\n  第二行", 20) == "第一行 第二行"
    assert lookup.clip("一二三四五六", 4) == "一二三…"
    assert lookup.format_number(Decimal("9000.0000")) == "9000"
    assert lookup.format_number(Decimal("47.4200")) == "47.42"
    assert lookup.format_number(Decimal("1E+3")) == "1000"


def card_target(
    value: str, latest: str | None, *, baseline: str | None = None, comparator=Comparator.AT_LEAST
) -> CardTarget:
    reported = None
    if latest is not None:
        reported = TargetValue(Decimal(latest), datetime(2026, 3, 1, tzinfo=UTC), 1)
    return CardTarget(
        1,
        "t",
        "m",
        Decimal(value),
        "套",
        comparator,
        HORIZON,
        None if baseline is None else Decimal(baseline),
        reported,
    )


def test_target_progress() -> None:
    assert lookup.target_progress(card_target("9000", "6200")) == 68
    assert lookup.target_progress(card_target("9000", None)) is None
    assert lookup.target_progress(card_target("60", "56", baseline="52")) == 50
    assert lookup.target_progress(card_target("60", "50", baseline="52")) == 0
    assert lookup.target_progress(card_target("10", "5", comparator=Comparator.AT_MOST)) is None


def card_unit(department_id: int, role: Role) -> CardUnit:
    return CardUnit(department_id, f"d{department_id}", role, None)


def test_who_may_read_report_texts_on_a_card() -> None:
    units = [card_unit(1, Role.LEAD), card_unit(2, Role.SUPPORT), card_unit(3, Role.SUPPORT)]
    everyone = frozenset({1, 2, 3})

    def actor(access: Access, department_id: int | None = None) -> Actor:
        return Actor(1, "x", access, department_id=department_id)

    assert lookup.readable_departments(actor(Access.COORDINATOR), units) == everyone
    assert lookup.readable_departments(actor(Access.OBSERVER), units) == everyone
    assert lookup.readable_departments(actor(Access.LIAISON, 1), units) == everyone  # the lead
    assert lookup.readable_departments(actor(Access.LIAISON, 2), units) == {2}
    assert lookup.readable_departments(actor(Access.LIAISON, 9), units) == frozenset()
    assert lookup.readable_departments(actor(Access.GUEST), units) == frozenset()


# With the database ----------------------------------------------------------------------------

_message_ids = itertools.count(1)


async def liaison_of(department: str, name: str = "张三") -> Liaison:
    dept = await Department.get(name=department)
    return await Liaison.create(
        telegram_user_id=next(_message_ids) + 10_000,
        full_name=name,
        department=dept,
        role=LiaisonRole.LIAISON,
    )


async def report(
    code: str,
    department: str,
    status: ReportStatus,
    *,
    text: str = "",
    values: list[dict] | None = None,
    withdrawn: bool = False,
    by: Liaison | None = None,
) -> Report:
    dept = await Department.get(name=department)
    by = by or await liaison_of(department)
    return await Report.create(
        task=await Task.get(code=code),
        department=dept,
        liaison=by,
        status=status,
        text=text,
        values=values or [],
        chat_id=by.telegram_user_id,
        message_id=next(_message_ids),
        withdrawn_at=datetime.now(UTC) if withdrawn else None,
    )


async def dept_id(name: str) -> int:
    return (await Department.get(name=name)).id


async def test_department_task_list_shows_its_own_latest_status(
    db: str, sample_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    await report("2.1.3", "县建设局", ReportStatus.ON_TRACK)
    await report("2.1.3", "县建设局", ReportStatus.BLOCKED)  # the latest counts
    await report("2.1.3", "县建设局", ReportStatus.DONE, withdrawn=True)  # withdrawn: ignored
    await report("2.1.1", "县发改局", ReportStatus.AT_RISK)  # another unit's report

    tasks = await lookup.department_task_list(await dept_id("县建设局"), BEFORE)

    assert tasks.name == "县建设局"
    assert [(line.code, line.role, line.status, line.light) for line in tasks.lines] == [
        ("2.1.3", Role.LEAD, ReportStatus.BLOCKED, Light.RED),  # the most urgent first
        ("2.1.1", Role.SUPPORT, None, Light.PENDING),
    ]
    assert (tasks.lead, tasks.support) == (1, 1)
    assert tasks.lights[Light.RED] == 1 and tasks.lights[Light.PENDING] == 1
    assert tasks.lines[0].overdue_days == 0
    assert await lookup.department_task_list(99_999, BEFORE) is None


async def test_a_support_unit_that_reported_done_is_not_overdue_while_the_lead_is_not(
    db: str, sample_plan: ParsedPlan
) -> None:
    # The case where /tasks and the weekly summary disagreed until issue 11: /tasks showed the
    # support unit's line red and overdue; the summary (what users see weekly) green. Both now
    # follow the summary (bot.lights): the task is overdue, that unit's line is not.
    await import_plan(sample_plan, "1" * 64)
    await report("2.1.1", "县建设局", ReportStatus.DONE)  # support done, lead (县发改局) silent
    await report("2.1.3", "县建设局", ReportStatus.DONE)  # lead done
    await report("2.1.1", "县发改局", ReportStatus.ON_TRACK)  # the lead: not done, overdue

    tasks = await lookup.department_task_list(await dept_id("县建设局"), AFTER)

    by_code = {line.code: line for line in tasks.lines}
    assert by_code["2.1.1"].overdue_days == 0
    assert by_code["2.1.1"].light is Light.GREEN
    assert by_code["2.1.3"].overdue_days == 0
    assert by_code["2.1.3"].light is Light.GREEN
    lead = await lookup.department_task_list(await dept_id("县发改局"), AFTER)
    assert {line.code: line.light for line in lead.lines}["2.1.1"] is Light.RED
    assert [line.code for line in await lookup.overdue_tasks(AFTER)].count("2.1.1") == 1

    now = datetime.combine(AFTER, time(12), UTC)
    summary = await load_weekly_summary(now, tz=UTC)
    weekly = {
        (block.name, line.code): line
        for block in summary.departments
        for line in block.lines
        if Reason.SILENT not in line.reasons and Reason.BEHIND_PACE not in line.reasons
    }
    for name in ("县建设局", "县发改局"):
        for line in (await lookup.department_task_list(await dept_id(name), AFTER)).lines:
            if (name, line.code) in weekly:
                seen = weekly[name, line.code]
                assert (line.light, line.overdue_days) == (seen.light, seen.overdue_days), (
                    name,
                    line.code,
                )
    assert weekly["县建设局", "2.1.1"].light is Light.GREEN
    assert "2.1.1" in {task.code for task in summary.overdue}


async def test_overview_puts_departments_in_trouble_first(db: str, sample_plan: ParsedPlan) -> None:
    await import_plan(sample_plan, "1" * 64)
    await report("2.4.3", "县民政局", ReportStatus.AT_RISK)
    await report("2.6.1", "县委宣传部", ReportStatus.BLOCKED)
    await report("2.1.3", "县建设局", ReportStatus.ON_TRACK)

    overview = await lookup.department_overview(BEFORE)

    order = [summary.name for summary in overview.departments]
    assert order[:3] == ["县委宣传部", "县民政局", "县发改局"]  # red, yellow, then document order
    assert len(order) == 13
    construction = next(s for s in overview.departments if s.name == "县建设局")
    assert (construction.lead, construction.support, construction.reported) == (1, 1, 1)
    assert (overview.tasks, overview.overdue_tasks) == (6, 0)
    assert (overview.reported, overview.at_risk, overview.blocked) == (3, 1, 1)
    assert overview.assignments == sum(s.tasks for s in overview.departments) == 16

    after = await lookup.department_overview(AFTER)
    assert after.overdue_tasks == 6
    construction = next(s for s in after.departments if s.name == "县建设局")
    assert construction.overdue == 1  # 2.1.3, which it leads; not 2.1.1, which it supports


async def test_withdrawn_tasks_are_not_listed(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    await import_plan(revised_plan, "2" * 64)  # withdraws 2.5.3
    overview = await lookup.department_overview(BEFORE)
    assert "县大数据局" not in [summary.name for summary in overview.departments]
    # Listed nowhere, but its exact code still opens it, marked as withdrawn (its reports are
    # history a coordinator may need); the short form finds active tasks only.
    withdrawn = (await lookup.resolve_task("2.5.3")).task_id
    assert withdrawn is not None
    card = await lookup.task_card(withdrawn, Actor(1, "督办", Access.COORDINATOR), BEFORE)
    assert card is not None and card.data.withdrawn_at is not None and card.overdue_days == 0
    assert (await lookup.resolve_task("5.3")).task_id is None


async def test_overdue_grouped_by_lead_or_for_one_department(
    db: str, sample_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    await report("2.1.3", "县建设局", ReportStatus.DONE)
    await report("2.1.2", "县自然资源和规划局", ReportStatus.BLOCKED)
    await Task.filter(code="2.6.1").update(deadline=date(2028, 1, 9))  # yesterday: overdue 1 day

    assert await lookup.overdue_tasks(BEFORE) == []
    everyone = await lookup.overdue_tasks(AFTER)
    assert [line.code for line in everyone] == ["2.1.1", "2.1.2", "2.4.3", "2.5.3", "2.6.1"]
    assert all(line.role is Role.LEAD for line in everyone)
    planning = next(line for line in everyone if line.code == "2.1.2")
    assert (planning.department_name, planning.status) == (
        "县自然资源和规划局",
        ReportStatus.BLOCKED,
    )
    assert everyone[-1].days == 1

    mine = await lookup.overdue_tasks(AFTER, await dept_id("县自然资源和规划局"))
    assert [(line.code, line.role) for line in mine] == [
        ("2.1.1", Role.SUPPORT),
        ("2.1.2", Role.LEAD),
    ]  # 2.1.3 is done by its lead


async def test_task_card_with_latest_reports_and_target_values(
    db: str, sample_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, "1" * 64)
    task = await Task.get(code="2.1.3")
    housing, _elevators = await Target.filter(task_id=task.id).order_by("position")
    lee = await liaison_of("县建设局", "李四")
    await report(
        "2.1.3",
        "县建设局",
        ReportStatus.ON_TRACK,
        by=lee,
        text="已筹集5000套",
        values=[{"target_id": housing.id, "value": "5000"}],
    )
    await report(
        "2.1.3",
        "县建设局",
        ReportStatus.AT_RISK,
        by=lee,
        text="已筹集6200套",
        values=[{"target_id": housing.id, "value": "6200"}, {"target_id": "bad", "value": 1}],
    )
    await report("2.1.3", "县自然资源和规划局", ReportStatus.ON_TRACK, text="配合中")

    coordinator = Actor(1, "督办", Access.COORDINATOR)
    card = await lookup.task_card(task.id, coordinator, BEFORE)

    assert isinstance(card, TaskCard)
    assert (card.data.code, card.data.title, card.overdue_days) == ("2.1.3", "推动城市有机更新", 0)
    lead, support = card.data.units
    assert (lead.department_name, lead.role) == ("县建设局", Role.LEAD)
    assert lead.latest == ReportBrief(
        ReportStatus.AT_RISK, "李四", "已筹集6200套", lead.latest.created_at
    )
    assert support.latest.text == "配合中"
    assert card.data.targets[0].latest.value == Decimal("6200")
    assert card.data.targets[1].latest is None
    assert card.readable == {lead.department_id, support.department_id}

    outsider = Actor(2, "王五", Access.LIAISON, department_id=await dept_id("县民政局"))
    assert (await lookup.task_card(task.id, outsider, BEFORE)).readable == frozenset()
    assert await lookup.task_card(99_999, coordinator, BEFORE) is None


async def test_lookups_run_a_fixed_number_of_queries(
    db: str, sample_plan: ParsedPlan, caplog: pytest.LogCaptureFixture
) -> None:
    await import_plan(sample_plan, "1" * 64)
    for code, department in [("2.1.1", "县发改局"), ("2.1.3", "县建设局"), ("2.4.3", "县民政局")]:
        for status in ReportStatus:
            await report(code, department, status)
    task = await Task.get(code="2.1.3")
    construction = await dept_id("县建设局")
    coordinator = Actor(1, "督办", Access.COORDINATOR)

    def selects() -> int:
        found = [r for r in caplog.records if r.getMessage().lstrip().upper().startswith("SELECT")]
        caplog.clear()
        return len(found)

    with caplog.at_level(logging.DEBUG, logger="tortoise"):
        await lookup.department_overview(AFTER)
        assert selects() == 2
        await lookup.department_task_list(construction, AFTER)
        assert selects() == 3  # the departments, then the board's two
        await lookup.overdue_tasks(AFTER)
        assert selects() == 2
        await lookup.task_card(task.id, coordinator, AFTER)
        assert selects() == 4
