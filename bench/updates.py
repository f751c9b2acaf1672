"""Updates benchmark: progress reports per second, end to end, against a bare aiogram dispatcher.

    python bench/updates.py             # 3000 reports (9000 updates)
    python bench/updates.py --n 500
    python bench/updates.py --synchronous OFF   # commits that do not wait for the disk

A throwaway SQLite database holds the example plan (examples/changxing-2023-65.txt) and one
liaison per department. Each report is the cheapest complete path through the real handlers
(handlers.reports), as three raw update dicts fed with `dp.feed_raw_update(bot, update)` to the
dispatcher `bot.app.build_dispatcher` builds, with tests/mocked_bot.py's MockedBot (no HTTP):

1. a message replying to a prompt (a bot message carrying the prompt keyboard) with the text;
2. the status button (r4) under the bot's answer;
3. the ✅ confirm button (r5) under the preview: the Report row is stored.

The conversation number each flow's buttons carry is random in production
(`handlers.reports._new_flow`); here it is fixed so the update dicts can be built before the clock
starts. Updates are fed one after another (each waits for its handlers); `--concurrency K` feeds
K lanes at once, each lane one set of liaisons in order, as polling's concurrent tasks would.

Baseline, in the same run: a bare `Dispatcher()` with one message handler echoing the text and one
callback handler answering the press, fed the very same update dicts.

A floor, in the same run and on the same updates: the bare dispatcher plus the three statements
any bot storing reports needs (look the sender up, look a task of theirs up, insert the report),
through the same Tortoise connection; its rows are deleted before ours runs. It shows what the
aims leave for everything else a real report path does. `--synchronous OFF` runs both without
waiting for the disk at each commit (the bot waits: synchronous=FULL), to show the disk's share.

Prints reports/s and updates/s for ours, updates/s for bare and the floor, checks that the
database holds N reports, and LAST: ours ÷ bare in updates/s over the same updates (aim ≥ 0.5)
and ours in reports/s (aim ≥ 1000 on SQLite), with the floor's figures beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import EXAMPLE_PLAN, count_queries
from aiogram import Dispatcher
from aiogram.types import CallbackQuery, Message
from tortoise import connections

import handlers.reports as report_handlers
from bot.app import build_dispatcher
from bot.i18n import build_i18n
from bot.plan_parser import parse_plan
from bot.settings import load_settings
from storage.db import close_db, init_db
from storage.enums import LiaisonRole
from storage.models import Assignment, Department, Liaison, Report
from storage.plans import import_plan
from tests.mocked_bot import BOT_ID, BOT_USERNAME, MockedBot

FLOW = 424242
TEXT = "本月按计划推进，已完成入户走访和资料汇总，下一步开展督导检查。"
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Duban", "username": BOT_USERNAME}
DATE = 1_764_000_000


async def seed() -> list[tuple[int, list[int]]]:
    """The example plan and one liaison per department: [(telegram user id, [task ids])]."""
    await import_plan(parse_plan(EXAMPLE_PLAN.read_bytes()), "0" * 64)
    tasks: dict[int, list[int]] = {}
    for department_id, task_id in await Assignment.all().values_list("department_id", "task_id"):
        tasks.setdefault(department_id, []).append(task_id)
    people = []
    for index, department in enumerate(await Department.all().order_by("id")):
        if department.id not in tasks:
            continue
        user_id = 700_000 + index
        await Liaison.create(
            telegram_user_id=user_id,
            full_name=f"联络员{index}",
            department_id=department.id,
            role=LiaisonRole.LIAISON,
            is_lead=True,
        )
        people.append((user_id, sorted(tasks[department.id])))
    return people


def build_updates(n: int, people: list[tuple[int, list[int]]]) -> list[dict[str, Any]]:
    """3 × n raw updates: reply to a prompt, press the status, press confirm."""
    i18n = build_i18n("zh")
    prompt_markup = {}
    updates: list[dict[str, Any]] = []
    update_id = 1
    message_id = 10_000
    for i in range(n):
        user_id, task_ids = people[i % len(people)]
        task_id = task_ids[(i // len(people)) % len(task_ids)]
        if task_id not in prompt_markup:
            with i18n.context(), i18n.use_locale("zh"):
                markup = report_handlers.prompt_keyboard(task_id)
            prompt_markup[task_id] = markup.model_dump(mode="json", exclude_none=True)
        sender = {
            "id": user_id,
            "is_bot": False,
            "first_name": f"u{user_id}",
            "language_code": "zh",
        }
        chat = {"id": user_id, "type": "private", "first_name": f"u{user_id}"}
        prompt = {
            "message_id": message_id,
            "date": DATE,
            "chat": chat,
            "from": BOT_USER,
            "text": "📋 进度提示",
            "reply_markup": prompt_markup[task_id],
        }
        reply = {
            "message_id": message_id + 1,
            "date": DATE,
            "chat": chat,
            "from": sender,
            "text": TEXT,
            "reply_to_message": prompt,
        }
        answer = {"message_id": message_id + 2, "date": DATE, "chat": chat, "from": BOT_USER}
        message_id += 3
        updates.append({"update_id": update_id, "message": reply})
        for data in (f"r4:{FLOW}:on_track", f"r5:{FLOW}:ok"):
            update_id += 1
            query = {
                "id": str(update_id),
                "from": sender,
                "chat_instance": "ci",
                "data": data,
                "message": {**answer, "text": "…"},
            }
            updates.append({"update_id": update_id, "callback_query": query})
        update_id += 1
    return updates


def bare_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    @dispatcher.callback_query()
    async def press(callback: CallbackQuery) -> None:
        await callback.answer(callback.data)

    return dispatcher


def floor_dispatcher() -> Dispatcher:
    """The bare dispatcher plus the least any bot that stores reports must do: on the text,
    look the sender up; on the confirm button, look a task of theirs up and insert the report
    (three statements per report through the same Tortoise connection, no checks, no FSM)."""
    dispatcher = Dispatcher()
    drafts: dict[int, tuple[int, int, str]] = {}

    @dispatcher.message()
    async def draft(message: Message) -> None:
        sender = message.from_user.id if message.from_user else 0
        _count, rows = await connections.get("default").execute_query(
            "SELECT id, department_id FROM liaisons WHERE telegram_user_id = ? AND active = 1",
            [sender],
        )
        drafts[sender] = (rows[0][0], rows[0][1], message.text or "")
        await message.answer(message.text or "")

    @dispatcher.callback_query()
    async def press(callback: CallbackQuery) -> None:
        if (callback.data or "").endswith(":ok"):
            liaison_id, department_id, text = drafts[callback.from_user.id]
            database = connections.get("default")
            _count, rows = await database.execute_query(
                "SELECT task_id FROM assignments WHERE department_id = ? LIMIT 1", [department_id]
            )
            await database.execute_insert(
                'INSERT INTO reports (status, text, "values", attachments, chat_id, message_id,'
                " cycle_key, created_at, department_id, liaison_id, task_id)"
                " VALUES ('on_track', ?, '[]', '[]', ?, ?, '2026-11', ?, ?, ?, ?)",
                [
                    text,
                    callback.from_user.id,
                    int(callback.id),
                    datetime.now(UTC).isoformat(sep=" "),
                    department_id,
                    liaison_id,
                    rows[0][0],
                ],
            )
        await callback.answer(callback.data)

    return dispatcher


def _sender(update: dict[str, Any]) -> int:
    event = update.get("message") or update["callback_query"]
    return event["from"]["id"]


async def feed_all(
    dispatcher: Dispatcher, updates: list[dict[str, Any]], concurrency: int = 1
) -> float:
    """Seconds to feed every update; with concurrency > 1, that many lanes run at once, each
    feeding its own liaisons' updates in order (as polling's concurrent tasks would)."""
    bot = MockedBot()
    lanes: list[list[dict[str, Any]]] = [[] for _ in range(concurrency)]
    for update in updates:
        lanes[_sender(update) % concurrency].append(update)

    async def lane(items: list[dict[str, Any]]) -> None:
        for update in items:
            await dispatcher.feed_raw_update(bot, update)
            bot.session.requests.clear()

    gc.collect()
    started = time.perf_counter()
    await asyncio.gather(*(lane(items) for items in lanes))
    return time.perf_counter() - started


async def bench(n: int, folder: Path, concurrency: int = 1, synchronous: str | None = None) -> None:
    database_url = f"sqlite://{folder / 'updates.sqlite3'}"
    await init_db(database_url)
    if synchronous is not None:  # one connection: it holds for the floor and ours alike
        await connections.get("default").execute_script(f"PRAGMA synchronous={synchronous}")
    try:
        people = await seed()
        updates = build_updates(n, people)
        report_handlers._new_flow = lambda: FLOW  # see the module docstring
        ours = build_dispatcher(load_settings(database_url=database_url, scheduling=False))
        # No warm-up (it would store reports): ours is timed from its first update, after the
        # bare run has warmed aiogram's own code paths.
        bare_seconds = await feed_all(bare_dispatcher(), updates, concurrency)
        floor_seconds = await feed_all(floor_dispatcher(), updates, concurrency)
        floor_stored = await Report.all().count()
        await Report.all().delete()  # ours must not find them as already reported
        with count_queries(connections.get("default")) as queries:
            our_seconds = await feed_all(ours, updates, concurrency)
        stored = await Report.all().count()
    finally:
        await close_db()
    count = len(updates)
    ours_reports = n / our_seconds
    ours_updates = count / our_seconds
    bare_updates = count / bare_seconds
    print(f"reports:               {n} ({count} updates, {len(people)} liaisons)")
    print(f"concurrency:           {concurrency} lane(s) of updates fed at once")
    print(f"SQLite synchronous:    {synchronous or 'FULL (as the bot runs)'}")
    print(f"ours:                  {our_seconds:.2f} s")
    print(f"ours:                  {ours_updates:.0f} updates/s = {ours_reports:.0f} reports/s")
    print(f"SQL statements:        {len(queries)} ({len(queries) / n:.1f} per report)")
    print(f"bare (echo):           {bare_seconds:.2f} s")
    print(f"bare (echo):           {bare_updates:.0f} updates/s")
    print(f"floor (3 statements):  {floor_seconds:.2f} s")
    print(
        f"floor (3 statements):  {count / floor_seconds:.0f} updates/s = "
        f"{n / floor_seconds:.0f} reports/s, ratio {bare_seconds / floor_seconds:.2f} "
        f"({floor_stored} rows)"
    )
    print(f"report rows stored:    {stored} (expected {n}){'' if stored == n else '  MISMATCH'}")
    print(
        f"ratio {ours_updates / bare_updates:.2f}  (ours {ours_reports:.0f} reports/s; "
        f"a floor storing reports with 3 statements: {bare_seconds / floor_seconds:.2f}, "
        f"{n / floor_seconds:.0f} reports/s)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="reports (3 updates each)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="lanes fed at once (1: one update at a time)"
    )
    parser.add_argument(
        "--synchronous",
        choices=["OFF", "NORMAL", "FULL"],
        help="SQLite's synchronous pragma for this run (the bot's is FULL: each commit is on "
        "disk); OFF shows how much of a report is the disk",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="duban-updates-") as folder:
        asyncio.run(bench(args.n, Path(folder), args.concurrency, args.synchronous))


if __name__ == "__main__":
    main()
