"""What scheduler jobs reach through an id: the running bot's sender, planner and settings.

APScheduler job functions live at module level and take ids only (their arguments must survive a
persistent job store). A job therefore gets a runtime id and looks the running pieces up here.
There is one runtime per started dispatcher; it is registered at start-up and removed at
shutdown, so two bots in one process (tests, the demo) never share one.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiogram import Bot
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.delivery import Clock, PlannedSendLike, Sender
from bot.settings import Settings

# The planner materialises the sends planned between two instants (aware UTC). It may be a plain
# or an async function; bot.schedule.plan_sends is adapted to this shape.
Planner = Callable[
    [datetime, datetime],
    Iterable[PlannedSendLike] | Awaitable[Iterable[PlannedSendLike]],
]
ChatLookup = Callable[[], Awaitable[int | None]]


@dataclass
class Runtime:
    id: str
    bot: Bot
    settings: Settings
    sender: Sender
    scheduler: AsyncIOScheduler
    clock: Clock
    planner: Planner | None
    coordination_chat: ChatLookup
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sender_task: asyncio.Task[None] | None = None
    # Job runs under way (planning): shutdown lets them finish instead of cancelling them.
    busy: set[asyncio.Task[object]] = field(default_factory=set)


_RUNTIMES: dict[str, Runtime] = {}


def register(runtime: Runtime) -> None:
    _RUNTIMES[runtime.id] = runtime


def unregister(runtime_id: str) -> None:
    _RUNTIMES.pop(runtime_id, None)


def get_runtime(runtime_id: str) -> Runtime | None:
    """The running pieces behind an id; None once that bot has shut down."""
    return _RUNTIMES.get(runtime_id)


async def call_planner(planner: Planner, start: datetime, end: datetime) -> list[PlannedSendLike]:
    result = planner(start, end)
    if inspect.isawaitable(result):
        result = await result
    return list(result)
