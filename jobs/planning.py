"""The planning job: materialise upcoming sends into the delivery ledger.

Runs at start-up and every day at 00:05 local time. It asks the planner for every send between
`now - staleness` (so sends that fell due while the bot was down are caught up, or expire) and
`now + horizon`, and enqueues them; idempotency keys make repeated runs add nothing. It also
tells the coordination group, once per year (key `calendar-uncovered:<year>`), when the working
calendar does not cover this year or the coming one (`notify_uncovered_calendar`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.delivery import PlannedSendLike, enqueue_planned
from bot.schedule import ScheduleConfig, plan_sends
from bot.settings import Settings
from jobs.runtime import Planner, Runtime, call_planner, get_runtime
from storage import deliveries as ledger
from storage.deliveries import DeliveryKind, NewDelivery
from storage.outbox import latest_horizon
from storage.schedule import load_schedule_inputs, load_work_calendar

log = logging.getLogger(__name__)

PLANNING_JOB_ID = "planning-daily"
PLANNING_HOUR, PLANNING_MINUTE = 0, 5
REPORTS_LOOKBACK = timedelta(days=400)  # reports older than this answer no cycle in the window
CALENDAR_NOTICE_PREFIX = "calendar-uncovered"
CALENDAR_NOTICE_LEAD = timedelta(days=61)  # next year's calendar matters from about 1 November


def schedule_planner(settings: Settings) -> Planner:
    """The production planner: bot.schedule.plan_sends over the database's plans and calendar."""
    config = ScheduleConfig.from_settings(settings)

    async def planner(start: datetime, end: datetime) -> list[PlannedSendLike]:
        inputs = await load_schedule_inputs(reports_since=start - REPORTS_LOOKBACK)
        calendar = await load_work_calendar()
        return list(plan_sends(inputs, start, end, config, calendar))

    return planner


async def plan_deliveries(runtime_id: str) -> int:
    """Enqueue the planner's sends for the coming days; return how many rows are new."""
    runtime = get_runtime(runtime_id)
    if runtime is None or runtime.planner is None:
        return 0
    task = asyncio.current_task()
    if task is not None:
        runtime.busy.add(task)
    try:
        return await _plan(runtime)
    finally:
        if task is not None:
            runtime.busy.discard(task)


async def _plan(runtime: Runtime) -> int:
    now = runtime.clock()
    horizon = timedelta(days=getattr(runtime.settings, "planning_horizon_days", None) or 2)
    start = now - runtime.sender.limits.staleness
    planned = await call_planner(runtime.planner, start, now + horizon)
    added = await enqueue_planned(
        planned,
        coordination_chat_id=await runtime.coordination_chat(),
        default_locale=runtime.settings.default_locale,
    )
    log.info("Planned %d sends, %d new in the ledger", len(planned), added)
    added += await notify_uncovered_calendar(runtime, now)
    if added:
        runtime.sender.wake()
    return added


def coming_years(today: date, horizon: date | None) -> list[int]:
    """The years whose working calendar matters now: this year, and the next one from
    CALENDAR_NOTICE_LEAD before it starts (the State Council announces it in November), as far
    as the plans run."""
    if horizon is None:
        return []
    years = [today.year]
    if date(today.year + 1, 1, 1) - today <= CALENDAR_NOTICE_LEAD:
        years.append(today.year + 1)
    return [year for year in years if year <= horizon.year]


def calendar_notice_key(year: int) -> str:
    return f"{CALENDAR_NOTICE_PREFIX}:{year}"


async def notify_uncovered_calendar(runtime: Runtime, now: datetime) -> int:
    """One notice to the coordination group per year the working calendar does not cover
    (key `calendar-uncovered:<year>`: said once, across restarts); how many rows are new."""
    today = now.astimezone(runtime.settings.tz).date()
    years = coming_years(today, await latest_horizon())
    if not years:
        return 0
    calendar = await load_work_calendar()
    uncovered = calendar.uncovered_years(years)
    chat_id = await runtime.coordination_chat()
    if not uncovered or chat_id is None:
        return 0
    log.warning(
        "The working calendar does not cover %s: Monday to Friday assumed",
        ", ".join(map(str, uncovered)),
    )
    return await ledger.enqueue(
        [
            NewDelivery(
                kind=DeliveryKind.NOTICE,
                key=calendar_notice_key(uncovered[0]),
                chat_id=chat_id,
                due_at=now,
                payload={
                    "reason": "calendar",
                    "years": uncovered,
                    "locale": runtime.settings.default_locale,
                },
            )
        ]
    )


def add_planning_job(
    scheduler: BaseScheduler,
    runtime_id: str,
    tz: ZoneInfo,
    *,
    run_now_at: datetime | None = None,
) -> None:
    """Every day at 00:05 in `tz`, and once at `run_now_at` (start-up)."""
    scheduler.add_job(
        plan_deliveries,
        CronTrigger(hour=PLANNING_HOUR, minute=PLANNING_MINUTE, timezone=tz),
        id=PLANNING_JOB_ID,
        args=[runtime_id],
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
        **({"next_run_time": run_now_at} if run_now_at is not None else {}),
    )
