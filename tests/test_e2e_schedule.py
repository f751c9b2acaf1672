"""Issue 4's "Done when", end to end: a month of scheduled sends on the example plan.

The bot is built as `duban run` builds it (`create_app`: handlers, scheduler, sender, renderer)
and long-polls the emulator. Time is virtual: the sender's clock and sleep and the report flow's
clock come from workflow data (`delivery_clock`, `delivery_sleep`, `clock`); the scheduler is
paused after start-up and the test runs what its jobs would run — the planning job
(`plan_deliveries`) and the sender (`run_once`) — at each 09:00 of the month.

Two liaisons: 县教育局's (Chinese) answers the prompt through its buttons and is nudged no
more; 县公安局's (English) stays silent: three nudges on the working days from the due day
(Wed 25, Thu 26, Fri 27 November 2026), then an escalation in the coordination group on Monday
30 November. The weekly summary goes to the group each Monday with its chart. A restart on the
same database sends nothing again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram import Dispatcher

from bot.app import create_app
from bot.chart import font_path
from bot.onboarding import bind_coordination_group
from bot.plan_parser import parse_plan
from bot.settings import Settings, load_settings
from jobs.planning import PLANNING_JOB_ID, plan_deliveries
from storage.db import close_db, init_db
from storage.deliveries import DeliveryKind, DeliveryStatus
from storage.models import Assignment, Delivery, Department, Liaison, Report
from storage.plans import import_plan
from telegram_emulator import BotMessage, EmulatedUser, TelegramEmulator
from tests.delivery_support import VirtualClock
from tests.emulator_fixtures import polling, tg_fixture  # noqa: F401 - the "tg" fixture

TZ = ZoneInfo("Asia/Shanghai")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
EDUCATION, POLICE = "县教育局", "县公安局"
PACING_SLEEP = 5.0  # seconds: longer sleeps are the sender idling, not pacing


class MonthClock(VirtualClock):
    """Virtual time the test moves. The sender's pacing sleeps (a second between two messages
    to one chat, a few in a group) advance it; its idle sleeps wait for a wake-up instead of
    jumping to the next due row, so only the test decides which day it is."""

    async def sleep(self, seconds: float) -> None:
        if seconds <= PACING_SLEEP:
            await super().sleep(seconds)
        else:
            await asyncio.sleep(3600)  # cancelled by the sender's wake-up or stop


def local(day: int, month: int = 11, at: time = time(9, 0)) -> datetime:
    return datetime.combine(date(2026, month, day), at, TZ).astimezone(UTC)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    """SQLite, or PostgreSQL in the PostgreSQL run (DUBAN_TEST_DATABASE=postgres)."""
    url = database_url
    await init_db(url)
    try:
        yield url
    finally:
        await close_db()


def settings_for(tg: TelegramEmulator, database: str) -> Settings:
    return load_settings(
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        database_url=database,
        admin_ids="",
        timezone="Asia/Shanghai",  # Tortoise sets TIMEZONE=UTC in the environment
        scheduling=True,  # tests/conftest.py turns it off for the other features' tests
    )


def app_on(settings: Settings, clock: MonthClock) -> tuple[object, Dispatcher]:
    bot, dp = create_app(settings)
    dp["delivery_clock"] = clock
    dp["delivery_sleep"] = clock.sleep
    dp["clock"] = clock
    return bot, dp


class Month:
    """The running bot's scheduling side, driven in virtual time."""

    def __init__(self, dp: Dispatcher, clock: MonthClock, tg: TelegramEmulator) -> None:
        scheduler = dp["scheduler"]
        scheduler.pause()  # its jobs would fire in real time; the test runs them instead
        self.runtime_id = scheduler.get_job(PLANNING_JOB_ID).args[0]
        self.sender = dp["sender"]
        clock.sender = self.sender
        self.clock = clock
        self.tg = tg

    async def at(self, moment: datetime) -> None:
        """Move to `moment`, run the planning job, send what is due."""
        self.clock.now = max(self.clock.now, moment)
        await plan_deliveries(self.runtime_id)
        await self.sender.run_once()
        await self.tg.wait_idle()


def button(message: BotMessage, prefix: str, suffix: str = "") -> str:
    return next(d for d in message.callback_data if d.startswith(prefix) and d.endswith(suffix))


async def press_for(
    tg: TelegramEmulator, user: EmulatedUser, message: BotMessage, data: str, expect: str
) -> BotMessage:
    """Press a button; return the message (edited or new) that shows `expect`."""
    await tg.wait_for_answer(tg.press(user, message, data))
    await tg.wait_until(lambda: any(expect in (m.text or "") for m in tg.messages_to(user)))
    return next(m for m in reversed(tg.messages_to(user)) if expect in (m.text or ""))


def scheduled_texts(tg: TelegramEmulator, chat_id: int, marker: str) -> list[BotMessage]:
    return [m for m in tg.messages_to(chat_id) if marker in (m.text or "")]


async def test_a_month_of_prompts_nudges_escalation_and_summaries(tg, database) -> None:
    parsed = parse_plan(EXAMPLE.read_bytes())
    await import_plan(parsed, hashlib.sha256(EXAMPLE.read_bytes()).hexdigest())
    departments = {d.name: d.id for d in await Department.all()}
    education = tg.add_user("王教育", language_code="zh", started=True)
    police = tg.add_user("Li Police", language_code="en", started=True)
    coordinator = tg.add_user("督办", language_code="zh", started=True)
    group = tg.add_group("工作专班群", members=[coordinator, education, police])
    for user, name, department, locale in (
        (education, "王教育", EDUCATION, None),
        (police, "Li Police", POLICE, "en"),
    ):
        await Liaison.create(
            telegram_user_id=user.id,
            full_name=name,
            department_id=departments[department],
            is_lead=True,
            locale=locale,
        )
    settings = settings_for(tg, database)
    await bind_coordination_group(group.id, "工作专班群", settings)
    (education_task,) = await Assignment.filter(department_id=departments[EDUCATION]).values_list(
        "task_id", flat=True
    )
    police_tasks = await Assignment.filter(department_id=departments[POLICE]).values_list(
        "task_id", flat=True
    )

    clock = MonthClock(start=local(20, at=time(8, 0)))
    bot, dp = app_on(settings, clock)
    async with polling(dp, bot, tg):
        month = Month(dp, clock, tg)

        # Friday 20 November, 09:00: the prompts, and the calendar notice (2027 is not known).
        await month.at(local(20))
        (prompt,) = tg.messages_to(education)
        assert "进度提示" in prompt.text and "2026-11-25" in prompt.text
        assert len(tg.messages_to(police)) == len(police_tasks)
        assert all("Progress prompt" in m.text for m in tg.messages_to(police))
        (notice,) = tg.messages_to(group)
        assert "工作日历未覆盖" in notice.text and "2027" in notice.text

        # Sends are planned two days ahead: on Tuesday 24th the first nudge (25th) is planned.
        for day in (21, 22, 23, 24):
            await month.at(local(day))
        education_nudges = Delivery.filter(
            kind=DeliveryKind.NUDGE, department_id=departments[EDUCATION]
        )
        assert await education_nudges.count() == 1

        # Tuesday 24th, 10:00: 县教育局 answers through the prompt's buttons.
        clock.now = local(24, at=time(10, 0))
        intro = await press_for(tg, education, prompt, button(prompt, "r1:", ":on_track"), "请发送")
        tg.send_text(education, None, "龙山新区九年一贯制学校主体完工")
        ack = await tg.wait_for_message(chat_id=education, predicate=lambda m: "已收到" in m.text)
        assert intro.chat_id == education.id
        preview = await press_for(tg, education, ack, button(ack, "r5:", ":done"), "请核对")
        await press_for(tg, education, preview, button(preview, "r5:", ":ok"), "报送成功")
        report = await Report.get(department_id=departments[EDUCATION])
        assert (report.task_id, report.cycle_key) == (education_task, "2026-11")
        assert report.created_at == local(24, at=time(10, 0))  # the flow's clock, not the wall's

        # Through Tuesday 1 December, every day at 09:00.
        for day in (25, 26, 27, 28, 29, 30):
            await month.at(local(day))
        await month.at(local(1, month=12))

        # 县教育局: its planned nudges were cancelled when they fell due; none reached it.
        assert not scheduled_texts(tg, education.id, "催报")
        assert set(await education_nudges.values_list("status", flat=True)) == {
            DeliveryStatus.CANCELLED
        }
        # 县公安局: three nudges per task, on the due day and the next two working days.
        nudges = scheduled_texts(tg, police.id, "You have not reported on")
        assert len(nudges) == 3 * len(police_tasks)
        sent_nudges = await Delivery.filter(
            kind=DeliveryKind.NUDGE, department_id=departments[POLICE]
        ).values_list("due_at", "status")
        assert {status for _, status in sent_nudges} == {DeliveryStatus.SENT}
        assert sorted({due.astimezone(TZ).date().day for due, _ in sent_nudges}) == [25, 26, 27]
        # Then Monday 30th: the escalation names it in the group, and only it.
        escalations = scheduled_texts(tg, group.id, "经催报仍未报送")
        assert len(escalations) == 1
        assert POLICE in escalations[0].text and EDUCATION not in escalations[0].text

        # The weekly summary on Mondays 23rd and 30th at 09:00, each with its chart.
        summaries = await Delivery.filter(kind=DeliveryKind.SUMMARY).order_by("due_at")
        assert [row.due_at for row in summaries] == [local(23), local(30)]
        assert {row.status for row in summaries} == {DeliveryStatus.SENT}
        photos = [m for m in tg.messages_to(group) if m.method == "sendPhoto"]
        assert len(photos) == (2 if font_path() is not None else 0)
        assert all("周报图表" in (m.text or "") for m in photos)
        assert sum("周报" in (m.text or "") for m in tg.messages_to(group)) >= 2

        before = Counter((m.chat_id, m.text) for m in tg.sent)
        sends_before = len(tg.sent)
        ledger_before = await Delivery.filter(status=DeliveryStatus.SENT).count()

    # A restart on the same database: planning again, sending again — nothing goes out twice.
    bot, dp = app_on(settings, clock)
    async with polling(dp, bot, tg):
        month = Month(dp, clock, tg)
        await month.at(local(1, month=12))
    assert len(tg.sent) == sends_before
    assert Counter((m.chat_id, m.text) for m in tg.sent) == before
    assert await Delivery.filter(status=DeliveryStatus.SENT).count() == ledger_before
    per_key = Counter(await Delivery.all().values_list("key", flat=True))
    assert max(per_key.values()) == 1
