"""Long polling that never confirms an update it has not handled.

Why not aiogram's `Dispatcher.start_polling`: it moves getUpdates' offset past every update of a
batch as soon as the batch arrives (Telegram then forgets them), handles them as background
tasks, and on SIGTERM cancels the polling and closes the storage under the handlers. Updates in
flight at that moment were lost: neither answered nor delivered again after the restart.

Here the offset sent to Telegram (which confirms every update below it) is the lowest update
still being handled, so an update is confirmed only once it was handled. Updates are still
handled concurrently, one task each (the dispatcher's events isolation serialises one person's
updates); the price is that, while an update is in flight, getUpdates returns it again at once,
so the loop skips the ones it already has and waits for a handler to finish (or a second) before
it asks again, instead of spinning.

On stop: no new getUpdates; the updates taken in get `grace` seconds to finish; the rest are
cancelled and stay unconfirmed (Telegram delivers them again after the restart); one last
getUpdates with timeout 0 confirms the handled ones. Handled updates above a cancelled one
cannot be confirmed without confirming it, so their ids are stored (`bot_settings`) and skipped
when Telegram delivers them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import AiogramError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig

from storage.onboarding import get_setting, set_setting

log = logging.getLogger(__name__)

HANDLED_KEY = "polling_handled_ids"  # bot_settings: handled but unconfirmed update ids (JSON)
REFETCH_SECONDS = 1.0  # while only known updates are pending: ask again after a handler or this
BACKOFF = BackoffConfig(min_delay=1.0, max_delay=5.0, factor=1.3, jitter=0.1)


class Poller:
    """One bot's long polling; `run` returns after `stop` is set and the updates are settled."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        bot: Bot,
        *,
        polling_timeout: int = 10,
        grace: float = 10.0,
        allowed_updates: list[str] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.polling_timeout = polling_timeout
        self.grace = grace
        self.allowed_updates = allowed_updates
        self._running: dict[int, asyncio.Task[None]] = {}
        self._handled: set[int] = set()  # handled, not yet confirmed to Telegram
        self._next = 0  # one past the highest update id taken in
        self._confirmed = 0  # Telegram forgot every update below this

    def _offset(self) -> int | None:
        """The lowest update not handled yet; None before the first update."""
        if self._running:
            return min(self._running)
        return self._next or None

    async def run(self, stop: asyncio.Event, **data: Any) -> None:
        """Poll until `stop` is set; `data` reaches the handlers as workflow data."""
        self._handled = await _load_handled()
        if self._handled:
            log.info("%d updates handled before the restart are skipped", len(self._handled))
        backoff = Backoff(config=BACKOFF)
        kwargs = {}
        if self.bot.session.timeout:  # the long poll itself must not look like a timeout
            kwargs["request_timeout"] = int(self.bot.session.timeout + self.polling_timeout)
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                offset = self._offset()
                request = GetUpdates(
                    offset=offset,
                    timeout=self.polling_timeout,
                    allowed_updates=self.allowed_updates,
                )
                fetch = asyncio.create_task(self.bot(request, **kwargs))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    fetch.cancel()  # unconfirmed updates it may carry come again next time
                    with suppress(asyncio.CancelledError, AiogramError):
                        await fetch
                    break
                try:
                    updates = fetch.result()
                except AiogramError as exc:
                    log.error("Failed to fetch updates - %s: %s", type(exc).__name__, exc)
                    await _sleep_or_stop(next(backoff), stopping)
                    continue
                backoff.reset()
                self._confirm_below(offset)
                if not self._take(updates, data) and self._running:
                    # Only updates already in hand: wait for one to finish before asking again.
                    await asyncio.wait(
                        {*self._running.values(), stopping},
                        timeout=REFETCH_SECONDS,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
        finally:
            stopping.cancel()
            await self._settle()

    def _take(self, updates: Iterable[Update], data: dict[str, Any]) -> bool:
        """Start a task for each update not seen yet; True when there was one."""
        new = False
        for update in updates:
            update_id = update.update_id
            self._next = max(self._next, update_id + 1)
            if update_id in self._running or update_id in self._handled:
                continue
            new = True
            task = asyncio.create_task(self._handle(update, data))
            self._running[update_id] = task
            task.add_done_callback(lambda done, uid=update_id: self._finished(uid, done))
        return new

    async def _handle(self, update: Update, data: dict[str, Any]) -> None:
        try:
            response = await self.dispatcher.feed_update(self.bot, update, **data)
            if isinstance(response, TelegramMethod):
                await self.dispatcher.silent_call_request(self.bot, response)
        except Exception:
            # Handled, if badly: confirming it keeps a poison update from coming back forever.
            log.exception("Update %s failed", update.update_id)

    def _finished(self, update_id: int, task: asyncio.Task[None]) -> None:
        self._running.pop(update_id, None)
        if not task.cancelled():
            self._handled.add(update_id)

    def _confirm_below(self, offset: int | None) -> None:
        if offset is not None:
            self._confirmed = max(self._confirmed, offset)
            self._handled = {i for i in self._handled if i >= offset}

    async def _settle(self) -> None:
        """Let the updates in flight finish (bounded), then confirm exactly the handled ones."""
        if self._running:
            log.info("Stopping: %d updates in flight", len(self._running))
            await asyncio.wait(set(self._running.values()), timeout=self.grace)
        cut_off = sorted(self._running)
        for task in list(self._running.values()):
            task.cancel()
        if cut_off:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            log.warning(
                "%d updates still running after %s s were cancelled; Telegram will deliver "
                "them again: %s",
                len(cut_off),
                self.grace,
                cut_off,
            )
        offset = cut_off[0] if cut_off else self._next
        if offset > self._confirmed:
            try:
                await self.bot(GetUpdates(offset=offset, limit=1, timeout=0))
            except AiogramError as exc:
                log.warning(
                    "Could not confirm the handled updates (%s: %s); they are remembered and "
                    "skipped when Telegram delivers them again",
                    type(exc).__name__,
                    exc,
                )
            else:
                self._confirm_below(offset)
        await _store_handled(self._handled)


async def _sleep_or_stop(seconds: float, stopping: asyncio.Task[Any]) -> None:
    await asyncio.wait({stopping}, timeout=seconds)


async def _load_handled() -> set[int]:
    """Update ids the previous run handled but could not confirm (see the module docstring)."""
    raw = await get_setting(HANDLED_KEY)
    if not raw:
        return set()
    try:
        ids = json.loads(raw)
    except ValueError:
        log.warning("Ignoring an unreadable %s setting", HANDLED_KEY)
        return set()
    return {int(i) for i in ids} if isinstance(ids, list) else set()


async def _store_handled(ids: set[int]) -> None:
    if ids or await get_setting(HANDLED_KEY):
        await set_setting(HANDLED_KEY, json.dumps(sorted(ids)))
