"""What the outbox renderer (bot.scheduled_messages) and the calendar notice need from the database.

Plain dataclasses and values out, nothing of aiogram; each function runs one or two queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from storage.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Department,
    Liaison,
    Plan,
    Report,
    Target,
    Task,
)


@dataclass(frozen=True, slots=True)
class TaskBrief:
    id: int
    code: str
    title: str
    deadline: date


@dataclass(frozen=True, slots=True)
class TargetBrief:
    id: int
    metric: str
    value: Decimal
    unit: str
    comparator: str


@dataclass(frozen=True, slots=True)
class PersonBrief:
    full_name: str
    department_name: str | None
    locale: str | None


async def answered_tasks(department_id: int, cycle_key: str, task_ids: Iterable[int]) -> set[int]:
    """The tasks among `task_ids` the department has reported on for the cycle (not withdrawn)."""
    ids = sorted(set(task_ids))
    if not ids:
        return set()
    rows = (
        await Report.filter(
            department_id=department_id,
            cycle_key=cycle_key,
            task_id__in=ids,
            withdrawn_at__isnull=True,
        )
        .distinct()
        .values_list("task_id", flat=True)
    )
    return {int(task_id) for task_id in rows}


async def tasks_by_id(task_ids: Iterable[int]) -> list[TaskBrief]:
    """Active tasks in plan order (missing and withdrawn ones are left out)."""
    ids = sorted(set(task_ids))
    if not ids:
        return []
    rows = (
        await Task.filter(id__in=ids, withdrawn_at__isnull=True)
        .order_by("plan_id", "position")
        .values("id", "code", "title", "deadline")
    )
    return [TaskBrief(row["id"], row["code"], row["title"], row["deadline"]) for row in rows]


async def targets_by_id(target_ids: Iterable[int]) -> list[TargetBrief]:
    ids = sorted(set(target_ids))
    if not ids:
        return []
    rows = (
        await Target.filter(id__in=ids, withdrawn_at__isnull=True)
        .order_by("plan_id", "task_id", "position")
        .values("id", "metric", "value", "unit", "comparator")
    )
    return [
        TargetBrief(row["id"], row["metric"], row["value"], row["unit"], row["comparator"])
        for row in rows
    ]


async def department_name(department_id: int | None) -> str | None:
    if department_id is None:
        return None
    rows = await Department.filter(id=department_id).values_list("name", flat=True)
    return str(rows[0]) if rows else None


@dataclass(frozen=True, slots=True)
class LiaisonState:
    locale: str | None
    active: bool
    department_id: int | None
    language_code: str | None = None  # Telegram's, as last seen


async def liaison_state(liaison_id: int | None) -> LiaisonState | None:
    """A liaison's chosen language, Telegram language, and whether they still serve their
    department."""
    if liaison_id is None:
        return None
    rows = await Liaison.filter(id=liaison_id).values(
        "locale", "active", "department_id", "language_code"
    )
    if not rows:
        return None
    row = rows[0]
    return LiaisonState(
        row["locale"], bool(row["active"]), row["department_id"], row["language_code"]
    )


async def person_state(chat_id: int) -> LiaisonState | None:
    """The language of the person behind a private chat (its id is their Telegram id), whatever
    their role: a notification may tell someone who no longer serves any department."""
    rows = await Liaison.filter(telegram_user_id=chat_id).values("locale", "language_code")
    if not rows:
        return None
    return LiaisonState(rows[0]["locale"], True, None, rows[0]["language_code"])


async def person_by_chat(chat_id: int) -> PersonBrief | None:
    """The person behind a private chat (its id is their Telegram id), with their department."""
    row = await Liaison.filter(telegram_user_id=chat_id).values(
        "full_name", "department__name", "locale"
    )
    if not row:
        return None
    return PersonBrief(row[0]["full_name"], row[0]["department__name"], row[0]["locale"])


async def plan_title(plan_id: int | None) -> str | None:
    if plan_id is None:
        return None
    rows = await Plan.filter(id=plan_id).values_list("title", flat=True)
    return str(rows[0]) if rows else None


async def latest_horizon() -> date | None:
    """The furthest plan horizon (None before any import)."""
    rows = await Plan.all().order_by("-horizon").limit(1).values_list("horizon", flat=True)
    return rows[0] if rows else None


async def nudged_tasks(department_id: int, cycle_key: str) -> set[int]:
    """The tasks on which the department's liaisons were sent a nudge for the cycle."""
    rows = (
        await Delivery.filter(
            kind=DeliveryKind.NUDGE,
            department_id=department_id,
            cycle_key=cycle_key,
            status=DeliveryStatus.SENT,
            task_id__isnull=False,
        )
        .distinct()
        .values_list("task_id", flat=True)
    )
    return {int(task_id) for task_id in rows}
