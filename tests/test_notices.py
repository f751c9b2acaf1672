"""Notifications are written in the transaction of the change they announce (bot.notices).

A failure after the notice is written takes the change back with it, and a failure of the
change leaves no notice: never a notice about something that did not happen, nor a change
that nobody is told about. On SQLite and PostgreSQL (the `db` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot import onboarding
from bot.notices import NoticeEvent, person_notice, support_report_notices
from bot.plan_model import ParsedPlan
from storage import deliveries as ledger
from storage.enums import ReportStatus
from storage.models import Delivery, Department, Liaison, Report, Task
from storage.plans import import_plan
from storage.reports import NewReport, create_report, lead_liaisons

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


class Boom(Exception):
    """Something failing after the notice was written, inside the same transaction."""


@pytest.fixture
async def plan(db: str, sample_plan: ParsedPlan) -> None:
    await import_plan(sample_plan, "1" * 64)


async def _bound(department: str, user_id: int, name: str) -> None:
    invitation = await onboarding.create_invitation(department, now=NOW)
    redemption = await onboarding.redeem_invitation(
        invitation.token, user_id=user_id, full_name=name, now=NOW
    )
    assert redemption.outcome is onboarding.RedeemOutcome.BOUND


async def test_an_unbind_that_fails_after_its_notice_leaves_neither(plan) -> None:
    await _bound("县建设局", 501, "张三")

    async def write_then_fail(result: onboarding.UnbindResult) -> None:
        rows = person_notice(
            NoticeEvent.LIAISON_ENDED,
            result.person,
            origin="m1.1",
            now=NOW,
            default_locale="zh",
            department=result.department.name,
        )
        assert await ledger.enqueue(rows) == 1
        raise Boom

    with pytest.raises(Boom):
        await onboarding.unbind(501, then=write_then_fail)
    assert (await Liaison.get(telegram_user_id=501)).active  # the change was taken back
    assert await Delivery.all().count() == 0  # and its notice with it

    async def write(result: onboarding.UnbindResult) -> None:
        await ledger.enqueue(
            person_notice(
                NoticeEvent.LIAISON_ENDED, result.person, origin="m1.2", now=NOW,
                default_locale="zh", department=result.department.name,
            )
        )  # fmt: skip

    await onboarding.unbind(501, then=write)
    assert not (await Liaison.get(telegram_user_id=501)).active
    assert await Delivery.filter(key="notice:liaison-ended:m1.2:501").count() == 1


async def test_a_report_whose_notice_fails_is_not_stored(plan) -> None:
    await _bound("县建设局", 601, "王建设")  # leads 2.1.3
    await _bound("县自然资源和规划局", 602, "李规划")  # supports it
    task = await Task.get(code="2.1.3")
    land = await Department.get(name="县自然资源和规划局")
    author = await Liaison.get(telegram_user_id=602)
    new = NewReport(
        task_id=task.id, department_id=land.id, liaison_id=author.id,
        status=ReportStatus.AT_RISK, text="已筹集6200套", values=[], attachments=[],
        chat_id=602, message_id=9, cycle_key="2026-11", created_at=NOW,
    )  # fmt: skip

    async def notify(report_id: int, *, fail: bool) -> None:
        rows = support_report_notices(
            await lead_liaisons(task.id), report_id=report_id, task_id=task.id,
            department_name=land.name, status=ReportStatus.AT_RISK, text=new.text,
            author_user_id=602, now=NOW, default_locale="zh",
        )  # fmt: skip
        assert await ledger.enqueue(rows) == 1
        if fail:
            raise Boom

    async def failing(report_id: int) -> None:
        await notify(report_id, fail=True)

    async def working(report_id: int) -> None:
        await notify(report_id, fail=False)

    with pytest.raises(Boom):
        await create_report(new, then=failing)
    assert await Report.all().count() == 0 and await Delivery.all().count() == 0

    report = await create_report(new, then=working)
    assert report is not None
    (row,) = await Delivery.all()
    lead = await Liaison.get(telegram_user_id=601)
    assert row.key == f"notice:lead:report{report.id}:liaison{lead.id}" and row.chat_id == 601
    # The same update again: no second report, and no second notice.
    assert await create_report(new, then=working) is None
    assert await Delivery.all().count() == 1
