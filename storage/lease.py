"""One `duban run` per database, and one migration at a time.

Two locks of the database's own kind, so they need nothing but the database:

- the **run lease**, held by `duban run` for its whole life (`acquire_run_lease`): a second
  `duban run` on the same database fails at once with `LeaseHeldError`, whose text names the
  holder (host, pid, since);
- the **migration lock**, held only while migrations are applied (`migration_lock`, used by
  storage.db.init_db): every process that opens the database, the CLI included, waits for it,
  so two processes starting at once never apply a migration twice. The CLI never takes the run
  lease: `duban invite` works while the bot runs.

PostgreSQL: session-level advisory locks (`pg_try_advisory_lock` / `pg_advisory_lock`) on a
dedicated asyncpg connection, keyed (DUBAN, 1) and (DUBAN, 2); advisory locks are per database.
The run lease connection carries the holder in its `application_name`, read by a rival from
pg_locks JOIN pg_stat_activity: it appears and vanishes with the lock itself (no table to write
after the lock is taken, none left stale by a kill -9, nothing that needs the schema to exist
before the migrations ran).
SQLite: `fcntl.flock` on a file beside the database (`<db>.run-lock`, `<db>.migrate-lock`); the
run lock file holds the holder as one JSON line. The files stay; only the lock matters.

Either way the operating system or the server drops a lock when its process dies, kill -9
included: the next start takes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tortoise.backends.base.config_generator import expand_db_url

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite lock files are not supported there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Holder",
    "LeaseHeldError",
    "LockError",
    "RunLease",
    "acquire_run_lease",
    "migration_lock",
]

_KEY = 0x64756261  # "duba": the advisory lock class of this project
_RUN_KEY = 1
_MIGRATE_KEY = 2
_APP_PREFIX = "duban run"
_APP_NAME_MAX = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes
MIGRATION_WAIT_SECONDS = 300.0  # a migration never takes this long; then something hangs
_POLL_SECONDS = 0.05
_HOLDER_READS = 20
_CONNECT_TIMEOUT = 10.0
_CONNECTION_KEYS = ("host", "port", "user", "password", "database", "ssl")


class LockError(RuntimeError):
    """A lock on the database could not be taken."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the run lease."""

    host: str
    pid: int
    since: datetime  # aware UTC

    @classmethod
    def me(cls, now: datetime | None = None) -> Holder:
        since = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
        return cls(socket.gethostname() or "?", os.getpid(), since)

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.since:%Y-%m-%d %H:%M} UTC"

    # PostgreSQL: the lock connection's application_name, host last (it may be cut short).
    def application_name(self) -> str:
        name = f"{_APP_PREFIX} {self.pid} {self.since:%Y%m%dT%H%MZ} {self.host}"
        return name.encode()[:_APP_NAME_MAX].decode(errors="ignore")

    @classmethod
    def from_application_name(cls, name: str) -> Holder | None:
        found = re.fullmatch(rf"{_APP_PREFIX} (\d+) (\d{{8}}T\d{{4}}Z) ?(.*)", name or "")
        if found is None:
            return None
        since = datetime.strptime(found[2], "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        return cls(found[3] or "?", int(found[1]), since)

    # SQLite: one JSON line in the run lock file.
    def to_json(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "since": self.since.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            since = datetime.fromisoformat(data["since"])
            return cls(str(data["host"]), int(data["pid"]), since.astimezone(UTC))
        except (ValueError, KeyError, TypeError):
            return None


class LeaseHeldError(LockError):
    """Another `duban run` holds this database."""

    def __init__(self, holder: Holder | None) -> None:
        self.holder = holder
        who = f" ({holder.describe()})" if holder is not None else ""
        super().__init__(f"another duban run holds this database{who}")


@dataclass(slots=True)
class RunLease:
    """A held run lease; `owner` names this process in the delivery ledger's claims."""

    holder: Holder
    owner: str
    _file: IO[str] | None = None
    _connection: Any = None  # asyncpg.Connection

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call `callback` if the lease is lost while held: the PostgreSQL session holding it
        ended (a server restart, a terminated backend). A flock cannot be lost."""
        if self._connection is None:
            return

        def lost(_connection: object) -> None:
            if self._connection is not None:  # not our own release
                callback()

        self._connection.add_termination_listener(lost)

    async def release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            # Closing the session drops its advisory locks.
            with suppress(OSError):
                await connection.close(timeout=5)
        if self._file is not None:
            handle, self._file = self._file, None
            handle.close()  # closing the descriptor drops the flock


def _connection(database_url: str) -> tuple[str, dict[str, Any]]:
    expanded = expand_db_url(database_url)
    return expanded["engine"], expanded["credentials"]


def _sqlite_path(credentials: dict[str, Any]) -> Path | None:
    path = credentials.get("file_path", "")
    return None if path in ("", ":memory:") else Path(path)


async def _pg_connect(credentials: dict[str, Any], application_name: str | None = None) -> Any:
    import asyncpg  # noqa: PLC0415 - only for PostgreSQL

    kwargs = {key: credentials[key] for key in _CONNECTION_KEYS if key in credentials}
    settings = {"application_name": application_name} if application_name else None
    return await asyncpg.connect(**kwargs, server_settings=settings, timeout=_CONNECT_TIMEOUT)


async def acquire_run_lease(database_url: str, *, now: datetime | None = None) -> RunLease | None:
    """Take the run lease or raise `LeaseHeldError` naming the holder; None for an in-memory
    SQLite database (no other process can open it)."""
    engine, credentials = _connection(database_url)
    holder = Holder.me(now)
    owner = uuid.uuid4().hex
    if engine == "tortoise.backends.sqlite":
        path = _sqlite_path(credentials)
        if path is None:
            return None
        handle = await asyncio.to_thread(_flock_run_file, path, holder)
        return RunLease(holder, owner, _file=handle)
    try:
        connection = await _pg_connect(credentials, holder.application_name())
    except (OSError, TimeoutError) as exc:
        raise LockError(f"database unreachable ({type(exc).__name__}: {exc})") from None
    try:
        for _ in range(3):  # the holder may exit between our try and our look at it
            if await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", _KEY, _RUN_KEY):
                return RunLease(holder, owner, _connection=connection)
            name = await connection.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2",
                _KEY,
                _RUN_KEY,
            )
            if name is not None:
                raise LeaseHeldError(Holder.from_application_name(name))
        raise LeaseHeldError(None)
    except BaseException:
        await connection.close()
        raise


def _flock_run_file(path: Path, holder: Holder) -> IO[str]:
    lock_path = _lock_file(path, "run-lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise LockError(f"cannot open the lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        _require_fcntl()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LeaseHeldError(_read_holder(handle)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(holder.to_json() + "\n")
        handle.flush()
    except BaseException:
        handle.close()
        raise
    return handle


def _read_holder(handle: IO[str]) -> Holder | None:
    # The holder writes its line right after taking the lock: give it a moment.
    for _ in range(_HOLDER_READS):
        handle.seek(0)
        holder = Holder.from_json(handle.read().strip())
        if holder is not None:
            return holder
        time.sleep(_POLL_SECONDS)  # in a worker thread (acquire_run_lease)
    return None


def _lock_file(database: Path, suffix: str) -> Path:
    return database.with_name(f"{database.name}.{suffix}")


def _require_fcntl() -> None:
    if fcntl is None:  # pragma: no cover - Windows
        raise LockError("SQLite lock files need fcntl (a POSIX system)")


@asynccontextmanager
async def migration_lock(
    database_url: str, *, wait: float = MIGRATION_WAIT_SECONDS
) -> AsyncIterator[None]:
    """Hold the migration lock for the block, waiting up to `wait` seconds for another process
    to finish its migrations."""
    engine, credentials = _connection(database_url)
    if engine == "tortoise.backends.sqlite":
        path = _sqlite_path(credentials)
        if path is None:
            yield
            return
        _require_fcntl()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _lock_file(path, "migrate-lock").open("a", encoding="utf-8")
        try:
            await _flock_polling(handle, wait)
            yield
        finally:
            handle.close()
        return
    connection = await _pg_connect(credentials)
    try:
        try:
            async with asyncio.timeout(wait):
                await connection.execute("SELECT pg_advisory_lock($1, $2)", _KEY, _MIGRATE_KEY)
        except TimeoutError:
            raise LockError(
                f"another process has been migrating this database for {wait:.0f} s"
            ) from None
        yield
    finally:
        await connection.close()  # drops the lock (and a lock request still waiting)


async def _flock_polling(handle: IO[str], wait: float) -> None:
    """flock without blocking a thread: try, and sleep a little between tries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if loop.time() >= deadline:
                raise LockError(
                    f"another process has been migrating this database for {wait:.0f} s"
                ) from None
            await asyncio.sleep(_POLL_SECONDS)
        else:
            return
