"""The bot token never leaks, tried the hard way: the real `python -m bot run` behind a proxy that
redirects (to URLs holding the token, and another bot's token), resets connections and answers
with bad JSON, truncated bodies and malformed status lines, while it polls and sends scheduled
prompts that fail. Then the token (and its secret part) is looked for in every log line, stdout
and stderr, every column of every table, and everything the emulator received.

Also: the weekly summary of a failure stored with a raw token URL (a row written before the
ledger redacted), and the one-line CLI errors of `duban run` (a mistyped TELEGRAM_API_URL port, a
redirect at start-up).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.settings import ConfigError, load_settings
from bot.summary import WEEK
from bot.summary_render import render_for_telegram, render_summary_text
from bot.summary_service import load_weekly_summary
from storage import deliveries as ledger
from storage.db import close_db, init_db
from storage.deliveries import DeliveryKind, DeliveryStatus, NewDelivery
from storage.models import Delivery, Department, Liaison, Task
from storage.onboarding import COORDINATION_CHAT_KEY, set_setting
from storage.plans import import_plan
from telegram_emulator import TelegramEmulator
from telegram_emulator.params import Upload
from tests.conftest import build_sample_plan
from tests.faulty_proxy import FAULTS, FaultyProxy, Request

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals")

# Shaped like a real token (bot id, colon, 35 characters), and another bot's token that only a
# redirect brings in: the configured one is redacted by value, the other by its shape.
TOKEN = "7700123456:AAE-secretSECRETsecretSECRET_x12345"
SECRET = TOKEN.split(":", 1)[1]
FOREIGN = "1234567:OTHERotherOTHERotherOTHERother12345"
NEEDLES = (TOKEN, SECRET, FOREIGN, FOREIGN.split(":", 1)[1])
ADMIN = 7001
# Faults that make aiohttp quote the request URL (so the token) in the exception text.
URL_FAULTS = ("redirect_loop", "redirect_invalid", "redirect_foreign", "bad_status")
POLL_FAULTS = ("redirect_loop", "redirect_invalid", "bad_status", "reset")


def leaks(text: str | bytes) -> list[str]:
    """The needles found in `text`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [needle for needle in NEEDLES if needle in text]


def _env(api_url: str, database: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": api_url,
        "DATABASE_URL": database,
        "ADMIN_IDS": str(ADMIN),
        "TIMEZONE": "Asia/Shanghai",
        "SCHEDULING": "true",
        "SEND_MAX_ATTEMPTS": "1",  # a failed send is given up at once: its error is stored
        **extra,
    }


async def _start(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run",
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _stop(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Wait for a process that exits on its own."""
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _until(condition, process: asyncio.subprocess.Process, what: str) -> None:
    """Wait for `condition()` (async); fail with the bot's output if it exits or 90 s pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while not await condition():
        if process.returncode is not None or loop.time() > deadline:
            code, out, err = await _stop(process)
            raise AssertionError(f"{what}: not reached (exit {code})\n{out}\n{err}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def seeded(database_url: str) -> AsyncIterator[str]:
    """A plan, liaisons of seven departments, a coordination group; the database stays open."""
    await init_db(database_url)
    try:
        await import_plan(build_sample_plan(), source_sha256="0" * 64)
        yield database_url
    finally:
        await close_db()


async def _table_dump(database: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as the database holds it."""
    if database.startswith("sqlite://"):

        def read() -> dict[str, list[tuple[Any, ...]]]:
            path = database.removeprefix("sqlite://")
            with closing(sqlite3.connect(path)) as connection:
                names = [
                    row[0]
                    for row in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )
                ]
                return {
                    name: connection.execute(f'SELECT * FROM "{name}"').fetchall() for name in names
                }

        return await asyncio.to_thread(read)
    connection = await asyncpg.connect(database)
    try:
        names = await connection.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        dump = {}
        for (name,) in names:
            rows = await connection.fetch(f'SELECT * FROM "{name}"')
            dump[name] = [tuple(row) for row in rows]
        return dump
    finally:
        await connection.close()


def _received(tg: TelegramEmulator) -> list[str | bytes]:
    """Every parameter of every call the emulator received: texts, captions, uploads' bytes."""
    return [
        value.content if isinstance(value, Upload) else str(value)
        for call in tg.calls
        for value in call.params.values()
    ]


async def test_the_token_never_leaks_under_a_misbehaving_bot_api(tmp_path, seeded) -> None:
    database = seeded
    async with TelegramEmulator(token=TOKEN, bot_username="duban_bot") as tg:
        tg.add_user("督办", user_id=ADMIN, started=True)
        departments = await Department.filter(name__startswith="县").order_by("id").limit(7)
        tasks = await Task.all().order_by("id")
        now = datetime.now(UTC)
        prompts = []
        for index, department in enumerate(departments):
            user = tg.add_user(f"联络员{index}", language_code="zh", started=True)
            liaison = await Liaison.create(
                telegram_user_id=user.id,
                full_name=f"联络员{index}",
                department=department,
                is_lead=True,
                bound_at=now,
            )
            prompts.append(
                NewDelivery(
                    DeliveryKind.PROMPT,
                    f"secret-test:{index}",
                    user.id,
                    now - timedelta(minutes=1),
                    liaison_id=liaison.id,
                    department_id=department.id,
                    task_id=tasks[index % len(tasks)].id,
                    cycle_key="2026-12",
                    payload={"deadline": "2026-12-25"},
                )
            )
        group = tg.add_group("工作专班群", members=[tg.users[ADMIN]])
        await set_setting(COORDINATION_CHAT_KEY, str(group.id))
        assert await ledger.enqueue(prompts) == len(prompts) == 7
        upstream = int(tg.base_url.rsplit(":", 1)[1])

        polls = iter(POLL_FAULTS)
        sends = iter(FAULTS)

        def decide(request: Request) -> str | None:
            if request.method == "getUpdates":
                return next(polls, None)
            if request.method.startswith("send") and (request.chat_id or 0) > 0:
                return next(sends, "reset")  # every liaison's prompt fails, one way or another
            return None  # start-up calls and the coordination group go through

        outputs: list[str] = []
        async with FaultyProxy(upstream, TOKEN, FOREIGN, decide) as proxy:
            env = _env(proxy.base_url, database)

            # First run: polling and every prompt fail; each failure is stored.
            process = await _start(env, tmp_path)

            async def prompts_failed() -> bool:
                rows = await Delivery.filter(key__startswith="secret-test:").values_list(
                    "status", flat=True
                )
                return all(status == DeliveryStatus.FAILED for status in rows)

            async def polling_again() -> bool:
                return proxy.forwarded["getUpdates"] >= 1

            await _until(prompts_failed, process, "every prompt failed")
            await _until(polling_again, process, "polling through the faults")
            code, out, err = await _stop(process)
            outputs += [out, err]
            assert code == 0, err
            assert sum(proxy.faults.values()) >= len(FAULTS) + len(POLL_FAULTS) - 1
            assert all(proxy.faults[fault] for fault in URL_FAULTS), proxy.faults

            # Second run: the weekly summary lists those failures in the coordination group.
            await ledger.enqueue(
                [NewDelivery(DeliveryKind.SUMMARY, "secret-test-summary", group.id, now)]
            )
            process = await _start(env, tmp_path)

            async def summary_sent() -> bool:
                status = await Delivery.get(key="secret-test-summary").values_list(
                    "status", flat=True
                )
                # Polling, too: SIGTERM is handled once polling has started.
                return status == DeliveryStatus.SENT and tg.polling > 0

            await _until(summary_sent, process, "the weekly summary in the coordination group")
            code, out, err = await _stop(process)
            outputs += [out, err]
            assert code == 0, err

        failures = await Delivery.filter(status=DeliveryStatus.FAILED).values_list(
            "last_error", flat=True
        )
    received = _received(tg)
    dump = await _table_dump(database)

    log = "\n".join(outputs)
    found = {
        "log lines": [line for line in log.splitlines() if leaks(line)],
        "database rows": [
            (table, row) for table, rows in dump.items() for row in rows if leaks(repr(row))
        ],
        "sent to Telegram": [value for value in received if leaks(value)],
    }
    assert found == {"log lines": [], "database rows": [], "sent to Telegram": []}

    # The faults did produce token-bearing errors, which were stored, logged and summarised.
    assert any("<redacted>" in (error or "") for error in failures), failures
    assert "Failed to fetch updates" in log and "<redacted>" in log, log
    summary = "\n".join(str(message.get("text", "")) for message in tg.messages_to(group.id))
    assert "redacted" in summary, summary


async def test_a_stored_token_url_never_reaches_the_weekly_summary(db) -> None:
    """A failure stored before the ledger redacted (a raw aiohttp text) in the rendered summary;
    no token registered in this process: the shape of a Bot API URL is enough."""
    await import_plan(build_sample_plan(), source_sha256="0" * 64)
    now = datetime.now(UTC)
    raw = (
        "gave up after 5 attempts: TelegramNetworkError: HTTP Client says - "
        f"ClientResponseError: 400, message='Bad status line', url='http://127.0.0.1:8081/bot{TOKEN}"
        f"/sendMessage'; InvalidUrlRedirectClientError: http://127.0.0.1:80800/bot{FOREIGN}/getMe"
    )
    await Delivery.create(
        kind=DeliveryKind.PROMPT,
        key="old-row",
        chat_id=4242,
        due_at=now - timedelta(hours=1),
        next_attempt_at=now - timedelta(hours=1),
        status=DeliveryStatus.FAILED,
        last_error=raw,
    )
    issues = await ledger.delivery_issues_since(now - WEEK)
    assert [issue.reason for issue in issues] == [raw]  # stored as it was
    summary = await load_weekly_summary(now, tz=load_settings().tz, delivery_issues=issues)
    assert summary is not None
    for locale in ("zh", "en"):
        rendered = render_for_telegram(summary, locale)
        texts = [*rendered.messages, (rendered.document or b"").decode("utf-8", "replace")]
        texts.append(render_summary_text(summary, locale))
        assert [text for text in texts if leaks(text)] == []
        assert any("bot&lt;redacted&gt;/sendMessage" in text for text in rendered.messages)


async def test_a_mistyped_api_port_is_one_line_naming_the_variable(tmp_path) -> None:
    env = _env("http://127.0.0.1:80800", f"sqlite://{tmp_path / 'duban.sqlite3'}")
    process = await _start(env, tmp_path)
    code, out, err = await _finish(process)
    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("duban: error: TELEGRAM_API_URL:"), err
    assert leaks(err) == []


async def test_a_redirect_at_start_up_is_one_error_line_without_the_token(
    tmp_path, database_url
) -> None:
    async with TelegramEmulator(token=TOKEN, bot_username="duban_bot") as tg:
        upstream = int(tg.base_url.rsplit(":", 1)[1])

        def decide(request: Request) -> str | None:
            return "redirect_invalid" if request.method == "getMe" else None

        async with FaultyProxy(upstream, TOKEN, FOREIGN, decide) as proxy:
            process = await _start(_env(proxy.base_url, database_url), tmp_path)
            code, out, err = await _finish(process)
    assert code != 0
    assert "Traceback" not in err
    (error,) = [line for line in err.splitlines() if line.startswith("duban: error:")]
    assert "cannot reach the Bot API" in error and "/bot<redacted>/getMe" in error, error
    assert [line for line in (out + err).splitlines() if leaks(line)] == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:80800", "http://127.0.0.1:0", "https://api.telegram.org:x/"]
)
def test_an_api_url_with_a_bad_port_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_env_file=None, telegram_api_url=url)
    assert str(error.value) == "TELEGRAM_API_URL: the port must be a number from 1 to 65535"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081", "https://api.telegram.org:65535/"])
def test_an_api_url_with_a_good_port_is_kept(url: str) -> None:
    assert load_settings(_env_file=None, telegram_api_url=url).telegram_api_url == url.rstrip("/")
