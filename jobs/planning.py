"""The planning job: materialise upcoming sends into the delivery ledger.

Runs at start-up and every day at 00:05 local time. It asks the planner for every send between
`now - staleness` (so sends that fell due while the bot was down are caught up, or expire) and
`now + horizon`, and enqueues them; idempotency keys make repeated runs add nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.delivery import PlannedSendLike, enqueue_planned
from bot.schedule import ScheduleConfig, plan_sends
from bot.settings import Settings
from jobs.runtime import Planner, call_planner, get_runtime
from storage.schedule import load_schedule_inputs, load_work_calendar

log = logging.getLogger(__name__)

PLANNING_JOB_ID = "planning-daily"
DEFAULT_HORIZON = timedelta(days=2)
PLANNING_HOUR, PLANNING_MINUTE = 0, 5
REPORTS_LOOKBACK = timedelta(days=400)  # reports older than this answer no cycle in the window


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
    if added:
        runtime.sender.wake()
    return added


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
