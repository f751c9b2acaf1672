"""The summary chart (bot.chart): Chinese glyphs present, a valid PNG, text alone without a font."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from bot import chart
from bot.plan_model import ParsedPlan
from bot.plan_parser import parse_plan
from bot.summary import WEEK, WeeklySummary, compute_summary
from storage.enums import ReportStatus
from storage.summary import (
    AssignmentRow,
    PlanRow,
    ReportRow,
    SummaryData,
    TargetRow,
    ValueRow,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
STATUSES = [ReportStatus.ON_TRACK, ReportStatus.AT_RISK, ReportStatus.BLOCKED, ReportStatus.DONE]


def real_plan_summary(plan: ParsedPlan | None = None) -> WeeklySummary:
    """The example plan as storage would return it, with reports of every status and values."""
    plan = plan or parse_plan(EXAMPLE.read_bytes())
    departments: dict[str, int] = {}
    assignments = []
    targets = []
    ids = itertools.count(1)
    for task_id, item in enumerate(plan.tasks, start=1):
        assignments.extend(
            AssignmentRow(
                task_id=task_id,
                code=item.code,
                title=item.title,
                deadline=item.deadline,
                cycle=item.cycle,
                department_id=departments.setdefault(unit.name, len(departments) + 1),
                department_name=unit.name,
                department_kind=unit.kind,
                role=unit.role,
            )
            for unit in item.units
        )
        targets.extend(
            TargetRow(next(ids), task_id, t.metric, t.value, t.unit, t.comparator, t.deadline, None)
            for t in item.targets
        )
    goals = [
        TargetRow(next(ids), None, g.metric, g.value, g.unit, g.comparator, g.deadline, g.baseline)
        for g in plan.goals
    ]
    reports = [
        ReportRow(
            id=index,
            task_id=row.task_id,
            department_id=row.department_id,
            liaison_id=row.department_id,
            liaison_name="联络员",
            status=STATUSES[index % 4],
            created_at=NOW - timedelta(days=index % 10),
        )
        for index, row in enumerate(assignments)
        if index % 5  # every fifth unit has not reported
    ]
    values = [
        ValueRow(t.id, t.value * Decimal(share) / 100, 0, 1)
        for t, share in zip(goals[:2] + targets, itertools.cycle([35, 60, 80, 110]), strict=False)
    ]
    data = SummaryData(
        plan=PlanRow(
            1,
            plan.title,
            plan.doc_number,
            plan.issued_on,
            plan.horizon,
            None,
            datetime(2025, 1, 1, tzinfo=UTC),
        ),
        now=NOW,
        since=NOW - WEEK,
        assignments=tuple(assignments),
        targets=tuple(goals + targets),
        liaisons=(),
        latest=tuple(reports),
        latest_before=(),
        week_reports=tuple(r for r in reports if r.created_at >= NOW - WEEK),
        values=tuple(values),
        values_before=(),
    )
    return compute_summary(data)


def is_png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.verify()
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_the_real_plan_renders_without_a_missing_glyph(
    locale: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    summary = real_plan_summary()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        png = chart.render_chart(summary, locale)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], messages
    assert not [m for m in messages if "Glyph" in m or "missing from" in m], messages
    assert not [m for m in messages if "findfont" in m], messages  # the CJK font was found
    assert png is not None
    image = is_png(png)
    assert image.width == 1200 and 1500 < image.height < 4000
    (tmp_path / f"chart-{locale}.png").write_bytes(png)


async def test_rendered_in_a_thread() -> None:
    png = await asyncio.to_thread(chart.render_chart, real_plan_summary(), "zh")
    assert png is not None and is_png(png)


def test_many_departments_and_targets_are_capped() -> None:
    plan = parse_plan(EXAMPLE.read_bytes())
    # The plan's tasks three times over under other unit names: 100+ departments.
    tasks = [
        replace(
            item,
            code=f"{round_}.{item.code}",
            units=tuple(replace(u, name=f"{u.name}{round_}") for u in item.units),
        )
        for round_ in range(1, 4)
        for item in plan.tasks
    ]
    summary = real_plan_summary(replace(plan, tasks=tuple(tasks)))
    assert len(summary.departments) > chart.MAX_DEPARTMENTS
    png = chart.render_chart(summary, "zh")
    image = is_png(png)
    assert image.height < 6000
    assert image.width == 1200


def test_an_empty_summary_still_draws() -> None:
    plan = parse_plan(EXAMPLE.read_bytes())
    assert is_png(chart.render_chart(real_plan_summary(replace(plan, tasks=(), goals=())), "en"))


def test_without_the_font_there_is_no_chart_and_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(chart, "_font_ready", None)
    monkeypatch.setattr(chart, "font_path", lambda: None)
    with caplog.at_level(logging.WARNING, logger="bot.chart"):
        assert chart.render_chart(real_plan_summary(), "zh") is None
    assert "manimgx_fonts_cjk" in caplog.text


def test_the_font_comes_with_the_install() -> None:
    path = chart.font_path()
    assert path is not None and path.stat().st_size > 10_000_000
    assert chart.ensure_cjk_font()
    import matplotlib

    assert matplotlib.rcParams["font.sans-serif"][0] == chart.FONT_FAMILY
