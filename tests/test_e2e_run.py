"""`duban run` as a real process against the Telegram emulator: start-up, menus, a reply, SIGTERM;
and webhook mode, which must refuse updates without the secret token."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from telegram_emulator import TelegramEmulator

ADMIN = 7001
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _start_duban(tg: TelegramEmulator, tmp_path: Path, database: str, **extra_env: str):
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": database,  # SQLite, or PostgreSQL with DUBAN_TEST_DATABASE=postgres
        "ADMIN_IDS": str(ADMIN),
        "SCHEDULING": "true",  # the real thing, scheduler and sender included (no plan: no sends)
        **extra_env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def _wait_polling_or_exit(tg: TelegramEmulator, process) -> None:
    polling = asyncio.ensure_future(tg.wait_polling(timeout=30))
    exited = asyncio.ensure_future(process.wait())
    await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not polling.done():
        polling.cancel()
        output = (await process.stdout.read()).decode()
        raise AssertionError(f"duban run exited with {process.returncode}:\n{output}")
    exited.cancel()
    polling.result()


async def _stop(process) -> tuple[int, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode, output.decode()


async def test_duban_run_polls_answers_and_stops_cleanly_on_sigterm(tmp_path, database_url):
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        tg.add_user("Coordinator", user_id=ADMIN, started=True)
        process = await _start_duban(tg, tmp_path, database_url)
        try:
            await _wait_polling_or_exit(tg, process)
            # Localized menus: a default and one per language, for private chats and groups.
            menus = tg.commands
            for scope in ("all_private_chats", "all_group_chats"):
                for language in ("", "zh", "en"):
                    assert menus[(scope, language)], (scope, language)
            zh_menu = menus[("all_private_chats", "zh")]
            zh_private = {command["command"]: command["description"] for command in zh_menu}
            assert zh_private["report"] == "报送任务进展"
            assert "invite" not in zh_private  # coordinator commands only in coordinators' menus
            assert "invite" in {c["command"] for c in menus[(f"chat:{ADMIN}", "en")]}

            alice = tg.add_user("Alice", language_code="en")
            tg.send_text(alice, None, "/start")
            reply = await tg.wait_for_message(chat_id=alice.id, timeout=15)
            assert reply.text.startswith("Hello, Alice!")
        finally:
            code, output = await _stop(process)
    assert code == 0, output
    assert "Traceback" not in output
    assert tg.token not in output and "TEST" not in output  # the token is never logged
    assert await _migrated(database_url)


async def _migrated(database: str) -> bool:
    """`duban run` created the database's tables (the migration history among them)."""
    if database.startswith("sqlite://"):
        path = Path(database.removeprefix("sqlite://"))
        return await asyncio.to_thread(path.exists)
    connection = await asyncpg.connect(database)
    try:
        return await connection.fetchval("SELECT to_regclass('aerich') IS NOT NULL")
    finally:
        await connection.close()


async def test_webhook_mode_requires_the_secret_token(tmp_path, database_url):
    port = _free_port()
    async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
        alice = tg.add_user("Alice", language_code="zh", started=True)
        process = await _start_duban(
            tg,
            tmp_path,
            database_url,
            WEBHOOK_URL="https://duban.example.org/telegram/hook",
            WEBHOOK_SECRET="s3cret-token",
            WEBHOOK_PORT=str(port),
        )
        try:
            call = await tg.wait_for_call("setWebhook", timeout=30)
            assert call.arg("secret_token") == "s3cret-token"
            update = {
                "update_id": 1,
                "message": {
                    "message_id": 1, "date": 1_700_000_000, "text": "/start",
                    "chat": {"id": alice.id, "type": "private", "first_name": "Alice"},
                    "from": {"id": alice.id, "is_bot": False, "first_name": "Alice",
                             "language_code": "zh"},
                    "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                },
            }  # fmt: skip
            url = f"http://127.0.0.1:{port}/telegram/hook"
            async with aiohttp.ClientSession() as http:
                for _ in range(200):  # the server starts right after setWebhook
                    try:
                        async with http.post(url, json=update) as response:
                            no_secret = response.status
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                headers = {"X-Telegram-Bot-Api-Secret-Token": "wrong"}
                async with http.post(url, data=json.dumps(update), headers=headers) as response:
                    wrong_secret = response.status
                assert tg.messages_to(alice.id) == []  # neither update was processed
                headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
                async with http.post(url, json=update, headers=headers) as response:
                    right_secret = response.status
            reply = await tg.wait_for_message(chat_id=alice.id, timeout=15)
        finally:
            code, output = await _stop(process)
    assert (no_secret, wrong_secret, right_secret) == (401, 401, 200)
    assert reply.text.startswith("你好，Alice！")
    assert code == 0, output
    assert "s3cret-token" not in output
