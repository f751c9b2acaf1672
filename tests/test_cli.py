"""The `duban` command line: parse, import (twice, revised), show, and every error path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data" / "duban.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{path}")
    monkeypatch.chdir(tmp_path)  # no stray .env is read from the repository
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_json_returns_the_18_tasks(capsys):
    code, out, _ = run(capsys, "plan", "parse", str(EXAMPLE), "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data["tasks"]) == 18
    assert data["doc_number"] == "长政办发〔2023〕65号"
    assert data["horizon"] == "2027-12-31"
    first = data["tasks"][0]
    assert first["units"][0] == {
        "name": "县发改局",
        "role": "lead",
        "aliases": [],
        "kind": "agency",
    }


def test_parse_table_is_readable(capsys):
    code, out, _ = run(capsys, "plan", "parse", str(EXAMPLE))
    assert code == 0
    assert "18 tasks, 34 units" in out
    assert "累计筹集保障性租赁住房 ≥ 9000 套 by 2027-12-31" in out


def test_import_twice_reports_no_change_the_second_time(capsys, database):
    code, out, _ = run(capsys, "plan", "import", str(EXAMPLE))
    assert code == 0
    assert out.startswith("Imported 长政办发〔2023〕65号: 18 tasks, 34 departments, 18 targets")
    code, out, _ = run(capsys, "plan", "import", str(EXAMPLE))
    assert code == 0
    assert out.startswith("No changes:")


def test_revised_document_prints_what_changed(capsys, database, tmp_path):
    run(capsys, "plan", "import", str(EXAMPLE))
    revised = EXAMPLE.read_text(encoding="utf-8")
    revised = revised.replace("9000套以上", "9500套以上")
    revised = revised.replace("(责任单位:县教育局)", "(责任单位:县教育局、县财政局)")
    revised_path = tmp_path / "revised.txt"
    revised_path.write_text(revised, encoding="utf-8")
    code, out, _ = run(capsys, "plan", "import", str(revised_path))
    assert code == 0
    assert out.startswith("Updated 长政办发〔2023〕65号")
    assert (
        "Task 2.4.1 建设“学有所教”高质量教育体系 units: "
        "县教育局(牵头) → 县教育局(牵头)、县财政局(配合)" in out
    )
    assert (
        "Task 2.1.3 target changed: 累计筹集保障性租赁住房 ≥ 9000 套 by 2027-12-31 → "
        "累计筹集保障性租赁住房 ≥ 9500 套 by 2027-12-31" in out
    )
    assert "New departments: 县财政局" in out


def test_show_and_departments(capsys, database):
    run(capsys, "plan", "import", str(EXAMPLE))
    code, out, _ = run(capsys, "departments")
    assert code == 0
    assert "34 departments" in out
    code, out, _ = run(capsys, "plan", "show", "--department", "县数改办")  # an alias
    assert code == 0
    assert out.startswith("县委改革办 (1 tasks)")
    assert "2.5.3" in out and "配合 support" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"\xff\xfe\xfa\xfb" * 50, "not UTF-8 or GB18030"),
        ("一、总体要求\n没有任务。\n".encode(), "no tasks found"),
    ],
)
def test_a_bad_file_gets_one_line_a_non_zero_exit_and_no_database(
    capsys, database, tmp_path, content, message
):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    code, out, err = run(capsys, "plan", "import", str(bad))
    assert code != 0
    assert out == ""
    assert err.count("\n") == 1 and message in err and err.startswith("duban: error:")
    assert not database.exists()  # parsed before the database is even opened


def test_a_bad_file_leaves_an_existing_database_untouched(capsys, database, tmp_path):
    run(capsys, "plan", "import", str(EXAMPLE))
    before = database.read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text("一、任务\n1.建设。到2027年完成。(责任单位:县建设局\n", encoding="utf-8")
    code, _, err = run(capsys, "plan", "import", str(bad))
    assert code != 0 and "unclosed" in err
    assert database.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "parse", "/no/such/file.txt"], "no such file"),
        (["plan", "parse", "."], "is a directory"),
    ],
)
def test_file_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code != 0 and message in err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE: unknown timezone"),
        ("ADMIN_IDS", "12,abc", "ADMIN_IDS: expected comma-separated numeric"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL: expected sqlite://"),
        ("TELEGRAM_API_URL", "not a url", "TELEGRAM_API_URL: expected an http(s) URL"),
        ("COORDINATOR_CHAT_ID", "group", "COORDINATOR_CHAT_ID:"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_the_variable(
    capsys, database, monkeypatch, variable, value, message
):
    monkeypatch.setenv(variable, value)
    code, _, err = run(capsys, "departments")
    assert code != 0
    assert err.startswith(f"duban: error: {message}") and err.count("\n") == 1


def test_database_url_with_a_password_is_never_echoed(capsys, database, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@db/x")
    _, _, err = run(capsys, "departments")
    assert "hunter2" not in err


def test_run_without_a_token_says_how_to_get_one(capsys, database, monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", "")
    code, _, err = run(capsys, "run")
    assert code != 0
    assert "BOT_TOKEN" in err and "@BotFather" in err and err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "frobnicate"])
    assert exit_info.value.code == 2


def test_python_dash_m_bot_runs_the_same_cli():
    result = subprocess.run(
        [sys.executable, "-m", "bot", "plan", "parse", str(EXAMPLE), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["tasks"]) == 18


async def test_settings_keep_their_timezone_after_the_database_opens(tmp_path, monkeypatch):
    from bot.settings import load_settings
    from storage.db import close_db, init_db

    monkeypatch.delenv("TIMEZONE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TIMEZONE=Europe/Paris\n", encoding="utf-8")
    await init_db(f"sqlite://{tmp_path / 'db.sqlite3'}")
    try:
        assert load_settings().timezone == "Europe/Paris"  # not Tortoise's UTC
    finally:
        await close_db()
