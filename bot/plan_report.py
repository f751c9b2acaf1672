"""Plain-text renderings of plans for the command line (aligned for CJK text)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from bot.plan_model import ParsedPlan, ParsedTarget, Role

COMPARATOR_SIGNS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


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
    sign = COMPARATOR_SIGNS[target.comparator.value]
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


def render_import_result(plan: ParsedPlan, result) -> str:
    """What `duban plan import FILE` prints: counts, then each change a revision made."""
    counts = result.counts
    totals = (
        f"{counts.tasks} tasks, {counts.departments} departments, {counts.targets} targets, "
        f"{counts.requirements} requirements"
    )
    name = plan.doc_number or plan.title
    if result.created:
        return f"Imported {name}: {totals}."
    if not result.changed:
        return f"No changes: {name} is already up to date ({totals})."
    lines = [f"Updated {name}: {totals}."]
    for label, codes in (
        ("Tasks added", result.tasks_added),
        ("Tasks removed", result.tasks_removed),
        ("Tasks restored", result.tasks_restored),
    ):
        if codes:
            lines.append(f"  {label}: {', '.join(codes)}")
    for code, fields in result.tasks_changed.items():
        lines.append(f"  Task {code} changed: {', '.join(fields)}")
    for code, (before, after) in result.units_reassigned.items():
        lines.append(f"  Task {code} units: {_unit_roles(before)} -> {_unit_roles(after)}")
    if result.targets_changed:
        lines.append(f"  Targets added, changed or removed: {result.targets_changed}")
    if result.requirements_changed:
        lines.append(f"  Requirements added, changed or removed: {result.requirements_changed}")
    if result.plan_fields_changed:
        lines.append(f"  Plan fields changed: {', '.join(result.plan_fields_changed)}")
    if result.departments_added:
        lines.append(f"  New departments: {'、'.join(result.departments_added)}")
    return "\n".join(lines)


def _unit_roles(units) -> str:
    return "、".join(f"{name}({'牵头' if role is Role.LEAD else '配合'})" for name, role in units)


def render_tasks_by_department(groups) -> str:
    """What `duban plan show` prints: each department, then its tasks with the role it plays."""
    if not groups:
        return "No plan imported yet (duban plan import FILE)."
    blocks = []
    for group in groups:
        rows = [
            [task.code, task.title, "牵头 lead" if task.role is Role.LEAD else "配合 support",
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
