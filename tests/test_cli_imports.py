"""The CLI commands that do not talk to Telegram never import aiogram.

Each command runs for real, `python -X importtime -m bot ...` in a fresh interpreter on a scratch
database, and every module the interpreter imported (importtime lists each one once) is checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"
CALENDAR = "year 2031\n2031-01-01 holiday 元旦\n2031-01-05 workday\n"
SUMMARY_NEEDS_AIOGRAM = pytest.mark.xfail(
    strict=True,
    reason="the summary renders through aiogram.utils.i18n (bot.summary_render, bot.chart): "
    "moving its gettext off aiogram is part of issue 11's layering, not a local fix",
)

# (command, whether the example plan is imported first)
COMMANDS = [
    pytest.param(["plan", "parse", str(EXAMPLE)], False, id="plan-parse"),
    pytest.param(["plan", "parse", str(EXAMPLE), "--json"], False, id="plan-parse-json"),
    pytest.param(["plan", "import", str(EXAMPLE)], False, id="plan-import"),
    pytest.param(["plan", "import", str(EXAMPLE), "--dry-run"], True, id="plan-import-dry-run"),
    pytest.param(["plan", "show"], True, id="plan-show"),
    pytest.param(["plan", "show", "--department", "县发改局"], True, id="plan-show-department"),
    pytest.param(["departments"], True, id="departments"),
    pytest.param(["department", "rename", "县发改局", "县发改委"], True, id="department-rename"),
    pytest.param(["department", "merge", "县科技局", "县经信局"], True, id="department-merge"),
    pytest.param(["preview", "--days", "40"], True, id="preview"),
    pytest.param(["summary"], True, id="summary", marks=SUMMARY_NEEDS_AIOGRAM),
    pytest.param(
        ["summary", "--chart", "chart.png"], True, id="summary-chart", marks=SUMMARY_NEEDS_AIOGRAM
    ),
    pytest.param(["calendar", "load", "calendar.txt"], False, id="calendar-load"),
    pytest.param(["calendar", "show"], False, id="calendar-show"),
    pytest.param(["calendar", "show", "2031"], False, id="calendar-show-year"),
    pytest.param(["invite", "县发改局"], True, id="invite"),
]


def imported_modules(importtime_stderr: str) -> set[str]:
    """The modules `-X importtime` reports: `import time: self | cumulative | name`."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def test_imported_modules_reads_importtime_lines():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   aiogram.utils\n"
        "duban: error: something\n"
    )
    assert imported_modules(stderr) == {"imported package", "aiogram.utils"}


@pytest.mark.parametrize(("argv", "with_plan"), COMMANDS)
def test_command_does_not_import_aiogram(argv, with_plan, tmp_path, monkeypatch, capsys):
    database_url = f"sqlite://{tmp_path / 'duban.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TIMEZONE", "Asia/Shanghai")
    monkeypatch.chdir(tmp_path)  # no stray .env is read from the repository
    (tmp_path / "calendar.txt").write_text(CALENDAR, encoding="utf-8")
    if with_plan:
        assert main(["plan", "import", str(EXAMPLE)]) == 0
        capsys.readouterr()

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot", *argv],
        cwd=tmp_path,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, errors
    modules = imported_modules(done.stderr)
    assert "bot.cli" in modules  # the command ran through the CLI, and importtime was read
    aiogram = sorted(name for name in modules if name == "aiogram" or name.startswith("aiogram."))
    assert not aiogram, f"duban {' '.join(argv)} imported {aiogram[:5]} …"
