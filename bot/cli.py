"""The `duban` command line: plan parsing and import, lookups, invitations, schedules (preview,
summary, working calendar) and running the bot.

Every failure a user can cause ends in one line on stderr and a non-zero exit, never a traceback.
Each command imports what it needs when it runs: `duban plan parse` needs no aiogram, and
`duban run` no plan parser.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path

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
    from bot.plan_parser import PlanFormatError, parse_plan

    data = _read_plan_file(path)
    try:
        return parse_plan(data), hashlib.sha256(data).hexdigest()
    except PlanFormatError as exc:
        raise CliError(f"{path}: not a plan: {exc}") from None


def cmd_plan_parse(args: argparse.Namespace, _settings: Callable[[], Settings]) -> None:
    from bot import plan_report

    plan, _digest = _parse_file(args.file)
    if args.json:
        print(json.dumps(plan.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(plan_report.render_parsed_plan(plan))


def cmd_plan_import(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    """Import (or revise) a plan. A revision that would withdraw tasks with reports, or change or
    withdraw targets with reported values, asks first: y/N on a terminal; otherwise it stores
    nothing and fails unless `--yes` was given. `--dry-run` prints the difference, stores nothing.
    """
    from bot import plan_report
    from storage.plans import ConfirmationNeeded

    # Parse first: a file that is not a plan never opens, let alone touches, the database.
    plan, digest = _parse_file(args.file)
    config = settings()
    if args.dry_run:
        result = _run_with_db(config, _import(plan, digest, dry_run=True))
        print(plan_report.render_import_result(plan, result, dry_run=True))
        return
    try:
        result = _run_with_db(config, _import(plan, digest, confirmed=args.yes))
    except ConfirmationNeeded as needed:
        if not sys.stdin.isatty():
            raise CliError(
                f"{'; '.join(needed.result.losses)}: nothing stored; "
                "check with --dry-run, then pass --yes to import anyway"
            ) from None
        print(plan_report.render_import_result(plan, needed.result, dry_run=True))
        print("\n".join(f"! {line}" for line in needed.result.losses))
        if input("Import this revision anyway? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CliError("not imported: nothing stored") from None
        result = _run_with_db(config, _import(plan, digest))
    print(plan_report.render_import_result(plan, result))


async def _import(plan, digest, *, dry_run: bool = False, confirmed: bool = True):
    from storage.plans import import_plan

    return await import_plan(plan, source_sha256=digest, dry_run=dry_run, confirmed=confirmed)


def cmd_department_merge(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    """Move OLD's liaisons, invitations and history to NEW; OLD's name becomes NEW's alias.
    `rename` does the same, or just renames OLD when no department is called NEW yet."""
    from storage.departments import DepartmentError, merge_departments

    try:
        moved = _run_with_db(settings(), merge_departments(args.old, args.new, create=args.rename))
    except DepartmentError as exc:
        raise CliError(str(exc)) from None
    print(moved.describe())


def cmd_plan_show(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from bot import plan_report
    from storage.plan_queries import tasks_by_department

    groups = _run_with_db(settings(), tasks_by_department(args.department))
    if args.department and not groups:
        raise CliError(f"no department matches {args.department!r} (see: duban departments)")
    print(plan_report.render_tasks_by_department(groups))


def cmd_departments(_args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from bot import plan_report
    from storage.plan_queries import department_task_counts

    print(plan_report.render_department_counts(_run_with_db(settings(), department_task_counts())))


def cmd_invite(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from bot.onboarding import MAX_INVITE_DAYS, UnknownDepartmentError

    if not 1 <= args.days <= MAX_INVITE_DAYS:
        raise CliError(f"--days: expected 1 to {MAX_INVITE_DAYS}, got {args.days}")
    config = settings()
    try:
        invitation, username = _run_with_db(config, _invite(args.department, args.days, args.lead))
    except UnknownDepartmentError as exc:
        if exc.suggestions:
            raise CliError(
                f"no department is called {exc.query!r}; closest: {', '.join(exc.suggestions)}"
            ) from None
        if not exc.any_departments:
            raise CliError(
                "no departments yet: import a plan first (duban plan import FILE)"
            ) from None
        raise CliError(f"no department is called {exc.query!r} (see: duban departments)") from None
    expires = invitation.expires_at.astimezone(config.tz).strftime("%Y-%m-%d %H:%M")
    role = "lead liaison" if invitation.as_lead else "liaison"
    print(
        f"Invitation to join {invitation.department} as {role} "
        f"(single use, expires {expires} {config.timezone}):"
    )
    if link := invitation.link(username):
        print(f"  {link}")
    print(f"  {invitation.start_command}")
    if not link:
        print(
            "duban: note: the bot's username is not known yet, so there is no t.me link: "
            "run the bot once (duban run) to learn it, or send the /start line to the bot",
            file=sys.stderr,
        )


async def _invite(department: str, days: int, as_lead: bool):
    from bot.onboarding import create_invitation, known_bot_username

    invitation = await create_invitation(department, days=days, as_lead=as_lead)
    return invitation, await known_bot_username()


MAX_PREVIEW_DAYS = 366


def cmd_preview(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from bot.preview import preview

    if not 1 <= args.days <= MAX_PREVIEW_DAYS:
        raise CliError(f"--days: expected 1 to {MAX_PREVIEW_DAYS}, got {args.days}")
    config = settings()
    start = None
    if args.start is not None:
        start = args.start if args.start.tzinfo else args.start.replace(tzinfo=config.tz)
    print(_run_with_db(config, _calendar_guard(preview(config, args.days, now=start))), end="")


def cmd_summary(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    chart = Path(args.chart) if args.chart else None
    if chart is not None and not chart.parent.is_dir():
        raise CliError(f"--chart: {chart.parent} is not a directory")
    config = settings()
    text = _run_with_db(config, _summary(config, args.date, chart))
    # Without the CJK font no chart is written; bot.summary_service logs a warning saying so.
    print(text, end="")


async def _summary(config: Settings, day: date | None, chart: Path | None) -> str:
    from bot.summary import WEEK
    from bot.summary_service import summary_for_cli, summary_moment
    from storage.deliveries import delivery_issues_since, possible_duplicates_since

    since = summary_moment(day, config.tz) - WEEK
    issues = await delivery_issues_since(since)
    duplicates = await possible_duplicates_since(since)
    try:
        return await summary_for_cli(
            config, day, chart, delivery_issues=issues, possible_duplicates=duplicates
        )
    except OSError as exc:  # writing the chart
        raise CliError(f"--chart: cannot write {chart}: {exc.strerror or exc}") from None


def _iso_moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {text!r}"
        ) from None


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def cmd_calendar_load(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from bot.workcalendar import CalendarError, CalendarExtra

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a calendar file") from None
    except PermissionError:
        raise CliError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text") from None
    try:
        extra = CalendarExtra.parse(text, source=str(path))
    except CalendarError as exc:
        raise CliError(str(exc)) from None
    if not extra.years:
        raise CliError(f"{path}: no 'year YYYY' line: the file declares no year")
    years = _run_with_db(settings(), _save_calendar(extra))
    holidays = sum(1 for kind in extra.days.values() if kind == "holiday")
    workdays = len(extra.days) - holidays
    print(
        f"Loaded the working calendar for {', '.join(map(str, years))}: "
        f"{holidays} holidays, {workdays} make-up working days (调休)."
    )


async def _save_calendar(extra):
    from storage.schedule import save_calendar_extra

    return await save_calendar_extra(extra)


def cmd_calendar_show(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from bot.workcalendar import WorkCalendar

    if args.year is not None and not 2000 <= args.year <= 2100:
        raise CliError(f"year: expected 2000 to 2100, got {args.year}")
    config = settings()
    extra = _run_with_db(config, _calendar_guard(_load_calendar_extra()))
    package = WorkCalendar(use_package=True)
    this_year = _today(config).year
    years = [args.year] if args.year else _years_to_show(this_year, extra.years)
    for year in years:
        if year in extra.years:
            source = "covered: loaded file (duban calendar load)"
            if package.covers(year):
                source += ", over the chinesecalendar package"
        elif package.covers(year):
            source = "covered: chinesecalendar package"
        else:
            source = (
                "NOT covered: Monday to Friday assumed "
                f"(load the State Council's schedule: duban calendar load FILE with 'year {year}')"
            )
        print(f"{year}: {source}")
    if args.year and args.year in extra.years:
        print()
        print(extra.to_text(args.year), end="")


async def _load_calendar_extra():
    from storage.schedule import load_calendar_extra

    return await load_calendar_extra()


async def _calendar_guard(coroutine):
    """A damaged stored calendar is one error line, not a traceback."""
    from bot.workcalendar import CalendarError

    try:
        return await coroutine
    except CalendarError as exc:
        raise CliError(f"{exc} (load that year again: duban calendar load FILE)") from None
    finally:
        coroutine.close()


def _today(config: Settings) -> date:
    from datetime import UTC

    return datetime.now(UTC).astimezone(config.tz).date()


def _years_to_show(this_year: int, loaded: frozenset[int]) -> list[int]:
    """This year to the plan's usual horizon (two years ahead), and every loaded year."""
    return sorted({*range(this_year - 1, this_year + 3), *loaded})


def cmd_run(_args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    import logging

    config = settings()  # a mistake in the settings is told at once, not after the imports
    from bot.app import MissingTokenError, TelegramUnreachableError, run
    from storage.lease import LockError

    _configure_logging(logging.INFO, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(config))
    except (MissingTokenError, TelegramUnreachableError, LockError) as exc:
        raise CliError(str(exc)) from None


def cmd_demo(args: argparse.Namespace, _settings: Callable[[], Settings]) -> None:
    import logging
    import time

    started = time.perf_counter()  # aiogram alone takes a second to import: count it
    from bot.demo import run_demo

    # The transcript is the output; the bot's own warnings (a missed job, an unknown year in the
    # working calendar) would only interleave with it.
    _configure_logging(logging.ERROR, "%(levelname)s %(name)s: %(message)s")
    out = Path(args.out) if args.out else None
    try:
        asyncio.run(run_demo(args.lang, out, started=started))
    except OSError as exc:
        raise CliError(f"demo failed ({type(exc).__name__}: {exc})") from None


def _configure_logging(level: int, fmt: str) -> None:
    """Log to stderr, every handler with the token redacted (bot.redaction)."""
    import logging

    from bot.redaction import install_log_redaction

    logging.basicConfig(level=level, format=fmt)
    install_log_redaction()


def _run_with_db(settings: Settings, coroutine):
    """Open the database, run one storage coroutine, and always close the database again."""
    from storage.db import close_db, init_db
    from storage.lease import LockError

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
    except LockError as exc:
        raise CliError(str(exc)) from None
    finally:
        coroutine.close()


def _add_department_commands(commands) -> None:
    department = commands.add_parser("department", help="merge or rename a department")
    department_commands = department.add_subparsers(
        dest="department_command", required=True, metavar="ACTION"
    )
    for action, text in (
        ("merge", "move OLD's liaisons, invitations and history into the existing NEW"),
        ("rename", "rename OLD to NEW (merging into NEW if it exists already)"),
    ):
        command = department_commands.add_parser(action, help=text)
        command.add_argument("old", metavar="OLD", help="the department's name or alias")
        command.add_argument("new", metavar="NEW", help="the department's new name")
        command.set_defaults(handler=cmd_department_merge, rename=action == "rename")


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
    load.add_argument(
        "--dry-run", action="store_true", help="print what would change; store nothing"
    )
    load.add_argument(
        "--yes",
        action="store_true",
        help="import even if tasks with reports or targets with reported values change",
    )
    load.set_defaults(handler=cmd_plan_import)
    show = plan_commands.add_parser("show", help="tasks by department with their role")
    show.add_argument("--department", metavar="NAME", help="one department (name or alias)")
    show.set_defaults(handler=cmd_plan_show)

    departments = commands.add_parser("departments", help="departments and their task counts")
    departments.set_defaults(handler=cmd_departments)

    _add_department_commands(commands)

    invite = commands.add_parser(
        "invite", help="make a single-use invitation link for a department's liaison"
    )
    invite.add_argument("department", help="the department's name or alias")
    invite.add_argument(
        # 7 is bot.onboarding.INVITE_DAYS, not imported here to keep `duban plan parse` light.
        "--days",
        type=int,
        default=7,
        metavar="N",
        help="days until it expires (default: 7)",
    )
    invite.add_argument(
        "--lead", action="store_true", help="the invitee becomes the department's lead liaison"
    )
    invite.set_defaults(handler=cmd_invite)

    preview = commands.add_parser(
        "preview", help="list the sends planned in the next days (nothing is sent)"
    )
    preview.add_argument(
        "--days", type=int, default=7, metavar="N", help="days ahead to list (default: 7)"
    )
    preview.add_argument(
        "--from",
        dest="start",
        type=_iso_moment,
        metavar="YYYY-MM-DD[THH:MM]",
        help="start there (local time in TIMEZONE) instead of now",
    )
    preview.set_defaults(handler=cmd_preview)

    summary = commands.add_parser("summary", help="print the weekly summary (nothing is sent)")
    summary.add_argument(
        "--date",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="the summary as of the end of that day (default: now)",
    )
    summary.add_argument("--chart", metavar="FILE", help="also write the chart as a PNG file")
    summary.set_defaults(handler=cmd_summary)

    calendar = commands.add_parser(
        "calendar", help="China's working calendar: holidays and make-up working days (调休)"
    )
    calendar_commands = calendar.add_subparsers(
        dest="calendar_command", required=True, metavar="ACTION"
    )
    calendar_load = calendar_commands.add_parser(
        "load", help="store a year's holidays and make-up working days from a file"
    )
    calendar_load.add_argument(
        "file", help="UTF-8 text: 'year 2027', then 'YYYY-MM-DD[..YYYY-MM-DD] holiday|workday'"
    )
    calendar_load.set_defaults(handler=cmd_calendar_load)
    calendar_show = calendar_commands.add_parser(
        "show", help="which years are covered (package or loaded file) and which are not"
    )
    calendar_show.add_argument(
        "year", nargs="?", type=int, help="one year (its loaded days are listed too)"
    )
    calendar_show.set_defaults(handler=cmd_calendar_show)

    run = commands.add_parser("run", help="run the bot (long polling, or a webhook server)")
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser(
        "demo", help="play a simulated month against a local emulator (no token, no network)"
    )
    demo.add_argument("--lang", choices=("zh", "en"), default="zh", help="transcript language")
    demo.add_argument("--out", metavar="DIR", help="output folder (default ./demo-output-<time>)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bot.redaction import install_excepthook, install_log_redaction, redact

    # Before any command: a warning logged before (or without) logging.basicConfig goes through
    # logging's last-resort handler, and an unexpected traceback through sys.excepthook.
    install_log_redaction()
    install_excepthook()
    args = build_parser().parse_args(argv)
    try:
        args.handler(args, load_settings)
    except (CliError, ConfigError) as exc:
        print(f"duban: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0
