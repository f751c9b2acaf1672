"""Start-up never takes rows a live sender holds: a claim carries its owner and an expiry, and
only expired claims come back, or, under the run lease, every claim of another (dead) owner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiogram import Dispatcher

from bot.settings import Settings
from jobs import setup_scheduling
from storage import deliveries as ledger
from storage.deliveries import DeliveryStatus
from tests.delivery_support import T0, render_text, rows, statuses
from tests.emulator_fixtures import bot_fixture, tg_fixture  # noqa: F401


def _settings(db: str, tg) -> Settings:
    return Settings(
        _env_file=None,
        timezone="Asia/Shanghai",
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        database_url=db,
    )


async def _start_and_stop(dispatcher: Dispatcher, bot, settings: Settings, tg, wait) -> None:
    setup_scheduling(dispatcher, bot, settings, render=render_text, planner=lambda *_: [])
    await dispatcher.emit_startup(bot=bot)
    try:
        await wait()
    finally:
        await dispatcher.emit_shutdown(bot=bot)


async def test_start_up_leaves_live_claims_alone_and_takes_a_dead_owners_under_the_lease(
    db, tg, bot
) -> None:
    chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(3)]
    await ledger.enqueue(rows(chats, due=datetime.now(UTC)))
    # Another sender, alive as far as anyone can tell, holds every row.
    held = await ledger.claim_due(datetime.now(UTC), 10)
    assert len(held) == 3
    settings = _settings(db, tg)

    # A process without the run lease (a second bot on the same database): its start-up must
    # not take the rows, and it sends none of them.
    async def nothing_sent() -> None:
        await asyncio.sleep(1.0)
        assert tg.sent == []

    await _start_and_stop(Dispatcher(), bot, settings, tg, nothing_sent)
    assert set((await statuses()).values()) == {DeliveryStatus.SENDING}

    # Under the run lease no other sender can be alive: its claims are a dead process's.
    from storage.lease import acquire_run_lease  # here: 87e6d6c fails the part above

    lease = await acquire_run_lease(db)
    try:

        async def all_sent() -> None:
            await tg.wait_until(lambda: len(tg.sent) == 3, timeout=20)

        await _start_and_stop(Dispatcher(run_lease=lease), bot, settings, tg, all_sent)
    finally:
        if lease is not None:
            await lease.release()
    assert set((await statuses()).values()) == {DeliveryStatus.SENT}
    assert sorted(message.chat_id for message in tg.sent) == sorted(chats)


async def test_a_sender_renews_the_claims_it_holds_through_a_long_retry_after(db, tg) -> None:
    from bot.delivery import Sender
    from storage.deliveries import CLAIM_TTL
    from tests.delivery_support import VirtualClock, sent_keys
    from tests.emulator_fixtures import close_bot, make_bot

    clock = VirtualClock()
    chat = tg.add_user("联络员", started=True).id
    await ledger.enqueue(rows([chat] * 3))
    wait = int(CLAIM_TTL.total_seconds() * 2.5)
    tg.fail_next("sendMessage", 429, retry_after=wait)  # the chat waits 25 minutes
    taken_back: list[int] = []

    async def sleep(seconds: float) -> None:
        # Meanwhile someone sweeps the ledger as every start-up without the lease does.
        await clock.sleep(seconds)
        taken_back.append(await ledger.reset_in_flight(at=clock()))

    bot = make_bot(tg)
    try:
        sender = Sender(bot, render_text, clock=clock, sleep=sleep)
        clock.sender = sender
        await sender.run_once()
        assert clock() - T0 >= CLAIM_TTL * 2  # the queued rows were held that long
        clock.advance(wait)
        await sender.run_once()
    finally:
        await close_bot(bot)
    assert sum(taken_back) == 0  # never taken from the live sender
    assert sent_keys(tg) == {key: 1 for key in (await statuses())}
    assert set((await statuses()).values()) == {DeliveryStatus.SENT}
