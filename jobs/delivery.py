"""Jobs that wake the sender: at the ledger's next due time, and every minute as a safety net.

The sender sleeps until the next due row by itself; these jobs make sure it also wakes when the
scheduler knows better (a row enqueued while it slept) and that nothing is ever stuck for long.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jobs.runtime import get_runtime

WAKE_JOB_ID = "delivery-wake"
SAFETY_JOB_ID = "delivery-safety"
SAFETY_INTERVAL_SECONDS = 60


async def wake_sender(runtime_id: str) -> None:
    """Make the sender look at the ledger now."""
    runtime = get_runtime(runtime_id)
    if runtime is not None:
        runtime.sender.wake()


def schedule_wake(scheduler: BaseScheduler, runtime_id: str, at: datetime | None) -> None:
    """(Re)place the one wake-up job at `at`; None removes it (nothing pending)."""
    if at is None:
        with contextlib.suppress(JobLookupError):
            scheduler.remove_job(WAKE_JOB_ID)
        return
    current = scheduler.get_job(WAKE_JOB_ID)
    if current is not None and current.next_run_time == at:
        return  # already set (the sender reports its next due time every time it goes idle)
    scheduler.add_job(
        wake_sender,
        DateTrigger(run_date=at),
        id=WAKE_JOB_ID,
        args=[runtime_id],
        replace_existing=True,
        misfire_grace_time=None,  # a wake-up that is late still runs
        coalesce=True,
    )


def add_safety_job(
    scheduler: BaseScheduler, runtime_id: str, seconds: float = SAFETY_INTERVAL_SECONDS
) -> None:
    scheduler.add_job(
        wake_sender,
        IntervalTrigger(seconds=seconds),
        id=SAFETY_JOB_ID,
        args=[runtime_id],
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
