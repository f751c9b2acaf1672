"""One person's updates one at a time, across processes, with a lock a dead process cannot hold.

aiogram's `RedisEventIsolation` takes a Redis lock per chat and user that expires after 60 s:
a process killed during a handler (kill -9, OOM, power) left that lock behind, and the person's
next press waited up to a minute for it. Here the lock expires after `LOCK_TIMEOUT` seconds and
the process holding it renews it every third of that while the handler runs: a live handler
keeps it however long it takes (a chart, a slow Bot API), a dead one releases it within
`LOCK_TIMEOUT` seconds. 5 s is well above one renewal round trip to Redis under load, and short
enough that nobody waits long behind a crashed process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager, suppress

from aiogram.fsm.storage.base import KeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisEventIsolation
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 5.0  # seconds a lock outlives the process that took it


class RenewedRedisEventIsolation(RedisEventIsolation):
    """`RedisEventIsolation` with a short lock timeout, renewed while the handler runs."""

    def __init__(
        self,
        redis: Redis,
        key_builder: KeyBuilder | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        super().__init__(redis, key_builder, lock_kwargs={"timeout": lock_timeout})
        self.lock_timeout = lock_timeout

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = self.key_builder.build(key, "lock")
        lock = self.redis.lock(name=name, timeout=self.lock_timeout)
        async with lock:
            renewal = asyncio.create_task(self._renew(lock))
            try:
                yield None
            finally:
                renewal.cancel()
                with suppress(asyncio.CancelledError):
                    await renewal

    async def _renew(self, lock: Lock) -> None:
        while True:
            await asyncio.sleep(self.lock_timeout / 3)
            try:
                await lock.reacquire()
            except (LockError, RedisError) as exc:  # Redis away: the lock may lapse, say so
                log.warning("Could not renew an events isolation lock: %s", exc)
                return
