"""`duban preview`: every send planned in the next days, as text, without sending anything.

One line per send, grouped by local day: time, kind, recipient, task. Labels are bilingual
(中文 English): the output is for a coordinator at a terminal, whatever the bot's locale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

from bot.schedule import (
    Audience,
    PlannedSend,
    ScheduleConfig,
    ScheduleInputs,
    SendKind,
    plan_sends,
)
from bot.settings import Settings
from storage.schedule import load_schedule_inputs, load_work_calendar

REPORTS_LOOKBACK = timedelta(days=400)  # reports older than this answer no cycle in the window

KIND_LABELS = {
    SendKind.PROMPT: "进度提示 prompt",
    SendKind.REMINDER: "临期提醒 reminder",
    SendKind.NUDGE: "催报 nudge",
    SendKind.ESCALATION: "通报 escalation",
    SendKind.SUMMARY: "周报 summary",
}
GROUP_LABEL = "协调群 coordination group"
_WEEKDAYS = ("周一 Mon", "周二 Tue", "周三 Wed", "周四 Thu", "周五 Fri", "周六 Sat", "周日 Sun")


def render_preview(
    planned: Sequence[PlannedSend],
    tz: ZoneInfo,
    inputs: ScheduleInputs | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    uncovered_years: Iterable[int] = (),
) -> str:
    """The plan as text. Without `inputs`, departments and tasks show as ids."""
    names = _Names(inputs or ScheduleInputs())
    lines = [_header(len(planned), tz, start, end)]
    lines += [
        f"注意 Note: {year} 年节假日安排未录入，按周一至周五计算 — {year} is not in the "
        "holiday calendar: Monday to Friday assumed."
        for year in uncovered_years
    ]
    for day, sends in groupby(planned, key=lambda send: send.send_at.astimezone(tz).date()):
        lines += ["", f"{day.isoformat()} {_WEEKDAYS[day.weekday()]}"]
        lines += [_line(send, tz, names) for send in sends]
    if not planned:
        lines += ["", "(无 none)"]
    lines += ["", "未发送任何消息 Nothing was sent."]
    return "\n".join(lines) + "\n"


def _header(count: int, tz: ZoneInfo, start: datetime | None, end: datetime | None) -> str:
    span = ""
    if start is not None and end is not None:
        span = f" {start.astimezone(tz):%Y-%m-%d %H:%M} – {end.astimezone(tz):%Y-%m-%d %H:%M}"
    return f"计划发送 Planned sends{span} ({tz.key}): {count}"


class _Names:
    def __init__(self, inputs: ScheduleInputs) -> None:
        self.inputs = inputs
        self.tasks = {task.id: task for task in inputs.tasks}

    def department(self, department_id: int | None) -> str:
        return self.inputs.departments.get(department_id or 0, f"dept {department_id}")

    def recipient(self, send: PlannedSend) -> str:
        if send.audience is Audience.GROUP:
            return GROUP_LABEL
        count = len(self.inputs.liaisons.get(send.department_id or 0, ()))
        people = f"联络员 liaisons: {count}" if count else "无联络员 no liaison"
        return f"{self.department(send.department_id)} ({people})"

    def task(self, task_id: int | None) -> str:
        task = self.tasks.get(task_id or 0)
        return f"{task.code} {task.title}" if task else f"task {task_id}"

    def codes(self, task_ids: Iterable[int]) -> str:
        return ", ".join(
            self.tasks[task_id].code if task_id in self.tasks else str(task_id)
            for task_id in task_ids
        )


def _line(send: PlannedSend, tz: ZoneInfo, names: _Names) -> str:
    parts = [names.recipient(send), *_details(send, names)]
    return f"  {send.send_at.astimezone(tz):%H:%M}  {KIND_LABELS[send.kind]}  " + " · ".join(parts)


def _details(send: PlannedSend, names: _Names) -> list[str]:
    match send.kind:
        case SendKind.PROMPT:
            return [names.task(send.task_id), f"{send.cycle_key} 截止 due {send.deadline}"]
        case SendKind.NUDGE:
            return [
                names.task(send.task_id),
                f"{send.cycle_key} 第 {send.attempt} 次 #{send.attempt}",
            ]
        case SendKind.ESCALATION:
            missing = names.codes(send.task_ids)
            return [
                f"未报送 not reported: {names.department(send.department_id)} ({missing})",
                str(send.cycle_key),
            ]
        case SendKind.REMINDER:
            subject = names.task(send.task_id) if send.task_id else "方案目标 plan goals"
            return [subject, _when(send)]
        case _:
            return [str(send.cycle_key)]


def _when(send: PlannedSend) -> str:
    if send.days_before is None or send.days_before > 0:
        return (
            f"截止 due {send.deadline} (提前 {send.days_before} 天 {send.days_before} days before)"
        )
    if send.days_before == 0:
        return f"今日截止 due today {send.deadline}"
    return f"已逾期 overdue since {send.deadline}"


async def preview(settings: Settings, days: int, now: datetime | None = None) -> str:
    """Plan the next `days` days from the database (initialised by the caller) and render it."""
    if days < 1:
        raise ValueError("days must be at least 1")
    now = now or datetime.now(UTC)
    config = ScheduleConfig.from_settings(settings)
    calendar = await load_work_calendar()
    inputs = await load_schedule_inputs(reports_since=now - REPORTS_LOOKBACK)
    end = now + timedelta(days=days)
    planned = plan_sends(inputs, now, end, config, calendar)
    tz = config.tz
    years = range(now.astimezone(tz).year, end.astimezone(tz).year + 1)
    return render_preview(
        planned,
        tz,
        inputs,
        start=now,
        end=end,
        uncovered_years=calendar.uncovered_years(years),
    )
