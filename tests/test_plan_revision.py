"""bot.plan_revision: which stored task or target a revised item is (pure, no database)."""

from __future__ import annotations

from bot.plan_revision import (
    TargetContent,
    TaskContent,
    displaced_code,
    display_code,
    match_targets,
    match_tasks,
)

QUALITY = TaskContent(
    "2.3.1",
    "提升城市品质",
    "加快实施城市生态修复、功能完善工程和低效用地再开发。强化历史文化保护，加强城市设计。",
    frozenset({"县建设局", "县交通运输局"}),
)
LOOKS = TaskContent(
    "2.3.2",
    "提升城镇风貌",
    "深化城乡风貌整治提升行动，高标准建设未来社区、城乡风貌样板区。深化开展“五美联创”。",
    frozenset({"县建设局", "县妇联"}),
)
PEOPLE = TaskContent(
    "2.3.3",
    "提升人口占比",
    "开展新一轮“科创英才项目”，强化人才全生命周期服务，让更多人才留在长兴干事创业。",
    frozenset({"县科技局"}),
)


def renumbered(task: TaskContent, code: str, **changes: str) -> TaskContent:
    return TaskContent(code, changes.get("title", task.title), changes.get("text", task.text))


def test_a_deleted_task_renumbers_the_section_and_each_task_keeps_its_identity() -> None:
    stored = [QUALITY, LOOKS, PEOPLE]
    revised = [renumbered(LOOKS, "2.3.1"), renumbered(PEOPLE, "2.3.2")]
    assert match_tasks(stored, revised) == {0: 1, 1: 2}  # QUALITY (index 0) matches nothing


def test_a_reworded_renumbered_task_is_still_the_same_task() -> None:
    text = LOOKS.text.replace("高标准建设", "高质量建设")
    assert match_tasks([QUALITY, LOOKS], [renumbered(LOOKS, "2.3.1", text=text)]) == {0: 1}


def test_the_same_code_with_entirely_different_content_is_another_task() -> None:
    assert match_tasks([QUALITY], [renumbered(PEOPLE, "2.3.1")]) == {}


def test_identical_content_prefers_the_active_task_over_a_withdrawn_twin() -> None:
    withdrawn = TaskContent(LOOKS.code, LOOKS.title, LOOKS.text, active=False)
    assert match_tasks([withdrawn, LOOKS], [renumbered(LOOKS, "2.3.2")]) == {0: 1}


def test_a_target_with_a_new_unit_is_a_new_target() -> None:
    stored = [TargetContent("累计筹集保障性租赁住房", "套"), TargetContent("实施电梯加装", "台")]
    revised = [TargetContent("累计筹集保障性租赁住房", "户"), TargetContent("实施电梯加装", "台")]
    assert match_targets(stored, revised) == [None, 1]


def test_a_reworded_metric_with_the_same_unit_keeps_its_target() -> None:
    stored = [TargetContent("累计筹集保障性租赁住房", "套")]
    assert match_targets(stored, [TargetContent("累计筹集保障性租赁住房房源", "套")]) == [0]
    assert match_targets(stored, [TargetContent("新增停车位", "套")]) == [None]


def test_a_withdrawn_target_is_restored_when_its_metric_and_unit_come_back() -> None:
    stored = [TargetContent("累计筹集保障性租赁住房", "套", active=False)]
    assert match_targets(stored, [TargetContent("累计筹集保障性租赁住房", "套")]) == [0]


def test_displaced_codes_show_as_the_document_wrote_them() -> None:
    assert displaced_code("2.3.1", 17) == "2.3.1~17"
    assert display_code(displaced_code("2.3.1~17", 17)) == "2.3.1"
