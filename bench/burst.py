"""Due-day burst: N liaisons each complete a report within a minute, through the emulator, against
`duban run`; the time from each update's arrival to the bot's answer, against a bare aiogram floor.

    python bench/burst.py                         # 2000 liaisons in 60 s, SQLite
    python bench/burst.py --n 200 --window 10
    python bench/burst.py --database postgres     # a scratch database on 127.0.0.1:5432

The database: the example plan (examples/changxing-2023-65.txt) imported with `python -m bot plan
import`, which also creates the schema. Its 34 departments are too few for N people each
reporting once, so, as bench/updates.py gives every department a liaison, this script clones
the departments that lead a task: clone k of 县建设局 is "县建设局·k", with every assignment
(lead and support) of the original. Liaison i belongs to one clone and reports on one task that
clone leads, so each report is a department's first of the cycle and no support-unit notice is
sent (with clones, every lead clone of a task would be notified of each support report: a
fan-out no real plan has).

The flow, per liaison, each step waiting for the bot's answer to the last (as a person does),
with `--think` seconds between steps:

1. a reply to a prompt: the prompt is a bot message carrying the prompt's status buttons
   (`r1:<task id>:<status>`, Duban's callback data), put in the chat before the clock starts;
2. the `on_track` status button (`r4:…`) under the bot's answer;
3. the ✅ confirm button (`r5:…:ok`) under the preview: the report is stored.

The N first steps start at random moments (seeded) spread over `--window` seconds. Before them,
one more liaison (not counted) reports alone, so that what a bot does once (the first use of a
code path or a connection) is not taken for due-day latency: on a due day the bot has been
running for days.

The bots run as subprocesses against the Telegram emulator (telegram_emulator, real HTTP,
long polling), one after the other on the same database:

- the floor: bench/burst_floor.py, a bare aiogram bot with the same flow shape (reply, button,
  button) storing the report with Tortoise in three statements (look the sender up, look the
  task up, insert), polling with aiogram's own start_polling (which confirms a batch of updates
  as it takes them in; `duban run` confirms an update only once it is handled, bot/polling.py);
  its rows are counted, then deleted;
- ours: `python -m bot run` (BOT_TOKEN, TELEGRAM_API_URL, DATABASE_URL; SCHEDULING=false, so
  that no prompt or reminder of the day competes with the burst; conversation state in memory,
  or in Redis with --redis-url).

Latency of an update: from the moment the script queues it in the emulator to the arrival at
the emulator of the bot's answer (the emulator's clock on the request): for the reply, the
sendMessage carrying the status buttons; for a button, the later of answerCallbackQuery and the
sendMessage/editMessageText showing the next screen (preview, then receipt). An update with no
answer within --timeout seconds counts as unanswered.

Prints, for the floor and ours: p50/p95/p99 of all 3·N latencies (and p95 of each step), the
bot's CPU time over the burst, its getUpdates calls and how many times on average getUpdates
handed it each update, this process's CPU time (the emulator and the people share the machine
with the bot), the unanswered updates, the reports lost (N minus the rows in the reports table:
aim 0); LAST the
figure `p95 ours / p95 floor` (aim ≤ 2), with ours' p95 (aim ≤ 300 ms) beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import aiohttp
from _common import EXAMPLE_PLAN, ROOT, scratch_database

from storage.db import close_db, init_db
from storage.enums import LiaisonRole
from storage.models import Assignment, Department, Liaison, Report
from telegram_emulator import ApiCall, TelegramEmulator

FLOOR_BOT = Path(__file__).resolve().parent / "burst_floor.py"
TEXT = "本月按计划推进，已完成入户走访和资料汇总，下一步开展督导检查。"  # no numbers: no questions
PROMPT = "📋 进度提示：请回复本消息报送进展"
STATUSES = ("on_track", "at_risk", "blocked", "done")
FIRST_USER = 800_000
STEPS = ("reply", "status", "confirm")


# -- the database --------------------------------------------------------------------------------


async def run_cli(database_url: str, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"duban {' '.join(args)} failed:\n{output.decode()}")


async def seed(database_url: str, n: int) -> list[tuple[int, int]]:
    """The example plan, N clone departments and one liaison each: [(user id, task id)]."""
    await run_cli(database_url, "plan", "import", "--yes", str(EXAMPLE_PLAN))
    await init_db(database_url)
    try:
        rows = (
            await Assignment.all()
            .order_by("id")
            .values("department_id", "task_id", "role", "position")
        )
        by_department: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_department[row["department_id"]].append(row)
        leading = sorted(d for d, items in by_department.items() if any(
            str(item["role"]) == "lead" for item in items
        ))  # fmt: skip
        names = dict(await Department.filter(id__in=leading).values_list("id", "name"))
        clone_names = [f"{names[leading[i % len(leading)]]}·{i // len(leading)}" for i in range(n)]
        await Department.bulk_create([Department(name=name) for name in clone_names])
        by_name = dict(await Department.filter(name__in=clone_names).values_list("name", "id"))
        assignments, liaisons, people = [], [], []
        now = datetime.now(UTC)
        for i in range(n):
            original = leading[i % len(leading)]
            clone = by_name[f"{names[original]}·{i // len(leading)}"]
            items = by_department[original]
            assignments += [
                Assignment(
                    department_id=clone,
                    task_id=item["task_id"],
                    role=item["role"],
                    position=item["position"],
                )
                for item in items
            ]
            leads = [item["task_id"] for item in items if str(item["role"]) == "lead"]
            user_id = FIRST_USER + i
            liaisons.append(
                Liaison(
                    telegram_user_id=user_id,
                    full_name=f"联络员{i}",
                    department_id=clone,
                    role=LiaisonRole.LIAISON,
                    language_code="zh",
                    is_lead=True,
                    bound_at=now,
                )
            )
            people.append((user_id, leads[(i // len(leading)) % len(leads)]))
        await Assignment.bulk_create(assignments, batch_size=1000)
        await Liaison.bulk_create(liaisons, batch_size=1000)
        return people
    finally:
        await close_db()


async def count_reports(database_url: str, *, delete: bool = False) -> int:
    await init_db(database_url)
    try:
        count = await Report.all().count()
        if delete:
            await Report.all().delete()
        return count
    finally:
        await close_db()


# -- watching the bot's answers ------------------------------------------------------------------


@dataclass
class Answer:
    """A call of the bot that answers someone: a message, an edit, or a callback answer."""

    kind: str  # "message" (sendMessage or editMessageText) or "callback"
    time: float  # emulator clock when the request arrived
    message_id: int = 0
    buttons: list[str] = field(default_factory=list)
    query_id: str = ""


def _buttons(call: ApiCall) -> list[str]:
    markup = call.arg("reply_markup") or {}
    if not isinstance(markup, dict):
        return []
    return [
        button["callback_data"]
        for row in markup.get("inline_keyboard", [])
        for button in row
        if "callback_data" in button
    ]


class Watcher:
    """Reads the emulator's call log as it grows and files each answer under its chat."""

    def __init__(self, tg: TelegramEmulator) -> None:
        self.tg = tg
        self.seen = 0
        self.open: list[int] = []  # indices of calls not answered by the emulator yet
        self.answers: dict[int, list[Answer]] = defaultdict(list)
        self.wakers: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.failed: list[str] = []

    def scan(self) -> None:
        calls = self.tg.calls
        self.open += range(self.seen, len(calls))
        self.seen = len(calls)
        still_open = []
        for index in self.open:
            call = calls[index]
            method = call.method.lower()
            if method not in ("sendmessage", "editmessagetext", "answercallbackquery"):
                continue
            if call.done_seq is None:
                still_open.append(index)
                continue
            if not call.ok:
                self.failed.append(f"{call.method}: {call.status} {call.description}")
                continue
            if method == "answercallbackquery":
                query_id = str(call.arg("callback_query_id"))
                chat = self.tg.callback_queries[query_id].chat_id
                answer = Answer("callback", call.time, query_id=query_id)
            else:
                chat = int(call.arg("chat_id"))
                message_id = (
                    int(call.arg("message_id"))
                    if method == "editmessagetext"
                    else int(call.result["message_id"])
                )
                answer = Answer("message", call.time, message_id, _buttons(call))
            self.answers[chat].append(answer)
            self.wakers[chat].set()
        self.open = still_open

    async def run(self) -> None:
        while True:
            await self.tg.world.changed(0.05)
            self.scan()

    async def expect(self, chat: int, wanted: Callable[[Answer], bool], patience: float) -> Answer:
        """The first answer in `chat` that `wanted` accepts (taken off the list); TimeoutError
        after `patience` seconds."""
        deadline = time.monotonic() + patience
        while True:
            for index, answer in enumerate(self.answers[chat]):
                if wanted(answer):
                    del self.answers[chat][index]
                    return answer
            waker = self.wakers[chat]
            waker.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                await waker.wait()


def _has_button(prefix: str, suffix: str) -> Callable[[Answer], bool]:
    def wanted(answer: Answer) -> bool:
        return answer.kind == "message" and any(
            d.startswith(prefix) and d.endswith(suffix) for d in answer.buttons
        )

    return wanted


def _button(answer: Answer, prefix: str, suffix: str) -> str:
    return next(d for d in answer.buttons if d.startswith(prefix) and d.endswith(suffix))


# -- the people ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    unanswered: int = 0
    bot_failed: list[str] = field(default_factory=list)
    seconds: float = 0.0  # from the first possible start to the last flow's end
    cpu: float = 0.0  # the bot's CPU seconds (user + system) over the burst
    polls: int = 0  # getUpdates calls over the burst
    deliveries: float = 0.0  # times getUpdates returned an update, on average
    harness_cpu: float = 0.0  # this process's CPU seconds (the emulator and the people)


@dataclass
class People:
    """What every simulated person shares: the emulator, the watcher, the pace, the results."""

    tg: TelegramEmulator
    watcher: Watcher
    think: float  # seconds between a person's two steps
    patience: float  # seconds before an update counts as unanswered
    outcome: Outcome

    async def report(self, user_id: int, prompt: dict[str, Any], start: float) -> None:
        """One person: reply to the prompt, press a status, press confirm, each after the
        bot's answer to the last."""
        tg, watcher, patience = self.tg, self.watcher, self.patience
        user = tg.users[user_id]
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        try:
            queued = tg.clock()
            tg.send_text(user, None, TEXT, reply_to=prompt)
            screen = await watcher.expect(user_id, _has_button("r4:", ":on_track"), patience)
            self.outcome.latencies["reply"].append(screen.time - queued)
            for step, (prefix, suffix), (next_prefix, next_suffix) in (
                ("status", ("r4:", ":on_track"), ("r5:", ":ok")),
                ("confirm", ("r5:", ":ok"), ("r7:", "")),
            ):
                await asyncio.sleep(self.think)
                ref = {"chat": {"id": user_id}, "message_id": screen.message_id}
                queued = tg.clock()
                query_id = tg.press(user, ref, _button(screen, prefix, suffix))
                answered = await watcher.expect(
                    user_id, lambda a, q=query_id: a.kind == "callback" and a.query_id == q,
                    patience,
                )  # fmt: skip
                screen = await watcher.expect(
                    user_id, _has_button(next_prefix, next_suffix), patience
                )
                self.outcome.latencies[step].append(max(answered.time, screen.time) - queued)
        except TimeoutError:
            self.outcome.unanswered += 1


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one bot, one burst --------------------------------------------------------------------------


async def start_bot(command: list[str], env: dict[str, str], log: Path, tg: TelegramEmulator):
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=log.parent, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
        )
    polling = asyncio.ensure_future(tg.wait_polling(timeout=120))
    exited = asyncio.ensure_future(process.wait())
    await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not polling.done():
        polling.cancel()
        output = await asyncio.to_thread(log.read_text)
        raise SystemExit(f"{command[-1]} exited with {process.returncode}:\n{output}")
    exited.cancel()
    polling.result()
    return process


async def stop_bot(process: asyncio.subprocess.Process, log: Path) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            print(f"  ({log.stem} did not stop within 30 s of SIGTERM: killed)")


async def send_prompts(tg: TelegramEmulator, people: list[tuple[int, int]]) -> list[dict]:
    """One prompt per person, sent through the Bot API as the bot would (before the clock)."""
    url = f"{tg.base_url}/bot{tg.token}/sendMessage"
    prompts: list[dict] = [{}] * len(people)
    semaphore = asyncio.Semaphore(32)

    async def one(index: int, user_id: int, task_id: int) -> None:
        markup = {
            "inline_keyboard": [
                [{"text": status, "callback_data": f"r1:{task_id}:{status}"}] for status in STATUSES
            ]
        }
        body = {
            "chat_id": user_id,
            "text": "📋 进度提示：请回复本消息报送进展",
            "reply_markup": markup,
        }
        async with semaphore, session.post(url, json=body) as response:
            prompts[index] = (await response.json())["result"]

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(i, u, t) for i, (u, t) in enumerate(people)))
    return prompts


async def burst(
    name: str,
    command: list[str],
    database_url: str,
    people: list[tuple[int, int]],
    *,
    args: argparse.Namespace,
    folder: Path,
) -> Outcome:
    outcome = Outcome()
    async with TelegramEmulator() as tg:
        for user_id, _task in people:
            tg.add_user(f"联络员{user_id - FIRST_USER}", user_id=user_id, language_code="zh",
                        started=True)  # fmt: skip
        prompts = await send_prompts(tg, people)
        env = {
            **os.environ,
            "BOT_TOKEN": tg.token,
            "TELEGRAM_API_URL": tg.base_url,
            "DATABASE_URL": database_url,
            "SCHEDULING": "false",
            "REDIS_URL": args.redis_url or "",
        }
        log = folder / f"{name}.log"
        process = await start_bot(command, env, log, tg)
        watcher = Watcher(tg)
        watching = asyncio.create_task(watcher.run())
        try:
            # One report before the clock, by a person outside the burst: what a bot does once
            # (first use of a code path, of a connection) is not due-day latency.
            (warm_id, _task), warm_prompt = people[-1], prompts[-1]
            warm = Outcome()
            await People(tg, watcher, 0.0, args.timeout, warm).report(warm_id, warm_prompt, 0.0)
            if warm.unanswered:
                output = await asyncio.to_thread(log.read_text)
                raise SystemExit(f"{name} did not answer the warm-up report:\n{output[-3000:]}")
            people, prompts = people[:-1], prompts[:-1]
            cpu_before = _cpu_seconds(process.pid)
            harness_before = _cpu_seconds(os.getpid())
            polls_before = len(tg.calls_to("getUpdates"))
            updates_before = len(tg.updates)
            draw = random.Random(11)
            begin = time.monotonic() + 0.5
            starts = sorted(begin + draw.uniform(0, args.window) for _ in people)
            people_of_the_burst = People(tg, watcher, args.think, args.timeout, outcome)
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    people_of_the_burst.report(user_id, prompt, start)
                    for (user_id, _task), prompt, start in zip(people, prompts, starts, strict=True)
                )
            )
            outcome.seconds = time.perf_counter() - started
            await tg.wait_idle(timeout=args.timeout)
            outcome.cpu = _cpu_seconds(process.pid) - cpu_before
            outcome.harness_cpu = _cpu_seconds(os.getpid()) - harness_before
            outcome.polls = len(tg.calls_to("getUpdates")) - polls_before
            burst_ids = [u["update_id"] for u in tg.updates[updates_before:]]
            outcome.deliveries = sum(tg.deliveries[i] for i in burst_ids) / len(burst_ids)
        finally:
            watching.cancel()
            await stop_bot(process, log)
        watcher.scan()
        outcome.bot_failed = watcher.failed
    return outcome


# -- figures ---------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank; NaN when there is nothing to rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def describe(name: str, outcome: Outcome, stored: int, n: int) -> float:
    every = [v for values in outcome.latencies.values() for v in values]
    p50, p95, p99 = (percentile(every, p) * 1000 for p in (50, 95, 99))
    steps = ", ".join(
        f"{step} {percentile(values, 95) * 1000:.0f}" for step, values in outcome.latencies.items()
    )
    print(
        f"{name}: {len(every)} updates answered, p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"p99 {p99:.0f} ms, max {max(every, default=float('nan')) * 1000:.0f} ms "
        f"(p95 by step, ms: {steps})"
    )
    print(
        f"{name}: flows done {outcome.seconds:.1f} s after the first could start; bot CPU "
        f"{outcome.cpu:.1f} s ({outcome.cpu / n * 1000:.0f} ms a report); {outcome.polls} "
        f"getUpdates, each update returned {outcome.deliveries:.1f} times on average; "
        f"emulator and people CPU {outcome.harness_cpu:.1f} s"
    )
    print(
        f"{name}: unanswered {outcome.unanswered}, failed calls {len(outcome.bot_failed)}"
        f"{' ' + '; '.join(outcome.bot_failed[:3]) if outcome.bot_failed else ''}, "
        f"report rows {stored}, reports lost {n - stored}"
    )
    return p95


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="duban-burst-") as name:
        folder = Path(name)
        async with scratch_database(args.database, folder) as database_url:
            people = await seed(database_url, args.n + 1)  # the last one warms a bot up
            print(
                f"burst: {args.n} liaisons, first updates spread over {args.window:g} s, "
                f"{args.think:g} s between a person's steps, {args.database}, "
                f"FSM in {'Redis' if args.redis_url else 'memory'}"
            )
            floor = await burst(
                "floor",
                [sys.executable, str(FLOOR_BOT)],
                database_url,
                people,
                args=args,
                folder=folder,
            )
            floor_stored = await count_reports(database_url, delete=True) - 1  # the warm-up's
            ours = await burst(
                "ours",
                [sys.executable, "-m", "bot", "run"],
                database_url,
                people,
                args=args,
                folder=folder,
            )
            ours_stored = await count_reports(database_url) - 1
    floor_p95 = describe("floor", floor, floor_stored, args.n)
    ours_p95 = describe("ours", ours, ours_stored, args.n)
    print(
        f"p95 ours / p95 floor {ours_p95 / floor_p95:.2f}  (aim ≤ 2; ours p95 {ours_p95:.0f} ms, "
        f"aim ≤ 300 ms; floor p95 {floor_p95:.0f} ms; reports lost {args.n - ours_stored})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="liaisons, one report each")
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds over which the first updates arrive"
    )
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds a person takes between two steps"
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--redis-url", default="", help="REDIS_URL for ours (conversation state in Redis)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds before an update is unanswered"
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
