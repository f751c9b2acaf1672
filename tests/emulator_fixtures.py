"""Helpers for end-to-end tests: the Telegram emulator, a real aiogram Bot, real long polling.

Use from a test module::

    from tests.emulator_fixtures import bot_fixture, make_bot, polling, tg_fixture  # noqa: F401
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from telegram_emulator import ApiCall, TelegramEmulator

TOKEN = "123456:TEST"
BOT_USERNAME = "duban_bot"


class FakeClock:
    """A monotonic clock tests move by hand, so flood limits are exact, not timing-dependent."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def make_bot(tg: TelegramEmulator, *, timeout: float = 10.0) -> Bot:
    """A Bot wired exactly as in production, but pointed at the emulator."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url), timeout=timeout)
    return Bot(tg.token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


# Fixtures are registered under short names but defined as *_fixture, so a test module can import
# them without its parameters shadowing the import (ruff F811).
@pytest.fixture(name="tg")
async def tg_fixture() -> AsyncIterator[TelegramEmulator]:
    """A running emulator on an ephemeral port."""
    async with TelegramEmulator(token=TOKEN, bot_username=BOT_USERNAME) as emulator:
        yield emulator


async def close_bot(bot: Bot) -> None:
    """Close the bot's HTTP session without aiogram's fixed 250 ms pause.

    ``AiohttpSession.close`` sleeps so that SSL transports can finish; the emulator speaks plain
    HTTP on 127.0.0.1, so closing the underlying aiohttp session directly is enough and keeps the
    suite fast. Falls back to the public method if aiogram's internals change.
    """
    inner = getattr(bot.session, "_session", None)
    if isinstance(inner, aiohttp.ClientSession):
        if not inner.closed:
            await inner.close()
    else:
        await bot.session.close()


@pytest.fixture(name="bot")
async def bot_fixture(tg: TelegramEmulator) -> AsyncIterator[Bot]:
    """A Bot for direct calls; its HTTP session is closed afterwards."""
    instance = make_bot(tg)
    try:
        yield instance
    finally:
        await close_bot(instance)


@contextlib.asynccontextmanager
async def polling(
    dp: Dispatcher,
    bot: Bot,
    tg: TelegramEmulator,
    *,
    polling_timeout: int = 10,
    **kwargs: Any,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``dp.start_polling`` in the background as production does; stop it cleanly on exit.

    Entering returns once the first long poll is waiting, so updates sent afterwards arrive
    through a real getUpdates; a start-up failure is raised instead of a vague timeout.
    """
    task = asyncio.create_task(
        dp.start_polling(
            bot,
            handle_signals=False,
            polling_timeout=polling_timeout,
            close_bot_session=False,  # closed below, without aiogram's pause
            **kwargs,
        )
    )
    ready = asyncio.create_task(tg.wait_polling())
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        task.result()  # raise what stopped start-up
        raise RuntimeError("polling ended before the first getUpdates")
    ready.result()
    try:
        yield task
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped by the test
            await dp.stop_polling()
        try:
            await task
        finally:
            await close_bot(bot)


def waiting_poll(tg: TelegramEmulator) -> ApiCall:
    """The getUpdates call that is currently waiting (for ordering assertions)."""
    pending = [c for c in tg.calls_to("getUpdates") if c.done_seq is None]
    assert len(pending) == 1, pending
    return pending[0]
