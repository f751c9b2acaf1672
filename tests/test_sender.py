"""The Sender against the Telegram emulator, in virtual time: limits, 429, 5xx, timeouts, 403, 400.

Virtual time (tests.delivery_support.VirtualClock) drives the sender's pacing and the emulator's
flood limits alike, so these tests wait for nothing and assert exact outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise

import pytest
from aiogram import Bot

from bot.delivery import OutgoingMessage, Sender, SenderLimits, unreachable_key
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryRecord, DeliveryStatus, NewDelivery
from storage.models import Delivery
from telegram_emulator import FloodLimits, TelegramEmulator
from tests.conftest import ONE_DIALECT
from tests.delivery_support import T0, VirtualClock, render_text, rows, sent_keys, statuses
from tests.emulator_fixtures import close_bot, make_bot

pytestmark = ONE_DIALECT  # once: SQLite, or PostgreSQL in the PostgreSQL run


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture(name="tg")
async def tg_fixture(clock: VirtualClock) -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator(clock=clock.monotonic) as emulator:
        yield emulator


@pytest.fixture(name="bot")
async def bot_fixture(tg: TelegramEmulator) -> AsyncIterator[Bot]:
    instance = make_bot(tg)
    try:
        yield instance
    finally:
        await close_bot(instance)


def make_sender(bot: Bot, clock: VirtualClock, render=render_text, **options) -> Sender:
    coordinators = options.pop("coordinators", None)
    limits = options.pop("limits", None)

    async def coordinator_chats() -> list[int]:
        return list(coordinators or [])

    sender = Sender(
        bot,
        render,
        limits=limits,
        coordinator_chats=coordinator_chats,
        clock=clock,
        sleep=clock.sleep,
        **options,
    )
    clock.sender = sender
    return sender


def people(tg: TelegramEmulator, n: int) -> list[int]:
    return [tg.add_user(f"联络员{i}", started=True).id for i in range(n)]


async def test_due_rows_are_sent_once_and_recorded(db, tg, bot, clock) -> None:
    chats = people(tg, 3)
    await ledger.enqueue(rows(chats))
    await ledger.enqueue(rows(chats[:1], due=T0 + timedelta(hours=1), prefix="later"))
    sender = make_sender(bot, clock)

    stats = await sender.run_once()

    assert (stats.claimed, stats.sent, stats.failed) == (3, 3, 0)
    assert sorted(m.chat_id for m in tg.sent) == sorted(chats)
    assert tg.sent[0]["entities"][0]["type"] == "bold"  # HTML parse mode from the bot default
    by_key = await ledger.deliveries_by_key([f"r:{n}:{chat}" for n, chat in enumerate(chats)])
    for record in by_key.values():
        assert record.status is DeliveryStatus.SENT
        assert record.sent_at is not None
        assert record.message_id == tg.messages_to(record.chat_id)[0].message_id
    assert (await sender.run_once()).claimed == 0  # nothing else is due: the later row waits
    assert await ledger.next_due_at() == T0 + timedelta(hours=1)


async def test_limits_hold_with_telegram_flood_control_enforced(db, tg, bot, clock) -> None:
    tg.flood_limits = FloodLimits(enforce=True)  # Telegram's: 30/s, 1/s per chat, 20/min group
    many = people(tg, 70)
    busy = tg.add_user("忙", started=True).id
    group = tg.add_group("工作专班群").id
    await ledger.enqueue(rows(many))
    await ledger.enqueue(rows([busy] * 5, prefix="busy"))
    await ledger.enqueue(rows([group] * 4, kind=DeliveryKind.ESCALATION, prefix="group"))
    sender = make_sender(bot, clock)

    stats = await sender.run_once()

    assert stats.sent == 79
    assert stats.rate_limited == 0
    assert tg.limit_violations == 0
    times: dict[int, list[float]] = defaultdict(list)
    for call in tg.calls_to("sendMessage"):
        times[int(call.params["chat_id"])].append(call.time)
    assert all(b - a >= 1.0 for a, b in pairwise(times[busy]))
    assert all(b - a >= 60 / 18 for a, b in pairwise(times[group]))
    every = sorted(t for chat_times in times.values() for t in chat_times)
    assert max(sum(1 for t in every if start <= t < start + 1) for start in every) <= 26
    # The group's four messages need 3 × 60/18 s; all 79 at 25/s need 3.2 s (virtual time).
    assert 3 * 60 / 18 <= clock.slept < 3 * 60 / 18 + 79 / 25 + 1


async def test_without_the_sender_limits_the_emulator_would_object(db, tg, bot, clock) -> None:
    # The check above means something: a sender allowed to go faster is caught.
    tg.flood_limits = FloodLimits(enforce=False)
    chat = people(tg, 1)[0]
    await ledger.enqueue(rows([chat] * 6))
    fast = SenderLimits(per_second=1000, per_chat_per_second=1000)
    await make_sender(bot, clock, limits=fast).run_once()
    assert tg.limit_violations > 0


async def test_429_waits_retry_after_then_delivers_once(db, tg, bot, clock) -> None:
    chat, other = people(tg, 2)
    await ledger.enqueue(rows([chat, other]))
    tg.fail_next("sendMessage", 429, retry_after=7)
    sender = make_sender(bot, clock)

    first = await sender.run_once()

    assert (first.rate_limited, first.sent) == (1, 1)
    (waiting,) = [r for r in (await ledger.deliveries_by_key([f"r:0:{chat}"])).values()]
    assert waiting.status is DeliveryStatus.PENDING
    assert waiting.attempts == 0  # flood control is not a failed attempt
    assert waiting.last_error is not None and waiting.last_error.startswith("429")
    assert waiting.next_attempt_at == T0 + timedelta(seconds=7)
    assert (await sender.run_once()).sent == 0  # not yet due

    clock.advance(7)
    second = await sender.run_once()

    assert second.sent == 1
    calls = [c for c in tg.calls_to("sendMessage") if int(c.params["chat_id"]) == chat]
    assert len(calls) == 2 and calls[1].time - calls[0].time >= 7
    assert sent_keys(tg) == Counter({f"r:0:{chat}": 1, f"r:1:{other}": 1})


async def test_5xx_and_timeouts_are_retried_with_backoff(db, tg, bot, clock) -> None:
    (chat,) = people(tg, 1)
    await ledger.enqueue(rows([chat]))
    tg.fail_next("sendMessage", 502)
    tg.timeout_next("sendMessage")  # the connection drops without an answer
    sender = make_sender(bot, clock, limits=SenderLimits(backoff_base=5))

    assert (await sender.run_once()).retried == 1
    record = (await ledger.deliveries_by_key([f"r:0:{chat}"]))[f"r:0:{chat}"]
    assert (record.attempts, record.next_attempt_at) == (1, T0 + timedelta(seconds=5))
    assert "TelegramServerError" in (record.last_error or "")

    clock.advance(5)
    assert (await sender.run_once()).retried == 1
    record = (await ledger.deliveries_by_key([f"r:0:{chat}"]))[f"r:0:{chat}"]
    assert record.attempts == 2
    assert record.next_attempt_at == T0 + timedelta(seconds=5 + 10)  # doubled
    assert "TelegramNetworkError" in (record.last_error or "")

    clock.advance(10)
    assert (await sender.run_once()).sent == 1
    assert len(tg.calls_to("sendMessage")) == 3
    assert sent_keys(tg) == Counter({f"r:0:{chat}": 1})


async def test_gives_up_after_max_attempts_with_the_last_error(db, tg, bot, clock) -> None:
    (chat,) = people(tg, 1)
    await ledger.enqueue(rows([chat]))
    tg.fail_next("sendMessage", 500, count=3)
    sender = make_sender(bot, clock, limits=SenderLimits(max_attempts=3, backoff_base=1))
    for _ in range(3):
        await sender.run_once()
        clock.advance(60)
    record = (await ledger.deliveries_by_key([f"r:0:{chat}"]))[f"r:0:{chat}"]
    assert record.status is DeliveryStatus.FAILED
    assert record.attempts == 3
    assert record.last_error == (
        "gave up after 3 attempts: TelegramServerError: Internal Server Error"
    )
    assert tg.sent == []


async def test_403_fails_the_row_and_tells_each_coordinator_once(db, tg, bot, clock) -> None:
    liaison = tg.add_user("王五", started=True)
    coordinator = tg.add_user("督办", started=True).id
    silent_coordinator = tg.add_user("未启动").id  # never pressed Start: their notice fails too
    tg.block_bot(liaison)
    await ledger.enqueue(rows([liaison.id] * 2))
    seen: list[DeliveryRecord] = []

    async def render(record: DeliveryRecord) -> OutgoingMessage:
        seen.append(record)
        if record.kind is DeliveryKind.NOTICE:
            return OutgoingMessage(f"无法送达 {record.payload['chat_id']} {record.key}")
        return await render_text(record)

    coordinators = [coordinator, silent_coordinator, liaison.id]
    sender = make_sender(bot, clock, render, coordinators=coordinators)

    first = await sender.run_once()
    await sender.run_once()  # the notices
    await ledger.enqueue(rows([liaison.id], prefix="next-day"))
    await sender.run_once()
    await sender.run_once()

    assert (first.failed, first.unreachable, first.notices) == (2, 2, 2)
    states = await statuses()
    assert states[f"r:0:{liaison.id}"] is DeliveryStatus.FAILED
    assert states[f"next-day:0:{liaison.id}"] is DeliveryStatus.FAILED
    assert states[unreachable_key(liaison.id, coordinator)] is DeliveryStatus.SENT
    assert states[unreachable_key(liaison.id, silent_coordinator)] is DeliveryStatus.FAILED
    assert len(states) == 5  # no notice about the notice, none for the liaison themselves
    record = (await ledger.deliveries_by_key([f"r:0:{liaison.id}"]))[f"r:0:{liaison.id}"]
    assert record.last_error == "unreachable: Forbidden: bot was blocked by the user"
    (notice,) = tg.messages_to(coordinator)
    assert notice.text == f"无法送达 {liaison.id} {unreachable_key(liaison.id, coordinator)}"
    notices = [r for r in seen if r.kind is DeliveryKind.NOTICE]
    assert notices[0].payload["reason"] == "unreachable"
    assert notices[0].payload["delivery_kind"] == "reminder"


async def test_kicked_from_group_is_unreachable_too(db, tg, bot, clock) -> None:
    group = tg.add_group("协调群", members=[tg.add_user("成员")])
    coordinator = tg.add_user("督办", started=True).id
    tg.kick_bot(group)
    await ledger.enqueue(rows([group.id], kind=DeliveryKind.SUMMARY))
    sender = make_sender(bot, clock, coordinators=[coordinator])
    assert (await sender.run_once()).unreachable == 1
    await sender.run_once()
    assert len(tg.messages_to(coordinator)) == 1


async def test_400_fails_with_telegram_description(db, tg, bot, clock) -> None:
    await ledger.enqueue(rows([424242]))  # a chat Telegram does not know
    stats = await make_sender(bot, clock).run_once()
    assert stats.failed == 1
    record = (await ledger.deliveries_by_key(["r:0:424242"]))["r:0:424242"]
    assert record.status is DeliveryStatus.FAILED
    assert record.last_error == "400: Bad Request: chat not found"


async def test_upgraded_group_gets_the_message_in_its_supergroup(db, tg, bot, clock) -> None:
    group = tg.add_group("协调群", members=[tg.add_user("成员")])
    supergroup = tg.upgrade_group(group)
    await ledger.enqueue(rows([group.id], kind=DeliveryKind.ESCALATION))
    sender = make_sender(bot, clock)
    await sender.run_once()
    await sender.run_once()
    assert len(tg.messages_to(supergroup.id)) == 1
    record = (await ledger.deliveries_by_key([f"r:0:{group.id}"]))[f"r:0:{group.id}"]
    assert (record.status, record.chat_id) == (DeliveryStatus.SENT, supergroup.id)


async def test_render_none_cancels_and_errors_retry(db, tg, bot, clock) -> None:
    chats = people(tg, 3)
    await ledger.enqueue(rows(chats))

    async def render(record: DeliveryRecord) -> OutgoingMessage | None:
        if record.chat_id == chats[0]:
            return None  # e.g. a nudge for a department that has reported meanwhile
        if record.chat_id == chats[1]:
            raise KeyError("task 9")
        return await render_text(record)

    stats = await make_sender(bot, clock, render).run_once()

    assert (stats.cancelled, stats.retried, stats.sent) == (1, 1, 1)
    states = await statuses()
    assert states[f"r:0:{chats[0]}"] is DeliveryStatus.CANCELLED
    assert states[f"r:1:{chats[1]}"] is DeliveryStatus.PENDING
    assert [m.chat_id for m in tg.sent] == [chats[2]]


async def test_photo_and_document_messages(db, tg, bot, clock) -> None:
    (chat,) = people(tg, 1)
    await ledger.enqueue(rows([chat, chat]))
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32

    async def render(record: DeliveryRecord) -> OutgoingMessage:
        if record.key.startswith("r:0"):
            return OutgoingMessage("周报", photo=png, filename="chart.png")
        return OutgoingMessage("全文", document="长文本".encode(), filename="summary.txt")

    await make_sender(bot, clock, render).run_once()
    assert [m.method.lower() for m in tg.sent] == ["sendphoto", "senddocument"]
    assert [m.text for m in tg.sent] == ["周报", "全文"]


async def test_stale_rows_expire_instead_of_going_out(db, tg, bot, clock) -> None:
    chats = people(tg, 2)
    await ledger.enqueue(rows(chats[:1], due=T0 - timedelta(hours=25), prefix="old"))
    await ledger.enqueue(rows(chats[1:], due=T0 - timedelta(hours=23), prefix="recent"))
    stats = await make_sender(bot, clock).run_once()
    assert (stats.expired, stats.sent) == (1, 1)
    assert [r.key for r in stats.expired_records] == [f"old:0:{chats[0]}"]
    assert [m.chat_id for m in tg.sent] == [chats[1]]
    listed = await ledger.expired_or_failed_since(T0 - timedelta(days=7))
    assert [(r.key, r.status) for r in listed] == [(f"old:0:{chats[0]}", DeliveryStatus.EXPIRED)]


async def test_run_loop_sleeps_until_due_wakes_and_stops(db, tg, bot, clock) -> None:
    chats = people(tg, 2)
    await ledger.enqueue(rows(chats[:1], due=T0 + timedelta(minutes=30)))
    idle: list[object] = []
    sender = make_sender(bot, clock, on_idle=idle.append)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await tg.wait_for_message(chat_id=chats[0])
        assert clock.now >= T0 + timedelta(minutes=30)  # not before it was due
        await ledger.enqueue([NewDelivery(DeliveryKind.PROMPT, "woken", chats[1], clock.now)])
        sender.wake()
        await tg.wait_for_message(chat_id=chats[1])
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task
    assert T0 + timedelta(minutes=30) in idle
    assert sent_keys(tg) == Counter({f"r:0:{chats[0]}": 1, "woken": 1})


async def test_graceful_stop_releases_claimed_rows(db, tg, bot, clock) -> None:
    chats = people(tg, 30)
    await ledger.enqueue(rows(chats))
    sender = make_sender(bot, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await tg.wait_until(lambda: len(tg.sent) >= 5)
    stop.set()
    async with asyncio.timeout(5):
        await task
    states = await statuses()
    assert DeliveryStatus.SENDING not in states.values()
    sent = sum(1 for status in states.values() if status is DeliveryStatus.SENT)
    assert sent == len(tg.sent) < 30
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_expired_claims_are_swept_up_live_claims_are_not(db, tg, bot, clock) -> None:
    chats = people(tg, 2)
    await ledger.enqueue(rows(chats))
    # Claimed by another sender: one claim ran out (its owner stopped renewing it), one is live.
    await Delivery.filter(chat_id=chats[0]).update(
        status=DeliveryStatus.SENDING,
        claimed_by="gone",
        claim_expires_at=T0 - timedelta(minutes=1),
    )
    await Delivery.filter(chat_id=chats[1]).update(
        status=DeliveryStatus.SENDING,
        claimed_by="alive",
        claim_expires_at=T0 + timedelta(minutes=9),
    )
    stats = await make_sender(bot, clock).run_once()
    assert stats.sent == 1
    assert [m.chat_id for m in tg.sent] == [chats[0]]
    assert (await statuses())[f"r:1:{chats[1]}"] is DeliveryStatus.SENDING


async def test_a_send_of_several_messages_resumes_after_the_part_that_failed(
    db, tg, bot, clock
) -> None:
    tg.flood_limits = FloodLimits(enforce=True)
    group = tg.add_group("工作专班群").id
    await ledger.enqueue(rows([group], kind=DeliveryKind.SUMMARY))
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    renders: list[int] = []

    async def render(record: DeliveryRecord) -> list[OutgoingMessage]:
        renders.append(record.parts_sent)
        return [
            OutgoingMessage("周报 第一部分"),
            OutgoingMessage("图表", photo=png, filename="chart.png"),
            OutgoingMessage("周报 第二部分"),
        ]

    tg.fail_next("sendPhoto", 429, retry_after=5)
    sender = make_sender(bot, clock, render)

    first = await sender.run_once()
    halfway = (await ledger.deliveries_by_key([f"r:0:{group}"]))[f"r:0:{group}"]
    clock.advance(5)
    second = await sender.run_once()

    assert (first.sent, first.rate_limited, second.sent) == (0, 1, 1)
    assert (halfway.status, halfway.parts_sent) == (DeliveryStatus.PENDING, 1)
    assert renders == [0, 1]
    assert [m.text for m in tg.sent] == ["周报 第一部分", "图表", "周报 第二部分"]  # none twice
    done = (await ledger.deliveries_by_key([f"r:0:{group}"]))[f"r:0:{group}"]
    assert (done.status, done.parts_sent) == (DeliveryStatus.SENT, 2)
    assert done.message_id == tg.sent[0].message_id  # the first part's
    times = [c.time for c in tg.calls if c.method.lower() in ("sendmessage", "sendphoto")]
    assert all(b - a >= 60 / 18 for a, b in pairwise(times))
    assert tg.limit_violations == 0


async def test_a_send_whose_parts_all_went_out_is_just_recorded(db, tg, bot, clock) -> None:
    (chat,) = people(tg, 1)
    await ledger.enqueue(rows([chat]))
    await Delivery.filter(chat_id=chat).update(parts_sent=2, message_id=41)

    async def render(record: DeliveryRecord) -> list[OutgoingMessage]:
        return [OutgoingMessage("一"), OutgoingMessage("二")]

    assert (await make_sender(bot, clock, render).run_once()).sent == 1
    assert tg.sent == []
    record = (await ledger.deliveries_by_key([f"r:0:{chat}"]))[f"r:0:{chat}"]
    assert (record.status, record.message_id) == (DeliveryStatus.SENT, 41)
