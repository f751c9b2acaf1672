"""Queries about people: liaisons, coordinators and observers (no Telegram types here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from storage.enums import LiaisonRole
from storage.models import Liaison


@dataclass(frozen=True, slots=True)
class PersonRecord:
    liaison_id: int
    telegram_user_id: int
    full_name: str
    role: LiaisonRole
    department_id: int | None
    department_name: str | None
    locale: str | None
    active: bool
    language_code: str | None = None  # Telegram's, as last seen


async def get_person(telegram_user_id: int) -> PersonRecord | None:
    """The person behind a Telegram user id, with their department, in one query."""
    rows = (
        await Liaison.filter(telegram_user_id=telegram_user_id)
        .limit(1)
        .values(
            "id",
            "full_name",
            "role",
            "department_id",
            "department__name",
            "locale",
            "active",
            "language_code",
        )
    )
    if not rows:
        return None
    row = rows[0]
    return PersonRecord(
        liaison_id=row["id"],
        telegram_user_id=telegram_user_id,
        full_name=row["full_name"],
        role=LiaisonRole(row["role"]),
        department_id=row["department_id"],
        department_name=row["department__name"],
        locale=row["locale"],
        active=bool(row["active"]),
        language_code=row["language_code"],
    )


async def set_language_code(liaison_id: int, language_code: str | None) -> None:
    """Remember the person's Telegram language (called only when it changed)."""
    await Liaison.filter(id=liaison_id).update(
        language_code=language_code, updated_at=datetime.now(UTC)
    )


async def set_locale(telegram_user_id: int, full_name: str, locale: str) -> None:
    """Remember a language choice; a guest gets a row (role observer, inactive) to hold it."""
    updated = await Liaison.filter(telegram_user_id=telegram_user_id).update(locale=locale)
    if not updated:
        await Liaison.create(
            telegram_user_id=telegram_user_id,
            full_name=full_name,
            role=LiaisonRole.OBSERVER,
            active=False,
            locale=locale,
        )
