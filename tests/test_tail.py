"""tickcast tail: the pure table state, line formats, protocol helpers and failure lines,
then the driver over loopback. The CLI as a process: test_tail_cli.py."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tickcast.tail import OutputClosed, OutputFormat, run_tail
from tickcast.tail.failures import Problem, ServerRefused, describe_failure
from tickcast.tail.formatting import (
    MISSING,
    format_percent,
    format_price,
    format_spread,
    format_volume,
    sparkline,
)
from tickcast.tail.lines import LineView, TickLines, plain_line, simulated_data
from tickcast.tail.protocol import (
    SseEvent,
    SseParser,
    decode_message,
    server_label,
    sse_message,
    sse_url,
    websocket_url,
)
from tickcast.tail.subscription import Subscription, named_symbols, refusal_code
from tickcast.tail.table import COLUMNS, DOWN_STYLE, UP_STYLE, TailState, fit_columns
from tickcast.tail.view import ConnectionState

from .support import running_server


def tick(symbol: str, price: object, seq: int = 1, change: object = 1.5) -> dict[str, object]:
    return {
        "type": "tick", "symbol": symbol, "last_price": price, "change_percent": change,
        "timestamp_ms": 1_700_000_000_000, "change": 1, "open": price, "high": 70000.25,
        "low": 0.5, "volume": 12345.678, "quote_volume": 1, "bid": price, "ask": price,
        "seq": seq, "source": "binance",
    }  # fmt: skip


def cells(table: Table, header: str) -> list[Text]:
    column = next(c for c in table.columns if c.header == header)
    found = list(column.cells)
    assert all(isinstance(cell, Text) for cell in found)
    return found  # type: ignore[return-value]


def text_of(table: Table) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(table)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


# ---------------------------------------------------------------------- TailState


def test_ticks_make_one_row_per_symbol_in_arrival_order() -> None:
    """Each symbol gets one row, kept in the order symbols first appeared."""
    state = TailState()
    for n, (symbol, price) in enumerate([("ETHUSDT", 3000), ("BTCUSDT", 60000), ("ETHUSDT", 1)]):
        state.apply(tick(symbol, price, seq=n))
    table = state.render()
    assert table.row_count == 2
    assert [c.plain for c in cells(table, "Symbol")] == ["ETHUSDT", "BTCUSDT"]
    assert state.tick_count == 3


def test_price_colour_follows_the_last_change() -> None:
    """A rise colours the price green, a fall red, and an unchanged tick keeps the colour."""
    state = TailState()
    state.apply(tick("BTCUSDT", 100.0))
    assert cells(state.render(), "Price")[0].style == ""
    state.apply(tick("BTCUSDT", 101.5))
    assert cells(state.render(), "Price")[0].style == UP_STYLE
    state.apply(tick("BTCUSDT", 101.5))
    assert cells(state.render(), "Price")[0].style == UP_STYLE
    state.apply(tick("BTCUSDT", 99))
    assert cells(state.render(), "Price")[0].style == DOWN_STYLE
    assert state.rows["BTCUSDT"].previous_price == Decimal("101.5")


def test_change_percent_is_coloured_by_sign() -> None:
    """24h change is green above zero, red below, plain at zero, and printed signed."""
    state = TailState()
    state.apply(tick("AUSDT", 1, change=2.5))
    state.apply(tick("BUSDT", 1, change=-0.75))
    state.apply(tick("CUSDT", 1, change=0))
    changes = cells(state.render(), "Change")
    assert [c.plain for c in changes] == ["+2.50%", "-0.75%", "+0.00%"]
    assert [c.style for c in changes] == [UP_STYLE, DOWN_STYLE, ""]


def test_row_shows_high_low_volume_and_trend() -> None:
    """High and low are prices at the symbol's decimals, volume is compact, trend is a
    sparkline of recent prices."""
    state = TailState()
    for n, price in enumerate([1, 2, 3, 2]):
        state.apply(tick("XUSDT", price, seq=n))
    table = state.render()
    assert cells(table, "High")[0].plain == "70,000.25"
    assert cells(table, "Low")[0].plain == "0.50"
    assert cells(table, "Volume")[0].plain == "12.35K"
    assert cells(table, "Trend")[0].plain == "▁▅█▅"


def test_untyped_message_with_symbol_and_price_is_a_tick() -> None:
    """The seed server's shape, {symbol, last_price, ...} without type, is a tick."""
    state = TailState()
    state.apply({"symbol": "btcusdt", "last_price": 1, "change_percent": 0, "timestamp_ms": 1})
    assert "BTCUSDT" in state.rows
    assert state.ignored_count == 0


def test_unknown_and_malformed_messages_are_ignored_and_counted() -> None:
    """Unknown types and ticks without a symbol or a numeric price change nothing but a count."""
    state = TailState()
    state.apply({"type": "mystery", "symbol": "BTCUSDT", "last_price": 1})
    state.apply({"type": "tick", "last_price": 1})
    state.apply({"type": "tick", "symbol": "BTCUSDT", "last_price": "not a number"})
    state.apply({"type": "tick", "symbol": "BTCUSDT", "last_price": True})
    state.apply({"no": "type"})
    state.apply({"type": "ack", "id": 1, "op": "subscribe", "symbols": ["BTCUSDT"]})
    state.apply({"type": "pong"})
    assert state.rows == {}
    assert state.tick_count == 0
    assert state.ignored_count == 5


def test_status_sets_upstream_and_source_in_the_title() -> None:
    """A status message shows the upstream state and source; sim gets a SIMULATED marker."""
    state = TailState()
    state.set_connection(ConnectionState.CONNECTED)
    state.apply({"type": "status", "upstream": "reconnecting", "source": "sim", "since": 1})
    output = text_of(state.render())
    assert "● connected" in output
    assert "upstream: reconnecting" in output
    assert "source: sim" in output
    assert "SIMULATED DATA" in output


def test_live_source_has_no_simulated_marker() -> None:
    """Ticks from binance show their source without the SIMULATED marker."""
    state = TailState()
    state.apply(tick("BTCUSDT", 1))
    output = text_of(state.render())
    assert "source: binance" in output
    assert "SIMULATED" not in output


def test_tick_source_overrides_status_source() -> None:
    """The newest tick's source wins, so a switch from sim to live clears the marker."""
    state = TailState()
    state.apply({"type": "status", "upstream": "connected", "source": "sim"})
    state.apply(tick("BTCUSDT", 1))
    assert state.source == "binance"


def test_sse_reset_replaces_row_values_from_the_snapshot() -> None:
    """An SSE reset event loads every tick of its snapshot into the rows."""
    state = TailState()
    state.apply(tick("BTCUSDT", 100))
    state.apply({"type": "reset", "last_seq": 9, "ticks": [tick("BTCUSDT", 90), tick("E", 5)]})
    assert [c.plain for c in cells(state.render(), "Price")] == ["90.00", "5.00"]
    assert state.rows["BTCUSDT"].direction == -1
    state.apply({"type": "reset", "ticks": "garbage"})
    assert state.ignored_count == 1


def test_error_reply_is_shown_in_the_caption() -> None:
    """An error message's text appears under the table."""
    state = TailState()
    state.apply({"type": "error", "id": 1, "code": "unknown_symbol", "message": "FOO not served"})
    assert "server: FOO not served" in text_of(state.render())


def test_reconnecting_shows_the_countdown_and_forgets_the_upstream() -> None:
    """While reconnecting the title counts down, and the server's upstream state is dropped."""
    state = TailState()
    state.apply({"type": "status", "upstream": "connected", "source": "binance"})
    state.set_connection(ConnectionState.RECONNECTING, retry_in=2.2)
    state.note_problem(Problem("server unreachable at http://h:1: is it running?"), 3.0)
    output = text_of(state.render())
    assert "reconnecting in 3s" in output
    assert "upstream" not in output
    assert "server unreachable at http://h:1: is it running?" in output
    assert "1 reconnects" in output
    state.set_connection(ConnectionState.CONNECTED)
    assert state.last_error is None


def test_a_narrow_table_drops_columns_and_keeps_prices_whole() -> None:
    """Columns that do not fit go from the end of the priority order; the ones shown keep
    every digit, and symbol, price and change stay even when nothing else fits."""
    state = TailState()
    state.apply(tick("BTCUSDT", Decimal("59945.22345678"), change=Decimal("0.81")))
    state.apply(tick("ETHUSDT", Decimal("3000.5"), change=Decimal("-1.5")))
    now = 1_700_000_001_500

    def headers(width: int) -> list[str]:
        return [str(c.header) for c in state.render(width, now_ms=now).columns]

    assert headers(60) == ["Symbol", "Price", "Change", "Bid"]
    assert headers(160) == list(COLUMNS)
    assert headers(20) == ["Symbol", "Price", "Change"]
    for width in (60, 160):
        console = Console(file=io.StringIO(), width=width, color_system=None)
        console.print(state.render(width, now_ms=now))
        output = console.file.getvalue()  # type: ignore[attr-defined]
        assert "59,945.22345678" in output
        assert "+0.81%" in output
        assert max(len(line) for line in output.splitlines()) <= width
    assert cells(state.render(160, now_ms=now), "Age")[0].plain == "1.5s"
    assert "Age" not in [str(c.header) for c in state.render().columns]  # no clock, no age


def test_fit_columns_counts_borders_and_padding() -> None:
    """Each column costs its width plus 3 cells, the table 1 more; the first three always
    count as fitting."""
    assert fit_columns([5, 5, 5, 5], None) == 4
    assert fit_columns([5, 5, 5, 5], 33) == 4  # 1 + 4 * 8
    assert fit_columns([5, 5, 5, 5], 32) == 3
    assert fit_columns([5, 5, 5, 5], 5) == 3


# ---------------------------------------------------------------------- one line per tick


def test_plain_line_has_fixed_fields_and_every_digit() -> None:
    """time symbol price change bid ask: UTC milliseconds, prices unrounded and ungrouped at
    the symbol's decimals (the most any of its prices has), - for what was not sent."""
    message = decode_message(
        b'{"type":"tick","symbol":"btcusdt","last_price":59945.123456789,"change_percent":0.8149,'
        b'"timestamp_ms":1700000000123,"bid":59945.1,"ask":0.00001234,"seq":1}'
    )
    assert message is not None
    assert TickLines(OutputFormat.PLAIN).lines(message) == [
        "2023-11-14T22:13:20.123Z BTCUSDT 59945.123456789 +0.81% bid 59945.100000000 "
        "ask 0.000012340"
    ]
    bare = {"symbol": "X", "last_price": 1, "timestamp_ms": None}
    assert plain_line(bare) == "- X 1.00 - bid - ask -"


def link_tick(price: str, seq: int) -> dict[str, object]:
    """A LINKUSDT tick (quoted to 0.001) as decoded: the server trims trailing zeros."""
    message = decode_message(
        f'{{"type":"tick","symbol":"LINKUSDT","last_price":{price},"change_percent":1.2,'
        f'"timestamp_ms":1700000000123,"open":14.9,"high":15.1,"low":14.5,'
        f'"bid":{price},"ask":14.97,"seq":{seq}}}'
    )
    assert message is not None
    return message


def test_a_symbols_prices_keep_one_number_of_decimals() -> None:
    """14.966 then 14.96 (14.960 with its trailing zero trimmed) print with three decimals
    both, in plain lines and in the table; a symbol's decimals never shrink."""
    lines = TickLines(OutputFormat.PLAIN)
    first = lines.lines(link_tick("14.966", 1))[0].split()
    second = lines.lines(link_tick("14.96", 2))[0].split()
    assert (first[2], first[5], first[7]) == ("14.966", "14.966", "14.970")
    assert (second[2], second[5], second[7]) == ("14.960", "14.960", "14.970")

    state = TailState()
    state.apply(link_tick("14.966", 1))
    state.apply(link_tick("14.96", 2))
    table = state.render(200)
    row = {c.header: cells(table, str(c.header))[0].plain for c in table.columns}
    assert (row["Price"], row["Bid"], row["Ask"]) == ("14.960", "14.960", "14.970")
    assert (row["High"], row["Low"], row["Spread"]) == ("15.100", "14.500", "0.010")


def test_json_lines_keep_the_servers_digits() -> None:
    """A tick goes out as the compact JSON it came in, numbers digit for digit."""
    raw = (
        '{"type":"tick","symbol":"BTCUSDT","last_price":0.30000000000000004,'
        '"change_percent":-1.5,"volume":12345.678,"seq":7,"source":"sim"}'
    )
    message = decode_message(raw)
    assert message is not None
    assert TickLines(OutputFormat.JSON).lines(message) == [raw]


def test_tick_lines_print_each_tick_once() -> None:
    """A repeated seq (the snapshot after a reconnect) is skipped; a reset prints the ticks
    it carries; status, acks and malformed ticks print nothing."""
    lines = TickLines(OutputFormat.PLAIN)
    assert len(lines.lines(tick("BTCUSDT", 1, seq=5))) == 1
    assert lines.lines(tick("BTCUSDT", 1, seq=5)) == []
    assert len(lines.lines(tick("ETHUSDT", 1, seq=5))) == 1
    reset = {"type": "reset", "ticks": [tick("BTCUSDT", 2, seq=9), tick("SOLUSDT", 3, seq=8)]}
    assert [line.split()[1] for line in lines.lines(reset)] == ["BTCUSDT", "SOLUSDT"]
    assert lines.lines({"type": "status", "upstream": "connected"}) == []
    assert lines.lines({"type": "tick", "symbol": "X", "last_price": "bad"}) == []


class ClosedPipe(io.StringIO):
    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_line_view_turns_a_closed_pipe_into_output_closed() -> None:
    """A reader that went away ends the view with OutputClosed, which is not an OSError the
    reconnect loop would take for a lost server."""
    view = LineView(OutputFormat.PLAIN, "http://h:1", ClosedPipe(), io.StringIO())
    with pytest.raises(OutputClosed) as caught:
        view.apply(tick("BTCUSDT", 1))
    assert not isinstance(caught.value, OSError)


def test_line_view_reports_problems_and_recovery_on_stderr() -> None:
    """Problems and server errors go to the error stream, one line each; a recovery after a
    problem is said once."""
    out, err = io.StringIO(), io.StringIO()
    view = LineView(OutputFormat.PLAIN, "http://h:1", out, err)
    view.set_connection(ConnectionState.CONNECTED)
    view.note_problem(Problem("server unreachable at http://h:1: is it running?"), 2.0)
    view.set_connection(ConnectionState.CONNECTED)
    view.apply({"type": "error", "code": "unknown_symbol", "message": "not served here: FOO"})
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        "tickcast tail: server unreachable at http://h:1: is it running? retrying in 2s",
        "tickcast tail: connected to http://h:1",
        "tickcast tail: http://h:1 says: not served here: FOO",
    ]


def test_line_view_says_once_that_prices_are_simulated() -> None:
    """Simulated data is said on stderr once, before its first tick line (not for a status
    alone), and again only when the server switches between live and simulated."""
    out, err = io.StringIO(), io.StringIO()
    view = LineView(OutputFormat.PLAIN, "http://h:1", out, err)
    view.apply({"type": "status", "upstream": "connected", "source": "sim", "simulated": True})
    assert err.getvalue() == ""
    for seq in (1, 2):
        view.apply({**tick("BTCUSDT", 1, seq=seq), "source": "sim"})
    view.apply(tick("BTCUSDT", 2, seq=3))
    assert err.getvalue().splitlines() == [
        "tickcast tail: the server is serving simulated prices, not live data",
        "tickcast tail: the server is serving live prices again",
    ]
    assert len(out.getvalue().splitlines()) == 3
    assert simulated_data({"type": "status", "simulated": False, "source": "sim"}) is False
    assert simulated_data({"type": "reset", "ticks": [{**tick("X", 1), "source": "sim"}]})
    assert simulated_data({"type": "ack"}) is None


# ---------------------------------------------------------------------- subscription


def test_subscription_drops_symbols_not_served_and_ends_when_none_is_left() -> None:
    """Each refused symbol is dropped from what the next connection asks for and said once;
    when none is left the line is fatal; a refusal of nothing asked for says nothing."""
    asked = Subscription(["FOOUSDT", "BTCUSDT", "BARUSDT"], "http://h:1")
    first = asked.drop(["FOOUSDT"])
    assert first == Problem("FOOUSDT is not served by http://h:1; showing BTCUSDT, BARUSDT")
    assert asked.drop(["FOOUSDT", "ETHUSDT"]) is None
    assert asked.symbols == ["BTCUSDT", "BARUSDT"]
    assert asked.unserved_among(["btcusdt", "ETHUSDT"], None) == ["BARUSDT"]
    assert asked.drop(["BARUSDT"]) == Problem(
        "BARUSDT is not served by http://h:1; showing BTCUSDT"
    )
    last = asked.drop(["BTCUSDT"])
    assert last is not None and last.fatal
    assert last.text == "BTCUSDT is not served by http://h:1 (its list: http://h:1/symbols)"
    assert asked.too_many("at most 2 streams per client").fatal


def test_refusals_of_symbols_are_told_from_other_errors() -> None:
    """Only unknown_symbol and too_many_subscriptions errors are the subscription's; the
    names come from ``symbols`` (on /ws), or are unknown (on /sse's event: error)."""
    ws = {"type": "error", "code": "unknown_symbol", "message": "x", "symbols": ["fooUSDT"]}
    sse = {"type": "error", "code": "unknown_symbol", "message": "not served here: FOOUSDT"}
    assert refusal_code(ws) == "unknown_symbol" and named_symbols(ws) == ["FOOUSDT"]
    assert refusal_code(sse) == "unknown_symbol" and named_symbols(sse) is None
    assert refusal_code({"type": "error", "code": "too_many_subscriptions"}) is not None
    assert refusal_code({"type": "error", "code": "rate_limited"}) is None
    assert refusal_code(tick("BTCUSDT", 1)) is None


# ---------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (60500.5, "60,500.50"),
        (0.1234, "0.1234"),
        (0.5, "0.5000"),
        (0.00001234, "0.00001234"),
        ("1.23456789123", "1.23456789123"),
        (Decimal("3000.123"), "3,000.123"),
        (None, MISSING),
        ("x", MISSING),
    ],
)
def test_prices_keep_the_digits_given(value: object, shown: str) -> None:
    """Prices show every decimal the server sent, never rounded (at least 2, or 4 below 1)."""
    assert format_price(value) == shown


def test_percent_volume_and_sparkline_formats() -> None:
    """Percent is signed with 2 decimals, volume compact, a flat sparkline sits mid-height."""
    assert format_percent(-1.2) == "-1.20%"
    assert format_percent(Decimal("1.25")) == "+1.25%"
    assert format_volume(745000000.5) == "745.00M"
    assert format_volume(12.3) == "12.30"
    assert sparkline([Decimal(1)]) == ""
    assert sparkline([Decimal(1)] * 3) == "▄▄▄"
    assert format_spread(Decimal("59945.10"), Decimal("59945.3")) == "0.20"
    assert format_spread(None, Decimal(1)) == MISSING


def test_decode_message_keeps_exact_decimals() -> None:
    """Numbers decode as exact decimals (no float noise); non-objects and bad JSON are None."""
    message = decode_message(b'{"type":"tick","last_price":0.3,"seq":5}')
    assert message == {"type": "tick", "last_price": Decimal("0.3"), "seq": 5}
    assert decode_message("[1, 2]") is None
    assert decode_message(b"\xff{") is None
    assert decode_message("{") is None


# ---------------------------------------------------------------------- protocol helpers


def test_urls_map_the_base_to_ws_and_sse() -> None:
    """The base maps to /ws (asking for status) and /sse, keeping a token and a path prefix."""
    assert websocket_url("http://h:1/", ["A", "B"]) == "ws://h:1/ws?status=1&symbols=A,B"
    assert websocket_url("https://h", []) == "wss://h/ws?status=1"
    assert websocket_url("localhost:8000", []) == "ws://localhost:8000/ws?status=1"
    assert sse_url("http://h:1", ["A"]) == "http://h:1/sse?symbols=A"
    assert sse_url("ws://h/prefix/?token=t", []) == "http://h/prefix/sse?token=t"


def test_sse_parser_follows_the_event_stream_format() -> None:
    """Comments are skipped, data lines join, a blank line dispatches, the id persists."""
    parser = SseParser()
    lines = [
        "retry: 2000", "", ": heartbeat", "event: tick", "id: 7", 'data: {"a":', "data:1}", "",
        "data: plain", "",
    ]  # fmt: skip
    events = [e for line in lines if (e := parser.feed_line(line)) is not None]
    assert events == [
        SseEvent(event="tick", data='{"a":\n1}', id="7"),
        SseEvent(event="message", data="plain", id="7"),
    ]
    assert parser.retry_ms == 2000
    assert parser.last_event_id == "7"


def test_sse_parser_restart_drops_a_half_received_event() -> None:
    """A new connection discards the partial event but keeps the last event id."""
    parser = SseParser()
    for line in ["id: 3", "data: x", "", "event: tick", "data: partial"]:
        parser.feed_line(line)
    parser.restart()
    assert parser.feed_line("") is None
    assert parser.last_event_id == "3"


def test_sse_parser_records_an_id_only_when_its_event_is_dispatched() -> None:
    """An id read before a cut-off event is not the resume point; the last complete one is."""
    parser = SseParser()
    for line in ["id: tok-1", "data: {}", "", "id: tok-2", "data: {"]:
        parser.feed_line(line)
    assert parser.last_event_id == "tok-1"
    parser.restart()  # the connection dropped mid-event
    for line in ["retry: 2000", "", "event: status", "data: {}"]:
        parser.feed_line(line)
    assert parser.feed_line("") == SseEvent(event="status", data="{}", id="tok-1")
    assert parser.last_event_id == "tok-1"


def test_unnamed_sse_events_are_ticks() -> None:
    """A tick sent as an unnamed event (SPEC §6) is applied; so is the older named form."""
    state = TailState()
    parser = SseParser()
    data = json.dumps(tick("BTCUSDT", 60500.5))
    lines = ["id: opaque:1", f"data: {data}", "", "event: tick", "id: 2", f"data: {data}", ""]
    for event in (e for line in lines if (e := parser.feed_line(line)) is not None):
        message = sse_message(event)
        assert message is not None
        state.apply(message)
    assert state.tick_count == 2
    assert state.ignored_count == 0
    assert parser.last_event_id == "2"


def test_sse_message_is_typed_by_the_event_name() -> None:
    """Event data without a type takes the event's name; typed data is left alone."""
    assert sse_message(SseEvent("status", '{"upstream":"stale"}', None)) == {
        "upstream": "stale",
        "type": "status",
    }
    assert sse_message(SseEvent("tick", '{"type":"tick"}', "1")) == {"type": "tick"}
    assert sse_message(SseEvent("tick", "not json", "1")) is None


# ---------------------------------------------------------------------- failures

WHERE = "http://h:8000"


@pytest.mark.parametrize(
    ("error", "connected", "token", "said", "fatal"),
    [
        (ConnectionRefusedError(111, "x"), False, False,
         "server unreachable at http://h:8000: is it running? retrying in 2s", False),
        (socket.gaierror(-2, "x"), False, False,
         "cannot resolve the host of http://h:8000: check --url; retrying in 2s", False),
        (TimeoutError(), False, False,
         "http://h:8000 did not answer within 10s; retrying in 2s", False),
        (ConnectionResetError(104, "x"), True, False,
         "lost the connection to http://h:8000; retrying in 2s", False),
        (ServerRefused(401, b'{"error":"unauthorized"}'), False, False,
         "http://h:8000 requires a token (401): pass --token or set TICKCAST_TOKEN", True),
        (ServerRefused(401, b'{"error":"unauthorized"}'), False, True,
         "http://h:8000 refused the token (401): check --token", True),
        (ServerRefused(403, b'{"error":"forbidden_origin","message":"origin not allowed"}'),
         False, False,
         "http://h:8000 refused this client (403 forbidden_origin: origin not allowed)", True),
        (ServerRefused(404, b"Not Found"), False, False,
         "http://h:8000 has no tickcast stream (404): --url takes the server's base URL, "
         "e.g. http://localhost:8000", True),
        (ServerRefused(403, b""), False, False,
         "http://h:8000 has no tickcast stream (403): --url takes the server's base URL, "
         "e.g. http://localhost:8000", True),
        (ServerRefused(503, b'{"error":"ingest_only","message":"x"}'), False, False,
         "http://h:8000 is an ingest-only node (503): point --url at an edge node", True),
        (ServerRefused(503, b'{"error":"too_many_connections"}'), False, False,
         "http://h:8000 cannot take the connection now (503 too_many_connections); "
         "retrying in 2s", False),
    ],
)  # fmt: skip
def test_failures_read_as_one_line_that_says_what_to_do(
    error: BaseException, connected: bool, token: bool, said: str, fatal: bool
) -> None:
    """Each way a connection fails reads as one plain line; refusals a retry cannot fix
    (token, path, ingest-only node) are fatal and carry no retry delay."""
    problem = describe_failure(error, WHERE, was_connected=connected, has_token=token)
    assert problem.fatal is fatal
    assert problem.line(None if fatal else 2.0) == said


def test_server_label_hides_the_query_and_credentials() -> None:
    """Messages name the server by scheme, host, port and path, never by its token."""
    assert server_label("http://u:p@h:1/base/?token=secret") == "http://h:1/base"
    assert server_label("localhost:8000") == "http://localhost:8000"


# ---------------------------------------------------------------------- driver over loopback


def quiet_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=160, color_system=None, force_terminal=False), out


async def test_tail_keeps_retrying_when_the_server_is_down() -> None:
    """No server: tail says it is reconnecting and returns cleanly at max_seconds."""
    console, out = quiet_console()
    code = await asyncio.wait_for(
        run_tail("http://127.0.0.1:9", [], False, console=console, max_seconds=1.5), 5
    )
    assert code == 0
    assert "reconnecting" in out.getvalue()
    assert "server unreachable at http://127.0.0.1:9: is it running?" in out.getvalue()


@pytest.mark.parametrize("use_sse", [False, True])
async def test_an_ingest_only_node_ends_tail_with_one_line(use_sse: bool) -> None:
    """A node that answers 503 ingest_only (SPEC §7) ends tail at once with status 1 and a
    line that says where to point it, over WebSocket and SSE alike."""
    body = b'{"error":"ingest_only","message":"this node only ingests: connect to an edge node"}'
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        head = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    out, err = io.StringIO(), io.StringIO()
    async with server:
        code = await asyncio.wait_for(
            run_tail(base, [], use_sse, token="t", output=OutputFormat.PLAIN, out=out, err=err),
            5,
        )
    assert code == 1
    assert len(requests) == 1
    assert b"authorization: bearer t\r\n" in requests[0].lower()
    assert out.getvalue() == ""
    assert err.getvalue() == (
        f"tickcast tail: {base} is an ingest-only node (503): point --url at an edge node\n"
    )


async def test_sse_reconnect_sends_last_event_id() -> None:
    """After the stream drops, tail reconnects and resumes with Last-Event-ID."""
    requests: list[str] = []
    finished = asyncio.Event()
    event = json.dumps(tick("BTCUSDT", 60500.5, seq=41))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append((await reader.readuntil(b"\r\n\r\n")).decode().lower())
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        writer.write(head + f"event: tick\nid: 41\ndata: {event}\n\n".encode())
        await writer.drain()
        if len(requests) > 1:
            await reader.read()  # stay open until tail closes the stream at max_seconds
        writer.close()
        await writer.wait_closed()
        if len(requests) > 1:
            finished.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    console, out = quiet_console()
    async with server:
        await run_tail(
            f"http://127.0.0.1:{port}", ["BTCUSDT"], True, console=console, max_seconds=2.5
        )
        await asyncio.wait_for(finished.wait(), 5)
    assert len(requests) >= 2
    assert requests[0].startswith("get /sse?symbols=btcusdt ")
    assert "last-event-id" not in requests[0]
    assert "last-event-id: 41" in requests[1]
    assert "60,500.50" in out.getvalue()


async def test_sse_resumes_after_the_last_complete_tick() -> None:
    """A tick cut off mid-event is asked for again: Last-Event-ID names the one before it."""
    requests: list[str] = []
    finished = asyncio.Event()
    first = json.dumps(tick("BTCUSDT", 60500.5, seq=41))
    cut = json.dumps(tick("BTCUSDT", 60600.25, seq=42))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append((await reader.readuntil(b"\r\n\r\n")).decode().lower())
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        if len(requests) == 1:
            # The new server format: unnamed tick events with opaque ids; the second is cut.
            body = f"retry: 2000\n\nid: t-41\ndata: {first}\n\nid: t-42\ndata: {cut[:40]}"
            writer.write(head + body.encode())
        else:
            writer.write(head + f"id: t-42\ndata: {cut}\n\n".encode())
        await writer.drain()
        if len(requests) > 1:
            await reader.read()  # stay open until tail closes the stream at max_seconds
        writer.close()
        await writer.wait_closed()
        if len(requests) > 1:
            finished.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    console, out = quiet_console()
    async with server:
        await run_tail(
            f"http://127.0.0.1:{port}", ["BTCUSDT"], True, console=console, max_seconds=2.5
        )
        await asyncio.wait_for(finished.wait(), 5)
    assert len(requests) >= 2
    assert "last-event-id: t-41\r\n" in requests[1]
    assert "60,600.25" in out.getvalue()


class RefusingServer:
    """A server speaking /sse and /symbols: a stream asking for a symbol in ``refused``
    gets a 404 JSON error, or (``partial_stream``, when some symbol asked for is served)
    a 200 stream with an ``event: error`` and ticks of the others. Records request lines."""

    def __init__(self, refused: set[str], served: list[str], *, partial_stream: bool) -> None:
        self.refused, self.served, self.partial_stream = refused, served, partial_stream
        self.requests: list[str] = []
        self.handlers: list[asyncio.Task[object]] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        self.server.close()
        # Each connection is closed by its handler once the client has left.
        await asyncio.wait_for(asyncio.gather(*self.handlers), 5)
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        requests, refused, served = self.requests, self.refused, self.served
        partial_stream = self.partial_stream
        line = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")[0]
        requests.append(line)
        target = line.split(" ")[1]
        asked = target.partition("symbols=")[2].replace("%2C", ",").split(",")
        unknown = [s for s in asked if s in refused]
        if target.startswith("/symbols"):
            body = json.dumps({"symbols": served}).encode()
            head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            writer.write(f"{head}{len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        elif unknown and not (partial_stream and len(unknown) < len(asked)):
            body = b'{"error":"unknown_symbol","message":"not served here: FOOUSDT"}'
            head = "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n"
            writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
            if unknown:
                error = {"type": "error", "code": "unknown_symbol", "message": "not served"}
                writer.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
            for seq in range(1, 4):
                data = json.dumps(tick("BTCUSDT", 60000 + seq, seq=seq))
                writer.write(f"id: {seq}\ndata: {data}\n\n".encode())
            await writer.drain()
            await reader.read()  # open until tail leaves
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("partial_stream", [False, True], ids=["404", "event-error"])
async def test_sse_tail_drops_a_symbol_not_served_and_shows_the_rest(
    partial_stream: bool,
) -> None:
    """Over SSE, a symbol not served (a 404 for the whole request, or an ``event: error`` in
    a stream of the others) is said once, and the served symbol's ticks are shown."""
    server = RefusingServer({"FOOUSDT"}, ["BTCUSDT"], partial_stream=partial_stream)
    out, err = io.StringIO(), io.StringIO()
    async with server as base:
        code = await run_tail(
            base, ["FOOUSDT", "BTCUSDT"], True, output=OutputFormat.PLAIN, out=out, err=err,
            max_seconds=1.5,
        )  # fmt: skip
    assert code == 0
    assert err.getvalue() == f"tickcast tail: FOOUSDT is not served by {base}; showing BTCUSDT\n"
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["BTCUSDT"] * 3
    streams = [r for r in server.requests if r.startswith("GET /sse")]
    assert len(streams) == (1 if partial_stream else 2)


@pytest.mark.parametrize("partial_stream", [False, True], ids=["404", "event-error"])
async def test_sse_tail_of_no_served_symbol_ends_with_status_1(partial_stream: bool) -> None:
    """Over SSE, a tail whose every symbol is refused (404 with the JSON error) exits 1 at
    once with one line, whichever way the server reports symbols among served ones."""
    out, err = io.StringIO(), io.StringIO()
    async with RefusingServer({"FOOUSDT"}, ["BTCUSDT"], partial_stream=partial_stream) as base:
        code = await asyncio.wait_for(
            run_tail(base, ["FOOUSDT"], True, output=OutputFormat.PLAIN, out=out, err=err), 5
        )
    assert code == 1
    assert out.getvalue() == ""
    assert err.getvalue() == (
        f"tickcast tail: FOOUSDT is not served by {base} (its list: {base}/symbols)\n"
    )


@pytest.mark.slow
async def test_tail_shows_live_prices_from_a_real_server(tmp_path: Path) -> None:
    """Against `tickcast serve --source sim`, both transports fill the table in seconds."""
    with running_server(tmp_path, ["--source", "sim"], {"TICKCAST_SIM_RATE": "5"}) as server:
        consoles = [quiet_console() for _ in range(2)]  # WebSocket and SSE, side by side
        await asyncio.gather(
            *(
                run_tail(
                    server.base, ["BTCUSDT", "ETHUSDT"], use_sse, console=console, max_seconds=2.5
                )
                for use_sse, (console, _) in zip((False, True), consoles, strict=True)
            )
        )
        for _, out in consoles:
            text = out.getvalue()
            assert "BTCUSDT" in text
            assert "ETHUSDT" in text
            assert "SOLUSDT" not in text
            assert "SIMULATED DATA" in text
