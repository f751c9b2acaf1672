"""Fan-out benchmark: N reminders to N chats through the real Sender, against Telegram's limits.

    python bench/fanout.py            # 1000 reminders, about 40 s at the default 25 messages/s
    python bench/fanout.py --n 200

Starts the Telegram emulator in-process with Telegram's flood limits enforced (30 messages/s
overall, 1/s per chat, 20/min per group: a call over a limit gets a real 429), a throwaway SQLite
database, N users who have started the bot, and one reminder for each in the delivery ledger.
Then the production Sender (bot.delivery) runs until every row is settled, and the script prints:

- sends over any limit: calls the emulator counted over a limit (aim 0);
- lost: rows neither sent nor still due to be retried (aim 0);
- achieved rate / configured ceiling, LAST (aim >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from bot.delivery import OutgoingMessage, Sender, SenderLimits
from storage import deliveries as ledger
from storage.db import close_db, init_db
from storage.deliveries import DeliveryKind, DeliveryRecord, DeliveryStatus
from telegram_emulator import FloodLimits, TelegramEmulator


async def render(record: DeliveryRecord) -> OutgoingMessage:
    return OutgoingMessage(
        f"<b>临期提醒</b>：任务 2.1.3 将于 7 天后到期（{record.key}）。请及时报送进展。"
    )


async def bench(n: int, limits: SenderLimits, folder: Path) -> None:
    await init_db(f"sqlite://{folder / 'fanout.sqlite3'}")
    try:
        async with TelegramEmulator(flood_limits=FloodLimits(enforce=True)) as tg:
            chats = [tg.add_user(f"联络员{i}", started=True).id for i in range(n)]
            now = datetime.now(UTC)
            await ledger.enqueue(
                ledger.NewDelivery(DeliveryKind.REMINDER, f"reminder:bench:{chat}", chat, now)
                for chat in chats
            )
            session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
            bot = Bot(
                tg.token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML)
            )
            sender = Sender(bot, render, limits=limits)
            totals = {"sent": 0, "rate_limited": 0, "retried": 0, "max_in_flight": 0}
            started = time.perf_counter()
            try:
                while True:
                    stats = await sender.run_once()
                    totals["sent"] += stats.sent
                    totals["rate_limited"] += stats.rate_limited
                    totals["retried"] += stats.retried
                    totals["max_in_flight"] = max(totals["max_in_flight"], stats.max_in_flight)
                    counts = await ledger.count_by_status()
                    if counts[DeliveryStatus.PENDING] == 0:
                        break
                    upcoming = await ledger.next_due_at()
                    if upcoming is not None:
                        wait = (upcoming - datetime.now(UTC)).total_seconds()
                        await asyncio.sleep(min(max(wait, 0.0), 5.0))
                elapsed = time.perf_counter() - started
            finally:
                await session.close()
            counts = await ledger.count_by_status()
            lost = n - counts[DeliveryStatus.SENT] - counts[DeliveryStatus.PENDING]
            delivered = len({m.chat_id for m in tg.sent})
            rate = totals["sent"] / elapsed
            print(f"reminders:               {n} to {n} chats")
            print(f"delivered (distinct):    {delivered}  (messages: {len(tg.sent)})")
            print(f"elapsed:                 {elapsed:.2f} s")
            print(f"achieved rate:           {rate:.2f} messages/s")
            print(f"configured ceiling:      {limits.per_second:g} messages/s")
            print(f"429s / retries:          {totals['rate_limited']} / {totals['retried']}")
            print(f"max requests in flight:  {totals['max_in_flight']}")
            print(f"sends over any limit:    {tg.limit_violations}")
            print(f"lost:                    {lost}")
            print(f"rate / ceiling:          {rate / limits.per_second:.3f}")
    finally:
        await close_db()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="reminders, one per chat")
    parser.add_argument(
        "--rate",
        type=float,
        default=SenderLimits().per_second,
        help="the sender's ceiling in messages/s (Telegram allows about 30)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    limits = SenderLimits(per_second=args.rate)
    with tempfile.TemporaryDirectory(prefix="duban-fanout-") as folder:
        asyncio.run(bench(args.n, limits, Path(folder)))


if __name__ == "__main__":
    main()
