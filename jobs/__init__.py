"""Scheduler wiring: an APScheduler 3 `AsyncIOScheduler` and the delivery sender, started and
stopped with the dispatcher.

`setup_scheduling(dispatcher, bot, settings)` registers the start-up and shutdown hooks. At start:

1. rows a crash left in `sending` go back to pending (`reset_in_flight`): under the run lease
   (`dp["run_lease"]`, set by `duban run`) every other owner's, since no other sender can be
   alive; without it only expired claims, so a live sender's rows are never touched;
2. pending rows older than the staleness window are marked expired (listed in the next summary);
3. the sender's loop starts and sends at once whatever fell due while the bot was down;
4. the scheduler starts with the planning job (now, then daily at 00:05 local), a wake-up job at
   the ledger's next due time and a one-minute safety job.

The scheduler and the sender reach handlers as workflow data: `dp["scheduler"]`, `dp["sender"]`.
The planner is bot.schedule.plan_sends over the database (`jobs.planning.schedule_planner`) unless
`planner=` or `dp["delivery_planner"]` says otherwise. A renderer (`render=` or
`dp["delivery_render"]`) turns a ledger row into messages; without one the sender does not start
and rows wait in the ledger (nothing is lost; past the staleness window they expire). A clock and
a sleep for the sender (virtual time in end-to-end tests) come from `clock=`/`sleep=` or
`dp["delivery_clock"]`/`dp["delivery_sleep"]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable

from aiogram import Bot, Dispatcher
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.delivery import Clock, Render, Sender, SenderLimits, Sleep
from bot.settings import Settings
from jobs.delivery import add_safety_job, schedule_wake
from jobs.planning import add_planning_job, schedule_planner
from jobs.runtime import Planner, Runtime, register, unregister
from storage import deliveries as ledger
from storage.onboarding import COORDINATION_CHAT_KEY, get_setting, granted_coordinator_ids

log = logging.getLogger(__name__)

__all__ = ["setup_scheduling"]

_SHUTDOWN_GRACE_SECONDS = 45.0  # open requests finish (request_timeout is 30 s)


def setup_scheduling(
    dispatcher: Dispatcher,
    bot: Bot,
    settings: Settings,
    *,
    render: Render | None = None,
    planner: Planner | None = None,
    limits: SenderLimits | None = None,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
    plan: bool = True,
) -> None:
    """Start the scheduler and the sender with the dispatcher, stop them with it.

    `plan=False` (SCHEDULING=false): no planning job, so no scheduled sends; the sender still
    sends what handlers put in the ledger (bot.notices) and the unreachable notices."""
    state: dict[str, Runtime] = {}

    async def start_scheduling() -> None:
        runtime = await _start(
            dispatcher,
            bot,
            settings,
            render=render or dispatcher.workflow_data.get("delivery_render"),
            planner=(
                planner
                or dispatcher.workflow_data.get("delivery_planner")
                or schedule_planner(settings)
            )
            if plan
            else None,
            limits=limits or SenderLimits.from_settings(settings),
            clock=clock or dispatcher.workflow_data.get("delivery_clock"),
            sleep=sleep or dispatcher.workflow_data.get("delivery_sleep"),
        )
        state["runtime"] = runtime

    async def stop_scheduling() -> None:
        runtime = state.pop("runtime", None)
        if runtime is not None:
            await _stop(runtime)

    dispatcher.startup.register(start_scheduling)
    dispatcher.shutdown.register(stop_scheduling)


async def _start(
    dispatcher: Dispatcher,
    bot: Bot,
    settings: Settings,
    *,
    render: Render | None,
    planner: Planner | None,
    limits: SenderLimits,
    clock: Clock | None,
    sleep: Sleep | None,
) -> Runtime:
    runtime_id = uuid.uuid4().hex
    scheduler = AsyncIOScheduler(timezone=settings.tz)

    async def coordinator_chats() -> Iterable[int]:
        return dict.fromkeys([*settings.admin_ids, *await granted_coordinator_ids()])

    async def coordination_chat() -> int | None:
        stored = await get_setting(COORDINATION_CHAT_KEY)
        if stored is not None:
            with contextlib.suppress(ValueError):
                return int(stored)
        return settings.coordinator_chat_id

    lease = dispatcher.workflow_data.get("run_lease")
    sender = Sender(
        bot,
        render or _unrendered,
        limits=limits,
        coordinator_chats=coordinator_chats,
        clock=clock,
        sleep=sleep,
        on_idle=lambda at: schedule_wake(scheduler, runtime_id, at),
        owner=lease.owner if lease is not None else runtime_id,
    )
    runtime = Runtime(
        id=runtime_id,
        bot=bot,
        settings=settings,
        sender=sender,
        scheduler=scheduler,
        clock=sender.clock,
        planner=planner,
        coordination_chat=coordination_chat,
    )
    register(runtime)
    dispatcher["scheduler"] = scheduler
    dispatcher["sender"] = sender

    now = sender.clock()
    reset = await ledger.reset_in_flight(
        at=now, lease_owner=sender.owner if lease is not None else None
    )
    expired = await ledger.mark_expired_older_than(now - limits.staleness, at=now)
    if reset or expired:
        log.info("Ledger at start: %d sends back from in flight, %d expired", reset, len(expired))

    if planner is not None:
        add_planning_job(scheduler, runtime_id, settings.tz, run_now_at=now)
    add_safety_job(scheduler, runtime_id)
    scheduler.start()
    if render is None:
        log.warning(
            "No delivery renderer configured: scheduled sends stay in the ledger unsent "
            "(set dp['delivery_render'] or pass render= to setup_scheduling)"
        )
    else:
        runtime.sender_task = asyncio.create_task(sender.run(runtime.stop), name="sender")
    return runtime


async def _stop(runtime: Runtime) -> None:
    if runtime.scheduler.running:
        runtime.scheduler.pause()  # no new job runs; those under way finish (no cancelled query)
    if runtime.busy:
        await asyncio.wait(set(runtime.busy), timeout=_SHUTDOWN_GRACE_SECONDS)
    runtime.stop.set()
    task = runtime.sender_task
    if task is not None:
        try:
            async with asyncio.timeout(_SHUTDOWN_GRACE_SECONDS):
                await task
        except TimeoutError:
            log.warning("The sender did not stop in time; open sends will be retried at start")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if runtime.scheduler.running:
        runtime.scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a loop callback: let it run
    unregister(runtime.id)


async def _unrendered(record: ledger.DeliveryRecord) -> None:  # pragma: no cover - never called
    raise RuntimeError("no renderer")
