"""``auto`` offline: an upstream that cannot be reached gets no grace, one that answers
does; ``/status`` never says ``binance`` without a live connection; connect failures are
logged each at first, then once per interval with a count."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidMessage, InvalidURI

from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest
from tickcast.messages.tick import Tick
from tickcast.settings import Settings
from tickcast.sim.exchange import SimConfig, SimExchange
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.binance import BinanceClient, ClientOptions, never_connected
from tickcast.upstream.sources import AutoSource

from ..support import ServerProcess, eventually, free_port
from .scripted import ScriptedExchange, in_thread

# The issue asks for prices within about 2 s of start-up; the machine is shared.
UNREACHABLE_BOUND = 4.0
Upstream = Callable[[], contextlib.AbstractContextManager[str]]
SUMMARY_LINE = "still failing"
FAILED_TEXT = re.compile(r"upstream connect to \S+ failed: .*", re.DOTALL)


@contextlib.contextmanager
def server(tmp_path: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    """``tickcast serve`` (default source ``auto``), up but not necessarily serving data."""
    proc = ServerProcess([], env, tmp_path / "server.log")
    try:
        proc.wait_ready("/healthz")
        yield proc
    finally:
        proc.stop()


def wait_for_price(proc: ServerProcess, timeout: float) -> tuple[float, set[object]]:
    """Seconds until /price answers 200, and every /status "source" seen meanwhile."""
    started = time.monotonic()
    seen: set[object] = set()
    while time.monotonic() - started < timeout:
        seen.add(proc.status()["source"])
        if proc.get("/price").status_code == 200:
            return time.monotonic() - started, seen
        time.sleep(0.05)
    raise AssertionError(f"no /price within {timeout}s:\n{proc.log()}")


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    yield f"ws://127.0.0.1:{free_port()}"


@contextlib.contextmanager
def unresolvable() -> Iterator[str]:
    yield "ws://nonexistent.invalid"


@contextlib.contextmanager
def no_handshake() -> Iterator[str]:
    """A listener that never accepts: the kernel completes TCP, nobody answers HTTP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def no_data() -> Iterator[str]:
    """A WebSocket server that acks SUBSCRIBE and then sends nothing."""
    with in_thread(ScriptedExchange()) as exchange:
        yield exchange.url


@pytest.mark.parametrize("upstream", [unresolvable, closed_port], ids=["dns", "refused"])
def test_unreachable_live_serves_sim_at_once(tmp_path: Path, upstream: Upstream) -> None:
    """A live URL whose name does not resolve or whose port refuses: /price serves
    simulated data within ~2 s of the server being up (default 8 s grace), /status says
    sim (never binance), and the first connect failures are logged one line each."""
    with upstream() as url, server(tmp_path, {"TICKCAST_BINANCE_URL": url}) as proc:
        elapsed, seen = wait_for_price(proc, timeout=10)
        assert elapsed < UNREACHABLE_BOUND, (elapsed, proc.log())
        assert "binance" not in seen, seen
        assert proc.get("/price").json()["source"] == "sim"
        status = proc.status()
        assert status["source"] == "sim" and status["simulated"] is True
        upstream_status = status["upstream"]
        assert isinstance(upstream_status, dict)
        detail = upstream_status["detail"]
        assert detail["fallbacks"] == 1
        failures = detail["live"]["counters"]["connect_failures"]
        log = proc.log()
        assert "live upstream unreachable" in log
        lines = re.findall(r"upstream connect to \S+ failed: ", log)
        # Each one so far on a line of its own (the server's burst limit is 5 per kind).
        assert len(lines) >= min(failures, 5) >= 1, log
        assert SUMMARY_LINE not in log


@pytest.mark.parametrize("upstream", [no_handshake, no_data], ids=["no-handshake", "no-data"])
def test_live_that_answers_but_is_silent_gets_the_grace(tmp_path: Path, upstream: Upstream) -> None:
    """A live server that accepts the connection but never answers the handshake, or never
    sends data: simulated data only after TICKCAST_AUTO_GRACE, and /status never says
    binance while no live data is served."""
    grace = 3.0
    with upstream() as url:
        env = {"TICKCAST_BINANCE_URL": url, "TICKCAST_AUTO_GRACE": str(grace)}
        with server(tmp_path, env) as proc:
            elapsed, seen = wait_for_price(proc, timeout=grace + 8)
            # The source starts just before /healthz first answers; 1 s covers the gap.
            assert elapsed >= grace - 1.0, (elapsed, proc.log())
            assert seen <= {None, "sim"}, seen
            assert proc.status()["source"] == "sim"
            assert f"no live data for {grace:g}s" in proc.log()
            assert "unreachable" not in proc.log()


async def test_auto_label_follows_what_clients_get() -> None:
    """auto with live refused: sim at once; live comes up: binance; live goes away:
    neither (no live connection), then sim again after the grace."""
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        source="auto",
        binance_url=f"ws://127.0.0.1:{port}",
        auto_grace=1.5,
        sim_rate=10,
        backoff_initial=0.05,
        backoff_max=0.2,
        symbols=["BTCUSDT"],
    )
    hub = MemoryHub(100)
    ticks: list[Tick] = []
    hub.subscribe(ticks.append)
    source = AutoSource(settings, Ingest(hub, settings.symbols).apply)
    labels: list[object] = []
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: ticks and ticks[-1].source == "sim", timeout=10)
        assert source.label == "sim" and source.status()["source"] == "sim"
        assert "unreachable" in str(source.fallback_reason)
        live = SimExchange(SimConfig(port=port, rate=10, seed=5, identify=False))
        await live.start()
        try:
            await eventually(lambda: ticks[-1].source == "binance", timeout=10)
            assert source.status()["source"] == "binance"
        finally:
            await live.stop()

        def record() -> bool:
            labels.append(source.label)
            return source.label == "sim"

        await eventually(record, timeout=10, interval=0.02)
        assert None in labels  # between live lost and the grace's end
        assert labels.index(None) < labels.index("sim")
        assert "binance" not in labels[labels.index(None) :]
        assert source.fallbacks == 2
        assert source.fallback_reason == "no live data for 1.5s"
    finally:
        await cancel_and_wait(task)


class Recorder(logging.Handler):
    """Every record of the logger it is attached to: independent of pytest's log capture,
    which another test in the same worker may have reconfigured (uvicorn's dictConfig)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_connect_failures_are_logged_each_then_summarized() -> None:
    """Against a refused port: one line per failure while the backoff grows (3 steps +
    the first attempt), then at most one line per interval counting the failures since."""
    interval = 0.4
    options = ClientOptions(backoff_initial=0.02, backoff_max=0.08, failure_log_interval=interval)
    url = f"ws://127.0.0.1:{free_port()}"
    client = BinanceClient(url, ["btcusdt@ticker"], lambda _u: None, options=options)
    logger = logging.getLogger("tickcast.upstream.binance")
    recorder, level, disabled = Recorder(), logger.level, logger.disabled
    logger.addHandler(recorder)
    logger.setLevel(logging.WARNING)
    logger.disabled = False
    task = asyncio.create_task(client.run())
    try:
        await eventually(lambda: client.counters["connect_failures"] >= 40, timeout=10)
        await asyncio.sleep(interval * 2)
    finally:
        await cancel_and_wait(task)
        logger.removeHandler(recorder)
        logger.setLevel(level)
        logger.disabled = disabled
    failures = client.counters["connect_failures"]
    records = [r for r in recorder.records if "upstream connect to" in r.getMessage()]
    # By the text, not ``r.msg``: a redacting handler of the server's logging, installed
    # by another test in the worker, replaces a record's template with its text.
    single = [r for r in records if FAILED_TEXT.fullmatch(r.getMessage())]
    summaries = [r for r in records if SUMMARY_LINE in r.getMessage()]
    assert len(single) == 4
    assert records[:4] == single and records[4:] == summaries
    assert summaries, failures
    stamps = [r.created for r in records[3:]]
    assert all(b - a >= interval - 0.02 for a, b in zip(stamps, stamps[1:], strict=False))
    counted = [int(re.findall(r": (\d+) failed attempts", r.getMessage())[0]) for r in summaries]
    assert sum(counted) > len(counted)  # several failures per interval, each line counts them
    assert 4 + sum(counted) <= failures
    assert client.failure_log.streak == failures


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (socket.gaierror(-2, "Name or service not known"), True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), True),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), True),
        (OSError("Multiple exceptions: [Errno 101] ..., [Errno 101] ..."), True),
        (InvalidURI("nope", "not a WebSocket URI"), True),
        (TimeoutError("timed out during opening handshake"), False),
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), False),
        (InvalidMessage("did not receive a valid HTTP response"), False),
    ],
)
def test_never_connected_tells_unreachable_from_slow(exc: BaseException, expected: bool) -> None:
    """Only failures that reached no server at all skip the grace."""
    assert never_connected(exc) is expected
