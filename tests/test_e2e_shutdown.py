"""Stopping `duban run` loses nothing: the real process, SIGTERM (or kill -9) while updates are in
flight, a restart, and every update answered exactly once, every confirmed report stored once.

The emulator answers the bot's sends slowly (`tg.slow`) so that handlers are surely still running
when the signal arrives. In webhook mode the test plays Telegram's part: every update is POSTed
to the bot's webhook and POSTed again, until it gets a 2xx answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage.db import close_db, init_db
from storage.models import Department, Liaison, PendingUpdate, Report, Task
from storage.plans import import_plan
from telegram_emulator import BotMessage, EmulatedUser, TelegramEmulator
from tests.conftest import build_sample_plan

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals")

TOKEN = "123456:TEST"
SECRET = "s3cret-token"
HOOK_PATH = "/telegram/hook"
REPORTERS = 8  # liaisons of 县建设局 who confirm a report in the burst
STRANGERS = 12  # people who send /start in the burst
SLOW = 1.0  # seconds the emulator takes to answer a send during the burst


# -- the process ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _start(tg: TelegramEmulator, tmp_path: Path, database: str, **extra_env: str):
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": database,
        "ADMIN_IDS": "",
        "SCHEDULING": "false",
        **extra_env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


class Duban:
    """A running `duban run`, its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def started(self, tg: TelegramEmulator, *, webhook: bool) -> None:
        """Until the bot polls (or has set its webhook), or fail with its output if it exited."""
        calls = len(tg.calls_to("setWebhook"))
        ready = asyncio.ensure_future(
            tg.wait_until(lambda: len(tg.calls_to("setWebhook")) > calls, timeout=30)
            if webhook
            else tg.wait_polling(timeout=30)
        )
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self._reader
            raise AssertionError(f"duban run exited with {self.process.returncode}:\n{self.output}")
        exited.cancel()
        ready.result()
        if webhook:  # its web server listens right after setWebhook
            await self.said("Webhook server on")

    async def said(self, text: str, *, or_exited: bool = False) -> None:
        """Until a line of its output contains `text` (or, with `or_exited`, it has exited)."""

        def check() -> bool:
            exited = or_exited and self.process.returncode is not None
            return exited or any(text in line for line in self.lines)

        await _until(check, 30, f"{text!r} logged")

    def send(self, sig: int = signal.SIGTERM) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.send(sig)
        code = await asyncio.wait_for(self.process.wait(), timeout=60)
        await self._reader
        return code, self.output


@asynccontextmanager
async def _duban(
    tg: TelegramEmulator, tmp_path: Path, database: str, **env: str
) -> AsyncIterator[Duban]:
    """A running `duban run`; stopped with SIGTERM on exit if the test did not stop it."""
    duban = Duban(await _start(tg, tmp_path, database, **env))
    try:
        await duban.started(tg, webhook="WEBHOOK_URL" in env)
        yield duban
    finally:
        await duban.stop()


# -- Telegram's webhook side ----------------------------------------------------------------------


class Pusher:
    """Telegram's webhook delivery: every queued update is POSTed, concurrently, and POSTed
    again after a non-2xx answer or a failed connection, until one answer is 2xx."""

    def __init__(self, tg: TelegramEmulator, port: int) -> None:
        self.tg = tg
        self.url = f"http://127.0.0.1:{port}{HOOK_PATH}"
        self.answers: dict[int, list[int | str]] = {}  # update_id -> every status (or error)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Pusher:
        self._http = aiohttp.ClientSession()
        self.tg.world.update_listeners.append(self._queued)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.tg.world.update_listeners.remove(self._queued)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._http is not None
        await self._http.close()

    def _queued(self) -> None:
        update = self.tg.updates[-1]
        task = asyncio.get_running_loop().create_task(self._push(update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, update: dict[str, Any]) -> None:
        assert self._http is not None
        answers = self.answers.setdefault(update["update_id"], [])
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        while True:
            try:
                async with self._http.post(self.url, json=update, headers=headers) as response:
                    answers.append(response.status)
                    if 200 <= response.status < 300:
                        return
            except aiohttp.ClientError as exc:
                answers.append(type(exc).__name__)
            await asyncio.sleep(0.2)

    def delivered(self) -> bool:
        return all(answers and answers[-1] == 200 for answers in self.answers.values())


# -- data and conversations -----------------------------------------------------------------------


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    """The sample plan and REPORTERS liaisons of 县建设局 (user ids 5000…)."""
    await init_db(database_url)
    try:
        await import_plan(build_sample_plan(), "1" * 64)
        department = await Department.get(name="县建设局")
        for n in range(REPORTERS):
            await Liaison.create(
                telegram_user_id=5000 + n, full_name=f"联络员{n}", department_id=department.id
            )
    finally:
        await close_db()
    return database_url


def _guests(tg: TelegramEmulator) -> list[EmulatedUser]:
    """STRANGERS people who started the bot and belong to no department (user ids 6000…)."""
    return [
        tg.add_user(f"Guest{n}", user_id=6000 + n, language_code="en", started=True)
        for n in range(STRANGERS)
    ]


async def _reports(database: str) -> Counter[int]:
    """Stored reports per liaison's Telegram user id."""
    await init_db(database)
    try:
        rows = await Report.all().values_list("liaison__telegram_user_id", flat=True)
    finally:
        await close_db()
    return Counter(rows)


def _button(message: BotMessage, suffix: str, prefix: str = "") -> str:
    return next(d for d in message.callback_data if d.startswith(prefix) and d.endswith(suffix))


async def _press(
    tg: TelegramEmulator, user: EmulatedUser, message: BotMessage, data: str, expect: str
) -> BotMessage:
    """Press a button; the message the bot shows next contains `expect`."""
    await tg.wait_for_answer(tg.press(user, message, data), timeout=30)
    return await _shown(tg, user, expect)


async def _shown(tg: TelegramEmulator, user: EmulatedUser, expect: str) -> BotMessage:
    def check() -> BotMessage | None:
        return next((m for m in tg.messages_to(user) if expect in (m.text or "")), None)

    await tg.wait_until(lambda: check() is not None, timeout=30)
    found = check()
    assert found is not None
    return found


async def _to_preview(tg: TelegramEmulator, user: EmulatedUser, task_id: int) -> BotMessage:
    """/report → task → status → text → done: the preview with its confirm button."""
    tg.send_text(user, None, "/report")
    picker = await _shown(tg, user, "请选择任务")
    screen = await _press(tg, user, picker, _button(picker, f":{task_id}", "r2:"), "选择状态")
    screen = await _press(tg, user, screen, _button(screen, "on_track", "r4:"), "请发送")
    tg.send_text(user, None, f"已筹集{user.id}套")
    ack = await _shown(tg, user, "已收到")
    return await _press(tg, user, ack, _button(ack, ":done", "r5:"), "请核对")


async def _task_id(database: str) -> int:
    await init_db(database)
    try:
        return (await Task.get(code="2.1.3")).id
    finally:
        await close_db()


def _answers_per_query(tg: TelegramEmulator) -> Counter[str]:
    """Completed answerCallbackQuery calls (ok or refused) per query: a query handled twice
    shows up as a second, refused, call. Calls the bot hung up on did nothing (status 0)."""
    return Counter(
        call.arg("callback_query_id") for call in tg.calls_to("answerCallbackQuery") if call.status
    )


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - also waits for output lines, not only the emulator
            await asyncio.sleep(0.05)
    assert check(), what


# -- the burst ------------------------------------------------------------------------------------


async def _burst(tg: TelegramEmulator, database: str) -> tuple[dict[str, int], list[EmulatedUser]]:
    """Bring every reporter to the preview, then, with slow sends, queue REPORTERS confirms and
    STRANGERS /start at once. Returns {query id: reporter id} and the strangers."""
    task_id = await _task_id(database)
    reporters = [
        tg.add_user(f"联络员{n}", user_id=5000 + n, language_code="zh", started=True)
        for n in range(REPORTERS)
    ]
    previews = await asyncio.gather(*(_to_preview(tg, user, task_id) for user in reporters))
    strangers = _guests(tg)
    for method in ("sendMessage", "editMessageText", "answerCallbackQuery"):
        tg.slow(method, SLOW)
    queries = {}
    for n in range(max(REPORTERS, STRANGERS)):
        if n < REPORTERS:
            preview = previews[n]
            queries[tg.press(reporters[n], preview, _button(preview, ":ok", "r5:"))] = 5000 + n
        if n < STRANGERS:
            tg.send_text(strangers[n], None, "/start")
    return queries, strangers


def _assert_each_answered_once(
    tg: TelegramEmulator, queries: dict[str, int], strangers: list[EmulatedUser]
) -> None:
    answered = _answers_per_query(tg)
    assert {query: answered[query] for query in queries} == dict.fromkeys(queries, 1)
    assert set(answered.values()) == {1}  # the presses before the burst too
    receipts = {
        user_id: sum(
            "报送成功" in (version.get("text") or "")
            for message in tg.messages_to(user_id)
            for version in message.versions  # every state, the current one last
        )
        for user_id in queries.values()
    }
    assert receipts == dict.fromkeys(queries.values(), 1)
    assert {s.id: len(tg.messages_to(s)) for s in strangers} == dict.fromkeys(
        (s.id for s in strangers), 1
    )


def _all_answered(tg: TelegramEmulator, queries: dict[str, int], strangers) -> Callable[[], bool]:
    def check() -> bool:
        answered = _answers_per_query(tg)
        return all(answered[q] for q in queries) and all(tg.messages_to(s) for s in strangers)

    return check


def _clean(code: int, output: str) -> None:
    assert code == 0, output
    assert "Traceback" not in output, output


# -- tests ----------------------------------------------------------------------------------------


async def test_sigterm_while_polling_answers_every_update_once_after_the_restart(
    tmp_path, database, redis_url
):
    async with TelegramEmulator(token=TOKEN) as tg:
        async with _duban(tg, tmp_path, database, REDIS_URL=redis_url) as first:
            queries, strangers = await _burst(tg, database)
            burst = [u["update_id"] for u in tg.updates[-(REPORTERS + STRANGERS) :]]
            # The bot has taken them all in, and its handlers wait for the slow Bot API.
            await _until(lambda: all(tg.deliveries[i] for i in burst), 30, "burst fetched")
            await tg.wait_until(lambda: any(c.done_seq is None for c in tg.calls_to("sendMessage")))
            first.send(signal.SIGTERM)
            await first.said("Received SIGTERM", or_exited=True)
            late = tg.add_user("Late", user_id=6100, language_code="en", started=True)
            tg.send_text(late, None, "/start")  # arrives while the bot stops
            strangers.append(late)
            first_result = await first.stop()
        for method in ("sendMessage", "editMessageText", "answerCallbackQuery"):
            tg.slow(method, 0)
        async with _duban(tg, tmp_path, database, REDIS_URL=redis_url) as second:
            await _until(_all_answered(tg, queries, strangers), 30, "all answered")
            await tg.wait_idle(timeout=30)
            second_result = await second.stop()
    _clean(*first_result)
    _clean(*second_result)
    assert "updates in flight" in first_result[1]  # the signal came while they ran
    _assert_each_answered_once(tg, queries, strangers)
    assert await _reports(database) == Counter(dict.fromkeys(range(5000, 5000 + REPORTERS), 1))


async def test_a_handler_cut_off_by_the_grace_period_is_handled_once_after_the_restart(
    tmp_path, database
):
    """The slowest update is the lowest one: it is cut off by the grace period and kept in the
    inbox; the ones handled meanwhile are confirmed. After the restart the inbox's update alone is
    handled, and nothing is answered twice."""
    async with TelegramEmulator(token=TOKEN) as tg:
        strangers = _guests(tg)
        async with _duban(tg, tmp_path, database, SHUTDOWN_GRACE_SECONDS="1") as first:
            tg.slow("sendMessage", 60, count=1)
            tg.send_text(strangers[0], None, "/start")
            await tg.wait_until(
                lambda: any(c.done_seq is None for c in tg.calls_to("sendMessage")),
                timeout=30,
            )
            for stranger in strangers[1:]:  # handled while the first one hangs
                tg.send_text(stranger, None, "/start")
            await _until(lambda: all(tg.messages_to(s) for s in strangers[1:]), 30, "answers")
            first_result = await first.stop()
        assert tg.messages_to(strangers[0]) == []
        async with _duban(tg, tmp_path, database) as second:
            await tg.wait_for_message(chat_id=strangers[0].id, timeout=30)
            await tg.wait_idle(timeout=30)
            second_result = await second.stop()
    _clean(*first_result)
    _clean(*second_result)
    assert "were cancelled" in first_result[1]
    assert {s.id: len(tg.messages_to(s)) for s in strangers} == {s.id: 1 for s in strangers}
    # The second run handled the cut-off update alone, from the inbox.
    handled = [line for line in second_result[1].splitlines() if "Update id=" in line]
    assert len(handled) == 1 and f"id={tg.updates[0]['update_id']} " in handled[0], handled
    assert "1 updates taken in before the restart are handled now" in second_result[1]


async def test_sigterm_in_webhook_mode_answers_every_update_once_after_the_restart(
    tmp_path, database, redis_url
):
    port = _free_port()
    env = {
        "REDIS_URL": redis_url,
        "WEBHOOK_URL": f"https://duban.example.org{HOOK_PATH}",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(port),
    }
    async with TelegramEmulator(token=TOKEN) as tg, Pusher(tg, port) as telegram:
        async with _duban(tg, tmp_path, database, **env) as first:
            queries, strangers = await _burst(tg, database)
            await tg.wait_until(
                lambda: any(c.done_seq is None for c in tg.calls_to("sendMessage")),
                timeout=30,
            )
            first.send(signal.SIGTERM)
            await first.said("Received SIGTERM", or_exited=True)
            late = tg.add_user("Late", user_id=6100, language_code="en", started=True)
            tg.send_text(late, None, "/start")  # arrives while the bot stops
            strangers.append(late)
            first_result = await first.stop()
        for method in ("sendMessage", "editMessageText", "answerCallbackQuery"):
            tg.slow(method, 0)
        retried = [u for u, answers in telegram.answers.items() if answers[0] != 200]
        async with _duban(tg, tmp_path, database, **env) as second:
            await _until(_all_answered(tg, queries, strangers), 30, "all answered")
            await _until(telegram.delivered, 30, "every update got a 2xx answer")
            second_result = await second.stop()
    _clean(*first_result)
    _clean(*second_result)
    assert "updates in flight" in first_result[1]  # the signal came while they ran
    assert retried  # the update that came during the shutdown at least
    _assert_each_answered_once(tg, queries, strangers)
    assert await _reports(database) == Counter(dict.fromkeys(range(5000, 5000 + REPORTERS), 1))


async def test_a_killed_process_holds_nobody_for_long(tmp_path, database, redis_url):
    """kill -9 during a handler leaves its Redis lock behind: it expires within seconds."""
    async with TelegramEmulator(token=TOKEN) as tg:
        alice = tg.add_user("Alice", user_id=6000, language_code="en", started=True)
        async with _duban(tg, tmp_path, database, REDIS_URL=redis_url) as first:
            tg.slow("sendMessage", 60, count=1)
            tg.send_text(alice, None, "/start")
            await tg.wait_until(
                lambda: any(c.done_seq is None for c in tg.calls_to("sendMessage")),
                timeout=30,
            )
            await first.stop(signal.SIGKILL)
        async with _duban(tg, tmp_path, database, REDIS_URL=redis_url) as second:
            tg.send_text(alice, None, "/help")  # her next press
            await _until(lambda: len(tg.messages_to(alice)) >= 2, 20, "both answered")
            await tg.wait_idle(timeout=30)
            second_result = await second.stop()
    _clean(*second_result)
    texts = [m.text for m in tg.messages_to(alice)]
    assert len(texts) == 2 and texts[0].startswith("Hello, Alice!"), texts


async def test_a_malformed_webhook_body_gets_400_and_one_warning(tmp_path, database):
    port = _free_port()
    env = {
        "WEBHOOK_URL": f"https://duban.example.org{HOOK_PATH}",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(port),
    }
    bodies = [b"not json", b"[1, 2]", json.dumps({"update_id": "x", "message": 5}).encode()]
    async with (
        TelegramEmulator(token=TOKEN) as tg,
        _duban(tg, tmp_path, database, **env) as process,
    ):
        url = f"http://127.0.0.1:{port}{HOOK_PATH}"
        statuses = []
        async with aiohttp.ClientSession() as http:
            for body in bodies:
                headers = {
                    "X-Telegram-Bot-Api-Secret-Token": SECRET,
                    "Content-Type": "application/json",
                }
                async with http.post(url, data=body, headers=headers) as response:
                    statuses.append(response.status)
        code, output = await process.stop()
    assert statuses == [400, 400, 400]
    _clean(code, output)
    warnings = [line for line in output.splitlines() if " WARNING " in line]
    assert len([line for line in warnings if "malformed" in line]) == len(bodies), output
    assert " ERROR " not in output


async def test_updates_in_flight_are_not_fetched_again(tmp_path, database):
    """While handlers wait on a slow Bot API, new updates still come with a plain long poll: no
    update is downloaded twice because older ones are still being handled (the inbox keeps them
    safe instead), so a due-day burst is not multiplied."""
    async with TelegramEmulator(token=TOKEN) as tg:
        strangers = _guests(tg)
        async with _duban(tg, tmp_path, database) as bot:
            tg.slow("sendMessage", 1)
            for stranger in strangers:
                tg.send_text(stranger, None, "/start")
                await asyncio.sleep(0.1)  # arriving while the earlier ones are in flight
            await _until(lambda: all(tg.messages_to(s) for s in strangers), 60, "answers")
            result = await bot.stop()
    _clean(*result)
    handed_out = {update["update_id"]: tg.deliveries[update["update_id"]] for update in tg.updates}
    assert handed_out == dict.fromkeys(handed_out, 1)
    assert await _inbox(database) == []  # each was cleared once handled


async def test_updates_in_flight_at_kill_9_are_handled_after_the_restart(tmp_path, database):
    """kill -9 while updates are being handled: they were confirmed to Telegram, which will not
    send them again, but the inbox kept them, and the next start handles them."""
    async with TelegramEmulator(token=TOKEN) as tg:
        strangers = _guests(tg)
        async with _duban(tg, tmp_path, database) as first:
            tg.slow("sendMessage", 60)
            for stranger in strangers:
                tg.send_text(stranger, None, "/start")
            await _until(lambda: len(tg.calls_to("sendMessage")) == STRANGERS, 30, "all in flight")
            await _until(
                lambda: (
                    all(tg.deliveries[u["update_id"]] for u in tg.updates)
                    and tg.calls_to("getUpdates")[-1].done_seq is None
                ),
                30,
                "the batch confirmed by the next long poll",
            )
            await first.stop(signal.SIGKILL)
        assert len(await _inbox(database)) == STRANGERS
        tg.slow("sendMessage", 0)
        async with _duban(tg, tmp_path, database) as second:
            await _until(
                lambda: all(len(tg.messages_to(s)) >= 1 for s in strangers), 30, "answered"
            )
            await tg.wait_idle(timeout=30)
            second_result = await second.stop()
    _clean(*second_result)
    assert f"{STRANGERS} updates taken in before the restart are handled now" in second_result[1]
    assert await _inbox(database) == []


async def _inbox(database: str) -> list[tuple]:
    await init_db(database)
    try:
        return list(await PendingUpdate.all().values_list("update_id", flat=True))
    finally:
        await close_db()
