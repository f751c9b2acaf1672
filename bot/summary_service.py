"""The weekly summary from the database: for `duban summary`, `/summary` and the weekly job.

`build_summary` is what `/summary` and the weekly job share: load (a fixed number of queries,
`load_weekly_summary`), compute, render as Telegram messages (`bot.summary_render`), and the
chart (`bot.chart`, drawn in a thread when asked for). The callers only send what it built.
The database must be open (`storage.db.init_db`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.chart import render_chart
from bot.settings import Settings
from bot.summary import WEEK, DeliveryIssueLike, WeeklySummary, compute_summary
from bot.summary_render import (
    TelegramSummary,
    i18n_locale,
    render_for_telegram,
    render_summary_text,
)
from storage.deliveries import delivery_issues_since, possible_duplicates_since
from storage.summary import load_summary_data

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BuiltSummary:
    """A weekly summary and what goes out for it: messages (or a document), then the chart."""

    summary: WeeklySummary
    rendered: TelegramSummary
    locale: str

    async def chart(self) -> bytes | None:
        """The chart as PNG, drawn in a worker thread; None without the CJK font."""
        return await asyncio.to_thread(render_chart, self.summary, self.locale)


async def build_summary(
    now: datetime,
    *,
    tz: tzinfo,
    locale: str,
    i18n: I18n | None = None,
    count_duplicates: bool = False,
) -> BuiltSummary | None:
    """The summary as of `now` in `locale`, with the week's failed sends (and, when asked, the
    messages that may have arrived twice); None before any plan was imported."""
    issues = await delivery_issues_since(now - WEEK)
    duplicates = await possible_duplicates_since(now - WEEK) if count_duplicates else 0
    summary = await load_weekly_summary(
        now, tz=tz, delivery_issues=issues, possible_duplicates=duplicates
    )
    if summary is None:
        return None
    return BuiltSummary(summary, render_for_telegram(summary, locale, i18n), locale)


async def load_weekly_summary(
    now: datetime,
    *,
    tz: tzinfo,
    since: datetime | None = None,
    silent_since: datetime | None = None,
    delivery_issues: Sequence[DeliveryIssueLike] = (),
    possible_duplicates: int = 0,
    plan_id: int | None = None,
) -> WeeklySummary | None:
    """The summary of the latest plan (or `plan_id`) as of `now`; None before any import.

    `since`: start of the week under review, by default 7 days before `now`. `silent_since`:
    see `compute_summary` (by default two cycles of the plan's reporting rule).
    """
    data = await load_summary_data(now, since or now - WEEK, plan_id=plan_id)
    if data is None:
        return None
    return compute_summary(
        data,
        silent_since=silent_since,
        delivery_issues=delivery_issues,
        possible_duplicates=possible_duplicates,
        tz=tz,
    )


def summary_moment(day: date | None, tz: tzinfo) -> datetime:
    """`duban summary --date D` looks at the end of day D (local); no date: now."""
    if day is None:
        return datetime.now(UTC).astimezone(tz)
    return datetime.combine(day, time(23, 59, 59), tz)


async def summary_for_cli(
    settings: Settings,
    date: date | None,
    chart_path: Path | str | None,
    *,
    delivery_issues: Sequence[DeliveryIssueLike] = (),
    possible_duplicates: int = 0,
) -> str:
    """The summary as plain text in the default locale; writes the chart PNG when asked.

    The database must already be open (the CLI wraps this in its `_run_with_db`).
    """
    tz = settings.tz
    locale = settings.default_locale
    summary = await load_weekly_summary(
        summary_moment(date, tz),
        tz=tz,
        delivery_issues=delivery_issues,
        possible_duplicates=possible_duplicates,
    )
    if summary is None:
        with i18n_locale(locale):
            return _("No plan has been imported yet (duban plan import FILE).") + "\n"
    text = render_summary_text(summary, locale)
    if chart_path is not None:
        png = await asyncio.to_thread(render_chart, summary, locale)
        if png is None:
            log.warning("No chart written to %s: the CJK font is missing", chart_path)
        else:
            await asyncio.to_thread(Path(chart_path).write_bytes, png)
    return text
