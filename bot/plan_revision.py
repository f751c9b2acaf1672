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

    Greedy on the best pairs first. Identical content pairs at once; otherwise a pair must be
    similar enough (a lower bar when the code is the same). Active stored tasks are preferred to
    withdrawn ones, and units shared break ties.
    """
    pairs: dict[int, int] = {}
    exact: dict[tuple[str, str], list[int]] = {}
    for j, task in enumerate(stored):
        exact.setdefault((normalise(task.title), normalise(task.text)), []).append(j)
    taken: set[int] = set()
    for i, task in enumerate(revised):
        candidates = [
            j
            for j in exact.get((normalise(task.title), normalise(task.text)), [])
            if j not in taken
        ]
        if candidates:
            best = max(
                candidates,
                key=lambda j: (stored[j].code == task.code, stored[j].active, -j),
            )
            pairs[i] = best
            taken.add(best)
    scored: list[tuple[float, float, int, int]] = []
    for i, new in enumerate(revised):
        if i in pairs:
            continue
        for j, old in enumerate(stored):
            if j in taken:
                continue
            score = similarity(new, old)
            same_code = display_code(old.code) == new.code
            if score < (SAME_CODE_BAR if same_code else OTHER_CODE_BAR):
                continue
            tie = 0.05 * same_code + 0.02 * _jaccard(new.units, old.units) + 0.01 * old.active
            scored.append((score + tie, score, i, j))
    for _key, _score, i, j in sorted(scored, key=lambda row: (-row[0], row[2], row[3])):
        if i not in pairs and j not in taken:
            pairs[i] = j
            taken.add(j)
    return pairs


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
