"""A report's draft is cleared only once the report is committed: a confirmation that fails to
store (the database gone for a moment, a shutdown) keeps the draft, so pressing again, or the
update Telegram delivers again, still stores the report."""

from __future__ import annotations

import pytest
from tortoise import connections

from bot.app import build_dispatcher
from bot.settings import load_settings
from storage.models import Department, Liaison, Report, Task
from storage.plans import import_plan
from tests.conftest import build_sample_plan
from tests.mocked_bot import MockedBot
from tests.test_handlers_reports import Person, confirm_button, report_until_preview

BUILD = 2001  # 县建设局: leads 2.1.3


@pytest.fixture
async def task_id(db) -> int:
    await import_plan(build_sample_plan(), "1" * 64)
    department = await Department.get(name="县建设局")
    await Liaison.create(telegram_user_id=BUILD, full_name="王建设", department_id=department.id)
    return (await Task.get(code="2.1.3")).id


async def _move_reports_table(old: str, new: str) -> None:
    await connections.get("default").execute_script(f"ALTER TABLE {old} RENAME TO {new}")


async def test_a_confirmation_that_could_not_be_stored_keeps_the_draft(db, task_id):
    dispatcher = build_dispatcher(load_settings(database_url=db, admin_ids=""))
    person = Person(dispatcher, MockedBot(), BUILD)
    await report_until_preview(person, task_id, "on_track", "已筹集6200套")
    confirm = confirm_button(person)
    context = dispatcher.fsm.get_context(person.bot, person.chat.id, person.user.id)
    draft = await context.get_data()

    await _move_reports_table("reports", "reports_away")  # the commit fails
    try:
        requests = await person.press(confirm)
    finally:
        await _move_reports_table("reports_away", "reports")
    assert "出错了" in str(requests)  # the error handler apologised
    assert await Report.all().count() == 0
    assert await context.get_data() == draft  # the draft outlived the failed commit

    await person.press(confirm)  # pressed again (or delivered again): now it is stored
    report = await Report.get()
    assert report.text == "已筹集6200套"
    assert await context.get_data() == {}
