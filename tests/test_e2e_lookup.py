"""Lookup end to end: the bot as `duban run` builds it, long polling the Telegram emulator.

Covers /tasks (overview with page buttons, a liaison's own department), /task, /dept with a
choice in the coordination group, /overdue, a guest, forged buttons, and the refusal in any
other group, in Chinese and in English.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from bot.app import create_app
from bot.plan_parser import parse_plan
from bot.settings import load_settings
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Department, Liaison, Report, Task
from storage.plans import import_plan
from telegram_emulator import EmulatedUser, TelegramEmulator
from tests.emulator_fixtures import polling, tg_fixture  # noqa: F401

ADMIN = 9001
LIAISON = 7001  # 县建设局
PLAN = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"


@pytest.fixture
async def running(db: str, tg: TelegramEmulator) -> AsyncIterator[TelegramEmulator]:
    """The real plan in the database, a liaison with one report, and the bot polling."""
    await import_plan(parse_plan(PLAN.read_bytes()), "1" * 64)
    construction = await Department.get(name="县建设局")
    lee = await Liaison.create(
        telegram_user_id=LIAISON,
        full_name="李四",
        department=construction,
        role=LiaisonRole.LIAISON,
    )
    await Report.create(
        task=await Task.get(code="2.1.3"),
        department=construction,
        liaison=lee,
        status=ReportStatus.BLOCKED,
        text="征迁受阻 <b>&</b>",
        chat_id=LIAISON,
        message_id=1,
    )
    await Task.filter(code="2.5.2").update(deadline=date(2025, 6, 30))
    settings = load_settings(
        database_url=db,
        admin_ids=str(ADMIN),
        telegram_api_url=tg.base_url,
        bot_token=tg.token,
    )
    bot, dispatcher = create_app(settings)
    async with polling(dispatcher, bot, tg):
        yield tg


def people(tg: TelegramEmulator, language: str) -> tuple[EmulatedUser, EmulatedUser]:
    coordinator = tg.add_user("督办", user_id=ADMIN, language_code=language, started=True)
    liaison = tg.add_user("李四", user_id=LIAISON, language_code=language, started=True)
    return coordinator, liaison


async def ask(tg: TelegramEmulator, who: EmulatedUser, text: str, chat=None):
    tg.send_text(who, chat, text)
    return await tg.wait_for_message(chat_id=chat or who)


async def test_lookup_in_chinese_with_pages_and_a_forged_button(running: TelegramEmulator):
    tg = running
    coordinator, liaison = people(tg, "zh")

    overview = await ask(tg, coordinator, "/tasks")
    assert overview.text.startswith("📊 各单位任务概况 · 任务 18 项 · 单位 34 个")
    assert "🔴 县建设局" in overview.text  # blocked and overdue: first
    assert "第 1/4 页" in overview.text
    query = tg.press(coordinator, overview, "p1:a:1")
    assert (await tg.wait_for_answer(query))["text"] is None
    assert "第 2/4 页" in overview.text  # edited in place
    query = tg.press(coordinator, overview, "p1:a:0")  # back, with the ◀ button
    await tg.wait_for_answer(query)
    assert "第 1/4 页" in overview.text

    # A forged page: refused in the callback answer, the message stays as it was.
    before = overview.text
    query = tg.press(coordinator, overview, "p1:a:99", strict=False)
    answer = await tg.wait_for_answer(query)
    assert "失效" in answer["text"] and answer["show_alert"]
    assert overview.text == before

    mine = await ask(tg, liaison, "/tasks")
    assert mine.text.splitlines()[0] == "📋 县建设局 · 牵头 4 项 · 配合 1 项"
    assert "🔴 2.1.3 推动城市有机更新" in mine.text

    card = await ask(tg, liaison, "/task 2.1.3")
    assert "🔴 县建设局 · 牵头 · 受阻（" in card.text
    assert "征迁受阻 <b>&</b>" in card.text  # escaped on the way out, shown as typed
    assert card.text.endswith("报送进度：/report")

    unknown = await ask(tg, liaison, "/task 8.8")
    assert unknown.text == "没有找到任务“8.8”。发送 /tasks 查看任务编号。"

    overdue = await ask(tg, coordinator, "/overdue")
    assert all(call.ok for call in tg.calls if call.method == "editMessageText")
    assert overdue.text.splitlines()[:4] == [
        "⏰ 逾期任务：1 项",
        "",
        "县建设局",
        "🔴 2.5.2 完善市政基础设施",
    ]


async def test_lookup_in_english_in_a_group_with_a_choice(running: TelegramEmulator):
    tg = running
    coordinator, liaison = people(tg, "en")
    group = tg.add_group("工作专班群", members=[coordinator, liaison])
    bound = await ask(tg, coordinator, "/bindgroup@duban_bot", chat=group)
    assert bound.text.startswith("This group is now the coordination group")

    choice = await ask(tg, coordinator, "/dept@duban_bot 街道", chat=group)
    assert choice.text == "Several departments match «街道». Choose one:"
    labels = {button["text"]: button["callback_data"] for button in choice.buttons}
    assert set(labels) == {"各乡镇(街道、园区)", "雉城街道", "龙山街道", "画溪街道"}
    query = tg.press(liaison, choice, labels["龙山街道"])
    await tg.wait_for_answer(query)
    assert choice.text.splitlines()[:3] == [
        "🏢 龙山街道",
        "township or street · no liaison yet",
        "Tasks: lead 0 · support 1",
    ]
    query = tg.press(liaison, choice, choice.buttons[0]["callback_data"])  # 📋 Tasks
    await tg.wait_for_answer(query)
    assert choice.text.startswith("📋 龙山街道: lead 0 · support 1")
    assert "support · due 2027-12-31 · no report yet" in choice.text

    forged = tg.press(liaison, choice, "d1:424242", strict=False)
    assert (await tg.wait_for_answer(forged))["text"] == "No such department any more."

    dept = await ask(tg, coordinator, "/dept@duban_bot 建设", chat=group)
    assert dept.text.splitlines()[:2] == ["🏢 县建设局", "government agency · liaisons: 1"]

    card = await ask(tg, coordinator, "/task 1.3")  # the short code, in private
    assert card.text.startswith("📌 2.1.3 推动城市有机更新")
    assert "李四, " in card.text and "征迁受阻" in card.text

    overdue = await ask(tg, liaison, "/overdue")
    assert overdue.text.startswith("⏰ Overdue tasks of 县建设局: 1")

    guest = tg.add_user("Visitor", language_code="en", started=True)
    refusal = await ask(tg, guest, "/tasks")
    assert refusal.text == "This is for members only. Ask a coordinator for an invitation."
    mine = ("sendMessage", "editMessageText", "answerCallbackQuery")
    assert all(call.ok for call in tg.calls if call.method in mine)


async def test_lookups_stay_out_of_groups_other_than_the_coordination_group(
    running: TelegramEmulator,
):
    """A group full of guests gets a short line, never report texts or liaison names; the
    coordination group and private chats get the answers."""
    tg = running
    coordinator, liaison = people(tg, "zh")
    guests = [tg.add_user(f"访客{i}", language_code="zh") for i in range(3)]
    lounge = tg.add_group("城建交流群", members=[coordinator, liaison, *guests])
    office = tg.add_group("工作专班群", members=[coordinator, liaison])
    await ask(tg, coordinator, "/bindgroup@duban_bot", chat=office)

    refusal = "请在与我的私聊或协调群中使用此命令。"
    for who, command in [
        (coordinator, "/task@duban_bot 2.1.3"),
        (liaison, "/task 2.1.3"),
        (coordinator, "/tasks@duban_bot"),
        (liaison, "/tasks"),
        (coordinator, "/dept 建设局"),
        (coordinator, "/overdue"),
    ]:
        assert (await ask(tg, who, command, chat=lounge)).text == refusal, command
    in_lounge = [m.text or "" for m in tg.sent if m.chat_id == lounge.id]
    assert in_lounge == [refusal] * 6
    assert not any("征迁受阻" in text or "李四" in text for text in in_lounge)

    card = await ask(tg, coordinator, "/task@duban_bot 2.1.3", chat=office)
    assert card.text.startswith("📌 2.1.3 推动城市有机更新")
    assert "李四" in card.text and "征迁受阻" in card.text
    private = await ask(tg, liaison, "/task 2.1.3")
    assert "征迁受阻" in private.text


async def test_only_the_coordination_group_is_offered_lookups(running: TelegramEmulator):
    """Menus and /help offer in a group only what that group answers: the lookups and the
    summary appear in the coordination group's menu (set by /bindgroup, moved by a rebind) and
    its /help, never in the menu every group has or in another group's /help."""
    tg = running
    coordinator, liaison = people(tg, "zh")
    lounge = tg.add_group("城建交流群", members=[coordinator, liaison])
    office = tg.add_group("工作专班群", members=[coordinator, liaison])
    lookups = {"tasks", "task", "dept", "overdue", "summary"}

    def menu(scope: str) -> set[str]:
        return {command["command"] for command in tg.commands.get((scope, "zh"), [])}

    await tg.wait_until(lambda: menu("all_group_chats"))
    assert not menu("all_group_chats") & lookups
    await ask(tg, coordinator, "/bindgroup@duban_bot", chat=office)
    await tg.wait_until(lambda: menu(f"chat:{office.id}"))
    assert menu(f"chat:{office.id}") >= lookups

    assert "/tasks" not in (await ask(tg, liaison, "/help", chat=lounge)).text
    assert "/tasks" in (await ask(tg, liaison, "/help", chat=office)).text

    await ask(tg, coordinator, "/bindgroup@duban_bot", chat=lounge)
    await tg.wait_until(lambda: not menu(f"chat:{office.id}"))
    assert menu(f"chat:{lounge.id}") >= lookups
