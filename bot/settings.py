"""One `Settings` object, read from the environment and `.env`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite://data/duban.sqlite3"
SUPPORTED_LOCALES = ("zh", "en")
_DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "asyncpg", "psycopg")
_REDIS_SCHEMES = ("redis", "rediss")


class ConfigError(Exception):
    """A setting has a wrong value; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = DEFAULT_DATABASE_URL
    # Conversation (FSM) state in Redis, so a restart does not lose a half-written report;
    # in memory when unset.
    redis_url: str | None = None
    timezone: str = "Asia/Shanghai"
    default_locale: str = "zh"
    admin_ids: Annotated[tuple[int, ...], NoDecode] = Field(default=())
    coordinator_chat_id: int | None = None
    # Webhook mode when WEBHOOK_URL is set (the public HTTPS URL Telegram posts to); long polling
    # otherwise. The aiohttp server listens on WEBHOOK_HOST:WEBHOOK_PORT behind your proxy.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    # On SIGTERM, how long updates already taken in may run before they are cancelled (and so
    # left unconfirmed: Telegram delivers them again after the restart).
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=600)
    # Scheduled prompts, reminders, nudges and summaries; off only for tests of other features
    # (their fixtures must not depend on which day the suite runs). Off, the sender still runs:
    # notifications to people (bot.notices) and unreachable notices still go out.
    scheduling: bool = True

    # Scheduling (bot.schedule.ScheduleConfig.from_settings reads these), in `timezone`.
    # quiet_hours comes before send_time and summary_time: their check reads it.
    quiet_hours: str = "21:00-08:00"  # sends falling here move to the next working morning
    send_time: str = "09:00"  # prompts, reminders, nudges, escalations
    reminder_days: str = "30,7,1"  # days before a deadline (plus on the day and overdue)
    max_nudges: int = Field(default=3, ge=0, le=10)  # then the department is escalated
    summary_weekday: str = "MO"
    summary_time: str = "09:00"
    default_reporting_rule: str = "monthly:20:25"  # when the plan names no cycle
    report_roles: str = "lead,support"  # who is prompted
    planning_horizon_days: int = Field(default=2, ge=1, le=31)  # sends written ahead
    # Sending (bot.delivery.SenderLimits.from_settings): below Telegram's limits.
    # Rates are not capped here: a local Bot API server or the emulator may allow more.
    send_rate_per_second: float = Field(default=25.0, gt=0)  # Telegram: about 30 overall
    send_per_chat_per_second: float = Field(default=1.0, gt=0)  # Telegram: about 1 per chat
    send_per_group_per_minute: float = Field(default=18.0, gt=0)  # Telegram: 20 per group
    send_max_in_flight: int = Field(default=16, ge=1, le=256)
    send_max_attempts: int = Field(default=5, ge=1, le=100)
    send_backoff_seconds: float = Field(default=5.0, ge=0, le=3600)
    send_staleness_hours: float = Field(default=24.0, gt=0, le=24 * 30)

    @field_validator(
        "bot_token",
        "coordinator_chat_id",
        "webhook_url",
        "webhook_secret",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError(f"expected an https:// URL Telegram can reach, got {value!r}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's rule for secret_token: 1-256 characters A-Z, a-z, 0-9, _ and -.
        allowed = re.compile(r"[A-Za-z0-9_-]{1,256}")
        if value is not None and not allowed.fullmatch(value.get_secret_value()):
            raise ValueError("use 1-256 characters from A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected an http(s) URL such as https://api.telegram.org, got {value!r}"
            )
        try:
            port = parts.port  # ValueError when not a number or out of 0-65535
        except ValueError:
            port = 0
        if port == 0:
            # The value is not echoed: a URL may carry a password (or, mistyped, the token).
            raise ValueError("the port must be a number from 1 to 65535")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _DATABASE_SCHEMES:
            # The value is not echoed: a database URL may carry a password.
            raise ValueError(
                f"expected sqlite://PATH or postgres://USER@HOST:PORT/DB "
                f"(scheme {scheme or 'missing'!r} is not supported)"
            )
        if scheme != "sqlite" and not urlsplit(value).hostname:
            raise ValueError("the database URL names no host")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _REDIS_SCHEMES:
            # The value is not echoed: a Redis URL may carry a password.
            raise ValueError(
                f"expected redis://[:PASSWORD@]HOST:PORT/DB or rediss://... "
                f"(scheme {scheme or 'missing'!r} is not supported)"
            )
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError("the Redis URL has a malformed host or port") from None
        if not parts.hostname:
            raise ValueError("the Redis URL names no host")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"the Redis database must be a number, got {database!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _check_locale(cls, value: str) -> str:
        if value not in SUPPORTED_LOCALES:
            raise ValueError(f"expected one of {', '.join(SUPPORTED_LOCALES)}, got {value!r}")
        return value

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            bad = [item for item in items if not item.lstrip("-").isdigit()]
            if bad:
                raise ValueError(
                    f"expected comma-separated numeric Telegram user ids, got {bad[0]!r}"
                )
            return tuple(int(item) for item in items)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        from bot.schedule import parse_quiet_hours  # noqa: PLC0415 - keep settings light

        start, end = parse_quiet_hours(value)
        if start == end:
            raise ValueError(f"quiet hours start and end at the same time: {value!r}")
        return f"{start:%H:%M}-{end:%H:%M}"

    @field_validator("send_time", "summary_time")
    @classmethod
    def _check_clock(cls, value: str, info: ValidationInfo) -> str:
        from bot.schedule import parse_clock, parse_quiet_hours  # noqa: PLC0415

        clock = parse_clock(value)
        quiet = info.data.get("quiet_hours")
        if quiet is not None:
            start, end = parse_quiet_hours(quiet)
            inside = start <= clock < end if start <= end else clock >= start or clock < end
            if inside:
                raise ValueError(f"{clock:%H:%M} falls in QUIET_HOURS {quiet}")
        return f"{clock:%H:%M}"

    @field_validator("reminder_days")
    @classmethod
    def _check_reminder_days(cls, value: str) -> str:
        from bot.schedule import parse_days  # noqa: PLC0415

        return ",".join(str(day) for day in parse_days(value))

    @field_validator("summary_weekday")
    @classmethod
    def _check_weekday(cls, value: str) -> str:
        from bot.schedule import WEEKDAYS  # noqa: PLC0415

        code = value.strip().upper()
        if code not in WEEKDAYS:
            raise ValueError(f"expected one of {', '.join(WEEKDAYS)}, got {value!r}")
        return code

    @field_validator("default_reporting_rule")
    @classmethod
    def _check_rule(cls, value: str) -> str:
        from bot.schedule import ReportingRule  # noqa: PLC0415

        if not value.strip():
            raise ValueError("empty: use e.g. monthly:20:25, weekly:MO:FR or RRULE:...")
        ReportingRule.parse(value)  # RuleError is a ValueError with a one-line message
        return value.strip()

    @field_validator("report_roles")
    @classmethod
    def _check_roles(cls, value: str) -> str:
        from bot.schedule import parse_roles  # noqa: PLC0415

        roles = parse_roles(value)
        return ",".join(role for role in ("lead", "support") if role in roles)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def sqlite_path(self) -> Path | None:
        """The SQLite file behind `database_url`, or None for a server database or `:memory:`."""
        if not self.database_url.startswith("sqlite://"):
            return None
        path = self.database_url.removeprefix("sqlite://").split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)


# Tortoise ORM writes TIMEZONE=UTC into the process environment when it starts (its own notion of
# the database timezone) and never restores it, which would silently turn every Settings read
# after the database opened into UTC. So settings read TIMEZONE as the process started with it.
_TIMEZONE_AT_START = os.environ.get("TIMEZONE")
_TORTOISE_TIMEZONE = "UTC"  # what storage.db asks Tortoise for


@contextmanager
def _timezone_as_at_start() -> Iterator[None]:
    current = os.environ.get("TIMEZONE")
    if current == _TIMEZONE_AT_START or current != _TORTOISE_TIMEZONE:
        yield
        return
    if _TIMEZONE_AT_START is None:
        del os.environ["TIMEZONE"]
    else:
        os.environ["TIMEZONE"] = _TIMEZONE_AT_START
    try:
        yield
    finally:
        if current is None:
            os.environ.pop("TIMEZONE", None)
        else:
            os.environ["TIMEZONE"] = current


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one line that names the variable."""
    try:
        with _timezone_as_at_start():
            return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{variable}: {message}") from None
