"""A try whose answer is lost after Telegram performed it: the retry duplicates the message, and
the ledger counts exactly those possible duplicates (the sender's stats, the weekly summary)."""

from __future__ import annotations

from datetime import timedelta

from bot.delivery import Sender, SenderLimits, SendStats
from bot.i18n import build_i18n, compile_catalogs
from bot.scheduled_messages import make_renderer
from bot.settings import Settings
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryStatus, NewDelivery
from storage.models import Delivery
from storage.plans import import_plan
from telegram_emulator import TelegramEmulator
from tests.conftest import build_sample_plan
from tests.delivery_support import VirtualClock, render_text, rows, sent_keys
from tests.emulator_fixtures import close_bot, make_bot

LOST = 5  # calls Telegram performs, then the connection drops before the answer


async def _send_everything(sender: Sender, clock: VirtualClock, expected: int) -> SendStats:
    total = SendStats()
    for _ in range(50):
        stats = await sender.run_once()
        total.sent += stats.sent
        total.retried += stats.retried
        total.uncertain += stats.uncertain
        if (await ledger.count_by_status())[DeliveryStatus.SENT] == expected:
            return total
        clock.advance(60)  # past the retry's backoff
    raise AssertionError(f"not everything was sent: {await ledger.count_by_status()}")


async def test_lost_answers_are_counted_as_possible_duplicates(db) -> None:
    clock = VirtualClock()
    async with TelegramEmulator(clock=clock.monotonic) as tg:
        chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(20)]
        await ledger.enqueue(rows(chats))
        # Performed (the message is in the chat), then the connection closes: no answer.
        tg.timeout_next("sendMessage", count=LOST, hang=0, deliver=True)
        bot = make_bot(tg)
        sender = Sender(bot, render_text, limits=SenderLimits(), clock=clock, sleep=clock.sleep)
        clock.sender = sender
        try:
            stats = await _send_everything(sender, clock, len(chats))
        finally:
            await close_bot(bot)

        assert sum(1 for fault in tg.faults if fault.delivered) == LOST
        counts = sent_keys(tg)
        duplicates = sum(count - 1 for count in counts.values())
        assert duplicates == LOST  # the retries did duplicate: nothing hides that
        assert stats.uncertain == LOST
        assert sum(await Delivery.all().values_list("uncertain_attempts", flat=True)) == LOST
        assert await ledger.possible_duplicates_since(clock() - timedelta(days=7)) == LOST

    # The weekly summary names the count, in the coordination group's language.
    await import_plan(build_sample_plan(), "0" * 64)
    await ledger.enqueue(
        [
            NewDelivery(
                DeliveryKind.SUMMARY, "summary:w1", -100, clock(), payload={"locale": locale}
            )
            for locale in ("zh",)
        ]
    )
    (record,) = await ledger.claim_due(clock(), 10)
    compile_catalogs()
    settings = Settings(_env_file=None, timezone="Asia/Shanghai", database_url=db)
    render = make_renderer(settings, build_i18n("zh"))
    text = "\n".join(message.text for message in await render(record))
    assert f"可能重复送达：{LOST} 条" in text
    assert f"{LOST} 条消息可能重复送达" in text


async def test_a_refused_connection_is_not_a_possible_duplicate(db) -> None:
    clock = VirtualClock()
    await ledger.enqueue(rows([42]))
    # Nothing listens on the Bot API address: the request never leaves.
    async with TelegramEmulator(clock=clock.monotonic) as tg:
        bot = make_bot(tg)
    try:
        sender = Sender(bot, render_text, clock=clock, sleep=clock.sleep)
        stats = await sender.run_once()
    finally:
        await close_bot(bot)
    assert stats.retried == 1
    assert stats.uncertain == 0
    row = await Delivery.get(key=f"r:0:{42}")
    assert row.status == DeliveryStatus.PENDING
    assert row.uncertain_attempts == 0
