"""Database set-up: Tortoise configuration, start-up with migrations, shutdown.

The schema comes from the committed aerich migrations in storage/migrations/models, never from
`generate_schemas`, so a fresh database and an upgraded one end up identical. The same files serve
SQLite and PostgreSQL: each carries one SQL script per dialect (see storage/makemigrations.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from aerich import Command
from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE

from bot.settings import DEFAULT_DATABASE_URL
from storage.lease import migration_lock

log = logging.getLogger(__name__)

APP = "models"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MODEL_MODULES = ("storage.models", "aerich.models")  # aerich keeps its version table in the app
SQLITE_BUSY_TIMEOUT_MS = 5000  # a second process (the CLI beside the bot) waits instead of failing


class DatabaseError(RuntimeError):
    """The database cannot be used as configured."""


def _is_sqlite(connection: dict[str, Any]) -> bool:
    return connection["engine"] == "tortoise.backends.sqlite"


def tortoise_config(database_url: str) -> dict[str, Any]:
    """A Tortoise config dict for `database_url` (sqlite://PATH, postgres:// or postgresql://)."""
    connection = expand_db_url(database_url)
    if _is_sqlite(connection):
        # Each key becomes `PRAGMA key=value` on connect. journal_mode=WAL is Tortoise's own
        # default, repeated here because init_db checks that it took effect.
        credentials = connection["credentials"]
        credentials.setdefault("journal_mode", "WAL")
        credentials.setdefault("busy_timeout", SQLITE_BUSY_TIMEOUT_MS)
        credentials.setdefault("foreign_keys", "ON")
    return {
        "connections": {"default": connection},
        "apps": {APP: {"models": list(MODEL_MODULES), "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


# For the aerich CLI (`[tool.aerich] tortoise_orm` in pyproject.toml); building it opens nothing.
AERICH_CONFIG = tortoise_config(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)


async def init_db(database_url: str) -> None:
    """Connect, check SQLite's pragmas, and apply pending migrations.

    The Tortoise context is registered as the global fallback: Tortoise 1.x keeps connections in
    a contextvar, and the bot's handler tasks and scheduler jobs run in contexts that did not
    call init.
    """
    config = tortoise_config(database_url)
    _create_sqlite_folder(config)
    # Every process that opens the database, the CLI too, migrates under one lock: two of them
    # starting at once must not both apply a migration (storage.lease).
    async with migration_lock(database_url):
        await _init_and_migrate(config)


async def _init_and_migrate(config: dict[str, Any]) -> None:
    # Tortoise caches each model's INSERT/DELETE SQL in a module-level dict keyed by connection
    # name and table, not by dialect: after a re-init on the other dialect under the same name
    # (the test suite runs SQLite, then PostgreSQL) it would send "?" placeholders to PostgreSQL.
    EXECUTOR_CACHE.clear()
    await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        await _check_sqlite_pragmas(config)
        await apply_migrations(config)
    except BaseException:
        await close_db()
        raise


async def close_db() -> None:
    await Tortoise.close_connections()


async def apply_migrations(config: dict[str, Any]) -> list[str]:
    """Apply the committed migrations the database has not seen yet; return their file names."""
    command = Command(tortoise_config=config, app=APP, location=str(MIGRATIONS_DIR))
    # Not `async with command`: its exit closes the connections init_db has just opened.
    await command.init()
    applied = await command.upgrade(run_in_transaction=True)
    for name in applied:
        log.info("Applied migration %s", name)
    return applied


def dialect() -> str:
    """The current connection's dialect: "sqlite" or "postgres"."""
    return connections.get("default").capabilities.dialect


def _sqlite_file(config: dict[str, Any]) -> Path | None:
    connection = config["connections"]["default"]
    if not _is_sqlite(connection):
        return None
    path = connection["credentials"]["file_path"]
    return None if path in ("", ":memory:") else Path(path)


def _create_sqlite_folder(config: dict[str, Any]) -> None:
    if (path := _sqlite_file(config)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


async def _check_sqlite_pragmas(config: dict[str, Any]) -> None:
    # SQLite ignores a journal mode it cannot use (some network or container file systems) and
    # keeps "delete", where readers block the writer: fail at start, not with "database is
    # locked" under load.
    if _sqlite_file(config) is None:
        return
    connection = connections.get("default")
    _, rows = await connection.execute_query("PRAGMA journal_mode")
    mode = str(rows[0][0]).lower()
    if mode != "wal":
        raise DatabaseError(f"SQLite journal_mode is {mode!r}, expected 'wal'")
