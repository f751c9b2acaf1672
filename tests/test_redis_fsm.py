"""REDIS_URL: the conversation state lives in Redis and survives a bot restart mid-report.

Needs Redis (the `redis_url` fixture: skipped when unreachable, a failure with
DUBAN_REQUIRE_REDIS=1). The dispatcher is the production one (bot.app.build_dispatcher); the bot
is a MockedBot, as in tests/test_handlers_reports.py.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis.asyncio as aioredis
from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage

from bot.app import FSM_KEY_PREFIX, build_dispatcher
from bot.settings import ConfigError, load_settings
from handlers.reports import ReportFlow
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Department, Liaison, Report, Task
from storage.plans import import_plan
from telegram_emulator import TelegramEmulator
from tests.conftest import build_sample_plan
from tests.mocked_bot import MockedBot
from tests.test_e2e_run import _start_duban, _stop, _wait_polling_or_exit
from tests.test_handlers_reports import Person, confirm_button, sent

LAND = 2102  # 县自然资源和规划局: leads 2.1.2, supports 2.1.1 and 2.1.3
LAND_EN = 2103


@pytest.fixture
async def tasks(db) -> dict[str, int]:
    await import_plan(build_sample_plan(), "1" * 64)
    department = await Department.get(name="县自然资源和规划局")
    for user_id, name, locale in ((LAND, "李规划", None), (LAND_EN, "Lee", "en")):
        await Liaison.create(
            telegram_user_id=user_id,
            full_name=name,
            department_id=department.id,
            role=LiaisonRole.LIAISON,
            locale=locale,
        )
    return {task.code: task.id for task in await Task.all()}


async def _keys(url: str) -> list[str]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return sorted(await client.keys("*"))
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("user_id", "language", "text", "receipt"),
    [(LAND, "zh", "已筹集6200套，电梯加装45台", "报送成功"),
     (LAND_EN, "en", "Raised 6200 套, 45 台 of elevators", "Report submitted")],
    ids=["zh", "en"],
)  # fmt: skip
async def test_a_report_survives_a_restart_mid_conversation(
    tasks, db, redis_url, user_id, language, text, receipt
):
    settings = load_settings(database_url=db, redis_url=redis_url, admin_ids="9001")
    task_id = tasks["2.1.3"]

    # The bot before the restart: the liaison picks the task and the status.
    before = build_dispatcher(settings)
    assert isinstance(before.fsm.storage, RedisStorage)
    person = Person(before, MockedBot(), user_id, language=language)
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    await person.press(f"r2:{flow}:{task_id}")
    await person.press(next(d for d in person.data("r4:") if d.endswith(":at_risk")))
    assert await person.state() == ReportFlow.collecting.state
    status_message = (person.last_text, person.markup)
    keys = await _keys(redis_url)
    assert keys and all(key.startswith(f"{FSM_KEY_PREFIX}:") for key in keys), keys
    await before.emit_shutdown()  # closes the storage, as `duban run` does on SIGTERM
    del before

    # A new process: a new dispatcher and bot with the same REDIS_URL pick the draft up.
    after = build_dispatcher(settings)
    restarted = Person(after, MockedBot(), user_id, language=language)
    restarted.last_text, restarted.markup = status_message
    assert await restarted.state() == ReportFlow.collecting.state
    update = restarted.text_update(text)
    assert sent(await restarted.feed(update))  # acknowledged as part of the draft
    await restarted.send("/done")
    assert "6200" in restarted.last_text  # the preview
    requests = await restarted.press(confirm_button(restarted))
    assert receipt in sent(requests)[0]
    assert await restarted.state() is None

    report = await Report.get(task_id=task_id)
    assert report.status == ReportStatus.AT_RISK
    assert report.text == text
    assert report.message_id == update.message.message_id
    assert [value["value"] for value in report.values] == ["6200", "45"]
    await after.emit_shutdown()
    assert not [key for key in await _keys(redis_url) if key.endswith(":state")]


def test_storage_and_isolation_follow_redis_url():
    memory = build_dispatcher(load_settings(redis_url=""))
    assert isinstance(memory.fsm.storage, MemoryStorage)
    assert isinstance(memory.fsm.events_isolation, SimpleEventIsolation)
    redis = build_dispatcher(load_settings(redis_url="redis://127.0.0.1:6379/15"))
    assert isinstance(redis.fsm.storage, RedisStorage)  # connects lazily: no Redis needed
    assert isinstance(redis.fsm.events_isolation, RedisEventIsolation)
    assert redis.fsm.events_isolation.redis is redis.fsm.storage.redis


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:6379", "scheme 'http' is not supported"),
        ("127.0.0.1:6379", "scheme"),
        ("redis://", "names no host"),
        ("redis://127.0.0.1:port/0", "malformed host or port"),
        ("redis://127.0.0.1:6379/cache", "must be a number"),
    ],
)
def test_a_bad_redis_url_is_one_line_naming_the_variable(value, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(redis_url=value)
    assert str(raised.value).startswith("REDIS_URL: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_password_of_a_bad_redis_url_is_not_echoed():
    with pytest.raises(ConfigError) as raised:
        load_settings(redis_url="redis://:s3cret@127.0.0.1:6379/x")
    assert "s3cret" not in str(raised.value)


async def test_duban_run_with_redis_answers_and_stops_cleanly(tmp_path, database_url, redis_url):
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        process = await _start_duban(tg, tmp_path, database_url, REDIS_URL=redis_url)
        try:
            await _wait_polling_or_exit(tg, process)
            alice = tg.add_user("Alice", language_code="en")
            tg.send_text(alice, None, "/start")
            reply = await tg.wait_for_message(chat_id=alice.id, timeout=15)
            assert reply.text.startswith("Hello, Alice!")
        finally:
            code, output = await _stop(process)
    assert code == 0, output
    assert "Traceback" not in output


async def test_duban_run_with_an_unreachable_redis_says_so_in_one_line(tmp_path, database_url):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        process = await _start_duban(tg, tmp_path, database_url, REDIS_URL=closed)
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    code, output = process.returncode, stdout.decode()
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith("duban: error:")]
    assert len(errors) == 1 and "Redis does not answer" in errors[0], output
    assert "Traceback" not in output
