"""Telegram's flood limits and injected faults."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FloodLimits:
    """Sending limits Telegram applies to one bot (see the Bot API FAQ).

    ``enforce=False`` only counts violations and lets every call through, which is how a benchmark
    measures whether a sender *would* have been throttled.
    """

    per_second: int = 30  # messages per second across all chats
    per_chat_per_second: float = 1.0  # sustained rate in one chat
    per_chat_burst: int = 3  # short bursts in one chat are tolerated
    per_group_per_minute: int = 20  # messages per minute in one group
    enforce: bool = True


@dataclass(frozen=True)
class Violation:
    """A call that exceeded a limit."""

    time: float
    method: str
    chat_id: int
    rule: str  # "global", "chat" or "group"
    retry_after: int


class FloodLimiter:
    """Token bucket per chat plus sliding windows overall and per group."""

    def __init__(self, limits: FloodLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._global: deque[float] = deque()
        self._groups: dict[int, deque[float]] = {}
        self._buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, last refill)

    def check(self, method: str, chat_id: int, is_group: bool) -> Violation | None:
        """Account one outgoing message; return the violation if it exceeds a limit.

        An enforced violation consumes nothing (the message is not sent); a counted-only one is
        charged like a sent message, so a sustained overrun keeps being reported.
        """
        now = self._clock()
        limits = self.limits
        while self._global and self._global[0] <= now - 1.0:
            self._global.popleft()
        group_log = self._groups.setdefault(chat_id, deque()) if is_group else None
        if group_log is not None:
            while group_log and group_log[0] <= now - 60.0:
                group_log.popleft()
        tokens, last = self._buckets.get(chat_id, (float(limits.per_chat_burst), now))
        tokens = min(
            float(limits.per_chat_burst), tokens + (now - last) * limits.per_chat_per_second
        )

        violation: Violation | None = None
        if len(self._global) >= limits.per_second:
            wait = self._global[len(self._global) - limits.per_second] + 1.0 - now
            violation = Violation(now, method, chat_id, "global", _ceil(wait))
        elif group_log is not None and len(group_log) >= limits.per_group_per_minute:
            wait = group_log[len(group_log) - limits.per_group_per_minute] + 60.0 - now
            violation = Violation(now, method, chat_id, "group", _ceil(wait))
        elif tokens < 1.0:
            wait = (1.0 - tokens) / limits.per_chat_per_second
            violation = Violation(now, method, chat_id, "chat", _ceil(wait))

        if violation is None or not limits.enforce:
            tokens -= 1.0
            self._global.append(now)
            if group_log is not None:
                group_log.append(now)
        self._buckets[chat_id] = (tokens, now)
        return violation


def _ceil(seconds: float) -> int:
    # Telegram never answers retry_after 0.
    return max(1, math.ceil(seconds - 1e-9))


FAULT_KINDS = ("429", "5xx", "timeout", "drop")


@dataclass
class Fault:
    """One planned failure for calls of ``method`` (None = any non-polling method)."""

    method: str | None
    kind: str  # "http" (status/description), "timeout" (hang, then drop) or "drop"
    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    count: int = 1
    hang: float = 0.0
    deliver: bool = False  # perform the call, then fail: the client cannot know it succeeded


@dataclass(frozen=True)
class FaultRecord:
    """A fault that was actually injected."""

    time: float
    method: str
    kind: str
    status: int | None
    delivered: bool


@dataclass
class Chaos:
    """Random faults: each eligible call fails with probability ``rate``, seeded for replay."""

    rate: float
    kinds: tuple[str, ...]
    seed: int | None
    methods: frozenset[str] | None  # lower-case names; None = every sending method
    retry_after: int = 1
    hang: float = 0.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown chaos kinds {sorted(unknown)}; use {FAULT_KINDS}")
        self.rng = random.Random(self.seed)

    def draw(self, method: str, exempt: Iterable[str]) -> Fault | None:
        """Decide the fate of one call; the draw order makes a seeded run reproducible."""
        name = method.lower()
        if self.methods is None:
            if name in exempt:
                return None
        elif name not in self.methods:
            return None
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        if kind == "429":
            return Fault(
                method,
                "http",
                429,
                f"Too Many Requests: retry after {self.retry_after}",
                self.retry_after,
            )
        if kind == "5xx":
            status = self.rng.choice((500, 502))
            text = "Internal Server Error" if status == 500 else "Bad Gateway"
            return Fault(method, "http", status, text)
        return Fault(method, kind, hang=self.hang if kind == "timeout" else 0.0)
