"""Report rules as plain values: numbers toward targets, text limits, the edit window, cycles.

Number recognition (`recognise_values`) reads a liaison's free text — Chinese or English — and
finds values for the task's targets. The rules, decided here and tested in
tests/test_reports_service.py:

- The text is NFKC-normalised first: full-width digits, ％, ． and ， become ASCII; invisible
  format characters (zero-width space, joiners, BOM) are removed. A text with nothing visible
  left (`is_blank`) is no report at all.
- A value is a number written right before a target's unit: 6200套, 6200 套, 6,200套, 45%,
  45 %, 百分之45, 45 percent. "余"/"多" may sit between them (6200余套 → 6200). 百分之 also
  takes Chinese numerals: 百分之八十五 → 85 %, 百分之一百二十 → 120 %, 百分之三点五 → 3.5 %.
- Refused, never turned into another number (`Recognition.refused`, the liaison is asked to
  correct the text): a negative amount (-5套, −5套; "2026-5套" and "A-5套" are ranges and codes,
  not negatives) and scientific notation (1e309套, 3.5e2套).
- Implausible: a value more than IMPLAUSIBLE_FACTOR times its target's value (a target with a
  positive value) is not taken as read but becomes a question to confirm it.
- 万 and 亿 are multipliers, on both sides: 0.62万套 → 6200 against a 套 target; 8500万元 → 0.85
  against a 亿元 target; 85亿元 → 85 against it. Chinese numerals (六千二百套) are not read.
- Thousands separators must group by three (6,200; 1,234,567); "6200,100台" is 6200 and 100台.
- "6200/9000套" and "6200 of 9000 套" are 6200 (progress out of a total).
- Not values: restated targets (目标9000套, 计划9000套, target 9000 套), year-on-year changes
  (同比增长12%), percentage points (5个百分点), ordinals (第3个), and units that continue into
  another unit (8个月, 500人次).
- Several targets share the unit: the words before the number pick the one whose metric
  shares the most two-character pieces with them (覆盖率达到45% → the 覆盖率 target, not the
  气化率 one); then the words after it; a tie is a question for the liaison.
- Several different numbers for one target: those whose words match its metric best win; if
  still several, a question. At most MAX_QUESTIONS questions; further ambiguous numbers are
  ignored and named in a note.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.schedule import ScheduleConfig, report_cycle_key, rule_for
from storage.reports import ReportTask, answered_cycles
from storage.schedule import load_work_calendar

MAX_TEXT = 4000  # characters stored per report (Telegram's own limit is 4096 per message)
MAX_ATTACHMENTS = 10
MAX_QUESTIONS = 3
EDIT_WINDOW = timedelta(hours=24)
IMPLAUSIBLE_FACTOR = 100  # a value beyond this many times its target's is confirmed first
_VALUE_LIMIT = Decimal(10) ** 16  # Target.value has 16 integer digits

_MULTIPLIERS = {"万": Decimal(10_000), "亿": Decimal(100_000_000)}
_PERCENT = "%"
_PERCENT_WORDS = ("%", "percent", "per cent")
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\d.]){_NUMBER}(?![\d])")
_SEPARATORS = frozenset("。,;、\n!?()")
# A unit followed by one of these is another unit: 8个月, 500人次, 5个百分点, 3个工作日.
_CONTINUATIONS = ("月", "百分点", "工作日", "小时", "季度", "次", "年度", "多月")
_RESTATEMENT_RE = re.compile(
    r"(目标|计划|任务数|任务|要求|target|goal|planned|plan|aim)\s*"
    r"(值|数|量|为|是|of|is|:)?\s*$",
    re.IGNORECASE,
)
_CHANGE_RE = re.compile(r"(同比|环比|较上年|较去年|较上月|比上年|year[- ]on[- ]year|yoy)", re.I)
_OUT_OF_RE = re.compile(r"\s*(?:/|out of|of)\s*$", re.IGNORECASE)
# 1e309, 3.5E-2: a number in scientific notation, refused rather than read as two numbers.
_NOTATION_RE = re.compile(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?[eE][+-]?\d+(?![\d.])")
_MINUS = "-\u2212"  # hyphen-minus (also what NFKC makes of －) and the minus sign
_CHINESE_DIGITS = dict(
    zip("零〇一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True)
)
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000}
_CHINESE_NUMERAL = r"([零〇一二两三四五六七八九十百千]+)(?:点([零〇一二三四五六七八九]+))?"
_CHINESE_NUMBER_RE = re.compile(_CHINESE_NUMERAL)
_CHINESE_PERCENT_RE = re.compile(rf"百分之({_CHINESE_NUMERAL})")


class TargetLike(Protocol):
    id: int
    metric: str
    unit: str
    # A target may also have `value` (Decimal): then implausible values become questions.


@dataclass(frozen=True, slots=True)
class RecognisedValue:
    target_id: int
    value: Decimal
    mention: str  # as written (normalised): "6200套", "45%"


@dataclass(frozen=True, slots=True)
class Question:
    """An ambiguous number: which option (target and value) does it stand for, if any?"""

    mention: str
    options: tuple[RecognisedValue, ...]
    implausible: bool = False  # one option, far beyond its target: confirm it or not


class Problem(StrEnum):
    NEGATIVE = "negative"
    NOTATION = "notation"


@dataclass(frozen=True, slots=True)
class Refused:
    """A number next to a target's unit that is not read as a value (the text must change)."""

    mention: str
    problem: Problem


@dataclass(frozen=True, slots=True)
class Recognition:
    values: tuple[RecognisedValue, ...] = ()
    questions: tuple[Question, ...] = ()
    ignored: tuple[str, ...] = ()  # ambiguous mentions beyond MAX_QUESTIONS
    refused: tuple[Refused, ...] = ()


@dataclass(frozen=True, slots=True)
class _Unit:
    multiplier: Decimal
    base: str


@dataclass(slots=True)
class _Mention:
    start: int
    end: int
    value: Decimal
    unit: _Unit
    text: str
    skip: bool = False  # a restated target or the total of "x/y"
    problem: Problem | None = None  # refused, whatever target it would count toward


# -- small helpers --------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """NFKC (full-width digits, ％, ． become ASCII) without invisible format characters."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


# Characters that render as nothing but are letters or symbols to Unicode: Hangul fillers and
# the blank Braille pattern, used to send "empty" messages.
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str | None) -> bool:
    """Whether `text` shows nothing: empty, whitespace, or invisible characters only."""
    for ch in normalise(text or ""):
        if ch.isspace() or ch in _BLANK_LOOKING or unicodedata.category(ch).startswith(("C", "Z")):
            continue
        return False
    return True


def chinese_number(numeral: str) -> Decimal | None:
    """一百二十 → 120, 八十五 → 85, 三点五 → 3.5, 一百零五 → 105; None if malformed."""
    match = _CHINESE_NUMBER_RE.fullmatch(numeral)
    whole = _chinese_integer(match.group(1)) if match else None
    if match is None or whole is None:
        return None
    decimals = "".join(str(_CHINESE_DIGITS[ch]) for ch in match.group(2) or "")
    return Decimal(f"{whole}.{decimals}") if decimals else Decimal(whole)


def _chinese_integer(numeral: str) -> int | None:
    total, digit, last_unit = 0, None, 10_000
    for ch in numeral:
        if ch in _CHINESE_UNITS:
            unit = _CHINESE_UNITS[ch]
            if unit >= last_unit:
                return None  # 十百, 百百
            total += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
        elif digit not in (None, 0):
            return None  # 一二: digits without a unit between them
        else:
            digit = _CHINESE_DIGITS[ch]
    return total + (digit or 0)


def format_value(value: Decimal) -> str:
    """A decimal as people write it: 6200, 0.85, 45.5 (no exponent, no trailing zeros)."""
    normalised = value.normalize()
    if normalised == normalised.to_integral_value():
        return str(normalised.quantize(Decimal(1)))
    return format(normalised, "f")


def _split_unit(unit: str) -> _Unit:
    unit = normalise(unit).strip()
    if unit in _PERCENT_WORDS or unit == "百分比":
        return _Unit(Decimal(1), _PERCENT)
    if len(unit) > 1 and unit[0] in _MULTIPLIERS:
        return _Unit(_MULTIPLIERS[unit[0]], unit[1:])
    return _Unit(Decimal(1), unit)


def _parse_number(raw: str) -> Decimal | None:
    try:
        value = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        return None
    return value if abs(value) < _VALUE_LIMIT else None


def _bigrams(text: str) -> set[str]:
    letters = "".join(ch for ch in text.lower() if ch.isalpha())
    if len(letters) == 1:
        return {letters}
    return {letters[i : i + 2] for i in range(len(letters) - 1)}


def _overlap(words: str, metric: str) -> int:
    return len(_bigrams(words) & _bigrams(metric))


# -- finding mentions ---------------------------------------------------------------------------


def _unit_after(text: str, position: int, bases: Sequence[str]) -> tuple[_Unit, int] | None:
    """The unit written at `position` (spaces, 万/亿, 余/多 allowed first) and where it ends."""
    index = position
    while index < len(text) and text[index] == " ":
        index += 1
    multiplier = Decimal(1)
    if index < len(text) and text[index] in _MULTIPLIERS:
        multiplier = _MULTIPLIERS[text[index]]
        index += 1
    if index < len(text) and text[index] in "余多":
        index += 1
    while index < len(text) and text[index] == " ":
        index += 1
    rest = text[index:]
    if multiplier == 1:
        for word in _PERCENT_WORDS:
            if rest.lower().startswith(word):
                return _Unit(Decimal(1), _PERCENT), index + len(word)
    for base in bases:  # longest first
        if base == _PERCENT or not rest.startswith(base):
            continue
        if rest[len(base) :].startswith(_CONTINUATIONS):
            return None
        if base.isascii() and rest[len(base) : len(base) + 1].isalpha():
            return None  # "5 kmh" is not "5 km"
        return _Unit(multiplier, base), index + len(base)
    return None


def _is_negative(text: str, start: int) -> bool:
    """A minus sign right before the number at `start`, not a range or code (2026-5, A-5)."""
    if start == 0 or text[start - 1] not in _MINUS:
        return False
    before = text[start - 2] if start >= 2 else ""
    return not (before.isascii() and before.isalnum())


def _refused_mentions(text: str, bases: Sequence[str]) -> tuple[list[_Mention], list[range]]:
    """Numbers in scientific notation followed by a unit, and the spans to read no number in."""
    mentions, spans = [], []
    for match in _NOTATION_RE.finditer(text):
        start, end = match.span()
        spans.append(range(start, end))
        found = _unit_after(text, end, bases)
        if found is None:
            continue
        unit, unit_end = found
        mentions.append(
            _Mention(
                start, unit_end, Decimal(0), unit, text[start:unit_end], problem=Problem.NOTATION
            )
        )
    return mentions, spans


def _chinese_percent_mentions(text: str) -> list[_Mention]:
    percent = _Unit(Decimal(1), _PERCENT)
    mentions = []
    for match in _CHINESE_PERCENT_RE.finditer(text):
        value = chinese_number(match.group(1))
        if value is not None and value < _VALUE_LIMIT:
            start, end = match.span()
            mentions.append(_Mention(start, end, value, percent, match.group()))
    return mentions


def _mentions(text: str, bases: Sequence[str]) -> list[_Mention]:
    mentions, notation = _refused_mentions(text, bases)
    mentions += _chinese_percent_mentions(text)
    pending: list[tuple[int, int, Decimal]] = []  # numbers without a unit, for "x/y 套"
    for match in _NUMBER_RE.finditer(text):
        value = _parse_number(match.group())
        if value is None:
            continue
        start, end = match.span()
        if any(start in span for span in notation):
            continue  # part of 1e309
        if text[max(0, start - 1) : start] == "第":  # an ordinal: 第3个
            continue
        if text[max(0, start - 3) : start] == "百分之":
            percent = _Unit(Decimal(1), _PERCENT)
            mentions.append(_Mention(start - 3, end, value, percent, text[start - 3 : end]))
            continue
        found = _unit_after(text, end, bases)
        if found is None:
            pending.append((start, end, value))
            continue
        unit, unit_end = found
        if _is_negative(text, start):
            mentions.append(
                _Mention(
                    start - 1,
                    unit_end,
                    -value * unit.multiplier,
                    unit,
                    text[start - 1 : unit_end],
                    problem=Problem.NEGATIVE,
                )
            )
            continue
        mention = _Mention(start, unit_end, value * unit.multiplier, unit, text[start:unit_end])
        # "6200/9000套", "6200 of 9000 套": the first number is the progress, the second the total.
        if pending and _OUT_OF_RE.fullmatch(text[pending[-1][1] : start]):
            first_start, _, first = pending.pop()
            mentions.append(
                _Mention(
                    first_start, unit_end, first * unit.multiplier, unit, text[first_start:unit_end]
                )
            )
            mention.skip = True
        elif mentions and _OUT_OF_RE.fullmatch(text[mentions[-1].end : start]):
            mention.skip = True  # "6200套/9000套", "6,200 套 of 9,000 套"
        mentions.append(mention)
    return mentions


def _segment_before(text: str, mention: _Mention, previous_end: int) -> str:
    start = mention.start
    while start > previous_end and text[start - 1] not in _SEPARATORS:
        start -= 1
    return text[start : mention.start]


def _segment_after(text: str, mention: _Mention, next_start: int) -> str:
    end = mention.end
    while end < next_start and text[end] not in _SEPARATORS:
        end += 1
    return text[mention.end : end]


def _candidates(
    text: str, mentions: list[_Mention], targets: list[TargetLike], units: dict[int, _Unit]
) -> list[tuple[_Mention, list[tuple[tuple[int, int], RecognisedValue]]]]:
    """Each mention that may count toward a target, with the targets scored by nearby words."""
    scored = []
    for index, mention in enumerate(mentions):
        previous_end = mentions[index - 1].end if index else 0
        next_start = mentions[index + 1].start if index + 1 < len(mentions) else len(text)
        before = _segment_before(text, mention, previous_end)
        if mention.skip or _RESTATEMENT_RE.search(before) or _CHANGE_RE.search(before):
            continue
        after = _segment_after(text, mention, next_start)
        candidates = []
        for target in targets:
            unit = units[target.id]
            value = mention.value / unit.multiplier
            if unit.base != mention.unit.base:
                continue
            if abs(value) >= _VALUE_LIMIT and mention.problem is None:
                continue
            score = (_overlap(before, target.metric), _overlap(after, target.metric))
            candidates.append((score, RecognisedValue(target.id, value, mention.text)))
        if candidates:
            scored.append((mention, candidates))
    return scored


def recognise_values(text: str, targets: Iterable[TargetLike]) -> Recognition:
    """Values toward `targets` found in `text`; see the module docstring for the rules."""
    targets = list(targets)
    if not targets or not text:
        return Recognition()
    text = normalise(text)
    units = {target.id: _split_unit(target.unit) for target in targets}
    bases = sorted({unit.base for unit in units.values() if unit.base}, key=len, reverse=True)
    mentions = sorted(_mentions(text, bases), key=lambda m: m.start)

    questions: list[Question] = []
    refused: list[Refused] = []
    by_target: dict[int, list[tuple[tuple[int, int], RecognisedValue]]] = defaultdict(list)
    for mention, candidates in _candidates(text, mentions, targets, units):
        if mention.problem is not None:
            refused.append(Refused(mention.text, mention.problem))
            continue
        best = max(score for score, _ in candidates)
        winners = [item for item in candidates if item[0] == best]
        if len(winners) == 1:
            by_target[winners[0][1].target_id].append(winners[0])
        else:
            questions.append(Question(mention.text, tuple(value for _, value in winners)))

    values: list[RecognisedValue] = []
    for target in targets:  # in the task's order of targets
        found = by_target.get(target.id)
        if not found:
            continue
        best = max(score for score, _ in found)
        kept = [value for score, value in found if score == best]
        distinct = list({value.value: value for value in kept}.values())
        if len(distinct) == 1 and _implausible(distinct[0].value, target):
            questions.insert(0, Question(distinct[0].mention, (distinct[0],), implausible=True))
        elif len(distinct) == 1:
            values.append(distinct[0])
        else:
            mention = "、".join(value.mention for value in distinct)
            questions.append(Question(mention, tuple(distinct)))

    return Recognition(
        values=tuple(values),
        questions=tuple(questions[:MAX_QUESTIONS]),
        ignored=tuple(question.mention for question in questions[MAX_QUESTIONS:]),
        refused=tuple(refused),
    )


def _implausible(value: Decimal, target: TargetLike) -> bool:
    """More than IMPLAUSIBLE_FACTOR times the target's value (a target with a positive one)."""
    goal = getattr(target, "value", None)
    return isinstance(goal, Decimal | int) and goal > 0 and value > goal * IMPLAUSIBLE_FACTOR


def merge_values(
    values: Iterable[RecognisedValue], chosen: RecognisedValue | None
) -> list[RecognisedValue]:
    """Add a value the liaison chose in answer to a question (it replaces one for its target)."""
    merged = [value for value in values if chosen is None or value.target_id != chosen.target_id]
    if chosen is not None:
        merged.append(chosen)
    return merged


def keep_answers(
    recognition: Recognition, stored: Iterable[dict]
) -> tuple[list[RecognisedValue], list[str]]:
    """Values of a text recognised again after an edit, and the mentions left unrecorded.

    A question whose options include a value already stored for its target (an answer the
    liaison gave, or a value they confirmed) keeps that value; other questions are not
    recorded (there is no conversation to ask in) and are named with the ignored mentions.
    """
    values = list(recognition.values)
    before = {(int(item["target_id"]), Decimal(str(item["value"]))) for item in stored}
    unrecorded = []
    for question in recognition.questions:
        kept = next(
            (
                option
                for option in question.options
                if (option.target_id, option.value) in before
                and all(value.target_id != option.target_id for value in values)
            ),
            None,
        )
        if kept is None:
            unrecorded.append(question.mention)
        else:
            values.append(kept)
    return values, [*unrecorded, *recognition.ignored]


# -- state data (JSON-serialisable, for the FSM storage) -----------------------------------------


def value_to_data(value: RecognisedValue) -> dict[str, str | int]:
    return {
        "target_id": value.target_id,
        "value": format_value(value.value),
        "mention": value.mention,
    }


def value_from_data(data: dict) -> RecognisedValue:
    return RecognisedValue(
        int(data["target_id"]), Decimal(str(data["value"])), str(data.get("mention", ""))
    )


def question_to_data(question: Question) -> dict:
    data = {"mention": question.mention, "options": [value_to_data(o) for o in question.options]}
    if question.implausible:
        data["implausible"] = True
    return data


def question_from_data(data: dict) -> Question:
    return Question(
        str(data["mention"]),
        tuple(value_from_data(o) for o in data["options"]),
        implausible=bool(data.get("implausible")),
    )


def stored_values(values: Iterable[RecognisedValue]) -> list[dict[str, str | int]]:
    """What Report.values holds: [{"target_id": 3, "value": "6200"}], in target order given."""
    return [{"target_id": value.target_id, "value": format_value(value.value)} for value in values]


# -- text, attachments, time --------------------------------------------------------------------


def compose_text(parts: Iterable[str]) -> str:
    """The report text from the liaison's messages, in order, blank parts dropped."""
    return "\n\n".join(part.strip() for part in parts if part and part.strip())


def text_too_long(text: str) -> bool:
    return len(text) > MAX_TEXT


def excerpt(text: str, limit: int) -> str:
    """At most `limit` characters, cut with an ellipsis (escape the result, not the input)."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def can_change(created_at: datetime, now: datetime) -> bool:
    """A report may be edited or withdrawn for EDIT_WINDOW after it was submitted."""
    return now - created_at < EDIT_WINDOW


def change_deadline(created_at: datetime) -> datetime:
    return created_at + EDIT_WINDOW


def cycle_key(now: datetime, tz: ZoneInfo) -> str:
    """The calendar month of `now` in the plan's timezone (no longer what reports store: see
    `report_cycle`, which follows the task's reporting rule like the scheduler)."""
    if now.tzinfo is None:
        raise ValueError("cycle_key needs an aware datetime")
    return now.astimezone(tz).strftime("%Y-%m")


async def report_cycle(
    task: ReportTask, department_id: int, now: datetime, settings: object
) -> str:
    """The cycle a report made at `now` answers, by the task's reporting rule — the same key
    the scheduler's prompts, nudges and escalations use (bot.schedule.report_cycle_key): the
    previous cycle while it is unanswered and not yet escalated, else the current one."""
    config = ScheduleConfig.from_settings(settings)
    return report_cycle_key(
        rule_for(task.rule, None, config),
        now,
        await answered_cycles(task.id, department_id),
        calendar=await load_work_calendar(),
        config=config,
    )
