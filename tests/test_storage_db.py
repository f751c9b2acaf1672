"""Database start-up: pragmas, migrations, and agreement between migrations and models."""

from __future__ import annotations

import asyncio
import contextvars
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tortoise import Tortoise, connections
from tortoise.exceptions import OperationalError

import storage.db
from storage.db import APP, MIGRATIONS_DIR, close_db, dialect, init_db, tortoise_config
from storage.makemigrations import Generated, render
from storage.models import Department

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
async def test_sqlite_runs_in_wal_mode_with_busy_timeout(db: str) -> None:
    connection = connections.get("default")
    _, journal = await connection.execute_query("PRAGMA journal_mode")
    _, timeout = await connection.execute_query("PRAGMA busy_timeout")
    _, foreign_keys = await connection.execute_query("PRAGMA foreign_keys")
    assert str(journal[0][0]).lower() == "wal"
    assert timeout[0][0] == 5000
    assert foreign_keys[0][0] == 1
    # Its folder did not exist: init_db created it.
    assert await asyncio.to_thread(Path(db.removeprefix("sqlite://")).exists)


async def test_init_applies_every_committed_migration_once(db: str) -> None:
    files = sorted(path.name for path in (MIGRATIONS_DIR / APP).glob("[0-9]*_*.py"))
    assert files, "no migration committed"
    applied = await connections.get("default").execute_query_dict(
        "SELECT version FROM aerich WHERE app = 'models' ORDER BY id"
    )
    assert sorted(row["version"] for row in applied) == files
    await close_db()
    await init_db(db)  # a second start applies nothing and records nothing twice
    again = await connections.get("default").execute_query_dict("SELECT version FROM aerich")
    assert len(again) == len(files)


async def test_connections_are_visible_from_tasks_that_did_not_init(db: str) -> None:
    # Handler tasks and scheduler jobs start in contexts of their own (global fallback).
    await Department.create(name="县发改局", aliases=[])

    async def count() -> int:
        return await Department.filter(name="县发改局").count()

    task = asyncio.get_running_loop().create_task(count(), context=contextvars.Context())
    assert await task == 1


def test_postgres_urls_in_both_spellings_are_accepted() -> None:
    for scheme in ("postgres", "postgresql"):
        config = tortoise_config(f"{scheme}://duban:secret@db.example:5433/duban")
        connection = config["connections"]["default"]
        assert connection["engine"] == "tortoise.backends.asyncpg"
        assert connection["credentials"]["port"] == 5433
        assert connection["credentials"]["database"] == "duban"
    sqlite = tortoise_config("sqlite://data/duban.sqlite3")["connections"]["default"]
    assert sqlite["credentials"]["busy_timeout"] == 5000
    assert sqlite["credentials"]["journal_mode"] == "WAL"


def test_models_have_no_changes_missing_from_the_migrations() -> None:
    # aerich itself, offline, for both dialects, on scratch copies: nothing is written here.
    process = subprocess.run(
        [sys.executable, "-m", "storage.makemigrations", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "No changes detected" in process.stdout


async def test_migrated_schema_equals_the_schema_of_the_models(database_factory) -> None:
    """What the migrations build is what Tortoise would build from the models today."""
    migrated_url = await database_factory()
    await init_db(migrated_url)
    try:
        migrated = await _schema()
    finally:
        await close_db()
    generated_url = await database_factory()
    if generated_url.startswith("sqlite://"):
        Path(generated_url.removeprefix("sqlite://")).parent.mkdir(parents=True)
    await Tortoise.init(config=tortoise_config(generated_url))
    try:
        await Tortoise.generate_schemas(safe=False)
        generated = await _schema()
    finally:
        await Tortoise.close_connections()
    assert migrated == generated


async def _schema() -> dict[str, object]:
    """Tables, columns, indexes and foreign keys.

    Left out: index and constraint names, and column defaults. Tortoise applies defaults in
    Python; aerich adds a database default when a migration adds a NOT NULL column (to fill the
    existing rows), which generate_schemas has no reason to write.
    """
    if dialect() == "sqlite":
        return await _sqlite_schema()
    return await _postgres_schema()


async def _sqlite_schema() -> dict[str, object]:
    connection = connections.get("default")
    query = connection.execute_query_dict
    tables = [
        row["name"]
        for row in await query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    schema: dict[str, object] = {}
    for table in sorted(tables):
        columns = {
            row["name"]: (row["type"], row["notnull"], row["pk"])
            for row in await query(f'PRAGMA table_info("{table}")')
        }
        indexes = set()
        for index in await query(f'PRAGMA index_list("{table}")'):
            if index["origin"] == "pk":
                continue
            names = await query(f'PRAGMA index_info("{index["name"]}")')
            indexes.add((tuple(row["name"] for row in names), bool(index["unique"])))
        foreign_keys = {
            (row["from"], row["table"], row["to"], row["on_delete"])
            for row in await query(f'PRAGMA foreign_key_list("{table}")')
        }
        schema[table] = (columns, indexes, foreign_keys)
    return schema


async def _postgres_schema() -> dict[str, object]:
    query = connections.get("default").execute_query_dict
    columns = await query(
        "SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,"
        " numeric_scale, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    )
    # A unique constraint created with the table and a unique index added by a later migration
    # are the same thing to the application: compare columns and uniqueness only.
    indexes = await query(
        "SELECT t.relname AS table_name, ix.indisunique AS is_unique, ix.indisprimary AS is_pk,"
        " array_agg(a.attname::text ORDER BY k.ord) AS columns"
        " FROM pg_index ix"
        " JOIN pg_class t ON t.oid = ix.indrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'"
        " CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
        " GROUP BY ix.indexrelid, t.relname, ix.indisunique, ix.indisprimary"
    )
    foreign_keys = await query(
        "SELECT c.conrelid::regclass::text AS table_name, pg_get_constraintdef(c.oid) AS definition"
        " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        " WHERE c.contype = 'f' AND n.nspname = 'public'"
    )
    schema: dict[str, object] = {}
    for row in columns:
        table = schema.setdefault(row["table_name"], ({}, set(), set()))
        values = dict(row)
        del values["table_name"]
        table[0][row["column_name"]] = tuple(sorted(values.items()))
    for row in indexes:
        schema[row["table_name"]][1].add((tuple(row["columns"]), row["is_unique"], row["is_pk"]))
    for row in foreign_keys:
        schema[row["table_name"]][2].add(row["definition"])
    return schema


async def test_a_failing_migration_leaves_no_trace(
    database_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite this depends on the BEGIN/COMMIT that makemigrations writes around the script.
    shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations", ignore=shutil.ignore_patterns("__*"))
    broken = 'CREATE TABLE "half_done" ("x" INT);\n        CREATE TABLE "departments" ("x" INT);'
    script = Generated("9_broken.py", broken, "", 'MODELS_STATE = ("")\n')
    source = render({"sqlite": script, "postgres": script})
    (tmp_path / "migrations" / APP / "9_20990101000000_broken.py").write_text(source)
    monkeypatch.setattr(storage.db, "MIGRATIONS_DIR", tmp_path / "migrations")

    url = await database_factory()
    with pytest.raises(OperationalError, match="already exists"):
        await init_db(url)

    monkeypatch.undo()
    await init_db(url)  # the committed migrations alone
    try:
        query = connections.get("default").execute_query_dict
        assert [row["version"] for row in await query("SELECT version FROM aerich")] == sorted(
            path.name for path in (MIGRATIONS_DIR / APP).glob("[0-9]*_*.py")
        )
        with pytest.raises(OperationalError):
            await query('SELECT * FROM "half_done"')
    finally:
        await close_db()
