"""Helpers for the delivery tests: virtual time shared by the sender and the emulator."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.delivery import OutgoingMessage, Sender
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, DeliveryRecord, NewDelivery
from telegram_emulator import TelegramEmulator

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


class VirtualClock:
    """Aware-UTC virtual time for the sender (`clock`, `sleep`) and the emulator (`monotonic`).

    `sleep` first lets every open request finish, then jumps: time stands still while a request
    is in flight, so the emulator stamps each request with the virtual instant at which the
    sender decided to send it and flood limits are checked exactly, whatever the machine's speed.
    """

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.sender: Sender | None = None
        self.slept = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(microseconds=math.ceil(seconds * 1_000_000))

    async def sleep(self, seconds: float) -> None:
        while self.sender is not None and self.sender.in_flight:  # noqa: ASYNC110 - polls a count
            await asyncio.sleep(0.001)
        self.advance(seconds)
        self.slept += seconds
        await asyncio.sleep(0)


async def render_text(record: DeliveryRecord) -> OutgoingMessage:
    """A renderer naming the row, so tests can tell messages apart."""
    return OutgoingMessage(f"<b>{record.kind}</b> {record.key}")


def rows(
    chat_ids: Iterable[int],
    *,
    due: datetime = T0,
    kind: DeliveryKind = DeliveryKind.REMINDER,
    prefix: str = "r",
) -> list[NewDelivery]:
    return [NewDelivery(kind, f"{prefix}:{n}:{chat}", chat, due) for n, chat in enumerate(chat_ids)]


def sent_keys(tg: TelegramEmulator) -> Counter[str]:
    """How many times each key reached a chat (the renderer puts the key last in the text)."""
    return Counter(message.text.rsplit(" ", 1)[-1] for message in tg.sent if message.text)


async def statuses() -> dict[str, ledger.DeliveryStatus]:
    from storage.models import Delivery

    return {row.key: ledger.DeliveryStatus(row.status) for row in await Delivery.all()}


async def notifications(dispatcher: Any, *, settle: bool = True) -> list[tuple[int, str]]:
    """The pending notification rows in the ledger, rendered as the sender would render them
    (bot.scheduled_messages, in each recipient's language): (chat id, text) in ledger order.
    `settle` marks them sent, so the next call shows only the new ones."""
    from bot.scheduled_messages import make_renderer
    from storage.models import Delivery

    render = make_renderer(dispatcher["settings"], dispatcher["i18n"])
    found = []
    pending = await Delivery.filter(
        kind=DeliveryKind.NOTIFICATION, status=ledger.DeliveryStatus.PENDING
    ).order_by("id")
    for row in pending:
        record = await ledger.get_delivery(row.id)
        assert record is not None
        message = await render(record)
        assert isinstance(message, OutgoingMessage), (record.key, message)
        found.append((record.chat_id, message.text))
        if settle:
            await Delivery.filter(id=row.id).update(status=ledger.DeliveryStatus.SENT)
    return found
