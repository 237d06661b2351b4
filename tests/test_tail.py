"""tickcast tail: the pure table state, and the live client against a real server."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console

from tickcast.tail import TailState, run_tail, sse_url, websocket_url

from .support import running_server


def tick(symbol: str, price: float, seq: int, change: float = 1.5) -> dict[str, object]:
    return {
        "type": "tick", "symbol": symbol, "last_price": price, "change_percent": change,
        "timestamp_ms": 1, "high": 2, "low": 1, "volume": 10, "seq": seq, "source": "sim",
    }  # fmt: skip


def rendered(state: TailState) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(state.view())
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def test_ticks_fill_rows_and_colour_the_last_move() -> None:
    """Each symbol gets a row; the price is green after a rise, red after a fall."""
    state = TailState()
    state.apply(tick("BTCUSDT", 100.0, 1))
    state.apply(tick("ETHUSDT", 10.0, 2, change=-2))
    state.apply(tick("BTCUSDT", 101.0, 3))
    state.apply(tick("ETHUSDT", 9.5, 4, change=-2))
    table = state.render()
    assert table.row_count == 2
    assert state.direction == {"BTCUSDT": 1, "ETHUSDT": -1}
    price_cells = list(table.columns[1].cells)
    assert [c.style for c in price_cells] == ["green", "red"]  # type: ignore[union-attr]
    change_cells = list(table.columns[2].cells)
    assert [c.style for c in change_cells] == ["green", "red"]  # type: ignore[union-attr]
    assert state.received == 4


def test_status_reset_error_and_unknown_messages() -> None:
    """status updates the title, reset loads a snapshot, error is shown, others ignored."""
    state = TailState()
    state.apply({"type": "status", "upstream": "reconnecting", "source": "sim"})
    state.apply({"type": "reset", "ticks": [tick("SOLUSDT", 150.0, 9)]})
    state.apply({"type": "mystery"})
    state.apply({"type": "error", "code": "unknown_symbol", "message": "not served: X"})
    text = rendered(state)
    assert "upstream reconnecting" in text
    assert "SIMULATED DATA" in text
    assert "SOLUSDT" in text
    assert "unknown_symbol: not served: X" in text


def test_seed_style_messages_without_type_are_ticks() -> None:
    """A plain {symbol, last_price, ...} object (the seed server's shape) is a tick."""
    state = TailState()
    state.apply({"symbol": "BTCUSDT", "last_price": 1, "change_percent": 0, "timestamp_ms": 1})
    assert "BTCUSDT" in state.ticks


def test_urls() -> None:
    """The base URL maps to /ws (with status) and /sse, symbols passed along."""
    assert websocket_url("http://h:1/", ["A", "B"]) == "ws://h:1/ws?status=1&symbols=A,B"
    assert websocket_url("https://h", []) == "wss://h/ws?status=1"
    assert sse_url("http://h:1", ["A"]) == "http://h:1/sse?symbols=A"


async def test_tail_shows_live_prices_over_ws_and_sse(tmp_path: Path) -> None:
    """Against a real server, both transports fill the table within a few seconds."""
    with running_server(tmp_path, ["--source", "sim"], {"TICKCAST_SIM_RATE": "5"}) as server:
        for use_sse in (False, True):
            out = io.StringIO()
            console = Console(file=out, width=120, color_system=None, force_terminal=False)
            await run_tail(
                server.base, ["BTCUSDT", "ETHUSDT"], use_sse, console=console, max_seconds=2.5
            )
            text = out.getvalue()
            assert "BTCUSDT" in text
            assert "ETHUSDT" in text
            assert "SIMULATED DATA" in text


async def test_tail_keeps_retrying_when_the_server_is_down() -> None:
    """No server: tail shows it is reconnecting and stops cleanly at max_seconds."""
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    await asyncio.wait_for(
        run_tail("http://127.0.0.1:9", [], False, console=console, max_seconds=1.5), 5
    )
    assert "reconnecting" in out.getvalue()
