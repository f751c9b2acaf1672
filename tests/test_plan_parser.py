"""The plan parser on the shipped plan and on short documents written to cover every format."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from bot.plan_model import Comparator, Cycle, DepartmentKind, Role
from bot.plan_parser import PlanFormatError, parse_plan, parse_plan_text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"


@pytest.fixture(scope="module")
def changxing():
    return parse_plan(EXAMPLE.read_bytes())


# ------------------------------------------------------------------------------ the real plan


def test_changxing_metadata(changxing):
    assert changxing.doc_number == "长政办发〔2023〕65号"
    assert changxing.issued_on == date(2023, 12, 29)
    assert changxing.issuer == "长兴县政府办公室"
    assert changxing.horizon == date(2027, 12, 31)
    assert "城镇化建设" in changxing.title


def test_changxing_has_18_tasks_in_document_order(changxing):
    codes = [task.code for task in changxing.tasks]
    assert len(codes) == 18
    assert codes[:4] == ["2.1.1", "2.1.2", "2.1.3", "2.2.1"]
    assert codes[-1] == "2.6.3"
    assert changxing.tasks[0].section == "实施优化空间规划布局行动"
    assert changxing.tasks[0].title == "优化全域发展布局"


EXPECTED_LEADS = {
    "2.1.1": "县发改局",
    "2.1.2": "县自然资源和规划局",
    "2.1.3": "县建设局",
    "2.2.1": "县发改局",
    "2.2.2": "县经信局",
    "2.2.3": "县经信局",
    "2.3.1": "县建设局",
    "2.3.2": "县建设局",
    "2.3.3": "县科技局",
    "2.4.1": "县教育局",
    "2.4.2": "县卫生健康局",
    "2.4.3": "县民政局",
    "2.5.1": "县交通运输局",
    "2.5.2": "县建设局",
    "2.5.3": "县大数据局",
    "2.6.1": "县委宣传部",
    "2.6.2": "生态环境局长兴分局",
    "2.6.3": "县发改局",
}


def test_changxing_each_task_has_one_lead_listed_first(changxing):
    leads = {task.code: [u.name for u in task.lead_units] for task in changxing.tasks}
    assert leads == {code: [name] for code, name in EXPECTED_LEADS.items()}
    for task in changxing.tasks:
        assert task.units[0].role is Role.LEAD
        assert all(unit.role is Role.SUPPORT for unit in task.units[1:])


def test_changxing_has_34_distinct_units(changxing):
    names = [unit.name for unit in changxing.units()]
    assert len(names) == 34
    assert len(set(names)) == 34
    assert "各乡镇(街道、园区)" in names
    assert not {"街道", "园区", "园区>", "县数改办", "文明办"} & set(names)


def test_changxing_alternate_names_become_aliases(changxing):
    units = {unit.name: unit for unit in changxing.units()}
    assert units["县委改革办"].aliases == ("县数改办",)
    assert units["县委宣传部"].aliases == ("文明办",)
    group = units["各乡镇(街道、园区)"]
    assert group.kind is DepartmentKind.TOWNSHIP_GROUP
    assert "各乡镇<街道、园区>" in group.aliases
    assert units["长兴城投集团"].kind is DepartmentKind.COMPANY
    assert units["雉城街道"].kind is DepartmentKind.TOWNSHIP
    assert units["县开发区"].kind is DepartmentKind.ZONE
    assert units["县妇联"].kind is DepartmentKind.ORGANIZATION
    assert units["县发改局"].kind is DepartmentKind.AGENCY


def _all_targets(plan):
    return [target for task in plan.tasks for target in task.targets]


def test_changxing_task_targets(changxing):
    found = {(target.value, target.unit) for target in _all_targets(changxing)}
    for value, unit in [
        ("9000", "套"), ("100", "台"), ("15", "个"), ("6", "个"), ("67", "%"),
        ("5.6", "个"), ("75", "%"), ("80", "%"), ("10", "家"), ("8", "家"), ("60", "%"),
        ("25", "人"),
    ]:  # fmt: skip
        assert (Decimal(value), unit) in found, (value, unit)
    housing = next(t for t in _all_targets(changxing) if t.value == 9000)
    assert housing.comparator is Comparator.AT_LEAST
    assert housing.metric == "累计筹集保障性租赁住房"
    assert housing.deadline == date(2027, 12, 31)
    nurses = next(t for t in _all_targets(changxing) if t.unit == "人")
    assert nurses.comparator is Comparator.MORE_THAN


def test_changxing_labels_and_years_never_become_targets(changxing):
    values = {target.value for target in [*_all_targets(changxing), *changxing.goals]}
    # 2000年以前, 2456+节能减排, 6+1领域, “1小时”, “10分钟”, 长政发〔2023〕26号, 5G, G50, 3岁以下
    for not_a_target in ("2000", "2456", "1", "26", "2023", "5", "50", "3"):
        assert Decimal(not_a_target) not in values, not_a_target
    assert len(_all_targets(changxing)) == 12


def test_changxing_goals_are_plan_level_targets(changxing):
    goals = {goal.metric: (goal.value, goal.unit) for goal in changxing.goals}
    assert goals == {
        "地区生产总值": (Decimal("1200"), "亿元"),
        "交通基础设施投资": (Decimal("100"), "亿元"),
        "每千人口拥有执业(助理)医师数": (Decimal("4.3"), "人"),
        "空气质量优良天数比率": (Decimal("90"), "%"),
        "森林覆盖率": (Decimal("47.42"), "%"),
        "常住人口城镇化率": (Decimal("70"), "%"),
    }
    assert all(goal.deadline == date(2027, 12, 31) for goal in changxing.goals)


def test_changxing_safeguards_are_requirements_not_tasks(changxing):
    assert [(r.code, r.title) for r in changxing.requirements] == [
        ("3.1", "强化统筹协调"),
        ("3.2", "强化政策保障"),
        ("3.3", "强化宣传引导"),
    ]
    # The signature block after the last item is not part of its text.
    assert "长兴县人民政府办公室" not in changxing.requirements[-1].text


def test_changxing_json_shape(changxing):
    data = changxing.to_dict()
    assert set(data) >= {"title", "doc_number", "issued_on", "horizon", "goals", "tasks"}
    task = data["tasks"][2]
    assert task["units"][0] == {"name": "县建设局", "role": "lead", "aliases": [], "kind": "agency"}
    assert task["deadline"] == "2027-12-31"
    assert {"text", "value", "unit", "comparator", "deadline"} <= set(task["targets"][0])
    assert task["targets"][0]["value"] == 9000


# ------------------------------------------------------------------------------ formats

HEADER = "某县人民政府办公室关于推进某项工作的实施方案\n某政办发〔2024〕7号\n"


def _plan(body: str, header: str = HEADER) -> str:
    return header + body


def test_explicit_lead_and_support_labels_with_ascii_punctuation():
    plan = parse_plan_text(
        _plan(
            "一、主要目标\n到2026年,完成改造50个。\n二、重点任务\n"
            "1.建设项目。推进建设。(牵头单位:县建设局;配合单位:县财政局、县发改局)\n"
            "2.数字改革。推进改革。(牵头单位:县大数据局,县政务办;配合单位:县委改革办<县数改办>)\n"
        )
    )
    first, second = plan.tasks
    assert [(u.name, u.role) for u in first.units] == [
        ("县建设局", Role.LEAD),
        ("县财政局", Role.SUPPORT),
        ("县发改局", Role.SUPPORT),
    ]
    assert [(u.name, u.role) for u in second.units] == [
        ("县大数据局", Role.LEAD),
        ("县政务办", Role.LEAD),
        ("县委改革办", Role.SUPPORT),
    ]
    assert second.units[2].aliases == ("县数改办",)
    assert plan.title == "某县人民政府办公室关于推进某项工作的实施方案"
    assert plan.doc_number == "某政办发〔2024〕7号"


def test_lead_and_support_suffixes_in_a_responsibility_clause():
    plan = parse_plan_text(
        _plan("一、任务\n1.工作。到2025年底完成。(责任单位:县卫健局牵头,县医保局、县民政局配合)\n")
    )
    assert [(u.name, u.role) for u in plan.tasks[0].units] == [
        ("县卫健局", Role.LEAD),
        ("县医保局", Role.SUPPORT),
        ("县民政局", Role.SUPPORT),
    ]


def test_group_unit_in_round_brackets_is_one_unit():
    plan = parse_plan_text(
        _plan("一、任务\n1.工作。到2025年底完成。(责任单位:县农业农村局、各乡镇(街道、园区))\n")
    )
    assert [u.name for u in plan.tasks[0].units] == ["县农业农村局", "各乡镇(街道、园区)"]


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("到2027年", date(2027, 12, 31)),
        ("2026年6月底前", date(2026, 6, 30)),
        ("2025年12月31日前", date(2025, 12, 31)),
        ("到2026年底", date(2026, 12, 31)),
        ("2026年上半年", date(2026, 6, 30)),
        ("2025年第三季度", date(2025, 9, 30)),
        ("2024年2月", date(2024, 2, 29)),
    ],
)
def test_deadline_phrases(phrase, expected):
    plan = parse_plan_text(
        _plan(
            f"一、任务\n1.建设项目。{phrase},完成建设。(责任单位:县建设局)\n"
            "2.其他工作。持续推进。(责任单位:县发改局)\n二、主要目标\n到2028年完成。\n"
        )
    )
    assert plan.tasks[0].deadline == expected
    assert plan.tasks[1].deadline == plan.horizon == date(2028, 12, 31)


def test_targets_value_unit_comparator_and_baseline():
    plan = parse_plan_text(
        _plan(
            "一、任务\n1.住房保障。到2027年,累计筹集保障性租赁住房9000套以上;"
            "城区绿化覆盖率达67%,公共服务满意度由85%提高到95%,"
            "每千人口拥有3岁以下婴幼儿托位数达到5.6个,PM2.5浓度控制在30微克以内,"
            "单位能耗降低到0.5吨以下,新增就业不少于1.2万人。(责任单位:县建设局)\n"
        )
    )
    targets = {(t.value, t.unit): t for t in plan.tasks[0].targets}
    assert targets[(Decimal("9000"), "套")].comparator is Comparator.AT_LEAST
    assert targets[(Decimal("67"), "%")].metric == "城区绿化覆盖率"
    satisfaction = targets[(Decimal("95"), "%")]
    assert satisfaction.baseline == Decimal("85")
    assert satisfaction.metric == "公共服务满意度"
    assert (Decimal("85"), "%") not in targets
    assert targets[(Decimal("5.6"), "个")].comparator is Comparator.AT_LEAST
    assert targets[(Decimal("0.5"), "吨")].comparator is Comparator.AT_MOST
    assert targets[(Decimal("1.2"), "万人")].comparator is Comparator.AT_LEAST
    assert (Decimal("3"), "个") not in targets
    assert all(t.deadline == date(2027, 12, 31) for t in targets.values())


def test_labels_years_and_document_numbers_are_not_targets():
    plan = parse_plan_text(
        _plan(
            "一、任务\n1.综合。改造2000年以前建成的老旧小区,严格执行“2456+节能减排”标准,"
            "推进6+1领域工作,融入“1小时”交通圈,落实长政发〔2023〕26号文件,推广5G应用,"
            "拓宽G50高速,建设城镇社区“10分钟”健身圈。到2027年,建成公园12个。(责任单位:县建设局)\n"
        )
    )
    assert [(t.value, t.unit) for t in plan.tasks[0].targets] == [(Decimal("12"), "个")]
    assert plan.tasks[0].deadline == date(2027, 12, 31)


def test_target_deadline_is_the_nearest_date_before_it_in_its_sentence():
    plan = parse_plan_text(
        _plan(
            "一、任务\n1.分步建设。2025年底前建成驿站20个。到2027年,建成驿站50个以上。"
            "持续建设公园10个。(责任单位:县建设局)\n"
        )
    )
    deadlines = [(t.value, t.deadline) for t in plan.tasks[0].targets]
    assert deadlines == [
        (Decimal("20"), date(2025, 12, 31)),
        (Decimal("50"), date(2027, 12, 31)),
        (Decimal("10"), date(2027, 12, 31)),  # the task's own (latest) deadline
    ]


def test_reporting_cycle_written_in_a_task_is_kept():
    plan = parse_plan_text(
        _plan(
            "一、任务\n1.季度工作。推进建设,每季度报送工作进展。(责任单位:县建设局)\n"
            "2.月度工作。每月25日前报送进展情况。(责任单位:县发改局)\n"
            "3.普通工作。每年新增公园2个。(责任单位:县林业局)\n"
            "二、主要目标\n到2027年,全面完成。\n"
        )
    )
    assert [task.cycle for task in plan.tasks] == [Cycle.QUARTERLY, Cycle.MONTHLY, None]


def test_tasks_at_the_subsection_level_and_nested_outlines():
    plan = parse_plan_text(
        _plan(
            "一、工作目标\n到2026年,建成示范点10个。\n二、主要任务\n"
            "(一)推进示范建设。加快建设示范点。(责任单位:县农业农村局)\n"
            "(二)强化产业支撑。\n1.培育企业。\n(1)培育龙头企业5家。(责任单位:县经信局)\n"
            "(2)培育小微企业。(责任单位:县科技局、县经信局)\n"
            "三、保障措施\n(一)加强组织领导。成立专班。\n(二)强化督查考核。定期通报。\n"
        )
    )
    assert [task.code for task in plan.tasks] == ["2.1", "2.2.1.1", "2.2.1.2"]
    assert plan.tasks[1].section == "培育企业"
    assert [r.title for r in plan.requirements] == ["加强组织领导", "强化督查考核"]
    assert [(g.value, g.unit) for g in plan.goals] == [(Decimal("10"), "个")]


def test_full_width_digits_and_gb18030_encoding():
    text = _plan("一、任务\n1.建设。到２０２７年,建成公园１２个。(责任单位:县建设局)\n")
    plan = parse_plan(text.encode("gb18030"))
    assert plan.tasks[0].targets[0].value == Decimal("12")
    assert plan.tasks[0].deadline == date(2027, 12, 31)


def test_full_width_punctuation_is_read_like_ascii():
    # \uff08 ( \uff09 ) \uff1a : \uff1b ; \uff0c , \uff05 %
    text = _plan(
        "一、任务\n1.建设。到2027年\uff0c覆盖率达到67\uff05。"
        "\uff08牵头单位\uff1a县建设局\uff1b配合单位\uff1a县财政局\uff0c县发改局\uff09\n"
    )
    task = parse_plan_text(text).tasks[0]
    assert [(u.name, u.role) for u in task.units] == [
        ("县建设局", Role.LEAD),
        ("县财政局", Role.SUPPORT),
        ("县发改局", Role.SUPPORT),
    ]
    assert [(t.value, t.unit) for t in task.targets] == [(Decimal("67"), "%")]


def test_utf8_with_bom_and_windows_line_endings():
    text = _plan("一、任务\r\n1.建设。到2027年,建成公园12个。(责任单位:县建设局)\r\n")
    plan = parse_plan(("\ufeff" + text).encode("utf-8"))
    assert plan.tasks[0].title == "建设"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"\x01\x02\x03\x04 hello \x05\x06\x07" * 10, "not UTF-8 or GB18030"),
        ("一、总体要求\n这是一份没有任务的文件。\n".encode(), "no tasks found"),
        (b"just some english text\nwith lines\n", "no tasks found"),
    ],
)
def test_not_a_plan(data, message):
    with pytest.raises(PlanFormatError, match=message):
        parse_plan(data)


def test_unclosed_responsibility_clause_is_an_error():
    with pytest.raises(PlanFormatError, match="unclosed"):
        parse_plan_text(_plan("一、任务\n1.建设。到2027年完成。(责任单位:县建设局\n"))
