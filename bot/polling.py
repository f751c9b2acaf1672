"""Long polling that loses no update: what is taken from Telegram is stored before it is confirmed.

Why not aiogram's `Dispatcher.start_polling`: it moves getUpdates' offset past every update of a
batch as soon as the batch arrives (Telegram then forgets them), handles them as background
tasks, and on SIGTERM cancels the polling and closes the storage under the handlers. Updates in
flight at that moment were lost: neither answered nor delivered again after the restart.

Why not keep the offset at the lowest unhandled update (what this module did first): while any
update is in flight Telegram answers getUpdates at once with every unconfirmed update again, so
on a due-day burst each update was downloaded and parsed tens of times, and no update beyond the
first hundred unconfirmed ones could be seen until the oldest was done (bench/burst.py measured
each update returned 41 times and a p95 of 7 s at 20 reports a second).

So this is an inbox: a batch is written to the database (storage.inbox: the updates and the
offset that confirms them, in one transaction) before the next getUpdates confirms it to
Telegram; each update is deleted from the inbox once handled. Polling stays a plain long poll
and updates are handled concurrently, one task each (the dispatcher's events isolation
serialises one person's updates).

On stop: no new getUpdates; the updates in flight get `grace` seconds to finish, the rest are
cancelled and stay in the inbox; one last getUpdates with timeout 0 confirms the batch taken
last. At the next start the inbox is handled first, and an update below the stored offset that
Telegram sends again (its confirmation was lost with a kill -9) is skipped.
What can still happen twice: an update handled just before a kill -9, before its inbox row was
deleted (reports are protected by their message id; a reply may repeat).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import AiogramError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig
from tortoise.exceptions import BaseORMException

from storage import inbox

log = logging.getLogger(__name__)

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
        self._handled: set[int] = set()  # handled, still in the inbox
        self._handled_event = asyncio.Event()
        self._next = 0  # one past the highest update id taken in (and stored)
        self._confirmed = 0  # Telegram forgot every update below this

    async def run(self, stop: asyncio.Event, **data: Any) -> None:
        """Poll until `stop` is set; `data` reaches the handlers as workflow data."""
        self._next = self._confirmed = await inbox.confirmed_offset() or 0
        sweeper = asyncio.create_task(self._sweep())
        await self._replay(data)
        stopping = asyncio.create_task(stop.wait())
        try:
            await self._poll(stopping, data)
        finally:
            stopping.cancel()
            await self._settle()
            sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await sweeper
            await inbox.forget(self._take_handled())

    async def _replay(self, data: dict[str, Any]) -> None:
        """Handle what a stopped process took in but did not handle."""
        left = await inbox.pending()
        if left:
            log.info("%d updates taken in before the restart are handled now", len(left))
        for _update_id, payload in left:
            self._start(Update.model_validate_json(payload, context={"bot": self.bot}), data)

    async def _poll(self, stopping: asyncio.Task[Any], data: dict[str, Any]) -> None:
        backoff = Backoff(config=BACKOFF)
        kwargs = {}
        if self.bot.session.timeout:  # the long poll itself must not look like a timeout
            kwargs["request_timeout"] = int(self.bot.session.timeout + self.polling_timeout)
        while not stopping.done():
            offset = self._next or None
            request = GetUpdates(
                offset=offset, timeout=self.polling_timeout, allowed_updates=self.allowed_updates
            )
            fetch = asyncio.create_task(self.bot(request, **kwargs))
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                fetch.cancel()  # what it may carry is not confirmed: it comes again next time
                with suppress(asyncio.CancelledError, AiogramError):
                    await fetch
                return
            try:
                updates = fetch.result()
                self._confirmed = max(self._confirmed, offset or 0)
                await self._take(updates, data)
            except (AiogramError, BaseORMException, OSError) as exc:
                # Nothing new confirmed: the same updates come again after the pause.
                log.error("Failed to fetch updates - %s: %s", type(exc).__name__, exc)
                await asyncio.wait({stopping}, timeout=next(backoff))
                continue
            backoff.reset()

    async def _take(self, updates: list[Update], data: dict[str, Any]) -> None:
        """Store the new updates (before the next getUpdates confirms them), then handle them.

        An update below the offset was taken in already: by this process, or by one that
        stopped before it could confirm it (it is in the inbox, or it was handled)."""
        fresh = [update for update in updates if update.update_id >= self._next]
        if not fresh:
            return
        following = max(update.update_id for update in fresh) + 1
        await inbox.stash(
            [(update.update_id, _as_json(update)) for update in fresh], offset=following
        )
        self._next = following
        for update in fresh:
            self._start(update, data)

    def _start(self, update: Update, data: dict[str, Any]) -> None:
        update_id = update.update_id
        if update_id in self._running:
            return
        task = asyncio.create_task(self._handle(update, data))
        self._running[update_id] = task
        task.add_done_callback(lambda done, uid=update_id: self._finished(uid, done))

    async def _handle(self, update: Update, data: dict[str, Any]) -> None:
        try:
            response = await self.dispatcher.feed_update(self.bot, update, **data)
            if isinstance(response, TelegramMethod):
                await self.dispatcher.silent_call_request(self.bot, response)
        except Exception:
            # Handled, if badly: forgetting it keeps a poison update from coming back forever.
            log.exception("Update %s failed", update.update_id)

    def _finished(self, update_id: int, task: asyncio.Task[None]) -> None:
        self._running.pop(update_id, None)
        if not task.cancelled():  # a cancelled one stays in the inbox for the next start
            self._handled.add(update_id)
            self._handled_event.set()

    def _take_handled(self) -> set[int]:
        handled, self._handled = self._handled, set()
        return handled

    async def _sweep(self) -> None:
        """Delete handled updates from the inbox soon after they are done, a batch at a time."""
        while True:
            await self._handled_event.wait()
            self._handled_event.clear()
            handled = self._take_handled()
            try:
                await inbox.forget(handled)
            except (BaseORMException, OSError) as exc:
                self._handled |= handled  # tried again with the next batch
                log.warning("Could not clear handled updates from the inbox: %s", exc)
                await asyncio.sleep(1)

    async def _settle(self) -> None:
        """Let the updates in flight finish (bounded), then confirm the last batch taken in."""
        if self._running:
            log.info("Stopping: %d updates in flight", len(self._running))
            await asyncio.wait(set(self._running.values()), timeout=self.grace)
        cut_off = sorted(self._running)
        for task in list(self._running.values()):
            task.cancel()
        if cut_off:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            log.warning(
                "%d updates still running after %s s were cancelled; they are kept and "
                "handled after the restart: %s",
                len(cut_off),
                self.grace,
                cut_off,
            )
        if self._next > self._confirmed:
            try:
                await self.bot(GetUpdates(offset=self._next, limit=1, timeout=0))
            except AiogramError as exc:
                log.warning(
                    "Could not confirm the last updates taken in (%s: %s); they are skipped "
                    "when Telegram sends them again",
                    type(exc).__name__,
                    exc,
                )


def _as_json(update: Update) -> str:
    """The update as the Bot API sends it (field aliases such as "from"), for the inbox."""
    return update.model_dump_json(by_alias=True, exclude_none=True)
