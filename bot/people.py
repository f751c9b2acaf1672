"""Who is talking to the bot, and what they may do (plain values; no aiogram here)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from storage.enums import LiaisonRole
from storage.people import PersonRecord, get_person


class Access(StrEnum):
    GUEST = "guest"  # may use /start, /help, /whoami and /lang only
    OBSERVER = "observer"  # may look things up
    LIAISON = "liaison"  # looks up and reports for one department
    COORDINATOR = "coordinator"  # sees and manages everything


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: int
    full_name: str
    access: Access
    locale: str | None = None  # chosen with /lang; None: use Telegram's language or the default
    liaison_id: int | None = None
    department_id: int | None = None
    department_name: str | None = None
    language_code: str | None = None  # Telegram's language as stored (None: not stored yet)

    @property
    def is_coordinator(self) -> bool:
        return self.access is Access.COORDINATOR

    @property
    def can_look_up(self) -> bool:
        return self.access is not Access.GUEST

    @property
    def can_report(self) -> bool:
        return self.access is Access.LIAISON and self.department_id is not None


def access_of(person: PersonRecord | None, *, is_admin: bool) -> Access:
    """ADMIN_IDS are coordinators whatever the database says; an inactive person is a guest."""
    if is_admin:
        return Access.COORDINATOR
    if person is None or not person.active:
        return Access.GUEST
    if person.role is LiaisonRole.COORDINATOR:
        return Access.COORDINATOR
    if person.role is LiaisonRole.LIAISON and person.department_id is not None:
        return Access.LIAISON
    return Access.OBSERVER


async def resolve_actor(user_id: int, full_name: str, admin_ids: tuple[int, ...]) -> Actor:
    """One read per update, no write: the person, their role and their department."""
    person = await get_person(user_id)
    access = access_of(person, is_admin=user_id in admin_ids)
    if person is None:
        return Actor(user_id=user_id, full_name=full_name, access=access)
    return Actor(
        user_id=user_id,
        full_name=person.full_name or full_name,
        access=access,
        locale=person.locale,
        liaison_id=person.liaison_id,
        department_id=person.department_id if person.active else None,
        department_name=person.department_name if person.active else None,
        language_code=person.language_code,
    )
