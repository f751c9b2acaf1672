"""Telegram's language_code: stored by the actor middleware only when it changes, and used for
the messages the bot writes unprompted to someone who chose no language with /lang."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiogram.methods import SendMessage

from bot.app import build_dispatcher
from bot.delivery import OutgoingMessage
from bot.i18n import build_i18n
from bot.plan_parser import parse_plan
from bot.scheduled_messages import make_renderer
from bot.settings import load_settings
from storage.deliveries import DeliveryKind, DeliveryRecord, DeliveryStatus
from storage.models import Assignment, Department, Liaison
from storage.plans import import_plan
from tests.handler_support import message_update, user
from tests.mocked_bot import MockedBot

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
PERSON = 4201


@pytest.fixture
def dispatcher(db):
    return build_dispatcher(load_settings(database_url=db, admin_ids="9001"))


def _liaison_updates(records: list[logging.LogRecord]) -> int:
    """UPDATE statements on the liaisons table among Tortoise's query log lines."""
    return sum(
        1
        for record in records
        if record.name.startswith("tortoise") and 'UPDATE "liaisons"' in record.getMessage()
    )


async def test_the_middleware_stores_the_language_only_when_it_changes(db, dispatcher, caplog):
    bot = MockedBot()
    await Liaison.create(telegram_user_id=PERSON, full_name="王", locale=None)
    caplog.set_level(logging.DEBUG, logger="tortoise")

    await dispatcher.feed_update(bot, message_update(user(PERSON, language_code="en"), "/whoami"))
    assert isinstance(bot.get_request(), SendMessage)
    stored = await Liaison.get(telegram_user_id=PERSON)
    assert stored.language_code == "en"
    assert _liaison_updates(caplog.records) == 1
    first_update = stored.updated_at

    caplog.clear()
    for _ in range(3):  # the same language again: no write at all
        await dispatcher.feed_update(
            bot, message_update(user(PERSON, language_code="en"), "/whoami")
        )
        bot.get_request()
    assert _liaison_updates(caplog.records) == 0
    assert (await Liaison.get(telegram_user_id=PERSON)).updated_at == first_update

    await dispatcher.feed_update(
        bot, message_update(user(PERSON, language_code="zh-hans"), "/help")
    )
    bot.get_request()
    assert (await Liaison.get(telegram_user_id=PERSON)).language_code == "zh-hans"
    assert _liaison_updates(caplog.records) == 1

    caplog.clear()  # an update without language_code (Telegram omits it at times): kept
    await dispatcher.feed_update(bot, message_update(user(PERSON, language_code=None), "/help"))
    bot.get_request()
    assert (await Liaison.get(telegram_user_id=PERSON)).language_code == "zh-hans"
    assert _liaison_updates(caplog.records) == 0


async def test_a_stranger_is_not_stored(db, dispatcher):
    bot = MockedBot()
    await dispatcher.feed_update(bot, message_update(user(4300, language_code="en"), "/start"))
    bot.get_request()
    assert not await Liaison.exists(telegram_user_id=4300)  # no row made just to hold it


def _record(kind: DeliveryKind, **fields: object) -> DeliveryRecord:
    values: dict = {
        "id": 1, "kind": kind, "key": f"{kind}:test", "chat_id": PERSON, "liaison_id": None,
        "department_id": None, "task_id": None, "cycle_key": None, "due_at": NOW,
        "status": DeliveryStatus.SENDING, "attempts": 0, "next_attempt_at": NOW,
        "last_error": None, "message_id": None, "sent_at": None, "parts_sent": 0,
        "payload": {}, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    values.update(fields)
    return DeliveryRecord(**values)


@pytest.mark.parametrize(
    ("chosen", "telegram", "expected"),
    [
        (None, "en", "Progress prompt"),  # no /lang: Telegram's language
        (None, "en-US", "Progress prompt"),
        ("zh", "en", "进度提示"),  # /lang zh wins over Telegram's English
        ("en", "zh", "Progress prompt"),
        (None, None, "进度提示"),  # nothing known: the default
        (None, "fr", "进度提示"),  # not supported: the default
    ],
)
async def test_prompts_and_reminders_follow_the_language(db, chosen, telegram, expected):
    await import_plan(parse_plan(EXAMPLE.read_bytes()), hashlib.sha256(b"x").hexdigest())
    render = make_renderer(
        load_settings(timezone="Asia/Shanghai", default_locale="zh"), build_i18n("zh")
    )
    education = await Department.get(name="县教育局")
    (task_id,) = await Assignment.filter(department=education).values_list("task_id", flat=True)
    liaison = await Liaison.create(
        telegram_user_id=PERSON,
        full_name="王",
        department=education,
        locale=chosen,
        language_code=telegram,
    )
    # As the planner writes it: the default locale in the payload when the row was planned.
    prompt = await render(
        _record(
            DeliveryKind.PROMPT, task_id=task_id, department_id=education.id,
            liaison_id=liaison.id, cycle_key="2026-11",
            payload={"deadline": "2026-11-25", "locale": "zh"},
        )
    )  # fmt: skip
    assert isinstance(prompt, OutgoingMessage)
    assert expected in prompt.text
    reminder = await render(
        _record(
            DeliveryKind.REMINDER, task_id=task_id, department_id=education.id,
            liaison_id=liaison.id, payload={"deadline": "2027-12-31", "days_before": 7},
        )
    )  # fmt: skip
    english = "It is due in 7 days (2027-12-31)." in reminder.text
    assert english is (expected == "Progress prompt")
