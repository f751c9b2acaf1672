"""Reporting rules and the send planner: plain values in, planned sends out (no I/O).

Rules (`ReportingRule.parse`), written in Plan.default_cycle and Task.cycle (the task's wins):

- `monthly:P:D` — prompt on day P of every month, reports due on day D (the next month's D when
  D < P). A day past the month's end means its last day (monthly:25:31 is due at month end).
  `monthly` alone is `monthly:20:25`, the shipped plan's rule (每月20日提示, 25日前报送) and
  the default when neither the plan nor the task names one.
- `quarterly:P:D`, `half_yearly:P:D`, `yearly:P:D` — the same days in the *last* month of each
  period: March, June, September and December; June and December; December. Reporting in the
  period's last month keeps the cycle key and the period reported on the same (2026-Q4 is
  prompted on 2026-12-20). The bare names mean P=20, D=25.
- `weekly:MO:FR` — prompt on one weekday, due on the same or a later weekday (FR:MO is due the
  Monday after). `weekly` alone is `weekly:MO:FR`.
- `RRULE:…` (RFC 5545, python-dateutil): prompts on the rule's days, due X-DUE days later (an
  extension part, default 5: `RRULE:FREQ=MONTHLY;BYMONTHDAY=15;X-DUE=7`). A leading
  `DTSTART:YYYYMMDD ` sets the anchor of INTERVAL and COUNT; by default 2024-01-01. Only days
  count: the time of a prompt is the configured send time. HOURLY and finer are refused.

Cycle keys name the cycle from the prompt's *nominal* day (before any holiday shift, so adding a
year's holidays never renames a cycle): 2026-11 (monthly), 2026-W48 (ISO week of the prompt),
2026-Q4, 2026-H2, 2026, and the occurrence's ISO date for an RRULE (2026-11-15).

Planning (`plan_sends`), in the configured timezone:

- prompt: per (task, assigned department) each cycle, at the send time (09:00) of the prompt day;
  none for a cycle the department has already answered, none prompted after the task's deadline.
- reminder: before each task deadline and each target deadline (30, 7 and 1 days by default),
  on the day, and once the day after (overdue). A task's targets due the same day as the task
  share its reminders. The plan's own goals go to the coordination group. When a weekend or
  holiday pushes several reminders of one deadline onto one day, only the most urgent is kept.
- nudge (催报): from the due day, at the send time of it and of each following working day, up to
  `max_nudges`, per (task, department) that has not answered the cycle.
- escalation (通报): one per (department, cycle) to the coordination group, on the working day
  after the department's last nudge, naming the tasks it has not answered. Tasks of one
  department with different rules but the same cycle key share it, at the latest of their times.
- summary: weekly, on the configured weekday and time, to the coordination group.

Any send that falls on a weekend, a public holiday or in quiet hours moves to its configured time
(09:00; the summary's own time for the summary) of the next working day — the same day when it
fell in the early-morning quiet hours of a working day.

Recipients: the planner works per department; `bot.delivery.planned_deliveries` turns a
department's send into one delivery per active liaison (key suffix `:l<liaison id>`) just before
the ledger stores it, so liaisons who join or leave between planning and sending are not frozen
into the plan.

Idempotency keys are built from ids and nominal dates only, never from shifted times:
prompt:2026-11:task12:dept3, nudge:2026-11:task12:dept3:n2, escalation:2026-11:dept3,
reminder:task12:2027-12-31:d7:dept3 (d30, d7, d1, d0, overdue), reminder:plan1:2027-12-31:d0
(plan goals), summary:2026-W48.
"""

from __future__ import annotations

import calendar as _calendar
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, rrule, rrulestr

from bot.plan_model import Cycle, Role
from bot.workcalendar import WorkCalendar

DEFAULT_RULE = "monthly:20:25"
DEFAULT_RRULE_DUE_DAYS = 5
MAX_RRULE_DUE_DAYS = 60
RRULE_ANCHOR = date(2024, 1, 1)  # a Monday; INTERVAL counts from here unless DTSTART is given
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DEFAULT_DAYS = {Cycle.WEEKLY: (0, 4)}  # MO, FR; every other cycle: 20, 25
_PERIOD_MONTHS = {
    Cycle.MONTHLY: tuple(range(1, 13)),
    Cycle.QUARTERLY: (3, 6, 9, 12),
    Cycle.HALF_YEARLY: (6, 12),
    Cycle.YEARLY: (12,),
}
_FORMS = "weekly[:MO:FR], monthly[:20:25], quarterly, half_yearly, yearly or RRULE:…"
_X_DUE = re.compile(r";X-DUE=(?P<days>[^;\s]*)", re.IGNORECASE)
_SUMMARY_LOOKBACK = timedelta(days=21)  # a summary day shifted past the longest holiday
_LATE_YEAR = 9976  # a leap year 23 years before dateutil's search ends


class RuleError(ValueError):
    """A reporting rule cannot be read; the message is one line."""


class SendKind(StrEnum):
    PROMPT = "prompt"  # 进度提示
    REMINDER = "reminder"  # 临期提醒
    NUDGE = "nudge"  # 催报
    ESCALATION = "escalation"  # 通报
    SUMMARY = "summary"  # 周报


class Audience(StrEnum):
    DEPARTMENT = "department"  # the department's active liaisons
    GROUP = "group"  # the coordination group


# Rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportingRule:
    """When a task's progress is prompted and due. `str(rule)` is its canonical text."""

    cycle: Cycle | None  # None for an RRULE
    prompt: int = 0  # day of the month, or weekday 0-6 (weekly)
    due: int = 0
    rrule_text: str | None = None  # the RRULE (with DTSTART), without X-DUE
    due_days: int = 0  # RRULE: days from prompt to due

    @classmethod
    def parse(cls, text: str | None) -> ReportingRule:
        """Read a rule; None or "" is the default rule. Raises RuleError."""
        text = (text or DEFAULT_RULE).strip()
        try:
            if text.upper().startswith(("RRULE:", "DTSTART")):
                return _parse_rrule(text)
            return _parse_named(text)
        except RuleError as exc:
            raise RuleError(f"bad reporting rule {text!r}: {exc}") from None

    def __str__(self) -> str:
        if self.cycle is None:
            return f"{self.rrule_text};X-DUE={self.due_days}"
        if self.cycle is Cycle.WEEKLY:
            return f"weekly:{WEEKDAYS[self.prompt]}:{WEEKDAYS[self.due]}"
        return f"{self.cycle.value}:{self.prompt}:{self.due}"

    def prompt_days(self, first: date, last: date) -> list[date]:
        """Nominal prompt days from `first` to `last`, both included."""
        if self.cycle is None:
            rule = _rrule(self.rrule_text or "")
            start, end = datetime.combine(first, time()), datetime.combine(last, time())
            return [moment.date() for moment in rule.between(start, end, inc=True)]
        if self.cycle is Cycle.WEEKLY:
            offset = (self.prompt - first.weekday()) % 7
            return _every(first + timedelta(offset), last, timedelta(7))
        months = _PERIOD_MONTHS[self.cycle]
        days = (_month_day(year, month, self.prompt) for year, month in _months(first, last))
        return [day for day in days if day.month in months and first <= day <= last]

    def due_day(self, prompt_day: date) -> date:
        """The nominal due day of the cycle prompted on `prompt_day`."""
        if self.cycle is None:
            return prompt_day + timedelta(self.due_days)
        if self.cycle is Cycle.WEEKLY:
            return prompt_day + timedelta((self.due - self.prompt) % 7)
        if self.due >= self.prompt:
            return _month_day(prompt_day.year, prompt_day.month, self.due)
        following = prompt_day.replace(day=1) + timedelta(32)
        return _month_day(following.year, following.month, self.due)

    def key(self, prompt_day: date) -> str:
        """The cycle key of the cycle prompted on the nominal day `prompt_day`."""
        match self.cycle:
            case None:
                return prompt_day.isoformat()
            case Cycle.WEEKLY:
                year, week, _ = prompt_day.isocalendar()
                return f"{year}-W{week:02d}"
            case Cycle.MONTHLY:
                return f"{prompt_day:%Y-%m}"
            case Cycle.QUARTERLY:
                return f"{prompt_day.year}-Q{(prompt_day.month - 1) // 3 + 1}"
            case Cycle.HALF_YEARLY:
                return f"{prompt_day.year}-H{1 if prompt_day.month <= 6 else 2}"
            case _:
                return str(prompt_day.year)

    def span_days(self) -> int:
        """An upper bound of the days from a prompt to its due day."""
        if self.cycle is None:
            return self.due_days
        return 6 if self.cycle is Cycle.WEEKLY else 31


def cycle_key(rule: ReportingRule, prompt_date: date) -> str:
    """The stable key of the cycle whose nominal prompt day is `prompt_date`."""
    return rule.key(prompt_date)


def _parse_named(text: str) -> ReportingRule:
    name, *days = text.split(":")
    try:
        cycle = Cycle(name.strip().lower())
    except ValueError:
        raise RuleError(f"expected {_FORMS}") from None
    if len(days) not in (0, 2):
        raise RuleError(f"expected {cycle.value} or {cycle.value}:PROMPT:DUE")
    if cycle is Cycle.WEEKLY:
        prompt, due = [_weekday(day) for day in days] or _DEFAULT_DAYS[cycle]
    else:
        prompt, due = [_month_day_number(day) for day in days] or (20, 25)
    return ReportingRule(cycle, prompt, due)


def _weekday(text: str) -> int:
    code = text.strip().upper()
    if code not in WEEKDAYS:
        raise RuleError(f"expected a weekday {'/'.join(WEEKDAYS)}, got {text!r}")
    return WEEKDAYS.index(code)


def _month_day_number(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 31:
        raise RuleError(f"expected a day of the month 1-31, got {text!r}")
    return int(value)


def _parse_rrule(text: str) -> ReportingRule:
    due_days = DEFAULT_RRULE_DUE_DAYS
    if match := _X_DUE.search(text):
        value = match["days"]
        if not value.isdigit() or int(value) > MAX_RRULE_DUE_DAYS:
            raise RuleError(f"X-DUE must be 0-{MAX_RRULE_DUE_DAYS} days, got {value!r}")
        due_days = int(value)
        text = text[: match.start()] + text[match.end() :]
    rule_text = " ".join(text.split())
    if not _has_occurrences(_rrule(rule_text)):
        raise RuleError("the rule has no occurrences")
    return ReportingRule(None, rrule_text=rule_text, due_days=due_days)


def _has_occurrences(rule: rrule) -> bool:
    """Whether the rule yields a day, checked quickly: dateutil searches an impossible pattern
    (BYMONTHDAY=40) up to the year 9999, seconds of work. The pattern is tried first from a
    leap year near that end, without COUNT and UNTIL; the rule itself only when it can match.
    """
    start: datetime = rule._dtstart  # dateutil keeps its fields private
    late = rule.replace(dtstart=start.replace(year=_LATE_YEAR), count=None, until=None)
    if late.after(late._dtstart, inc=True) is None:
        return False
    return rule.after(start, inc=True) is not None


@cache
def _rrule(text: str) -> rrule:
    try:
        rule = rrulestr(text, dtstart=datetime.combine(RRULE_ANCHOR, time()), ignoretz=True)
    except (ValueError, TypeError, IndexError) as exc:
        raise RuleError(f"not a valid RFC 5545 RRULE ({exc})") from None
    if not isinstance(rule, rrule):
        raise RuleError("expected one RRULE (no EXRULE, RDATE or EXDATE)")
    if rule._freq > DAILY:  # dateutil keeps the frequency private
        raise RuleError("FREQ must be DAILY or longer (prompts are sent once a day)")
    return rule


def _month_day(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, _calendar.monthrange(year, month)[1]))


def _months(first: date, last: date) -> Iterator[tuple[int, int]]:
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _every(first: date, last: date, step: timedelta) -> list[date]:
    days = []
    while first <= last:
        days.append(first)
        first += step
    return days


# Configuration --------------------------------------------------------------------------------


def parse_clock(value: str | time) -> time:
    """Read "09:00" as time(9, 0)."""
    if isinstance(value, time):
        return value
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"expected a time HH:MM, got {value!r}")
    return time(int(match[1]), int(match[2]))


def parse_quiet_hours(value: str | tuple[time, time]) -> tuple[time, time]:
    """Read "21:00-08:00" as (time(21), time(8)); the span may cross midnight."""
    if isinstance(value, tuple):
        return value
    start, sep, end = str(value).partition("-")
    if not sep:
        raise ValueError(f"expected quiet hours HH:MM-HH:MM, got {value!r}")
    return parse_clock(start), parse_clock(end)


def parse_weekday(value: str | int) -> int:
    """Read "MO", "monday" or 0 as 0 (Monday) ... 6 (Sunday)."""
    if isinstance(value, int) and 0 <= value <= 6:
        return value
    code = str(value).strip().upper()[:2]
    if code not in WEEKDAYS:
        raise ValueError(f"expected a weekday MO-SU or 0-6, got {value!r}")
    return WEEKDAYS.index(code)


def parse_days(value: str | Iterable[int]) -> tuple[int, ...]:
    """Read "30,7,1" as (30, 7, 1)."""
    items = str(value).split(",") if isinstance(value, str) else list(value)
    try:
        days = tuple(sorted({int(item) for item in items if str(item).strip()}, reverse=True))
    except ValueError:
        raise ValueError(
            f"expected comma-separated whole days such as 30,7,1, got {value!r}"
        ) from None
    if any(day < 1 or day > 366 for day in days):
        raise ValueError(f"reminder days must be 1-366, got {value!r}")
    return days


def parse_roles(value: str | Iterable[Role | str]) -> frozenset[Role]:
    """Read "lead,support" as both roles."""
    items = str(value).split(",") if isinstance(value, str) else list(value)
    try:
        roles = frozenset(Role(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise ValueError(f"expected lead and/or support, got {value!r}") from None
    if not roles:
        raise ValueError("name at least one role: lead, support")
    return roles


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    timezone: str = "Asia/Shanghai"
    send_time: time = time(9, 0)  # prompts, reminders, nudges, escalations
    reminder_days: tuple[int, ...] = (30, 7, 1)  # before a deadline; plus on the day and after
    max_nudges: int = 3
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    summary_weekday: int = 0  # Monday
    summary_time: time = time(9, 0)
    default_rule: str = DEFAULT_RULE  # when the plan names none
    report_roles: frozenset[Role] = frozenset({Role.LEAD, Role.SUPPORT})  # who is prompted

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        ReportingRule.parse(self.default_rule)
        parse_days(self.reminder_days)
        if not 0 <= self.max_nudges <= 10:
            raise ValueError(f"max_nudges must be 0-10, got {self.max_nudges}")
        for name in ("send_time", "summary_time"):
            if self.is_quiet(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name):%H:%M} falls in quiet hours")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_quiet(self, clock: time) -> bool:
        start, end = self.quiet_start, self.quiet_end
        if start <= end:
            return start <= clock < end
        return clock >= start or clock < end

    @classmethod
    def from_settings(cls, settings: Any) -> ScheduleConfig:
        """Read the optional schedule fields of `Settings` (strings or parsed values)."""
        default = cls()
        quiet = getattr(settings, "quiet_hours", (default.quiet_start, default.quiet_end))
        quiet_start, quiet_end = parse_quiet_hours(quiet)
        return cls(
            timezone=getattr(settings, "timezone", default.timezone),
            send_time=parse_clock(getattr(settings, "send_time", default.send_time)),
            reminder_days=parse_days(getattr(settings, "reminder_days", default.reminder_days)),
            max_nudges=int(getattr(settings, "max_nudges", default.max_nudges)),
            quiet_start=quiet_start,
            quiet_end=quiet_end,
            summary_weekday=parse_weekday(
                getattr(settings, "summary_weekday", default.summary_weekday)
            ),
            summary_time=parse_clock(getattr(settings, "summary_time", default.summary_time)),
            default_rule=getattr(settings, "default_reporting_rule", None) or DEFAULT_RULE,
            report_roles=parse_roles(getattr(settings, "report_roles", default.report_roles)),
        )


DEFAULT_CONFIG = ScheduleConfig()


def next_allowed(
    local: datetime, at: time, calendar: WorkCalendar, config: ScheduleConfig
) -> datetime:
    """`local` if it is on a working day outside quiet hours; else `at` on the next working
    day (the same day when `local` is a working day's early morning before `at`)."""
    day, clock = local.date(), local.time()
    if calendar.is_workday(day):
        if not config.is_quiet(clock):
            return local
        if clock < at:
            return datetime.combine(day, at, tzinfo=local.tzinfo)
    return datetime.combine(calendar.next_workday(day), at, tzinfo=local.tzinfo)


# Cycles ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cycle:
    key: str
    prompt_day: date  # nominal
    prompt_at: datetime  # local, shifted
    due_on: date
    nudges: tuple[datetime, ...]  # local
    escalation: datetime  # local


def _cycle(
    rule: ReportingRule, prompt_day: date, calendar: WorkCalendar, config: ScheduleConfig
) -> _Cycle:
    at, tz = config.send_time, config.tz
    prompt_at = next_allowed(datetime.combine(prompt_day, at, tzinfo=tz), at, calendar, config)
    due_on = max(calendar.workday_on_or_after(rule.due_day(prompt_day)), prompt_at.date())
    days = [due_on]
    while len(days) < config.max_nudges:
        days.append(calendar.next_workday(days[-1]))
    days = days[: config.max_nudges]
    escalation_day = calendar.next_workday(days[-1]) if days else due_on
    return _Cycle(
        key=rule.key(prompt_day),
        prompt_day=prompt_day,
        prompt_at=prompt_at,
        due_on=due_on,
        nudges=tuple(datetime.combine(day, at, tzinfo=tz) for day in days),
        escalation=datetime.combine(escalation_day, at, tzinfo=tz),
    )


def _prompt_days_around(
    rule: ReportingRule, moment: datetime, config: ScheduleConfig
) -> list[date]:
    """Nominal prompt days from about a year before `moment` (further back for sparse rules) to
    a period after it, in order."""
    local = moment.astimezone(config.tz).date()
    for years in (1, 3, 10):
        days = rule.prompt_days(local - timedelta(400 * years), local + timedelta(400))
        if any(day <= local for day in days):
            break
    return days


def _started_cycles(
    rule: ReportingRule,
    moment: datetime,
    calendar: WorkCalendar,
    config: ScheduleConfig,
    count: int,
) -> list[_Cycle]:
    """The last `count` cycles prompted at or before `moment`, oldest first.

    Only the cycles needed are built: shifting a prompt never moves it before an earlier
    prompt's shifted time, so walking back from the last nominal day on or before `moment`
    finds the started ones in order. (Building a cycle asks the work calendar about several
    days; building a year of them was most of the time a report spent on its cycle key.)
    """
    _require_aware(moment)
    local = moment.astimezone(config.tz).date()
    started: list[_Cycle] = []
    for day in reversed(_prompt_days_around(rule, moment, config)):
        if day > local:
            continue
        cycle = _cycle(rule, day, calendar, config)
        if cycle.prompt_at <= moment:
            started.insert(0, cycle)
            if len(started) == count:
                break
    return started


def _first_cycle(
    rule: ReportingRule, moment: datetime, calendar: WorkCalendar, config: ScheduleConfig
) -> _Cycle:
    """The rule's first cycle near `moment` (for a moment before its first prompt)."""
    days = _prompt_days_around(rule, moment, config)
    if not days:
        raise RuleError(f"the reporting rule {rule} has no cycle near {moment.date()}")
    return _cycle(rule, days[0], calendar, config)


def _require_aware(*moments: datetime) -> None:
    if any(moment.tzinfo is None for moment in moments):
        raise ValueError("expected timezone-aware datetimes")


def report_cycle_key(
    rule: ReportingRule,
    now: datetime,
    answered: Iterable[str] = (),
    *,
    calendar: WorkCalendar | None = None,
    config: ScheduleConfig = DEFAULT_CONFIG,
) -> str:
    """The cycle a report made at `now` answers, given the keys this (department, task) has
    already answered: the previous cycle while it is unanswered and not yet escalated (a late
    report), else the current one. Matters where cycles overlap their nudges (weekly)."""
    calendar = calendar or WorkCalendar()
    started = _started_cycles(rule, now, calendar, config, 2)
    if not started:
        return _first_cycle(rule, now, calendar, config).key
    if len(started) > 1:
        previous = started[-2]
        if previous.key not in set(answered) and now < previous.escalation:
            return previous.key
    return started[-1].key


# Inputs and planned sends ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskInput:
    id: int
    plan_id: int
    code: str
    title: str
    deadline: date
    rule: str | None = None  # Task.cycle; None: the plan's default
    assignments: tuple[tuple[int, Role], ...] = ()  # (department id, role), clause order
    targets: tuple[tuple[int, date], ...] = ()  # (target id, deadline), targets with one


@dataclass(frozen=True, slots=True)
class PlanInput:
    id: int
    title: str
    default_rule: str | None = None  # Plan.default_cycle
    goals: tuple[tuple[int, date], ...] = ()  # the plan's own targets with a deadline


@dataclass(frozen=True)
class ScheduleInputs:
    plans: tuple[PlanInput, ...] = ()
    tasks: tuple[TaskInput, ...] = ()
    departments: Mapping[int, str] = field(default_factory=dict)  # id -> name
    liaisons: Mapping[int, tuple[int, ...]] = field(default_factory=dict)  # active, per dept
    reported: frozenset[tuple[int, int, str]] = frozenset()  # (department, task, cycle key)


@dataclass(frozen=True, slots=True)
class PlannedSend:
    kind: SendKind
    key: str  # idempotency key, deterministic
    send_at: datetime  # aware UTC
    local_at: datetime  # the same instant in the configured timezone
    audience: Audience
    task_id: int | None = None
    department_id: int | None = None  # the recipient, or the department an escalation names
    cycle_key: str | None = None  # prompts, nudges, escalations; the ISO week for summaries
    deadline: date | None = None  # reminders: the deadline; prompts and nudges: the due day
    days_before: int | None = None  # reminders: 30, 7, 1, 0 on the day, -1 overdue
    attempt: int | None = None  # nudges: 1..max_nudges
    task_ids: tuple[int, ...] = ()  # escalations: the tasks without a report
    target_ids: tuple[int, ...] = ()  # reminders: the targets due on `deadline`
    plan_id: int | None = None  # reminders of the plan's own goals


def _send(
    kind: SendKind, key: str, local: datetime, audience: Audience, **extra: Any
) -> PlannedSend:
    return PlannedSend(kind, key, local.astimezone(UTC), local, audience, **extra)


def plan_sends(
    inputs: ScheduleInputs,
    start: datetime,
    end: datetime,
    config: ScheduleConfig,
    calendar: WorkCalendar,
) -> list[PlannedSend]:
    """Every send due in [start, end), ordered by time then key; keys are unique.

    Raises RuleError naming the task when a stored rule cannot be read.
    """
    _require_aware(start, end)
    planned = [
        *_cycle_sends(inputs, start, end, config, calendar),
        *_reminders(inputs, config, calendar),
        *_summaries(start, end, config, calendar),
    ]
    unique = {send.key: send for send in planned if start <= send.send_at < end}
    return sorted(unique.values(), key=_order(inputs))


_KIND_ORDER = {kind: rank for rank, kind in enumerate(SendKind)}


def _order(inputs: ScheduleInputs) -> Callable[[PlannedSend], tuple]:
    """By time, kind, then document order: the task's place, the unit's place in its clause."""
    places: dict[tuple[int | None, int | None], tuple[int, int]] = {}
    last = len(inputs.tasks)
    for task_rank, task in enumerate(inputs.tasks):
        for unit_rank, (department, _) in enumerate(task.assignments):
            places[task.id, department] = (task_rank, unit_rank)
            # Sends naming a department without a task (escalations): its first appearance.
            places.setdefault((None, department), (last, len(places)))

    def key(send: PlannedSend) -> tuple:
        place = places.get((send.task_id, send.department_id), (last + 1, 0))
        return (send.send_at, _KIND_ORDER[send.kind], *place, send.key)

    return key


def rule_for(
    task_rule: str | None, plan_rule: str | None, config: ScheduleConfig = DEFAULT_CONFIG
) -> ReportingRule:
    """A task's rule: its own (Task.cycle), else its plan's (Plan.default_cycle), else the
    configured default."""
    return ReportingRule.parse(task_rule or plan_rule or config.default_rule)


def _task_rules(inputs: ScheduleInputs, config: ScheduleConfig) -> dict[int, ReportingRule]:
    defaults = {plan.id: plan.default_rule for plan in inputs.plans}
    rules: dict[int, ReportingRule] = {}
    for task in inputs.tasks:
        try:
            rules[task.id] = rule_for(task.rule, defaults.get(task.plan_id), config)
        except RuleError as exc:
            raise RuleError(f"task {task.code}: {exc}") from None
    return rules


def _departments(task: TaskInput, config: ScheduleConfig) -> list[int]:
    return [department for department, role in task.assignments if role in config.report_roles]


def _cycle_sends(
    inputs: ScheduleInputs,
    start: datetime,
    end: datetime,
    config: ScheduleConfig,
    calendar: WorkCalendar,
) -> list[PlannedSend]:
    """Prompts and nudges per (task, department), then one escalation per (department, cycle)."""
    sends: list[PlannedSend] = []
    silent: dict[tuple[int, str], list[tuple[datetime, int]]] = defaultdict(list)
    tz = config.tz
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    rules = _task_rules(inputs, config)
    for task in inputs.tasks:
        rule = rules[task.id]
        lookback = timedelta(rule.span_days() + 3 * config.max_nudges + 40)
        for day in rule.prompt_days(first - lookback, min(last, task.deadline)):
            cycle = _cycle(rule, day, calendar, config)
            for department in _departments(task, config):
                if (department, task.id, cycle.key) in inputs.reported:
                    continue
                sends += _prompt_and_nudges(task.id, department, cycle)
                silent[department, cycle.key].append((cycle.escalation, task.id))
    for (department, key), missing in silent.items():
        sends.append(
            _send(
                SendKind.ESCALATION,
                f"escalation:{key}:dept{department}",
                max(moment for moment, _ in missing),
                Audience.GROUP,
                department_id=department,
                cycle_key=key,
                task_ids=tuple(sorted({task_id for _, task_id in missing})),
            )
        )
    return sends


def _prompt_and_nudges(task_id: int, department: int, cycle: _Cycle) -> list[PlannedSend]:
    common = {
        "task_id": task_id,
        "department_id": department,
        "cycle_key": cycle.key,
        "deadline": cycle.due_on,
    }
    stem = f"{cycle.key}:task{task_id}:dept{department}"
    sends = [
        _send(SendKind.PROMPT, f"prompt:{stem}", cycle.prompt_at, Audience.DEPARTMENT, **common)
    ]
    sends += [
        _send(
            SendKind.NUDGE, f"nudge:{stem}:n{n}", moment, Audience.DEPARTMENT, attempt=n, **common
        )
        for n, moment in enumerate(cycle.nudges, start=1)
    ]
    return sends


def _reminder_times(
    deadline: date, config: ScheduleConfig, calendar: WorkCalendar
) -> list[tuple[int, datetime]]:
    """(days before, local time) of a deadline's reminders, one per landing day, most urgent."""
    landing: dict[date, tuple[int, datetime]] = {}
    for days in (*config.reminder_days, 0, -1):
        nominal = datetime.combine(deadline - timedelta(days), config.send_time, tzinfo=config.tz)
        moment = next_allowed(nominal, config.send_time, calendar, config)
        landing[moment.date()] = (days, moment)  # later (more urgent) ones replace earlier
    return sorted(landing.values(), key=lambda item: item[1])


def _label(days: int) -> str:
    return "overdue" if days < 0 else f"d{days}"


def _reminders(
    inputs: ScheduleInputs, config: ScheduleConfig, calendar: WorkCalendar
) -> list[PlannedSend]:
    sends: list[PlannedSend] = []
    for task in inputs.tasks:
        departments = _departments(task, config)
        for deadline, target_ids in _deadlines(task.deadline, task.targets).items():
            for days, moment in _reminder_times(deadline, config, calendar):
                sends += [
                    _send(
                        SendKind.REMINDER,
                        f"reminder:task{task.id}:{deadline}:{_label(days)}:dept{department}",
                        moment,
                        Audience.DEPARTMENT,
                        task_id=task.id,
                        department_id=department,
                        deadline=deadline,
                        days_before=days,
                        target_ids=target_ids,
                    )
                    for department in departments
                ]
    for plan in inputs.plans:
        for deadline, target_ids in _deadlines(None, plan.goals).items():
            sends += [
                _send(
                    SendKind.REMINDER,
                    f"reminder:plan{plan.id}:{deadline}:{_label(days)}",
                    moment,
                    Audience.GROUP,
                    plan_id=plan.id,
                    deadline=deadline,
                    days_before=days,
                    target_ids=target_ids,
                )
                for days, moment in _reminder_times(deadline, config, calendar)
            ]
    return sends


def _deadlines(
    own: date | None, targets: Sequence[tuple[int, date]]
) -> dict[date, tuple[int, ...]]:
    """Deadline -> the targets due then; the owner's own deadline first (with no targets)."""
    result: dict[date, list[int]] = {own: []} if own else {}
    for target_id, deadline in targets:
        result.setdefault(deadline, []).append(target_id)
    return {deadline: tuple(ids) for deadline, ids in result.items()}


def _summaries(
    start: datetime, end: datetime, config: ScheduleConfig, calendar: WorkCalendar
) -> list[PlannedSend]:
    tz, at = config.tz, config.summary_time
    first = start.astimezone(tz).date() - _SUMMARY_LOOKBACK
    first += timedelta((config.summary_weekday - first.weekday()) % 7)
    sends = []
    for day in _every(first, end.astimezone(tz).date(), timedelta(7)):
        year, week, _ = day.isocalendar()
        key = f"{year}-W{week:02d}"
        moment = next_allowed(datetime.combine(day, at, tzinfo=tz), at, calendar, config)
        sends.append(
            _send(SendKind.SUMMARY, f"summary:{key}", moment, Audience.GROUP, cycle_key=key)
        )
    return sends
