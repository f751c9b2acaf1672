"""Which stored task or target a revised document's item is: matching by content, not by number.

Pure: plain values in, indexes out (no database). `storage.plans` uses it at import.

A task's numbering path ("2.3.1") changes when a revision deletes or inserts a task before it, so
the path alone cannot identify a task: reports would follow the number onto another task. Tasks
are paired by the similarity of their title and text; the same code only lowers the bar a little,
and a task whose code is unchanged but whose content is entirely different is a different task.
The units responsible break ties between equally similar candidates.

Targets are paired by what they measure: the same metric and unit first, then the same unit and a
similar metric. A target whose unit changed (9000 套 -> 9000 户) is a different target: values
reported in 套 are not values in 户.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

# Bars for "the same task": content similarity in [0, 1] (0.3 title + 0.7 text).
SAME_CODE_BAR = 0.5
OTHER_CODE_BAR = 0.6
# Bar for "the same metric, reworded" among targets with the same unit.
METRIC_BAR = 0.6
# A task this like the stored task with its code is that task, without further comparison.
CLOSE_ENOUGH = 0.9
# A task the revision moved out of the way of another task's code keeps its number before this
# mark (storage keeps codes unique per plan): "2.3.1~17" is shown as 2.3.1.
DISPLACED_MARK = "~"

_NOT_TEXT = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class TaskContent:
    code: str
    title: str
    text: str
    units: frozenset[str] = frozenset()  # department names
    active: bool = True  # False: withdrawn by an earlier revision


@dataclass(frozen=True, slots=True)
class TargetContent:
    metric: str
    unit: str
    active: bool = True


def display_code(code: str) -> str:
    """The numbering path as the document wrote it (without a displacement mark)."""
    return code.split(DISPLACED_MARK, 1)[0]


def displaced_code(code: str, task_id: int) -> str:
    return f"{display_code(code)}{DISPLACED_MARK}{task_id}"


def normalise(text: str) -> str:
    """Compatibility form without spaces and punctuation: what the words say, not their layout."""
    return _NOT_TEXT.sub("", unicodedata.normalize("NFKC", text)).lower()


def _ratio(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return matcher.ratio()


def similarity(a: TaskContent, b: TaskContent) -> float:
    """How alike two tasks' title and text are, in [0, 1]."""
    return 0.3 * _ratio(normalise(a.title), normalise(b.title)) + 0.7 * _ratio(
        normalise(a.text), normalise(b.text)
    )


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def match_tasks(stored: Sequence[TaskContent], revised: Sequence[TaskContent]) -> dict[int, int]:
    """Pair revised tasks with stored ones: {index in revised: index in stored}.

    Identical content pairs first; then a task still very like the stored task with its code;
    then, greedily best first, pairs similar enough (a lower bar when the code is the same).
    Active stored tasks are preferred to withdrawn ones, and shared units break ties.
    """
    pairs: dict[int, int] = {}
    _pair_identical(stored, revised, pairs)
    _pair_same_code(stored, revised, pairs)
    taken = set(pairs.values())
    for _key, i, j in sorted(_scored(stored, revised, pairs), key=lambda r: (-r[0], r[1], r[2])):
        if i not in pairs and j not in taken:
            pairs[i] = j
            taken.add(j)
    return pairs


def _pair_identical(
    stored: Sequence[TaskContent], revised: Sequence[TaskContent], pairs: dict[int, int]
) -> None:
    exact: dict[tuple[str, str], list[int]] = {}
    for j, task in enumerate(stored):
        exact.setdefault((normalise(task.title), normalise(task.text)), []).append(j)
    taken: set[int] = set()
    for i, task in enumerate(revised):
        key = (normalise(task.title), normalise(task.text))
        candidates = [j for j in exact.get(key, []) if j not in taken]
        if candidates:
            best = max(
                candidates, key=lambda j: (stored[j].code == task.code, stored[j].active, -j)
            )
            pairs[i] = best
            taken.add(best)


def _pair_same_code(
    stored: Sequence[TaskContent], revised: Sequence[TaskContent], pairs: dict[int, int]
) -> None:
    # The usual revision edits a few words and renumbers nothing: a task still very like the
    # stored one with its code is that task, without comparing it with every other.
    taken = set(pairs.values())
    by_code = {display_code(task.code): j for j, task in enumerate(stored) if task.active}
    for i, task in enumerate(revised):
        j = by_code.get(task.code)
        if (
            i not in pairs
            and j is not None
            and j not in taken
            and similarity(task, stored[j]) >= CLOSE_ENOUGH
        ):
            pairs[i] = j
            taken.add(j)


def _scored(
    stored: Sequence[TaskContent], revised: Sequence[TaskContent], pairs: dict[int, int]
) -> list[tuple[float, int, int]]:
    """(score with tie-breakers, revised index, stored index) of every pair above its bar."""
    taken = set(pairs.values())
    texts = [normalise(task.text) for task in revised]
    titles = [normalise(task.title) for task in revised]
    scored: list[tuple[float, int, int]] = []
    for j, old in enumerate(stored):
        if j in taken:
            continue
        # One matcher per stored text: SequenceMatcher caches facts about its second sequence.
        matcher = SequenceMatcher(None, autojunk=False)
        old_text = normalise(old.text)
        matcher.set_seq2(old_text)
        old_title = normalise(old.title)
        for i, new in enumerate(revised):
            if i in pairs:
                continue
            same_code = display_code(old.code) == new.code
            bar = SAME_CODE_BAR if same_code else OTHER_CODE_BAR
            title = _ratio(titles[i], old_title)
            matcher.set_seq1(texts[i])
            if texts[i] or old_text:
                if 0.3 * title + 0.7 * matcher.quick_ratio() < bar:
                    continue
                score = 0.3 * title + 0.7 * matcher.ratio()
            else:
                score = 0.3 * title + 0.7
            if score < bar:
                continue
            tie = 0.05 * same_code + 0.02 * _jaccard(new.units, old.units) + 0.01 * old.active
            scored.append((score + tie, i, j))
    return scored


def match_targets(
    stored: Sequence[TargetContent], revised: Sequence[TargetContent]
) -> list[int | None]:
    """For each revised target, the index of the stored target it is, or None (a new one).

    Same metric and unit (an active row before a withdrawn one, which is then restored); then the
    same unit and a similar metric among active rows. A different unit is never the same target.
    """
    matched: list[int | None] = [None] * len(revised)
    free = set(range(len(stored)))
    for active in (True, False):
        for i, target in enumerate(revised):
            if matched[i] is not None:
                continue
            j = next(
                (
                    j
                    for j in sorted(free)
                    if stored[j].active is active
                    and (stored[j].metric, stored[j].unit) == (target.metric, target.unit)
                ),
                None,
            )
            if j is not None:
                matched[i] = j
                free.discard(j)
    scored = sorted(
        (
            (-_ratio(normalise(target.metric), normalise(stored[j].metric)), i, j)
            for i, target in enumerate(revised)
            if matched[i] is None
            for j in free
            if stored[j].active and stored[j].unit == target.unit
        ),
    )
    for negative, i, j in scored:
        if -negative >= METRIC_BAR and matched[i] is None and j in free:
            matched[i] = j
            free.discard(j)
    return matched
