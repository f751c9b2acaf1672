"""Progress reports end to end: the bot as `duban run` builds it, long polling the emulator.

A support unit's liaison reports in Chinese through /report and its buttons, then edits the
message; an English-speaking liaison replies to a prompt; and the bad inputs: guests, stickers,
forged callback data, the same update delivered twice, HTML in the text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_app
from bot.settings import load_settings
from handlers.reports import prompt_keyboard, render_prompt
from storage.db import close_db, init_db
from storage.enums import ReportStatus
from storage.models import Department, Liaison, Report, Task
from storage.plans import import_plan
from storage.reports import get_report_task
from telegram_emulator import BotMessage, EmulatedUser, TelegramEmulator
from tests.conftest import build_sample_plan
from tests.emulator_fixtures import polling, tg_fixture  # noqa: F401 - provides the "tg" fixture

BUILD = 3001  # 县建设局 leads 2.1.3
LAND = 3002  # 县自然资源和规划局 supports 2.1.3
LAND_EN = 3003  # its English-speaking deputy


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    """SQLite, or PostgreSQL in the PostgreSQL run (DUBAN_TEST_DATABASE=postgres)."""
    url = database_url
    await init_db(url)
    try:
        yield url
    finally:
        await close_db()


@pytest.fixture
async def tasks(database) -> dict[str, int]:
    await import_plan(build_sample_plan(), "1" * 64)
    departments = {d.name: d.id for d in await Department.all()}
    for user_id, name, department, locale in (
        (BUILD, "王建设", "县建设局", None),
        (LAND, "李规划", "县自然资源和规划局", None),
        (LAND_EN, "Lee", "县自然资源和规划局", "en"),
    ):
        await Liaison.create(
            telegram_user_id=user_id,
            full_name=name,
            department_id=departments[department],
            locale=locale,
        )
    return {task.code: task.id for task in await Task.all()}


@pytest.fixture
def app(database, tg: TelegramEmulator) -> tuple[Bot, Dispatcher]:
    settings = load_settings(
        bot_token=tg.token, telegram_api_url=tg.base_url, database_url=database, admin_ids=""
    )
    return create_app(settings)


def update_id_of(tg: TelegramEmulator, message: dict[str, Any]) -> int:
    return next(
        update["update_id"]
        for update in tg.updates
        if update.get("message", {}).get("message_id") == message["message_id"]
        and update["message"]["chat"]["id"] == message["chat"]["id"]
    )


def button(message: BotMessage, prefix: str, suffix: str = "") -> str:
    return next(d for d in message.callback_data if d.startswith(prefix) and d.endswith(suffix))


async def press_and_wait(
    tg: TelegramEmulator, user: EmulatedUser, message: BotMessage, data: str, expect: str
) -> BotMessage:
    """Press a button; the bot edits that message (or writes a new one) to show `expect`."""
    query = tg.press(user, message, data)
    await tg.wait_for_answer(query)
    await tg.wait_until(
        lambda: (
            expect in (message.text or "")
            or any(expect in (m.text or "") for m in tg.messages_to(user)[-2:])
        )
    )
    if expect in (message.text or ""):
        return message
    return next(m for m in reversed(tg.messages_to(user)) if expect in (m.text or ""))


async def test_a_liaison_reports_with_buttons_then_edits_the_message(tg, app, tasks):
    bot, dp = app
    land = tg.add_user("李规划", user_id=LAND, language_code="zh", started=True)
    lead = tg.add_user("王建设", user_id=BUILD, language_code="zh", started=True)
    async with polling(dp, bot, tg):
        tg.send_text(land, None, "/report")
        picker = await tg.wait_for_message(chat_id=land)
        assert "请选择任务" in picker.text
        task_button = button(picker, "r2:", f":{tasks['2.1.3']}")
        screen = await press_and_wait(tg, land, picker, task_button, "选择状态")
        screen = await press_and_wait(tg, land, screen, button(screen, "r4:", "at_risk"), "请发送")
        text_message = tg.send_text(land, None, "已筹集6200套 <b>注意</b> & <script>x</script>")
        ack = await tg.wait_for_message(chat_id=land, predicate=lambda m: "已收到" in m.text)
        tg.send_photo(land, caption="电梯加装完成45台")
        await tg.wait_for_message(chat_id=land, predicate=lambda m: "照片 1 张" in m.text)
        preview = await press_and_wait(tg, land, ack, button(ack, "r5:", ":done"), "请核对")
        # HTML in the liaison's text was escaped: Telegram shows it literally.
        assert "已筹集6200套 <b>注意</b> & <script>x</script>" in preview.text
        assert "累计筹集保障性租赁住房：6200套" in preview.text
        assert "实施电梯加装：45台" in preview.text
        receipt = await press_and_wait(tg, land, preview, button(preview, "r5:", ":ok"), "报送成功")
        assert [d.split(":")[2] for d in receipt.callback_data] == ["edit", "wd"]
        # The lead unit's liaison sees the support unit's report.
        notice = await tg.wait_for_message(chat_id=lead)
        assert "县自然资源和规划局" in notice.text and "<script>x</script>" in notice.text

        report = await Report.get()
        assert report.status == ReportStatus.AT_RISK
        assert report.message_id == text_message["message_id"]
        assert [v["value"] for v in report.values] == ["6200", "45"]
        assert report.attachments[0]["kind"] == "photo"

        # The same text message delivered again (a crash before confirming): nothing new.
        before = len(tg.messages_to(land))
        tg.redeliver(update_id_of(tg, text_message))
        await tg.wait_idle()
        assert len(tg.messages_to(land)) == before
        assert await Report.all().count() == 1

        # Editing the Telegram message updates its part of the stored report; the photo's
        # caption, another part, stays.
        tg.edit_text(land, text_message, "已筹集6500套（更正）")
        updated = await tg.wait_for_message(chat_id=land, predicate=lambda m: "更新" in m.text)
        assert "6500套" in updated.text
        await report.refresh_from_db()
        assert report.text == "已筹集6500套（更正）\n\n电梯加装完成45台"
        assert [v["value"] for v in report.values] == ["6500", "45"]
        assert report.edited_at is not None


async def test_an_english_liaison_replies_to_a_prompt(tg, app, tasks):
    bot, dp = app
    lee = tg.add_user("Lee", user_id=LAND_EN, language_code="en", started=True)
    tg.add_user("王建设", user_id=BUILD, language_code="zh", started=True)
    async with polling(dp, bot, tg):
        i18n = dp["i18n"]
        with i18n.context(), i18n.use_locale("en"):
            task = await get_report_task(tasks["2.1.3"])
            await bot.send_message(
                lee.id, render_prompt(task), reply_markup=prompt_keyboard(task.id)
            )
        prompt = await tg.wait_for_message(chat_id=lee)
        assert "Progress prompt" in prompt.text and "≥ 9000套" in prompt.text
        reply = tg.send_text(lee, None, "Raised 6,200 套 so far & on <i>schedule</i>", prompt)
        question = await tg.wait_for_message(chat_id=lee)
        assert "Choose the status" in question.text
        preview = await press_and_wait(
            tg, lee, question, button(question, "r4:", "on_track"), "Please check"
        )
        assert "6200套" in preview.text and "<i>schedule</i>" in preview.text
        receipt = await press_and_wait(tg, lee, preview, button(preview, "r5:", ":ok"), "submitted")

        # The confirmation pressed again, as a redelivered update: still one report.
        confirm_query = next(u for u in reversed(tg.updates) if "callback_query" in u)["update_id"]
        tg.redeliver(confirm_query)
        await tg.wait_idle()
        report = await Report.get()
        assert report.message_id == reply["message_id"] and report.department_id is not None

        tg.edit_text(lee, reply, "Raised 7,000 套 so far")
        updated = await tg.wait_for_message(chat_id=lee, predicate=lambda m: "updated" in m.text)
        assert "7000套" in updated.text
        await report.refresh_from_db()
        assert report.values[0]["value"] == "7000"

        # Withdraw it: two taps, then it no longer counts.
        await tg.wait_for_answer(tg.press(lee, receipt, button(receipt, "r7:", ":wd")))
        await tg.wait_until(lambda: any(d.endswith(":wd!") for d in receipt.callback_data))
        await press_and_wait(tg, lee, receipt, button(receipt, "r7:", ":wd!"), "withdrawn")
        await report.refresh_from_db()
        assert report.withdrawn_at is not None


async def test_bad_input(tg, app, tasks):
    bot, dp = app
    guest = tg.add_user("Guest", language_code="zh", started=True)
    land = tg.add_user("李规划", user_id=LAND, language_code="zh", started=True)
    async with polling(dp, bot, tg):
        tg.send_text(guest, None, "/report")
        assert "联络员" in (await tg.wait_for_message(chat_id=guest)).text

        tg.send_text(land, None, "/report")
        picker = await tg.wait_for_message(chat_id=land)
        flow = button(picker, "r2:").split(":")[1]
        # Forged callback data: another department's task, a task that does not exist.
        for task_id in (tasks["2.4.3"], 987_654):
            query = tg.press(land, picker, f"r2:{flow}:{task_id}", strict=False)
            assert "不属于本单位" in (await tg.wait_for_answer(query))["text"]
        query = tg.press(land, picker, f"r1:{tasks['2.4.3']}:done", strict=False)
        assert "不属于本单位" in (await tg.wait_for_answer(query))["text"]
        query = tg.press(land, picker, "r7:1:wd!", strict=False)
        assert (await tg.wait_for_answer(query))["text"]

        screen = await press_and_wait(tg, land, picker, f"r2:{flow}:{tasks['2.1.3']}", "选择状态")
        await press_and_wait(tg, land, screen, button(screen, "r4:", "blocked"), "请发送")
        tg.send_sticker(land)
        assert "请发送文字、照片或文件" in (await tg.wait_for_message(chat_id=land)).text
        tg.send_voice(land)
        assert "请发送文字、照片或文件" in (await tg.wait_for_message(chat_id=land)).text
        tg.send_text(land, None, "很" * 4001)
        assert "内容过长" in (await tg.wait_for_message(chat_id=land)).text
        tg.send_text(land, None, "/cancel")
        assert "已取消" in (await tg.wait_for_message(chat_id=land)).text
        await tg.wait_idle()
        assert await Report.all().count() == 0
        assert not tg.violations
