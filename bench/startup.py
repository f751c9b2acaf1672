"""Start-up benchmark: `python -m bot run` from spawn to its first long poll, then idle memory.

    python bench/startup.py              # 3 runs, median printed
    python bench/startup.py --runs 5 --idle 5

Starts the Telegram emulator in-process, then spawns `python -m bot run` as a subprocess with
BOT_TOKEN, TELEGRAM_API_URL, DATABASE_URL (a fresh SQLite file in a temporary folder, so each
start also creates the database and applies the migrations) and SCHEDULING=true: the production
start with the scheduler and sender. Measures the seconds from spawn until the emulator sees the
first getUpdates long poll (`tg.wait_polling()`), then waits `--idle` seconds and reads VmRSS
(and the peak, VmHWM) from /proc/<pid>/status, then SIGTERMs the process and checks it exits.
Python's bytecode caches are warm (as after installation); the first run is printed too.

Prints each run and LAST: the medians, against the aims of 1.5 s and 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)

from bot.telegram_emulator import TelegramEmulator


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


async def one_start(idle: float) -> tuple[float, float, float]:
    """(seconds to polling, idle RSS MB, peak RSS MB) of one cold start."""
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
                sys.executable, "-m", "bot", "run",
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
                    raise SystemExit(f"duban run exited with {process.returncode}:\n{output}")
                exited.cancel()
                polling.result()
                seconds = time.perf_counter() - started
                await asyncio.sleep(idle)
                rss = _status_kb(process.pid, "VmRSS") / 1024
                peak = _status_kb(process.pid, "VmHWM") / 1024
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(process.wait(), 15)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
                        print("  (did not stop within 15 s of SIGTERM: killed)")
    return seconds, rss, peak


async def bench(runs: int, idle: float) -> None:
    results = []
    for run in range(1, runs + 1):
        seconds, rss, peak = await one_start(idle)
        results.append((seconds, rss))
        print(
            f"run {run}: polling after {seconds:.2f} s, idle RSS {rss:.0f} MB "
            f"(peak {peak:.0f} MB) after {idle:g} s idle"
        )
    startup = statistics.median(r[0] for r in results)
    rss = statistics.median(r[1] for r in results)
    print(f"startup {startup:.2f} s (limit 1.5 s), idle RSS {rss:.0f} MB (limit 150 MB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before reading RSS")
    args = parser.parse_args(argv)
    asyncio.run(bench(args.runs, args.idle))


if __name__ == "__main__":
    main()
