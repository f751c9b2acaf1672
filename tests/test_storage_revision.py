"""Plan revisions keep every report where it belongs (SQLite and PostgreSQL).

The documents are the Changxing plan (examples/changxing-2023-65.txt) revised by hand: task
2.3.1 deleted and the section renumbered, a target re-united (9000 套 -> 9000 户), a target
kept with a new value, a responsible unit renamed (县建设局 -> 县住房和城乡建设局).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from tortoise.exceptions import OperationalError

from bot import plan_report
from bot.plan_parser import parse_plan_text
from storage.departments import DepartmentError, merge_departments
from storage.enums import LiaisonRole, ReportStatus
from storage.models import (
    Assignment,
    Delivery,
    DeliveryKind,
    Department,
    InviteToken,
    Liaison,
    Plan,
    Report,
    Requirement,
    Target,
    Task,
)
from storage.plan_queries import get_plan_summary, tasks_by_department
from storage.plans import ConfirmationNeeded, import_plan

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = (ROOT / "examples" / "changxing-2023-65.txt").read_text(encoding="utf-8")
_ids = itertools.count(1)


def without_2_3_1(text: str) -> str:
    """Section (三) loses 1.提升城市品质; 2. and 3. become 1. and 2."""
    lines = [line for line in text.splitlines() if not line.startswith("1.提升城市品质")]
    out = "\n".join(lines)
    out = out.replace("2.提升城镇风貌", "1.提升城镇风貌").replace(
        "3.提升人口占比", "2.提升人口占比"
    )
    assert out != text
    return out


def reunited(text: str) -> str:
    """9000 套 becomes 9000 户; the elevators go from 100 to 120 台."""
    out = text.replace("保障性租赁住房9000套以上", "保障性租赁住房9000户以上")
    out = out.replace("实施电梯加装100台以上", "实施电梯加装120台以上")
    assert out.count("9000户") == 1 and out.count("120台") == 1
    return out


def renamed_unit(text: str) -> str:
    return text.replace("县建设局", "县住房和城乡建设局")


async def imported(text: str, sha: str = "1" * 64, **options):
    return await import_plan(parse_plan_text(text), sha * 64 if len(sha) == 1 else sha, **options)


async def liaison(
    department: str, name: str = "张三", username: str | None = None, *, lead: bool = False
) -> Liaison:
    return await Liaison.create(
        telegram_user_id=10_000 + next(_ids),
        full_name=name,
        username=username,
        department=await Department.get(name=department),
        role=LiaisonRole.LIAISON,
        is_lead=lead,
    )


async def report(title: str, department: str, values: list[dict] | None = None) -> Report:
    by = await liaison(department, f"联络员{next(_ids)}")
    return await Report.create(
        task=await Task.get(title=title),
        department=await Department.get(name=department),
        liaison=by,
        status=ReportStatus.ON_TRACK,
        text=f"{title}进展",
        values=values or [],
        chat_id=by.telegram_user_id,
        message_id=next(_ids),
    )


async def rows() -> dict[str, list[dict]]:
    models = (Plan, Department, Task, Assignment, Target, Requirement, Report, Liaison)
    return {model.__name__: await model.all().order_by("id").values() for model in models}


async def test_deleting_a_task_and_renumbering_keeps_every_report_with_its_task(db: str) -> None:
    await imported(ORIGINAL)
    looks = await Task.get(title="提升城镇风貌")
    goal = await Target.get(task_id=looks.id, metric="累计建成省级未来社区")
    reports = {
        "提升城市品质": await report("提升城市品质", "县建设局"),
        "提升城镇风貌": await report(
            "提升城镇风貌", "县建设局", [{"target_id": goal.id, "value": "9"}]
        ),
        "提升人口占比": await report("提升人口占比", "县科技局"),
    }
    ids = {title: (await Task.get(title=title)).id for title in reports}

    result = await imported(without_2_3_1(ORIGINAL), "2")

    for title, row in reports.items():
        await row.refresh_from_db()
        task = await Task.get(id=row.task_id)
        assert (row.task_id, task.title) == (ids[title], title)
    quality = await Task.get(id=ids["提升城市品质"])
    assert quality.withdrawn_at is not None
    assert [(t.code, t.title) for t in await Task.filter(id__in=list(ids.values())[1:])] == [
        ("2.3.1", "提升城镇风貌"),
        ("2.3.2", "提升人口占比"),
    ]
    assert await Target.get(id=goal.id, task_id=ids["提升城镇风貌"], withdrawn_at=None)
    assert result.tasks_removed == ("2.3.1",)
    assert [(r.code, r.title, r.reports) for r in result.removals] == [("2.3.1", "提升城市品质", 1)]
    assert result.tasks_renumbered == (("2.3.2", "2.3.1"), ("2.3.3", "2.3.2"))
    assert result.tasks_added == ()
    summary = plan_report.render_import_result(parse_plan_text(without_2_3_1(ORIGINAL)), result)
    assert "Task withdrawn: 2.3.1 提升城市品质 (1 report(s) kept with it)" in summary
    assert "2.3.2 → 2.3.1 提升城镇风貌" in summary
    # Listings show active tasks only; the counts say one is withdrawn.
    plan = await get_plan_summary()
    assert plan is not None and (plan.tasks, plan.withdrawn_tasks) == (17, 1)
    listed = [task.title for group in await tasks_by_department() for task in group.tasks]
    assert "提升城市品质" not in listed and "提升城镇风貌" in listed


async def test_a_later_revision_restoring_the_task_finds_it_and_its_reports(db: str) -> None:
    await imported(ORIGINAL)
    kept = await report("提升城市品质", "县建设局")
    await imported(without_2_3_1(ORIGINAL), "2")
    result = await imported(ORIGINAL, "3")
    task = await Task.get(id=kept.task_id)
    assert (task.code, task.withdrawn_at) == ("2.3.1", None)
    assert result.tasks_restored == ("2.3.1",)
    assert result.tasks_renumbered == (("2.3.1", "2.3.2"), ("2.3.2", "2.3.3"))


async def test_a_re_united_target_is_new_and_the_old_one_keeps_its_values(db: str) -> None:
    await imported(ORIGINAL)
    housing = await Target.get(metric="累计筹集保障性租赁住房")
    elevators = await Target.get(metric="实施电梯加装")
    values = [
        {"target_id": housing.id, "value": "3000"},
        {"target_id": elevators.id, "value": "40"},
    ]
    row = await report("推动城市有机更新", "县建设局", values)

    result = await imported(reunited(ORIGINAL), "2")

    await housing.refresh_from_db()
    await row.refresh_from_db()
    assert housing.unit == "套"  # not relabelled 户 under the values reported in 套
    assert housing.withdrawn_at is not None
    assert row.values == values  # nothing relabelled: 3000 stays a count of 套
    new = await Target.get(metric="累计筹集保障性租赁住房", withdrawn_at=None)
    assert (new.id != housing.id, new.unit) == (True, "户")
    kept = await Target.get(id=elevators.id)
    assert (kept.value, kept.withdrawn_at) == (Decimal(120), None)
    changes = {(c.action, c.old.metric if c.old else c.new.metric) for c in result.target_changes}
    assert changes == {
        ("withdrawn", "累计筹集保障性租赁住房"),
        ("added", "累计筹集保障性租赁住房"),
        ("changed", "实施电梯加装"),
    }
    text = plan_report.render_import_result(parse_plan_text(reunited(ORIGINAL)), result)
    assert "实施电梯加装 ≥ 100 台 by 2027-12-31 → 实施电梯加装 ≥ 120 台" in text
    # The card, the summary's counts and value recognition see the active targets only.
    plan = await get_plan_summary()
    assert plan is not None and plan.targets == 18


async def test_a_dry_run_shows_the_difference_and_stores_nothing(db: str) -> None:
    await imported(ORIGINAL)
    await report("提升城市品质", "县建设局")
    before = await rows()
    revised = reunited(without_2_3_1(ORIGINAL))
    result = await imported(revised, "2", dry_run=True)
    assert await rows() == before
    text = plan_report.render_import_result(parse_plan_text(revised), result, dry_run=True)
    assert text.startswith("Dry run, nothing stored. Would update 长政办发〔2023〕65号")
    assert "Task withdrawn: 2.3.1 提升城市品质" in text
    assert "sha" not in text.lower() and "target_id" not in text


async def test_an_unconfirmed_import_with_losses_stores_nothing(db: str) -> None:
    await imported(ORIGINAL)
    await report("提升城市品质", "县建设局")
    before = await rows()
    with pytest.raises(ConfirmationNeeded) as refused:
        await imported(without_2_3_1(ORIGINAL), "2", confirmed=False)
    assert refused.value.result.losses == [
        "task 2.3.1 提升城市品质 would be withdrawn with 1 report(s)"
    ]
    assert await rows() == before


def run_cli(url: str, cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=cwd,
        env=env,
        check=False,
        timeout=120,
    )


async def test_the_cli_refuses_losses_without_yes_in_one_line(db: str, tmp_path: Path) -> None:
    await imported(ORIGINAL)
    values = [{"target_id": (await Target.get(metric="实施电梯加装")).id, "value": "40"}]
    await report("推动城市有机更新", "县建设局", values)
    await report("提升城市品质", "县建设局")
    before = await rows()
    revised = tmp_path / "revised.txt"
    revised.write_text(reunited(without_2_3_1(ORIGINAL)), encoding="utf-8")

    refused = run_cli(db, tmp_path, "plan", "import", str(revised), stdin="y\n")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stdout == ""
    assert "2.3.1 提升城市品质" in refused.stderr and "--yes" in refused.stderr
    assert "实施电梯加装" in refused.stderr
    assert await rows() == before

    dry = run_cli(db, tmp_path, "plan", "import", "--dry-run", str(revised))
    assert dry.returncode == 0, dry.stderr
    assert "Tasks renumbered: 2.3.2 → 2.3.1 提升城镇风貌; 2.3.3 → 2.3.2 提升人口占比" in dry.stdout
    assert await rows() == before

    accepted = run_cli(db, tmp_path, "plan", "import", "--yes", str(revised))
    assert accepted.returncode == 0, accepted.stderr
    assert "Task withdrawn: 2.3.1 提升城市品质 (1 report(s) kept with it)" in accepted.stdout
    assert (await Task.get(title="提升城市品质")).withdrawn_at is not None


async def test_a_department_gone_from_the_plan_is_named_with_its_liaisons(db: str) -> None:
    await imported(ORIGINAL)
    await liaison("县建设局", "王建", "wangjian")
    result = await imported(renamed_unit(ORIGINAL), "2")
    assert [(o.name, o.liaisons) for o in result.departments_orphaned] == [
        ("县建设局", (("王建", "wangjian"),))
    ]
    text = plan_report.render_import_result(parse_plan_text(renamed_unit(ORIGINAL)), result)
    assert "县建设局 has no task left in any active plan but has liaisons: 王建 @wangjian" in text


async def merge_fixture() -> dict[str, int]:
    """The plan, then its revision with 县建设局 renamed: both departments exist, the old one with
    a liaison, an invitation, a report and a delivery."""
    await imported(ORIGINAL)
    old = await Department.get(name="县建设局")
    person = await liaison("县建设局", "王建", "wangjian", lead=True)
    row = await report("推动城市有机更新", "县建设局")
    await InviteToken.create(
        token_sha256="a" * 64, department=old, expires_at=datetime.now(UTC) + timedelta(days=7)
    )
    now = datetime.now(UTC)
    await Delivery.create(
        kind=DeliveryKind.PROMPT,
        key="prompt:test",
        chat_id=person.telegram_user_id,
        department=old,
        due_at=now,
        next_attempt_at=now,
    )
    await imported(renamed_unit(ORIGINAL), "2")
    lead = await liaison("县住房和城乡建设局", "李新", lead=True)
    return {"old": old.id, "liaison": person.id, "report": row.id, "lead": lead.id}


async def test_department_merge_moves_people_and_history_at_once(db: str) -> None:
    ids = await merge_fixture()
    new = await Department.get(name="县住房和城乡建设局")
    moved = await merge_departments("县建设局", "县住房和城乡建设局")
    assert (moved.liaisons, moved.invitations, moved.reports, moved.deliveries) == (2, 1, 1, 1)
    assert not await Department.filter(id=ids["old"]).exists()
    assert (await Liaison.get(id=ids["liaison"])).department_id == new.id
    assert (await Report.get(id=ids["report"])).department_id == new.id
    assert await InviteToken.filter(department_id=new.id).count() == 1
    assert await Delivery.filter(department_id=new.id).count() == 1
    await new.refresh_from_db()
    assert "县建设局" in new.aliases
    # One lead per department: the new one's lead stays; the old lead becomes a deputy.
    leads = await Liaison.filter(department_id=new.id, is_lead=True).values_list("id", flat=True)
    assert leads == [ids["lead"]]
    assert await Liaison.filter(department_id=new.id).count() == 3


async def test_a_failing_merge_changes_nothing(db: str, monkeypatch) -> None:
    await merge_fixture()
    before = await rows()

    async def broken(self, using_db=None) -> None:
        raise OperationalError("disk full")

    monkeypatch.setattr(Department, "delete", broken)
    with pytest.raises(OperationalError):
        await merge_departments("县建设局", "县住房和城乡建设局")
    assert await rows() == before
    assert await Delivery.filter(department__name="县建设局").count() == 1


async def test_department_commands_fail_in_one_line_on_unknown_names(db: str) -> None:
    await imported(ORIGINAL)
    with pytest.raises(DepartmentError, match="unknown department: 县不存在局"):
        await merge_departments("县不存在局", "县建设局")
    with pytest.raises(DepartmentError, match="unknown department: 县新局"):
        await merge_departments("县建设局", "县新局")
    renamed = await merge_departments("县建设局", "县新局", create=True)
    assert renamed.renamed
    department = await Department.get(name="县新局")
    assert "县建设局" in department.aliases


async def test_readers_of_targets_skip_a_withdrawn_target(db: str) -> None:
    from storage.outbox import targets_by_id
    from storage.reports import get_report_task
    from storage.schedule import load_schedule_inputs
    from storage.summary import load_summary_data

    await imported(ORIGINAL)
    old = await Target.get(metric="累计筹集保障性租赁住房")
    await report("推动城市有机更新", "县建设局", [{"target_id": old.id, "value": "3000"}])
    await imported(reunited(ORIGINAL), "2")
    new = await Target.get(metric="累计筹集保障性租赁住房", withdrawn_at=None)

    task = await get_report_task(old.task_id)  # value recognition
    assert task is not None and old.id not in [t.id for t in task.targets]
    assert new.id in [t.id for t in task.targets]
    inputs = await load_schedule_inputs()  # deadline reminders
    scheduled = {target_id for t in inputs.tasks for target_id, _due in t.targets}
    assert old.id not in scheduled and new.id in scheduled
    now = datetime.now(UTC)
    summary = await load_summary_data(now, now - timedelta(days=7))
    assert summary is not None
    assert old.id not in [t.id for t in summary.targets]
    assert new.id in [t.id for t in summary.targets]
    assert [t.id for t in await targets_by_id([old.id, new.id])] == [new.id]  # reminders' text


async def test_the_cli_asks_on_a_terminal_and_stores_nothing_on_no(db: str, tmp_path: Path) -> None:
    await imported(ORIGINAL)
    await report("提升城市品质", "县建设局")
    before = await rows()
    revised = tmp_path / "revised.txt"
    revised.write_text(without_2_3_1(ORIGINAL), encoding="utf-8")

    def on_a_terminal(answer: str) -> subprocess.CompletedProcess:
        leader, follower = os.openpty()
        try:
            os.write(leader, answer.encode())
            env = {**os.environ, "DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
            return subprocess.run(
                [sys.executable, "-m", "bot", "plan", "import", str(revised)],
                stdin=follower,
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=env,
                check=False,
                timeout=120,
            )
        finally:
            os.close(leader)
            os.close(follower)

    refused = on_a_terminal("n\n")
    assert refused.returncode == 1
    assert "! task 2.3.1 提升城市品质 would be withdrawn with 1 report(s)" in refused.stdout
    assert "Import this revision anyway? [y/N]" in refused.stdout
    assert refused.stderr == "duban: error: not imported: nothing stored\n"
    assert await rows() == before

    accepted = on_a_terminal("y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "Updated 长政办发〔2023〕65号" in accepted.stdout
    assert (await Task.get(title="提升城市品质")).withdrawn_at is not None


async def test_merging_two_units_on_one_task_keeps_one_assignment(db: str) -> None:
    await imported(ORIGINAL)
    development = await Department.get(name="县发改局")
    planning = await Department.get(name="县自然资源和规划局")
    layout = await Task.get(title="优化全域发展布局")  # both are on it
    development_tasks = set(
        await Assignment.filter(department_id=development.id).values_list("task_id", flat=True)
    )
    planning_tasks = set(
        await Assignment.filter(department_id=planning.id).values_list("task_id", flat=True)
    )
    moved = await merge_departments("县发改局", "县自然资源和规划局")
    assert moved.duplicates == len(development_tasks & planning_tasks) >= 1
    assert moved.assignments == len(development_tasks - planning_tasks)
    assert await Assignment.filter(task_id=layout.id, department_id=planning.id).count() == 1
    assert set(
        await Assignment.filter(department_id=planning.id).values_list("task_id", flat=True)
    ) == (development_tasks | planning_tasks)


async def test_the_department_command_fails_in_one_line(db: str, tmp_path: Path) -> None:
    await imported(ORIGINAL)
    before = await rows()
    unknown = run_cli(db, tmp_path, "department", "merge", "县不存在局", "县建设局")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "duban: error: unknown department: 县不存在局\n",
    )
    missing = run_cli(db, tmp_path, "department", "merge", "县建设局", "县住房和城乡建设局")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "duban department rename" in missing.stderr
    assert await rows() == before
    renamed = run_cli(db, tmp_path, "department", "rename", "县建设局", "县住房和城乡建设局")
    assert renamed.returncode == 0, renamed.stderr
    assert (
        renamed.stdout == "Renamed 县建设局 to 县住房和城乡建设局; 县建设局 is kept as an alias.\n"
    )
    # The next import under either name finds the same department.
    result = await imported(renamed_unit(ORIGINAL), "2")
    assert result.departments_added == () and result.departments_orphaned == ()
