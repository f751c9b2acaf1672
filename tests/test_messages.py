"""The outbox renderer (bot.scheduled_messages) on rows the e2e month does not produce: reminders,
notices, and cancellation of a prompt once its cycle is answered."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from bot.delivery import OutgoingMessage
from bot.i18n import build_i18n
from bot.plan_parser import parse_plan
from bot.scheduled_messages import make_renderer
from bot.settings import load_settings
from storage.deliveries import DeliveryKind, DeliveryRecord, DeliveryStatus
from storage.enums import ReportStatus
from storage.models import Assignment, Department, Liaison, Report
from storage.plans import import_plan

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def record(kind: DeliveryKind, **fields: object) -> DeliveryRecord:
    values: dict = {
        "id": 1, "kind": kind, "key": f"{kind}:test", "chat_id": 42, "liaison_id": None,
        "department_id": None, "task_id": None, "cycle_key": None, "due_at": NOW,
        "status": DeliveryStatus.SENDING, "attempts": 0, "next_attempt_at": NOW,
        "last_error": None, "message_id": None, "sent_at": None, "parts_sent": 0,
        "payload": {}, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    values.update(fields)
    return DeliveryRecord(**values)


async def test_reminders_notices_and_answered_prompts(db) -> None:
    await import_plan(parse_plan(EXAMPLE.read_bytes()), hashlib.sha256(b"x").hexdigest())
    settings = load_settings(timezone="Asia/Shanghai", default_locale="zh")
    render = make_renderer(settings, build_i18n("zh"))
    education = await Department.get(name="县教育局")
    (task_id,) = await Assignment.filter(department=education).values_list("task_id", flat=True)
    liaison = await Liaison.create(
        telegram_user_id=42, full_name="王<教育>", department=education, locale="en"
    )

    reminder = await render(
        record(
            DeliveryKind.REMINDER, task_id=task_id, department_id=education.id,
            liaison_id=liaison.id, payload={"deadline": "2027-12-31", "days_before": 7},
        )
    )  # fmt: skip
    assert isinstance(reminder, OutgoingMessage)
    assert "It is due in 7 days (2027-12-31)." in reminder.text  # the liaison's English
    assert reminder.reply_markup is not None  # replying to it reports on the task
    overdue = await render(
        record(
            DeliveryKind.REMINDER, task_id=task_id, department_id=education.id,
            payload={"deadline": "2027-12-31", "days_before": -1, "locale": "zh"},
        )
    )  # fmt: skip
    assert "任务已逾期" in overdue.text and "已逾期" in overdue.text

    unreachable = await render(
        record(DeliveryKind.NOTICE, chat_id=-100, payload={"reason": "unreachable", "chat_id": 42})
    )
    assert "<b>王&lt;教育&gt;</b> (县教育局)" in unreachable.text  # escaped
    calendar = await render(
        record(DeliveryKind.NOTICE, chat_id=-100, payload={"reason": "calendar", "years": [2027]})
    )
    assert "2027" in calendar.text and "工作日历未覆盖" in calendar.text

    prompt = record(
        DeliveryKind.PROMPT, task_id=task_id, department_id=education.id, liaison_id=liaison.id,
        cycle_key="2026-11", payload={"deadline": "2026-11-25"},
    )  # fmt: skip
    assert isinstance(await render(prompt), OutgoingMessage)
    await Report.create(
        task_id=task_id, department=education, liaison=liaison, status=ReportStatus.ON_TRACK,
        chat_id=42, message_id=1, cycle_key="2026-11",
    )  # fmt: skip
    assert await render(prompt) is None  # answered: cancelled
    await Liaison.filter(id=liaison.id).update(active=False)
    other_cycle = record(
        DeliveryKind.NUDGE, task_id=task_id, department_id=education.id, liaison_id=liaison.id,
        cycle_key="2026-12",
    )  # fmt: skip
    assert await render(other_cycle) is None  # the liaison left


async def test_the_weekly_summary_is_what_the_summary_builder_built(db, monkeypatch) -> None:
    # /summary and the weekly job share one builder: the job only turns its output into rows.
    from bot import summary_service

    monkeypatch.setattr(summary_service, "render_chart", lambda _summary, _locale: b"png")
    await import_plan(parse_plan(EXAMPLE.read_bytes()), hashlib.sha256(b"x").hexdigest())
    settings = load_settings(timezone="Asia/Shanghai", default_locale="zh")
    i18n = build_i18n("zh")
    render = make_renderer(settings, i18n)

    sent = await render(record(DeliveryKind.SUMMARY, chat_id=-100, payload={"locale": "zh"}))

    with i18n.context():
        built = await summary_service.build_summary(
            NOW, tz=settings.tz, locale="zh", count_duplicates=True
        )
    assert [message.text for message in sent if message.photo is None] == built.rendered.messages
    assert sent[-1].photo == b"png" and "2026-11-20" in sent[-1].text
