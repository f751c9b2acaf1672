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
from tests.delivery_support import render_text, rows, statuses
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
