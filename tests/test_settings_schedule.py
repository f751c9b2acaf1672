"""The scheduling and sending settings: defaults, what the services read, one-line errors."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from bot.delivery import SenderLimits
from bot.plan_model import Role
from bot.schedule import ScheduleConfig
from bot.settings import ConfigError, Settings, load_settings

SCHEDULE_VARIABLES = (
    "QUIET_HOURS",
    "SEND_TIME",
    "REMINDER_DAYS",
    "MAX_NUDGES",
    "SUMMARY_WEEKDAY",
    "SUMMARY_TIME",
    "DEFAULT_REPORTING_RULE",
    "REPORT_ROLES",
    "PLANNING_HORIZON_DAYS",
    "SEND_RATE_PER_SECOND",
    "SEND_PER_CHAT_PER_SECOND",
    "SEND_PER_GROUP_PER_MINUTE",
    "SEND_MAX_IN_FLIGHT",
    "SEND_MAX_ATTEMPTS",
    "SEND_BACKOFF_SECONDS",
    "SEND_STALENESS_HOURS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env from the repository
    monkeypatch.setenv("TIMEZONE", "Asia/Shanghai")
    for name in SCHEDULE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_issues_and_reach_the_services():
    settings = load_settings()
    config = ScheduleConfig.from_settings(settings)
    assert config == ScheduleConfig()
    assert config.send_time == time(9) and config.reminder_days == (30, 7, 1)
    assert config.max_nudges == 3 and (config.quiet_start, config.quiet_end) == (time(21), time(8))
    assert config.summary_weekday == 0 and config.summary_time == time(9)
    assert config.default_rule == "monthly:20:25"
    assert config.report_roles == {Role.LEAD, Role.SUPPORT}
    assert settings.planning_horizon_days == 2
    assert SenderLimits.from_settings(settings) == SenderLimits()


def test_values_from_the_environment_are_normalised_and_used(monkeypatch):
    monkeypatch.setenv("SEND_TIME", "8:30")
    monkeypatch.setenv("QUIET_HOURS", "22:00-07:00")
    monkeypatch.setenv("REMINDER_DAYS", "1, 14,7")
    monkeypatch.setenv("SUMMARY_WEEKDAY", "fr")
    monkeypatch.setenv("REPORT_ROLES", "lead")
    monkeypatch.setenv("DEFAULT_REPORTING_RULE", "RRULE:FREQ=MONTHLY;BYMONTHDAY=15;X-DUE=7")
    monkeypatch.setenv("MAX_NUDGES", "0")
    monkeypatch.setenv("SEND_RATE_PER_SECOND", "10")
    monkeypatch.setenv("SEND_STALENESS_HOURS", "6")
    settings = load_settings()
    assert (settings.send_time, settings.reminder_days) == ("08:30", "14,7,1")
    assert (settings.summary_weekday, settings.report_roles) == ("FR", "lead")
    config = ScheduleConfig.from_settings(settings)
    assert config.send_time == time(8, 30) and config.quiet_end == time(7)
    assert config.summary_weekday == 4 and config.report_roles == {Role.LEAD}
    assert config.max_nudges == 0
    limits = SenderLimits.from_settings(settings)
    assert limits.per_second == 10 and limits.staleness == timedelta(hours=6)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("SEND_TIME", "9", "HH:MM"),
        ("SEND_TIME", "25:00", "HH:MM"),
        ("SEND_TIME", "22:00", "QUIET_HOURS"),
        ("SUMMARY_TIME", "07:00", "QUIET_HOURS"),
        ("QUIET_HOURS", "21:00", "HH:MM-HH:MM"),
        ("QUIET_HOURS", "08:00-08:00", "same time"),
        ("REMINDER_DAYS", "30,seven", "30,7,1"),
        ("REMINDER_DAYS", "0", "1-366"),
        ("MAX_NUDGES", "11", "10"),
        ("MAX_NUDGES", "-1", "0"),
        ("SUMMARY_WEEKDAY", "funday", "MO"),
        ("DEFAULT_REPORTING_RULE", "fortnightly", "bad reporting rule"),
        ("DEFAULT_REPORTING_RULE", "monthly:32:25", "bad reporting rule"),
        ("DEFAULT_REPORTING_RULE", "RRULE:FREQ=HOURLY", "bad reporting rule"),
        ("REPORT_ROLES", "boss", "lead"),
        ("REPORT_ROLES", ",", "role"),
        ("PLANNING_HORIZON_DAYS", "0", "1"),
        ("SEND_RATE_PER_SECOND", "0", "greater than 0"),
        ("SEND_PER_CHAT_PER_SECOND", "fast", "number"),
        ("SEND_PER_GROUP_PER_MINUTE", "-3", "greater than 0"),
        ("SEND_MAX_IN_FLIGHT", "0", "1"),
        ("SEND_MAX_ATTEMPTS", "many", "integer"),
        ("SEND_BACKOFF_SECONDS", "-1", "0"),
        ("SEND_STALENESS_HOURS", "0", "greater than 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert words in message


def test_the_cli_reports_a_bad_setting_in_one_line(monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.setenv("MAX_NUDGES", "99")
    assert main(["preview"]) == 1
    out, err = capsys.readouterr()
    assert not out
    assert err.startswith("duban: error: MAX_NUDGES: ") and err.count("\n") == 1


def test_env_example_lists_every_setting():
    from pathlib import Path

    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text("utf-8")
    listed = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line[:40]}
    missing = {name.upper() for name in Settings.model_fields} - listed
    assert not missing
    # Each variable has a comment above it, and the example itself is valid.
    lines = example.splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#") and "=" in line:
            above = lines[index - 1]
            assert above.startswith("#") or "=" in above, line
    settings = Settings(_env_file=Path(__file__).resolve().parent.parent / ".env.example")
    assert settings.default_reporting_rule == "monthly:20:25"
