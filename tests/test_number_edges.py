"""Number recognition at its edges (bot.reports): negatives, scientific notation, implausible
values, 百分之 with Chinese numerals, full-width forms, invisible characters."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from bot.reports import (
    IMPLAUSIBLE_FACTOR,
    Problem,
    Question,
    RecognisedValue,
    Refused,
    chinese_number,
    is_blank,
    keep_answers,
    normalise,
    question_from_data,
    question_to_data,
    recognise_values,
)


@dataclass(frozen=True)
class T:
    id: int
    metric: str
    unit: str
    value: Decimal | None = None


HOUSING = T(1, "累计筹集保障性租赁住房", "套", Decimal(9000))
COVERAGE = T(2, "精品村覆盖率", "%", Decimal(90))
TARGETS = [HOUSING, COVERAGE]


def values(text: str, targets: list[T] = TARGETS) -> dict[int, str]:
    result = recognise_values(text, targets)
    assert result.questions == () and result.refused == ()
    return {value.target_id: str(value.value) for value in result.values}


def refused(text: str, targets: list[T] = TARGETS) -> tuple[Refused, ...]:
    result = recognise_values(text, targets)
    assert result.values == ()
    return result.refused


# -- negatives ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["-5套", "已筹集-5套", "减少-5套", "筹集 −5套", "筹集－5套"])
def test_a_negative_amount_is_refused_not_made_positive(text: str) -> None:
    assert refused(text) == (Refused("-5套" if "−" not in text else "−5套", Problem.NEGATIVE),)


def test_a_negative_percentage_is_refused() -> None:
    assert refused("覆盖率-3%") == (Refused("-3%", Problem.NEGATIVE),)


def test_a_negative_next_to_a_good_value_refuses_only_itself() -> None:
    result = recognise_values("已筹集6200套，覆盖率－3%", TARGETS)
    assert [(v.target_id, v.value) for v in result.values] == [(1, Decimal(6200))]
    assert result.refused == (Refused("-3%", Problem.NEGATIVE),)


@pytest.mark.parametrize(("text", "expected"), [("2026-5套", "5"), ("A-5套", "5"), ("5-6套", "6")])
def test_ranges_and_codes_are_not_negatives(text: str, expected: str) -> None:
    assert values(text) == {1: expected}


def test_a_dash_before_words_is_a_bullet_not_a_sign() -> None:
    assert values("- 已筹集6200套") == {1: "6200"}


def test_a_negative_without_a_target_unit_is_no_concern() -> None:
    assert recognise_values("气温-5度", TARGETS).refused == ()


def test_a_negative_restated_target_or_change_is_not_refused() -> None:
    assert recognise_values("同比下降-5%", TARGETS).refused == ()


# -- scientific notation -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1e309套", "已筹集1e309套", "3.5e2套", "1E3套", "2e-3套"])
def test_scientific_notation_is_refused_not_misread(text: str) -> None:
    (item,) = refused(text)
    assert item.problem is Problem.NOTATION
    assert item.mention.endswith("套") and "e" in item.mention.lower()


def test_notation_without_a_unit_is_ignored_and_hides_no_number() -> None:
    assert recognise_values("编号1e309", TARGETS) == recognise_values("编号", TARGETS)


def test_an_english_word_with_e_is_no_notation() -> None:
    assert values("Phase 2 done: 6200 套") == {1: "6200"}


# -- implausible values ---------------------------------------------------------------------


def test_a_value_more_than_100_times_the_target_is_a_question() -> None:
    result = recognise_values("已筹集9999999999999999套", TARGETS)
    assert result.values == ()
    assert result.questions == (
        Question(
            "9999999999999999套",
            (RecognisedValue(1, Decimal("9999999999999999"), "9999999999999999套"),),
            implausible=True,
        ),
    )


def test_the_limit_is_100_times_the_target() -> None:
    assert IMPLAUSIBLE_FACTOR == 100
    assert values("已筹集900000套") == {1: "900000"}  # exactly 100 times: taken as read
    assert recognise_values("已筹集900001套", TARGETS).questions[0].implausible
    assert recognise_values("覆盖率9001%", TARGETS).questions[0].implausible


def test_a_target_of_zero_or_without_value_asks_nothing() -> None:
    assert values("事故5起", [T(3, "事故", "起", Decimal(0))]) == {3: "5"}
    assert values("事故50000起", [T(3, "事故", "起")]) == {3: "50000"}


def test_an_implausible_question_survives_the_state_data() -> None:
    question = recognise_values("已筹集99999999套", TARGETS).questions[0]
    assert question_from_data(question_to_data(question)) == question
    plain = Question("8个", (RecognisedValue(3, Decimal(8), "8个"),))
    assert "implausible" not in question_to_data(plain)
    assert question_from_data(question_to_data(plain)) == plain


# -- 百分之 and Chinese numerals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("百分之一百二十", "120"),
        ("覆盖率达到百分之八十五", "85"),
        ("百分之三点五", "3.5"),
        ("百分之零点五", "0.5"),
        ("百分之十", "10"),
        ("百分之一百零五", "105"),
        ("百分之两百", "200"),
        ("百分之45", "45"),
    ],
)
def test_percent_in_words(text: str, expected: str) -> None:
    assert values(text) == {2: expected}


@pytest.mark.parametrize(
    ("numeral", "expected"),
    [
        ("一百二十", Decimal(120)),
        ("八十五", Decimal(85)),
        ("三点五", Decimal("3.5")),
        ("十五", Decimal(15)),
        ("一千零一", Decimal(1001)),
        ("两千三百四十五", Decimal(2345)),
        ("零", Decimal(0)),
    ],
)
def test_chinese_numbers(numeral: str, expected: Decimal) -> None:
    assert chinese_number(numeral) == expected


@pytest.mark.parametrize("numeral", ["一二", "十百", "百百", "点五", "三点", "三点五点六", "一万"])
def test_malformed_chinese_numbers(numeral: str) -> None:
    assert chinese_number(numeral) is None


def test_malformed_percent_in_words_is_not_a_value() -> None:
    assert values("百分之一二") == {}


# -- full-width forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("覆盖率１２０％", {2: "120"}),
        ("覆盖率８５．５％", {2: "85.5"}),
        ("已筹集６，２００套", {1: "6200"}),
        ("已筹集６２００套", {1: "6200"}),
    ],
)
def test_full_width_digits_percent_and_decimal_point(text: str, expected: dict) -> None:
    assert values(text) == expected


# -- invisible characters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\u200b", "\u200b\u200c\u200d", "\ufeff\u2060", "\u3164", "\u2800\u2800",
     " \u200b\n\t", "\u00ad", "\u3000"],
)  # fmt: skip
def test_blank_texts(text: str) -> None:
    assert is_blank(text)


@pytest.mark.parametrize("text", ["a", "\u200b进展\u200b", "6", "👍", "…"])
def test_texts_that_show_something(text: str) -> None:
    assert not is_blank(text)


def test_invisible_characters_inside_a_number_are_dropped() -> None:
    assert normalise("6\u200b200套") == "6200套"
    assert values("已筹集6\u200b200套") == {1: "6200"}


# -- values recognised again after an edit (bot.reports.keep_answers) -----------------------------


def test_an_earlier_answer_stands_when_it_is_still_an_option() -> None:
    recognition = recognise_values("已筹集6200套\n\n又筹集100套", TARGETS)
    assert recognition.values == () and len(recognition.questions) == 1
    values, unrecorded = keep_answers(recognition, [{"target_id": 1, "value": "6200"}])
    assert [(v.target_id, v.value) for v in values] == [(1, Decimal(6200))]
    assert unrecorded == []


def test_a_question_without_the_earlier_answer_is_named_not_recorded() -> None:
    recognition = recognise_values("已筹集6400套\n\n又筹集100套", TARGETS)
    values, unrecorded = keep_answers(recognition, [{"target_id": 1, "value": "6200"}])
    assert values == [] and unrecorded == ["6400套、100套"]


def test_a_confirmed_implausible_value_stands_after_another_part_is_edited() -> None:
    recognition = recognise_values("已筹集99999999套，覆盖率百分之八十五", TARGETS)
    values, unrecorded = keep_answers(recognition, [{"target_id": 1, "value": "99999999"}])
    assert {(v.target_id, v.value) for v in values} == {(1, Decimal(99999999)), (2, Decimal(85))}
    assert unrecorded == []
    values, unrecorded = keep_answers(recognition, [])
    assert [v.target_id for v in values] == [2] and unrecorded == ["99999999套"]
