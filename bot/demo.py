"""`duban demo`: a simulated month of Duban, with no token, no network and nothing to configure.

Everything is the production code except the clock and the people:

- a throwaway SQLite database in a temporary directory (migrations applied by `init_db`);
- the Telegram Bot API emulator (telegram_emulator) started in-process on 127.0.0.1;
- the bot exactly as `duban run` builds it (`create_app`: handlers, middlewares, the scheduler,
  the sender and its renderer) long-polling the emulator;
- simulated people acting through the emulator: liaisons redeem invitations made with
  `bot.onboarding.create_invitation` by sending `/start TOKEN`, a coordinator binds the group
  with `/bindgroup`, liaisons answer prompts through the buttons.

Only time is simulated: the sender's clock and sleep and the report flow's clock are a virtual
clock (`dp["delivery_clock"]`, `dp["delivery_sleep"]`, `dp["clock"]`); the scheduler is paused
after start-up and the demo runs what its jobs would run — the planning job and one pass of the
sender — at 09:00 of each day from Monday 16 November to Wednesday 16 December 2026.

The example plan's deadlines are all "到2027年"; so that a deadline reminder falls inside the
month, the demo imports the example with one sentence revised (县卫生健康局's 托位数 target is
due "到2026年12月" instead), and says so in the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import tempfile
import time as walltime
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.app import create_app
from bot.onboarding import create_invitation
from bot.plan_parser import parse_plan
from bot.settings import Settings, load_settings
from jobs.planning import PLANNING_JOB_ID, plan_deliveries
from storage.db import close_db, init_db
from storage.models import Department, Task
from storage.plans import import_plan
from telegram_emulator import TelegramEmulator

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher

EXAMPLE_NAME = "changxing-2023-65.txt"
TZ = ZoneInfo("Asia/Shanghai")
START = date(2026, 11, 16)  # a Monday; prompts on the 20th, reports due on the 25th
DAYS = 31  # through Wednesday 16 December
PACING_SLEEP = 5.0  # the sender's pacing sleeps are short; longer ones are it idling
PRIVATE_LINES = 3  # lines of each message shown in the transcript: to a person
GROUP_LINES = 6  # to the coordination group (summaries, escalations)
TOKEN = "123456:DEMO"
BOT_USERNAME = "duban_demo_bot"

# The revision that brings a deadline into the simulated month (see the module docstring).
REVISION = (
    "到2027年,每千人口拥有3岁以下婴幼儿托位数达到5.6个",
    "到2026年12月,每千人口拥有3岁以下婴幼儿托位数达到5.6个",
)


@dataclass(frozen=True)
class Role:
    """One simulated liaison and what it does with its prompt."""

    department: str
    zh_name: str
    en_name: str
    status: str | None  # on_track / at_risk / blocked; None: never reports
    day: int = 0  # day of November it reports on (after the nudges for the late one)
    at: time = time(10, 0)
    zh_text: str = ""
    en_text: str = ""


ROLES = (
    Role(
        "县卫生健康局",
        "陈联络员",
        "Chen",
        "on_track",
        20,
        time(10, 12),
        "按计划推进：每千人口婴幼儿托位数已达5.5个，新增普惠托育点3处",
        "On track: 5.5 个 childcare places per thousand people so far, 3 new centres",
    ),
    Role(
        "县民政局",
        "周联络员",
        "Zhou",
        "at_risk",
        23,
        time(15, 30),
        "康养联合体签约进度偏慢，护理员招聘困难，可能影响年底目标",
        "Care alliances are signing slowly and carers are hard to hire: the goal is at risk",
    ),
    Role(
        "县教育局",
        "吴联络员",
        "Wu",
        "blocked",
        24,
        time(11, 0),
        "龙山新区学校用地指标未落实，项目暂停，需县自然资源和规划局协调",
        "The Longshan school site still lacks a land quota; work is paused until it is granted",
    ),
    Role(
        "县大数据局",
        "郑联络员",
        "Zheng",
        "on_track",
        26,
        time(10, 5),
        "抱歉迟报：数据平台二期已完成招标，按计划推进",
        "Sorry for the delay: phase two of the data platform is tendered and on schedule",
    ),
    Role("县公安局", "王联络员", "Wang", None, zh_text="", en_text=""),
)
LATE_DEPARTMENT = "县大数据局"
SILENT_DEPARTMENT = "县公安局"

_TEXT = {
    "zh": {
        "start": "督办 Duban 演示：模拟一个月（2026-11-16 至 2026-12-16），仅时钟为模拟",
        "revision": "注：示例方案的截止日期均为2027年；为使临期提醒出现在本月内，演示导入时将"
        "县卫生健康局的托位数目标改为“到2026年12月”。",
        "import": "导入示例方案 {name}：{tasks} 项任务，{departments} 个部门",
        "invite": "协调员为 {department} 生成邀请（/start 令牌）",
        "coordinator": "协调员",
        "group": "工作专班群",
        "press": "[按钮：{label}]",
        "files": "演示结束，用时 {seconds:.1f} 秒；文件在 {dir}",
        "chart_missing": "（未安装中文字体包，周报未附图表）",
        "title": "督办 Duban 演示记录",
    },
    "en": {
        "start": "Duban demo: one simulated month (2026-11-16 to 2026-12-16); only the clock is "
        "simulated",
        "revision": "Note: the example plan's deadlines are all in 2027; so that a deadline "
        "reminder falls in this month, the demo imports it with 县卫生健康局's childcare target "
        "due 'by December 2026' instead.",
        "import": "Imported the example plan {name}: {tasks} tasks, {departments} departments",
        "invite": "The coordinator creates an invitation for {department} (/start token)",
        "coordinator": "Coordinator",
        "group": "Coordination group",
        "press": "[button: {label}]",
        "files": "Demo finished in {seconds:.1f} s; files in {dir}",
        "chart_missing": "(no CJK font package installed: the summary went out without a chart)",
        "title": "Duban demo transcript",
    },
}


def example_plan() -> Path:
    """The shipped example plan: the checkout's examples/, else the copy inside the package."""
    checkout = Path(__file__).resolve().parent.parent / "examples" / EXAMPLE_NAME
    if checkout.is_file():
        return checkout
    return Path(str(resources.files("bot") / "demo_data" / EXAMPLE_NAME))


class _DemoClock:
    """Aware-UTC virtual time for the sender, the report flow and the emulator's flood limits.

    The sender's pacing sleeps advance it (after letting open requests finish); its idle sleeps
    wait to be woken instead of jumping ahead, so only the demo decides which day it is.
    """

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sender: Any = None

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        if seconds > PACING_SLEEP:
            await asyncio.sleep(3600)  # cancelled by the sender's wake-up or stop
            return
        while self.sender is not None and self.sender.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        self.now += timedelta(microseconds=math.ceil(seconds * 1_000_000))
        await asyncio.sleep(0)


def _local(day: date, at: time = time(9, 0)) -> datetime:
    return datetime.combine(day, at, TZ).astimezone(UTC)


def _lines(text: str | None, limit: int, width: int = 110) -> list[str]:
    """The first `limit` non-empty lines of a message, each cut to `width` characters."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()] or [""]
    shown = [line if len(line) <= width else line[: width - 1] + "…" for line in lines[:limit]]
    if len(lines) > limit:
        shown[-1] += " …"
    return shown


class Transcript:
    """Lines printed as the month plays, kept for transcript.txt and transcript.md."""

    def __init__(self, clock: _DemoClock, echo: bool = True) -> None:
        self.clock = clock
        self.echo = echo
        self.lines: list[str] = []

    def stamp(self) -> str:
        return self.clock().astimezone(TZ).strftime("%m-%d %H:%M")

    def add(self, line: str) -> None:
        self.lines.append(line)
        if self.echo:
            print(line, flush=True)

    def note(self, text: str) -> None:
        self.add(f"[{self.stamp()}] ── {text}")

    def bot(self, who: str, text: str | None, *, edited: bool, photo: bool, limit: int) -> None:
        arrow = "✎→" if edited else "→"
        icon = "🖼 " if photo else ""
        first, *rest = _lines(text, limit)
        self.add(f"[{self.stamp()}] 🤖 {arrow} {who}: {icon}{first}")
        for line in rest:
            self.add(f"{'':14}│ {line}")

    def person(self, who: str, text: str) -> None:
        self.add(f"[{self.stamp()}] 👤 {who}: {_lines(text, 1)[0]}")


class _Watcher:
    """Turns what the bot sent (new messages and edits, read from the emulator) into lines."""

    def __init__(self, tg: Any, transcript: Transcript, labels: dict[int, str]) -> None:
        self.tg = tg
        self.transcript = transcript
        self.labels = labels
        self.seen: dict[tuple[int, int], int] = {}

    def flush(self) -> None:
        for message in self.tg.sent:
            key = (message.chat_id, message.message_id)
            versions = max(len(message.versions), 1)
            before = self.seen.get(key)
            if before == versions:
                continue
            self.seen[key] = versions
            who = self.labels.get(message.chat_id, str(message.chat_id))
            self.transcript.bot(
                who,
                message.text,
                edited=before is not None,
                photo=message.method == "sendPhoto",
                limit=GROUP_LINES if message.chat_id < 0 else PRIVATE_LINES,
            )


def _button_label(message: Any, data: str) -> str:
    labels = (b.get("text", data) for b in message.buttons if b.get("callback_data") == data)
    return next(labels, data)


async def run_demo(
    lang: str = "zh",
    out_dir: Path | None = None,
    *,
    echo: bool = True,
    started: float | None = None,
) -> Path:
    """Play the month, print the transcript, write the files; return the output folder.

    `started` (a time.perf_counter() reading) lets the CLI count its own imports in the time.
    """
    started = walltime.perf_counter() if started is None else started
    if lang not in _TEXT:
        raise ValueError(f"language must be zh or en, not {lang!r}")
    words = _TEXT[lang]
    stamp = datetime.now(UTC).astimezone().strftime("%Y%m%d-%H%M%S")
    out = out_dir or Path.cwd() / f"demo-output-{stamp}"
    out.mkdir(parents=True, exist_ok=True)

    clock = _DemoClock(_local(START))
    transcript = Transcript(clock, echo=echo)
    transcript.add(f"# {words['start']}")
    text = example_plan().read_text(encoding="utf-8")
    revised = text.replace(*REVISION)
    if revised == text:  # the example changed: say so rather than pretend
        transcript.add("# (the demo's deadline revision no longer applies to the example plan)")
    else:
        transcript.add(f"# {words['revision']}")

    with tempfile.TemporaryDirectory(prefix="duban-demo-") as scratch:
        database_url = f"sqlite://{Path(scratch) / 'demo.sqlite3'}"
        await init_db(database_url)
        try:
            async with TelegramEmulator(token=TOKEN, bot_username=BOT_USERNAME) as tg:
                month = _Month(tg, clock, transcript, lang, database_url)
                chart = await month.play(revised.encode("utf-8"))
        finally:
            await close_db()

    if chart is not None:
        (out / "summary-chart.png").write_bytes(chart)
    else:
        transcript.add(f"# {words['chart_missing']}")
    elapsed = walltime.perf_counter() - started
    transcript.add(words["files"].format(seconds=elapsed, dir=out))
    (out / "transcript.txt").write_text("\n".join(transcript.lines) + "\n", encoding="utf-8")
    (out / "transcript.md").write_text(_markdown(transcript.lines, words, chart), encoding="utf-8")
    return out


def _markdown(lines: list[str], words: dict[str, str], chart: bytes | None) -> str:
    body = "\n".join(lines)
    image = "\n![summary chart](summary-chart.png)\n" if chart is not None else ""
    return f"# {words['title']}\n\n```text\n{body}\n```\n{image}"


class _Month:
    """The people, the running bot and the days of the simulated month."""

    def __init__(
        self, tg: TelegramEmulator, clock: _DemoClock, transcript: Transcript, lang: str, db: str
    ) -> None:
        self.tg = tg
        self.clock = clock
        self.transcript = transcript
        self.lang = lang
        self.words = _TEXT[lang]
        self.database_url = db
        self.coordinator_name = "李主任" if lang == "zh" else "Director Li"
        self.coordinator = tg.add_user(self.coordinator_name, language_code=lang, started=True)
        self.people = {
            role.department: tg.add_user(
                role.zh_name if lang == "zh" else role.en_name, language_code=lang, started=True
            )
            for role in ROLES
        }
        self.group = tg.add_group(
            self.words["group"], members=list(self.people.values()), admins=[self.coordinator]
        )
        labels = {
            self.coordinator.id: f"{self.words['coordinator']}·{self.coordinator_name}",
            self.group.id: self.words["group"],
        }
        for role in ROLES:
            name = role.zh_name if lang == "zh" else role.en_name
            labels[self.people[role.department].id] = f"{role.department}·{name}"
        self.watcher = _Watcher(tg, transcript, labels)
        self.actions = _Actions(tg, self.watcher, transcript, self.words)
        self.prompts: dict[str, Any] = {}

    def settings(self) -> Settings:
        return load_settings(
            bot_token=self.tg.token,
            telegram_api_url=self.tg.base_url,
            database_url=self.database_url,
            admin_ids=str(self.coordinator.id),
            coordinator_chat_id="",
            timezone="Asia/Shanghai",
            default_locale=self.lang,
            scheduling=True,
        )

    async def play(self, plan_text: bytes) -> bytes | None:
        """Import, onboard, play the days; return the last summary chart's PNG, if any."""
        await import_plan(parse_plan(plan_text), hashlib.sha256(plan_text).hexdigest())
        self.transcript.note(
            self.words["import"].format(
                name=EXAMPLE_NAME,
                tasks=await Task.all().count(),
                departments=await Department.all().count(),
            )
        )
        bot, dp = create_app(self.settings())
        dp["delivery_clock"] = self.clock
        dp["delivery_sleep"] = self.clock.sleep
        dp["clock"] = self.clock
        async with _polling(dp, bot, self.tg):
            scheduler = dp["scheduler"]
            scheduler.pause()  # its jobs would fire in real time; the demo runs them instead
            runtime_id = scheduler.get_job(PLANNING_JOB_ID).args[0]
            sender = dp["sender"]
            self.clock.sender = sender
            self.watcher.flush()
            await self.onboard()
            for offset in range(DAYS + 1):
                day = START + timedelta(days=offset)
                self.clock.now = max(self.clock.now, _local(day))
                await plan_deliveries(runtime_id)
                await sender.run_once()
                await self.tg.wait_idle()
                self.watcher.flush()
                await self.replies(day)
        return self.chart()

    async def onboard(self) -> None:
        """Monday 16 November: invitations, /start TOKEN, and /bindgroup in the group."""
        for offset, role in enumerate(ROLES):
            self.clock.now = _local(START, time(9, 30 + offset * 5))
            invitation = await create_invitation(
                role.department, created_by=self.coordinator.id, as_lead=True
            )
            self.transcript.note(self.words["invite"].format(department=role.department))
            await self.actions.say(
                self.people[role.department],
                None,
                f"/start {invitation.token}",
                shown="/start ••••••",
            )
        self.clock.now = _local(START, time(10, 0))
        await self.actions.say(self.coordinator, self.group, "/bindgroup")

    async def replies(self, day: date) -> None:
        """The liaisons who answer today do so, through their prompt's buttons."""
        for role in ROLES:
            if self.prompts.get(role.department) is None:
                self.prompts[role.department] = next(
                    (
                        m
                        for m in self.tg.messages_to(self.people[role.department])
                        if any(d.startswith("r1:") for d in m.callback_data)
                    ),
                    None,
                )
        for role in ROLES:
            if role.status is None or day != date(2026, 11, role.day):
                continue
            self.clock.now = _local(day, role.at)
            await self.actions.report(
                self.people[role.department],
                self.prompts[role.department],
                role.status,
                role.zh_text if self.lang == "zh" else role.en_text,
            )

    def chart(self) -> bytes | None:
        photos = [m for m in self.tg.sent if m.method == "sendPhoto"]
        if not photos:
            return None
        sizes = photos[-1].get("photo") or []
        largest = max(sizes, key=lambda size: size.get("width", 0) * size.get("height", 0))
        stored = self.tg.world.files.get(largest["file_id"])
        return stored.content if stored is not None else None


class _Actions:
    """Simulated people acting through the emulator, each action logged and waited for."""

    def __init__(self, tg: Any, watcher: _Watcher, transcript: Transcript, words) -> None:
        self.clock = transcript.clock
        self.tg = tg
        self.watcher = watcher
        self.transcript = transcript
        self.words = words

    def _name(self, user: Any) -> str:
        return user.first_name

    def _signature(self, chat_id: int) -> int:
        return sum(max(len(m.versions), 1) for m in self.tg.messages_to(chat_id))

    async def _until_answered(self, chat_id: int, before: int) -> None:
        await self.tg.wait_until(lambda: self._signature(chat_id) != before, timeout=10)
        await self.tg.wait_idle()
        await asyncio.sleep(0.01)  # a handler may send a second message right after the first
        await self.tg.wait_idle()
        self.watcher.flush()

    async def say(self, user: Any, chat: Any, text: str, *, shown: str | None = None) -> None:
        chat_id = chat.id if chat is not None else user.id
        before = self._signature(chat_id)
        self.transcript.person(self._name(user), shown or text)
        self.tg.send_text(user, chat, text)
        await self._until_answered(chat_id, before)

    async def press(self, user: Any, message: Any, data: str) -> None:
        before = self._signature(user.id)
        label = _button_label(message, data)
        self.transcript.person(self._name(user), self.words["press"].format(label=label))
        await self.tg.wait_for_answer(self.tg.press(user, message, data))
        await self._until_answered(user.id, before)

    async def report(self, user: Any, prompt: Any, status: str, text: str) -> None:
        """The prompt's status button, the progress text, then the report flow's buttons."""
        data = next(d for d in prompt.callback_data if d.startswith("r1:") and d.endswith(status))
        await self.press(user, prompt, data)
        await self.say(user, None, text)
        pressed: set[tuple[int, str]] = set()
        for _ in range(8):
            step = self._next_step(user, pressed)
            if step is None:
                return
            message, data = step
            pressed.add((message.message_id, data))
            await self.press(user, message, data)

    def _next_step(self, user: Any, pressed: set[tuple[int, str]]) -> tuple[Any, str] | None:
        for message in reversed(self.tg.messages_to(user)):
            choices = [d for d in message.callback_data if (message.message_id, d) not in pressed]
            for wanted in (":ok", ":done"):
                hit = next((d for d in choices if d.startswith("r5:") and d.endswith(wanted)), None)
                if hit:
                    return message, hit
            hit = next((d for d in choices if d.startswith("r6:")), None)
            if hit:
                return message, hit
            if message.callback_data:
                return None  # the newest message with buttons needs nothing more
        return None


@contextlib.asynccontextmanager
async def _polling(dp: Dispatcher, bot: Bot, tg: Any):
    """`dp.start_polling` in the background as `duban run` does; stopped cleanly on exit."""
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, polling_timeout=10, close_bot_session=False)
    )
    ready = asyncio.create_task(tg.wait_polling(timeout=15))
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
        raise RuntimeError("polling ended before the first getUpdates")
    ready.result()
    try:
        yield task
    finally:
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        try:
            await task
        finally:
            await bot.session.close()
