"""The one sender of every scheduled message, and the adapter from planned sends to the ledger.

The ledger (storage.deliveries) is the truth; the Sender works through it:

1. expire pending rows due longer ago than the staleness window (never sent, listed in the summary);
2. claim due rows (pending -> sending, a conditional UPDATE) in small batches and render each one
   (`render(record)` -> one message, several in order, or None = no longer needed -> cancelled);
3. pace them: at most `per_second` overall, one message per `1 / per_chat_per_second` seconds in
   a private chat and one per `60 / per_group_per_minute` in a group (negative chat id), computed
   as next-allowed times on the injected clock. Sends to different chats run concurrently (at most
   `max_in_flight` requests at once), sends to one chat one after another;
4. record the outcome in the database after each request: sent; 429 -> that chat waits
   `retry_after` and the row is due again then (not counted as an attempt); 5xx and network errors
   -> retried with exponential backoff, failed after `max_attempts`; 403 (blocked, kicked) ->
   failed as unreachable, and each coordinator chat gets one `notice` row (key
   "unreachable:<chat>><coordinator chat>", so only ever once); 400 -> failed with Telegram's
   description; a group upgraded to a supergroup -> the row moves to the new chat id.

A send of several messages (a long summary, then its chart) goes out part by part at the chat's
pace; each part is recorded (`parts_sent`), so a retry resumes after the last part that went out.

Pacing is a single loop (the only caller of the injected `sleep`); the request tasks never sleep.
A crash at any point loses nothing: a row is `sending` in the database before its request starts
and gets its final status after the answer. Each claim names the sender (`owner`) and runs out
after `CLAIM_TTL` unless renewed; the sender renews the claims it holds every quarter of that.
Start-up under the run lease puts every other owner's `sending` rows back to pending
(`reset_in_flight`), so at most `max_in_flight` messages can go out twice; without the lease it
takes back only expired claims, never a live sender's. While running, an expired claim that the
sender does not hold (its outcome could not be written) is swept back to pending the same way.

A try that ends in a network error or a timeout once the request may have gone out has an
unknown outcome: Telegram may have delivered the message. It is retried like any network error
(a message is never lost) and counted in the row's `uncertain_attempts` and in
`SendStats.uncertain`: each such try may have added one copy. A connection that was never made
(refused, DNS) is not counted: nothing went out.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    ForceReply,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiohttp import ClientConnectorError
from tortoise.exceptions import DBConnectionError, OperationalError

from bot.redaction import redact
from storage import deliveries as ledger
from storage.deliveries import (
    CLAIM_TTL,
    MAX_KEY_LENGTH,
    DeliveryKind,
    DeliveryRecord,
    NewDelivery,
    Recipient,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
CoordinatorChats = Callable[[], Awaitable[Iterable[int]]]

UNREACHABLE_PREFIX = "unreachable"
_DB_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # real seconds; the database, not Telegram
_UNAUTHORIZED_PAUSE = 60.0
_EPSILON = 1e-6
_REMEMBERED_CHATS = 10_000
_RENEW_EVERY = CLAIM_TTL / 4  # claims held are renewed this often (clock time)
_GROUP_KINDS = (DeliveryKind.ESCALATION, DeliveryKind.SUMMARY)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """What the renderer makes of a ledger row: HTML text, or a photo / document with a caption."""

    text: str
    reply_markup: ReplyMarkup | None = None
    photo: bytes | None = None
    document: bytes | None = None
    filename: str | None = None  # for photo / document
    disable_notification: bool = False


# One message, several in order (a long summary: its parts, then the chart), or None when the
# send is no longer needed.
RenderResult = OutgoingMessage | Sequence[OutgoingMessage] | None
Render = Callable[[DeliveryRecord], Awaitable[RenderResult]]


@dataclass(frozen=True, slots=True)
class SenderLimits:
    """Telegram's limits with a margin, retries and timing. Defaults follow issue 4."""

    per_second: float = 25.0  # Telegram: about 30 overall
    per_chat_per_second: float = 1.0  # Telegram: about 1 in one chat
    per_group_per_minute: float = 18.0  # Telegram: 20 in one group
    max_in_flight: int = 16  # concurrent requests = the most a crash can duplicate
    max_attempts: int = 5  # tries that failed with 5xx / network errors before giving up
    backoff_base: float = 5.0  # seconds before the 2nd try; doubles each time
    backoff_max: float = 900.0
    staleness: timedelta = timedelta(hours=24)  # due longer ago -> expired, not sent
    batch_size: int = 50  # rows claimed (and rendered) at a time
    render_concurrency: int = 8
    safety_poll: float = 60.0  # the run loop looks at the ledger at least this often
    request_timeout: float = 30.0  # seconds for one Bot API request

    def __post_init__(self) -> None:
        if min(self.per_second, self.per_chat_per_second, self.per_group_per_minute) <= 0:
            raise ValueError("rate limits must be positive")
        if self.max_in_flight < 1 or self.max_attempts < 1 or self.batch_size < 1:
            raise ValueError("max_in_flight, max_attempts and batch_size must be at least 1")
        if self.safety_poll <= 0 or self.safety_poll > 60:
            raise ValueError("safety_poll must be in (0, 60] seconds")

    @classmethod
    def from_settings(cls, settings: object) -> SenderLimits:
        """Read the SEND_* settings; a field the Settings class lacks keeps its default."""
        defaults = cls()

        def pick(name: str, default: T) -> T:
            value = getattr(settings, name, None)
            return default if value is None else value

        return cls(
            per_second=float(pick("send_rate_per_second", defaults.per_second)),
            per_chat_per_second=float(
                pick("send_per_chat_per_second", defaults.per_chat_per_second)
            ),
            per_group_per_minute=float(
                pick("send_per_group_per_minute", defaults.per_group_per_minute)
            ),
            max_in_flight=int(pick("send_max_in_flight", defaults.max_in_flight)),
            max_attempts=int(pick("send_max_attempts", defaults.max_attempts)),
            backoff_base=float(pick("send_backoff_seconds", defaults.backoff_base)),
            staleness=timedelta(
                hours=float(pick("send_staleness_hours", defaults.staleness.total_seconds() / 3600))
            ),
        )

    def interval(self, chat_id: int) -> float:
        """Seconds between two messages in one chat."""
        per_chat = 1.0 / self.per_chat_per_second
        if chat_id < 0:
            return max(per_chat, 60.0 / self.per_group_per_minute)
        return per_chat


@dataclass(slots=True)
class SendStats:
    """What one `run_once` did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0  # 5xx / network errors / migrated groups, due again later
    rate_limited: int = 0  # 429s, due again after retry_after
    failed: int = 0  # including unreachable
    unreachable: int = 0  # 403
    cancelled: int = 0  # render returned None
    expired: int = 0
    notices: int = 0  # unreachable notices enqueued for coordinators
    uncertain: int = 0  # tries that may have been delivered although no answer came
    max_in_flight: int = 0  # the most requests that were open at once
    expired_records: list[DeliveryRecord] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Item:
    """A claimed row with its rendered messages; `next_part` counts those already sent."""

    record: DeliveryRecord
    messages: list[OutgoingMessage]
    next_part: int = 0
    first_message_id: int | None = None

    @property
    def message(self) -> OutgoingMessage:
        return self.messages[self.next_part]


def _messages(result: RenderResult) -> list[OutgoingMessage]:
    if result is None:
        return []
    if isinstance(result, OutgoingMessage):
        return [result]
    return list(result)


class Sender:
    """The rate-limited outbox sender. One per bot; see the module docstring.

    `clock` returns aware UTC datetimes (database times and pacing); `sleep` is what the pacing
    loop awaits. Tests inject both to run in virtual time. Without a clock, pacing uses
    `time.monotonic`, so a wall-clock jump cannot stall or burst the sender.
    """

    def __init__(
        self,
        bot: Bot,
        render: Render,
        *,
        limits: SenderLimits | None = None,
        coordinator_chats: CoordinatorChats | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        on_idle: Callable[[datetime | None], object] | None = None,
        owner: str | None = None,
    ) -> None:
        self.bot = bot
        # Names this sender in the ledger's claims (the run lease's owner id under `duban run`).
        self.owner = owner or uuid.uuid4().hex
        self.limits = limits or SenderLimits()
        self._render = render
        self._coordinator_chats = coordinator_chats
        self._clock: Clock = clock or _utcnow
        self._monotonic: Callable[[], float] = (
            time.monotonic if clock is None else (lambda: self._clock().timestamp())
        )
        self._sleep: Sleep = sleep or asyncio.sleep
        self._on_idle = on_idle
        self._global_next = -math.inf
        self._chat_next: dict[int, float] = {}
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_ids: dict[asyncio.Task[None], int] = {}
        self._queues: dict[int, deque[_Item]] = {}
        self._queued = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping: asyncio.Event | None = None
        self._renew_at: datetime | None = None

    # -- public -----------------------------------------------------------------------------

    def clock(self) -> datetime:
        """The sender's idea of now (aware UTC)."""
        return self._clock()

    @property
    def in_flight(self) -> int:
        """Requests open right now."""
        return len(self._tasks)

    def wake(self) -> None:
        """Look at the ledger now (new rows were enqueued, or a job fired)."""
        self._wake.set()

    async def run_once(self, now: datetime | None = None) -> SendStats:
        """Send everything due by `now` (default: the clock at each claim), within the limits.

        Returns when nothing due is left and no request is open. Rows put back for later (429,
        backoff) are left to the next run.
        """
        async with self._lock:
            stats = SendStats()
            try:
                await self._run(now, stats)
            except asyncio.CancelledError:
                # A crash as far as the ledger is concerned: open requests are abandoned and
                # their rows stay `sending` until the next start-up resets them.
                await self._abandon()
                raise
            return stats

    async def run(self, stop: asyncio.Event) -> None:
        """Send due rows until `stop` is set: sleep until the next due time, a `wake()`, or at
        most `safety_poll` seconds. Errors (a locked database) are logged and retried."""
        self._stopping = stop
        try:
            while not stop.is_set():
                self._wake.clear()
                delay = self.limits.safety_poll
                try:
                    await self.run_once()
                    upcoming = await ledger.next_due_at()
                except Exception:  # the loop must outlive a bad moment of the database
                    log.exception("Sending scheduled messages failed; trying again shortly")
                    delay = min(delay, 5.0)
                else:
                    if self._on_idle is not None:
                        self._on_idle(upcoming)
                    if upcoming is not None:
                        wait = (upcoming - self._clock()).total_seconds()
                        delay = min(delay, max(wait, 0.0))
                if stop.is_set():
                    break
                if delay <= 0:
                    await asyncio.sleep(0)  # rows are due again already: go round, yielding
                    continue
                await self._idle(delay, stop)
        finally:
            self._stopping = None

    # -- the pacing loop ----------------------------------------------------------------------

    async def _run(self, now: datetime | None, stats: SendStats) -> None:
        self._forget_idle_chats()
        start = now or self._clock()
        orphans = await self._db(ledger.reset_in_flight, at=start, keep=self._held_ids())
        if orphans:
            log.warning("%d sends were stuck in flight; they are due again", orphans)
        expired = await self._db(
            ledger.mark_expired_older_than, start - self.limits.staleness, at=start
        )
        if expired:
            stats.expired += len(expired)
            stats.expired_records.extend(expired)
            log.warning("Expired %d sends older than the staleness window", len(expired))
        exhausted = False
        while True:
            if self._stopping is not None and self._stopping.is_set():
                await self._drain_and_release()
                return
            if not exhausted and self._queued < self.limits.batch_size:
                claimed = await self._claim(now or self._clock(), stats)
                exhausted = claimed < self.limits.batch_size
                continue
            renew_in = await self._renew_claims()
            t = self._monotonic()
            chat_id, ready_at = self._pick(t)
            if chat_id is not None:
                self._launch(chat_id, t, stats)
                continue
            if not self._queued and not self._tasks:
                if exhausted:
                    return
                continue
            if ready_at == math.inf:
                await self._wait(None)  # a request ends within request_timeout: renewal waits
            else:
                await self._wait(min(ready_at - t, renew_in))

    def _held_ids(self) -> list[int]:
        """Rows this sender holds: queued, or with a request open."""
        queued = [item.record.id for queue in self._queues.values() for item in queue]
        return queued + [self._task_ids[task] for task in self._tasks if task in self._task_ids]

    async def _renew_claims(self) -> float:
        """Renew the claims held when due (a long wait in a chat's queue, a slow request);
        return the seconds until the next renewal."""
        now = self._clock()
        if self._renew_at is None or now >= self._renew_at:
            await self._db(ledger.renew_claims, self.owner, self._held_ids(), at=now)
            self._renew_at = now + _RENEW_EVERY
        return max((self._renew_at - now).total_seconds(), 0.0)

    def _forget_idle_chats(self) -> None:
        """Drop pacing entries that no longer hold anything back (memory stays bounded)."""
        if len(self._chat_next) > _REMEMBERED_CHATS:
            t = self._monotonic()
            self._chat_next = {
                chat: ready
                for chat, ready in self._chat_next.items()
                if ready > t or chat in self._busy
            }

    async def _claim(self, cutoff: datetime, stats: SendStats) -> int:
        records = await self._db(ledger.claim_due, cutoff, self.limits.batch_size, owner=self.owner)
        self._renew_at = self._clock() + _RENEW_EVERY  # fresh claims run CLAIM_TTL from now
        stats.claimed += len(records)
        if not records:
            return 0
        semaphore = asyncio.Semaphore(self.limits.render_concurrency)

        async def render(record: DeliveryRecord) -> RenderResult | BaseException:
            async with semaphore:
                return await self._render_one(record)

        rendered = await asyncio.gather(*(render(record) for record in records))
        for record, result in zip(records, rendered, strict=True):
            if isinstance(result, BaseException):
                await self._retry_or_fail(record, f"render: {result!r}", stats)
                continue
            messages = _messages(result)
            if not messages:
                stats.cancelled += 1
                await self._db(
                    ledger.mark_cancelled, record.id, "no longer needed", at=self._clock()
                )
            elif record.parts_sent >= len(messages):  # every part went out before a crash
                stats.sent += 1
                await self._db(ledger.mark_sent, record.id, record.message_id, self._clock())
            else:
                item = _Item(record, messages, record.parts_sent, record.message_id)
                self._queues.setdefault(record.chat_id, deque()).append(item)
                self._queued += 1
        return len(records)

    async def _render_one(self, record: DeliveryRecord) -> RenderResult | BaseException:
        try:
            result = self._render(record)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # a renderer bug must not stop every other send
            log.exception("Rendering delivery %s (%s) failed", record.id, record.key)
            return exc
        return result

    def _pick(self, t: float) -> tuple[int | None, float]:
        """A chat whose next message may go now, or the earliest time one may."""
        if len(self._tasks) >= self.limits.max_in_flight:
            return None, math.inf  # wait for a request to finish
        t += _EPSILON  # a clock with microsecond steps must not stop just short of a time
        if self._global_next > t:
            return None, self._global_next
        earliest = math.inf
        for chat_id in self._queues:
            if chat_id in self._busy:
                continue
            ready = self._chat_next.get(chat_id, -math.inf)
            if ready <= t:
                return chat_id, t
            earliest = min(earliest, ready)
        return None, earliest

    def _launch(self, chat_id: int, t: float, stats: SendStats) -> None:
        queue = self._queues[chat_id]
        item = queue.popleft()
        if not queue:
            del self._queues[chat_id]
        self._queued -= 1
        # A pacer that woke late may catch up half an interval, no more: in any second at most
        # per_second + 1 messages go out, as with exact spacing.
        step = 1.0 / self.limits.per_second
        self._global_next = max(self._global_next, t - step / 2) + step
        self._chat_next[chat_id] = t + self.limits.interval(chat_id)
        self._busy.add(chat_id)
        task = asyncio.create_task(self._deliver(item, stats), name=f"delivery-{item.record.id}")
        self._tasks.add(task)
        self._task_ids[task] = item.record.id
        stats.max_in_flight = max(stats.max_in_flight, len(self._tasks))
        task.add_done_callback(self._forget_task)

    def _requeue(self, item: _Item) -> None:
        self._queues.setdefault(item.record.chat_id, deque()).appendleft(item)
        self._queued += 1

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._task_ids.pop(task, None)

    async def _wait(self, delay: float | None) -> None:
        """Until a request finishes or `delay` seconds pass (on the injected sleep)."""
        waiters: set[asyncio.Future[Any]] = set(self._tasks)
        helpers: list[asyncio.Future[Any]] = []
        if delay is not None:
            helpers.append(asyncio.ensure_future(self._sleep(max(delay, 0.0))))
        if self._stopping is not None:
            helpers.append(asyncio.ensure_future(self._stopping.wait()))
        await _first_of(waiters, helpers)

    async def _idle(self, delay: float, stop: asyncio.Event) -> None:
        helpers = [
            asyncio.ensure_future(self._sleep(delay)),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        await _first_of(set(), helpers)

    async def _drain_and_release(self) -> None:
        """Graceful stop: let open requests finish, put claimed but unsent rows back."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        ids = [item.record.id for queue in self._queues.values() for item in queue]
        self._queues.clear()
        self._queued = 0
        if ids:
            await self._db(ledger.release_claimed, ids, at=self._clock())

    async def _abandon(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._queues.clear()
        self._queued = 0
        self._busy.clear()

    # -- one request --------------------------------------------------------------------------

    async def _deliver(self, item: _Item, stats: SendStats) -> None:
        chat_id = item.record.chat_id
        try:
            await self._attempt(item, stats)
        except (OperationalError, DBConnectionError, OSError):
            # The ledger stayed unwritable through every retry: the row stays `sending` and
            # start-up puts it back (a duplicate if Telegram had accepted it).
            log.exception("Could not record the outcome of delivery %s", item.record.id)
        finally:
            self._busy.discard(chat_id)
            # Space the chat's messages from the answer too: a slow request must not let the
            # next one follow it closely.
            self._chat_next[chat_id] = max(
                self._chat_next.get(chat_id, -math.inf),
                self._monotonic() + self.limits.interval(chat_id),
            )

    async def _attempt(self, item: _Item, stats: SendStats) -> None:
        record = item.record
        try:
            sent = await self._request(record.chat_id, item.message)
        except TelegramRetryAfter as exc:
            stats.rate_limited += 1
            wait = max(float(exc.retry_after), 1.0)
            self._chat_next[record.chat_id] = max(
                self._chat_next.get(record.chat_id, -math.inf), self._monotonic() + wait
            )
            now = self._clock()
            await self._db(
                ledger.mark_retry,
                record.id,
                f"429: {exc.message}",
                now + timedelta(seconds=wait),
                count_attempt=False,
                at=now,
            )
        except TelegramMigrateToChat as exc:
            stats.retried += 1
            log.info("Chat %s became %s; resending there", record.chat_id, exc.migrate_to_chat_id)
            await self._db(ledger.retarget, record.id, exc.migrate_to_chat_id, at=self._clock())
        except TelegramForbiddenError as exc:
            await self._unreachable(record, exc.message, stats)
        except TelegramEntityTooLarge as exc:  # a TelegramNetworkError subclass: before it
            await self._fail(record, f"413: {exc.message}", stats)
        except TelegramBadRequest as exc:
            await self._fail(record, f"400: {exc.message}", stats)
        except TelegramUnauthorizedError as exc:
            # The token was revoked: every send would fail the same way. Keep the rows.
            log.error("The Bot API refuses the token; pausing sends: %s", exc.message)
            self._global_next = max(self._global_next, self._monotonic() + _UNAUTHORIZED_PAUSE)
            stats.retried += 1
            now = self._clock()
            await self._db(
                ledger.mark_retry,
                record.id,
                f"401: {exc.message}",
                now + timedelta(seconds=_UNAUTHORIZED_PAUSE),
                count_attempt=False,
                at=now,
            )
        except (TelegramServerError, TelegramNetworkError) as exc:
            uncertain = _may_have_been_sent(exc)
            stats.uncertain += uncertain
            await self._retry_or_fail(
                record, f"{type(exc).__name__}: {exc.message}", stats, uncertain=uncertain
            )
        except TelegramAPIError as exc:  # 404, 409 …: unexpected; retry a few times
            await self._retry_or_fail(record, f"{type(exc).__name__}: {exc.message}", stats)
        except Exception as exc:  # a bug must not leave the row in `sending`
            log.exception("Sending delivery %s failed unexpectedly", record.id)
            await self._retry_or_fail(record, f"{type(exc).__name__}: {exc}", stats)
        else:
            if item.first_message_id is None:
                item.first_message_id = sent.message_id
            item.next_part += 1
            if item.next_part < len(item.messages):
                await self._db(
                    ledger.mark_part_sent, record.id, item.next_part, sent.message_id, self._clock()
                )
                self._requeue(item)  # the next part, after the chat's interval
                return
            stats.sent += 1
            await self._db(ledger.mark_sent, record.id, item.first_message_id, self._clock())

    async def _request(self, chat_id: int, message: OutgoingMessage) -> Message:
        common: dict[str, Any] = {
            "chat_id": chat_id,
            "reply_markup": message.reply_markup,
            "disable_notification": message.disable_notification or None,
            "request_timeout": math.ceil(self.limits.request_timeout),
        }
        if message.photo is not None:
            photo = BufferedInputFile(message.photo, filename=message.filename or "chart.png")
            return await self.bot.send_photo(photo=photo, caption=message.text or None, **common)
        if message.document is not None:
            document = BufferedInputFile(message.document, filename=message.filename or "file")
            return await self.bot.send_document(
                document=document, caption=message.text or None, **common
            )
        return await self.bot.send_message(text=message.text, **common)

    # -- outcomes -----------------------------------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed tries (1, 2, …)."""
        delay = self.limits.backoff_base * 2 ** max(attempts - 1, 0)
        return min(delay, self.limits.backoff_max)

    async def _retry_or_fail(
        self, record: DeliveryRecord, error: str, stats: SendStats, *, uncertain: bool = False
    ) -> None:
        attempts = record.attempts + 1
        if attempts >= self.limits.max_attempts:
            error = f"gave up after {attempts} attempts: {error}"
            await self._fail(record, error, stats, uncertain=uncertain)
            return
        stats.retried += 1
        now = self._clock()
        due = now + timedelta(seconds=self.backoff(attempts))
        await self._db(ledger.mark_retry, record.id, error, due, uncertain=uncertain, at=now)

    async def _fail(
        self, record: DeliveryRecord, error: str, stats: SendStats, *, uncertain: bool = False
    ) -> None:
        stats.failed += 1
        log.warning("Delivery %s (%s) failed: %s", record.id, record.key, error)
        await self._db(ledger.mark_failed, record.id, error, uncertain=uncertain, at=self._clock())

    async def _unreachable(
        self, record: DeliveryRecord, description: str, stats: SendStats
    ) -> None:
        stats.unreachable += 1
        await self._fail(record, f"{UNREACHABLE_PREFIX}: {description}", stats)
        if record.kind is DeliveryKind.NOTICE or self._coordinator_chats is None:
            return  # never a notice about a notice: a blocked coordinator would loop
        chats = [chat for chat in await self._coordinator_chats() if chat != record.chat_id]
        now = self._clock()
        rows = [
            NewDelivery(
                kind=DeliveryKind.NOTICE,
                key=unreachable_key(record.chat_id, chat),
                chat_id=chat,
                due_at=now,
                liaison_id=record.liaison_id,
                department_id=record.department_id,
                task_id=record.task_id,
                payload={
                    "reason": UNREACHABLE_PREFIX,
                    "chat_id": record.chat_id,
                    "delivery_id": record.id,
                    "delivery_kind": str(record.kind),
                    "error": redact(description),
                },
            )
            for chat in dict.fromkeys(chats)
        ]
        added = await self._db(ledger.enqueue, rows)
        if added:
            stats.notices += added
            self.wake()

    async def _db(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """A ledger write, retried while the database is busy (a locked SQLite file)."""
        for delay in _DB_RETRY_DELAYS:
            try:
                return await function(*args, **kwargs)
            except (OperationalError, DBConnectionError, OSError) as exc:
                log.warning("Ledger write %s failed (%s); retrying", function.__name__, exc)
                await asyncio.sleep(delay)  # real time: the database, not the injected clock
        return await function(*args, **kwargs)


async def _first_of(waiters: set[asyncio.Future[Any]], helpers: list[asyncio.Future[Any]]) -> None:
    """Wait for the first of `waiters` and `helpers`; cancel the helpers left (never awaiting
    them: swallowing their CancelledError could swallow our own task's cancellation)."""
    everything = waiters | set(helpers)
    if not everything:
        return
    try:
        await asyncio.wait(everything, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for helper in helpers:
            helper.cancel()


def _may_have_been_sent(exc: TelegramAPIError) -> bool:
    """Whether a failed try may have been delivered: a network error or timeout, unless the
    connection was never made (aiogram keeps aiohttp's error as the cause). A 5xx is an answer:
    Telegram says it did not perform the call."""
    if not isinstance(exc, TelegramNetworkError):
        return False
    return not isinstance(exc.__cause__, ClientConnectorError)


def unreachable_key(chat_id: int, coordinator_chat_id: int) -> str:
    """The notice about `chat_id` for one coordinator chat: the same key, so only ever once."""
    return f"{UNREACHABLE_PREFIX}:{chat_id}>{coordinator_chat_id}"


# -- planned sends -> ledger rows --------------------------------------------------------------


class PlannedSendLike(Protocol):
    """What the schedule planner (bot.schedule.plan_sends -> PlannedSend) yields for one send.

    `key` identifies the send whoever receives it (prompt:2026-11:task12:dept3); `send_at` is
    timezone-aware. Optional attributes: `audience` ("department" or "group"; otherwise
    escalations, summaries and sends for no department go to the group), `chat_id` (an explicit
    recipient), and any further fields (deadline, days_before, attempt, task_ids, target_ids,
    plan_id …), which are copied into the row's payload for the renderer.
    """

    @property
    def kind(self) -> str: ...
    @property
    def task_id(self) -> int | None: ...
    @property
    def department_id(self) -> int | None: ...
    @property
    def send_at(self) -> datetime: ...
    @property
    def cycle_key(self) -> str | None: ...
    @property
    def key(self) -> str: ...


# Fields of a planned send that have columns of their own (or are derived from send_at).
_COLUMNS = frozenset(
    {"kind", "key", "send_at", "local_at", "audience", "task_id", "department_id", "cycle_key"}
)


def liaison_key(key: str, liaison_id: int) -> str:
    """A department send's key for one liaison: the send's key and `:l<liaison id>`."""
    full = f"{key}:l{liaison_id}"
    if len(full) <= MAX_KEY_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:32]
    return f"{full[: MAX_KEY_LENGTH - 33]}#{digest}"


def goes_to_group(send: PlannedSendLike) -> bool:
    """Whether a planned send is for the coordination group rather than a department."""
    audience = getattr(send, "audience", None)
    if audience is not None:
        return str(audience) == "group"
    kind = DeliveryKind(str(send.kind))
    return kind in _GROUP_KINDS or send.department_id is None


def _json_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | list | set | frozenset):
        return [_json_value(item) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def planned_payload(send: PlannedSendLike) -> dict[str, Any]:
    """The planner's extra fields (not None, not empty) as JSON values, plus the planned key."""
    extra: dict[str, Any] = dict(getattr(send, "payload", None) or {})
    if is_dataclass(send):
        for item in fields(send):
            value = getattr(send, item.name)
            if item.name in _COLUMNS or item.name == "payload" or value in (None, (), []):
                continue
            extra[item.name] = _json_value(value)
    extra["planned_key"] = send.key
    return extra


def planned_deliveries(
    planned: Iterable[PlannedSendLike],
    recipients: dict[int, Sequence[Recipient]],
    coordination_chat_id: int | None,
    *,
    default_locale: str | None = None,
) -> tuple[list[NewDelivery], list[PlannedSendLike]]:
    """Rows for the ledger, and the sends nobody can receive yet.

    A department's send becomes one row per active liaison (lead first; key suffix
    `:l<liaison id>`); a group send one row for the coordination group (the key as planned).
    """
    rows: list[NewDelivery] = []
    unroutable: list[PlannedSendLike] = []
    for send in planned:
        kind = DeliveryKind(str(send.kind))
        payload = planned_payload(send)
        explicit = getattr(send, "chat_id", None)
        targets: list[tuple[str, int, int | None, str | None]]  # key, chat, liaison, locale
        if explicit is not None:
            targets = [(send.key, int(explicit), None, default_locale)]
        elif goes_to_group(send):
            targets = (
                [(send.key, coordination_chat_id, None, default_locale)]
                if coordination_chat_id is not None
                else []
            )
        else:
            targets = [
                (
                    liaison_key(send.key, person.liaison_id),
                    person.chat_id,
                    person.liaison_id,
                    person.locale or default_locale,
                )
                for person in recipients.get(send.department_id or 0, ())
            ]
        if not targets:
            unroutable.append(send)
            continue
        for key, chat_id, liaison_id, locale in targets:
            rows.append(
                NewDelivery(
                    kind=kind,
                    key=key,
                    chat_id=chat_id,
                    due_at=send.send_at,
                    liaison_id=liaison_id,
                    department_id=send.department_id,
                    task_id=send.task_id,
                    cycle_key=send.cycle_key,
                    payload={**payload, "locale": locale} if locale else dict(payload),
                )
            )
    return rows, unroutable


async def enqueue_planned(
    planned: Iterable[PlannedSendLike],
    *,
    coordination_chat_id: int | None,
    default_locale: str | None = None,
) -> int:
    """Resolve recipients (one query) and put the planned sends into the ledger; return how
    many rows are new. Running it again with the same plan adds nothing."""
    sends = list(planned)
    departments = {
        send.department_id
        for send in sends
        if send.department_id is not None
        and getattr(send, "chat_id", None) is None
        and not goes_to_group(send)
    }
    recipients = await ledger.liaison_recipients(departments)
    rows, unroutable = planned_deliveries(
        sends, recipients, coordination_chat_id, default_locale=default_locale
    )
    if unroutable:
        log.info(
            "%d planned sends have no recipient yet (no liaison bound, or no coordination "
            "group): %s",
            len(unroutable),
            ", ".join(send.key for send in unroutable[:5]),
        )
    return await ledger.enqueue(rows)
