"""Queries about people: liaisons, coordinators and observers (no Telegram types here)."""

from __future__ import annotations

from dataclasses import dataclass

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


def _record(liaison: Liaison) -> PersonRecord:
    department = liaison.department
    return PersonRecord(
        liaison_id=liaison.id,
        telegram_user_id=liaison.telegram_user_id,
        full_name=liaison.full_name,
        role=liaison.role,
        department_id=liaison.department_id,
        department_name=department.name if department else None,
        locale=liaison.locale,
        active=liaison.active,
    )


async def get_person(telegram_user_id: int) -> PersonRecord | None:
    """The person behind a Telegram user id, with their department, in one query."""
    liaison = (
        await Liaison.filter(telegram_user_id=telegram_user_id).select_related("department").first()
    )
    return _record(liaison) if liaison else None


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
