"""`duban preview`, `duban summary` and `duban calendar load|show` on the example plan."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from bot.chart import font_path
from bot.cli import main
from bot.workcalendar import WorkCalendar
from tests.conftest import fetch_rows

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2}) ")
CALENDAR_2027 = """\
# 2027 (an example schedule, not the State Council's)
year 2027
2027-01-01 holiday 元旦
2027-02-06..2027-02-12 放假 春节
2027-02-14 workday 春节调休
2027-10-01..2027-10-07 holiday 国庆节
2027-10-09 上班
"""


@pytest.fixture
def database(database_url, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)  # PostgreSQL with DUBAN_TEST_DATABASE=postgres
    monkeypatch.setenv("TIMEZONE", "Asia/Shanghai")
    monkeypatch.chdir(tmp_path)  # no stray .env is read from the repository
    return database_url


@pytest.fixture
def imported(database, capsys) -> str:
    assert main(["plan", "import", str(EXAMPLE)]) == 0
    capsys.readouterr()
    return database


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def by_day(text: str) -> dict[date, list[str]]:
    days: dict[date, list[str]] = {}
    current = None
    for line in text.splitlines():
        if match := _DAY.match(line):
            current = date.fromisoformat(match[1])
            days[current] = []
        elif line.startswith("  ") and current is not None:
            days[current].append(line.strip())
    return days


# preview ---------------------------------------------------------------------------------------


def test_preview_of_the_example_plan_over_40_days(capsys, imported):
    code, out, err = run(capsys, "preview", "--days", "40", "--from", "2026-09-10T10:00")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith(
        "计划发送 Planned sends 2026-09-10 10:00 – 2026-10-20 10:00 (Asia/Shanghai): "
    )
    assert out.endswith("未发送任何消息 Nothing was sent.\n")
    days = by_day(out)
    calendar = WorkCalendar()
    assert days and all(calendar.is_workday(day) for day in days)
    assert not any(date(2026, 10, 1) <= day <= date(2026, 10, 7) for day in days)  # 国庆
    # Monthly prompts on the 20th at 09:00 (Sunday 2026-09-20 is a make-up working day) ...
    for day in (date(2026, 9, 20), date(2026, 10, 20)):
        prompts = [line for line in days[day] if "进度提示 prompt" in line]
        assert len(prompts) == 58  # every (task, unit) of the 18 tasks
        assert all(line.startswith("09:00  进度提示 prompt  ") for line in days[day])
    # ... nudges from the first working day after the due day (the 25th is a holiday) ...
    assert any(line.startswith("09:00  催报 nudge  ") for line in days[date(2026, 9, 28)])
    # ... and escalations after National Day, all at the configured time.
    assert any("通报 escalation" in line for line in days[date(2026, 10, 8)])
    assert all(line.startswith("09:00  ") for lines in days.values() for line in lines)


def test_preview_uses_the_configured_send_time(capsys, imported, monkeypatch):
    monkeypatch.setenv("SEND_TIME", "10:30")
    code, out, _ = run(capsys, "preview", "--days", "12", "--from", "2026-09-10")
    assert code == 0
    assert all(line.startswith("10:30  进度提示") for line in by_day(out)[date(2026, 9, 20)])


def test_preview_stores_and_sends_nothing(capsys, imported):
    assert run(capsys, "preview", "--days", "40", "--from", "2026-09-10")[0] == 0
    assert fetch_rows(imported, "SELECT count(*) FROM deliveries") == [(0,)]
    code, out, _ = run(capsys, "preview", "--days", "40", "--from", "2026-09-10")
    assert code == 0
    assert "进度提示 prompt" in out  # the same plan again: nothing was marked as done


@pytest.mark.parametrize("days", ["0", "367"])
def test_preview_refuses_a_bad_number_of_days(capsys, database, days):
    code, out, err = run(capsys, "preview", "--days", days)
    assert code == 1 and not out
    assert err == f"duban: error: --days: expected 1 to 366, got {days}\n"


def test_preview_refuses_a_bad_start(capsys, database):
    with pytest.raises(SystemExit) as caught:
        main(["preview", "--from", "next tuesday"])
    assert caught.value.code == 2
    assert "expected YYYY-MM-DD" in capsys.readouterr().err


# summary ---------------------------------------------------------------------------------------


def test_summary_prints_and_writes_the_chart(capsys, imported, tmp_path):
    chart = tmp_path / "out.png"
    code, out, err = run(capsys, "summary", "--date", "2026-09-10", "--chart", str(chart))
    assert code == 0, err
    assert "督办周报" in out
    assert "长政办发〔2023〕65号" in out
    assert "本周报送：0/34 个单位" in out
    assert "<b>" not in out  # plain text, not HTML
    if font_path() is not None:
        assert chart.read_bytes().startswith(b"\x89PNG")


def test_summary_in_english(capsys, imported, monkeypatch):
    monkeypatch.setenv("DEFAULT_LOCALE", "en")
    code, out, _ = run(capsys, "summary", "--date", "2026-09-10")
    assert code == 0
    assert "Weekly summary" in out


def test_summary_before_any_import(capsys, database):
    code, out, _ = run(capsys, "summary")
    assert code == 0
    assert "duban plan import" in out


def test_summary_refuses_a_chart_in_a_missing_folder(capsys, imported, tmp_path):
    code, out, err = run(capsys, "summary", "--chart", str(tmp_path / "nope" / "out.png"))
    assert code == 1 and not out
    assert err.startswith("duban: error: --chart: ") and err.count("\n") == 1


def test_summary_refuses_a_bad_date(capsys, database):
    with pytest.raises(SystemExit) as caught:
        main(["summary", "--date", "2026-13-01"])
    assert caught.value.code == 2
    assert "expected a date YYYY-MM-DD" in capsys.readouterr().err


# calendar --------------------------------------------------------------------------------------


def test_calendar_show_names_the_uncovered_year(capsys, database):
    code, out, _ = run(capsys, "calendar", "show", "2027")
    assert code == 0
    assert out.startswith("2027: NOT covered: Monday to Friday assumed")
    code, out, _ = run(capsys, "calendar", "show", "2026")
    assert out == "2026: covered: chinesecalendar package\n"


def test_calendar_load_then_show_and_preview(capsys, imported, tmp_path):
    source = tmp_path / "2027.txt"
    source.write_text(CALENDAR_2027, encoding="utf-8")
    # Before: 2027 is not covered, and the preview says so.
    _, out, _ = run(capsys, "preview", "--days", "20", "--from", "2026-12-20")
    assert "2027 is not in the holiday calendar" in out

    code, out, err = run(capsys, "calendar", "load", str(source))
    assert code == 0, err
    assert out == (
        "Loaded the working calendar for 2027: 15 holidays, 2 make-up working days (调休).\n"
    )
    code, out, _ = run(capsys, "calendar", "show", "2027")
    assert code == 0
    assert out.startswith("2027: covered: loaded file (duban calendar load)\n")
    assert "2027-02-06..2027-02-12 holiday 春节" in out
    assert "2027-10-09 workday" in out
    _, out, _ = run(capsys, "calendar", "show")
    assert "2027: covered: loaded file" in out
    _, out, _ = run(capsys, "preview", "--days", "20", "--from", "2026-12-20")
    assert "not in the holiday calendar" not in out
    assert date(2027, 1, 1) not in by_day(out)  # 元旦, from the loaded file

    # Loading the year again replaces it.
    source.write_text("year 2027\n2027-01-01 holiday 元旦\n", encoding="utf-8")
    assert run(capsys, "calendar", "load", str(source))[0] == 0
    _, out, _ = run(capsys, "calendar", "show", "2027")
    assert "春节" not in out and "元旦" in out


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("2027-01-01 holiday 元旦\n", "cal.txt:1: 2027-01-01 is in 2027, which the file does not"),
        ("year 2027\n2027-01-01 vacation\n", "cal.txt:2: expected 'holiday' or 'workday'"),
        ("year 2027\n2027-01-04 workday\n", "cal.txt:2: 2027-01-04 is a Monday"),
        ("year 2027\n2027-02-30 holiday\n", "cal.txt:2: '2027-02-30' is not a date"),
        ("year 2027\n2027-02-12..2027-02-06 holiday\n", "runs backwards"),
        ("year 2027\n2027-01-01 holiday\n2027-01-01 holiday\n", "is already listed on line 2"),
        ("year 27\n", "cal.txt:1: expected 'year YYYY'"),
        ("# nothing but a comment\n", "cal.txt: no 'year YYYY' line"),
    ],
)
def test_calendar_load_rejects_a_bad_file_and_stores_nothing(
    capsys, database, tmp_path, content, error
):
    source = tmp_path / "cal.txt"
    source.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "calendar", "load", str(source))
    assert code == 1 and not out
    assert err.startswith("duban: error: ") and err.count("\n") == 1
    assert error in err
    _, out, _ = run(capsys, "calendar", "show", "2027")
    assert out.startswith("2027: NOT covered")


def test_calendar_load_rejects_a_missing_or_binary_file(capsys, database, tmp_path):
    code, _, err = run(capsys, "calendar", "load", str(tmp_path / "none.txt"))
    assert code == 1 and err.endswith("none.txt: no such file\n")
    binary = tmp_path / "cal.bin"
    binary.write_bytes(b"\xff\xfe\x00year 2027")
    code, _, err = run(capsys, "calendar", "load", str(binary))
    assert code == 1 and err.endswith("cal.bin: not UTF-8 text\n")
    code, _, err = run(capsys, "calendar", "load", str(tmp_path))
    assert code == 1 and "is a directory" in err


def test_calendar_show_refuses_an_absurd_year(capsys, database):
    code, out, err = run(capsys, "calendar", "show", "1999")
    assert code == 1 and not out
    assert err == "duban: error: year: expected 2000 to 2100, got 1999\n"
