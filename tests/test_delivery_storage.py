"""The delivery ledger on SQLite and PostgreSQL: idempotent enqueue, atomic claims, transitions."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryStatus, NewDelivery
from storage.enums import LiaisonRole
from storage.models import Delivery, Department, Liaison, Plan, Task

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def row(key: str, *, chat_id: int = 101, due: datetime = T0, **extra: object) -> NewDelivery:
    return NewDelivery(DeliveryKind.PROMPT, key, chat_id, due, **extra)  # type: ignore[arg-type]


async def statuses() -> dict[str, DeliveryStatus]:
    return {d.key: DeliveryStatus(d.status) for d in await Delivery.all()}


async def test_enqueue_is_idempotent_per_key(db: str) -> None:
    assert await ledger.enqueue([row("a"), row("b"), row("a", chat_id=999)]) == 2
    assert await ledger.enqueue([row("a"), row("b"), row("c")]) == 1
    assert await ledger.enqueue([]) == 0
    assert await Delivery.all().count() == 3
    first = (await ledger.deliveries_by_key(["a"]))["a"]
    assert first.chat_id == 101  # the first row with the key wins, never overwritten
    assert first.status is DeliveryStatus.PENDING
    assert first.next_attempt_at == first.due_at == T0
    assert first.attempts == 0
    await check_key_kept_whatever_its_status()
    await check_concurrent_enqueues()
    await check_bad_input_is_refused()


async def check_key_kept_whatever_its_status() -> None:
    for claimed in await ledger.claim_due(T0, 10):
        await ledger.mark_sent(claimed.id, 55, T0)
    assert await ledger.enqueue([row("a", due=T0 + timedelta(days=1))]) == 0
    assert set((await statuses()).values()) == {DeliveryStatus.SENT}


async def check_concurrent_enqueues() -> None:
    await Delivery.all().delete()
    batch = [row(f"k{i}", chat_id=i) for i in range(40)]
    await asyncio.gather(*(ledger.enqueue(batch) for _ in range(4)))
    assert await Delivery.all().count() == 40


async def check_bad_input_is_refused() -> None:
    await Delivery.all().delete()
    with pytest.raises(ValueError, match="timezone-aware"):
        await ledger.enqueue([row("a", due=datetime(2026, 11, 20, 9))])  # noqa: DTZ001
    with pytest.raises(ValueError, match="key"):
        await ledger.enqueue([row("x" * 256)])
    assert await Delivery.all().count() == 0


async def test_claim_takes_due_rows_oldest_first_and_marks_them_sending(db: str) -> None:
    await ledger.enqueue(
        [
            row("late", due=T0 + timedelta(minutes=5)),
            row("first", due=T0 - timedelta(minutes=5)),
            row("second", due=T0),
            row("future", due=T0 + timedelta(hours=1)),
        ]
    )
    claimed = await ledger.claim_due(T0 + timedelta(minutes=5), 2)
    assert [r.key for r in claimed] == ["first", "second"]
    assert all(r.status is DeliveryStatus.SENDING for r in claimed)
    again = await ledger.claim_due(T0 + timedelta(minutes=5), 10)
    assert [r.key for r in again] == ["late"]
    assert await ledger.claim_due(T0 + timedelta(minutes=5), 10) == []
    assert await ledger.next_due_at() == T0 + timedelta(hours=1)
    await check_concurrent_claims()


async def check_concurrent_claims() -> None:
    await Delivery.all().delete()
    await ledger.enqueue([row(f"k{i}", chat_id=i) for i in range(60)])
    results = await asyncio.gather(*(ledger.claim_due(T0, 25) for _ in range(5)))
    ids = [r.id for batch in results for r in batch]
    assert len(ids) == len(set(ids))  # a claimer that lost the race gets fewer rows, not shared
    while batch := await ledger.claim_due(T0, 25):
        ids += [r.id for r in batch]
    assert len(ids) == len(set(ids)) == 60


async def test_retry_sent_failed_cancelled_transitions(db: str) -> None:
    await ledger.enqueue([row("r"), row("s"), row("f"), row("c")])
    claimed = {r.key: r for r in await ledger.claim_due(T0, 10)}
    later = T0 + timedelta(seconds=30)

    assert await ledger.mark_retry(claimed["r"].id, "500: Internal Server Error", later)
    assert not await ledger.mark_retry(claimed["r"].id, "again", later)  # no longer sending
    retried = await ledger.get_delivery(claimed["r"].id)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.next_attempt_at) == (
        DeliveryStatus.PENDING,
        1,
        later,
    )
    assert retried.last_error == "500: Internal Server Error"
    # A 429 does not count as an attempt.
    (again,) = await ledger.claim_due(later, 10)
    await ledger.mark_retry(again.id, "429", later, count_attempt=False)
    assert (await ledger.get_delivery(again.id)).attempts == 1  # type: ignore[union-attr]

    assert await ledger.mark_sent(claimed["s"].id, 777, T0)
    sent = await ledger.get_delivery(claimed["s"].id)
    assert sent is not None
    assert (sent.status, sent.message_id, sent.sent_at, sent.attempts) == (
        DeliveryStatus.SENT,
        777,
        T0,
        1,
    )

    assert await ledger.mark_failed(claimed["f"].id, "400: Bad Request: chat not found", at=T0)
    assert await ledger.mark_cancelled(claimed["c"].id, "reported meanwhile", at=T0)
    assert not await ledger.mark_cancelled(claimed["s"].id, "too late")  # sent stays sent
    assert await statuses() == {
        "r": DeliveryStatus.PENDING,
        "s": DeliveryStatus.SENT,
        "f": DeliveryStatus.FAILED,
        "c": DeliveryStatus.CANCELLED,
    }
    await check_reset_and_release()


async def check_reset_and_release() -> None:
    await Delivery.all().delete()
    await ledger.enqueue([row(f"k{i}", chat_id=i) for i in range(5)])
    claimed = await ledger.claim_due(T0, 10)
    await ledger.mark_sent(claimed[0].id, 1, T0)
    assert await ledger.release_claimed([claimed[1].id]) == 1
    assert await ledger.reset_in_flight() == 3
    counts = await ledger.count_by_status()
    assert counts[DeliveryStatus.PENDING] == 4
    assert counts[DeliveryStatus.SENT] == 1
    assert counts[DeliveryStatus.SENDING] == 0
    assert len(await ledger.claim_due(T0, 10)) == 4  # due again at once


async def test_stale_rows_expire_and_are_listed_with_failures(db: str) -> None:
    housing = await Department.create(name="县建设局")
    liaison = await Liaison.create(telegram_user_id=501, full_name="王五", department=housing)
    plan = await Plan.create(title="实施意见", horizon=date(2027, 12, 31), source_sha256="0" * 64)
    task = await Task.create(
        plan=plan,
        code="2.1.3",
        position=1,
        section="第一项行动",
        title="推动城市有机更新",
        text="",
        deadline=date(2027, 12, 31),
    )
    await ledger.enqueue(
        [
            row("old", due=T0 - timedelta(hours=30), department_id=housing.id, task_id=task.id),
            row("recent", due=T0 - timedelta(hours=2)),
            row("broken", due=T0 - timedelta(hours=1), liaison_id=liaison.id),
            row("rejected", chat_id=-100, due=T0 - timedelta(minutes=5)),
        ]
    )
    for claimed in await ledger.claim_due(T0, 10):
        if claimed.key == "broken":
            error = "unreachable: Forbidden: bot was blocked by the user"
            await ledger.mark_failed(claimed.id, error, at=T0)
        elif claimed.key == "rejected":
            await ledger.mark_failed(claimed.id, "400: Bad Request: chat not found", at=T0)
        else:
            await ledger.release_claimed([claimed.id], at=T0)

    expired = await ledger.mark_expired_older_than(T0 - timedelta(hours=24), at=T0)
    assert [r.key for r in expired] == ["old"]
    assert expired[0].status is DeliveryStatus.EXPIRED
    assert await ledger.mark_expired_older_than(T0 - timedelta(hours=24), at=T0) == []

    listed = await ledger.expired_or_failed_since(T0 - timedelta(days=7))
    assert [(r.key, r.status) for r in listed] == [
        ("old", DeliveryStatus.EXPIRED),
        ("broken", DeliveryStatus.FAILED),
        ("rejected", DeliveryStatus.FAILED),
    ]
    assert await ledger.expired_or_failed_since(T0 + timedelta(minutes=1)) == []
    issues = await ledger.delivery_issues_since(T0 - timedelta(days=7))
    assert [(i.kind, i.recipient, i.task_code, i.reason) for i in issues] == [
        ("prompt", "县建设局", "2.1.3", "expired"),
        ("prompt", "王五", None, "unreachable"),
        ("prompt", "-100", None, "400: Bad Request: chat not found"),
    ]


async def test_liaison_recipients_lists_active_liaisons_lead_first(db: str) -> None:
    housing = await Department.create(name="县建设局")
    other = await Department.create(name="县民政局")
    deputy = await Liaison.create(
        telegram_user_id=501, full_name="副", department=housing, locale="en"
    )
    lead = await Liaison.create(
        telegram_user_id=502, full_name="主", department=housing, is_lead=True
    )
    await Liaison.create(telegram_user_id=503, full_name="离", department=housing, active=False)
    await Liaison.create(
        telegram_user_id=504, full_name="督", department=other, role=LiaisonRole.COORDINATOR
    )
    found = await ledger.liaison_recipients([housing.id, other.id])
    assert [(r.liaison_id, r.chat_id, r.is_lead) for r in found[housing.id]] == [
        (lead.id, 502, True),
        (deputy.id, 501, False),
    ]
    assert found[housing.id][1].locale == "en"
    assert other.id not in found
    assert await ledger.liaison_recipients([]) == {}
