"""/summary through the real dispatcher (MockedBot): who may ask, where, and what is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiogram.methods import SendDocument, SendMessage, SendPhoto

from bot import summary_service
from bot.app import build_dispatcher
from bot.chart import font_path
from bot.plan_parser import parse_plan
from bot.settings import load_settings
from storage.enums import LiaisonRole
from storage.models import Department, Liaison
from storage.plans import import_plan
from tests.handler_support import group_chat, message_update, user
from tests.mocked_bot import MockedBot

ADMIN = 9001
OBSERVER = 6001
LIAISON = 7001
GUEST = 5001
GROUP = -100777
PLAN = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
LIMIT = 4096


@pytest.fixture
def dispatcher(db):
    return build_dispatcher(
        load_settings(database_url=db, admin_ids=str(ADMIN), coordinator_chat_id=str(GROUP))
    )


@pytest.fixture
def bot():
    return MockedBot()


@pytest.fixture
def no_chart(monkeypatch):
    """Most tests do not need the PNG (drawing it takes a second)."""
    monkeypatch.setattr(summary_service, "render_chart", lambda _summary, _locale: None)


@pytest.fixture
async def plan(db: str) -> None:
    await import_plan(parse_plan(PLAN.read_bytes()), "2" * 64)
    await Liaison.create(
        telegram_user_id=OBSERVER, full_name="观察员赵六", role=LiaisonRole.OBSERVER
    )
    await Liaison.create(
        telegram_user_id=LIAISON,
        full_name="李四",
        department=await Department.get(name="县建设局"),
        role=LiaisonRole.LIAISON,
    )


async def _texts(dispatcher, bot, update) -> list[str]:
    await dispatcher.feed_update(bot, update)
    requests = list(bot.session.requests)
    bot.session.requests.clear()
    assert all(isinstance(request, SendMessage) for request in requests)
    return [request.text for request in requests]


async def test_a_guest_is_refused(dispatcher, bot, plan, no_chart):
    texts = await _texts(dispatcher, bot, message_update(user(GUEST), "/summary"))
    assert texts == ["只有督办人员和观察员可以查看周报。"]


async def test_a_guest_is_refused_in_english(dispatcher, bot, plan, no_chart):
    update = message_update(user(GUEST, language_code="en"), "/summary")
    texts = await _texts(dispatcher, bot, update)
    assert texts == ["Only coordinators and observers can see the summary."]


async def test_a_guest_in_the_coordination_group_is_refused(dispatcher, bot, plan, no_chart):
    update = message_update(user(GUEST), "/summary", chat=group_chat(GROUP))
    texts = await _texts(dispatcher, bot, update)
    assert texts == ["只有督办人员和观察员可以查看周报。"]


async def test_a_liaison_is_refused(dispatcher, bot, plan, no_chart):
    texts = await _texts(dispatcher, bot, message_update(user(LIAISON), "/summary"))
    assert texts == ["只有督办人员和观察员可以查看周报。"]


async def test_another_group_is_refused(dispatcher, bot, plan, no_chart):
    update = message_update(user(ADMIN), "/summary", chat=group_chat(-100999, title="闲聊群"))
    texts = await _texts(dispatcher, bot, update)
    assert texts == ["请在协调群或与我的私聊中使用 /summary。"]


async def test_a_coordinator_gets_the_summary_in_private(dispatcher, bot, plan, no_chart):
    texts = await _texts(dispatcher, bot, message_update(user(ADMIN), "/summary"))
    assert texts
    assert all(len(text.encode("utf-16-le")) // 2 <= LIMIT for text in texts)
    whole = "\n".join(texts)
    assert "督办周报" in whole
    assert "长政办发〔2023〕65号" in whole
    assert "县建设局" in whole  # not reported this week, named


async def test_an_observer_gets_it_in_the_coordination_group_in_english(
    dispatcher, bot, plan, no_chart
):
    update = message_update(user(OBSERVER, language_code="en"), "/summary", chat=group_chat(GROUP))
    texts = await _texts(dispatcher, bot, update)
    whole = "\n".join(texts)
    assert "Weekly summary" in whole
    assert "督办周报" not in whole


async def test_before_any_plan_it_says_so(dispatcher, bot, no_chart):
    texts = await _texts(dispatcher, bot, message_update(user(ADMIN), "/summary"))
    assert texts == ["尚未导入方案（duban plan import 文件）。"]


async def test_a_very_long_summary_goes_out_as_a_document(dispatcher, bot, plan, monkeypatch):
    monkeypatch.setattr(summary_service, "render_chart", lambda _summary, _locale: None)
    original = summary_service.render_for_telegram
    monkeypatch.setattr(
        summary_service,
        "render_for_telegram",
        lambda summary, locale, i18n: original(summary, locale, i18n, max_messages=0),
    )
    await dispatcher.feed_update(bot, message_update(user(ADMIN), "/summary"))
    requests = list(bot.session.requests)
    assert isinstance(requests[-1], SendDocument)
    assert all(len(r.text) <= LIMIT for r in requests[:-1] if isinstance(r, SendMessage))


@pytest.mark.skipif(font_path() is None, reason="the CJK font package is not installed")
async def test_the_chart_follows_the_text_as_a_photo(dispatcher, bot, plan):
    await dispatcher.feed_update(bot, message_update(user(ADMIN), "/summary"))
    requests = list(bot.session.requests)
    assert all(isinstance(request, SendMessage) for request in requests[:-1])
    photo = requests[-1]
    assert isinstance(photo, SendPhoto)
    assert photo.caption == "各单位任务状态与指标进展"
    assert photo.photo.data.startswith(b"\x89PNG")
