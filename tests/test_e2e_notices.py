"""Notifications end to end: the bot as `duban run` builds it, long polling the emulator.

When a support unit reports, the lead unit's liaison is told through the delivery ledger and the
one Sender (bot.notices), not by a direct send from the handler: Telegram's flood control (429)
and a server error (5xx) delay the notice but it arrives exactly once, and a lead liaison who
blocked the bot (403) is named to the coordinators.
"""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_app
from bot.settings import load_settings
from storage.deliveries import DeliveryKind, DeliveryStatus
from storage.models import Delivery
from telegram_emulator import BotMessage, EmulatedUser, TelegramEmulator
from tests import test_e2e_reports as reports_e2e
from tests.emulator_fixtures import polling, tg_fixture  # noqa: F401 - provides the "tg" fixture
from tests.test_e2e_reports import BUILD, LAND, button, press_and_wait

# The same database and people as the report flow's end-to-end tests.
database = reports_e2e.database
tasks = reports_e2e.tasks

ADMIN = 3900


@pytest.fixture
def app(database, tg: TelegramEmulator) -> tuple[Bot, Dispatcher]:
    settings = load_settings(
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        database_url=database,
        admin_ids=str(ADMIN),
        send_backoff_seconds=0.2,  # a 5xx is retried after 0.2 s, not 5 s
    )
    return create_app(settings)


async def report_as_support_unit(
    tg: TelegramEmulator, land: EmulatedUser, task_id: int
) -> BotMessage:
    """/report on task 2.1.3 as 县自然资源和规划局 (a support unit), up to the preview; the
    next press of its 确认 button submits it."""
    tg.send_text(land, None, "/report")
    picker = await tg.wait_for_message(chat_id=land)
    task_button = button(picker, "r2:", f":{task_id}")
    screen = await press_and_wait(tg, land, picker, task_button, "选择状态")
    screen = await press_and_wait(tg, land, screen, button(screen, "r4:", "at_risk"), "请发送")
    tg.send_text(land, None, "已筹集6200套 <b>注意</b>")
    ack = await tg.wait_for_message(chat_id=land, predicate=lambda m: "已收到" in m.text)
    return await press_and_wait(tg, land, ack, button(ack, "r5:", ":done"), "请核对")


async def test_the_lead_notice_rides_out_a_429_and_a_5xx_and_arrives_once(tg, app, tasks):
    bot, dp = app
    land = tg.add_user("李规划", user_id=LAND, language_code="zh", started=True)
    lead = tg.add_user("王建设", user_id=BUILD, language_code="zh", started=True)
    async with polling(dp, bot, tg):
        preview = await report_as_support_unit(tg, land, tasks["2.1.3"])
        # After 确认 the receipt is an edit of the preview: the only sendMessage calls are the
        # notice's. The first meets flood control, the second a server error.
        tg.fail_next("sendMessage", 429, retry_after=1)
        tg.fail_next("sendMessage", 502)
        await press_and_wait(tg, land, preview, button(preview, "r5:", ":ok"), "报送成功")
        notice = await tg.wait_for_message(chat_id=lead, timeout=15)
        assert "县自然资源和规划局" in notice.text and "存在风险" in notice.text
        assert "<b>注意</b>" in notice.text  # the report's HTML was escaped: shown as typed
        await asyncio.sleep(1.5)  # a second copy would arrive within this
        assert [m.text for m in tg.messages_to(lead)] == [notice.text]
    assert [(f.method, f.status) for f in tg.faults] == [("sendMessage", 429), ("sendMessage", 502)]
    row = await Delivery.get(kind=DeliveryKind.NOTIFICATION)
    assert row.status == DeliveryStatus.SENT and row.chat_id == BUILD
    assert row.attempts == 2  # the 5xx and the send; waiting out a 429 is not an attempt
    assert row.message_id == notice.message_id


async def test_a_lead_who_blocked_the_bot_is_named_to_the_coordinators(tg, app, tasks):
    bot, dp = app
    admin = tg.add_user("督办", user_id=ADMIN, language_code="zh", started=True)
    land = tg.add_user("李规划", user_id=LAND, language_code="zh", started=True)
    lead = tg.add_user("王建设", user_id=BUILD, language_code="zh", started=True)
    tg.block_bot(lead)
    async with polling(dp, bot, tg):
        preview = await report_as_support_unit(tg, land, tasks["2.1.3"])
        await press_and_wait(tg, land, preview, button(preview, "r5:", ":ok"), "报送成功")
        told = await tg.wait_for_message(chat_id=admin, timeout=15)
        assert "无法送达" in told.text and "王建设" in told.text and "县建设局" in told.text
    assert tg.messages_to(lead) == []
    notification = await Delivery.get(kind=DeliveryKind.NOTIFICATION)
    assert notification.status == DeliveryStatus.FAILED
    assert notification.last_error.startswith("unreachable")
    notice = await Delivery.get(kind=DeliveryKind.NOTICE)
    assert notice.status == DeliveryStatus.SENT and notice.chat_id == ADMIN
