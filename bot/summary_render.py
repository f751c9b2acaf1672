"""The weekly summary as Telegram HTML messages, as plain text (CLI) and as a document.

Written for a coordinator reading it on a phone at 9 a.m.: the headline first (how many tasks
are red, yellow, green; who has not reported), then overdue tasks, what changed since last week,
failed sends, the departments with red items first (green and pending tasks folded into one
line of codes), the targets against their goals and pace, and who did report.

Every piece of document or user text is escaped (`html_decoration.quote`). Each message stays
within Telegram's 4096 characters (counted in UTF-16 code units of the HTML source, which is
never shorter than the parsed text): sections are split between department blocks or lines,
never inside a line. Past `MAX_MESSAGES` messages `render_for_telegram` sends the headline and
the whole summary as a .txt document instead.

A large plan makes a summary of megabytes, so the sections are written lazily (the messages
stop as soon as there are too many: the document takes over) and each phrase is translated once
per rendering (`_`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from functools import cache, partial
from itertools import islice

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _gettext
from aiogram.utils.text_decorations import html_decoration
from babel.dates import format_date, format_skeleton

from bot.labels import LIGHT_EMOJI, STATUS_NAMES, role_tag
from bot.lights import Light, Reason
from bot.redaction import redact
from bot.summary import (
    DeliveryIssue,
    DepartmentBlock,
    TargetProgress,
    TaskLine,
    WeeklySummary,
)
from storage.enums import ReportStatus

MESSAGE_LIMIT = 4096  # Telegram's limit on a message's text
MAX_MESSAGES = 5  # more than this goes out as a document
HEADLINE_NAMES = 30  # departments named in the headline; the full list (with liaisons) follows
TITLE_LIMIT = 18  # characters of a task title on one line
_LIGHTS_SHOWN = (Light.RED, Light.YELLOW, Light.GREEN, Light.PENDING)


@dataclass(frozen=True, slots=True)
class TelegramSummary:
    """What to send: messages, and a document when the messages would be too many."""

    messages: list[str]
    document: bytes | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class _Style:
    bold: Callable[[str], str]
    quote: Callable[[str], str]


_HTML = _Style(bold=lambda text: f"<b>{text}</b>", quote=html_decoration.quote)
_PLAIN = _Style(bold=lambda text: text, quote=lambda text: text)


@dataclass(frozen=True, slots=True)
class _Section:
    blocks: Iterable[str]  # each a line or a few lines kept together when possible; read once
    gap: str = "\n"  # between blocks


# Public API -----------------------------------------------------------------------------------


def render_summary_text(summary: WeeklySummary, locale: str, i18n: I18n | None = None) -> str:
    """The whole summary as plain text (the CLI, and the document fallback)."""
    with i18n_locale(locale, i18n):
        sections = _sections(summary, _PLAIN, locale)
        return "\n\n".join(section.gap.join(section.blocks) for section in sections) + "\n"


def summary_document(summary: WeeklySummary, locale: str, i18n: I18n | None = None) -> bytes:
    """The plain-text summary as a UTF-8 file, for when it is too long for a few messages."""
    return render_summary_text(summary, locale, i18n).encode("utf-8")


def summary_filename(summary: WeeklySummary) -> str:
    return f"duban-summary-{summary.today.isoformat()}.txt"


def render_for_telegram(
    summary: WeeklySummary,
    locale: str,
    i18n: I18n | None = None,
    *,
    max_messages: int = MAX_MESSAGES,
) -> TelegramSummary:
    """The messages to send; past `max_messages`, the headline and the summary as a document."""
    with i18n_locale(locale, i18n):
        # One message more than allowed is enough to know: the rest is never written.
        messages = list(
            islice(_pack(_sections(summary, _HTML, locale), MESSAGE_LIMIT), max_messages + 1)
        )
        if len(messages) <= max_messages:
            return TelegramSummary(messages)
        headline = _headline(summary, _HTML, locale)
        note = _("The full summary is in the attached file.")
    return TelegramSummary(
        list(_pack([headline, _Section([note])], MESSAGE_LIMIT)),
        document=summary_document(summary, locale, i18n),
        filename=summary_filename(summary),
    )


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji such as 🔴 counts 2)."""
    return len(text.encode("utf-16-le")) // 2


# Sections -------------------------------------------------------------------------------------


def _sections(summary: WeeklySummary, style: _Style, locale: str) -> Iterator[_Section]:
    """The sections in order, each written only when the one before has been read."""
    yield _headline(summary, style, locale)
    writers = (
        _departments,
        partial(_overdue, locale=locale),
        _changes,
        _targets,
        _not_reported,
        _reported,
        _delivery,
    )
    for write in writers:
        section = write(summary, style)
        if section is not None:
            yield section


def _headline(summary: WeeklySummary, style: _Style, locale: str) -> _Section:
    q = style.quote
    day = format_date(summary.today, "full", locale=_babel(locale))
    title = q(summary.plan_title)
    if summary.doc_number:
        title += " " + q(summary.doc_number)
    lines = [
        "📋 " + style.bold(_("Weekly summary")) + " · " + q(day),
        title,
        "",
        style.bold(_("{count} tasks").format(count=summary.task_count))
        + "  "
        + _counts(summary.task_lights),
    ]
    total = len(summary.reported) + len(summary.not_reported)
    lines.append(
        _("Reported this week: {reported} of {total} departments").format(
            reported=len(summary.reported), total=total
        )
    )
    if summary.not_reported:
        names = [q(item.name) for item in summary.not_reported[:HEADLINE_NAMES]]
        rest = len(summary.not_reported) - len(names)
        listed = _join(names)
        if rest > 0:
            listed = _("{names} and {count} more").format(names=listed, count=rest)
        lines.append("📵 " + _("Not reported: {names}").format(names=listed))
    if summary.overdue:
        lines.append("⏰ " + _("Overdue tasks: {count}").format(count=len(summary.overdue)))
    changes = summary.changes
    worse = sum(change.worse for change in changes.light_changes)
    lines.append(
        "🔄 "
        + _("Since last week: {worse} worse, {better} better, {reports} new reports").format(
            worse=worse,
            better=len(changes.light_changes) - worse,
            reports=len(changes.new_reports),
        )
    )
    if summary.delivery_issues:
        lines.append(
            "⚠️ "
            + _("Sends that expired or failed: {count}").format(count=len(summary.delivery_issues))
        )
    if summary.possible_duplicates:
        lines.append(
            "⚠️ "
            + _("Sends that may have arrived twice: {count}").format(
                count=summary.possible_duplicates
            )
        )
    return _Section(["\n".join(lines)])


def _not_reported(summary: WeeklySummary, style: _Style) -> _Section | None:
    if not summary.not_reported:
        return None
    q = style.quote
    blocks = [style.bold(_("Not reported this week"))]
    for item in summary.not_reported:
        people = _join(q(name) for name in item.people) if item.people else _("no liaison yet")
        blocks.append(
            "• " + _("{department}: {people}").format(department=q(item.name), people=people)
        )
    return _Section(blocks)


def _overdue(summary: WeeklySummary, style: _Style, locale: str) -> _Section | None:
    if not summary.overdue:
        return None
    q = style.quote
    blocks = [style.bold("⏰ " + _("Overdue tasks"))]
    template = _("{code} {title} · {leads} · {days} days overdue (due {date})")
    dates: dict[date, str] = {}  # many overdue tasks share a deadline
    for task in summary.overdue:
        if task.deadline not in dates:
            dates[task.deadline] = _short_date(task.deadline, locale)
        blocks.append(
            "🔴 "
            + template.format(
                code=q(task.code),
                title=q(_clip(task.title)),
                leads=_join(q(name) for name in task.leads),
                days=task.days,
                date=dates[task.deadline],
            )
        )
    return _Section(blocks)


def _changes(summary: WeeklySummary, style: _Style) -> _Section:
    q = style.quote
    changes = summary.changes
    blocks = [style.bold("🔄 " + _("Changes since last week"))]
    if changes.empty:
        blocks.append(_("No changes since last week."))
        return _Section(blocks)
    if changes.new_reports:
        departments = {report.department for report in changes.new_reports}
        blocks.append(
            _("{count} new reports from {departments} departments").format(
                count=len(changes.new_reports), departments=len(departments)
            )
        )
    blocks.extend(
        f"{LIGHT_EMOJI[change.before]}→{LIGHT_EMOJI[change.after]} {q(change.code)} "
        f"{q(_clip(change.title))} · {q(change.department)}"
        for change in changes.light_changes
    )
    moved = {(change.code, change.department) for change in changes.light_changes}
    for status_change in changes.status_changes:
        if (status_change.code, status_change.department) in moved:
            continue  # already shown with its light
        blocks.append(
            "↪ "
            + _("{code} {title} · {department}: {before} → {after}").format(
                code=q(status_change.code),
                title=q(_clip(status_change.title)),
                department=q(status_change.department),
                before=_status(status_change.before),
                after=_status(status_change.after),
            )
        )
    for target in changes.target_changes:
        before = "—" if target.previous_value is None else _number(target.previous_value)
        blocks.append(
            "📈 "
            + _("{target}: {before} → {after}{unit}").format(
                target=q(_target_name(target)),
                before=before,
                after=_number(target.value),
                unit=q(target.unit),
            )
        )
    return _Section(blocks)


def _delivery(summary: WeeklySummary, style: _Style) -> _Section | None:
    if not summary.delivery_issues and not summary.possible_duplicates:
        return None
    q = style.quote
    blocks = [style.bold("⚠️ " + _("Sends that expired or could not be delivered"))]
    for issue in summary.delivery_issues:
        parts = [_kind(issue, q), q(issue.recipient)]
        if issue.task_code:
            parts.append(q(issue.task_code))
        parts.append(_delivery_reason(issue, q))
        blocks.append("• " + " · ".join(parts))
    if summary.possible_duplicates:
        blocks.append(
            "• "
            + _(
                "{count} messages may have arrived twice: Telegram's answer to an earlier try "
                "was lost, so it was sent again"
            ).format(count=summary.possible_duplicates)
        )
    return _Section(blocks)


def _departments(summary: WeeklySummary, style: _Style) -> _Section | None:
    """A block per department with anything but green; all-green (or all-pending)
    departments folded into one line each."""
    if not summary.departments:
        return None
    return _Section(_department_blocks(summary, style), gap="\n\n")


def _department_blocks(summary: WeeklySummary, style: _Style) -> Iterator[str]:
    q = style.quote
    yield style.bold(_("Departments, red first"))
    folded: dict[Light, list[str]] = {Light.GREEN: [], Light.PENDING: []}
    for block in summary.departments:
        lights = {line.light for line in block.lines}
        behind = any(line.behind for line in block.lines)
        if len(lights) == 1 and next(iter(lights)) in folded and not behind:
            folded[next(iter(lights))].append(q(block.name))
        else:
            yield _department(block, style)
    if folded[Light.PENDING]:
        yield (
            f"{LIGHT_EMOJI[Light.PENDING]} "
            + _("Awaiting a first report on every task ({count}): {names}").format(
                count=len(folded[Light.PENDING]), names=_join(folded[Light.PENDING])
            )
        )
    if folded[Light.GREEN]:
        yield (
            f"{LIGHT_EMOJI[Light.GREEN]} "
            + _("Every task on track or done ({count}): {names}").format(
                count=len(folded[Light.GREEN]), names=_join(folded[Light.GREEN])
            )
        )


def _department(block: DepartmentBlock, style: _Style) -> str:
    q = style.quote
    counts = block.counts
    head = f"{style.bold(q(block.name))}  " + _counts(counts, only_present=True)
    lines = [head]
    folded: dict[Light, list[str]] = {Light.GREEN: [], Light.PENDING: []}
    for line in block.lines:
        if line.light in folded and not line.behind:
            folded[line.light].append(q(line.code))
            continue
        lines.append(_task_line(line, style))
    if folded[Light.PENDING]:
        lines.append(
            f"{LIGHT_EMOJI[Light.PENDING]} "
            + _("Awaiting a first report: {codes}").format(codes=" ".join(folded[Light.PENDING]))
        )
    if folded[Light.GREEN]:
        lines.append(
            f"{LIGHT_EMOJI[Light.GREEN]} "
            + _("On track or done: {codes}").format(codes=" ".join(folded[Light.GREEN]))
        )
    return "\n".join(lines)


def _task_line(line: TaskLine, style: _Style) -> str:
    q = style.quote
    role = role_tag(line.role, _)
    reasons = [_reason(line, reason, q) for reason in line.reasons]
    reasons = [text for text in reasons if text]
    tail = _("; ").join(reasons)
    return f"{LIGHT_EMOJI[line.light]} {q(line.code)} {q(_clip(line.title))}{role} {tail}".rstrip()


def _reason(line: TaskLine, reason: Reason, q: Callable[[str], str]) -> str:
    """The words for one reason; empty for on track and done (the light says it)."""
    if reason is Reason.OVERDUE:
        return _("{days} days overdue").format(days=line.overdue_days)
    if reason is Reason.SILENT:
        if line.silent_days is None:
            return _("never reported")
        return _("no report for {days} days").format(days=line.silent_days)
    if reason is Reason.BEHIND_PACE:
        return _join(_behind(target, q) for target in line.behind)
    return _plain_reason(reason)


def _plain_reason(reason: Reason) -> str:
    """The reasons said in words alone (translated only when asked for: 10^4 lines)."""
    if reason is Reason.BLOCKED:
        return _("blocked")
    if reason is Reason.AT_RISK:
        return _("at risk")
    if reason is Reason.NO_REPORT:
        return _("awaiting a first report")
    return ""


def _behind(target: TargetProgress, q: Callable[[str], str]) -> str:
    if target.expected_percent is None:  # a limit without a line to follow: over it
        return _("off target: {metric} {value}/{goal}").format(
            metric=q(target.metric),
            value=_number(target.value),
            goal=f"{_number(target.goal)}{q(target.unit)}",
        )
    return _("behind pace: {metric} {percent}% (pace {expected}%)").format(
        metric=q(target.metric),
        percent=_percent(target.percent),
        expected=_percent(target.expected_percent),
    )


def _targets(summary: WeeklySummary, style: _Style) -> _Section | None:
    if not summary.targets:
        return None
    blocks = [style.bold("🎯 " + _("Targets: progress toward the goal, and pace"))]
    blocks.extend(_target_line(target, style) for target in summary.targets)
    return _Section(blocks)


def _target_line(target: TargetProgress, style: _Style) -> str:
    q = style.quote
    code = q(target.task_code) if target.task_code else _("Plan goal")
    goal = f"{_number(target.goal)}{q(target.unit)}"
    line = _("{code} {metric}: {value}/{goal}")
    if target.value is None:
        return "· " + line.format(code=code, metric=q(target.metric), value="—", goal=goal)
    mark = "🟡" if target.behind else "🟢"
    text = f"{mark} " + line.format(
        code=code, metric=q(target.metric), value=_number(target.value), goal=goal
    )
    if target.percent is not None:
        text += f" {_percent(target.percent)}%"
    if target.expected_percent is not None:
        text += " · " + _("pace {percent}%").format(percent=_percent(target.expected_percent))
    return text


def _reported(summary: WeeklySummary, style: _Style) -> _Section:
    q = style.quote
    blocks = [style.bold("✅ " + _("Reported this week"))]
    if not summary.reported:
        blocks.append(_("Nobody reported this week."))
        return _Section(blocks)
    for item in summary.reported:
        people = _join(q(name) for name in item.people)
        blocks.append(
            "• " + _("{department}: {people}").format(department=q(item.name), people=people)
        )
    return _Section(blocks)


# Helpers --------------------------------------------------------------------------------------


def _pack(sections: Iterable[_Section], limit: int) -> Iterator[str]:
    """Sections into messages of at most `limit`: a new section starts after a blank line."""
    current = ""
    for section in sections:
        for index, block in enumerate(section.blocks):
            gap = section.gap if index else "\n\n"
            for piece in _fit(block, limit):
                candidate = current + gap + piece if current else piece
                if telegram_length(candidate) <= limit:
                    current = candidate
                else:
                    yield current
                    current = piece
                gap = "\n"
    if current:
        yield current


def _fit(block: str, limit: int) -> Iterator[str]:
    """A block in pieces of at most `limit`: whole lines where possible."""
    if telegram_length(block) <= limit:
        yield block
        return
    current = ""
    for whole in block.split("\n"):
        line = whole
        while telegram_length(line) > limit:  # one absurdly long line: cut it (rare)
            cut = _cut_point(line, limit)
            if current:
                yield current
                current = ""
            yield line[:cut]
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if telegram_length(candidate) <= limit:
            current = candidate
        else:
            yield current
            current = line
    if current:
        yield current


def _cut_point(line: str, limit: int) -> int:
    """Where to cut a line longer than `limit`: at a space or separator if one is near, and
    never inside an HTML entity or tag."""
    cut = limit
    while telegram_length(line[:cut]) > limit:
        cut -= 1
    for mark in ("&", "<"):
        start = line.rfind(mark, 0, cut)
        if start > 0 and (";" if mark == "&" else ">") not in line[start:cut]:
            cut = start
    space = max(line.rfind(" ", 0, cut), line.rfind("、", 0, cut), line.rfind(",", 0, cut))
    return space + 1 if space > cut // 2 else cut


# The translations looked up so far in the current `i18n_locale` block (None outside one).
_translated: ContextVar[dict[str, str] | None] = ContextVar("summary_translated", default=None)


def _(message: str) -> str:
    """gettext, remembered until the end of the `i18n_locale` block: a large summary asks for
    the same few phrases 10^5 times, and each of aiogram's lookups finds the I18n and its
    locale in context variables anew."""
    translated = _translated.get()
    if translated is None:
        return _gettext(message)
    text = translated.get(message)
    if text is None:
        text = translated[message] = _gettext(message)
    return text


@contextmanager
def i18n_locale(locale: str, i18n: I18n | None = None) -> Iterator[None]:
    """gettext in `locale`: with `i18n`, the current I18n (in the bot), or the project's."""
    manager = i18n or I18n.get_current(no_error=True) or _default_i18n()
    with manager.context(), manager.use_locale(locale):
        token = _translated.set({})
        try:
            yield
        finally:
            _translated.reset(token)


@cache
def _default_i18n() -> I18n:
    from bot.i18n import build_i18n  # noqa: PLC0415 - only outside the bot (CLI, tests)

    return build_i18n("zh")


def _babel(locale: str) -> str:
    return "zh_Hans_CN" if locale.startswith("zh") else "en"


def _short_date(day: date, locale: str) -> str:
    return format_skeleton("yMMMd", day, locale=_babel(locale))


def _counts(counts: dict[Light, int], *, only_present: bool = False) -> str:
    """🔴3 🟡1 🟢12 (⚪ only when there are any; with `only_present`, only lights present)."""
    return " ".join(
        f"{LIGHT_EMOJI[light]}{counts.get(light, 0)}"
        for light in _LIGHTS_SHOWN
        if counts.get(light, 0) or (light is not Light.PENDING and not only_present)
    )


def _join(items: Iterable[str]) -> str:
    return _(", ").join(items)


def _clip(text: str, limit: int = TITLE_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _number(value: Decimal | None) -> str:
    if value is None:
        return "—"
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return str(int(value.to_integral_value(rounding=ROUND_FLOOR)))


def _target_name(target: TargetProgress) -> str:
    return f"{target.task_code} {target.metric}" if target.task_code else target.metric


def _status(status: ReportStatus) -> str:
    return str(STATUS_NAMES[status])


def _kind(issue: DeliveryIssue, q: Callable[[str], str]) -> str:
    return {
        "prompt": _("progress prompt"),
        "reminder": _("deadline reminder"),
        "nudge": _("nudge"),
        "escalation": _("escalation"),
        "summary": _("weekly summary"),
        "notice": _("notice"),
        "notification": _("notification"),
    }.get(str(issue.kind), q(str(issue.kind)))


def _delivery_reason(issue: DeliveryIssue, q: Callable[[str], str]) -> str:
    known = {
        "expired": _("expired, never sent"),
        "failed": _("could not be delivered"),
        "unreachable": _("recipient unreachable"),
    }
    # The stored error text; redacted here too, for rows written before the ledger redacted.
    return known.get(str(issue.reason)) or q(redact(str(issue.reason)))
