"""Small text helpers for Chinese policy documents: brackets, quotes, Chinese numerals."""

from __future__ import annotations

import re

OPEN_BRACKETS = "(<〈《[〔【"
CLOSE_BRACKETS = ")>〉》]〕】"
_CN_DIGIT_VALUES = {
    "〇": 0,
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
# Quoted names, titles and document numbers hold numbers that are never targets or deadlines:
# “1小时”交通圈, 《…2023…》, 长政发〔2023〕26号.
_QUOTED = re.compile(r"“[^”]{0,40}”|\"[^\"]{0,40}\"|‘[^’]{0,40}’|《[^》]*》|〔[^〕]*〕|\[\d{4}\]")


class PlanFormatError(ValueError):
    """The input is not a plan the parser can read; the message is one line for the user."""


def cn_number(text: str) -> int | None:
    """一 -> 1, 十二 -> 12, 二十 -> 20, 九十九 -> 99.

    None when the text is not a Chinese numeral below 100.
    """
    if not text or any(char not in _CN_DIGIT_VALUES and char != "十" for char in text):
        return None
    if "十" not in text:
        return _CN_DIGIT_VALUES[text] if len(text) == 1 else None
    tens_text, _, units_text = text.partition("十")
    if "十" in units_text or len(tens_text) > 1 or len(units_text) > 1:
        return None
    tens = _CN_DIGIT_VALUES[tens_text] if tens_text else 1
    units = _CN_DIGIT_VALUES[units_text] if units_text else 0
    return tens * 10 + units


def split_outside_brackets(text: str, separators: str) -> list[str]:
    """Split on any of `separators` except inside brackets: 各乡镇<街道、园区> stays whole."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char in OPEN_BRACKETS:
            depth += 1
        elif char in CLOSE_BRACKETS:
            depth = max(depth - 1, 0)
        if char in separators and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def mask_quoted(text: str) -> str:
    """Replace quoted spans with placeholders of the same length, so positions still line up."""
    return _QUOTED.sub(lambda match: "□" * len(match.group(0)), text)
