"""The JWKS fetcher against a real HTTP server on loopback, and a file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tickcast.edge.jwks import JwksFetcher, JwksKeys

from .tokenkit import ec_key, jwks, rsa_key


class JwksServer:
    """Answers every request with ``document`` (200), until stopped."""

    def __init__(self) -> None:
        self.document = jwks(rsa_key())
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/jwks.json?key=not-for-logs"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        head = (
            f"HTTP/1.1 200 OK\r\ncontent-length: {len(self.document)}\r\nconnection: close\r\n\r\n"
        )
        writer.write(head.encode() + self.document)
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_keys_come_from_the_url_and_survive_it_going_down(
    jwks_server: JwksServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Loaded from the URL; a key rotated in is found by a refetch; with the URL down the
    keys held stay, /status's view says stale, and the log names neither query nor key."""
    keys = JwksKeys(jwks_server.url)
    fetcher = JwksFetcher(keys)
    async with httpx.AsyncClient(timeout=2) as client:
        await fetcher.fetch(client)
        assert keys.key_for(rsa_key().kid) is not None
        assert keys.status()["state"] == "ok"
        jwks_server.document = jwks(rsa_key(), ec_key())
        await fetcher.fetch(client)
        assert keys.key_for(ec_key().kid) is not None
        await jwks_server.stop()
        await fetcher.fetch(client)
    status = keys.status()
    assert status["state"] == "stale" and status["keys"] == 2
    assert status["error"] == "ConnectError"
    assert keys.key_for(ec_key().kid) is not None
    assert "not-for-logs" not in caplog.text and "JWKS" in caplog.text


async def test_the_fetcher_task_refetches_when_cued(jwks_server: JwksServer) -> None:
    """``run`` loads at once, then again only when a miss cues it."""
    keys = JwksKeys(jwks_server.url, clock=lambda: 0.0)
    task = asyncio.create_task(JwksFetcher(keys, poll=0.01).run())
    try:
        for _ in range(200):
            if keys.loaded_at is not None:
                break
            await asyncio.sleep(0.01)
        assert jwks_server.requests == 1
        await asyncio.sleep(0.05)
        assert jwks_server.requests == 1
        keys.wanted = True
        for _ in range(200):
            if jwks_server.requests == 2:
                break
            await asyncio.sleep(0.01)
        assert jwks_server.requests == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_jwks_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(ec_key()))
    keys = JwksKeys(str(path))
    async with httpx.AsyncClient() as client:
        await JwksFetcher(keys).fetch(client)
    assert keys.key_for(None) is not None  # the only key, for a token naming none
    path.write_text("not json")
    async with httpx.AsyncClient() as client:
        await JwksFetcher(keys).fetch(client)
    assert keys.status()["state"] == "stale" and keys.key_for(ec_key().kid) is not None
