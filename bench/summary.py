"""Summary benchmark: the weekly summary for 1,000 departments, 10,000 tasks, 100,000 reports.

    python bench/summary.py              # full size, and a tenth of it for the query count
    python bench/summary.py --scale 0.1  # a tenth only (and a hundredth for the count)

For each size a throwaway SQLite database is migrated (storage.db.init_db) and filled with bulk
inserts (executemany through the Tortoise connection): one plan, D departments with one lead
liaison each, T tasks (one lead and two support units each, a target on every other task, five
plan goals), R reports over the last 90 days on those (task, department) pairs, a third of them
carrying a value toward a target. Then the production path runs three times:

- load:    storage.summary.load_summary_data (SQL);
- compute: bot.summary.compute_summary (traffic lights, pace, changes);
- render:  bot.summary_render.render_for_telegram (Chinese, HTML messages or a document).

The process is set up as `duban run`'s is: the objects alive after the imports (and the fill)
are frozen out of the garbage collector's full passes (gc.freeze, as bot/cli.py does); the
collector is paused over load and compute (bot.summary_service.collector_paused, as the bot's
summary path does); each run starts from a collected heap without the previous run's summary.

SQL statements are counted by wrapping the Tortoise connection's execute methods. Prints the
seconds per phase of each run, and under it where they went: CPU seconds of each phase (on a
shared machine, wall time above CPU time is time spent waiting for a core), the seconds spent
awaiting each SQL statement of the load (the database's work and the driver building the rows),
and the pauses of Python's cyclic garbage collector in each phase (a pause can fall inside a
statement's seconds too: the driver's rows are objects the collector counts). Then the queries
at both sizes, and LAST: the median total at full size (aim <= 1 s) and the query counts (aim:
the same at both sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import count_queries
from tortoise import connections

from bot.summary import compute_summary
from bot.summary_render import render_for_telegram
from bot.summary_service import collector_paused
from storage.db import close_db, init_db
from storage.summary import load_summary_data

STATUSES = ("on_track", "on_track", "on_track", "at_risk", "blocked", "done")
RUNS = 3
PHASES = ("load", "compute", "render")


def _ts(moment: datetime) -> str:
    return moment.isoformat(sep=" ")


async def fill(departments: int, tasks: int, reports: int, now: datetime) -> None:
    """Bulk-insert the plan, departments, liaisons, tasks, assignments, targets and reports."""
    rng = random.Random(2026)
    db = connections.get("default")
    created = _ts(now - timedelta(days=400))
    await db.execute_query(
        'INSERT INTO "plans" ("id","title","doc_number","issuer","issued_on","horizon",'
        '"default_cycle","source_sha256","created_at","updated_at") '
        "VALUES (1,?,?,?,?,?,NULL,?,?,?)",
        [
            "长兴县推进城乡一体化发展实施意见（基准测试）",
            "长政办发〔2026〕1号",
            "长兴县人民政府办公室",
            "2025-10-01",
            "2027-12-31",
            "0" * 64,
            created,
            created,
        ],
    )
    await db.execute_many(
        'INSERT INTO "departments" ("id","name","aliases","kind","created_at") '
        "VALUES (?,?,'[]','agency',?)",
        [[d, f"县第{d}局", created] for d in range(1, departments + 1)],
    )
    await db.execute_many(
        'INSERT INTO "liaisons" ("id","telegram_user_id","full_name","role","active",'
        '"created_at","updated_at","department_id","is_lead","bound_at") '
        "VALUES (?,?,?,'liaison',1,?,?,?,1,?)",
        [
            [d, 800_000 + d, f"联络员{d}", created, created, d, created]
            for d in range(1, departments + 1)
        ],
    )
    deadline = date(2027, 12, 31)
    task_rows, assignment_rows, target_rows = [], [], []
    pairs: list[tuple[int, int]] = []  # (task, department)
    for t in range(1, tasks + 1):
        section, item = divmod(t - 1, 100)
        # A tenth of the tasks are overdue, so the summary has reds of every kind.
        task_deadline = (now - timedelta(days=10)).date() if t % 10 == 0 else deadline
        task_rows.append(
            [
                t,
                f"{section + 1}.{item + 1}",
                t,
                f"第{section + 1}部分",
                f"任务{t}：推进重点项目建设",
                "推进重点项目建设，按期完成年度目标。",
                task_deadline.isoformat(),
            ]
        )
        units = rng.sample(range(1, departments + 1), 3)
        for position, department in enumerate(units):
            role = "lead" if position == 0 else "support"
            assignment_rows.append([role, position, department, t])
            pairs.append((t, department))
        if t % 2 == 0:
            target_rows.append(
                [len(target_rows) + 1, 0, "建设保障性住房9000套", "保障性住房", "9000", "套", t]
            )
    for goal in range(5):
        target_rows.append(
            [len(target_rows) + 1, goal, "地区生产总值", f"目标{goal}", "1000", "亿元", None]
        )
    await db.execute_many(
        'INSERT INTO "tasks" ("id","code","position","section","title","text","deadline",'
        '"plan_id") VALUES (?,?,?,?,?,?,?,1)',
        task_rows,
    )
    await db.execute_many(
        'INSERT INTO "assignments" ("role","position","department_id","task_id") VALUES (?,?,?,?)',
        assignment_rows,
    )
    await db.execute_many(
        'INSERT INTO "targets" ("id","position","text","metric","value","unit","comparator",'
        '"deadline","baseline","plan_id","task_id") '
        "VALUES (?,?,?,?,?,?,'>=',NULL,NULL,1,?)",
        target_rows,
    )
    target_of = {row[6]: row[0] for row in target_rows if row[6] is not None}
    report_rows = []
    for r in range(1, reports + 1):
        task, department = pairs[rng.randrange(len(pairs))]
        moment = now - timedelta(seconds=rng.randrange(90 * 86_400))
        values = "[]"
        if task in target_of and r % 3 == 0:
            values = json.dumps([{"target_id": target_of[task], "value": str(rng.randrange(9000))}])
        report_rows.append(
            [
                rng.choice(STATUSES),
                "本月按计划推进，已完成入户走访和资料汇总。",
                values,
                800_000 + department,
                r,
                moment.strftime("%Y-%m"),
                _ts(moment),
                department,
                department,
                task,
            ]
        )
    await db.execute_many(
        'INSERT INTO "reports" ("status","text","values","attachments","chat_id","message_id",'
        '"cycle_key","created_at","department_id","liaison_id","task_id") '
        "VALUES (?,?,?,'[]',?,?,?,?,?,?,?)",
        report_rows,
    )


@contextmanager
def timed_queries(connection: Any) -> Iterator[list[float]]:
    """Seconds spent awaiting each SELECT sent through `connection` (raw or from the ORM)."""
    seconds: list[float] = []
    previous = {}
    for name in ("execute_query", "execute_query_dict"):
        inner = getattr(connection, name)
        previous[name] = connection.__dict__.get(name)  # another wrapper (count_queries), or none

        async def timed(query: str, *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await _inner(query, *args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - started)

        setattr(connection, name, timed)
    try:
        yield seconds
    finally:
        for name, wrapper in previous.items():
            if wrapper is None:
                delattr(connection, name)  # back to the class's method
            else:
                setattr(connection, name, wrapper)


class CollectorPauses:
    """Seconds Python's cyclic garbage collector spent, while `running`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    @contextmanager
    def running(self) -> Iterator[None]:
        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)


class Clock:
    """Wall, CPU and garbage-collection seconds of each phase of one run."""

    def __init__(self, pauses: CollectorPauses) -> None:
        self.pauses = pauses
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.gc: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu, collected = time.perf_counter(), time.process_time(), self.pauses.seconds
        yield
        self.wall[name] = time.perf_counter() - wall
        self.cpu[name] = time.process_time() - cpu
        self.gc[name] = self.pauses.seconds - collected


async def measure(departments: int, tasks: int, reports: int, folder: Path) -> dict:
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(days=7)
    await init_db(f"sqlite://{folder / f'summary-{departments}.sqlite3'}")
    try:
        started = time.perf_counter()
        await fill(departments, tasks, reports, now)
        filled = time.perf_counter() - started
        runs = []
        counts = []
        pauses = CollectorPauses()
        connection = connections.get("default")
        # As in `duban run` (bot/cli.py), what was imported is frozen out of the collector's
        # full passes: otherwise each pass walks aiogram's ~200,000 import-time objects.
        gc.collect()
        gc.freeze()
        summary = telegram = None
        sizes = (0, 0, 0)
        with pauses.running():
            for _ in range(RUNS):
                # Each run starts as the bot's would: without the previous summary in memory.
                summary = telegram = None
                gc.collect()
                clock = Clock(pauses)
                # Collector paused over load and compute, and what was read freed before it
                # resumes, as in bot.summary_service.load_weekly_summary.
                with collector_paused():
                    with (
                        clock.phase("load"),
                        count_queries(connection) as queries,
                        timed_queries(connection) as sql_seconds,
                    ):
                        data = await load_summary_data(now, since)
                    counts.append(len(queries))
                    with clock.phase("compute"):
                        summary = compute_summary(data)
                    sizes = (len(data.assignments), len(data.latest), len(data.week_reports))
                    data = None
                with clock.phase("render"):
                    telegram = render_for_telegram(summary, "zh")
                runs.append((clock, sql_seconds))
        shape = (
            "{} assignments, {} latest reports, {} this week; ".format(*sizes)
            + f"{len(telegram.messages)} message(s)"
            f"{', document ' + str(len(telegram.document)) + ' bytes' if telegram.document else ''}"
        )
    finally:
        await close_db()
    return {"filled": filled, "runs": runs, "queries": max(counts), "shape": shape}


def report_run(label: str, number: int, clock: Clock, sql_seconds: list[float]) -> None:
    wall, cpu, collected = clock.wall, clock.cpu, clock.gc
    print(
        f"[{label}] run {number}: "
        + ", ".join(f"{name} {wall[name]:.3f} s" for name in PHASES)
        + f", total {sum(wall.values()):.3f} s"
    )
    print(
        f"[{label}]   CPU "
        + ", ".join(f"{name} {cpu[name]:.3f}" for name in PHASES)
        + f"; SQL {sum(sql_seconds):.3f} s in the load ("
        + " ".join(f"{seconds:.3f}" for seconds in sql_seconds)
        + "); garbage collection "
        + ", ".join(f"{name} {collected[name]:.3f}" for name in PHASES)
    )


async def bench(scale: float, folder: Path) -> None:
    full = (round(1000 * scale), round(10_000 * scale), round(100_000 * scale))
    small = tuple(max(3, round(size / 10)) for size in full)
    results = {}
    for label, (departments, tasks, reports) in (("small", small), ("full", full)):
        result = await measure(departments, tasks, reports, folder)
        results[label] = result
        print(
            f"[{label}] {departments} departments, {tasks} tasks, {reports} reports "
            f"(filled in {result['filled']:.1f} s)"
        )
        print(f"[{label}] {result['shape']}")
        for number, (clock, sql_seconds) in enumerate(result["runs"], 1):
            report_run(label, number, clock, sql_seconds)
        print(f"[{label}] SQL queries per summary: {result['queries']}")
    total = statistics.median(sum(clock.wall.values()) for clock, _sql in results["full"]["runs"])
    small_q, full_q = results["small"]["queries"], results["full"]["queries"]
    same = f"{full_q} at both sizes" if small_q == full_q else f"{small_q} vs {full_q}"
    print(f"summary {total:.2f} s (limit 1 s), queries {same}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="duban-summary-") as folder:
        asyncio.run(bench(args.scale, Path(folder)))


if __name__ == "__main__":
    main()
