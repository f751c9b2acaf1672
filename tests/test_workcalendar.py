"""China's working calendar: the package's holidays and 调休, the coordinators' file, fallback."""

from __future__ import annotations

from datetime import date

import pytest

from bot.workcalendar import CalendarError, CalendarExtra, DayKind, WorkCalendar

CALENDAR_2027 = """\
# 国务院办公厅关于2027年部分节假日安排的通知 (an example, not the real one)
year 2027
2027-01-01 holiday 元旦
2027-02-09..2027-02-15 holiday 春节   # both ends included
2027-02-07 workday 春节调休
2027-10-01..2027-10-07 放假 国庆节
2027-10-09 上班
"""


def test_national_day_2026_is_a_holiday_and_the_8th_a_working_day():
    calendar = WorkCalendar()
    assert not any(calendar.is_workday(date(2026, 10, day)) for day in range(1, 8))
    assert calendar.is_workday(date(2026, 10, 8))
    assert calendar.next_workday(date(2026, 9, 30)) == date(2026, 10, 8)
    assert calendar.workday_on_or_after(date(2026, 10, 1)) == date(2026, 10, 8)
    assert calendar.workday_on_or_after(date(2026, 10, 8)) == date(2026, 10, 8)


def test_make_up_sunday_2026_09_20_is_a_working_day():
    calendar = WorkCalendar()
    sunday = date(2026, 9, 20)
    assert sunday.weekday() == 6
    assert calendar.is_workday(sunday)
    assert calendar.next_workday(date(2026, 9, 19)) == sunday
    assert not calendar.is_workday(date(2026, 9, 27))  # an ordinary Sunday


def test_2027_without_a_file_falls_back_to_monday_to_friday_and_is_reported():
    calendar = WorkCalendar()
    assert calendar.covers(2026) and not calendar.covers(2027)
    assert calendar.uncovered_years(range(2025, 2029)) == [2027, 2028]
    assert calendar.is_workday(date(2027, 1, 1))  # a Friday: New Year unknown, so a working day
    assert not calendar.is_workday(date(2027, 1, 2))  # Saturday
    assert calendar.next_workday(date(2027, 1, 1)) == date(2027, 1, 4)


def test_a_2027_file_is_respected_and_covers_the_year():
    extra = CalendarExtra.parse(CALENDAR_2027)
    calendar = WorkCalendar(extra)
    assert calendar.covers(2027)
    assert calendar.uncovered_years(range(2026, 2028)) == []
    assert not calendar.is_workday(date(2027, 1, 1))
    assert not any(calendar.is_workday(date(2027, 2, day)) for day in (9, 10, 11, 12, 15))
    assert calendar.is_workday(date(2027, 2, 7))  # a Sunday, made a working day
    assert calendar.is_workday(date(2027, 10, 9))  # a Saturday, 上班
    assert calendar.next_workday(date(2027, 9, 30)) == date(2027, 10, 8)
    assert calendar.is_workday(date(2027, 3, 1))  # an unlisted Monday
    assert not calendar.is_workday(date(2027, 3, 6))  # an unlisted Saturday
    assert calendar.is_workday(date(2026, 9, 20))  # the package still answers for 2026


def test_a_file_may_correct_a_year_the_package_knows():
    extra = CalendarExtra.parse("year 2026\n2026-10-08 holiday correction\n")
    calendar = WorkCalendar(extra)
    assert not calendar.is_workday(date(2026, 10, 8))
    assert calendar.is_workday(date(2026, 10, 9))  # the rest of 2026 from the package
    assert not calendar.is_workday(date(2026, 10, 1))


def test_without_the_package_every_year_is_uncovered():
    calendar = WorkCalendar(use_package=False)
    assert calendar.uncovered_years([2026]) == [2026]
    assert calendar.is_workday(date(2026, 10, 1))  # Monday to Friday only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("year 2027\n2027-01-01 feast", "calendar:2: expected 'holiday' or 'workday'"),
        ("year 2027\n2027-02-30 holiday", "calendar:2: '2027-02-30' is not a date"),
        ("year 2027\n2027/01/01 holiday", "calendar:2: expected 'year YYYY'"),
        ("year 2027\n2027-01-01", "calendar:2: expected 'year YYYY'"),
        ("year 2027\n2027-10-07..2027-10-01 holiday", "runs backwards"),
        ("year 2027\n2027-01-01..2027-03-01 holiday", "longer than 31 days"),
        ("2027-01-01 holiday", "calendar:1: 2027-01-01 is in 2027, which the file does not"),
        ("year 2027\n2027-01-01 holiday\n\n2027-01-01 holiday", "already listed on line 2"),
        ("year 2027\n2027-02-08 workday", "2027-02-08 is a Monday: a make-up working day"),
        ("year 1999", "calendar:1: year 1999 is out of range"),
        ("year 27", "calendar:1: expected 'year YYYY'"),
    ],
)
def test_bad_files_are_refused_with_one_line(text, message):
    with pytest.raises(CalendarError) as caught:
        CalendarExtra.parse(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_source_name_leads_the_error():
    with pytest.raises(CalendarError, match=r"^holidays-2027\.txt:1: "):
        CalendarExtra.parse("nonsense", source="holidays-2027.txt")


def test_comments_blank_lines_and_notes_are_kept_apart():
    extra = CalendarExtra.parse(CALENDAR_2027)
    assert extra.years == {2027}
    assert extra.days[date(2027, 2, 7)] is DayKind.WORKDAY
    assert extra.entries[1].note == "春节"
    assert len(extra.days) == 1 + 7 + 1 + 7 + 1


def test_a_range_across_new_year_needs_both_years_and_is_split():
    with pytest.raises(CalendarError, match="2028-01-01 is in 2028"):
        CalendarExtra.parse("year 2027\n2027-12-31..2028-01-02 holiday")
    extra = CalendarExtra.parse("year 2027\nyear 2028\n2027-12-31..2028-01-02 holiday 元旦")
    assert [(entry.start, entry.end) for entry in extra.entries] == [
        (date(2027, 12, 31), date(2027, 12, 31)),
        (date(2028, 1, 1), date(2028, 1, 2)),
    ]
    assert extra.to_text(2028) == "year 2028\n2028-01-01..2028-01-02 holiday 元旦\n"


def test_text_round_trip_and_merging_replaces_whole_years():
    extra = CalendarExtra.parse(CALENDAR_2027)
    again = CalendarExtra.parse(extra.to_text())
    assert again.days == extra.days and again.years == extra.years
    corrected = CalendarExtra.parse("year 2027\n2027-05-01..2027-05-05 holiday 劳动节")
    later = CalendarExtra.parse("year 2028\n2028-01-01 holiday")
    merged = extra.merged(later).merged(corrected)
    assert merged.years == {2027, 2028}
    assert date(2027, 1, 1) not in merged.days  # 2027 was replaced as a whole
    assert merged.days[date(2027, 5, 3)] is DayKind.HOLIDAY
    assert merged.days[date(2028, 1, 1)] is DayKind.HOLIDAY


def test_a_calendar_without_working_days_fails_loudly(monkeypatch):
    monkeypatch.setattr("bot.workcalendar._SEARCH_LIMIT", 5)
    calendar = WorkCalendar(CalendarExtra.parse(CALENDAR_2027))
    with pytest.raises(CalendarError, match="no working day within 5 days of 2027-10-01"):
        calendar.workday_on_or_after(date(2027, 10, 1))
