"""Plain-text renderings of plans for the command line (aligned for CJK text)."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable, Sequence

from bot.labels import COMPARATOR_SIGNS, ROLE_WORDS_ZH
from bot.plan_model import ParsedPlan, ParsedTarget, Role


def display_width(text: str) -> int:
    """Terminal columns: CJK and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def pad(text: str, width: int) -> str:
    return text + " " * max(width - display_width(text), 0)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, row)) for row in rows]
    widths = [
        max(display_width(cell) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [
        "  ".join(pad(cell, width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), ["-" * width for width in widths], *rows]
    ]
    return "\n".join(lines)


def format_target(target: ParsedTarget) -> str:
    value = f"{target.value.normalize():f}"
    due = f" by {target.deadline.isoformat()}" if target.deadline else ""
    start = f" (from {target.baseline.normalize():f})" if target.baseline is not None else ""
    sign = COMPARATOR_SIGNS[target.comparator]
    return f"{target.metric} {sign} {value} {target.unit}{start}{due}"


def render_parsed_plan(plan: ParsedPlan) -> str:
    """What `duban plan parse FILE` prints: the plan's head, its goals, then one block per task."""
    lines = [
        plan.title,
        f"Document: {plan.doc_number or '-'}   Issued: {plan.issued_on or '-'} "
        f"by {plan.issuer or '-'}   Horizon: {plan.horizon}",
        f"{len(plan.tasks)} tasks, {len(plan.units())} units, "
        f"{len(plan.goals) + sum(len(t.targets) for t in plan.tasks)} targets, "
        f"{len(plan.requirements)} requirements",
        "",
    ]
    if plan.goals:
        lines += ["Goals:", *(f"  - {format_target(goal)}" for goal in plan.goals), ""]
    rows = []
    for task in plan.tasks:
        lead = "、".join(unit.name for unit in task.units if unit.role is Role.LEAD)
        support = "、".join(unit.name for unit in task.units if unit.role is Role.SUPPORT)
        rows.append([task.code, task.title, str(task.deadline), lead, support or "-"])
    lines.append(table(["Code", "Task", "Deadline", "Lead 牵头", "Support 配合"], rows))
    targets = [(task.code, target) for task in plan.tasks for target in task.targets]
    if targets:
        lines += ["", "Task targets:", *(f"  {code}  {format_target(t)}" for code, t in targets)]
    if plan.requirements:
        lines += ["", "Requirements (no responsible unit):"]
        lines += [f"  {req.code}  {req.title}" for req in plan.requirements]
    return "\n".join(lines)


def render_import_result(plan: ParsedPlan, result, *, dry_run: bool = False) -> str:
    """What `duban plan import FILE` prints: counts, then each change a revision made.

    Tasks are named by code and title, renumberings as old → new, fields and targets as old → new
    values; nothing internal (ids, hashes).
    """
    counts = result.counts
    totals = (
        f"{counts.tasks} tasks, {counts.departments} departments, {counts.targets} targets, "
        f"{counts.requirements} requirements"
    )
    name = plan.doc_number or plan.title
    head = "Dry run, nothing stored. " if dry_run else ""
    if result.created:
        return f"{head}{'Would import' if dry_run else 'Imported'} {name}: {totals}."
    if not result.changed:
        return f"{head}No changes: {name} is already up to date ({totals})."
    lines = [f"{head}{'Would update' if dry_run else 'Updated'} {name}: {totals}."]
    lines += _task_lines(result)
    for change in result.target_changes:
        lines.append(f"  {_target_change(change)}")
    if result.requirements_changed:
        lines.append(f"  Requirements added, changed or removed: {result.requirements_changed}")
    # The file's checksum is bookkeeping: a changed document is what this output is about.
    if shown := [name for name in result.plan_fields_changed if name != "source_sha256"]:
        lines.append(f"  Plan fields changed: {', '.join(shown)}")
    if result.departments_added:
        lines.append(f"  New departments: {'、'.join(result.departments_added)}")
    for orphan in result.departments_orphaned:
        people = "、".join(
            f"{full_name} @{username}" if username else full_name
            for full_name, username in orphan.liaisons
        )
        lines.append(
            f"  {orphan.name} has no task left in any active plan but has liaisons: {people}. "
            f"If it was renamed: duban department merge {orphan.name} NEW_NAME"
        )
    return "\n".join(lines)


def _task_lines(result) -> list[str]:
    titles = result.task_titles

    def named(code: str) -> str:
        return f"{code} {titles.get(code, '')}".rstrip()

    lines = []
    if result.tasks_renumbered:
        moves = [f"{old} → {named(new)}" for old, new in result.tasks_renumbered]
        lines.append(f"  Tasks renumbered: {'; '.join(moves)}")
    restored = set(result.tasks_restored)
    if added := [code for code in result.tasks_added if code not in restored]:
        lines.append(f"  Tasks added: {'; '.join(map(named, added))}")
    if restored:
        lines.append(f"  Tasks restored: {'; '.join(map(named, sorted(restored)))}")
    for removal in result.removals:
        kept = f" ({removal.reports} report(s) kept with it)" if removal.reports else ""
        lines.append(f"  Task withdrawn: {removal.code} {removal.title}{kept}")
    for code, changes in result.field_changes.items():
        lines.append(f"  Task {named(code)}:")
        lines += [f"    {change.name}: {_difference(change.old, change.new)}" for change in changes]
    for code, (before, after) in result.units_reassigned.items():
        lines.append(f"  Task {named(code)} units: {_unit_roles(before)} → {_unit_roles(after)}")
    return lines


_EXCERPT = 40
_CONTEXT = 8


def _clip(text: str) -> str:
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _difference(old: str, new: str) -> str:
    """old → new; for long texts each changed part in its context: …9000「套 → 户」以上…"""
    if len(old) <= _EXCERPT and len(new) <= _EXCERPT:
        return f"{old} → {new}"
    parts = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            before, after = old[max(i1 - _CONTEXT, 0) : i1], old[i2 : i2 + _CONTEXT]
            parts.append(f"…{before}「{_clip(old[i1:i2])} → {_clip(new[j1:j2])}」{after}…")
    return "; ".join(parts)


_TARGET_ACTIONS = {
    "added": "added",
    "changed": "changed",
    "restored": "restored",
    "withdrawn": "withdrawn (its reported values are kept)",
    "deleted": "removed",
}


def _target_change(change) -> str:
    owner = f"Task {change.owner} target" if change.owner else "Plan goal"
    action = _TARGET_ACTIONS[change.action]
    if change.old and change.new:
        what = f"{format_target(change.old)} → {format_target(change.new)}"
    else:
        what = format_target(change.old or change.new)
    reported = f" [{change.reported} report(s) hold values for it]" if change.reported else ""
    return f"{owner} {action}: {what}{reported}"


def _unit_roles(units) -> str:
    return "、".join(f"{name}({ROLE_WORDS_ZH[role]})" for name, role in units)


def render_tasks_by_department(groups) -> str:
    """What `duban plan show` prints: each department, then its tasks with the role it plays."""
    if not groups:
        return "No plan imported yet (duban plan import FILE)."
    blocks = []
    for group in groups:
        rows = [
            [task.code, task.title, f"{ROLE_WORDS_ZH[task.role]} {task.role.value}",
             str(task.deadline)]
            for task in group.tasks
        ]  # fmt: skip
        body = table(["Code", "Task", "Role", "Deadline"], rows) if rows else "  (no tasks)"
        blocks.append(f"{group.name} ({len(group.tasks)} tasks)\n{body}")
    return "\n\n".join(blocks)


def render_department_counts(rows) -> str:
    """What `duban departments` prints: one line per department with its lead/support counts."""
    if not rows:
        return "No departments yet (duban plan import FILE)."
    lines = table(
        ["Department", "Kind", "Lead 牵头", "Support 配合"],
        [[row.name, row.kind.value, str(row.lead), str(row.support)] for row in rows],
    )
    return f"{lines}\n{len(rows)} departments"
