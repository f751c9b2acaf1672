"""/start, /help, /whoami, /lang and the catch-alls, through the real dispatcher."""

from __future__ import annotations

import pytest
from aiogram.methods import AnswerCallbackQuery, SendMessage

from bot.app import build_dispatcher
from bot.settings import load_settings
from storage.people import get_person
from tests.handler_support import callback_update, group_chat, message_update, user
from tests.mocked_bot import MockedBot

ADMIN = 9001


@pytest.fixture
def dispatcher(db):
    return build_dispatcher(load_settings(database_url=db, admin_ids=str(ADMIN)))


@pytest.fixture
def bot():
    return MockedBot()


async def _reply(dispatcher, bot, update) -> str:
    await dispatcher.feed_update(bot, update)
    request = bot.get_request()
    assert isinstance(request, SendMessage)
    return request.text


async def test_start_greets_a_guest_in_chinese_by_default(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(language_code=None), "/start"))
    assert "你好" in text
    assert "/report" not in text  # a guest may not report
    assert "邀请" in text  # told to ask for an invitation


async def test_start_in_english_for_an_english_telegram_client(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(language_code="en-GB"), "/start"))
    assert "Hello" in text


async def test_user_names_are_escaped(dispatcher, bot):
    evil = user(first_name="<b>x</b> & <script>")
    text = await _reply(dispatcher, bot, message_update(evil, "/start"))
    assert "&lt;b&gt;x&lt;/b&gt; &amp; &lt;script&gt;" in text
    assert "<script>" not in text


async def test_coordinator_sees_coordinator_commands(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/help"))
    assert "/invite" in text and "/grant" in text


async def test_whoami_names_the_role(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/whoami"))
    assert "督办人员" in text and str(ADMIN) in text


async def test_lang_switches_and_persists(dispatcher, bot):
    sender = user(language_code="zh")
    text = await _reply(dispatcher, bot, message_update(sender, "/lang en"))
    assert text == "Language set to English."
    assert (await get_person(sender.id)).locale == "en"
    assert "Hello" in await _reply(dispatcher, bot, message_update(sender, "/start"))


async def test_lang_with_a_bad_argument_explains_usage(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(), "/lang fr"))
    assert "/lang zh" in text
    assert await get_person(user().id) is None  # nothing stored


async def test_unknown_command(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(), "/frobnicate"))
    assert "/help" in text


async def test_group_chatter_is_ignored(dispatcher, bot):
    await dispatcher.feed_update(bot, message_update(user(), "大家好", chat=group_chat()))
    assert not bot.session.requests


async def test_forged_callback_data_is_answered(dispatcher, bot):
    await dispatcher.feed_update(bot, callback_update(user(), "zz:garbage"))
    request = bot.get_request()
    assert isinstance(request, AnswerCallbackQuery)


def test_groups_other_than_the_coordination_group_list_no_lookups():
    from bot.commands import commands_for
    from bot.people import Access

    def names(**where) -> set[str]:
        return {spec.name for spec in commands_for(Access.OBSERVER, **where)}

    lookups = {"tasks", "task", "dept", "overdue", "summary"}
    assert names() >= lookups
    assert not names(in_group=True) & lookups
    assert names(in_group=True, coordination_group=True) >= lookups
