"""The webhook endpoint: an update is answered 200 only once it was handled.

Why not aiogram's `SimpleRequestHandler`: by default it answers 200 before handling (in the
background), so updates in flight at SIGTERM were confirmed to Telegram and then lost; and a
malformed body became a 500 with a traceback. Here the request waits for its handler; Telegram
gets a non-2xx answer, and so retries the update later, when the bot is shutting down or the
handler was cut off by the shutdown's grace period. Malformed bodies get 400 and one warning.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookHandler:
    """POST handler for one bot; `drain` on shutdown before the web server is cleaned up."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, secret: str, **data: Any) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.secret = secret
        self.data = data
        self._closing = False
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.headers.get(SECRET_HEADER, ""), self.secret):
            return web.Response(text="Unauthorized", status=401)
        if self._closing:
            return _retry_later()
        try:
            update = Update.model_validate(await request.json(), context={"bot": self.bot})
        except (ValueError, ValidationError) as exc:  # not JSON, or JSON that is not an Update
            log.warning("Webhook: refused a malformed update (%s)", _first_line(exc))
            return web.Response(text="Bad Request: malformed update", status=400)
        task = asyncio.create_task(self._handle(update))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            await asyncio.shield(task)  # a client that hangs up does not cancel the handler
        except asyncio.CancelledError:
            if task.cancelled():  # cut off by `drain`: Telegram must deliver it again
                return _retry_later()
            raise
        return web.json_response({})

    async def _handle(self, update: Update) -> None:
        try:
            response = await self.dispatcher.feed_update(self.bot, update, **self.data)
            if isinstance(response, TelegramMethod):
                await self.dispatcher.silent_call_request(self.bot, response)
        except Exception:
            # Handled, if badly: a 200 keeps Telegram from retrying a poison update forever.
            log.exception("Update %s failed", update.update_id)

    async def drain(self, grace: float) -> None:
        """Refuse new updates (503: Telegram retries them), let those in flight finish within
        `grace` seconds, and cancel the rest (their requests answer 503)."""
        self._closing = True
        if not self._running:
            return
        log.info("Stopping: %d updates in flight", len(self._running))
        _, late = await asyncio.wait(set(self._running), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
            log.warning(
                "%d updates still running after %s s were cancelled; Telegram will retry them",
                len(late),
                grace,
            )
        await asyncio.sleep(0)  # let the cancelled requests write their 503


def _retry_later() -> web.Response:
    return web.Response(text="Shutting down, retry later", status=503)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
