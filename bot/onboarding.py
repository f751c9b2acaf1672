"""Onboarding services: invitations, coordinator rights, unbinding, the coordination group.

Plain values in and out (ids, names, aware datetimes, dataclasses); no aiogram here, so the CLI,
the handlers and later the scheduler share these rules:

- coordinators are ADMIN_IDS (fixed by configuration: /revoke cannot touch them) plus the people
  a coordinator grants; the last coordinator cannot revoke themselves, so the bot is never left
  without one;
- an invitation is a random token (`secrets.token_urlsafe`, 32 characters from Telegram's deep
  link alphabet A-Z a-z 0-9 _ -), single use, valid for `INVITE_DAYS` by default; only its SHA-256
  is stored;
- a coordinator who opens an invitation stays a coordinator and the token stays valid;
- revoking a coordinator makes their open invitations unusable (answered like expired ones) and
  cancels the coordinator notices still queued for them;
- `/start TOKEN` allows INVITE_ATTEMPTS failed attempts per person in INVITE_ATTEMPT_WINDOW
  (counted in the database, so a restart does not reset them); past that, even a valid token is
  refused until the oldest failure leaves the window;
- the coordination group is the one bound with /bindgroup, else COORDINATOR_CHAT_ID.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.settings import Settings
from storage import onboarding as store
from storage.onboarding import (
    BOT_USERNAME_KEY,
    COORDINATION_CHAT_KEY,
    COORDINATION_CHAT_TITLE_KEY,
    DepartmentRef,
    GrantOutcome,
    GrantResult,
    PersonRef,
    RedeemOutcome,
    RedeemResult,
    UnbindOutcome,
    UnbindResult,
)
from storage.plan_queries import DepartmentTask, tasks_by_department

# The result types come from storage.onboarding; handlers and the CLI import them from here.
__all__ = [
    "INVITE_ATTEMPTS",
    "INVITE_ATTEMPT_WINDOW",
    "INVITE_DAYS",
    "MAX_INVITE_DAYS",
    "GrantOutcome",
    "GrantResult",
    "GroupBinding",
    "InvalidDaysError",
    "Invitation",
    "PersonRef",
    "RedeemOutcome",
    "RedeemResult",
    "Redemption",
    "RevokeOutcome",
    "RevokeResult",
    "UnbindOutcome",
    "UnbindResult",
    "UnknownDepartmentError",
    "bind_coordination_group",
    "closest_names",
    "coordination_chat_id",
    "coordinator_ids",
    "create_invitation",
    "deep_link",
    "department_tasks",
    "follow_group_migration",
    "grant",
    "is_token_shaped",
    "known_bot_username",
    "new_token",
    "parse_user_id",
    "redeem_invitation",
    "remember_bot_username",
    "resolve_department",
    "resolve_user",
    "revoke",
    "token_digest",
    "unbind",
]

INVITE_DAYS = 7
# Failed `/start TOKEN` attempts allowed per person in the window (a mistyped link, a used one).
INVITE_ATTEMPTS = 5
INVITE_ATTEMPT_WINDOW = timedelta(minutes=10)
MAX_INVITE_DAYS = 365
TOKEN_BYTES = 24  # 32 URL-safe characters, 192 random bits
# Telegram's rule for the start parameter: 1-64 characters from A-Z, a-z, 0-9, _ and -.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")


class UnknownDepartmentError(LookupError):
    """No department has this exact name or alias; `suggestions` are the closest names."""

    def __init__(self, query: str, suggestions: list[str], *, any_departments: bool) -> None:
        super().__init__(query)
        self.query = query
        self.suggestions = suggestions
        self.any_departments = any_departments  # False before the first plan import


class InvalidDaysError(ValueError):
    """An invitation's validity outside 1..MAX_INVITE_DAYS days."""


# Tokens and links -------------------------------------------------------------------------------


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_token_shaped(text: str) -> bool:
    """Could this be an invitation token at all (Telegram's deep-link alphabet and length)?"""
    return TOKEN_RE.fullmatch(text) is not None


def deep_link(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username}?start={token}"


@dataclass(frozen=True, slots=True)
class Invitation:
    """A freshly made invitation: the only moment its token is known."""

    token: str
    department: str
    expires_at: datetime
    as_lead: bool

    @property
    def start_command(self) -> str:
        return f"/start {self.token}"

    def link(self, bot_username: str | None) -> str | None:
        return deep_link(bot_username, self.token) if bot_username else None


# Departments -----------------------------------------------------------------------------------


def closest_names(query: str, names: dict[str, str], limit: int = 5) -> list[str]:
    """Department names whose name or alias resembles `query`, best first.

    `names` maps every name and alias to its department's name. Containment either way counts
    most (建设 → 县建设局); then character similarity, which suits short Chinese names.
    """
    query = query.strip()
    if not query:
        return []
    scores: dict[str, float] = {}
    for candidate, department in names.items():
        if query in candidate or candidate in query:
            score = 1.0 + len(query) / max(len(candidate), 1) / 10
        else:
            score = difflib.SequenceMatcher(None, query, candidate).ratio()
        if score >= 0.4 and score > scores.get(department, 0.0):
            scores[department] = score
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [name for name, _ in ranked[:limit]]


async def resolve_department(query: str) -> DepartmentRef:
    """The department with exactly this name or alias; else UnknownDepartmentError."""
    department = await store.find_department_ref(query) if query.strip() else None
    if department is None:
        names = await store.department_names()
        raise UnknownDepartmentError(
            query, closest_names(query, names), any_departments=bool(names)
        )
    return department


async def department_tasks(department_name: str) -> tuple[DepartmentTask, ...]:
    """The department's active tasks (code, title, lead/support role, deadline), document order."""
    groups = await tasks_by_department(department_name)
    return groups[0].tasks if groups else ()


# Invitations -----------------------------------------------------------------------------------


async def create_invitation(
    department: str,
    *,
    created_by: int | None = None,
    days: int = INVITE_DAYS,
    as_lead: bool = False,
    now: datetime | None = None,
) -> Invitation:
    """A single-use invitation to `department` (exact name or alias), valid for `days` days."""
    if not 1 <= days <= MAX_INVITE_DAYS:
        raise InvalidDaysError(f"an invitation is valid for 1 to {MAX_INVITE_DAYS} days")
    target = await resolve_department(department)
    token = new_token()
    expires_at = (now or datetime.now(UTC)) + timedelta(days=days)
    await store.create_invite(
        department_id=target.id,
        token_sha256=token_digest(token),
        expires_at=expires_at,
        created_by=created_by,
        as_lead=as_lead,
    )
    return Invitation(token, target.name, expires_at, as_lead)


FAILED_OUTCOMES = frozenset({RedeemOutcome.UNKNOWN, RedeemOutcome.USED, RedeemOutcome.EXPIRED})


@dataclass(frozen=True, slots=True)
class Redemption:
    """What `/start TOKEN` did, with what the greeting needs."""

    result: RedeemResult
    tasks: tuple[DepartmentTask, ...] = ()

    @property
    def outcome(self) -> RedeemOutcome:
        return self.result.outcome


async def redeem_invitation(
    token: str,
    *,
    user_id: int,
    full_name: str,
    username: str | None = None,
    is_coordinator: bool = False,
    now: datetime | None = None,
    then: Callable[[RedeemResult], Awaitable[object]] | None = None,
) -> Redemption:
    """Bind the sender to the invitation's department, or say why not (binding nothing).

    A sender with INVITE_ATTEMPTS failures in the last INVITE_ATTEMPT_WINDOW is refused
    (LIMITED) without the token being looked at; an unknown, used or expired token counts as a
    failure. `then(result)` runs in the binding's transaction, once bound (the notices).
    """
    now = now or datetime.now(UTC)
    failures = await store.recent_failed_attempts(user_id, now - INVITE_ATTEMPT_WINDOW)
    if len(failures) >= INVITE_ATTEMPTS:
        retry_at = failures[-INVITE_ATTEMPTS] + INVITE_ATTEMPT_WINDOW
        return Redemption(RedeemResult(RedeemOutcome.LIMITED, retry_at=retry_at))
    if is_token_shaped(token):
        result = await store.redeem_invite(
            token_digest(token),
            user_id=user_id,
            full_name=full_name,
            username=username,
            now=now,
            is_coordinator=is_coordinator,
            then=then,
        )
    else:
        result = RedeemResult(RedeemOutcome.UNKNOWN)
    if result.outcome in FAILED_OUTCOMES:
        await store.record_failed_attempt(user_id, now, INVITE_ATTEMPT_WINDOW)
    known = result.outcome in (RedeemOutcome.BOUND, RedeemOutcome.ALREADY_MEMBER)
    if known and result.department is not None:
        return Redemption(result, await department_tasks(result.department.name))
    return Redemption(result)


# Coordinators and liaisons ---------------------------------------------------------------------


class RevokeOutcome(StrEnum):
    REVOKED = "revoked"
    CONFIGURED = "configured"  # in ADMIN_IDS: only the configuration can change that
    NOT_COORDINATOR = "not_coordinator"
    LAST = "last"  # the only coordinator left


@dataclass(frozen=True, slots=True)
class RevokeResult:
    outcome: RevokeOutcome
    person: PersonRef | None = None
    self_revoked: bool = False
    invitations: int = 0  # their open invitations, made unusable


def parse_user_id(text: str) -> int | None:
    """A Telegram user id as typed after a command: positive digits, nothing else."""
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < 2**63 else None


async def resolve_user(text: str) -> int | None:
    """A user id from `12345` or `@username` (someone the bot has already seen)."""
    text = text.strip()
    if text.startswith("@"):
        if not _USERNAME_RE.fullmatch(text[1:]):
            return None
        return await store.user_id_by_username(text[1:])
    return parse_user_id(text)


async def grant(
    user_id: int,
    *,
    full_name: str = "",
    username: str | None = None,
    admin_ids: tuple[int, ...] = (),
    then: Callable[[GrantResult], Awaitable[object]] | None = None,
) -> GrantResult:
    """Make someone a coordinator (an ADMIN_IDS member already is one); `then(result)` runs in
    the same transaction, once granted (the notices)."""
    if user_id in admin_ids:
        person = await store.person_ref(user_id) or PersonRef(user_id, full_name, None)
        return GrantResult(GrantOutcome.ALREADY, person)
    result = await store.grant_coordinator(
        user_id, full_name=full_name, username=username, then=then
    )
    if not result.person.full_name and full_name:
        return replace(result, person=replace(result.person, full_name=full_name))
    return result


async def coordinator_ids(admin_ids: tuple[int, ...]) -> set[int]:
    return set(admin_ids) | set(await store.granted_coordinator_ids())


async def revoke(
    user_id: int,
    *,
    by: int,
    admin_ids: tuple[int, ...],
    now: datetime | None = None,
    then: Callable[[RevokeResult], Awaitable[object]] | None = None,
) -> RevokeResult:
    """Take coordinator rights back from someone granted them, and their open invitations;
    `then(result)` runs in the same transaction, once revoked (the notices).

    An ADMIN_IDS member stays a coordinator by configuration (CONFIGURED): nothing changes,
    their invitations included, since they can go on making new ones anyway.
    """
    if user_id in admin_ids:
        return RevokeResult(RevokeOutcome.CONFIGURED, await store.person_ref(user_id))
    coordinators = await coordinator_ids(admin_ids)
    if user_id not in coordinators:
        return RevokeResult(RevokeOutcome.NOT_COORDINATOR, await store.person_ref(user_id))
    if coordinators == {user_id}:
        return RevokeResult(RevokeOutcome.LAST, await store.person_ref(user_id))

    def result_of(revocation: store.Revocation) -> RevokeResult:
        return RevokeResult(
            RevokeOutcome.REVOKED,
            revocation.person,
            self_revoked=user_id == by,
            invitations=revocation.invitations,
        )

    async def announce(revocation: store.Revocation) -> None:
        if then is not None:
            await then(result_of(revocation))

    revocation = await store.revoke_coordinator(user_id, now or datetime.now(UTC), then=announce)
    if revocation is None:  # revoked meanwhile by someone else
        return RevokeResult(RevokeOutcome.NOT_COORDINATOR)
    return result_of(revocation)


async def unbind(
    user_id: int,
    *,
    admin_ids: tuple[int, ...] = (),
    then: Callable[[UnbindResult], Awaitable[object]] | None = None,
) -> UnbindResult:
    """Remove a liaison from their department (they become a guest; their reports stay);
    `then(result)` runs in the same transaction, once unbound (the notices)."""
    if user_id in admin_ids:
        return UnbindResult(UnbindOutcome.COORDINATOR, await store.person_ref(user_id))
    return await store.unbind_liaison(user_id, then=then)


# Coordination group and bot username -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupBinding:
    chat_id: int
    already: bool  # this group already was the coordination group
    previous_id: int | None  # the group it replaces (stored or from COORDINATOR_CHAT_ID)
    previous_title: str | None


async def coordination_chat_id(settings: Settings) -> int | None:
    """The coordination group: the one bound with /bindgroup, else COORDINATOR_CHAT_ID."""
    stored = await store.get_setting(COORDINATION_CHAT_KEY)
    if stored is not None:
        return int(stored)
    return settings.coordinator_chat_id


async def bind_coordination_group(
    chat_id: int, title: str | None, settings: Settings
) -> GroupBinding:
    """Make `chat_id` the coordination group; say which group it replaces, if any."""
    previous = await coordination_chat_id(settings)
    previous_title = await store.get_setting(COORDINATION_CHAT_TITLE_KEY)
    await store.set_setting(COORDINATION_CHAT_KEY, str(chat_id))
    await store.set_setting(COORDINATION_CHAT_TITLE_KEY, title or "")
    if previous == chat_id:
        return GroupBinding(chat_id, True, None, None)
    return GroupBinding(chat_id, False, previous, previous_title or None)


async def follow_group_migration(old_chat_id: int, new_chat_id: int, settings: Settings) -> bool:
    """A group upgraded to a supergroup gets a new id: keep it the coordination group."""
    if await store.get_setting(COORDINATION_CHAT_KEY) is None:
        if settings.coordinator_chat_id != old_chat_id:
            return False
        await store.set_setting(COORDINATION_CHAT_KEY, str(new_chat_id))
        return True
    return await store.replace_setting(COORDINATION_CHAT_KEY, str(old_chat_id), str(new_chat_id))


async def remember_bot_username(username: str | None) -> None:
    """Stored at start-up so that the CLI, which cannot ask Telegram, can print deep links."""
    if username:
        await store.set_setting(BOT_USERNAME_KEY, username)


async def known_bot_username() -> str | None:
    return await store.get_setting(BOT_USERNAME_KEY)
