"""Reporting rules, cycles and the send planner, with an injected clock (no wall-clock time)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from bot.plan_model import Cycle, Role
from bot.schedule import (
    Audience,
    PlanInput,
    ReportingRule,
    RuleError,
    ScheduleConfig,
    ScheduleInputs,
    SendKind,
    TaskInput,
    cycle_key,
    next_allowed,
    plan_sends,
    report_cycle_key,
    rule_for,
)
from bot.workcalendar import CalendarExtra, WorkCalendar

TZ = ZoneInfo("Asia/Shanghai")
CALENDAR = WorkCalendar()
CONFIG = ScheduleConfig()
FAR = date(2030, 12, 31)


def at(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TZ)


def task(
    task_id: int = 12,
    *,
    rule: str | None = None,
    deadline: date = FAR,
    departments: tuple[int, ...] = (3,),
    targets: tuple[tuple[int, date], ...] = (),
    plan_id: int = 1,
) -> TaskInput:
    roles = tuple(
        (department, Role.LEAD if index == 0 else Role.SUPPORT)
        for index, department in enumerate(departments)
    )
    return TaskInput(
        task_id, plan_id, f"2.1.{task_id}", f"任务{task_id}", deadline, rule, roles, targets
    )


def inputs(
    *tasks: TaskInput, reported=(), default_rule: str | None = None, goals=()
) -> ScheduleInputs:
    return ScheduleInputs(
        plans=(PlanInput(1, "实施意见", default_rule, goals),),
        tasks=tasks,
        departments={3: "县发改局", 4: "县建设局", 5: "县民政局"},
        liaisons={3: (31, 32), 4: (41,)},
        reported=frozenset(reported),
    )


def plan(
    data: ScheduleInputs,
    start: datetime,
    end: datetime,
    *,
    config: ScheduleConfig = CONFIG,
    calendar: WorkCalendar = CALENDAR,
    kinds: tuple[SendKind, ...] = (),
):
    sends = plan_sends(data, start, end, config, calendar)
    return [send for send in sends if not kinds or send.kind in kinds]


def local_times(sends) -> list[datetime]:
    return [send.local_at for send in sends]


# Rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (None, "monthly:20:25"),
        ("", "monthly:20:25"),
        ("monthly", "monthly:20:25"),
        ("Monthly:5:10", "monthly:5:10"),
        ("weekly", "weekly:MO:FR"),
        ("weekly:fr:mo", "weekly:FR:MO"),
        ("quarterly", "quarterly:20:25"),
        ("half_yearly:1:10", "half_yearly:1:10"),
        ("yearly", "yearly:20:25"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=15", "RRULE:FREQ=MONTHLY;BYMONTHDAY=15;X-DUE=5"),
        ("RRULE:FREQ=MONTHLY;X-DUE=7;BYMONTHDAY=15", "RRULE:FREQ=MONTHLY;BYMONTHDAY=15;X-DUE=7"),
    ],
)
def test_rules_parse_to_a_canonical_text(text, canonical):
    rule = ReportingRule.parse(text)
    assert str(rule) == canonical
    assert ReportingRule.parse(str(rule)) == rule


def test_every_parser_cycle_name_is_a_rule():
    for cycle in Cycle:
        assert ReportingRule.parse(cycle.value).cycle is cycle


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fortnightly", "expected weekly[:MO:FR], monthly[:20:25]"),
        ("monthly:32:25", "expected a day of the month 1-31, got '32'"),
        ("monthly:20", "expected monthly or monthly:PROMPT:DUE"),
        ("weekly:MO:XX", "expected a weekday MO/TU/WE/TH/FR/SA/SU, got 'XX'"),
        ("RRULE:FREQ=HOURLY", "FREQ must be DAILY or longer"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=40", "the rule has no occurrences"),
        ("RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "the rule has no occurrences"),
        ("DTSTART:20260101 RRULE:FREQ=MONTHLY;UNTIL=20250101", "the rule has no occurrences"),
        ("RRULE:FREQ=MONTHLY;FOO=1", "not a valid RFC 5545 RRULE"),
        ("RRULE:FREQ=MONTHLY;X-DUE=99", "X-DUE must be 0-60 days"),
        ("RRULE:FREQ=DAILY\nEXRULE:FREQ=WEEKLY", "expected one RRULE"),
    ],
)
def test_bad_rules_fail_with_one_line(text, message):
    with pytest.raises(RuleError) as caught:
        ReportingRule.parse(text)
    assert str(caught.value).startswith("bad reporting rule ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_monthly_prompts_and_due_days():
    rule = ReportingRule.parse("monthly:20:25")
    assert rule.prompt_days(date(2026, 9, 21), date(2026, 12, 31)) == [
        date(2026, 10, 20),
        date(2026, 11, 20),
        date(2026, 12, 20),
    ]
    assert rule.due_day(date(2026, 11, 20)) == date(2026, 11, 25)
    wrapping = ReportingRule.parse("monthly:28:5")  # due in the following month
    assert wrapping.due_day(date(2026, 12, 28)) == date(2027, 1, 5)
    month_end = ReportingRule.parse("monthly:31:31")  # a day past the month's end: its last day
    assert month_end.prompt_days(date(2027, 2, 1), date(2027, 2, 28)) == [date(2027, 2, 28)]


def test_quarterly_half_yearly_and_yearly_prompt_in_the_periods_last_month():
    year = (date(2026, 1, 1), date(2026, 12, 31))
    assert [d.month for d in ReportingRule.parse("quarterly").prompt_days(*year)] == [3, 6, 9, 12]
    assert [d.month for d in ReportingRule.parse("half_yearly").prompt_days(*year)] == [6, 12]
    assert ReportingRule.parse("yearly:1:15").prompt_days(*year) == [date(2026, 12, 1)]


def test_weekly_prompts_and_due_days():
    rule = ReportingRule.parse("weekly:MO:FR")
    assert rule.prompt_days(date(2026, 11, 18), date(2026, 12, 1)) == [
        date(2026, 11, 23),
        date(2026, 11, 30),
    ]
    assert rule.due_day(date(2026, 11, 23)) == date(2026, 11, 27)
    assert ReportingRule.parse("weekly:FR:MO").due_day(date(2026, 11, 27)) == date(2026, 11, 30)


def test_rrule_prompts_on_its_occurrences_due_x_due_days_later():
    rule = ReportingRule.parse("RRULE:FREQ=MONTHLY;BYMONTHDAY=15;X-DUE=7")
    assert rule.prompt_days(date(2026, 10, 1), date(2026, 12, 31)) == [
        date(2026, 10, 15),
        date(2026, 11, 15),
        date(2026, 12, 15),
    ]
    assert rule.due_day(date(2026, 11, 15)) == date(2026, 11, 22)
    default_due = ReportingRule.parse("RRULE:FREQ=WEEKLY;BYDAY=WE")
    assert default_due.due_day(date(2026, 11, 18)) == date(2026, 11, 23)


def test_rrule_interval_counts_from_dtstart_or_the_fixed_anchor():
    anchored = ReportingRule.parse("DTSTART:20260105 RRULE:FREQ=WEEKLY;INTERVAL=2")
    assert anchored.prompt_days(date(2026, 1, 1), date(2026, 2, 1)) == [
        date(2026, 1, 5),
        date(2026, 1, 19),
    ]
    default = ReportingRule.parse("RRULE:FREQ=WEEKLY;INTERVAL=2")  # from Monday 2024-01-01
    first = default.prompt_days(date(2026, 1, 1), date(2026, 1, 31))
    assert all((day - date(2024, 1, 1)).days % 14 == 0 for day in first)
    # Parsing twice gives the same days: nothing depends on when it runs.
    assert (
        ReportingRule.parse("RRULE:FREQ=WEEKLY;INTERVAL=2").prompt_days(
            date(2026, 1, 1), date(2026, 1, 31)
        )
        == first
    )


@pytest.mark.parametrize(
    ("text", "prompt", "key"),
    [
        ("monthly", date(2026, 11, 20), "2026-11"),
        ("weekly", date(2026, 11, 23), "2026-W48"),
        ("weekly", date(2027, 1, 1), "2026-W53"),  # ISO week-year
        ("quarterly", date(2026, 12, 20), "2026-Q4"),
        ("quarterly", date(2026, 3, 20), "2026-Q1"),
        ("half_yearly", date(2026, 12, 20), "2026-H2"),
        ("half_yearly", date(2026, 6, 20), "2026-H1"),
        ("yearly", date(2026, 12, 20), "2026"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=15", date(2026, 11, 15), "2026-11-15"),
    ],
)
def test_cycle_keys(text, prompt, key):
    assert cycle_key(ReportingRule.parse(text), prompt) == key


# Cycles ---------------------------------------------------------------------------------------


def _every_cycle_reference(rule: ReportingRule, now: datetime) -> str:
    """The report key with nothing answered, by building every cycle near `now`: what
    report_cycle_key computed before it learnt to build only the cycles it needs."""
    from bot import schedule

    cycles = [
        schedule._cycle(rule, day, CALENDAR, CONFIG)
        for day in schedule._prompt_days_around(rule, now, CONFIG)
    ]
    started = [cycle for cycle in cycles if cycle.prompt_at <= now]
    report = (started[-1] if started else cycles[0]).key
    if len(started) > 1 and now < started[-2].escalation:
        report = started[-2].key
    return report


@pytest.mark.parametrize(
    "text",
    [
        "monthly:20:25",
        "weekly:MO:FR",
        "quarterly",
        "half_yearly",
        "yearly",
        "DTSTART:20260101 RRULE:FREQ=WEEKLY;BYDAY=MO,TH",
        "DTSTART:20270104 RRULE:FREQ=WEEKLY;COUNT=3",
    ],
)
def test_cycle_keys_match_building_every_cycle(text):
    # Through the Spring Festival and Golden Week, when holidays shift several prompts at
    # once (the case where building only the recent cycles could go wrong), and a month of
    # ordinary days, every 17 hours.
    rule = ReportingRule.parse(text)
    for start, end in ((at(2026, 2, 10), at(2026, 3, 2)), (at(2026, 9, 25), at(2026, 10, 25))):
        moment = start
        while moment < end:
            report = _every_cycle_reference(rule, moment)
            assert report_cycle_key(rule, moment, calendar=CALENDAR) == report, moment
            moment += timedelta(hours=17)


def test_report_cycle_key_needs_an_aware_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        report_cycle_key(ReportingRule.parse("monthly"), datetime(2026, 11, 22))  # noqa: DTZ001


def test_a_late_weekly_report_answers_the_previous_week_until_its_escalation():
    rule = ReportingRule.parse("weekly:MO:FR")
    monday = at(2026, 11, 30, 10)  # W49 prompted at 09:00; W48 was due Friday 11-27
    assert report_cycle_key(rule, monday, calendar=CALENDAR) == "2026-W48"
    assert report_cycle_key(rule, monday, {"2026-W48"}, calendar=CALENDAR) == "2026-W49"
    # W48's nudges: Fri 27, Mon 30, Tue 1; escalation Wed 2 at 09:00 closes it.
    assert report_cycle_key(rule, at(2026, 12, 2, 8), calendar=CALENDAR) == "2026-W48"
    assert report_cycle_key(rule, at(2026, 12, 2, 10), calendar=CALENDAR) == "2026-W49"


def test_a_monthly_report_answers_the_current_month():
    rule = ReportingRule.parse("monthly")
    assert report_cycle_key(rule, at(2026, 11, 21), calendar=CALENDAR) == "2026-11"
    assert report_cycle_key(rule, at(2026, 11, 3), calendar=CALENDAR) == "2026-10"


# Holidays, 调休 and quiet hours ----------------------------------------------------------------


def test_a_prompt_due_on_national_day_moves_to_the_8th_at_nine():
    moved = next_allowed(at(2026, 10, 1), time(9), CALENDAR, CONFIG)
    assert moved == at(2026, 10, 8)
    sends = plan(
        inputs(task(rule="monthly:1:5")),
        at(2026, 9, 28),
        at(2026, 10, 10),
        kinds=(SendKind.PROMPT,),
    )
    assert local_times(sends) == [at(2026, 10, 8)]
    assert sends[0].send_at == datetime(2026, 10, 8, 1, tzinfo=UTC)
    assert sends[0].key == "prompt:2026-10:task12:dept3"  # the nominal month, not the shift


def test_the_make_up_sunday_is_a_working_day_for_prompts():
    sends = plan(inputs(task()), at(2026, 9, 15), at(2026, 9, 25), kinds=(SendKind.PROMPT,))
    assert local_times(sends) == [at(2026, 9, 20)]  # Sunday 2026-09-20, 调休


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(2026, 11, 24, 20, 59), at(2026, 11, 24, 20, 59)),  # before quiet hours: unchanged
        (at(2026, 11, 24, 21, 0), at(2026, 11, 25, 9)),  # quiet: next working morning
        (at(2026, 11, 24, 3, 0), at(2026, 11, 24, 9)),  # early morning: the same day at nine
        (at(2026, 11, 24, 8, 0), at(2026, 11, 24, 8, 0)),  # quiet hours end at 08:00
        (at(2026, 11, 27, 22, 0), at(2026, 11, 30, 9)),  # Friday night: Monday
        (at(2026, 11, 28, 12, 0), at(2026, 11, 30, 9)),  # Saturday noon: Monday
        (at(2026, 9, 30, 23, 0), at(2026, 10, 8, 9)),  # the eve of National Day
        (at(2027, 1, 1, 12, 0), at(2027, 1, 1, 12, 0)),  # 2027 unknown: Friday counts
    ],
)
def test_quiet_hours_weekends_and_holidays_move_to_the_next_working_morning(moment, expected):
    assert next_allowed(moment, time(9), CALENDAR, CONFIG) == expected


def test_quiet_hours_within_a_day():
    config = ScheduleConfig(quiet_start=time(12), quiet_end=time(14), send_time=time(10))
    assert not config.is_quiet(time(11, 59)) and config.is_quiet(time(12))
    assert next_allowed(at(2026, 11, 24, 13), time(10), CALENDAR, config) == at(2026, 11, 25, 10)


def test_a_send_time_inside_quiet_hours_is_refused():
    with pytest.raises(ValueError, match="send_time 22:00 falls in quiet hours"):
        ScheduleConfig(send_time=time(22))
    with pytest.raises(ValueError, match="summary_time 07:00 falls in quiet hours"):
        ScheduleConfig(summary_time=time(7))


def test_every_send_lands_on_a_working_day_outside_quiet_hours():
    data = inputs(
        task(12, departments=(3, 4), targets=((1, date(2027, 5, 1)),)),
        task(13, rule="weekly:SA:SU", deadline=date(2027, 2, 13)),
        task(14, rule="RRULE:FREQ=DAILY;INTERVAL=3"),
        goals=((9, date(2026, 10, 3)),),
    )
    sends = plan(data, at(2026, 1, 1, 0), at(2027, 12, 31, 0))
    assert len(sends) > 500
    for send in sends:
        assert CALENDAR.is_workday(send.local_at.date()), send
        assert not CONFIG.is_quiet(send.local_at.time()), send
        assert send.local_at.time() == time(9), send


# Nudges and escalation ------------------------------------------------------------------------


def test_nudges_on_working_days_from_the_due_day_at_most_three_then_an_escalation():
    # monthly:20:25 in December 2026: due Friday 12-25.
    sends = plan(inputs(task()), at(2026, 12, 1), at(2027, 1, 10))
    nudges = [send for send in sends if send.kind is SendKind.NUDGE]
    assert local_times(nudges) == [at(2026, 12, 25), at(2026, 12, 28), at(2026, 12, 29)]
    assert [send.attempt for send in nudges] == [1, 2, 3]
    assert [send.key for send in nudges] == [
        "nudge:2026-12:task12:dept3:n1",
        "nudge:2026-12:task12:dept3:n2",
        "nudge:2026-12:task12:dept3:n3",
    ]
    (escalation,) = [send for send in sends if send.kind is SendKind.ESCALATION]
    assert escalation.local_at == at(2026, 12, 30)
    assert escalation.audience is Audience.GROUP
    assert (escalation.department_id, escalation.task_ids) == (3, (12,))
    assert escalation.key == "escalation:2026-12:dept3"


def test_nudges_skip_holidays_and_the_due_day_moves_past_them():
    # September 2026: due 09-25, a Mid-Autumn holiday: due 09-28; nudges 28, 29, 30; the
    # escalation waits for National Day to end.
    sends = plan(inputs(task()), at(2026, 9, 1), at(2026, 10, 15))
    nudges = [send for send in sends if send.kind is SendKind.NUDGE]
    assert local_times(nudges) == [at(2026, 9, 28), at(2026, 9, 29), at(2026, 9, 30)]
    escalations = [send for send in sends if send.kind is SendKind.ESCALATION]
    assert local_times(escalations) == [at(2026, 10, 8)]
    prompt = next(send for send in sends if send.kind is SendKind.PROMPT)
    assert prompt.deadline == date(2026, 9, 28)


@pytest.mark.parametrize("max_nudges", [0, 1, 5])
def test_the_number_of_nudges_is_configurable(max_nudges):
    config = ScheduleConfig(max_nudges=max_nudges)
    sends = plan(inputs(task()), at(2026, 12, 1), at(2027, 1, 20), config=config)
    sends = [send for send in sends if send.cycle_key == "2026-12"]
    nudges = [send for send in sends if send.kind is SendKind.NUDGE]
    assert len(nudges) == max_nudges
    (escalation,) = [send for send in sends if send.kind is SendKind.ESCALATION]
    last = nudges[-1].local_at.date() if nudges else None
    expected = CALENDAR.next_workday(last) if last else date(2026, 12, 25)
    assert escalation.local_at == datetime.combine(expected, time(9), tzinfo=TZ)


def test_a_report_for_the_cycle_stops_prompt_nudges_and_escalation():
    data = inputs(task(12, departments=(3, 4)), reported={(3, 12, "2026-12")})
    sends = plan(data, at(2026, 12, 1), at(2027, 1, 10))
    assert {send.department_id for send in sends if send.kind is not SendKind.SUMMARY} == {4}
    # Planned again after the first nudge went out, with the report in: nothing more for 3.
    later = plan(data, at(2026, 12, 25, 10), at(2027, 1, 10), kinds=(SendKind.NUDGE,))
    assert {send.department_id for send in later} == {4}
    # A report for another cycle does not count.
    other = inputs(task(12), reported={(3, 12, "2026-11")})
    assert plan(other, at(2026, 12, 1), at(2027, 1, 10), kinds=(SendKind.NUDGE,))


def test_one_escalation_per_department_and_cycle_naming_the_silent_tasks():
    data = inputs(
        task(12, departments=(3,)),
        task(13, departments=(3,)),
        task(14, departments=(3,)),
        task(15, rule="monthly:10:15", departments=(3,)),  # same key 2026-12, earlier days
        reported={(3, 13, "2026-12")},
    )
    sends = plan(data, at(2026, 12, 1), at(2027, 1, 10), kinds=(SendKind.ESCALATION,))
    (escalation,) = sends
    assert escalation.task_ids == (12, 14, 15)
    assert escalation.local_at == at(2026, 12, 30)  # the latest of the tasks' escalation days


def test_only_the_configured_roles_are_prompted():
    config = ScheduleConfig(report_roles=frozenset({Role.LEAD}))
    sends = plan(inputs(task(departments=(3, 4))), at(2026, 12, 1), at(2027, 1, 10), config=config)
    assert {send.department_id for send in sends if send.audience is Audience.DEPARTMENT} == {3}


def test_no_prompt_after_the_tasks_deadline():
    data = inputs(task(deadline=date(2026, 11, 30)))
    prompts = plan(data, at(2026, 10, 1), at(2027, 3, 1), kinds=(SendKind.PROMPT,))
    assert local_times(prompts) == [at(2026, 10, 20), at(2026, 11, 20)]


def test_the_task_rule_overrides_the_plan_default_which_overrides_the_config():
    data = inputs(task(12), task(13, rule="quarterly"), default_rule="weekly")
    prompts = plan(data, at(2026, 11, 30), at(2026, 12, 31), kinds=(SendKind.PROMPT,))
    by_task = {tid: [s.cycle_key for s in prompts if s.task_id == tid] for tid in (12, 13)}
    assert by_task[12] == ["2026-W49", "2026-W50", "2026-W51", "2026-W52", "2026-W53"]
    assert by_task[13] == ["2026-Q4"]
    config = ScheduleConfig(default_rule="monthly:1:5")
    only = plan(
        inputs(task(12)),
        at(2026, 11, 30),
        at(2026, 12, 31),
        config=config,
        kinds=(SendKind.PROMPT,),
    )
    assert [send.cycle_key for send in only] == ["2026-12"]
    assert only[0].local_at == at(2026, 12, 1)


def test_rule_for_picks_the_task_then_the_plan_then_the_config():
    assert str(rule_for("quarterly", "weekly")) == "quarterly:20:25"
    assert str(rule_for(None, "weekly")) == "weekly:MO:FR"
    assert str(rule_for(None, None)) == "monthly:20:25"
    assert str(rule_for(None, None, ScheduleConfig(default_rule="monthly:1:5"))) == "monthly:1:5"


def test_a_bad_stored_rule_names_the_task():
    with pytest.raises(RuleError, match=r"^task 2\.1\.12: bad reporting rule 'every day'"):
        plan(inputs(task(rule="every day")), at(2026, 12, 1), at(2026, 12, 31))


# Reminders ------------------------------------------------------------------------------------


def test_reminders_30_7_1_days_before_on_the_day_and_overdue():
    deadline = date(2026, 12, 16)  # a Wednesday; every reminder day is a working day
    sends = plan(
        inputs(task(deadline=deadline)), at(2026, 11, 1), at(2027, 1, 1), kinds=(SendKind.REMINDER,)
    )
    assert [(send.local_at, send.days_before) for send in sends] == [
        (at(2026, 11, 16), 30),
        (at(2026, 12, 9), 7),
        (at(2026, 12, 15), 1),
        (at(2026, 12, 16), 0),
        (at(2026, 12, 17), -1),
    ]
    assert [send.key for send in sends] == [
        f"reminder:task12:2026-12-16:{label}:dept3"
        for label in ("d30", "d7", "d1", "d0", "overdue")
    ]
    assert all(send.deadline == deadline for send in sends)


def test_reminders_pushed_onto_one_day_keep_the_most_urgent():
    # Deadline Saturday 2026-10-31: on the day and overdue both land on Monday 11-02.
    sends = plan(
        inputs(task(deadline=date(2026, 10, 31))),
        at(2026, 10, 1),
        at(2026, 11, 30),
        kinds=(SendKind.REMINDER,),
    )
    assert [(send.local_at, send.days_before) for send in sends] == [
        (at(2026, 10, 8), 30),  # 10-01 is National Day
        (at(2026, 10, 26), 7),  # 10-24 is a Saturday
        (at(2026, 10, 30), 1),
        (at(2026, 11, 2), -1),
    ]


def test_configured_reminder_days():
    config = ScheduleConfig(reminder_days=(14,))
    sends = plan(
        inputs(task(deadline=date(2026, 12, 16))),
        at(2026, 11, 1),
        at(2027, 1, 1),
        config=config,
        kinds=(SendKind.REMINDER,),
    )
    assert [send.days_before for send in sends] == [14, 0, -1]


def test_target_deadlines_get_their_own_reminders_and_goals_go_to_the_group():
    data = inputs(
        task(
            deadline=date(2026, 12, 16),
            targets=((7, date(2026, 12, 16)), (8, date(2026, 12, 2))),
        ),
        goals=((90, date(2026, 12, 16)), (91, date(2026, 12, 16))),
    )
    sends = plan(data, at(2026, 12, 1), at(2026, 12, 3), kinds=(SendKind.REMINDER,))
    assert [(s.key, s.target_ids, s.audience) for s in sends] == [
        ("reminder:task12:2026-12-02:d1:dept3", (8,), Audience.DEPARTMENT),
        ("reminder:task12:2026-12-02:d0:dept3", (8,), Audience.DEPARTMENT),
    ]
    day = plan(data, at(2026, 12, 16), at(2026, 12, 17), kinds=(SendKind.REMINDER,))
    assert [(s.key, s.target_ids) for s in day] == [
        ("reminder:task12:2026-12-16:d0:dept3", (7,)),
        ("reminder:plan1:2026-12-16:d0", (90, 91)),
    ]
    assert day[1].audience is Audience.GROUP and day[1].plan_id == 1


# Summary --------------------------------------------------------------------------------------


def test_weekly_summary_on_monday_moves_past_a_holiday_monday():
    sends = plan(inputs(), at(2026, 9, 20), at(2026, 10, 20))
    assert [(s.local_at, s.key) for s in sends] == [
        (at(2026, 9, 21), "summary:2026-W39"),
        (at(2026, 9, 28), "summary:2026-W40"),
        (at(2026, 10, 8), "summary:2026-W41"),  # Monday 10-05 is National Day
        (at(2026, 10, 12), "summary:2026-W42"),
        (at(2026, 10, 19), "summary:2026-W43"),
    ]
    assert all(send.audience is Audience.GROUP for send in sends)


def test_the_summary_day_and_time_are_configurable():
    config = ScheduleConfig(summary_weekday=4, summary_time=time(16, 30))
    sends = plan(inputs(), at(2026, 11, 23), at(2026, 12, 5), config=config)
    assert local_times(sends) == [at(2026, 11, 27, 16, 30), at(2026, 12, 4, 16, 30)]


def test_a_summary_moved_by_a_holiday_keeps_its_own_time():
    config = ScheduleConfig(summary_time=time(17))
    sends = plan(inputs(), at(2026, 10, 4), at(2026, 10, 9), config=config)
    assert local_times(sends) == [at(2026, 10, 8, 17)]


# Keys and determinism -------------------------------------------------------------------------


def _busy_inputs() -> ScheduleInputs:
    return inputs(
        task(12, departments=(3, 4), targets=((7, date(2027, 3, 31)),)),
        task(13, rule="weekly", departments=(4, 5)),
        task(14, rule="RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15;X-DUE=3", departments=(5,)),
        task(15, rule="quarterly", departments=(3,), deadline=date(2027, 6, 30)),
        goals=((90, date(2027, 6, 30)),),
        reported={(4, 12, "2027-01")},
    )


def test_the_same_inputs_give_the_same_sends_and_keys_are_unique():
    start, end = at(2026, 12, 1, 0), at(2027, 7, 31, 0)
    first = plan(_busy_inputs(), start, end)
    second = plan(_busy_inputs(), start, end)
    assert first == second
    keys = [send.key for send in first]
    assert len(keys) == len(set(keys))
    assert {send.kind for send in first} == set(SendKind)


def test_planning_in_pieces_gives_the_same_sends_as_at_once():
    # A restart re-plans from "now": the sends of overlapping windows agree key by key.
    start, middle, end = at(2026, 12, 1, 0), at(2027, 2, 17, 13, 37), at(2027, 7, 31, 0)
    whole = plan(_busy_inputs(), start, end)
    pieces = plan(_busy_inputs(), start, middle) + plan(_busy_inputs(), middle, end)
    assert [send.key for send in pieces] == [send.key for send in whole]
    assert pieces == whole


def test_adding_a_years_holidays_moves_sends_but_keeps_their_keys():
    data = inputs(task())
    start, end = at(2027, 1, 1, 0), at(2027, 12, 1, 0)
    fallback = plan(data, start, end)
    extra = CalendarExtra.parse("year 2027\n2027-10-01..2027-10-07 holiday\n2027-10-20 holiday")
    official = plan(data, start, end, calendar=WorkCalendar(extra))
    assert {s.key for s in fallback} == {s.key for s in official}
    moved = {s.key: s.local_at for s in official}
    assert moved["prompt:2027-10:task12:dept3"] == at(2027, 10, 21)


def test_sends_are_ordered_by_time_kind_then_document_order():
    data = inputs(task(12, departments=(4, 3)), task(2, departments=(3,)))
    prompts = plan(data, at(2026, 12, 20, 0), at(2026, 12, 22, 0), kinds=(SendKind.PROMPT,))
    assert [(send.kind, send.task_id, send.department_id) for send in prompts] == [
        (SendKind.PROMPT, 12, 4),
        (SendKind.PROMPT, 12, 3),
        (SendKind.PROMPT, 2, 3),
    ]


def test_the_window_is_half_open_and_needs_aware_times():
    data = inputs(task())
    kinds = (SendKind.PROMPT, SendKind.NUDGE)
    sends = plan(data, at(2026, 12, 21), at(2026, 12, 28), kinds=kinds)
    assert local_times(sends) == [at(2026, 12, 21), at(2026, 12, 25)]
    assert plan(data, at(2026, 12, 21, 9, 1), at(2026, 12, 25), kinds=kinds) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_sends(data, datetime(2026, 12, 1), at(2026, 12, 2), CONFIG, CALENDAR)  # noqa: DTZ001


# Configuration --------------------------------------------------------------------------------


def test_config_from_settings_reads_optional_fields():
    assert ScheduleConfig.from_settings(SimpleNamespace(timezone="Asia/Shanghai")) == CONFIG
    settings = SimpleNamespace(
        timezone="Asia/Urumqi",
        send_time="10:30",
        reminder_days="1, 14,7",
        max_nudges="2",
        quiet_hours="22:00-07:30",
        summary_weekday="FR",
        summary_time="17:00",
        default_reporting_rule="weekly:TU:TH",
        report_roles="lead",
    )
    config = ScheduleConfig.from_settings(settings)
    assert config == ScheduleConfig(
        timezone="Asia/Urumqi",
        send_time=time(10, 30),
        reminder_days=(14, 7, 1),
        max_nudges=2,
        quiet_start=time(22),
        quiet_end=time(7, 30),
        summary_weekday=4,
        summary_time=time(17),
        default_rule="weekly:TU:TH",
        report_roles=frozenset({Role.LEAD}),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("send_time", "9h", "expected a time HH:MM"),
        ("quiet_hours", "21:00", "expected quiet hours HH:MM-HH:MM"),
        ("reminder_days", "30,x", "expected comma-separated whole days"),
        ("reminder_days", "0", "reminder days must be 1-366"),
        ("summary_weekday", "someday", "expected a weekday MO-SU"),
        ("report_roles", "boss", "expected lead and/or support"),
        ("max_nudges", 11, "max_nudges must be 0-10"),
        ("default_reporting_rule", "sometimes", "bad reporting rule 'sometimes'"),
    ],
)
def test_bad_settings_fail_with_one_line(field, value, message):
    settings = SimpleNamespace(timezone="Asia/Shanghai", **{field: value})
    with pytest.raises(ValueError, match=message):
        ScheduleConfig.from_settings(settings)


def test_bad_config_values_built_directly_are_refused():
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        ScheduleConfig(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="reminder days must be 1-366"):
        ScheduleConfig(reminder_days=(7, 0))


def test_sends_carry_utc_and_local_times_of_the_same_instant():
    (send,) = plan(inputs(task()), at(2026, 12, 20), at(2026, 12, 22), kinds=(SendKind.PROMPT,))
    assert send.send_at.tzinfo is UTC
    assert send.local_at.tzinfo == TZ
    assert send.send_at == send.local_at
    assert send.send_at - datetime(2026, 12, 21, 1, tzinfo=UTC) == timedelta(0)
