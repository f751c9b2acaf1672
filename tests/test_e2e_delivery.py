"""The delivery pipeline end to end: start-up catch-up, planning, restart, chaos, real-clock limits.

The bot side is production code (Sender, setup_scheduling's start-up and shutdown hooks,
APScheduler); Telegram is the emulator. Assertions count what the emulator received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram import Dispatcher

from bot.delivery import Sender, SenderLimits
from bot.schedule import Audience, PlannedSend, SendKind
from bot.settings import Settings
from jobs import setup_scheduling
from jobs.delivery import SAFETY_JOB_ID, WAKE_JOB_ID
from jobs.planning import PLANNING_JOB_ID, plan_deliveries
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryStatus, NewDelivery
from storage.models import Delivery, Department, Liaison
from storage.onboarding import COORDINATION_CHAT_KEY, set_setting
from telegram_emulator import FloodLimits, TelegramEmulator
from tests.conftest import ONE_DIALECT
from tests.delivery_support import VirtualClock, render_text, rows, sent_keys, statuses
from tests.emulator_fixtures import bot_fixture, close_bot, make_bot, tg_fixture  # noqa: F401

TZ = ZoneInfo("Asia/Shanghai")
SQLITE = ONE_DIALECT  # once: SQLite, or PostgreSQL in the PostgreSQL run


def settings_for(tg: TelegramEmulator, db: str, **extra: object) -> Settings:
    # Explicit timezone: Tortoise writes TIMEZONE=UTC into the environment when it starts.
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        timezone="Asia/Shanghai",
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        database_url=db,
        **extra,
    )


async def test_restart_after_a_crash_sends_every_key_once_but_the_in_flight_window(
    db, tg, bot
) -> None:
    chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(150)]
    await ledger.enqueue(rows(chats, due=datetime.now(UTC)))
    limits = SenderLimits(per_second=100, max_in_flight=8, batch_size=20)
    first = Sender(bot, render_text, limits=limits)
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    await tg.wait_until(lambda: len(tg.sent) >= 50, timeout=10)
    running.cancel()  # the process dies: no graceful stop, open requests abandoned
    with contextlib.suppress(asyncio.CancelledError):
        await running
    before = await ledger.count_by_status()
    assert before[DeliveryStatus.SENT] < 150

    # A new process on the same database. Its claims are live: without the run lease, nothing
    # is taken back; under the lease (the first process is dead) all of them.
    second_bot = make_bot(tg)
    try:
        assert await ledger.reset_in_flight() == 0
        second = Sender(second_bot, render_text, limits=limits)
        taken_back = await ledger.reset_in_flight(lease_owner=second.owner)
        assert taken_back == before[DeliveryStatus.SENDING]
        stats = await second.run_once()
    finally:
        await close_bot(second_bot)

    counts = sent_keys(tg)
    assert set(counts) == {f"r:{n}:{chat}" for n, chat in enumerate(chats)}  # nothing lost
    duplicates = sum(count - 1 for count in counts.values())
    assert duplicates <= limits.max_in_flight
    assert stats.sent + before[DeliveryStatus.SENT] <= 150 + duplicates
    assert set((await statuses()).values()) == {DeliveryStatus.SENT}


@SQLITE
async def test_start_up_catches_up_expires_and_wires_the_scheduler(db, tg, bot) -> None:
    liaison = tg.add_user("联络员", started=True).id
    now = datetime.now(UTC)
    await ledger.enqueue(
        [
            NewDelivery(DeliveryKind.PROMPT, "missed-1h", liaison, now - timedelta(hours=1)),
            NewDelivery(DeliveryKind.NUDGE, "missed-23h", liaison, now - timedelta(hours=23)),
            NewDelivery(DeliveryKind.PROMPT, "missed-25h", liaison, now - timedelta(hours=25)),
            NewDelivery(DeliveryKind.REMINDER, "crashed", liaison, now - timedelta(minutes=5)),
            NewDelivery(DeliveryKind.REMINDER, "tomorrow", liaison, now + timedelta(days=1)),
        ]
    )
    await Delivery.filter(key="crashed").update(status=DeliveryStatus.SENDING)  # left by a crash
    dp = Dispatcher()
    setup_scheduling(dp, bot, settings_for(tg, db), render=render_text)

    await dp.emit_startup(bot=bot)
    try:
        await tg.wait_until(lambda: len(tg.sent) >= 3, timeout=10)
        scheduler = dp["scheduler"]
        assert scheduler.running
        assert dp["sender"].limits == SenderLimits()
        await tg.wait_until(lambda: scheduler.get_job(WAKE_JOB_ID) is not None, timeout=5)
        wake = scheduler.get_job(WAKE_JOB_ID)  # at the next due row
        assert abs(wake.next_run_time - (now + timedelta(days=1))) < timedelta(seconds=1)
        assert scheduler.get_job(SAFETY_JOB_ID) is not None
        planning = scheduler.get_job(PLANNING_JOB_ID)
        assert "hour='0', minute='5'" in str(planning.trigger)
        assert str(planning.trigger.timezone) == "Asia/Shanghai"
    finally:
        await dp.emit_shutdown(bot=bot)

    assert not dp["scheduler"].running
    assert sent_keys(tg) == Counter({"missed-1h": 1, "missed-23h": 1, "crashed": 1})
    states = await statuses()
    assert states["missed-25h"] is DeliveryStatus.EXPIRED
    assert states["tomorrow"] is DeliveryStatus.PENDING
    listed = await ledger.expired_or_failed_since(now - timedelta(days=7))
    assert [r.key for r in listed] == ["missed-25h"]


@SQLITE
async def test_planning_job_materialises_sends_for_liaisons_and_the_group(db, tg, bot) -> None:
    housing = await Department.create(name="县建设局")
    lead_user = tg.add_user("主联络员", started=True)
    deputy_user = tg.add_user("副联络员", started=True)
    group = tg.add_group("工作专班群", members=[lead_user])
    await Liaison.create(
        telegram_user_id=lead_user.id, full_name="主", department=housing, is_lead=True
    )
    await Liaison.create(
        telegram_user_id=deputy_user.id, full_name="副", department=housing, locale="en"
    )
    await set_setting(COORDINATION_CHAT_KEY, str(group.id))
    windows: list[tuple[datetime, datetime]] = []

    def planner(start: datetime, end: datetime) -> list[PlannedSend]:
        windows.append((start, end))
        due = start + timedelta(hours=23, minutes=59)  # fell due while the bot was down

        def send(kind: SendKind, key: str, at: datetime, audience: Audience, **extra):
            return PlannedSend(kind, key, at, at.astimezone(TZ), audience, **extra)

        return [
            send(SendKind.PROMPT, "prompt:2026-11:task7:dept1", due, Audience.DEPARTMENT,
                 department_id=housing.id, cycle_key="2026-11", deadline=date(2026, 11, 25)),
            send(SendKind.ESCALATION, "escalation:2026-11:dept1", due, Audience.GROUP,
                 department_id=housing.id, cycle_key="2026-11", task_ids=(7, 8)),
            send(SendKind.NUDGE, "nudge:2026-11:task7:dept1:n1", end - timedelta(minutes=1),
                 Audience.DEPARTMENT, department_id=housing.id, cycle_key="2026-11", attempt=1),
        ]  # fmt: skip

    dp = Dispatcher()
    setup_scheduling(dp, bot, settings_for(tg, db), render=render_text, planner=planner)
    await dp.emit_startup(bot=bot)
    try:
        await tg.wait_until(lambda: len(tg.sent) >= 3, timeout=10)
        runtime_id = dp["scheduler"].get_job(PLANNING_JOB_ID).args[0]
        assert await plan_deliveries(runtime_id) == 0  # planning again adds nothing
    finally:
        await dp.emit_shutdown(bot=bot)

    assert windows[0][1] - windows[0][0] == timedelta(days=3)  # staleness back, 2 days ahead
    lead, deputy = await Liaison.filter(department=housing).order_by("-is_lead")
    assert sent_keys(tg) == Counter(
        {
            f"prompt:2026-11:task7:dept1:l{lead.id}": 1,
            f"prompt:2026-11:task7:dept1:l{deputy.id}": 1,
            "escalation:2026-11:dept1": 1,
        }
    )
    assert {m.chat_id for m in tg.sent} == {lead_user.id, deputy_user.id, group.id}
    later = await ledger.deliveries_by_key([f"nudge:2026-11:task7:dept1:n1:l{deputy.id}"])
    (record,) = later.values()
    assert record.status is DeliveryStatus.PENDING
    assert record.payload == {
        "attempt": 1,
        "planned_key": "nudge:2026-11:task7:dept1:n1",
        "locale": "en",
    }
    assert (record.department_id, record.cycle_key, record.liaison_id) == (
        housing.id,
        "2026-11",
        deputy.id,
    )
    escalation = (await ledger.deliveries_by_key(["escalation:2026-11:dept1"]))[
        "escalation:2026-11:dept1"
    ]
    assert escalation.payload["task_ids"] == [7, 8]
    assert escalation.liaison_id is None


@SQLITE
async def test_nothing_is_lost_when_a_fifth_of_the_calls_fail(db) -> None:
    clock = VirtualClock()
    async with TelegramEmulator(clock=clock.monotonic) as tg:
        chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(80)]
        group = tg.add_group("协调群").id
        await ledger.enqueue(rows(chats))
        await ledger.enqueue(rows([group] * 3, kind=DeliveryKind.ESCALATION, prefix="g"))
        tg.flood_limits = FloodLimits(enforce=True)
        tg.chaos(rate=0.2, kinds=("429", "5xx", "timeout"), seed=7, retry_after=2)
        bot = make_bot(tg)
        sender = Sender(bot, render_text, clock=clock, sleep=clock.sleep)
        clock.sender = sender
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        try:
            await tg.wait_until(lambda: len(tg.sent) >= 83, timeout=15)
        finally:
            stop.set()
            async with asyncio.timeout(5):
                await task
            await close_bot(bot)
        assert len(tg.faults) > 5
        assert tg.limit_violations == 0  # only injected 429s, never one the limits caused
        assert sent_keys(tg) == Counter({key: 1 for key in await statuses()})
        assert set((await statuses()).values()) == {DeliveryStatus.SENT}


@SQLITE
async def test_real_clock_sends_stay_within_telegram_limits(db, tg, bot) -> None:
    tg.flood_limits = FloodLimits(enforce=True)
    chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(40)]
    now = datetime.now(UTC)
    await ledger.enqueue(rows(chats, due=now))
    await ledger.enqueue(rows([chats[0]] * 3, due=now, prefix="again"))
    stats = await Sender(bot, render_text).run_once()
    assert stats.sent == 43
    assert stats.rate_limited == 0
    assert tg.limit_violations == 0
