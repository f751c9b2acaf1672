"""Report rules (bot.reports): numbers toward targets, text limits, the edit window, cycles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bot.reports import (
    EDIT_WINDOW,
    MAX_QUESTIONS,
    MAX_TEXT,
    Question,
    RecognisedValue,
    can_change,
    change_deadline,
    compose_text,
    cycle_key,
    excerpt,
    format_value,
    merge_values,
    question_from_data,
    question_to_data,
    recognise_values,
    stored_values,
    text_too_long,
    value_from_data,
    value_to_data,
)


@dataclass(frozen=True)
class T:
    id: int
    metric: str
    unit: str


# Targets as the example plan (examples/changxing-2023-65.txt) has them.
HOUSING = T(1, "累计筹集保障性租赁住房", "套")
ELEVATORS = T(2, "实施电梯加装", "台")
TASK_213 = [HOUSING, ELEVATORS]
COMMUNITIES = T(3, "累计建成省级未来社区", "个")
SHOWCASES = T(4, "城乡风貌样板区", "个")
VILLAGES = T(5, "省新时代美丽乡村精品村覆盖率", "%")
TASK_232 = [COMMUNITIES, SHOWCASES, VILLAGES]
GAS = T(6, "城镇居民天然气气化率", "%")
MARKETS = T(7, "县域城乡放心农贸市场覆盖率", "%")
TASK_252 = [GAS, MARKETS]
GDP = T(8, "地区生产总值", "亿元")
BEDS = T(9, "养老机构护理型床位占比", "%")
CARERS = T(10, "每万老年人拥有持证养老护理员数", "人")


def found(text: str, targets: list[T]) -> dict[int, str]:
    """target id -> value as stored, when nothing is ambiguous."""
    result = recognise_values(text, targets)
    assert not result.questions, result.questions
    return {value.target_id: format_value(value.value) for value in result.values}


@pytest.mark.parametrize(
    "text",
    [
        "已筹集6200套",
        "已筹集6,200套",
        "已筹集6200 套",
        "已筹集 6200  套",
        "已筹集６２００套",  # full-width digits
        "已筹集6，200套",  # full-width thousands separator
        "已筹集0.62万套",  # 万 as a multiplier
        "已筹集6200余套",
        "已筹集6200多套保障性租赁住房",
        "保障性租赁住房:6200套",
        "计划9000套,已筹集6200套",  # the restated target is not progress
        "目标为9000套,目前已筹集6200套",
        "6200/9000套",
        "6200套/9000套",
        "Raised 6200 of 9000 套",
        "Raised 6,200 套 out of 9,000 套",
        "已筹集6200套(目标9000套)",
        "已筹集6200套,其中新建3000套",  # the words before 6200 match the metric better
    ],
)
def test_housing_phrasings(text: str) -> None:
    assert found(text, TASK_213) == {1: "6200"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("已筹集6200套,电梯加装完成45台", {1: "6200", 2: "45"}),
        ("电梯加装45台;保障房6200套。", {1: "6200", 2: "45"}),
        ("完成电梯加装 45 台", {2: "45"}),
        ("本月进展顺利", {}),
        ("2024年6月底前完成", {}),  # years and months are not targets' units
        ("第3套方案已经确定", {}),  # an ordinal
        ("电梯加装6个月内完成", {}),
        ("任务2.1.3推进中", {}),
        ("", {}),
    ],
)
def test_several_targets_and_no_targets(text: str, expected: dict[int, str]) -> None:
    assert found(text, TASK_213) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("覆盖率达到45%", {5: "45"}),  # the only % target
        ("覆盖率达到45％", {5: "45"}),
        ("覆盖率达到 45 %", {5: "45"}),
        ("覆盖率百分之45", {5: "45"}),
        ("coverage at 45 percent", {5: "45"}),
        ("建成未来社区8个、样板区3个", {3: "8", 4: "3"}),  # the words pick the target
        ("未来社区已建成8个", {3: "8"}),
        ("样板区:3个", {4: "3"}),
        ("精品村覆盖率提高5个百分点", {}),  # percentage points are not a level
    ],
)
def test_units_shared_by_targets(text: str, expected: dict[int, str]) -> None:
    assert found(text, TASK_232) == expected


def test_two_percentages_told_apart_by_their_metric() -> None:
    assert found("农贸市场覆盖率达到45%,天然气气化率70%", TASK_252) == {6: "70", 7: "45"}
    assert found("覆盖率达到45%", TASK_252) == {7: "45"}  # 覆盖率 is in one metric only


def test_a_number_that_fits_several_targets_is_a_question() -> None:
    result = recognise_values("本月完成8个", TASK_232)
    assert result.values == ()
    assert result.questions == (
        Question(
            "8个", (RecognisedValue(3, Decimal(8), "8个"), RecognisedValue(4, Decimal(8), "8个"))
        ),
    )
    result = recognise_values("达到45%", TASK_252)
    assert [option.target_id for option in result.questions[0].options] == [6, 7]


def test_several_values_for_one_target_is_a_question() -> None:
    result = recognise_values("已筹集6200套,又筹集6300套", TASK_213)
    assert result.values == ()
    (question,) = result.questions
    assert [format_value(option.value) for option in question.options] == ["6200", "6300"]
    assert {option.target_id for option in question.options} == {1}
    # The same number written twice is no question.
    assert found("已筹集6200套。再说一遍:已筹集6200套", TASK_213) == {1: "6200"}


def test_year_on_year_changes_are_not_levels() -> None:
    assert found("护理型床位占比55%,同比增长3%", [BEDS]) == {9: "55"}
    assert found("床位占比同比提高3%", [BEDS]) == {}


def test_multipliers_convert_between_units() -> None:
    assert found("完成85亿元", [GDP]) == {8: "85"}
    assert found("完成8500万元", [GDP]) == {8: "0.85"}
    assert found("GDP reached 1,050亿元", [GDP]) == {8: "1050"}
    assert found("已筹集1.2万余套", [HOUSING]) == {1: "12000"}


def test_units_that_continue_into_another_unit() -> None:
    assert found("培训护理员500人次", [CARERS]) == {}
    assert found("持证养老护理员26人", [CARERS]) == {10: "26"}


def test_questions_beyond_the_limit_are_ignored_and_named() -> None:
    many = [T(i, f"指标{i}", "个") for i in range(1, 3)]
    text = ",".join(f"完成{n}个" for n in range(1, MAX_QUESTIONS + 3))
    result = recognise_values(text, many)
    assert len(result.questions) == MAX_QUESTIONS
    assert result.ignored == ("4个", "5个")


def test_no_targets_no_values() -> None:
    assert recognise_values("已筹集6200套", []) == recognise_values("", TASK_213)


def test_absurd_numbers_are_ignored() -> None:
    assert found("已筹集99999999999999999套", TASK_213) == {}


def test_values_round_trip_through_state_data() -> None:
    value = RecognisedValue(3, Decimal("0.6200"), "0.62万")
    data = value_to_data(value)
    assert data == {"target_id": 3, "value": "0.62", "mention": "0.62万"}
    assert value_from_data(data) == RecognisedValue(3, Decimal("0.62"), "0.62万")
    question = Question("8个", (value, RecognisedValue(4, Decimal(8), "8个")))
    assert question_from_data(question_to_data(question)).options[1].value == 8
    assert stored_values([value]) == [{"target_id": 3, "value": "0.62"}]


def test_merge_values_replaces_the_chosen_target() -> None:
    values = [RecognisedValue(1, Decimal(6200), "6200套"), RecognisedValue(2, Decimal(45), "45台")]
    chosen = RecognisedValue(1, Decimal(6300), "6300套")
    assert merge_values(values, chosen) == [values[1], chosen]
    assert merge_values(values, None) == values


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("6200", "6200"),
        ("6200.00", "6200"),
        ("6.2E+3", "6200"),
        ("0.85", "0.85"),
        ("45.50", "45.5"),
    ],
)
def test_format_value(value: str, shown: str) -> None:
    assert format_value(Decimal(value)) == shown


def test_text_rules() -> None:
    assert compose_text(["  第一段 ", "", "第二段"]) == "第一段\n\n第二段"
    assert not text_too_long("长" * MAX_TEXT)
    assert text_too_long("长" * (MAX_TEXT + 1))
    assert excerpt("短", 5) == "短"
    assert excerpt("一二三四五六", 4) == "一二三…"


def test_the_edit_window() -> None:
    created = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    assert can_change(created, created + timedelta(hours=23, minutes=59))
    assert not can_change(created, created + EDIT_WINDOW)
    assert change_deadline(created) == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_cycle_key_is_the_month_in_the_plan_timezone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert cycle_key(datetime(2026, 11, 30, 15, 59, tzinfo=UTC), shanghai) == "2026-11"
    assert cycle_key(datetime(2026, 11, 30, 16, 0, tzinfo=UTC), shanghai) == "2026-12"
    with pytest.raises(ValueError, match="aware"):
        cycle_key(datetime(2026, 11, 30), shanghai)  # noqa: DTZ001 - the error under test
