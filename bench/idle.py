"""Idle memory: the resident set of `duban run` once it is up and polling, beside a bare aiogram
bot's.

    python bench/idle.py              # 3 starts of each, medians
    python bench/idle.py --runs 5 --idle 10

Starts the Telegram emulator in-process, then alternately (ours, bare, ours, …):

- ours: `python -m bot run` with BOT_TOKEN, TELEGRAM_API_URL, DATABASE_URL (a SQLite database
  holding the example plan, imported with `python -m bot plan import` before the first start)
  and SCHEDULING=true: the production process with its scheduler and sender;
- bare: bench/bare_aiogram.py, a Bot on the emulator's URL, a Dispatcher with one echo handler,
  start_polling; no database, no scheduler, no i18n.

Each is measured after the emulator answered its getMe and it is waiting in a getUpdates long
poll, then `--idle` seconds of nothing: VmRSS (and the peak so far, VmHWM) from
/proc/<pid>/status. Then SIGTERM. The repository's bytecode caches are written first, as
`pip install` does (bench/_common.py).

Prints each start, the medians, and LAST ours minus bare in idle RSS against the aim of
40 MB at most, with both figures beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import EXAMPLE_PLAN, compile_sources

from telegram_emulator import TelegramEmulator

AIM_MB = 40.0
BARE_BOT = Path(__file__).resolve().parent / "bare_aiogram.py"


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


async def one_start(command: list[str], database_url: str, idle: float) -> tuple[float, float]:
    """(idle RSS MB, peak RSS MB) of one start of `command`."""
    async with TelegramEmulator() as tg:
        env = {
            **os.environ,
            "BOT_TOKEN": tg.token,
            "TELEGRAM_API_URL": tg.base_url,
            "DATABASE_URL": database_url,
            "SCHEDULING": "true",
        }
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            polling = asyncio.ensure_future(tg.wait_polling(timeout=120))
            exited = asyncio.ensure_future(process.wait())
            await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not polling.done():
                polling.cancel()
                raise SystemExit(f"{command[-1]} exited with {process.returncode}")
            exited.cancel()
            polling.result()
            if not any(call.ok for call in tg.calls_to("getMe")):
                raise SystemExit(f"{command[-1]} polls without having asked getMe")
            await asyncio.sleep(idle)
            if tg.polling == 0:
                raise SystemExit(f"{command[-1]} stopped polling while idle")
            return status_mb(process.pid, "VmRSS"), status_mb(process.pid, "VmHWM")
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    print(f"  ({command[-1]} did not stop within 30 s of SIGTERM: killed)")


async def import_plan(database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "plan", "import", "--yes", str(EXAMPLE_PLAN),
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"duban plan import failed:\n{output.decode()}")


async def bench(runs: int, idle: float) -> None:
    compile_sources()
    commands = {
        "ours": [sys.executable, "-m", "bot", "run"],
        "bare": [sys.executable, str(BARE_BOT)],
    }
    results: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="duban-idle-") as folder:
        database_url = f"sqlite://{Path(folder) / 'duban.sqlite3'}"
        await import_plan(database_url)
        for run in range(1, runs + 1):
            for name, command in commands.items():
                rss, peak = await one_start(command, database_url, idle)
                results[name].append(rss)
                print(
                    f"run {run} {name}: idle RSS {rss:.1f} MB (peak {peak:.1f} MB) "
                    f"after {idle:g} s polling"
                )
    ours, bare = (statistics.median(results[name]) for name in commands)
    print(f"medians: ours {ours:.1f} MB, bare aiogram {bare:.1f} MB")
    print(
        f"idle RSS ours - bare {ours - bare:+.1f} MB (aim ≤ +{AIM_MB:g} MB; "
        f"ours {ours:.1f} MB, bare aiogram {bare:.1f} MB)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds polling before reading")
    args = parser.parse_args(argv)
    asyncio.run(bench(args.runs, args.idle))


if __name__ == "__main__":
    main()
