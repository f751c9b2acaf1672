"""The fault suite: the delivery pipeline under crashes, a failing Bot API, downtime and a locked
database. Everything is production code (Sender, the start-up hooks of setup_scheduling, the
ledger); Telegram is the emulator. Small sizes, seeded faults, virtual time where time matters.

1. kill -9 of a real bot process during a 500-message fan-out, then a restart;
2. 20 % of the calls failing with 429 / 5xx / timeouts (some timeouts after delivering);
3. the bot down across scheduled prompts: caught up at start, or expired and listed;
4. the SQLite file locked by another connection for a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Dispatcher

from bot.delivery import Sender, SenderLimits
from bot.settings import Settings
from jobs import setup_scheduling
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryStatus, NewDelivery
from storage.models import Delivery, Department, Liaison
from telegram_emulator import TelegramEmulator
from tests.delivery_support import VirtualClock, render_text, rows, sent_keys, statuses
from tests.emulator_fixtures import bot_fixture, close_bot, make_bot, tg_fixture  # noqa: F401

SQLITE = pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
ROOT = Path(__file__).resolve().parent.parent

# The bot process of the crash test: the production start-up (the run lease as `duban run` takes
# it; setup_scheduling: take back a dead process's in-flight rows, expire stale ones, start the
# sender) against the emulator; exits once the ledger holds nothing pending or in flight.
_BOT_PROCESS = """
import asyncio, sys
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from bot.settings import Settings
from jobs import setup_scheduling
from storage import deliveries as ledger
from storage.db import close_db, init_db
from storage.deliveries import DeliveryStatus
from storage.lease import acquire_run_lease
from tests.delivery_support import render_text

async def main(url, api, token, rate, in_flight):
    lease = await acquire_run_lease(url)
    await init_db(url)
    settings = Settings(
        _env_file=None, timezone="Asia/Shanghai", bot_token=token, telegram_api_url=api,
        database_url=url, send_rate_per_second=float(rate), send_per_chat_per_second=100.0,
        send_max_in_flight=int(in_flight),
    )
    session = AiohttpSession(api=TelegramAPIServer.from_base(api), timeout=10)
    bot = Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    dp = Dispatcher(run_lease=lease)
    setup_scheduling(dp, bot, settings, render=render_text, planner=lambda start, end: [])
    await dp.emit_startup(bot=bot)
    print("started", flush=True)
    while True:
        counts = await ledger.count_by_status()
        if counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.SENDING] == 0:
            break
        await asyncio.sleep(0.05)
    await dp.emit_shutdown(bot=bot)
    await bot.session.close()
    await close_db()
    await lease.release()
    print("done", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def _start_bot_process(url: str, tg: TelegramEmulator, rate: int, in_flight: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BOT_PROCESS,
        url,
        tg.base_url,
        tg.token,
        str(rate),
        str(in_flight),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@SQLITE
async def test_kill_9_during_a_500_message_fan_out_loses_nothing(db, tg) -> None:
    in_flight = 16
    chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(500)]
    assert await ledger.enqueue(rows(chats, due=datetime.now(UTC))) == 500
    expected = {f"r:{n}:{chat}" for n, chat in enumerate(chats)}

    first = await _start_bot_process(db, tg, rate=150, in_flight=in_flight)
    try:
        await tg.wait_until(lambda: len(tg.sent) >= 100, timeout=60)  # imports are slow
        assert first.returncode is None, "the fan-out finished before the kill"
        first.send_signal(signal.SIGKILL)  # kill -9: no shutdown hook, no graceful stop
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    delivered_before = len(tg.sent)
    before = await ledger.count_by_status()
    assert before[DeliveryStatus.SENT] < 500
    assert before[DeliveryStatus.PENDING] + before[DeliveryStatus.SENDING] > 0

    second = await _start_bot_process(db, tg, rate=500, in_flight=in_flight)
    out, err = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 0, err.decode()[-3000:]
    assert b"done" in out

    counts = sent_keys(tg)
    assert set(counts) == expected  # nothing lost
    duplicates = sum(count - 1 for count in counts.values())
    assert duplicates <= in_flight  # only the requests open at the kill went out twice
    assert len(tg.sent) == 500 + duplicates
    assert delivered_before < len(tg.sent)
    assert set((await statuses()).values()) == {DeliveryStatus.SENT}


@SQLITE
async def test_a_fifth_of_the_calls_failing_loses_nothing(db) -> None:
    clock = VirtualClock()
    async with TelegramEmulator(clock=clock.monotonic) as tg:
        chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(100)]
        group = tg.add_group("协调群").id
        await ledger.enqueue(rows(chats))
        await ledger.enqueue(rows([group] * 3, kind=DeliveryKind.ESCALATION, prefix="g"))
        # Three ambiguous timeouts: Telegram delivered, the answer never came back.
        tg.timeout_next("sendMessage", count=3, deliver=True)
        tg.chaos(rate=0.2, kinds=("429", "5xx", "timeout"), seed=20261128, retry_after=1)
        bot = make_bot(tg)
        limits = SenderLimits(max_attempts=10)
        sender = Sender(bot, render_text, limits=limits, clock=clock, sleep=clock.sleep)
        clock.sender = sender
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        try:
            await tg.wait_until(
                lambda: len({m.text for m in tg.sent}) >= 103 and not sender.in_flight,
                timeout=20,
            )
            async with asyncio.timeout(10):
                while (await ledger.count_by_status())[DeliveryStatus.SENT] < 103:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            async with asyncio.timeout(5):
                await task
            await close_bot(bot)

        kinds = Counter(
            "429" if fault.status == 429 else "5xx" if fault.status else fault.kind
            for fault in tg.faults
        )
        assert kinds["429"] and kinds["5xx"] and kinds["timeout"], kinds
        delivered_anyway = sum(1 for fault in tg.faults if fault.delivered)
        assert delivered_anyway == 3
        final = await statuses()
        assert set(final.values()) == {DeliveryStatus.SENT}  # nothing failed or lost
        counts = sent_keys(tg)
        assert set(counts) == set(final)
        # Exactly once, but for the calls Telegram performed without answering.
        assert sum(count - 1 for count in counts.values()) == delivered_anyway
        # A 429 (retry_after 1) is waited out in the chat and never counted as a failed try.
        retried = await Delivery.filter(last_error__startswith="429").count()
        assert retried <= kinds["429"]


@SQLITE
async def test_bot_down_across_prompts_catches_up_at_start_or_expires_and_reports(db) -> None:
    clock = VirtualClock()
    start = clock()
    housing = await Department.create(name="县建设局")
    async with TelegramEmulator(clock=clock.monotonic) as tg:
        people = [tg.add_user(f"联络员{i}", started=True) for i in range(4)]
        liaisons = [
            await Liaison.create(
                telegram_user_id=person.id, full_name=f"联络员{i}", department=housing
            )
            for i, person in enumerate(people)
        ]

        def prompt(key: str, person: int, due: datetime) -> NewDelivery:
            return NewDelivery(
                DeliveryKind.PROMPT,
                key,
                people[person].id,
                due,
                liaison_id=liaisons[person].id,
                department_id=housing.id,
            )

        await ledger.enqueue(
            [
                prompt("prompt:1h-ago", 0, start - timedelta(hours=1)),
                prompt("prompt:23h-ago", 1, start - timedelta(hours=23, minutes=59)),
                prompt("prompt:25h-ago", 2, start - timedelta(hours=25)),
                prompt("prompt:in-2h", 3, start + timedelta(hours=2)),
            ]
        )
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            timezone="Asia/Shanghai",
            bot_token=tg.token,
            telegram_api_url=tg.base_url,
            database_url=db,
        )
        bot = make_bot(tg)
        dp = Dispatcher()
        setup_scheduling(
            dp,
            bot,
            settings,
            render=render_text,
            planner=lambda _start, _end: [],
            clock=clock,
            sleep=clock.sleep,
        )
        await dp.emit_startup(bot=bot)  # the bot comes back at `start`
        try:
            clock.sender = dp["sender"]
            await tg.wait_until(lambda: len(tg.sent) >= 2, timeout=10)
        finally:
            await dp.emit_shutdown(bot=bot)
            await close_bot(bot)

        assert sent_keys(tg) == Counter({"prompt:1h-ago": 1, "prompt:23h-ago": 1})
        sends = [call for call in tg.calls_to("sendMessage") if call.ok]
        assert all(call.time - start.timestamp() <= 120 for call in sends)  # virtual time
        sent = await ledger.deliveries_by_key(["prompt:1h-ago", "prompt:23h-ago"])
        assert all(r.sent_at is not None and r.sent_at - start <= timedelta(minutes=2)
                   for r in sent.values())  # fmt: skip

    final = await statuses()
    assert final["prompt:25h-ago"] is DeliveryStatus.EXPIRED
    assert final["prompt:in-2h"] is DeliveryStatus.PENDING
    listed = await ledger.expired_or_failed_since(start - timedelta(days=7))
    assert [r.key for r in listed] == ["prompt:25h-ago"]
    (issue,) = await ledger.delivery_issues_since(start - timedelta(days=7))
    assert (issue.kind, issue.recipient, issue.reason) == ("prompt", "联络员2", "expired")
    assert issue.chat_id == people[2].id


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite://")


def _hold_exclusive_lock(path: str, seconds: float, locked: threading.Event) -> None:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        threading.Event().wait(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


@SQLITE
@pytest.mark.parametrize(
    "hold",
    [
        pytest.param(3.0, id="within-busy-timeout"),
        pytest.param(6.5, id="past-busy-timeout-sender-retries"),
    ],
)
async def test_a_locked_sqlite_file_delays_but_loses_nothing(db, tg, bot, caplog, hold) -> None:
    caplog.set_level(logging.WARNING, logger="bot.delivery")
    chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(40)]
    await ledger.enqueue(rows(chats, due=datetime.now(UTC)))
    sender = Sender(bot, render_text, limits=SenderLimits(per_second=10, max_in_flight=4))
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    locked = threading.Event()
    locker = threading.Thread(
        target=_hold_exclusive_lock, args=(_sqlite_path(db), hold, locked), daemon=True
    )
    try:
        await tg.wait_until(lambda: len(tg.sent) >= 5, timeout=10)
        locker.start()
        await asyncio.to_thread(locked.wait, 10)
        assert locked.is_set()
        await tg.wait_until(lambda: not locker.is_alive(), timeout=hold + 10)
        async with asyncio.timeout(30):
            while (await ledger.count_by_status())[DeliveryStatus.SENT] < 40:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert not task.done()  # the sender's loop outlived the lock
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await task
        locker.join(timeout=15)

    counts = sent_keys(tg)
    assert set(counts) == {f"r:{n}:{chat}" for n, chat in enumerate(chats)}
    assert all(count == 1 for count in counts.values())  # the lock delayed; nothing resent
    assert set((await statuses()).values()) == {DeliveryStatus.SENT}
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    if hold > 5.0:  # longer than busy_timeout=5000: the sender's own retries took over
        assert retried
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
