"""Idle memory of `python -m bot run` against a bare aiogram bot's, and each one's start-up.

    python bench/startup.py              # 3 runs of each, medians printed
    python bench/startup.py --runs 5 --idle 5

Starts the Telegram emulator in-process, then spawns `python -m bot run` as a subprocess with
BOT_TOKEN, TELEGRAM_API_URL, DATABASE_URL (a fresh SQLite file in a temporary folder, so each
start also creates the database and applies the migrations) and SCHEDULING=true: the production
start with the scheduler and sender. Measures the seconds from spawn until the emulator sees the
first getUpdates long poll (`tg.wait_polling()`), then waits `--idle` seconds and reads VmRSS
(and the peak, VmHWM) from /proc/<pid>/status. Then a new person sends /start and the seconds
until the bot's answer reaches the emulator are measured, and VmRSS again (the first database
read shows there). Then it SIGTERMs the process and checks it exits.

Baseline, in the same run and measured the same way: bench/bare_aiogram.py, a minimal aiogram
bot (Bot on the emulator's URL, a Dispatcher with one echo handler, start_polling). Both import
aiogram as it comes (no patch of pydantic or of aiogram's imports, no garbage-collector pause or
freeze), so "ours - bare" is what Duban itself adds: its ORM, scheduler, handlers and locales.
The two alternate (ours, bare, ours, …) so that a busy machine slows both alike.

Aims: idle RSS at most the bare bot's + 40 MB. Start-up has no aim (a long-running daemon's
start does not matter to its users); it is printed for information.

Bytecode: Python's caches must be warm, as after a real installation (pip compiles every module
it installs). Site-packages have theirs, but an editable install leaves the repository's own
modules uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as in some sandboxes and CI
images) the child would recompile all of them at every start — a cost no installed bot pays.
So before measuring, this script compiles bot/, handlers/, jobs/ and storage/ with `compileall`
(what pip does at install time). That is chosen over clearing PYTHONDONTWRITEBYTECODE for the
child because it does not depend on which run goes first: every measured run, the first
included, starts from the same warm caches.

Each start's CPU time (user + system, from /proc/<pid>/stat) up to the first poll is printed
beside the wall-clock time: when the two are close, the start is bound by computation (imports),
not by waiting on the database or the Bot API. On a shared machine both vary by a second or more
from run to run; use --runs 5 or more before reading much into "ours - bare".

Prints each run, the medians of ours and bare (start, idle memory, first reply and memory after
it) and their difference, and LAST: idle RSS against the aim (bare + 40 MB), start-up beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import ROOT

from telegram_emulator import TelegramEmulator

BARE_BOT = Path(__file__).resolve().parent / "bare_aiogram.py"
PACKAGES = ("bot", "handlers", "jobs", "storage")  # what `pip install` would compile
RSS_ALLOWANCE_MB = 40  # the aim: idle RSS at most the bare aiogram bot's + this


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_start(command: list[str], idle: float) -> tuple[float, ...]:
    """(seconds to polling, CPU seconds to polling, idle RSS MB, peak RSS MB, seconds from a
    first message to the bot's reply, RSS MB after it) of one cold start of `command`."""
    with tempfile.TemporaryDirectory(prefix="duban-startup-") as folder:
        async with TelegramEmulator() as tg:
            env = {
                **os.environ,
                "BOT_TOKEN": tg.token,
                "TELEGRAM_API_URL": tg.base_url,
                "DATABASE_URL": f"sqlite://{Path(folder) / 'duban.sqlite3'}",
                "SCHEDULING": "true",
            }
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=folder, env=env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                polling = asyncio.ensure_future(tg.wait_polling(timeout=60))
                exited = asyncio.ensure_future(process.wait())
                await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
                if not polling.done():
                    polling.cancel()
                    output = (await process.stdout.read()).decode()
                    raise SystemExit(f"{command[-1]} exited with {process.returncode}:\n{output}")
                exited.cancel()
                polling.result()
                seconds = time.perf_counter() - started
                cpu = _cpu_seconds(process.pid)
                await asyncio.sleep(idle)
                rss = _status_kb(process.pid, "VmRSS") / 1024
                peak = _status_kb(process.pid, "VmHWM") / 1024
                # The first update costs what a start defers (the first database read): a
                # person's /start, until the bot's answer arrives.
                person = tg.add_user("Li", language_code="zh")
                asked = time.perf_counter()
                tg.press_start(person)
                await tg.wait_for_message(chat_id=person.id, timeout=60)
                first_reply = time.perf_counter() - asked
                rss_after = _status_kb(process.pid, "VmRSS") / 1024
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(process.wait(), 15)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
                        print("  (did not stop within 15 s of SIGTERM: killed)")
    return seconds, cpu, rss, peak, first_reply, rss_after


def compile_sources() -> None:
    """Write the repository's bytecode caches, as pip does at install time (module docstring)."""
    for package in PACKAGES:
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"compileall failed in {package}/")


async def bench(runs: int, idle: float) -> None:
    compile_sources()
    commands = {
        "ours": [sys.executable, "-m", "bot", "run"],
        "bare": [sys.executable, str(BARE_BOT)],
    }
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in commands}
    for run in range(1, runs + 1):
        for name, command in commands.items():
            seconds, cpu, rss, peak, first_reply, rss_after = await one_start(command, idle)
            results[name].append((seconds, cpu, rss, first_reply, rss_after))
            print(
                f"run {run} {name}: polling after {seconds:.2f} s ({cpu:.2f} s CPU), "
                f"idle RSS {rss:.0f} MB (peak {peak:.0f} MB) after {idle:g} s idle; "
                f"first reply {first_reply:.2f} s after the first message, RSS then "
                f"{rss_after:.0f} MB"
            )
    startup, cpu, memory, reply, memory_after = (
        {name: statistics.median(row[column] for row in rows) for name, rows in results.items()}
        for column in range(5)
    )
    for name in commands:
        print(
            f"{name}: startup {startup[name]:.2f} s ({cpu[name]:.2f} s CPU), "
            f"idle RSS {memory[name]:.0f} MB; first reply {reply[name]:.2f} s, "
            f"RSS {memory_after[name]:.0f} MB after it (medians)"
        )
    print(
        f"ours - bare: startup {startup['ours'] - startup['bare']:+.2f} s "
        f"({cpu['ours'] - cpu['bare']:+.2f} s CPU), "
        f"idle RSS {memory['ours'] - memory['bare']:+.0f} MB"
    )
    print(
        f"idle RSS {memory['ours']:.0f} MB (limit bare + {RSS_ALLOWANCE_MB} MB = "
        f"{memory['bare'] + RSS_ALLOWANCE_MB:.0f} MB; bare aiogram {memory['bare']:.0f} MB), "
        f"startup {startup['ours']:.2f} s (no aim; bare aiogram {startup['bare']:.2f} s)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before reading RSS")
    args = parser.parse_args(argv)
    asyncio.run(bench(args.runs, args.idle))


if __name__ == "__main__":
    main()
