"""TICKCAST_TRUSTED_PROXIES: X-Forwarded-For is believed from those peers only, so the
per-IP limit counts the clients behind a proxy, and nobody else can claim an address."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from pydantic import ValidationError

from tickcast.edge.guard import HandshakeGuard, HeadLimits, trusted_networks
from tickcast.settings import Settings, setting_errors

from ..support import ServerProcess, running_server

PROXY = "127.0.0.2"  # a trusted peer in the servers below
DIRECT = "127.0.0.1"  # an untrusted one
FORWARDED = "10.9.9.9"


def test_setting_takes_addresses_and_networks_comma_separated() -> None:
    """Entries are split on commas, trimmed, written canonically and deduplicated; empty
    (the default) trusts nobody."""
    assert Settings().trusted_proxies == []
    value = " 10.0.0.0/8, 127.0.0.1,2001:DB8::/32 ,127.0.0.1,"
    assert Settings(trusted_proxies=value).trusted_proxies == [
        "10.0.0.0/8",
        "127.0.0.1",
        "2001:db8::/32",
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.1,nginx", "'nginx' is not an IP address or network"),
        ("*", "'*' is not an IP address or network"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or network"),
        ("10.1.2.3/8", "'10.1.2.3/8' has host bits set: did you mean 10.0.0.0/8?"),
    ],
)
def test_setting_names_the_entry_that_is_not_an_address(value: str, problem: str) -> None:
    """A bad entry is an error naming the variable, the flag and that entry."""
    with pytest.raises(ValidationError) as raised:
        Settings(trusted_proxies=value)
    (error,) = setting_errors(raised.value)
    assert (error.env, error.flag) == ("TICKCAST_TRUSTED_PROXIES", "--trusted-proxies")
    assert problem in str(error)


def test_guard_trusts_only_the_listed_addresses_and_networks() -> None:
    """Addresses and networks of both families match; anything else, or anything at all
    with nothing listed, does not."""
    guard = HandshakeGuard(trusted=trusted_networks(["10.0.0.0/8", "127.0.0.1", "fd00::/8"]))
    assert guard.trusts("10.200.3.4") and guard.trusts("127.0.0.1") and guard.trusts("fd00::5")
    assert not guard.trusts("127.0.0.2")
    assert not guard.trusts("11.0.0.1")
    assert not guard.trusts("::1")
    assert not guard.trusts("")
    assert not guard.trusts("/run/tickcast.sock")
    assert not HandshakeGuard().trusts("127.0.0.1")


def test_guard_does_not_count_a_trusted_proxy_against_the_per_ip_limit() -> None:
    """A trusted peer enters any number of times, uncounted, and its leaving changes
    nothing; an untrusted peer is still held to the limit."""
    guard = HandshakeGuard(HeadLimits(), max_per_ip=1, trusted=trusted_networks(["10.0.0.1"]))
    assert all(guard.enter("10.0.0.1") for _ in range(5))
    assert guard.enter("10.0.0.2")
    assert not guard.enter("10.0.0.2")
    assert guard.in_handshake == {"10.0.0.2": 1}
    guard.leave("10.0.0.1")
    guard.leave("10.0.0.2")
    assert guard.in_handshake == {}


# -- a real server, clients on chosen source addresses ----------------------------------


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No trusted proxies (the default), one connection per address."""
    args = ["--source", "sim", "--max-connections-per-ip", "1"]
    with running_server(tmp_path_factory.mktemp("untrusting"), args) as process:
        yield process


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``PROXY`` trusted (as a network of one, beside another network), one connection
    per address, and a short head timeout."""
    args = ["--source", "sim", "--max-connections-per-ip", "1", "--handshake-timeout", "3"]
    args += ["--trusted-proxies", f"10.1.0.0/16,{PROXY}/32"]
    with running_server(tmp_path_factory.mktemp("trusting"), args) as process:
        yield process


@asynccontextmanager
async def ws_from(
    server: ServerProcess, source: str, forwarded: str | None = None
) -> AsyncIterator[websockets.ClientConnection]:
    """A WebSocket from ``source``, claiming ``forwarded`` in X-Forwarded-For."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with websockets.connect(
        server.ws_base + "/ws?symbols=BTCUSDT", additional_headers=headers, local_addr=(source, 0)
    ) as ws:
        yield ws


async def ws_status(server: ServerProcess, source: str, forwarded: str | None = None) -> int:
    """101 if a WebSocket from ``source`` is admitted, else the refusal's status."""
    try:
        async with ws_from(server, source, forwarded):
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


async def sse_status(server: ServerProcess, source: str, forwarded: str) -> int:
    """The status of an event stream requested from ``source`` (the stream is not read)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        headers = {"X-Forwarded-For": forwarded}
        async with http.stream("GET", server.base + "/sse?symbols=BTCUSDT", headers=headers) as r:
            return r.status_code


async def test_without_trusted_proxies_a_forwarded_address_is_ignored(
    untrusting: ServerProcess,
) -> None:
    """A local client that claims another address in X-Forwarded-For is still counted as
    itself: its second WebSocket and its event stream are refused (uvicorn alone would
    have believed 127.0.0.1)."""
    async with ws_from(untrusting, DIRECT):
        assert await ws_status(untrusting, DIRECT, FORWARDED) == 429
        assert await sse_status(untrusting, DIRECT, FORWARDED) == 429
        # The limit is per address: another one is welcome.
        assert await ws_status(untrusting, "127.0.0.3") == 101


async def test_a_forwarded_address_counts_only_from_a_trusted_proxy(
    trusting: ServerProcess,
) -> None:
    """From an untrusted peer X-Forwarded-For changes nothing; from the trusted proxy it
    is the address the per-IP limit counts, on /ws and /sse alike."""
    async with ws_from(trusting, DIRECT):
        assert await ws_status(trusting, DIRECT, FORWARDED) == 429
        assert await sse_status(trusting, DIRECT, FORWARDED) == 429
    async with ws_from(trusting, PROXY, FORWARDED):
        assert await ws_status(trusting, PROXY, FORWARDED) == 429
        assert await sse_status(trusting, PROXY, FORWARDED) == 429
        # Other clients behind the same proxy, and the proxy's own address, are not.
        assert await ws_status(trusting, PROXY, "10.9.9.8") == 101
        assert await sse_status(trusting, PROXY, "10.9.9.7") == 200
        assert await ws_status(trusting, PROXY) == 101


async def test_a_trusted_proxys_unfinished_heads_are_not_counted_per_ip(
    trusting: ServerProcess,
) -> None:
    """Requests still arriving from the trusted proxy do not use up its address's limit
    (every client behind it shares that address); an untrusted peer's do."""
    loop = asyncio.get_running_loop()

    async def connect(source: str) -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_connect(sock, ("127.0.0.1", trusting.port))
        return sock

    heads = [await connect(PROXY) for _ in range(3)] + [await connect(DIRECT)]
    try:
        for sock in heads:
            await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.2)
        transport = httpx.AsyncHTTPTransport(local_address=PROXY)
        async with httpx.AsyncClient(transport=transport, timeout=5) as http:
            assert (await http.get(trusting.base + "/healthz")).status_code == 200
        # The untrusted address holds its one head: refused before it sends anything.
        extra = await connect(DIRECT)
        heads.append(extra)
        reply = await asyncio.wait_for(loop.sock_recv(extra, 4096), 5)
        assert reply.startswith(b"HTTP/1.1 429 "), reply[:100]
    finally:
        for sock in heads:
            sock.close()


def test_servers_logged_no_traceback(untrusting: ServerProcess, trusting: ServerProcess) -> None:
    """None of the above made either server log a traceback."""
    assert "Traceback" not in untrusting.log() + trusting.log()


def test_start_up_refuses_an_entry_that_is_not_an_address(tmp_path: Path) -> None:
    """``serve --trusted-proxies nginx`` exits 2 with one line naming the setting."""
    process = ServerProcess(["--trusted-proxies", "nginx"], {}, tmp_path / "bad.log")
    assert process.proc.wait(20) == 2
    assert "TICKCAST_TRUSTED_PROXIES / --trusted-proxies: 'nginx'" in process.log()
    process.stop()
