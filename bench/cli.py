"""CLI benchmark: the cold wall time of the commands that do not talk to Telegram.

    python bench/cli.py               # 5 runs of each, medians
    python bench/cli.py --runs 9
    python bench/cli.py --database postgres

Each command is a fresh interpreter (`python -m bot …`, what the `duban` script runs), timed from
spawn to exit, on a scratch database holding the example plan (examples/changxing-2023-65.txt,
imported with `python -m bot plan import` before the clock; PostgreSQL: a database created on
127.0.0.1:5432 and dropped after):

- `duban plan parse examples/changxing-2023-65.txt` (no database);
- `duban plan show`;
- `duban preview --days 40`;
- `duban summary`.

Baseline, in the same run: `python -c pass`, the interpreter's own start. The commands and the
baseline take turns (one of each, then again), so that a busy machine slows them alike. The
repository's bytecode caches are written first, as `pip install` does (bench/_common.py).

Prints each command's median and minimum wall time, its median CPU time (user + system: on a
busy machine, what the command itself costs), its difference from the baseline and its ratio to it,
and LAST the slowest command's median against the aim of 1 s each (a time, not a ratio: the
ratio to `python -c pass` is printed beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import EXAMPLE_PLAN, ROOT, compile_sources, scratch_database

AIM_SECONDS = 1.0
BASELINE = "python -c pass"
PLAN = str(EXAMPLE_PLAN.relative_to(ROOT))  # the commands run in the repository
COMMANDS = {
    BASELINE: ["-c", "pass"],
    f"duban plan parse {PLAN}": ["-m", "bot", "plan", "parse", PLAN],
    "duban plan show": ["-m", "bot", "plan", "show"],
    "duban preview --days 40": ["-m", "bot", "preview", "--days", "40"],
    "duban summary": ["-m", "bot", "summary"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(arguments: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds from spawn to exit, CPU seconds) of one interpreter; its failure stops the
    benchmark."""
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *arguments], env=env, cwd=ROOT, capture_output=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(arguments)} failed ({result.returncode}):\n{result.stderr.decode()}"
        )
    return seconds, _children_cpu() - cpu


def measure(database_url: str, runs: int) -> dict[str, list[tuple[float, float]]]:
    env = {**os.environ, "DATABASE_URL": database_url}
    timed(["-m", "bot", "plan", "import", "--yes", str(EXAMPLE_PLAN)], env)
    for arguments in COMMANDS.values():  # one untimed run each: the OS's file cache
        timed(arguments, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, arguments in COMMANDS.items():
            times[name].append(timed(arguments, env))
    return times


async def bench(database: str, runs: int) -> None:
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="duban-cli-") as folder:
        async with scratch_database(database, Path(folder)) as database_url:
            times = await asyncio.to_thread(measure, database_url, runs)
    medians = {name: statistics.median(wall for wall, _cpu in rows) for name, rows in times.items()}
    baseline = medians[BASELINE]
    print(f"{runs} runs of each, {database}; wall time median (min), CPU median:")
    for name, rows in times.items():
        print(
            f"  {name:<52} {medians[name]:.2f} s ({min(wall for wall, _ in rows):.2f} s), "
            f"CPU {statistics.median(cpu for _, cpu in rows):.2f} s;  "
            f"{medians[name] - baseline:+.2f} s, {medians[name] / baseline:.1f}× {BASELINE}"
        )
    worst = max((name for name in COMMANDS if name != BASELINE), key=medians.__getitem__)
    print(
        f"slowest {worst}: {medians[worst]:.2f} s (aim ≤ {AIM_SECONDS:g} s each; "
        f"{medians[worst] / baseline:.0f}× {BASELINE} at {baseline:.2f} s)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    asyncio.run(bench(args.database, args.runs))


if __name__ == "__main__":
    main()
