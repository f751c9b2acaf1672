"""Shared fixtures: an initialised database on SQLite and on PostgreSQL, and a sample plan.

PostgreSQL tests carry the `postgres` marker (`pytest -m postgres`, `pytest -m "not postgres"`).
They run against DUBAN_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres),
each in a fresh database that is dropped afterwards. An unreachable server skips them, with the
reason in the summary, unless DUBAN_REQUIRE_POSTGRES=1 (CI), which turns that into a failure.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.plan_model import (
    Comparator,
    Cycle,
    DepartmentKind,
    ParsedPlan,
    ParsedRequirement,
    ParsedTarget,
    ParsedTask,
    ParsedUnit,
    Role,
)
from storage.db import close_db, init_db

# The scheduler plans real sends for today's date; tests of other features must not receive
# prompts on some weekdays and not on others. Scheduling tests pass scheduling=True explicitly.
os.environ.setdefault("SCHEDULING", "false")

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
_unreachable: dict[str, str] = {}  # server URL -> reason, so later tests skip without waiting

DatabaseFactory = Callable[[], Awaitable[str]]


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("DUBAN_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (DUBAN_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(reason)


async def _connect_server(server: str) -> asyncpg.Connection:
    if server in _unreachable:
        _skip_or_fail(_unreachable[server])
    try:
        return await asyncpg.connect(server, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = (
            f"PostgreSQL not reachable at {_redacted(server)} ({type(exc).__name__}: {exc}); "
            "set DUBAN_TEST_POSTGRES_URL"
        )
        _unreachable[server] = reason
        _skip_or_fail(reason)
        raise  # not reached: skip and fail raise


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_factory(
    request: pytest.FixtureRequest, tmp_path
) -> AsyncIterator[DatabaseFactory]:
    """An async function returning the URL of a new, empty database of the parametrised dialect."""
    if request.param == "sqlite":
        counter = itertools.count()

        async def new_sqlite() -> str:
            # A folder that does not exist yet: init_db has to create it.
            return f"sqlite://{tmp_path / f'db{next(counter)}' / 'duban.sqlite3'}"

        yield new_sqlite
        return

    server = os.environ.get("DUBAN_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    admin = await _connect_server(server)
    names: list[str] = []

    async def new_postgres() -> str:
        name = f"duban_test_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return _with_database(server, name)

    try:
        yield new_postgres
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> AsyncIterator[str]:
    """An initialised database (migrations applied); yields its URL."""
    url = await database_factory()
    await init_db(url)
    try:
        yield url
    finally:
        await close_db()


# A plan modelled on examples/changxing-2023-65.txt, shortened.
TOWNSHIPS = ParsedUnit(
    "各乡镇<街道、园区>",
    Role.SUPPORT,
    aliases=("各乡镇", "各街道", "各园区"),
    kind=DepartmentKind.TOWNSHIP_GROUP,
)
HORIZON = date(2027, 12, 31)


def lead(name: str, *aliases: str, kind: DepartmentKind = DepartmentKind.AGENCY) -> ParsedUnit:
    return ParsedUnit(name, Role.LEAD, aliases, kind)


def support(name: str, *aliases: str, kind: DepartmentKind = DepartmentKind.AGENCY) -> ParsedUnit:
    return ParsedUnit(name, Role.SUPPORT, aliases, kind)


def target(metric: str, value: str, unit: str, baseline: str | None = None) -> ParsedTarget:
    return ParsedTarget(
        text=f"{metric}{value}{unit}以上",
        metric=metric,
        value=Decimal(value),
        unit=unit,
        comparator=Comparator.AT_LEAST,
        deadline=HORIZON,
        baseline=None if baseline is None else Decimal(baseline),
    )


def task(code: str, title: str, *units: ParsedUnit, **extra: object) -> ParsedTask:
    return ParsedTask(
        code=code,
        section=f"第{code.split('.')[1]}项行动",
        title=title,
        text=f"{title}。具体内容。",
        units=units,
        deadline=HORIZON,
        **extra,  # type: ignore[arg-type]
    )


def build_sample_plan() -> ParsedPlan:
    return ParsedPlan(
        title="关于推进以县城为重要载体的城镇化建设的实施意见",
        doc_number="长政办发〔2023〕65号",
        issuer="长兴县政府办公室",
        issued_on=date(2023, 12, 29),
        horizon=HORIZON,
        goals=(
            target("地区生产总值", "1200", "亿元"),
            target("空气质量优良天数比率", "90", "%"),
            target("森林覆盖率", "47.42", "%"),
        ),
        tasks=(
            task(
                "2.1.1",
                "优化全域发展布局",
                lead("县发改局"),
                support("县自然资源和规划局"),
                support("县建设局"),
                support("生态环境局长兴分局"),
                support("县农业农村局"),
            ),
            task("2.1.2", "完善国土空间规划", lead("县自然资源和规划局"), TOWNSHIPS),
            task(
                "2.1.3",
                "推动城市有机更新",
                lead("县建设局"),
                support("县自然资源和规划局"),
                targets=(
                    target("累计筹集保障性租赁住房", "9000", "套"),
                    target("实施电梯加装", "100", "台"),
                ),
            ),
            task(
                "2.4.3",
                "建设“老有所养”幸福养老服务体系",
                lead("县民政局"),
                cycle=Cycle.QUARTERLY,
                targets=(target("养老机构护理型床位占比", "60", "%", baseline="52"),),
            ),
            task(
                "2.5.3",
                "推进智慧城镇建设",
                lead("县大数据局"),
                support("县政务办"),
                support("县委改革办", "县数改办"),
            ),
            task(
                "2.6.1",
                "推动文明城市创建",
                lead("县委宣传部", "文明办"),
                support("县综合行政执法局"),
                support("县文广旅体局"),
            ),
        ),
        requirements=(
            ParsedRequirement("3.1", "保障措施", "强化统筹协调", "建立健全议事协调机制。"),
            ParsedRequirement("3.2", "保障措施", "强化政策保障", "积极争取上级政策资金支持。"),
            ParsedRequirement("3.3", "保障措施", "强化宣传引导", "营造城镇化建设良好氛围。"),
        ),
    )


@pytest.fixture
def sample_plan() -> ParsedPlan:
    return build_sample_plan()


def build_revised_plan() -> ParsedPlan:
    """The sample plan revised: 2.1.2 retitled; 2.1.3 gets another support unit and 9500 housing
    units instead of 9000; 2.5.3 dropped; 2.6.3 added."""
    plan = build_sample_plan()
    tasks = {item.code: item for item in plan.tasks}
    housing, elevators = tasks["2.1.3"].targets
    tasks["2.1.2"] = replace(tasks["2.1.2"], title="完善国土空间规划体系")
    tasks["2.1.3"] = replace(
        tasks["2.1.3"],
        units=(lead("县建设局"), support("长兴城投集团", kind=DepartmentKind.COMPANY)),
        targets=(replace(housing, value=Decimal("9500")), elevators),
    )
    del tasks["2.5.3"]
    tasks["2.6.3"] = task(
        "2.6.3", "推进生产生活绿色低碳", lead("县发改局"), support("生态环境局长兴分局")
    )
    return replace(plan, tasks=tuple(tasks.values()))


@pytest.fixture
def revised_plan() -> ParsedPlan:
    return build_revised_plan()
