"""`duban invite DEPARTMENT`: a single-use invitation from the command line, and its errors."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest

from bot.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
_START = re.compile(r"^  /start ([A-Za-z0-9_-]{20,64})$", re.MULTILINE)


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data" / "duban.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{path}")
    monkeypatch.setenv("TIMEZONE", "Asia/Shanghai")
    monkeypatch.chdir(tmp_path)  # no stray .env is read from the repository
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def test_invite_before_any_plan_says_to_import_one(capsys, database):
    code, out, err = run(capsys, "invite", "县建设局")
    assert code == 1 and out == ""
    assert err == "duban: error: no departments yet: import a plan first (duban plan import FILE)\n"


def test_invite_prints_the_start_command_and_stores_only_a_hash(capsys, database, monkeypatch):
    run(capsys, "plan", "import", str(EXAMPLE))
    # Tortoise's init writes TIMEZONE=UTC into os.environ; a real `duban invite` is a new process.
    monkeypatch.setenv("TIMEZONE", "Asia/Shanghai")
    code, out, err = run(capsys, "invite", "县建设局")
    assert code == 0, err
    assert out.startswith("Invitation to join 县建设局 as liaison (single use, expires ")
    assert "Asia/Shanghai" in out
    token = _START.search(out).group(1)
    assert "t.me" not in out  # the bot has never run: its username is unknown
    assert "run the bot once" in err and err.count("\n") == 1
    rows = _rows(database, "SELECT token_sha256, used_at, created_by FROM invite_tokens")
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), None, None)]
    assert token not in database.read_bytes().decode("latin-1")


def test_invite_prints_the_deep_link_once_the_bot_username_is_known(capsys, database):
    run(capsys, "plan", "import", str(EXAMPLE))
    with sqlite3.connect(database) as connection:  # what `duban run` stores at start-up
        connection.execute(
            "INSERT INTO bot_settings (key, value, updated_at) "
            "VALUES ('bot_username', 'duban_bot', '2026-11-28 00:00:00+00:00')"
        )
    code, out, err = run(capsys, "invite", "文明办", "--days", "30", "--lead")
    assert code == 0, err
    assert err == ""
    assert out.startswith("Invitation to join 县委宣传部 as lead liaison")  # found by alias
    token = _START.search(out).group(1)
    assert f"  https://t.me/duban_bot?start={token}\n" in out
    assert _rows(database, "SELECT as_lead FROM invite_tokens") == [(1,)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["建设"], "duban: error: no department is called '建设'; closest: 县建设局\n"),
        (["nowhere"], "duban: error: no department is called 'nowhere' (see: duban departments)\n"),
        (["县建设局", "--days", "0"], "duban: error: --days: expected 1 to 365, got 0\n"),
        (["县建设局", "--days", "400"], "duban: error: --days: expected 1 to 365, got 400\n"),
    ],
)
def test_invite_errors_are_one_line(capsys, database, argv, message):
    run(capsys, "plan", "import", str(EXAMPLE))
    code, out, err = run(capsys, "invite", *argv)
    assert (code, out, err) == (1, "", message)
    assert _rows(database, "SELECT COUNT(*) FROM invite_tokens") == [(0,)]


def test_invite_with_an_unreachable_database_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgres://duban@127.0.0.1:1/duban")
    code, _out, err = run(capsys, "invite", "县建设局")
    assert code == 1
    assert err.startswith("duban: error: database unreachable") and err.count("\n") == 1
