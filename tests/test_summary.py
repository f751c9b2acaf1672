"""The weekly summary, pure: traffic lights, pace, reporters, changes, rendering (bot.summary)."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from bot.i18n import build_i18n
from bot.plan_model import Comparator, DepartmentKind, Role
from bot.summary import (
    WEEK,
    DeliveryIssue,
    Light,
    Reason,
    WeeklySummary,
    compute_summary,
    pace,
    two_cycles_before,
)
from bot.summary_render import (
    MESSAGE_LIMIT,
    i18n_locale,
    render_for_telegram,
    render_summary_text,
    summary_document,
    telegram_length,
)
from storage.enums import ReportStatus
from storage.summary import (
    AssignmentRow,
    LiaisonRow,
    PlanRow,
    ReportRow,
    SummaryData,
    TargetRow,
    ValueRow,
)

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=TZ)  # a Monday morning
ISSUED = date(2024, 1, 1)
HORIZON = date(2027, 12, 31)
PLAN = PlanRow(
    id=1,
    title="关于推进城镇化建设的实施意见",
    doc_number="长政办发〔2023〕65号",
    issued_on=ISSUED,
    horizon=HORIZON,
    default_cycle=None,
    created_at=datetime(2025, 1, 1, tzinfo=UTC),
)
DEPARTMENTS = {
    1: "县发改局",
    2: "县建设局",
    3: "县民政局",
    4: "县交通运输局",
    5: "县<b>财政</b>局 & 税务",
    6: "县水利局",
}


def all_messages(summary: WeeklySummary, locale: str, i18n=None) -> list[str]:
    """The Telegram messages, however many (never the document)."""
    return render_for_telegram(summary, locale, i18n, max_messages=10**6).messages


def unit(
    task_id: int, code: str, department_id: int, role: Role = Role.LEAD, **extra
) -> AssignmentRow:
    values = {
        "task_id": task_id,
        "code": code,
        "title": f"任务{code}",
        "deadline": HORIZON,
        "cycle": None,
        "department_id": department_id,
        "department_name": DEPARTMENTS.get(department_id, f"单位{department_id}"),
        "department_kind": DepartmentKind.AGENCY,
        "role": role,
    }
    return AssignmentRow(**{**values, **extra})


_ids = itertools.count(1)


class Dated(NamedTuple):
    """A value with the time of its report (storage returns only the latest per target)."""

    at: datetime
    row: ValueRow


def report(
    task_id: int,
    department_id: int,
    status: ReportStatus,
    days_ago: float,
    liaison: str = "联络员",
) -> ReportRow:
    return ReportRow(
        id=next(_ids),
        task_id=task_id,
        department_id=department_id,
        liaison_id=department_id,
        liaison_name=liaison,
        status=status,
        created_at=NOW - timedelta(days=days_ago),
    )


def target(target_id: int, task_id: int | None, goal: str, **extra) -> TargetRow:
    values = {
        "id": target_id,
        "task_id": task_id,
        "metric": f"指标{target_id}",
        "value": Decimal(goal),
        "unit": "套",
        "comparator": Comparator.AT_LEAST,
        "deadline": HORIZON,
        "baseline": None,
    }
    return TargetRow(**{**values, **extra})


def value(target_id: int, amount: str, days_ago: float, department_id: int = 2) -> Dated:
    return Dated(
        NOW - timedelta(days=days_ago), ValueRow(target_id, Decimal(amount), 0, department_id)
    )


def data(
    assignments: list[AssignmentRow],
    reports: list[ReportRow] = (),
    *,
    targets: list[TargetRow] = (),
    values: list[Dated] = (),
    liaisons: list[LiaisonRow] = (),
    plan: PlanRow = PLAN,
    now: datetime = NOW,
) -> SummaryData:
    """SummaryData as storage would build it from a plain list of reports."""
    since = now - WEEK
    made = [r for r in reports if r.created_at <= now]

    def latest(rows: list[ReportRow]) -> tuple[ReportRow, ...]:
        found: dict[tuple[int, int], ReportRow] = {}
        for row in sorted(rows, key=lambda r: r.created_at):
            found[row.task_id, row.department_id] = row
        return tuple(found.values())

    def latest_values(rows: list[Dated]) -> tuple[ValueRow, ...]:
        found: dict[int, ValueRow] = {}
        for dated in sorted(rows, key=lambda d: d.at):
            found[dated.row.target_id] = dated.row
        return tuple(found.values())

    return SummaryData(
        plan=plan,
        now=now,
        since=since,
        assignments=tuple(assignments),
        targets=tuple(targets),
        liaisons=tuple(liaisons),
        latest=latest(made),
        latest_before=latest([r for r in made if r.created_at < since]),
        week_reports=tuple(sorted((r for r in made if r.created_at >= since), key=lambda r: r.id)),
        values=latest_values([v for v in values if v.at <= now]),
        values_before=latest_values([v for v in values if v.at < since]),
    )


def line_of(summary: WeeklySummary, department_id: int, code: str):
    block = next(b for b in summary.departments if b.department_id == department_id)
    return next(line for line in block.lines if line.code == code)


# Traffic lights -------------------------------------------------------------------------------


def test_overdue_blocked_and_silent_are_red_at_risk_yellow_on_track_and_done_green() -> None:
    summary = compute_summary(
        data(
            [
                unit(1, "1.1", 1, deadline=date(2026, 6, 30)),  # overdue
                unit(2, "1.2", 2),  # blocked
                unit(3, "1.3", 3),  # last report 80 days ago: silent
                unit(4, "1.4", 4),  # at risk
                unit(5, "1.5", 5),  # on track
                unit(6, "1.6", 6, deadline=date(2026, 6, 30)),  # done before its deadline
            ],
            [
                report(1, 1, ReportStatus.ON_TRACK, 3),
                report(2, 2, ReportStatus.BLOCKED, 3),
                report(3, 3, ReportStatus.ON_TRACK, 80),
                report(4, 4, ReportStatus.AT_RISK, 20),
                report(5, 5, ReportStatus.ON_TRACK, 20),
                report(6, 6, ReportStatus.DONE, 200),
            ],
        )
    )
    lights = {(b.department_id, line.code): line for b in summary.departments for line in b.lines}
    assert lights[1, "1.1"].light is Light.RED
    assert lights[1, "1.1"].reasons[0] is Reason.OVERDUE
    assert lights[1, "1.1"].overdue_days == (NOW.date() - date(2026, 6, 30)).days
    assert lights[2, "1.2"].light is Light.RED and Reason.BLOCKED in lights[2, "1.2"].reasons
    assert lights[3, "1.3"].light is Light.RED and Reason.SILENT in lights[3, "1.3"].reasons
    assert lights[3, "1.3"].silent_days == 80
    assert lights[4, "1.4"].light is Light.YELLOW
    assert lights[5, "1.5"].light is Light.GREEN
    assert lights[6, "1.6"].light is Light.GREEN  # done: neither overdue nor silent
    assert summary.task_lights == {Light.RED: 3, Light.YELLOW: 1, Light.PENDING: 0, Light.GREEN: 2}
    assert [task.code for task in summary.overdue] == ["1.1"]
    # Departments with red items first.
    assert [b.department_id for b in summary.departments][:3] == [1, 2, 3]


def test_the_deadline_day_itself_is_not_overdue() -> None:
    summary = compute_summary(
        data([unit(1, "1.1", 1, deadline=NOW.date())], [report(1, 1, ReportStatus.ON_TRACK, 1)])
    )
    assert line_of(summary, 1, "1.1").light is Light.GREEN
    assert summary.overdue == ()


def test_a_task_done_by_its_lead_is_green_for_its_support_units_too() -> None:
    summary = compute_summary(
        data(
            [
                unit(1, "1.1", 1, deadline=date(2026, 6, 30)),
                unit(1, "1.1", 2, Role.SUPPORT, deadline=date(2026, 6, 30)),
            ],
            [report(1, 1, ReportStatus.DONE, 200)],
        )
    )
    assert line_of(summary, 2, "1.1").light is Light.GREEN
    assert summary.overdue == ()
    assert summary.not_reported == ()  # nothing left to report on


def test_silence_counts_from_the_threshold_given_and_not_before_the_plan_was_imported() -> None:
    assignments = [unit(1, "1.1", 1), unit(2, "1.2", 2)]
    reports = [report(1, 1, ReportStatus.ON_TRACK, 40)]
    default = compute_summary(data(assignments, reports))
    assert line_of(default, 1, "1.1").light is Light.GREEN  # 40 days < two months
    assert line_of(default, 2, "1.2").reasons == (Reason.SILENT,)
    assert line_of(default, 2, "1.2").silent_days is None  # never reported

    weekly = compute_summary(data(assignments, reports), silent_since=NOW - timedelta(days=14))
    assert line_of(weekly, 1, "1.1").light is Light.RED

    # Imported a month ago: nobody can have missed two monthly cycles yet.
    recent = replace(PLAN, created_at=NOW - timedelta(days=30))
    fresh = compute_summary(data(assignments, reports, plan=recent))
    assert line_of(fresh, 2, "1.2").light is Light.PENDING
    assert line_of(fresh, 2, "1.2").reasons == (Reason.NO_REPORT,)
    assert fresh.task_lights[Light.PENDING] == 1


def test_a_task_with_its_own_cycle_is_silent_after_two_of_its_cycles() -> None:
    quarterly = [unit(1, "1.1", 1, cycle="quarterly")]
    summary = compute_summary(data(quarterly, [report(1, 1, ReportStatus.ON_TRACK, 100)]))
    assert line_of(summary, 1, "1.1").light is Light.GREEN  # 100 days < 6 months
    assert two_cycles_before(NOW, "weekly:MO:FR") == NOW - timedelta(weeks=2)
    assert two_cycles_before(NOW, "RRULE:FREQ=MONTHLY") == datetime(2026, 9, 30, 9, tzinfo=TZ)


# Pace -----------------------------------------------------------------------------------------


def test_pace_is_a_straight_line_from_the_issue_date_to_the_deadline() -> None:
    # 2024-01-01 .. 2028-01-01 is 1461 days; on 2026-01-01 (731 days) the line is at 50.03 %.
    common = {
        "comparator": Comparator.AT_LEAST,
        "baseline": None,
        "start": date(2024, 1, 1),
        "deadline": date(2028, 1, 1),
    }
    percent, expected, expected_value, behind = pace(
        goal=Decimal(9000), today=date(2026, 1, 1), value=Decimal(4000), **common
    )
    assert expected == Decimal(731) / Decimal(1461) * 100
    assert expected_value == Decimal(9000) * Decimal(731) / Decimal(1461)
    assert percent == Decimal(4000) / Decimal(9000) * 100
    assert behind  # 4000 < 4503
    assert not pace(goal=Decimal(9000), today=date(2026, 1, 1), value=Decimal(4600), **common)[3]
    # Before the start nothing is expected yet; after the deadline the whole goal is.
    assert pace(goal=Decimal(10), today=date(2023, 6, 1), value=Decimal(0), **common)[1] == 0
    assert pace(goal=Decimal(10), today=date(2029, 1, 1), value=Decimal(9), **common)[1:] == (
        Decimal(100),
        Decimal(10),
        True,
    )


def test_pace_starts_from_the_baseline_and_mirrors_for_at_most_targets() -> None:
    halfway = {"start": date(2024, 1, 1), "deadline": date(2026, 1, 1), "today": date(2025, 1, 1)}
    # 52 % -> 60 %: halfway the line is at 56 %.
    percent, _expected, line, behind = pace(
        goal=Decimal(60),
        comparator=Comparator.AT_LEAST,
        baseline=Decimal(52),
        value=Decimal(55),
        **halfway,
    )
    assert line == Decimal(52) + Decimal(8) * Decimal(366) / Decimal(731)
    assert percent == Decimal(3) / Decimal(8) * 100
    assert behind
    # 40 -> 20 (at most): halfway the line is at 30; 33 is above it, so behind; 28 is not.
    down = {"goal": Decimal(20), "comparator": Comparator.AT_MOST, "baseline": Decimal(40)}
    assert pace(value=Decimal(33), **down, **halfway)[3]
    assert not pace(value=Decimal(28), **down, **halfway)[3]
    assert pace(value=Decimal(28), **down, **halfway)[0] == Decimal(60)  # 12 of the 20 to go
    # At most, no baseline: behind only once over the limit.
    ceiling = {"goal": Decimal(5), "comparator": Comparator.AT_MOST, "baseline": None}
    assert not pace(value=Decimal("4.9"), **ceiling, **halfway)[3]
    assert pace(value=Decimal(6), **ceiling, **halfway)[3]
    # Without an issue date there is no line to be behind.
    assert pace(
        goal=Decimal(10),
        comparator=Comparator.AT_LEAST,
        baseline=None,
        start=None,
        deadline=date(2026, 1, 1),
        today=date(2025, 1, 1),
        value=Decimal(1),
    )[1:] == (None, None, False)


def test_behind_pace_turns_the_lead_yellow_and_leaves_support_units_alone() -> None:
    summary = compute_summary(
        data(
            [unit(1, "1.1", 2), unit(1, "1.1", 1, Role.SUPPORT)],
            [report(1, 2, ReportStatus.ON_TRACK, 3), report(1, 1, ReportStatus.ON_TRACK, 3)],
            targets=[target(7, 1, "9000"), target(8, None, "1200")],
            values=[value(7, "2000", 3)],  # 22 % of the goal, the line is at 73 %
        )
    )
    lead = line_of(summary, 2, "1.1")
    assert lead.light is Light.YELLOW
    assert lead.reasons == (Reason.BEHIND_PACE, Reason.ON_TRACK)
    assert [t.target_id for t in lead.behind] == [7]
    assert line_of(summary, 1, "1.1").light is Light.GREEN
    housing = next(t for t in summary.targets if t.target_id == 7)
    assert int(housing.percent) == 22 and int(housing.expected_percent) == 72
    goal = next(t for t in summary.targets if t.target_id == 8)
    assert goal.value is None and goal.percent is None and goal.task_code is None


# Reporters, changes, delivery -----------------------------------------------------------------


def test_who_reported_this_week_and_who_did_not_by_department_and_liaison() -> None:
    liaisons = [
        LiaisonRow(1, 1, "王五", True),
        LiaisonRow(2, 2, "李四", True),
        LiaisonRow(3, 2, "赵六", False),
    ]
    summary = compute_summary(
        data(
            [unit(1, "1.1", 1), unit(2, "1.2", 2), unit(3, "1.3", 3)],
            [
                report(1, 1, ReportStatus.ON_TRACK, 2, liaison="王五"),
                report(2, 2, ReportStatus.ON_TRACK, 9, liaison="李四"),  # last week
            ],
            liaisons=liaisons,
        )
    )
    assert [(c.name, c.people) for c in summary.reported] == [("县发改局", ("王五",))]
    assert [(c.name, c.people) for c in summary.not_reported] == [
        ("县建设局", ("李四", "赵六")),
        ("县民政局", ()),
    ]
    text = render_summary_text(summary, "zh")
    assert "县建设局：李四、赵六" in text
    assert "县民政局：尚未绑定联络员" in text
    assert "未报送：县建设局、县民政局" in text
    assert "Not reported: 县建设局, 县民政局" in render_summary_text(summary, "en")


def test_changes_since_last_week() -> None:
    summary = compute_summary(
        data(
            [unit(1, "1.1", 1), unit(2, "1.2", 2), unit(3, "1.3", 3)],
            [
                report(1, 1, ReportStatus.ON_TRACK, 20),
                report(1, 1, ReportStatus.BLOCKED, 2, liaison="王五"),  # green -> red
                report(2, 2, ReportStatus.AT_RISK, 20),
                report(2, 2, ReportStatus.AT_RISK, 1),  # the same status again
                report(3, 3, ReportStatus.AT_RISK, 20),
            ],
            targets=[target(9, 3, "100")],
            values=[value(9, "40", 30, 3), value(9, "55", 1, 3)],
        )
    )
    changes = summary.changes
    assert [(r.department, r.code, r.status) for r in changes.new_reports] == [
        ("县发改局", "1.1", ReportStatus.BLOCKED),
        ("县建设局", "1.2", ReportStatus.AT_RISK),
    ]
    assert [(c.code, c.before, c.after) for c in changes.status_changes] == [
        ("1.1", ReportStatus.ON_TRACK, ReportStatus.BLOCKED)
    ]
    assert [(c.code, c.before, c.after, c.worse) for c in changes.light_changes] == [
        ("1.1", Light.GREEN, Light.RED, True)
    ]
    assert [(t.target_id, t.previous_value, t.value) for t in changes.target_changes] == [
        (9, Decimal(40), Decimal(55))
    ]
    text = render_summary_text(summary, "zh")
    assert "🟢→🔴 1.1 任务1.1 · 县发改局" in text
    assert "较上周：1 项变差，0 项好转，新报送 2 份" in text
    assert "1.3 指标9：40 → 55套" in text


def test_a_light_that_turned_red_by_silence_alone_is_a_change() -> None:
    # Reported 58 days ago: green a week ago, silent (red) now.
    summary = compute_summary(data([unit(1, "1.1", 1)], [report(1, 1, ReportStatus.ON_TRACK, 65)]))
    assert [(c.before, c.after) for c in summary.changes.light_changes] == [
        (Light.GREEN, Light.RED)
    ]
    assert summary.changes.new_reports == ()


def test_expired_and_failed_sends_are_listed() -> None:
    issues = [
        DeliveryIssue("nudge", "李四", "1.1", "expired"),
        DeliveryIssue("escalation", "协调群", None, "Forbidden: bot was kicked <b>"),
    ]
    summary = compute_summary(data([unit(1, "1.1", 1)]), delivery_issues=issues)
    assert summary.delivery_issues == tuple(issues)
    html = "\n".join(all_messages(summary, "zh"))
    assert "• 催报 · 李四 · 1.1 · 已过期，未发送" in html
    assert "• 通报 · 协调群 · Forbidden: bot was kicked &lt;b&gt;" in html
    assert "发送异常：2 条" in html
    assert "Sends that expired or failed: 2" in render_summary_text(summary, "en")
    assert compute_summary(data([unit(1, "1.1", 1)])).delivery_issues == ()


# Rendering ------------------------------------------------------------------------------------


def test_html_escapes_names_titles_and_liaisons() -> None:
    summary = compute_summary(
        data(
            [unit(1, "1.1", 5, title="<b>加装</b> & 改造")],
            [report(1, 5, ReportStatus.BLOCKED, 1, liaison="张<i>三</i> & 李")],
            liaisons=[LiaisonRow(1, 5, "张<i>三</i> & 李", True)],
            plan=replace(PLAN, title="方案 <script>"),
        )
    )
    html = "\n".join(all_messages(summary, "zh"))
    assert "<b>县&lt;b&gt;财政&lt;/b&gt;局 &amp; 税务</b>" in html
    assert "&lt;b&gt;加装&lt;/b&gt; &amp; 改造" in html
    assert "张&lt;i&gt;三&lt;/i&gt; &amp; 李" in html
    assert "方案 &lt;script&gt;" in html
    # Only our own tags remain.
    assert set(re.findall(r"</?(\w+)", html)) == {"b"}
    # The plain text is not escaped.
    assert "县<b>财政</b>局 & 税务" in render_summary_text(summary, "zh")


def big_summary(departments: int, tasks_each: int) -> WeeklySummary:
    names = {i: f"第{i}责任单位<{i}>" for i in range(1, departments + 1)}
    assignments = []
    reports = []
    for department_id, name in names.items():
        for index in range(tasks_each):
            task_id = department_id * 100 + index
            assignments.append(
                AssignmentRow(
                    task_id=task_id,
                    code=f"{department_id}.{index}",
                    title="推进某项很长很长的重点工作任务" * 2,
                    deadline=date(2026, 1, 1) if index % 3 == 0 else HORIZON,
                    cycle=None,
                    department_id=department_id,
                    department_name=name,
                    department_kind=DepartmentKind.AGENCY,
                    role=Role.LEAD,
                )
            )
            if index % 2:
                reports.append(report(task_id, department_id, ReportStatus.AT_RISK, 2))
    return compute_summary(data(assignments, reports))


def test_messages_stay_within_telegram_limits_and_split_between_departments() -> None:
    summary = big_summary(departments=60, tasks_each=6)
    messages = all_messages(summary, "zh")
    assert len(messages) > 2
    assert all(telegram_length(message) <= MESSAGE_LIMIT for message in messages)
    assert messages[0].startswith("📋 <b>督办周报</b>")
    # A department block is never cut in two: each header is followed by its own lines.
    for message in messages:
        assert message.count("<b>") == message.count("</b>")
    whole = "\n".join(messages)
    for department_id in (1, 30, 60):
        name = f"第{department_id}责任单位&lt;{department_id}&gt;"
        block = re.search(rf"<b>{re.escape(name)}</b>.*?(?:\n\n|$)", whole, re.S)
        assert block is not None
        assert any(block.group(0).strip() in message for message in messages)
    # Nothing is lost in splitting: the same text as one string.
    assert whole.count("🟡") == render_summary_text(summary, "zh").count("🟡")


def test_a_very_long_summary_goes_out_as_a_document() -> None:
    summary = big_summary(departments=200, tasks_each=8)
    output = render_for_telegram(summary, "zh")
    assert output.document is not None and output.filename.endswith(".txt")
    assert len(output.messages) == 1
    assert "完整周报见附件" in output.messages[0]
    assert telegram_length(output.messages[0]) <= MESSAGE_LIMIT
    text = output.document.decode("utf-8")
    assert text == render_summary_text(summary, "zh")
    assert "第200责任单位<200>" in text
    assert summary_document(summary, "zh") == output.document
    small = render_for_telegram(big_summary(departments=3, tasks_each=2), "zh")
    assert small.document is None and len(small.messages) == 1


def test_messages_are_written_only_until_there_are_too_many() -> None:
    summary = big_summary(departments=60, tasks_each=6)
    messages = all_messages(summary, "zh")
    enough = render_for_telegram(summary, "zh", max_messages=len(messages))
    assert enough.messages == messages and enough.document is None
    too_many = render_for_telegram(summary, "zh", max_messages=len(messages) - 1)
    assert too_many.document == summary_document(summary, "zh")


def test_each_rendering_translates_in_its_own_language() -> None:
    summary = compute_summary(data([unit(1, "1.1", 1)]))
    with i18n_locale("zh"):  # phrases remembered in one language are not reused in another
        assert "Weekly summary" in all_messages(summary, "en")[0]
        assert "督办周报" in render_summary_text(summary, "zh")
        assert "Weekly summary" in render_summary_text(summary, "en")


def test_a_single_oversized_block_is_split_by_lines() -> None:
    summary = big_summary(departments=1, tasks_each=150)  # one department, 150 yellow lines
    messages = all_messages(summary, "en")
    assert len(messages) >= 3
    assert all(telegram_length(message) <= MESSAGE_LIMIT for message in messages)
    yellow = summary.line_lights[Light.YELLOW]
    assert yellow == 50  # odd task numbers are at risk, except every third one: overdue
    lines = [line for message in messages for line in message.split("\n")]
    assert sum(line.startswith("🟡 1.") for line in lines) == yellow


def test_the_headline_comes_first_with_counts_and_non_reporters() -> None:
    summary = compute_summary(
        data(
            [unit(1, "1.1", 1, deadline=date(2026, 6, 30)), unit(2, "1.2", 2), unit(3, "1.3", 3)],
            [report(2, 2, ReportStatus.AT_RISK, 1), report(3, 3, ReportStatus.ON_TRACK, 1)],
        )
    )
    first = all_messages(summary, "zh")[0]
    head = first.split("\n\n")[:2]
    assert "2026年11月30日星期一" in head[0]
    assert "任务 3 项</b>  🔴1 🟡1 🟢1" in head[1]
    assert "本周报送：2/3 个单位" in head[1]
    assert "📵 未报送：县发改局" in head[1]
    assert "⏰ 逾期任务：1 项" in head[1]
    english = all_messages(summary, "en")[0]
    assert "<b>3 tasks</b>  🔴1 🟡1 🟢1" in english
    assert "Monday, November 30, 2026" in english


def test_rendering_uses_the_i18n_it_is_given() -> None:
    summary = compute_summary(data([unit(1, "1.1", 1)]))
    i18n = build_i18n("zh")
    with i18n.context(), i18n.use_locale("en"):  # as in a handler: the current one is used
        assert "Weekly summary" in all_messages(summary, "en")[0]
        assert "督办周报" in all_messages(summary, "zh", i18n)[0]


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_an_empty_plan_renders(locale: str) -> None:
    summary = compute_summary(data([]))
    messages = all_messages(summary, locale)
    assert len(messages) == 1
    assert summary.task_count == 0


def test_naive_datetimes_are_refused() -> None:
    naive = replace(data([]), now=datetime(2026, 11, 30, 9))  # noqa: DTZ001 - on purpose
    with pytest.raises(ValueError, match="aware"):
        compute_summary(naive)


def test_a_line_longer_than_a_message_is_cut_between_names_not_inside_an_entity() -> None:
    # 700 all-green departments fold into one line far longer than a message.
    assignments, reports = [], []
    for department_id in range(1, 701):
        name = f"第{department_id}单位&<部>"
        assignments.append(
            unit(department_id, f"1.{department_id}", department_id + 1000, department_name=name)
        )
        reports.append(report(department_id, department_id + 1000, ReportStatus.ON_TRACK, 1))
    summary = compute_summary(data(assignments, reports))
    messages = all_messages(summary, "zh")
    assert all(telegram_length(message) <= MESSAGE_LIMIT for message in messages)
    whole = "".join(messages)
    assert not re.search(r"&(?!amp;|lt;|gt;|quot;|#)", whole)  # no entity cut in two
    assert not re.search(r"<(?!/?b>)", whole)  # no tag either
    for department_id in (1, 350, 700):
        assert f"第{department_id}单位&amp;&lt;部&gt;" in whole
