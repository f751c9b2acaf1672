"""Authorization edges: bare commands in forum topics, through the real dispatcher with the
mocked bot, on SQLite and PostgreSQL (the `db` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiogram.methods import SendMessage
from aiogram.types import Update

from bot import onboarding
from bot.app import build_dispatcher
from bot.people import Access, resolve_actor
from bot.plan_model import ParsedPlan
from bot.settings import load_settings
from storage.models import (
    Liaison,
)
from storage.plans import import_plan
from tests.mocked_bot import MockedBot

ADMIN = 9001
HELPER = 601  # a coordinator made with /grant
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FORUM = {"id": -1001971186208, "title": "城镇化工作专班", "is_forum": True, "type": "supergroup"}


@pytest.fixture
async def plan(db: str, sample_plan: ParsedPlan) -> None:
    await import_plan(sample_plan, "1" * 64)


@pytest.fixture
async def dispatcher(db: str, plan: None):
    return build_dispatcher(load_settings(database_url=db, admin_ids=str(ADMIN)))


@pytest.fixture
def bot() -> MockedBot:
    return MockedBot()


async def _send(dispatcher, bot: MockedBot, update: Update) -> list[SendMessage]:
    bot.session.requests.clear()
    await dispatcher.feed_update(bot, update)
    return [r for r in bot.session.requests if isinstance(r, SendMessage)]


async def _redeem(token: str, user_id: int, now: datetime = NOW):
    return await onboarding.redeem_invitation(
        token, user_id=user_id, full_name=f"用户{user_id}", now=now
    )


async def _invite(created_by: int | None, department: str = "县建设局", now: datetime = NOW):
    return (await onboarding.create_invitation(department, created_by=created_by, now=now)).token


# Bare commands in a forum topic ------------------------------------------------------------------


def _topic_update(text: str, *, reply_to: dict | None = None) -> Update:
    """What Telegram sends for `text` posted by ADMIN in a forum topic that HELPER created.

    Without an explicit reply, Telegram still fills `reply_to_message`: with the service
    message that created the topic (its id is the message_thread_id)."""
    root = {
        "message_id": 5341,
        "from": {"id": HELPER, "is_bot": False, "first_name": "王", "last_name": "五"},
        "chat": FORUM,
        "date": 1765150000,
        "message_thread_id": 5341,
        "forum_topic_created": {"name": "进度报送", "icon_color": 7322096},
        "is_topic_message": True,
    }
    message = {
        "message_id": 5350,
        "from": {"id": ADMIN, "is_bot": False, "first_name": "督办", "language_code": "zh"},
        "chat": FORUM,
        "date": 1765150100,
        "message_thread_id": 5341,
        "reply_to_message": reply_to or root,
        "text": text,
        "entities": [
            {"offset": 0, "length": len(text.split(maxsplit=1)[0]), "type": "bot_command"}
        ],
        "is_topic_message": True,
    }
    return Update.model_validate({"update_id": 291368968, "message": message})


async def test_bare_commands_in_a_forum_topic_name_nobody(dispatcher, bot) -> None:
    for command, usage in [
        ("/grant", "用法：/grant"),
        ("/grant@duban_bot", "用法：/grant"),
        ("/unbind", "用法：/unbind"),
        ("/revoke", "用法：/revoke"),
    ]:
        sent = await _send(dispatcher, bot, _topic_update(command))
        assert len(sent) == 1 and sent[0].text.startswith(usage), command
    # The topic's creator was neither made a coordinator nor touched in any way.
    assert await Liaison.get_or_none(telegram_user_id=HELPER) is None
    assert (await resolve_actor(HELPER, "王五", (ADMIN,))).access is Access.GUEST


async def test_an_explicit_reply_in_a_forum_topic_names_that_person(dispatcher, bot) -> None:
    theirs = {
        "message_id": 5348,
        "from": {"id": 602, "is_bot": False, "first_name": "赵", "last_name": "六"},
        "chat": FORUM,
        "date": 1765150050,
        "message_thread_id": 5341,
        "text": "请给我督办权限",
        "is_topic_message": True,
    }
    sent = await _send(dispatcher, bot, _topic_update("/grant", reply_to=theirs))
    assert sent[0].text == "赵 六（<code>602</code>）已成为督办人员。"
    assert (await resolve_actor(602, "赵六", (ADMIN,))).access is Access.COORDINATOR
    assert await Liaison.get_or_none(telegram_user_id=HELPER) is None
