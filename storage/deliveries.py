"""The delivery ledger (outbox): every scheduled message is a row here before it is sent.

Plain dataclasses out, nothing of aiogram. The sender (bot.delivery) is the only writer after
`enqueue`. Row life::

    pending --claim_due--> sending --mark_sent--> sent
       ^                      |----mark_retry---> pending (next_attempt_at later)
       |                      |----mark_failed--> failed
       |                      '----mark_cancelled> cancelled
       '--reset_in_flight (an expired claim, or a dead owner's)
    pending --mark_expired_older_than--> expired

Every transition is a conditional UPDATE on the row's current status, so two senders (or a sender
and a restarted one) can never both own a row. A claim carries its owner (`claimed_by`, the
sender's instance id) and an expiry (`claim_expires_at`) that the owner renews while it holds the
row; `reset_in_flight` takes back only expired claims, or, for a caller holding the run lease
(storage.lease), every claim but its own: no other sender can be alive.

A key goes out twice in two ways only: a crash between Telegram accepting a message and
`mark_sent` (the row is taken back and sent again; bounded by the sender's in-flight window), and
a try that ended in a network error or timeout after the request went out (Telegram may have
delivered it; the row counts it in `uncertain_attempts`, see `possible_duplicates_since`).

`Model.update()` does not touch `auto_now` fields, so every transition sets `updated_at` itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import F, Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from bot.plan_revision import display_code
from bot.redaction import redact
from storage.enums import LiaisonRole
from storage.models import Delivery, DeliveryKind, DeliveryStatus, Liaison

__all__ = [
    "DeliveryIssueRow",
    "DeliveryKind",
    "DeliveryRecord",
    "DeliveryStatus",
    "NewDelivery",
    "Recipient",
    "claim_due",
    "count_by_status",
    "deliveries_by_key",
    "delivery_issues_since",
    "enqueue",
    "expired_or_failed_since",
    "get_delivery",
    "liaison_recipients",
    "mark_cancelled",
    "mark_expired_older_than",
    "mark_failed",
    "mark_part_sent",
    "mark_retry",
    "mark_sent",
    "next_due_at",
    "possible_duplicates_since",
    "release_claimed",
    "renew_claims",
    "reset_in_flight",
    "retarget",
]

MAX_KEY_LENGTH = 255
# How long a claim holds a row without renewal. The sender renews its claims every
# CLAIM_TTL / 4, so only a dead (or frozen) sender's claims run out. Far longer than one try
# (a request times out after 30 s).
CLAIM_TTL = timedelta(minutes=10)
_ENQUEUE_BATCH = 500


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A row to put into the ledger; `due_at` must be timezone-aware."""

    kind: DeliveryKind
    key: str
    chat_id: int
    due_at: datetime
    liaison_id: int | None = None
    department_id: int | None = None
    task_id: int | None = None
    cycle_key: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    kind: DeliveryKind
    key: str
    chat_id: int
    liaison_id: int | None
    department_id: int | None
    task_id: int | None
    cycle_key: str | None
    due_at: datetime
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    message_id: int | None
    sent_at: datetime | None
    parts_sent: int
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    uncertain_attempts: int = 0  # tries whose outcome is unknown (maybe delivered)

    @property
    def is_group(self) -> bool:
        """Groups and supergroups have negative chat ids."""
        return self.chat_id < 0


@dataclass(frozen=True, slots=True)
class Recipient:
    """A liaison a department's sends go to."""

    liaison_id: int
    chat_id: int  # the private chat with a person has the person's Telegram id
    locale: str | None
    is_lead: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _record(row: Delivery) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        kind=DeliveryKind(row.kind),
        key=row.key,
        chat_id=row.chat_id,
        liaison_id=row.liaison_id,
        department_id=row.department_id,
        task_id=row.task_id,
        cycle_key=row.cycle_key,
        due_at=row.due_at,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        message_id=row.message_id,
        sent_at=row.sent_at,
        parts_sent=row.parts_sent,
        payload=dict(row.payload or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        claimed_by=row.claimed_by,
        claim_expires_at=row.claim_expires_at,
        uncertain_attempts=row.uncertain_attempts,
    )


def _check_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")


async def enqueue(rows: Iterable[NewDelivery]) -> int:
    """Insert rows whose key is new; return how many were inserted.

    Idempotent: a key already in the ledger (in any status) is left alone, so planning the same
    sends again, or after a restart, adds nothing. Uses INSERT ... ON CONFLICT DO NOTHING
    (PostgreSQL) / INSERT OR IGNORE (SQLite), so a concurrent enqueue of the same key cannot fail.
    """
    unique: dict[str, NewDelivery] = {}
    for row in rows:
        if not row.key or len(row.key) > MAX_KEY_LENGTH:
            raise ValueError(f"delivery key must be 1-{MAX_KEY_LENGTH} characters: {row.key!r}")
        _check_aware(row.due_at, "due_at")
        unique.setdefault(row.key, row)
    if not unique:
        return 0
    inserted = 0
    items = list(unique.values())
    for start in range(0, len(items), _ENQUEUE_BATCH):
        batch = items[start : start + _ENQUEUE_BATCH]
        keys = [row.key for row in batch]
        async with in_transaction():
            existing = set(await Delivery.filter(key__in=keys).values_list("key", flat=True))
            fresh = [row for row in batch if row.key not in existing]
            if not fresh:
                continue
            now = _utcnow()
            await Delivery.bulk_create(
                [
                    Delivery(
                        kind=row.kind,
                        key=row.key,
                        chat_id=row.chat_id,
                        liaison_id=row.liaison_id,
                        department_id=row.department_id,
                        task_id=row.task_id,
                        cycle_key=row.cycle_key,
                        due_at=row.due_at,
                        next_attempt_at=row.due_at,
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        payload=row.payload,
                        created_at=now,
                        updated_at=now,
                    )
                    for row in fresh
                ],
                ignore_conflicts=True,
            )
            inserted += len(fresh)
    return inserted


async def claim_due(
    now: datetime, limit: int, *, owner: str | None = None, ttl: timedelta = CLAIM_TTL
) -> list[DeliveryRecord]:
    """Move up to `limit` pending rows due by `now` to `sending` and return them, oldest first.

    The UPDATE is conditional on the row still being pending and stamps a fresh claim token;
    only rows carrying this call's token are returned, so two concurrent claimers never share one.
    The claim names `owner` and runs out at `now + ttl` unless `renew_claims` extends it.
    """
    _check_aware(now, "now")
    if limit <= 0:
        return []
    candidates = (
        await Delivery.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    if not candidates:
        return []
    token = secrets.token_hex(16)
    claimed = await Delivery.filter(id__in=list(candidates), status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.SENDING,
        claim_token=token,
        claimed_by=owner,
        claim_expires_at=now + ttl,
        updated_at=now,
    )
    if not claimed:
        return []
    rows = await Delivery.filter(claim_token=token, status=DeliveryStatus.SENDING).order_by(
        "next_attempt_at", "id"
    )
    return [_record(row) for row in rows]


async def mark_sent(delivery_id: int, message_id: int | None, at: datetime) -> bool:
    """Record a message Telegram accepted. Unconditional on the status: it *was* sent."""
    updated = await Delivery.filter(id=delivery_id).update(
        status=DeliveryStatus.SENT,
        message_id=message_id,
        sent_at=at,
        attempts=F("attempts") + 1,
        claim_token=None,
        claimed_by=None,
        claim_expires_at=None,
        updated_at=at,
    )
    return bool(updated)


async def mark_part_sent(
    delivery_id: int, parts_sent: int, message_id: int | None, at: datetime
) -> bool:
    """Record progress through a send of several messages; the row stays `sending`.

    A retry later skips the parts already sent. `message_id` (the first part's) is kept once set.
    """
    values: dict[str, Any] = {"parts_sent": parts_sent, "updated_at": at}
    updated = await Delivery.filter(id=delivery_id, status=DeliveryStatus.SENDING).update(**values)
    if updated and message_id is not None:
        await Delivery.filter(id=delivery_id, message_id__isnull=True).update(message_id=message_id)
    return bool(updated)


async def mark_retry(
    delivery_id: int,
    error: str,
    next_attempt_at: datetime,
    *,
    count_attempt: bool = True,
    uncertain: bool = False,
    at: datetime | None = None,
) -> bool:
    """Back to pending, to be tried again at `next_attempt_at`.

    `count_attempt=False` for a 429: waiting out Telegram's flood control is not a failed try.
    `uncertain=True` when the try may have been delivered (the answer was lost).
    """
    _check_aware(next_attempt_at, "next_attempt_at")
    values: dict[str, Any] = {
        "status": DeliveryStatus.PENDING,
        "next_attempt_at": next_attempt_at,
        "last_error": redact(error),
        "claim_token": None,
        "claimed_by": None,
        "claim_expires_at": None,
        "updated_at": at or _utcnow(),
    }
    if count_attempt:
        values["attempts"] = F("attempts") + 1
    if uncertain:
        values["uncertain_attempts"] = F("uncertain_attempts") + 1
    updated = await Delivery.filter(id=delivery_id, status=DeliveryStatus.SENDING).update(**values)
    return bool(updated)


async def mark_failed(
    delivery_id: int, error: str, *, uncertain: bool = False, at: datetime | None = None
) -> bool:
    """Give up on a row (unreachable chat, rejected message, out of attempts); `uncertain` as in
    `mark_retry`, for a last try that may have been delivered."""
    values: dict[str, Any] = {
        "status": DeliveryStatus.FAILED,
        "last_error": redact(error),
        "attempts": F("attempts") + 1,
        "claim_token": None,
        "claimed_by": None,
        "claim_expires_at": None,
        "updated_at": at or _utcnow(),
    }
    if uncertain:
        values["uncertain_attempts"] = F("uncertain_attempts") + 1
    updated = await Delivery.filter(id=delivery_id, status=DeliveryStatus.SENDING).update(**values)
    return bool(updated)


async def mark_cancelled(delivery_id: int, reason: str, *, at: datetime | None = None) -> bool:
    """The send is no longer needed (pending or claimed rows only)."""
    updated = await Delivery.filter(
        id=delivery_id, status__in=(DeliveryStatus.PENDING, DeliveryStatus.SENDING)
    ).update(
        status=DeliveryStatus.CANCELLED,
        last_error=redact(reason),
        claim_token=None,
        claimed_by=None,
        claim_expires_at=None,
        updated_at=at or _utcnow(),
    )
    return bool(updated)


async def retarget(delivery_id: int, chat_id: int, *, at: datetime | None = None) -> bool:
    """Point a claimed row at another chat and make it due again at once (group -> supergroup)."""
    now = at or _utcnow()
    updated = await Delivery.filter(id=delivery_id, status=DeliveryStatus.SENDING).update(
        chat_id=chat_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at=now,
        claim_token=None,
        claimed_by=None,
        claim_expires_at=None,
        updated_at=now,
    )
    return bool(updated)


async def mark_expired_older_than(
    cutoff: datetime, *, at: datetime | None = None
) -> list[DeliveryRecord]:
    """Expire pending rows meant for before `cutoff` (they are never sent); return them."""
    _check_aware(cutoff, "cutoff")
    ids = list(
        await Delivery.filter(status=DeliveryStatus.PENDING, due_at__lt=cutoff).values_list(
            "id", flat=True
        )
    )
    if not ids:
        return []
    token = secrets.token_hex(16)
    now = at or _utcnow()
    await Delivery.filter(id__in=ids, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.EXPIRED,
        last_error="expired: due before the staleness window",
        claim_token=token,
        updated_at=now,
    )
    rows = await Delivery.filter(claim_token=token).order_by("due_at", "id")
    await Delivery.filter(claim_token=token).update(claim_token=None)
    return [_record(row) for row in rows]


async def release_claimed(ids: Sequence[int], *, at: datetime | None = None) -> int:
    """Graceful stop: claimed rows that were never sent go back to pending, as they were."""
    if not ids:
        return 0
    return await Delivery.filter(id__in=list(ids), status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING,
        claim_token=None,
        claimed_by=None,
        claim_expires_at=None,
        updated_at=at or _utcnow(),
    )


async def renew_claims(
    owner: str, ids: Sequence[int], *, at: datetime, ttl: timedelta = CLAIM_TTL
) -> int:
    """Extend `owner`'s claims on `ids` to `at + ttl` (rows it still holds); return how many."""
    if not ids:
        return 0
    return await Delivery.filter(
        id__in=list(ids), status=DeliveryStatus.SENDING, claimed_by=owner
    ).update(claim_expires_at=at + ttl)


async def reset_in_flight(
    *,
    at: datetime | None = None,
    keep: Sequence[int] = (),
    lease_owner: str | None = None,
) -> int:
    """Rows in `sending` whose holder is gone go back to pending, due at once; return how many.

    Taken back: claims that expired by `at` (their owner stopped renewing them: it died, or lost
    the outcome), and claims without an expiry (made before claims had one). A caller that holds
    the run lease passes its owner id as `lease_owner`: then every claim of another owner is
    taken back, expired or not, since no other sender can be alive. `keep`: rows the caller
    holds itself. Some rows taken back may have reached Telegram before their owner died: the
    crash window of the sender (at most its requests in flight).
    """
    now = at or _utcnow()
    query = Delivery.filter(status=DeliveryStatus.SENDING)
    if lease_owner is not None:
        query = query.filter(Q(claimed_by__isnull=True) | ~Q(claimed_by=lease_owner))
    else:
        query = query.filter(Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lte=now))
    if keep:
        query = query.exclude(id__in=list(keep))
    return await query.update(
        status=DeliveryStatus.PENDING,
        claim_token=None,
        claimed_by=None,
        claim_expires_at=None,
        updated_at=now,
    )


async def next_due_at() -> datetime | None:
    """When the earliest pending row is due (to sleep until then)."""
    found = (
        await Delivery.filter(status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at")
        .limit(1)
        .values_list("next_attempt_at", flat=True)
    )
    return found[0] if found else None


async def expired_or_failed_since(since: datetime) -> list[DeliveryRecord]:
    """Sends that expired or could not be delivered since `since` (for the weekly summary)."""
    _check_aware(since, "since")
    rows = await Delivery.filter(
        status__in=(DeliveryStatus.EXPIRED, DeliveryStatus.FAILED), updated_at__gte=since
    ).order_by("due_at", "id")
    return [_record(row) for row in rows]


async def possible_duplicates_since(since: datetime) -> int:
    """How many messages may have reached their chat twice, among rows settled since `since`.

    A try that ended in a network error or timeout after the request went out may have been
    delivered (`uncertain_attempts`). A sent row may thus have that many extra copies; a row
    that never got a confirmed send (failed, cancelled, expired) at most one fewer.
    """
    _check_aware(since, "since")
    rows = await Delivery.filter(uncertain_attempts__gt=0, updated_at__gte=since).values_list(
        "status", "uncertain_attempts"
    )
    return sum(
        count if status == DeliveryStatus.SENT else max(count - 1, 0) for status, count in rows
    )


@dataclass(frozen=True, slots=True)
class DeliveryIssueRow:
    """An expired or failed send, named for people (bot.summary.DeliveryIssueLike)."""

    kind: str
    recipient: str  # the liaison, else the department, else the chat id
    task_code: str | None
    reason: str  # "expired", "unreachable", or the last error
    due_at: datetime
    chat_id: int


async def delivery_issues_since(since: datetime) -> list[DeliveryIssueRow]:
    """`expired_or_failed_since` with names, in one query (for the weekly summary)."""
    _check_aware(since, "since")
    rows = (
        await Delivery.filter(
            status__in=(DeliveryStatus.EXPIRED, DeliveryStatus.FAILED), updated_at__gte=since
        )
        .select_related("liaison", "department", "task")
        .order_by("due_at", "id")
    )
    issues = []
    for row in rows:
        error = row.last_error or "failed"
        if row.status == DeliveryStatus.EXPIRED:
            reason = "expired"
        elif error.startswith("unreachable"):
            reason = "unreachable"
        else:
            reason = error
        if row.liaison is not None:
            recipient = row.liaison.full_name
        elif row.department is not None:
            recipient = row.department.name
        else:
            recipient = str(row.chat_id)
        issues.append(
            DeliveryIssueRow(
                kind=str(row.kind),
                recipient=recipient,
                task_code=display_code(row.task.code) if row.task is not None else None,
                reason=reason,
                due_at=row.due_at,
                chat_id=row.chat_id,
            )
        )
    return issues


async def get_delivery(delivery_id: int) -> DeliveryRecord | None:
    row = await Delivery.get_or_none(id=delivery_id)
    return _record(row) if row else None


async def deliveries_by_key(keys: Sequence[str]) -> dict[str, DeliveryRecord]:
    """Rows by idempotency key (missing keys are absent)."""
    rows = await Delivery.filter(key__in=list(keys))
    return {row.key: _record(row) for row in rows}


async def count_by_status() -> dict[DeliveryStatus, int]:
    """How many rows are in each status (every status present, zero when empty)."""
    counts = dict.fromkeys(DeliveryStatus, 0)
    rows = await Delivery.annotate(n=Count("id")).group_by("status").values("status", "n")
    for row in rows:
        counts[DeliveryStatus(row["status"])] = row["n"]
    return counts


async def liaison_recipients(department_ids: Iterable[int]) -> dict[int, list[Recipient]]:
    """The active liaisons of each department (lead first), in one query."""
    ids = sorted(set(department_ids))
    if not ids:
        return {}
    rows = (
        await Liaison.filter(department_id__in=ids, active=True, role=LiaisonRole.LIAISON)
        .order_by("department_id", "-is_lead", "id")
        .values("id", "telegram_user_id", "locale", "is_lead", "department_id")
    )
    found: dict[int, list[Recipient]] = {}
    for row in rows:
        found.setdefault(row["department_id"], []).append(
            Recipient(row["id"], row["telegram_user_id"], row["locale"], bool(row["is_lead"]))
        )
    return found
