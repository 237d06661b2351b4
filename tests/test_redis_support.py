"""The private Redis and the link proxy the Redis tests stand on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from .redis_support import LinkProxy, running_redis


async def test_a_private_redis_keeps_data_across_a_restart_only_with_aof(tmp_path: Path) -> None:
    """Never port 6379; with AOF a restart keeps the keys, without it they are gone."""
    for appendonly, kept in ((True, b"1"), (False, None)):
        with running_redis(tmp_path / str(appendonly), appendonly=appendonly) as server:
            assert server.port != 6379
            async with aioredis.Redis.from_url(server.url) as client:
                await client.set("k", "1")
            server.restart()
            async with aioredis.Redis.from_url(server.url) as client:
                assert await client.get("k") == kept


async def test_the_proxy_passes_then_blackholes_then_restores(tmp_path: Path) -> None:
    """Through the proxy commands work; blackholed they hang (no reset); restored, a new
    connection works again."""
    with running_redis(tmp_path) as server:
        proxy = LinkProxy(server.port)
        await proxy.start()
        client = aioredis.Redis.from_url(proxy.url, socket_timeout=0.5, retry_on_timeout=False)
        try:
            assert await client.ping()
            proxy.blackholed = True
            with pytest.raises(redis.exceptions.TimeoutError):
                await client.ping()
            proxy.blackholed = False
            proxy.reset_all()
            fresh = aioredis.Redis.from_url(proxy.url)
            try:
                assert await asyncio.wait_for(fresh.ping(), 5)
            finally:
                await fresh.aclose()
        finally:
            await client.aclose()
            await proxy.stop()
