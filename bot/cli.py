"""The `duban` command line: plan parsing and import, lookups, and (later) running the bot.

Every failure a user can cause ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bot import plan_report
from bot.plan_parser import PlanFormatError, parse_plan
from bot.settings import ConfigError, Settings, load_settings

EXIT_ERROR = 1


class CliError(Exception):
    """A user-facing failure; the message is printed as one line."""


def _read_plan_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a plan file") from None
    except PermissionError:
        raise CliError(f"{path}: permission denied") from None


def _parse_file(path: str):
    data = _read_plan_file(path)
    try:
        return parse_plan(data), hashlib.sha256(data).hexdigest()
    except PlanFormatError as exc:
        raise CliError(f"{path}: not a plan: {exc}") from None


def cmd_plan_parse(args: argparse.Namespace, _settings: Callable[[], Settings]) -> None:
    plan, _digest = _parse_file(args.file)
    if args.json:
        print(json.dumps(plan.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(plan_report.render_parsed_plan(plan))


def cmd_plan_import(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    # Parse first: a file that is not a plan never opens, let alone touches, the database.
    plan, digest = _parse_file(args.file)
    result = _run_with_db(settings(), _import(plan, digest))
    print(plan_report.render_import_result(plan, result))


async def _import(plan, digest):
    from storage.plans import import_plan

    return await import_plan(plan, source_sha256=digest)


def cmd_plan_show(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from storage.plans import tasks_by_department

    groups = _run_with_db(settings(), tasks_by_department(args.department))
    if args.department and not groups:
        raise CliError(f"no department matches {args.department!r} (see: duban departments)")
    print(plan_report.render_tasks_by_department(groups))


def cmd_departments(_args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from storage.plans import department_task_counts

    print(plan_report.render_department_counts(_run_with_db(settings(), department_task_counts())))


def cmd_run(_args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    import logging

    from bot.app import MissingTokenError, TelegramUnreachableError, run

    config = settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run(config))
    except (MissingTokenError, TelegramUnreachableError) as exc:
        raise CliError(str(exc)) from None


def _run_with_db(settings: Settings, coroutine):
    """Open the database, run one storage coroutine, and always close the database again."""
    from storage.db import close_db, init_db

    async def runner():
        await init_db(settings.database_url)
        try:
            return await coroutine
        finally:
            await close_db()

    try:
        return asyncio.run(runner())
    except OSError as exc:
        raise CliError(f"database unreachable ({type(exc).__name__}: {exc})") from None
    finally:
        coroutine.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duban", description="督办 Duban: supervise the implementation of a plan."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = commands.add_parser("plan", help="parse, import and show implementation plans")
    plan_commands = plan.add_subparsers(dest="plan_command", required=True, metavar="ACTION")
    parse = plan_commands.add_parser("parse", help="parse a plan file without touching the db")
    parse.add_argument("file", help="the plan as UTF-8 or GB18030 text")
    parse.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parse.set_defaults(handler=cmd_plan_parse)
    load = plan_commands.add_parser("import", help="store a plan (again: update it in place)")
    load.add_argument("file", help="the plan as UTF-8 or GB18030 text")
    load.set_defaults(handler=cmd_plan_import)
    show = plan_commands.add_parser("show", help="tasks by department with their role")
    show.add_argument("--department", metavar="NAME", help="one department (name or alias)")
    show.set_defaults(handler=cmd_plan_show)

    departments = commands.add_parser("departments", help="departments and their task counts")
    departments.set_defaults(handler=cmd_departments)

    run = commands.add_parser("run", help="run the bot (long polling, or a webhook server)")
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args, load_settings)
    except (CliError, ConfigError) as exc:
        print(f"duban: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0
