"""China's working calendar: which days are working days (工作日), with holidays and make-up
working days (调休).

Sources, in order:

1. the coordinators' additions (`CalendarExtra`, parsed from the calendar file format below): a
   year they declare is covered, and each listed day overrides whatever the other sources say;
2. the `chinesecalendar` package (import name `chinese_calendar`), which knows the State
   Council's schedule up to the latest announced year;
3. Monday to Friday, for a year neither covers. Such a year is *uncovered*: `uncovered_years`
   names it so the bot can say so once to the coordination group instead of guessing silently.

Calendar file format (UTF-8 text, one item per line; `#` starts a comment; blank lines are
ignored)::

    # 国务院办公厅关于2027年部分节假日安排的通知
    year 2027                                  # this file holds 2027's complete schedule
    2027-01-01 holiday 元旦
    2027-02-06..2027-02-12 holiday 春节      # a range, both ends included
    2027-02-14 workday 春节调休               # a make-up working day on a weekend

- `year YYYY` declares a year covered: every entry must lie in a declared year, and a declared
  year's unlisted days follow Monday to Friday (or the package, for a year it knows: the file
  then corrects it day by day).
- `DATE holiday [note]` and `DATE..DATE holiday [note]`: days off. `workday`: a make-up working
  day, which falls on a Saturday or Sunday (a weekday is a working day already). 放假 and 上班
  may be written instead of holiday and workday.
- Dates are ISO (YYYY-MM-DD). A range runs forwards and spans at most 31 days (the longest
  holiday is 8 or 9). A day listed twice is an error, as is anything else unexpected: the parser
  rejects the file with a one-line message naming the line.

Where the additions live: in the database (the bot_settings table, one row per declared year,
see storage/schedule.py), not in a file named by a setting. The people who learn next year's
schedule are the coordinators, in chat, not whoever runs the server; the bot and the `duban`
CLI read the same database; and a redeploy keeps it. The text format above is what a coordinator
sends and what the bot gives back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import cache, lru_cache

import chinese_calendar

MAX_RANGE_DAYS = 31
_SEARCH_LIMIT = 400  # days: next_workday gives up after a year without a working day
_SATURDAY = 5

_YEAR_LINE = re.compile(r"year\s+(?P<year>\d{4})")
_DAY_LINE = re.compile(
    r"(?P<start>\d{4}-\d{2}-\d{2})(?:\.\.(?P<end>\d{4}-\d{2}-\d{2}))?"
    r"\s+(?P<kind>\S+)(?:\s+(?P<note>.*))?"
)


class CalendarError(ValueError):
    """A calendar file or value is wrong; the message is one line."""


class DayKind(StrEnum):
    HOLIDAY = "holiday"  # 放假
    WORKDAY = "workday"  # 调休上班


_KIND_WORDS = {
    "holiday": DayKind.HOLIDAY,
    "放假": DayKind.HOLIDAY,
    "workday": DayKind.WORKDAY,
    "上班": DayKind.WORKDAY,
}


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    start: date
    end: date  # inclusive; equal to start for a single day
    kind: DayKind
    note: str = ""

    def days(self) -> list[date]:
        return [self.start + timedelta(n) for n in range((self.end - self.start).days + 1)]

    def to_line(self) -> str:
        span = self.start.isoformat()
        if self.end != self.start:
            span += f"..{self.end.isoformat()}"
        return f"{span} {self.kind.value}" + (f" {self.note}" if self.note else "")


@dataclass(frozen=True)
class CalendarExtra:
    """Coordinators' additions: the years they declare and the days they list."""

    years: frozenset[int] = frozenset()
    entries: tuple[CalendarEntry, ...] = ()
    days: Mapping[date, DayKind] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, source: str = "calendar") -> CalendarExtra:
        """Parse the calendar file format strictly; errors read `SOURCE:LINE: message`."""
        years: set[int] = set()
        entries: list[tuple[int, CalendarEntry]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                if match := _YEAR_LINE.fullmatch(line):
                    years.add(_year(match["year"]))
                else:
                    entries.append((number, _entry(line)))
            except CalendarError as exc:
                raise CalendarError(f"{source}:{number}: {exc}") from None
        return cls._build(years, entries, source)

    @classmethod
    def _build(
        cls, years: set[int], entries: list[tuple[int, CalendarEntry]], source: str
    ) -> CalendarExtra:
        days: dict[date, DayKind] = {}
        first_line: dict[date, int] = {}
        pieces: list[CalendarEntry] = []
        for number, entry in entries:
            pieces += _split_by_year(entry)
            for day in entry.days():
                where = f"{source}:{number}: {day.isoformat()}"
                if day.year not in years:
                    raise CalendarError(
                        f"{where} is in {day.year}, which the file does not declare "
                        f"(add a line 'year {day.year}')"
                    )
                if day in days:
                    raise CalendarError(f"{where} is already listed on line {first_line[day]}")
                days[day] = entry.kind
                first_line[day] = number
        return cls(frozenset(years), tuple(pieces), days)

    def merged(self, other: CalendarExtra) -> CalendarExtra:
        """These additions with `other`'s years replacing the same years here."""
        kept = [entry for entry in self.entries if entry.start.year not in other.years]
        years = self.years | other.years
        text = "\n".join(
            [*(f"year {year}" for year in sorted(years)), *(e.to_line() for e in kept)]
            + [entry.to_line() for entry in other.entries]
        )
        return CalendarExtra.parse(text)

    def to_text(self, year: int | None = None) -> str:
        """The additions in the file format (only `year`'s when given), ranges kept."""
        years = sorted(self.years if year is None else self.years & {year})
        lines = [f"year {item}" for item in years]
        lines += [
            entry.to_line()
            for entry in sorted(self.entries, key=lambda entry: entry.start)
            if year is None or entry.start.year == year
        ]
        return "\n".join(lines) + "\n"


def _year(text: str) -> int:
    year = int(text)
    if not 2000 <= year <= 2100:
        raise CalendarError(f"year {year} is out of range (2000-2100)")
    return year


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CalendarError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


def _entry(line: str) -> CalendarEntry:
    match = _DAY_LINE.fullmatch(line)
    if match is None:
        raise CalendarError(
            f"expected 'year YYYY', 'YYYY-MM-DD holiday|workday' or "
            f"'YYYY-MM-DD..YYYY-MM-DD holiday|workday', got {line!r}"
        )
    start = _day(match["start"])
    end = _day(match["end"]) if match["end"] else start
    kind = _KIND_WORDS.get(match["kind"].lower())
    if kind is None:
        raise CalendarError(
            f"expected 'holiday' or 'workday' after the date, got {match['kind']!r}"
        )
    if end < start:
        raise CalendarError(f"the range {start}..{end} runs backwards")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise CalendarError(f"the range {start}..{end} is longer than {MAX_RANGE_DAYS} days")
    entry = CalendarEntry(start, end, kind, (match["note"] or "").strip())
    if kind is DayKind.WORKDAY:
        weekdays = [day for day in entry.days() if day.weekday() < _SATURDAY]
        if weekdays:
            raise CalendarError(
                f"{weekdays[0].isoformat()} is a {weekdays[0]:%A}: a make-up working day (调休) "
                "falls on a Saturday or Sunday"
            )
    return entry


def _split_by_year(entry: CalendarEntry) -> list[CalendarEntry]:
    """A range across New Year as one entry per year (each year is stored on its own)."""
    pieces = []
    start = entry.start
    while start.year < entry.end.year:
        pieces.append(CalendarEntry(start, date(start.year, 12, 31), entry.kind, entry.note))
        start = date(start.year + 1, 1, 1)
    return [*pieces, CalendarEntry(start, entry.end, entry.kind, entry.note)]


@cache
def _package_years() -> frozenset[int]:
    holidays = chinese_calendar.holidays
    return frozenset(range(min(holidays).year, max(holidays).year + 1))


@lru_cache(maxsize=4096)
def _package_is_workday(day: date) -> bool:
    # The package's data never changes while the process runs, and each of its answers scans
    # its whole table for the covered range first: a report's cycle asks about a dozen days.
    return bool(chinese_calendar.is_workday(day))


class WorkCalendar:
    """Working days in mainland China. Pure: no I/O after construction."""

    def __init__(self, extra: CalendarExtra | None = None, *, use_package: bool = True) -> None:
        self.extra = extra or CalendarExtra()
        self._package_years = _package_years() if use_package else frozenset()

    def covers(self, year: int) -> bool:
        """True when the official schedule of `year` is known (package or additions)."""
        return year in self._package_years or year in self.extra.years

    def uncovered_years(self, years: Iterable[int]) -> list[int]:
        """The years in `years` that fall back to Monday-Friday, sorted."""
        return sorted({year for year in years if not self.covers(year)})

    def is_workday(self, day: date) -> bool:
        if (kind := self.extra.days.get(day)) is not None:
            return kind is DayKind.WORKDAY
        if day.year in self._package_years:
            return _package_is_workday(day)
        return day.weekday() < _SATURDAY

    def next_workday(self, day: date) -> date:
        """The first working day strictly after `day`."""
        return self.workday_on_or_after(day + timedelta(1))

    def workday_on_or_after(self, day: date) -> date:
        """`day` itself when it is a working day, else the next one."""
        for offset in range(_SEARCH_LIMIT):
            candidate = day + timedelta(offset)
            if self.is_workday(candidate):
                return candidate
        raise CalendarError(f"no working day within {_SEARCH_LIMIT} days of {day.isoformat()}")
