"""Poison frames through a real WebSocket into a real ``tickcast serve`` (default ``auto``
source): every bad frame is counted by kind and skipped, and the feed never stops."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import orjson
import pytest

from ..support import ServerProcess, running_server
from .scripted import ScriptedExchange, in_thread

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def ticker(symbol: str, price: str, event_ms: int) -> dict[str, object]:
    return {
        "e": "24hrTicker", "E": event_ms, "s": symbol, "p": "10.5", "P": "0.02",
        "w": "60000", "x": "59990", "c": price, "Q": "0.1", "b": price, "B": "1",
        "a": price, "A": "2", "o": "59990", "h": "61000", "l": "59000", "v": "1000",
        "q": "60000000", "O": event_ms - 86_400_000, "C": event_ms, "F": 1, "L": 2, "n": 2,
    }  # fmt: skip


def mini(symbol: str, close: str, open_: str, event_ms: int) -> dict[str, object]:
    return {
        "e": "24hrMiniTicker", "E": event_ms, "s": symbol, "c": close, "o": open_,
        "h": close, "l": open_, "v": "1", "q": "1",
    }  # fmt: skip


def wrap(data: object, stream: str = "btcusdt@ticker") -> str:
    return orjson.dumps({"stream": stream, "data": data}).decode()


def poison_frames(event_ms: int) -> list[str | bytes]:
    """Frames that once stopped the feed, broke the JSON sent to clients, or must be refused."""
    t = ticker("BTCUSDT", "60000.5", event_ms)
    tiny = "0." + "0" * 37 + "1"
    return [
        # The example: the percent change overflowed the decimal context.
        wrap(
            mini("BTCUSDT", "100000000000000000000", "0.00000001", event_ms), "btcusdt@miniTicker"
        ),
        wrap(mini("BTCUSDT", "9" * 40, tiny, event_ms), "btcusdt@miniTicker"),
        wrap({**t, "c": tiny}),
        wrap({**t, "c": "9" * 5000}),
        wrap({**t, "c": "NaN"}),
        wrap({**t, "c": "Infinity"}),
        wrap({**t, "c": "-Infinity"}),
        wrap({**t, "c": "1e5"}),
        wrap({**t, "c": "1E-7"}),
        wrap({**t, "c": ""}),
        wrap({**t, "c": None}),
        wrap({**t, "c": 60000.5}),
        wrap({**t, "c": True}),
        wrap({**t, "c": ["1"]}),
        wrap({**t, "b": "\u0661\u0662"}),  # Arabic-Indic digits
        wrap({**t, "c": "\uff16\uff10\uff10\uff10\uff10"}),  # fullwidth digits
        wrap({k: v for k, v in t.items() if k != "c"}),
        wrap({**t, "E": "soon"}),
        wrap({**t, "E": 2**62}),
        wrap({**t, "E": None}),
        wrap({**t, "s": 7}),
        wrap({**t, "s": "\uff22\uff34\uff23\uff35\uff33\uff24\uff34"}),
        wrap({"u": "x", "s": "BTCUSDT", "b": "1", "a": "2"}, "btcusdt@bookTicker"),
        wrap([1, 2]),
        '{"stream":"btcusdt@ticker","data":',
        b"\xff\xfe\x00 not UTF-8",
        "null",
        "[]",
        "{}",
    ]


class Script:
    """Per step: a good ticker for each symbol, then the next poison frame."""

    def __init__(self) -> None:
        self.last_ms = 0
        self.price = 60000

    def __call__(self, step: int) -> list[str | bytes]:
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        self.price += 1
        good: list[str | bytes] = [
            wrap(ticker(symbol, f"{self.price}.5", self.last_ms), f"{symbol.lower()}@ticker")
            for symbol in SYMBOLS
        ]
        poison = poison_frames(self.last_ms)
        return [*good, poison[step % len(poison)]]


@pytest.fixture(scope="module")
def poisoned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, ScriptedExchange]]:
    """``tickcast serve`` (source auto) reading a live feed laced with poison frames."""
    exchange = ScriptedExchange(Script(), interval=0.02)
    with in_thread(exchange):
        env = {"TICKCAST_BINANCE_URL": exchange.url, "TICKCAST_AUTO_GRACE": "60"}
        args = ["--symbols", ",".join(SYMBOLS)]
        with running_server(tmp_path_factory.mktemp("poison"), args, env) as server:
            yield server, exchange


def test_poison_frames_are_counted_and_the_feed_continues(
    poisoned: tuple[ServerProcess, ScriptedExchange],
) -> None:
    """Through every poison frame, /price stays valid JSON and fresh, the upstream stays
    connected on its first connection, and /status counts the skipped frames by kind."""
    server, exchange = poisoned
    cycle = len(poison_frames(0))
    start_frames = exchange.frames_sent
    seqs = []
    deadline = time.monotonic() + 15
    # Three full cycles of every poison frame, at least.
    while exchange.frames_sent < start_frames + 3 * 3 * cycle and time.monotonic() < deadline:
        raw = server.get("/price").content
        tick = orjson.loads(raw)  # a non-ASCII digit once made this invalid JSON
        seqs.append(tick["seq"])
        time.sleep(0.1)
    tick = orjson.loads(server.get("/price").content)
    assert time.time() - tick["timestamp_ms"] / 1000 < 2.0, tick
    assert tick["seq"] > seqs[0]
    assert server.proc.poll() is None
    assert exchange.connections_total == 1  # a bad frame never costs the connection
    status = server.status()
    assert status["source"] == "binance"
    assert status["simulated"] is False
    upstream = status["upstream"]
    assert isinstance(upstream, dict)
    assert upstream["state"] == "connected"
    errors = upstream["parse_errors"]
    assert {"bad_value", "missing_field", "invalid_json", "not_object", "unknown_event"} <= set(
        errors
    ), errors
    assert "parser_error" not in errors, errors  # every poison frame has a named kind
    price = orjson.loads(server.get("/price", params={"symbol": "ETHUSDT"}).content)
    assert time.time() - price["timestamp_ms"] / 1000 < 2.0


def test_metrics_show_parse_errors_state_since_and_message_age(
    poisoned: tuple[ServerProcess, ScriptedExchange],
) -> None:
    """/metrics has parse errors by kind under the default source, when the upstream state
    began, and the age of the last upstream message."""
    server, _exchange = poisoned
    text = server.get("/metrics").text
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(samples['tickcast_upstream_parse_errors_total{kind="bad_value"}']) > 0
    since = float(samples["tickcast_upstream_state_since_seconds"])
    assert time.time() - 60 < since <= time.time()
    assert 0 <= float(samples["tickcast_upstream_last_message_age_seconds"]) < 2.0
    assert re.search(r"^# TYPE tickcast_upstream_last_message_age_seconds gauge$", text, re.M)
