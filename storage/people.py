"""Queries about people: liaisons, coordinators and observers (no Telegram types here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from storage.enums import LiaisonRole
from storage.models import Liaison
from storage.sql import Sql


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


# Read on every update (bot.people.resolve_actor): plain SQL (storage.sql), as building the
# ORM's join query cost more than the database's work.
_PERSON_SQL = """
    SELECT l.id, l.full_name, l.role, l.department_id, d.name, l.locale, l.active,
           l.language_code
    FROM liaisons l
    LEFT JOIN departments d ON d.id = l.department_id
    WHERE l.telegram_user_id = ?
"""


async def get_person(telegram_user_id: int) -> PersonRecord | None:
    """The person behind a Telegram user id, with their department, in one query."""
    rows = await Sql(Liaison._meta.db).fetch(_PERSON_SQL, [telegram_user_id])
    if not rows:
        return None
    (liaison_id, full_name, role, department_id, department_name, locale, active,
     language_code) = rows[0]  # fmt: skip
    return PersonRecord(
        liaison_id=liaison_id,
        telegram_user_id=telegram_user_id,
        full_name=full_name,
        role=LiaisonRole(role),
        department_id=department_id,
        department_name=department_name,
        locale=locale,
        active=bool(active),
        language_code=language_code,
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
