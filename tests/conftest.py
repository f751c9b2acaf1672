"""Shared fixtures: an initialised database on SQLite and on PostgreSQL, Redis, and a sample plan.

PostgreSQL tests carry the `postgres` marker (`pytest -m postgres`, `pytest -m "not postgres"`).
They run against DUBAN_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres),
each in a fresh database that is dropped afterwards. An unreachable server skips them, with the
reason in the summary, unless DUBAN_REQUIRE_POSTGRES=1 (CI), which turns that into a failure.

DUBAN_TEST_DATABASE picks the dialect of the whole run: unset or `sqlite`, the `db` fixture runs
each test on SQLite and on PostgreSQL and the other tests use SQLite; `postgres`, every test runs
on PostgreSQL only (`db`, `database_url`, and `ONE_DIALECT`), except the few that test SQLite
itself (they ask for it by name). CI runs the suite once each way.

Redis tests use the `redis_url` fixture: DUBAN_TEST_REDIS_URL (default redis://127.0.0.1:6379/15,
a database number of its own, flushed after each test). Unreachable: skipped, unless
DUBAN_REQUIRE_REDIS=1, which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

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
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
_unreachable: dict[str, str] = {}  # server URL -> reason, so later tests skip without waiting

DatabaseFactory = Callable[[], Awaitable[str]]

TEST_DATABASE = os.environ.get("DUBAN_TEST_DATABASE") or "sqlite"
if TEST_DATABASE not in ("sqlite", "postgres"):
    raise pytest.UsageError(
        f"DUBAN_TEST_DATABASE: expected sqlite or postgres, got {TEST_DATABASE!r}"
    )
_POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
# The `db` fixture's dialects: both by default, PostgreSQL alone in the PostgreSQL run.
_DIALECTS = ["sqlite", _POSTGRES] if TEST_DATABASE == "sqlite" else [_POSTGRES]
# For tests too slow to run twice: the run's dialect only (SQLite, or PostgreSQL in that run).
ONE_DIALECT = pytest.mark.parametrize(
    "database_factory", ["sqlite" if TEST_DATABASE == "sqlite" else _POSTGRES], indirect=True
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In the PostgreSQL run, tests on `database_url` run on PostgreSQL: mark them so."""
    if TEST_DATABASE != "postgres":
        return
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _skip_or_fail(reason: str, required_by: str = "DUBAN_REQUIRE_POSTGRES") -> None:
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1)", pytrace=False)
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


@asynccontextmanager
async def _databases(dialect: str, tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """A factory of new, empty databases of `dialect`; PostgreSQL ones are dropped at the end."""
    if dialect == "sqlite":
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


@pytest.fixture(params=_DIALECTS)
async def database_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    """An async function returning the URL of a new, empty database of the parametrised dialect."""
    async with _databases(request.param, tmp_path) as factory:
        yield factory


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a new, empty, uninitialised database of the run's dialect (DUBAN_TEST_DATABASE):
    a SQLite file under tmp_path (its folder not created yet), or a fresh PostgreSQL database.
    For tests that open the database themselves (`duban run`, `init_db` in their own fixture)."""
    async with _databases(TEST_DATABASE, tmp_path) as factory:
        yield await factory()


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> AsyncIterator[str]:
    """An initialised database (migrations applied); yields its URL."""
    url = await database_factory()
    await init_db(url)
    try:
        yield url
    finally:
        await close_db()


def fetch_rows(url: str, sql: str) -> list[tuple]:
    """Rows of `sql` on the database at `url` (SQLite or PostgreSQL), from a synchronous test."""
    if url.startswith("sqlite://"):
        with closing(sqlite3.connect(url.removeprefix("sqlite://"))) as connection:
            return connection.execute(sql).fetchall()

    async def fetch() -> list[tuple]:
        connection = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A Redis database for the test (DUBAN_TEST_REDIS_URL), emptied before and after it."""
    url = os.environ.get("DUBAN_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    if url in _unreachable:
        _skip_or_fail(_unreachable[url], "DUBAN_REQUIRE_REDIS")
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        try:
            await client.flushdb()
        except (OSError, RedisError) as exc:
            reason = (
                f"Redis not reachable at {_redacted(url)} ({type(exc).__name__}: {exc}); "
                "set DUBAN_TEST_REDIS_URL"
            )
            _unreachable[url] = reason
            _skip_or_fail(reason, "DUBAN_REQUIRE_REDIS")
        yield url
        await client.flushdb()
    finally:
        await client.aclose()


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


# Hypothesis profiles for the property-based suites (tests/test_bad_input.py): "ci", a few dozen
# examples, is the default; "long" runs 10,000. Choose with `pytest --hypothesis-profile=long` or
# DUBAN_HYPOTHESIS_PROFILE=long.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is a dev extra; suites that need it import it themselves
    pass
else:
    _hypothesis_settings.register_profile("ci", max_examples=40, deadline=None)
    _hypothesis_settings.register_profile(
        "long", max_examples=10_000, deadline=None, print_blob=True
    )
    _hypothesis_settings.load_profile(os.environ.get("DUBAN_HYPOTHESIS_PROFILE", "ci"))
