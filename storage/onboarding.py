"""Onboarding in the database: invitations, liaison binding, coordinator rights, bot settings.

Plain dataclasses out, nothing of aiogram. The writes that must not race run in one transaction:

- redeeming an invitation is a conditional UPDATE (`... WHERE used_at IS NULL AND expires_at >
  now`): of two people racing for one token exactly one gets the row, the other binds nothing;
- a department's liaison rows change only with its department row locked (`SELECT ... FOR
  UPDATE` on PostgreSQL; SQLite serialises writers anyway), so two liaisons joining at once
  cannot both become its lead.

A department may have several active liaisons: one lead (`is_lead`) and deputies. The first to
join leads; when the lead leaves (unbound, made a coordinator, moved to another department),
the deputy who joined earliest takes over. An invitation made "as lead" makes the invitee the
lead and the former lead a deputy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from tortoise.transactions import in_transaction

from storage.enums import LiaisonRole
from storage.models import (
    BotSetting,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Department,
    InviteAttempt,
    InviteToken,
    Liaison,
    Report,
)
from storage.plan_queries import find_department

BOT_USERNAME_KEY = "bot_username"
COORDINATION_CHAT_KEY = "coordination_chat_id"
COORDINATION_CHAT_TITLE_KEY = "coordination_chat_title"


@dataclass(frozen=True, slots=True)
class DepartmentRef:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class PersonRef:
    """Someone an action concerns, with what is needed to tell them about it."""

    telegram_user_id: int
    full_name: str
    locale: str | None
    language_code: str | None = None  # Telegram's, as last seen


@dataclass(frozen=True, slots=True)
class InviteRecord:
    id: int
    department: DepartmentRef
    as_lead: bool
    created_by: int | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: int | None
    revoked_at: datetime | None = None  # its creator lost coordinator rights


@dataclass(frozen=True, slots=True)
class LiaisonRecord:
    telegram_user_id: int
    full_name: str
    username: str | None
    is_lead: bool
    bound_at: datetime | None


class RedeemOutcome(StrEnum):
    BOUND = "bound"  # the sender is now a liaison of the invitation's department
    UNKNOWN = "unknown"  # no such token: mistyped, forged, or from another installation
    USED = "used"  # redeemed before (by someone else, or by the sender who has since left)
    EXPIRED = "expired"  # past expires_at, or revoked with its creator's rights (revoked_at)
    LIMITED = "limited"  # too many failed attempts lately: not even looked at
    ALREADY_MEMBER = "already_member"  # the sender already is a liaison there; token kept
    COORDINATOR = "coordinator"  # coordinators are not turned into liaisons; token kept


@dataclass(frozen=True, slots=True)
class RedeemResult:
    outcome: RedeemOutcome
    department: DepartmentRef | None = None
    is_lead: bool = False
    lead: PersonRef | None = None  # the department's lead, when the sender is a deputy
    previous_department: DepartmentRef | None = None  # left for this one
    replaced_lead: PersonRef | None = None  # an "as lead" invitation made them a deputy
    promoted: PersonRef | None = None  # took over the lead of the department the sender left
    expires_at: datetime | None = None
    created_by: PersonRef | None = None  # whoever made the invitation (None: the CLI)
    retry_at: datetime | None = None  # LIMITED: when the oldest counted failure leaves the window


class GrantOutcome(StrEnum):
    GRANTED = "granted"
    ALREADY = "already"


@dataclass(frozen=True, slots=True)
class GrantResult:
    outcome: GrantOutcome
    person: PersonRef
    left_department: DepartmentRef | None = None  # they were its liaison until now
    promoted: PersonRef | None = None  # took over that department's lead


class UnbindOutcome(StrEnum):
    UNBOUND = "unbound"
    NOT_LIAISON = "not_liaison"  # known, but not an active liaison
    COORDINATOR = "coordinator"  # use /revoke
    UNKNOWN = "unknown"  # the bot has never seen this person


@dataclass(frozen=True, slots=True)
class UnbindResult:
    outcome: UnbindOutcome
    person: PersonRef | None = None
    department: DepartmentRef | None = None
    reports: int = 0  # their reports, all kept
    promoted: PersonRef | None = None


# Departments ----------------------------------------------------------------------------------


async def find_department_ref(name_or_alias: str) -> DepartmentRef | None:
    """The department with this exact name or alias (storage.plan_queries.find_department)."""
    department = await find_department(name_or_alias)
    return DepartmentRef(department.id, department.name) if department else None


async def department_names() -> dict[str, str]:
    """Every name and alias -> the department's name (for "did you mean" suggestions)."""
    names: dict[str, str] = {}
    for row in await Department.all().order_by("id").values("name", "aliases"):
        names[row["name"]] = row["name"]
        for alias in row["aliases"] or []:
            names.setdefault(alias, row["name"])
    return names


async def department_liaisons(department_id: int) -> list[LiaisonRecord]:
    """The department's active liaisons: the lead first, then deputies in the order they joined."""
    rows = await Liaison.filter(
        department_id=department_id, active=True, role=LiaisonRole.LIAISON
    ).order_by("-is_lead", "bound_at", "id")
    return [
        LiaisonRecord(row.telegram_user_id, row.full_name, row.username, row.is_lead, row.bound_at)
        for row in rows
    ]


# Invitations ----------------------------------------------------------------------------------


async def create_invite(
    *,
    department_id: int,
    token_sha256: str,
    expires_at: datetime,
    created_by: int | None = None,
    as_lead: bool = False,
) -> InviteRecord:
    invite = await InviteToken.create(
        department_id=department_id,
        token_sha256=token_sha256,
        expires_at=expires_at,
        created_by=created_by,
        as_lead=as_lead,
    )
    await invite.fetch_related("department")
    return _invite_record(invite)


async def get_invite(token_sha256: str) -> InviteRecord | None:
    invite = (
        await InviteToken.filter(token_sha256=token_sha256).select_related("department").first()
    )
    return _invite_record(invite) if invite else None


def _invite_record(invite: InviteToken) -> InviteRecord:
    return InviteRecord(
        id=invite.id,
        department=DepartmentRef(invite.department_id, invite.department.name),
        as_lead=invite.as_lead,
        created_by=invite.created_by,
        created_at=invite.created_at,
        expires_at=invite.expires_at,
        used_at=invite.used_at,
        used_by=invite.used_by,
        revoked_at=invite.revoked_at,
    )


async def redeem_invite(
    token_sha256: str,
    *,
    user_id: int,
    full_name: str,
    username: str | None,
    now: datetime,
    is_coordinator: bool = False,
    then: Callable[[RedeemResult], Awaitable[object]] | None = None,
) -> RedeemResult:
    """Use the invitation to bind `user_id` to its department; all or nothing. `then(result)`
    runs in the binding's transaction (the notices that announce it: both or neither).

    A refused invitation (unknown, used, expired) changes nothing; neither does one opened by a
    coordinator (`is_coordinator`: ADMIN_IDS, which have no row to check) or by someone who
    already is a liaison of that department: the token stays valid for the person it was meant
    for. A liaison opening an invitation to their own department (again, or a duplicate update)
    is told so, whatever the token's state.
    """
    invite = await get_invite(token_sha256)
    if invite is None:
        return RedeemResult(RedeemOutcome.UNKNOWN)
    refused = _refusal(invite, now)
    person = await Liaison.get_or_none(telegram_user_id=user_id)
    if _is_member(person, invite.department.id) and (
        refused is not None or person.is_lead or not invite.as_lead
    ):
        return RedeemResult(RedeemOutcome.ALREADY_MEMBER, invite.department, is_lead=person.is_lead)
    if refused is not None:
        return refused
    if is_coordinator or (
        person is not None and person.active and person.role is LiaisonRole.COORDINATOR
    ):
        return RedeemResult(RedeemOutcome.COORDINATOR, invite.department)
    async with in_transaction():
        taken = await InviteToken.filter(
            id=invite.id, used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).update(used_at=now, used_by=user_id)
        if not taken:  # someone else was faster, or it expired meanwhile
            return _refusal(await get_invite(token_sha256), now) or RedeemResult(
                RedeemOutcome.USED, invite.department
            )
        result = await _bind(invite, user_id, full_name, username, now)
        creator = None
        if invite.created_by is not None:  # an ADMIN_IDS coordinator may have no row
            creator = await _person_ref(invite.created_by) or PersonRef(invite.created_by, "", None)
        result = replace(result, created_by=creator, expires_at=invite.expires_at)
        if then is not None:
            await then(result)
    return result


def _refusal(invite: InviteRecord | None, now: datetime) -> RedeemResult | None:
    if invite is None:
        return RedeemResult(RedeemOutcome.UNKNOWN)
    if invite.used_at is not None:
        return RedeemResult(RedeemOutcome.USED, invite.department)
    if invite.revoked_at is not None:  # answered like an expired one: it ended at revoked_at
        return RedeemResult(RedeemOutcome.EXPIRED, invite.department, expires_at=invite.revoked_at)
    if invite.expires_at <= now:
        return RedeemResult(RedeemOutcome.EXPIRED, invite.department, expires_at=invite.expires_at)
    return None


def _is_member(person: Liaison | None, department_id: int) -> bool:
    return (
        person is not None
        and person.active
        and person.role is LiaisonRole.LIAISON
        and person.department_id == department_id
    )


async def _bind(
    invite: InviteRecord, user_id: int, full_name: str, username: str | None, now: datetime
) -> RedeemResult:
    """Inside the redeeming transaction: make `user_id` a liaison of the invitation's department."""
    department = invite.department
    # Lock order everywhere: the person's row, then department rows by id (no deadlocks).
    person = await Liaison.select_for_update().get_or_none(telegram_user_id=user_id)
    previous = None
    was_lead = False
    if (
        person is not None
        and _is_member(person, person.department_id)
        and person.department_id not in (None, department.id)
    ):
        previous_row = await Department.get(id=person.department_id)
        previous = DepartmentRef(previous_row.id, previous_row.name)
        was_lead = person.is_lead
    for department_id in sorted({department.id, previous.id if previous else department.id}):
        await _lock_department(department_id)
    others = Liaison.filter(
        department_id=department.id, active=True, role=LiaisonRole.LIAISON, is_lead=True
    ).exclude(telegram_user_id=user_id)
    replaced = None
    if invite.as_lead:
        current_lead = await others.first()
        if current_lead is not None:
            replaced = _ref(current_lead)
            await others.update(is_lead=False)
        is_lead = True
    else:
        is_lead = _is_member(person, department.id) and person.is_lead
        is_lead = is_lead or not await others.exists()
    values = {
        "full_name": full_name[:255],
        "username": username,
        "role": LiaisonRole.LIAISON,
        "active": True,
        "department_id": department.id,
        "is_lead": is_lead,
    }
    if not _is_member(person, department.id):
        values["bound_at"] = now
    if person is None:
        person = await Liaison.create(telegram_user_id=user_id, **values)
    else:
        for name, value in values.items():
            setattr(person, name, value)
        await person.save(update_fields=[*values, "updated_at"])
    promoted = None
    if previous is not None and was_lead:
        promoted = await _promote_if_leaderless(previous.id)
    lead = None if is_lead else _ref(await others.first())
    return RedeemResult(
        RedeemOutcome.BOUND,
        department,
        is_lead=is_lead,
        lead=lead,
        previous_department=previous,
        replaced_lead=replaced,
        promoted=promoted,
    )


async def _lock_department(department_id: int) -> None:
    """Serialise changes to one department's liaisons (a no-op lock on SQLite)."""
    await Department.filter(id=department_id).select_for_update().first()


async def _promote_if_leaderless(department_id: int) -> PersonRef | None:
    """Give the lead to the deputy who joined earliest when the department has no lead."""
    active = Liaison.filter(department_id=department_id, active=True, role=LiaisonRole.LIAISON)
    if await active.filter(is_lead=True).exists():
        return None
    deputy = await active.order_by("bound_at", "id").first()
    if deputy is None:
        return None
    deputy.is_lead = True
    await deputy.save(update_fields=["is_lead", "updated_at"])
    return _ref(deputy)


def _ref(person: Liaison | None) -> PersonRef | None:
    if person is None:
        return None
    return PersonRef(person.telegram_user_id, person.full_name, person.locale, person.language_code)


async def _person_ref(telegram_user_id: int) -> PersonRef | None:
    return _ref(await Liaison.get_or_none(telegram_user_id=telegram_user_id))


# Coordinators and liaisons --------------------------------------------------------------------


async def person_ref(telegram_user_id: int) -> PersonRef | None:
    """The person the bot knows under this id, or None."""
    return await _person_ref(telegram_user_id)


async def user_id_by_username(username: str) -> int | None:
    """The Telegram id of a person the bot has seen with this @username (case-insensitive)."""
    name = username.removeprefix("@")
    if not name:
        return None
    row = await Liaison.filter(username__iexact=name).order_by("-updated_at").first()
    return row.telegram_user_id if row else None


async def granted_coordinator_ids() -> list[int]:
    """Coordinators made with /grant (ADMIN_IDS are not in the database)."""
    return list(
        await Liaison.filter(role=LiaisonRole.COORDINATOR, active=True)
        .order_by("id")
        .values_list("telegram_user_id", flat=True)
    )


async def grant_coordinator(
    user_id: int,
    *,
    full_name: str = "",
    username: str | None = None,
    then: Callable[[GrantResult], Awaitable[object]] | None = None,
) -> GrantResult:
    """Make `user_id` a coordinator. A liaison gives up their department (deputy takes over).
    `then(result)` runs in the same transaction, once granted."""
    async with in_transaction():
        person = await Liaison.select_for_update().get_or_none(telegram_user_id=user_id)
        if person is not None and person.active and person.role is LiaisonRole.COORDINATOR:
            return GrantResult(GrantOutcome.ALREADY, _ref(person))
        left = None
        if person is not None and _is_member(person, person.department_id):
            row = await Department.get(id=person.department_id)
            left = DepartmentRef(row.id, row.name)
            await _lock_department(left.id)
        values = {
            "role": LiaisonRole.COORDINATOR,
            "active": True,
            "department_id": None,
            "is_lead": False,
            "bound_at": None,
        }
        if full_name:
            values["full_name"] = full_name[:255]
        if username:
            values["username"] = username
        if person is None:
            person = await Liaison.create(telegram_user_id=user_id, **{"full_name": "", **values})
        else:
            for name, value in values.items():
                setattr(person, name, value)
            await person.save(update_fields=[*values, "updated_at"])
        promoted = await _promote_if_leaderless(left.id) if left else None
        result = GrantResult(GrantOutcome.GRANTED, _ref(person), left, promoted)
        if then is not None:
            await then(result)
    return result


@dataclass(frozen=True, slots=True)
class Revocation:
    """What taking someone's coordinator rights changed besides their role."""

    person: PersonRef
    invitations: int  # their open invitations, now unusable (revoked_at set)
    notices: int  # coordinator notices still waiting for them, now cancelled


async def revoke_coordinator(
    user_id: int, now: datetime, *, then: Callable[[Revocation], Awaitable[object]] | None = None
) -> Revocation | None:
    """Take coordinator rights from a granted coordinator (they become a guest); None if not one.

    In the same transaction their open invitations stop working (`revoked_at`, the rows stay)
    and the coordinator notices and notifications (bot.notices: "someone joined with your
    invitation") queued for their private chat are cancelled: what they started as a
    coordinator does not outlive their rights, and they hear nothing more as one. The notice
    that tells them so is written after, by `then`.
    """
    async with in_transaction():
        person = await Liaison.select_for_update().get_or_none(telegram_user_id=user_id)
        if person is None or not person.active or person.role is not LiaisonRole.COORDINATOR:
            return None
        person.role = LiaisonRole.OBSERVER
        person.active = False
        await person.save(update_fields=["role", "active", "updated_at"])
        invitations = await revoke_invitations_of(user_id, now)
        notices = await Delivery.filter(
            kind__in=(DeliveryKind.NOTICE, DeliveryKind.NOTIFICATION),
            chat_id=user_id,
            status=DeliveryStatus.PENDING,
        ).update(
            status=DeliveryStatus.CANCELLED,
            last_error="recipient is no longer a coordinator",
            updated_at=now,
        )
        revocation = Revocation(_ref(person), invitations, notices)
        if then is not None:  # in the same transaction (the notice that announces it)
            await then(revocation)
    return revocation


async def revoke_invitations_of(created_by: int, now: datetime) -> int:
    """Make the open (unused, unexpired, unrevoked) invitations `created_by` made unusable."""
    return await InviteToken.filter(
        created_by=created_by, used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(revoked_at=now)


async def unbind_liaison(
    user_id: int, *, then: Callable[[UnbindResult], Awaitable[object]] | None = None
) -> UnbindResult:
    """Deactivate a liaison: they become a guest, their reports stay; a deputy may take the lead.
    `then(result)` runs in the same transaction, once unbound.

    The row keeps its department (who used to answer for it), but inactive rows never count.
    """
    async with in_transaction():
        person = await Liaison.select_for_update().get_or_none(telegram_user_id=user_id)
        if person is None:
            return UnbindResult(UnbindOutcome.UNKNOWN)
        if person.active and person.role is LiaisonRole.COORDINATOR:
            return UnbindResult(UnbindOutcome.COORDINATOR, _ref(person))
        if not _is_member(person, person.department_id):
            return UnbindResult(UnbindOutcome.NOT_LIAISON, _ref(person))
        department_row = await Department.get(id=person.department_id)
        department = DepartmentRef(department_row.id, department_row.name)
        await _lock_department(department.id)
        was_lead = person.is_lead
        person.active = False
        person.is_lead = False
        await person.save(update_fields=["active", "is_lead", "updated_at"])
        promoted = await _promote_if_leaderless(department.id) if was_lead else None
        reports = await Report.filter(liaison_id=person.id).count()
        result = UnbindResult(UnbindOutcome.UNBOUND, _ref(person), department, reports, promoted)
        if then is not None:
            await then(result)
    return result


# Failed invitation attempts ---------------------------------------------------------------------


async def recent_failed_attempts(user_id: int, since: datetime) -> list[datetime]:
    """When `user_id` failed a `/start TOKEN` after `since`, oldest first."""
    return list(
        await InviteAttempt.filter(telegram_user_id=user_id, created_at__gt=since)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )


async def record_failed_attempt(user_id: int, now: datetime, window: timedelta) -> None:
    """Count one failed attempt; rows that no longer count for anyone (older than `window`) go."""
    async with in_transaction():
        await InviteAttempt.filter(created_at__lte=now - window).delete()
        await InviteAttempt.create(telegram_user_id=user_id, created_at=now)


# Bot settings (key/value) ---------------------------------------------------------------------


async def get_setting(key: str) -> str | None:
    row = await BotSetting.get_or_none(key=key)
    return row.value if row else None


async def set_setting(key: str, value: str) -> None:
    await BotSetting.update_or_create(key=key, defaults={"value": value})


async def replace_setting(key: str, old: str, new: str) -> bool:
    """Set `key` to `new` only if it currently holds `old`; True when it did."""
    return bool(await BotSetting.filter(key=key, value=old).update(value=new))
