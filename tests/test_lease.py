"""One `duban run` per database, and migrations that never race: real processes (`python -m bot`)
on a fresh SQLite file or PostgreSQL database (DUBAN_TEST_DATABASE picks which)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from storage.db import MIGRATIONS_DIR
from telegram_emulator import TelegramEmulator
from tests.conftest import fetch_rows

ADMIN = 7001
ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "changxing-2023-65.txt"
HELD = re.compile(
    r"duban: error: another duban run holds this database "
    r"\(host (?P<host>\S.*), pid (?P<pid>\d+), since \d{4}-\d\d-\d\d \d\d:\d\d UTC\)"
)
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals and flock")


async def _duban(tg: TelegramEmulator, tmp_path: Path, database: str, *args: str):
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": database,
        "ADMIN_IDS": str(ADMIN),
        "SCHEDULING": "true",
    }
    env.pop("REDIS_URL", None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _finish(process, seconds: float = 120) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), seconds)
    return process.returncode, out.decode(), err.decode()


async def _answers_start(tg: TelegramEmulator, name: str) -> None:
    person = tg.add_user(name, language_code="en")
    tg.send_text(person, None, "/start")
    await tg.wait_for_message(chat_id=person.id, timeout=60)


async def _stop(process) -> tuple[int, str, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await _finish(process, 60)


def _migrations_recorded(database: str) -> list[tuple[str, int]]:
    return sorted(
        (str(version), int(count))
        for version, count in fetch_rows(
            database, "SELECT version, COUNT(*) FROM aerich GROUP BY version"
        )
    )


def _migration_files() -> list[str]:
    return sorted(path.name for path in MIGRATIONS_DIR.glob("models/*.py"))


async def test_a_second_duban_run_exits_naming_the_holder_and_kill_9_frees_the_lease(
    tmp_path, database_url
) -> None:
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        first = await _duban(tg, tmp_path, database_url, "run")
        try:
            await _answers_start(tg, "Alice")

            second = await _duban(tg, tmp_path, database_url, "run")
            code, out, err = await _finish(second, 60)
            assert code == 1, (out, err)
            assert out == ""
            lines = err.splitlines()
            assert len(lines) == 1, err  # one line on stderr, no log lines, no traceback
            held = HELD.fullmatch(lines[0])
            assert held is not None, lines[0]
            assert int(held["pid"]) == first.pid
            assert first.returncode is None  # the holder runs on

            first.send_signal(signal.SIGKILL)  # kill -9: no shutdown, no release
            assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()

        # The dead process's lease went with it: a restart takes over at once.
        third = await _duban(tg, tmp_path, database_url, "run")
        try:
            await _answers_start(tg, "Bob")
        finally:
            code, out, err = await _stop(third)
        assert code == 0, err
        assert "Traceback" not in err


async def test_processes_starting_at_once_on_a_fresh_database_migrate_once(
    tmp_path, database_url
) -> None:
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        commands = [
            ("run",),
            ("run",),
            ("plan", "import", str(PLAN)),
            ("departments",),
            ("departments",),
            ("summary",),
        ]
        processes = await asyncio.gather(
            *(_duban(tg, tmp_path, database_url, *command) for command in commands)
        )
        runs, clis = processes[:2], processes[2:]
        try:
            results = await asyncio.gather(*(_finish(process) for process in clis))
            for command, (code, out, err) in zip(commands[2:], results, strict=True):
                assert code == 0, (command, out, err)
                assert "Traceback" not in err, (command, err)
            # One run holds the database, the other stops with the one-line message.
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(process.wait()) for process in runs],
                timeout=60,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert len(done) == 1, "neither duban run stopped"
            stopped = next(process for process in runs if process.returncode is not None)
            running = next(process for process in runs if process is not stopped)
            code, out, err = await _finish(stopped, 10)
            assert code == 1, err
            assert len(err.splitlines()) == 1, err
            held = HELD.fullmatch(err.strip())
            assert held is not None, err
            assert int(held["pid"]) == running.pid
            await _answers_start(tg, "Alice")
        finally:
            for process in processes:
                if process.returncode is None and process not in runs:
                    process.kill()
            for process in runs:
                if process.returncode is None:
                    code, out, err = await _stop(process)
                    assert code == 0, err
                    assert "Traceback" not in err

    recorded = await asyncio.to_thread(_migrations_recorded, database_url)
    assert recorded == [(name, 1) for name in _migration_files()]


# A process that imports storage.db, waits for the go file, then opens the database as every
# duban command does (storage.db.init_db): started together, they migrate at the same instant.
_INIT_DB = """
import asyncio, sys
from pathlib import Path
from storage.db import close_db, init_db

async def main(url, go):
    while not Path(go).exists():
        await asyncio.sleep(0.002)
    await init_db(url)
    await close_db()

asyncio.run(main(*sys.argv[1:]))
"""


async def _init_db_process(env: dict[str, str], database: str, go: Path):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _INIT_DB, database, str(go),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_init_db_in_processes_released_at_once_migrates_once(
    tmp_path, database_factory
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(4):
        database = await database_factory()
        go = tmp_path / f"go{round_}"
        processes = [await _init_db_process(env, database, go) for _ in range(4)]
        await asyncio.sleep(2)  # the imports
        go.touch()
        results = await asyncio.gather(*(_finish(process, 60) for process in processes))
        for code, _out, err in results:
            assert code == 0, err[-2000:]
        recorded = await asyncio.to_thread(_migrations_recorded, database)
        assert recorded == [(name, 1) for name in _migration_files()]


async def test_duban_run_stops_when_its_postgresql_lease_is_lost(tmp_path, database_url) -> None:
    if database_url.startswith("sqlite://"):
        pytest.skip("a flock cannot be lost while its process lives")
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        process = await _duban(tg, tmp_path, database_url, "run")
        try:
            await _answers_start(tg, "Alice")
            # A server restart or an operator ends the session that holds the lease.
            terminated = await asyncio.to_thread(
                fetch_rows,
                database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'duban run %' AND datname = current_database()",
            )
            assert terminated == [(True,)]
            code, _out, err = await _finish(process, 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 0, err
    assert "The run lease on the database was lost" in err
    assert "Traceback" not in err
