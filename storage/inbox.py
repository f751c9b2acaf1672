"""The polling inbox: updates taken from Telegram and not yet handled (bot.polling).

`stash` stores a batch with the offset that confirms it, in one transaction, before the next
getUpdates tells Telegram to forget them; `forget` deletes the handled ones; at start-up
`pending` gives back what a stopped process had taken in but not handled, and `confirmed_offset`
the offset it had reached, so that Telegram's repeat of an unconfirmed batch is not handled twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tortoise.transactions import in_transaction

from storage.models import BotSetting, PendingUpdate

__all__ = ["confirmed_offset", "forget", "pending", "stash"]

OFFSET_KEY = "polling_offset"  # bot_settings: one past the highest update id taken in


async def stash(updates: Sequence[tuple[int, str]], offset: int) -> None:
    """Store (update_id, JSON) pairs and the offset that will confirm them, atomically."""
    async with in_transaction():
        if updates:
            await PendingUpdate.bulk_create(
                [PendingUpdate(update_id=uid, payload=payload) for uid, payload in updates],
                ignore_conflicts=True,
            )
        await BotSetting.update_or_create(key=OFFSET_KEY, defaults={"value": str(offset)})


async def forget(update_ids: Collection[int]) -> None:
    if update_ids:
        await PendingUpdate.filter(update_id__in=list(update_ids)).delete()


async def pending() -> list[tuple[int, str]]:
    """What was taken in and not handled, oldest first."""
    rows = await PendingUpdate.all().order_by("update_id").values_list("update_id", "payload")
    return [(int(uid), payload) for uid, payload in rows]


async def confirmed_offset() -> int | None:
    row = await BotSetting.get_or_none(key=OFFSET_KEY)
    return int(row.value) if row else None
