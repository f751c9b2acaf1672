"""The one SQL statement left (storage.summary._LATEST_SQL) against the Tortoise models.

Every table and `alias.column` the statement names must exist in the models' metadata
(`Model._meta.db_table`, `fields_db_projection`), so that renaming a column in the models fails
here rather than in production; and the statement, run on an empty and on a populated database
(SQLite and PostgreSQL, the `db` fixture), picks the same reports as the one definition of
"latest" in the ORM (storage.lookup.latest_reports).
"""

from __future__ import annotations

import re
from datetime import timedelta

from tortoise import Tortoise

from storage.enums import ReportStatus
from storage.lookup import latest_reports
from storage.models import Plan, Report
from storage.summary import _LATEST_SQL, _latest_reports, _ReportRows, load_summary_data
from tests.test_summary_storage import NOW, SINCE, import_real_plan, liaison, report

_TABLE = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_]+)\s+([a-z_]+)\b", re.IGNORECASE)
_DERIVED = re.compile(r"\)\s+([a-z_]+)\s*$", re.IGNORECASE | re.MULTILINE)
_QUALIFIED = re.compile(r"\b([a-z_]+)\.([a-z_]+)\b", re.IGNORECASE)
_OUTPUT = re.compile(r"\bAS\s+([a-z_]+)\b", re.IGNORECASE)


def model_columns() -> dict[str, set[str]]:
    """Each table of the models, with its columns, as Tortoise maps them."""
    return {
        model._meta.db_table: set(model._meta.fields_db_projection.values())
        for app in Tortoise.apps.values()
        for model in app.values()
    }


def unknown_names(sql: str, columns: dict[str, set[str]]) -> list[str]:
    """The tables and `alias.column` references of `sql` that the models do not have."""
    tables = {alias: table for table, alias in _TABLE.findall(sql)}
    derived = set(_DERIVED.findall(sql))  # a subquery's alias: its columns are named in the SQL
    outputs = set(_OUTPUT.findall(sql))
    unknown = [f"table {table}" for table in tables.values() if table not in columns]
    for alias, column in _QUALIFIED.findall(sql):
        if alias in derived:
            known = outputs | set().union(*(columns.get(t, set()) for t in tables.values()))
        elif alias in tables:
            known = columns.get(tables[alias], set())
        else:
            unknown.append(f"alias {alias} (in {alias}.{column})")
            continue
        if column not in known:
            unknown.append(f"{alias}.{column} ({tables.get(alias, 'subquery')})")
    return unknown


async def test_every_name_in_the_latest_report_sql_is_in_the_models(db: str) -> None:
    columns = model_columns()
    tables = {table for table, _alias in _TABLE.findall(_LATEST_SQL)}
    assert tables == {"reports", "tasks", "liaisons"}  # the parser found them all
    assert len(_QUALIFIED.findall(_LATEST_SQL)) >= 20
    assert unknown_names(_LATEST_SQL, columns) == []


async def test_the_check_names_a_column_the_models_do_not_have(db: str) -> None:
    renamed = _LATEST_SQL.replace("l.full_name", "l.name")
    assert unknown_names(renamed, model_columns()) == ["l.name (liaisons)"]


async def latest_by_the_orm(plan_id: int, *, before: bool) -> list[int]:
    reports = Report.filter(
        task__plan_id=plan_id, task__withdrawn_at__isnull=True, created_at__lte=NOW
    )
    if before:
        reports = reports.filter(created_at__lt=SINCE)
    return sorted(await latest_reports(reports).values_list("id", flat=True))


async def test_the_latest_report_sql_runs_on_an_empty_database(db: str) -> None:
    assert await _latest_reports(_ReportRows(), 1, NOW, SINCE) == ((), ())


async def test_the_latest_report_sql_agrees_with_the_orm_definition(db: str) -> None:
    await import_real_plan()
    lee = await liaison("县建设局", "李四", 11, is_lead=True)
    wang = await liaison("县发改局", "王五", 12)
    await report("2.1.3", lee, ReportStatus.ON_TRACK, 40)
    await report("2.1.3", lee, ReportStatus.AT_RISK, 10)
    await report("2.1.3", lee, ReportStatus.BLOCKED, 2)  # this week
    await report("2.1.3", lee, ReportStatus.DONE, 20)  # dated earlier, a higher id: the latest
    await report("2.1.1", wang, ReportStatus.ON_TRACK, 3)
    await report("2.1.1", wang, ReportStatus.BLOCKED, 1, withdrawn_at=NOW)
    await report("2.2.1", wang, ReportStatus.DONE, -1)  # after `now`
    await report("2.2.1", wang, ReportStatus.ON_TRACK, 30)
    plan = await Plan.first()

    latest, latest_before = await _latest_reports(_ReportRows(), plan.id, NOW, SINCE)

    assert [row.id for row in latest] == await latest_by_the_orm(plan.id, before=False)
    assert [row.id for row in latest_before] == await latest_by_the_orm(plan.id, before=True)
    assert len(latest) == 3 and len(latest_before) == 2
    data = await load_summary_data(NOW, SINCE)
    assert data.latest == latest and data.latest_before == latest_before
    assert {row.liaison_name for row in latest} == {"李四", "王五"}
    assert all(
        row.created_at <= NOW and row.created_at.utcoffset() == timedelta(0) for row in latest
    )
