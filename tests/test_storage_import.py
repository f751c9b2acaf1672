"""import_plan: first import, no-op re-import, revisions, restored tasks, atomicity."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

import pytest
from tortoise.models import Model

import storage.plans
from bot.plan_model import Comparator, Cycle, DepartmentKind, ParsedPlan, ParsedUnit, Role
from bot.plan_parser import parse_plan_text
from storage.models import Assignment, Department, Plan, Requirement, Target, Task
from storage.plans import ImportCounts, import_plan

SHA_1 = "1" * 64
SHA_2 = "2" * 64
MODELS: tuple[type[Model], ...] = (Plan, Department, Task, Assignment, Target, Requirement)


async def snapshot() -> dict[str, list[dict]]:
    """Every row of every plan table, for before/after comparisons."""
    return {model.__name__: await model.all().order_by("id").values() for model in MODELS}


def roles(task: Task) -> list[tuple[str, Role]]:
    return [(a.department.name, a.role) for a in sorted(task.assignments, key=lambda a: a.position)]


async def test_first_import_creates_the_plan_and_its_rows(db: str, sample_plan: ParsedPlan) -> None:
    result = await import_plan(sample_plan, SHA_1)

    assert result.created and result.changed
    assert result.counts == ImportCounts(tasks=6, departments=13, targets=6, requirements=3)
    assert result.tasks_added == ("2.1.1", "2.1.2", "2.1.3", "2.4.3", "2.5.3", "2.6.1")
    assert result.tasks_removed == () and result.tasks_changed == {}
    plan = await Plan.get(id=result.plan_id)
    assert (plan.doc_number, plan.source_sha256, plan.default_cycle) == (
        "长政办发〔2023〕65号",
        SHA_1,
        None,
    )
    assert plan.created_at.utcoffset() is not None  # timezone-aware
    assert await Department.all().count() == 13
    townships = await Department.get(name="各乡镇<街道、园区>")
    assert townships.kind is DepartmentKind.TOWNSHIP_GROUP
    assert townships.aliases == ["各乡镇", "各街道", "各园区"]

    tasks = (
        await Task.filter(plan_id=plan.id)
        .order_by("position")
        .prefetch_related("assignments__department")
    )
    assert [t.code for t in tasks] == ["2.1.1", "2.1.2", "2.1.3", "2.4.3", "2.5.3", "2.6.1"]
    assert roles(tasks[2]) == [("县建设局", Role.LEAD), ("县自然资源和规划局", Role.SUPPORT)]
    assert tasks[3].cycle == Cycle.QUARTERLY.value and tasks[0].cycle is None
    assert all(t.withdrawn_at is None for t in tasks)

    goals = await Target.filter(plan_id=plan.id, task_id__isnull=True).order_by("position")
    assert [(g.metric, g.value) for g in goals] == [
        ("地区生产总值", Decimal("1200")),
        ("空气质量优良天数比率", Decimal("90")),
        ("森林覆盖率", Decimal("47.42")),
    ]
    care = await Target.get(task_id=tasks[3].id)
    assert (care.value, care.baseline, care.comparator) == (
        Decimal(60),
        Decimal(52),
        Comparator.AT_LEAST,
    )
    requirements = await Requirement.filter(plan_id=plan.id).order_by("position")
    assert [(r.code, r.title) for r in requirements] == [
        ("3.1", "强化统筹协调"),
        ("3.2", "强化政策保障"),
        ("3.3", "强化宣传引导"),
    ]


async def test_importing_the_same_document_again_writes_nothing(
    db: str, sample_plan: ParsedPlan, caplog: pytest.LogCaptureFixture
) -> None:
    first = await import_plan(sample_plan, SHA_1)
    before = await snapshot()

    with caplog.at_level(logging.DEBUG, logger="tortoise"):
        again = await import_plan(build_copy(sample_plan), SHA_1)

    assert not again.changed
    assert again.plan_id == first.plan_id and not again.created
    assert again.counts == first.counts
    assert await snapshot() == before  # updated_at included
    statements = [r.getMessage().lstrip().split(None, 1)[0].upper() for r in caplog.records]
    assert "SELECT" in statements
    assert not {"INSERT", "UPDATE", "DELETE"} & set(statements)


def build_copy(plan: ParsedPlan) -> ParsedPlan:
    """An equal plan made of new objects, as a second parse of the same file would be."""
    tasks = tuple(replace(t, units=tuple(replace(u) for u in t.units)) for t in plan.tasks)
    return replace(plan, tasks=tasks, goals=tuple(replace(g) for g in plan.goals))


async def test_a_revision_reports_exactly_what_changed_and_updates_in_place(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    first = await import_plan(sample_plan, SHA_1)
    ids = {t.code: t.id for t in await Task.all()}
    housing_id = (await Target.get(task_id=ids["2.1.3"], position=0)).id
    plan_before = await Plan.get(id=first.plan_id)

    result = await import_plan(revised_plan, SHA_2)

    assert result.changed and not result.created
    assert result.plan_id == first.plan_id
    assert result.tasks_added == ("2.6.3",)
    assert result.tasks_removed == ("2.5.3",)
    assert result.tasks_restored == ()
    assert result.tasks_changed == {"2.1.2": ["title"]}
    assert result.units_reassigned == {
        "2.1.3": (
            (("县建设局", Role.LEAD), ("县自然资源和规划局", Role.SUPPORT)),
            (("县建设局", Role.LEAD), ("长兴城投集团", Role.SUPPORT)),
        )
    }
    assert result.targets_changed == 1
    assert result.requirements_changed == 0
    assert result.plan_fields_changed == ("source_sha256",)
    assert result.departments_added == ("长兴城投集团",)
    assert result.departments_updated == ()
    assert result.positions_updated == 1  # 2.6.1 moved up into the place of 2.5.3

    tasks = {t.code: t for t in await Task.all().prefetch_related("assignments__department")}
    assert {code: t.id for code, t in tasks.items() if code in ids} == ids  # same rows
    assert tasks["2.1.2"].title == "完善国土空间规划体系"
    assert tasks["2.5.3"].withdrawn_at is not None
    assert tasks["2.5.3"].withdrawn_at.utcoffset() is not None
    assert roles(tasks["2.5.3"])  # a withdrawn task keeps its history
    assert roles(tasks["2.1.3"]) == [("县建设局", Role.LEAD), ("长兴城投集团", Role.SUPPORT)]
    assert (await Department.get(name="长兴城投集团")).kind is DepartmentKind.COMPANY
    housing = await Target.get(id=housing_id)
    assert housing.value == Decimal("9500")
    plan_after = await Plan.get(id=first.plan_id)
    assert plan_after.updated_at > plan_before.updated_at
    assert plan_after.created_at == plan_before.created_at
    assert await Plan.all().count() == 1

    assert not (await import_plan(revised_plan, SHA_2)).changed


async def test_a_withdrawn_task_comes_back_with_its_id(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, SHA_1)
    smart_city = await Task.get(code="2.5.3")
    await import_plan(revised_plan, SHA_2)

    result = await import_plan(sample_plan, SHA_1)

    assert result.tasks_added == ("2.5.3",)
    assert result.tasks_restored == ("2.5.3",)
    assert result.tasks_removed == ("2.6.3",)
    assert "2.5.3" not in result.units_reassigned  # same units as before it was withdrawn
    restored = await Task.get(code="2.5.3")
    assert restored.id == smart_city.id
    assert restored.withdrawn_at is None
    assert (await Task.get(code="2.6.3")).withdrawn_at is not None


async def test_units_are_matched_by_alias_and_aliases_merge(
    db: str, sample_plan: ParsedPlan
) -> None:
    await import_plan(sample_plan, SHA_1)
    tasks = list(sample_plan.tasks)
    # The revision names 县委宣传部 by its alias, and 县委改革办 gains another alias.
    tasks[5] = replace(tasks[5], units=(ParsedUnit("文明办", Role.LEAD), *tasks[5].units[1:]))
    tasks[4] = replace(
        tasks[4],
        units=(*tasks[4].units[:2], ParsedUnit("县委改革办", Role.SUPPORT, ("县数改办", "改革办"))),
    )

    result = await import_plan(replace(sample_plan, tasks=tuple(tasks)), SHA_2)

    assert result.departments_added == ()
    assert result.departments_updated == ("县委改革办",)
    assert result.units_reassigned == {}
    assert (await Department.get(name="县委改革办")).aliases == ["县数改办", "改革办"]
    assert await Department.filter(name="文明办").count() == 0


async def test_a_failure_mid_import_leaves_the_database_untouched(
    db: str, sample_plan: ParsedPlan, revised_plan: ParsedPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    await import_plan(sample_plan, SHA_1)
    before = await snapshot()

    async def fail(self: object, plan: Plan) -> None:
        raise RuntimeError("disk full")

    # Requirements come last: by then tasks, assignments and targets have been written.
    monkeypatch.setattr(storage.plans._Importer, "_sync_requirements", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        await import_plan(revised_plan, SHA_2)

    assert await snapshot() == before


async def test_a_failed_first_import_leaves_no_plan(
    db: str, sample_plan: ParsedPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: object, plan: Plan) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(storage.plans._Importer, "_sync_targets", fail)
    with pytest.raises(RuntimeError):
        await import_plan(sample_plan, SHA_1)

    assert all(not rows for rows in (await snapshot()).values())


async def test_a_document_the_tables_cannot_hold_is_refused_before_writing(
    db: str, sample_plan: ParsedPlan
) -> None:
    twice = replace(sample_plan, tasks=(*sample_plan.tasks, sample_plan.tasks[0]))
    with pytest.raises(ValueError, match=r"duplicate task codes: 2\.1\.1"):
        await import_plan(twice, SHA_1)
    assert await Plan.all().count() == 0


async def test_values_beyond_four_decimals_are_stored_rounded_and_reimport_is_a_noop(
    db: str, sample_plan: ParsedPlan
) -> None:
    goal = replace(sample_plan.goals[2], value=Decimal("47.421234"))
    plan = replace(sample_plan, goals=(*sample_plan.goals[:2], goal))
    await import_plan(plan, SHA_1)
    assert (await Target.get(metric="森林覆盖率")).value == Decimal("47.4212")
    assert not (await import_plan(plan, SHA_1)).changed


async def test_a_plan_without_doc_number_is_found_by_title(
    db: str, sample_plan: ParsedPlan
) -> None:
    first = await import_plan(replace(sample_plan, doc_number=None), SHA_1)
    second = await import_plan(sample_plan, SHA_1)
    assert second.plan_id == first.plan_id
    assert second.plan_fields_changed == ("doc_number",)
    # Read without its 文号 later, the document keeps the number it has.
    third = await import_plan(replace(sample_plan, doc_number=None), SHA_1)
    assert third.plan_id == first.plan_id and not third.changed
    # Another 文号 with the same title is another document.
    other = await import_plan(replace(sample_plan, doc_number="长政办发〔2024〕1号"), SHA_2)
    assert other.created and other.plan_id != first.plan_id


async def test_a_target_inserted_before_others_keeps_their_ids(db):
    head = "某县关于推进某项工作的实施方案\n某政办发〔2024〕9号\n一、重点任务\n"
    first = head + "1.住房。到2027年,筹集住房9000套,加装电梯100台。(责任单位:县建设局)\n"
    await import_plan(parse_plan_text(first), source_sha256="a")
    before = {t.metric: t.id for t in await Target.all()}
    revised = (
        head + "1.住房。到2027年,改造小区50个,筹集住房9000套,加装电梯120台。(责任单位:县建设局)\n"
    )
    result = await import_plan(parse_plan_text(revised), source_sha256="b")
    after = {t.metric: (t.id, t.position, t.value) for t in await Target.all()}
    assert after["筹集住房"][0] == before["筹集住房"]
    assert after["加装电梯"][0] == before["加装电梯"]
    assert after["加装电梯"][1:] == (2, 120)
    assert result.targets_changed == 3  # one added, two moved (one of them also revalued)
