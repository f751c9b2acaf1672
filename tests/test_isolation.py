"""The Redis events isolation lock: short-lived, renewed while its handler runs."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey

from bot.isolation import RenewedRedisEventIsolation

KEY = StorageKey(bot_id=1, chat_id=2, user_id=2)


async def test_a_long_handler_keeps_its_lock_and_a_dead_one_loses_it_quickly(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    isolation = RenewedRedisEventIsolation(client, DefaultKeyBuilder(prefix="t"), lock_timeout=1.0)
    name = DefaultKeyBuilder(prefix="t").build(KEY, "lock")
    try:
        async with isolation.lock(KEY):
            await asyncio.sleep(2.5)  # longer than the lock's timeout: renewed meanwhile
            assert await client.exists(name)
            intruder = client.lock(name, timeout=5, blocking_timeout=0.1)
            assert not await intruder.acquire()  # still held by the running handler
        assert not await client.exists(name)  # released at the end

        # A process that dies holding the lock stops renewing it: it lapses by itself.
        orphan = client.lock(name, timeout=isolation.lock_timeout)
        assert await orphan.acquire()
        async with asyncio.timeout(10):
            async with isolation.lock(KEY):
                pass
    finally:
        await client.aclose()
