"""tickcast tail's streams beside ticks (SPEC §12): names from the command line, the URLs
and refusals they make, trade and candle lines, the trade tape and the candle board, and
what a gap says. Pure calls; the CLI as a process: test_tail_cli.py."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from tickcast.cli import build_parser
from tickcast.tail.candles import CandleBoard, kline_line
from tickcast.tail.failures import Problem
from tickcast.tail.formatting import PriceDecimals
from tickcast.tail.lines import LineView, TickLines
from tickcast.tail.protocol import decode_message, sse_url, websocket_url
from tickcast.tail.subscription import (
    Subscription,
    asked_name,
    asked_names,
    named_symbols,
    refusal_code,
)
from tickcast.tail.table import TailState
from tickcast.tail.tape import TradeTape, gap_text, trade_line
from tickcast.tail.view import OutputFormat

T0 = 1_796_664_761_174  # 2026-12-07T17:32:41.174Z
MINUTE = 1_796_664_720_000  # 2026-12-07T17:32:00Z


def trade(trade_id: int = 123, price: str = "60500.5", side: str = "buy", seq: int = 1,
          qty: str = "0.012", symbol: str = "BTCUSDT") -> dict[str, object]:  # fmt: skip
    raw = (
        f'{{"type":"trade","stream":"{symbol}@trades","symbol":"{symbol}",'
        f'"trade_id":{trade_id},"price":{price},"qty":{qty},"side":"{side}",'
        f'"timestamp_ms":{T0},"seq":{seq},"source":"sim"}}'
    )
    message = decode_message(raw)
    assert message is not None
    return message


def kline(open_time: int = MINUTE, close: str = "60500.5", closed: bool = False,
          seq: int = 1, interval: str = "1m", trades: int = 311) -> dict[str, object]:  # fmt: skip
    raw = (
        f'{{"type":"kline","stream":"BTCUSDT@kline_{interval}","symbol":"BTCUSDT",'
        f'"interval":"{interval}","open_time":{open_time},"close_time":{open_time + 59_999},'
        f'"open":60490.1,"high":60510.0,"low":60480.2,"close":{close},"volume":12.5,'
        f'"quote_volume":756210.3,"trades":{trades},"closed":{str(closed).lower()},'
        f'"seq":{seq},"source":"sim"}}'
    )
    message = decode_message(raw)
    assert message is not None
    return message


def text_of(renderable: RenderableType, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


# ---------------------------------------------------------------------- names


def test_names_keep_symbols_as_before_and_read_streams_canonically() -> None:
    """A bare symbol is uppercased as always (its @ticker stream is the same symbol); a
    stream's symbol is uppercased and its kind kept as given, so 1m and 1M stay apart."""
    assert asked_name(" btcusdt ") == "BTCUSDT"
    assert asked_name("btcusdt@ticker") == "BTCUSDT"
    assert asked_name("ethUSDT@trades") == "ETHUSDT@trades"
    assert asked_name("btcusdt@kline_1m") == "BTCUSDT@kline_1m"
    assert asked_name("btcusdt@kline_1M") == "BTCUSDT@kline_1M"
    assert asked_names(["BTCUSDT", "ETHUSDT@trades", "btcusdt", "BTCUSDT@ticker", " "]) == [
        "BTCUSDT",
        "ETHUSDT@trades",
    ]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("BTCUSDT@trade", "BTCUSDT@trade: 'trade' is not a stream kind"),
        ("BTCUSDT@kline_2m", "BTCUSDT@kline_2m: '2m' is not a kline interval"),
        ("BTC-USDT@trades", "BTC-USDT@trades: 'BTC-USDT' is not a symbol"),
    ],
)
def test_a_name_that_is_no_stream_is_refused_saying_why(text: str, said: str) -> None:
    """A stream name that cannot be a stream fails before any connection, naming itself
    and what is wrong with it."""
    with pytest.raises(ValueError, match="^" + said.replace("(", r"\(")):
        asked_names(["BTCUSDT", text])


def test_command_line_takes_symbols_and_streams_mixed() -> None:
    """`tickcast tail BTCUSDT ETHUSDT@trades BTCUSDT@kline_1m` parses into those names."""
    args = build_parser().parse_args(["tail", "BTCUSDT", "ethusdt@trades", "BTCUSDT@kline_1m"])
    assert asked_names(args.symbols) == ["BTCUSDT", "ETHUSDT@trades", "BTCUSDT@kline_1m"]


def test_help_names_streams_and_what_a_pipe_gets(capsys: pytest.CaptureFixture[str]) -> None:
    """`tickcast tail --help` tells of stream names and of the candle lines' policy."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "BTCUSDT@trades" in text and "BTCUSDT@kline_1m" in text
    assert "/streams" in text
    assert "'live'" in text and "'closed'" in text


def test_bare_symbols_go_in_symbols_and_streams_in_streams() -> None:
    """Symbols keep `?symbols=` exactly as before; stream names go in `?streams=`, with
    their `@` readable."""
    base = "http://h:1/?token=t"
    assert websocket_url(base, ["BTCUSDT"]) == "ws://h:1/ws?token=t&status=1&symbols=BTCUSDT"
    assert websocket_url(base, ["BTCUSDT"], ["ETHUSDT@trades", "BTCUSDT@kline_1m"]) == (
        "ws://h:1/ws?token=t&status=1&symbols=BTCUSDT&streams=ETHUSDT@trades,BTCUSDT@kline_1m"
    )
    assert sse_url("http://h:1", [], ["ETHUSDT@trades"]) == "http://h:1/sse?streams=ETHUSDT@trades"


# ---------------------------------------------------------------------- refusals


def test_unknown_streams_are_dropped_like_unknown_symbols() -> None:
    """An unknown_stream error's `streams` are dropped from the next connection; the last
    one left is fatal and points at /streams (both lists when symbols were refused too)."""
    error = {"type": "error", "code": "unknown_stream", "streams": ["FOOUSDT@trades"]}
    assert refusal_code(error) == "unknown_stream"
    assert named_symbols(error) == ["FOOUSDT@trades"]
    asked = Subscription(["BTCUSDT", "FOOUSDT@trades", "BTCUSDT@kline_1m"], "http://h:1")
    assert asked.drop(["FOOUSDT@trades"]) == Problem(
        "FOOUSDT@trades is not served by http://h:1; showing BTCUSDT, BTCUSDT@kline_1m"
    )
    assert (asked.symbols, asked.streams) == (["BTCUSDT"], ["BTCUSDT@kline_1m"])
    last = asked.drop(["BTCUSDT", "BTCUSDT@kline_1m"])
    assert last == Problem(
        "BTCUSDT, BTCUSDT@kline_1m are not served by http://h:1 "
        "(its lists: http://h:1/symbols and http://h:1/streams)",
        fatal=True,
    )


def test_unserved_streams_are_judged_by_the_streams_list() -> None:
    """Streams are looked up in /streams' canonical names, symbols in /symbols; a list
    that could not be had judges nothing."""
    asked = Subscription(["BTCUSDT", "BTCUSDT@trades", "BTCUSDT@kline_1M"], "http://h:1")
    served = ["BTCUSDT@ticker", "BTCUSDT@trades", "BTCUSDT@kline_1m"]
    assert asked.unserved_among(["BTCUSDT"], served) == ["BTCUSDT@kline_1M"]
    assert asked.unserved_among(None, None) == []
    assert asked.unserved_among(["ETHUSDT"], None) == ["BTCUSDT"]


def test_too_many_streams_says_to_ask_for_fewer_streams() -> None:
    """The limit counts streams; a tail that asked for streams is told to ask for fewer."""
    problem = Subscription(["BTCUSDT@trades"], "http://h:1").too_many("at most 1 streams")
    assert problem.fatal and problem.text.endswith("ask for fewer streams")


# ---------------------------------------------------------------------- lines


def test_trade_line_has_fixed_fields_and_exact_digits() -> None:
    """time, stream, side, price (the symbol's decimals), qty as sent, id: no float noise."""
    assert trade_line(trade(), 2) == (
        "2026-12-07T17:32:41.174Z BTCUSDT@trades buy 60500.50 0.012 id=123"
    )
    noisy = trade(price="0.30000000000000004", qty="0.1", side="sell")
    assert trade_line(noisy) == (
        "2026-12-07T17:32:41.174Z BTCUSDT@trades sell 0.30000000000000004 0.1 id=123"
    )
    assert trade_line(trade(qty="1e-8")).split()[4] == "0.00000001"


def test_kline_line_says_live_or_closed() -> None:
    """open time, stream, O/H/L/C at the symbol's decimals, volume as sent, trades, and
    `live` for an update of the open candle or `closed` for its end."""
    assert kline_line(kline(), 2) == (
        "2026-12-07T17:32:00Z BTCUSDT@kline_1m O=60490.10 H=60510.00 L=60480.20 C=60500.50 "
        "V=12.5 trades=311 live"
    )
    assert kline_line(kline(closed=True), 2).endswith(" trades=311 closed")


def test_tick_lines_print_trades_once_and_candle_updates_that_change() -> None:
    """A trade repeated (same seq) prints once; a candle update prints only when its line
    changes; a late update of a candle already closed prints nothing."""
    lines = TickLines(OutputFormat.PLAIN)
    assert len(lines.lines(trade(seq=1))) == 1
    assert lines.lines(trade(seq=1)) == []
    assert lines.lines(trade(trade_id=124, seq=2))[0].endswith(" id=124")
    assert lines.lines(kline(seq=10))[0].endswith(" live")
    assert lines.lines(kline(seq=11)) == []  # a snapshot repeating the open candle
    assert lines.lines(kline(close="60501", seq=12))[0].endswith(" live")
    assert lines.lines(kline(close="60501", closed=True, seq=13))[0].endswith(" closed")
    assert lines.lines(kline(MINUTE + 60_000, seq=14))[0].startswith("2026-12-07T17:33:00Z")
    assert lines.lines(kline(close="1", seq=15)) == []  # late: that candle has closed


def test_plain_lines_keep_a_symbols_decimals_across_ticks_and_trades() -> None:
    """Trades and candles of a symbol show as many decimals as its most precise price."""
    lines = TickLines(OutputFormat.PLAIN)
    lines.lines(trade(price="60500.125", seq=1))
    assert lines.lines(trade(price="60500.5", seq=2))[0].split()[3] == "60500.500"


def test_json_lines_carry_trades_and_candles_with_the_servers_digits() -> None:
    """--format json prints each trade and candle as received, digits unchanged."""
    lines = TickLines(OutputFormat.JSON)
    (line,) = lines.lines(trade(price="60500.50", qty="0.00012"))
    assert '"price":60500.50' in line and '"qty":0.00012' in line
    (candle,) = lines.lines(kline())
    assert candle.startswith('{"type":"kline"') and '"open":60490.1' in candle


def test_a_gap_is_one_line_on_stderr_in_a_pipe() -> None:
    """A gap says on stderr how many trades were missed; stdout keeps only trade lines."""
    out, err = io.StringIO(), io.StringIO()
    view = LineView(OutputFormat.PLAIN, "http://h:1", out, err)
    view.apply(trade())
    view.apply({"type": "gap", "stream": "BTCUSDT@trades", "missed": 42})
    assert err.getvalue().splitlines()[-1] == (
        "tickcast tail: BTCUSDT@trades: 42 trades missed (the client fell behind)"
    )
    assert len(out.getvalue().splitlines()) == 1
    assert gap_text({"type": "gap", "stream": "X@kline_1m", "missed": 3}) == (
        "X@kline_1m: 3 messages missed (the client fell behind)"
    )


# ---------------------------------------------------------------------- the terminal


def test_the_tape_shows_the_newest_trade_first_marked_by_side() -> None:
    """Newest on top; a buy is ▲ and green, a sell ▼ and red: marked, not only coloured;
    a gap is a row where it happened and a line under the tape."""
    tape = TradeTape(PriceDecimals(), rows=3)
    for seq in range(1, 5):
        tape.add_trade(trade(100 + seq, f"6050{seq}.5", "buy" if seq % 2 else "sell", seq))
    tape.add_gap({"type": "gap", "stream": "BTCUSDT@trades", "missed": 42})
    table = tape.render(120)
    sides = [cell.plain for cell in table.columns[2].cells]  # type: ignore[union-attr]
    assert sides == ["⋯ gap", "▼ sell", "▲ buy"]
    styles = [cell.style for cell in table.columns[2].cells]  # type: ignore[union-attr]
    assert styles[1:] == ["bold red", "bold green"]
    output = text_of(table)
    assert "60,504.50" in output and "17:32:41.174" in output
    assert "BTCUSDT@trades: 42 trades missed (the client fell behind)" in " ".join(output.split())


def test_a_narrow_tape_drops_the_time_before_the_price() -> None:
    """On a narrow terminal the tape keeps side, price and quantity whole."""
    tape = TradeTape(PriceDecimals())
    tape.add_trade(trade())
    headers = [str(c.header) for c in tape.render(30).columns]
    assert headers == ["Side", "Price", "Qty"]
    assert "Time (UTC)" in [str(c.header) for c in tape.render(120).columns]


def test_the_board_keeps_the_open_candle_under_the_last_closed_ones() -> None:
    """Each stream shows its last three closed candles, oldest first, then the open one;
    an update replaces the open candle; a repeated close replaces nothing else."""
    board = CandleBoard(PriceDecimals())
    for minute in range(5):
        start = MINUTE + minute * 60_000
        board.add(kline(start, seq=minute * 2))
        board.add(kline(start, closed=True, seq=minute * 2 + 1))
    board.add(kline(MINUTE + 5 * 60_000, close="1.5", seq=20))
    board.add(kline(MINUTE + 5 * 60_000, close="60600.25", seq=21))
    board.add(kline(MINUTE + 4 * 60_000, closed=True, seq=22))  # resent close
    table = board.render(200)
    times = [c.plain for c in table.columns[1].cells]  # type: ignore[union-attr]
    states = [c.plain for c in table.columns[-1].cells]  # type: ignore[union-attr]
    closes = [c.plain for c in table.columns[5].cells]  # type: ignore[union-attr]
    assert times == ["17:34:00", "17:35:00", "17:36:00", "17:37:00"]
    assert states == ["closed", "closed", "closed", "● live"]
    assert closes[-1] == "60,600.25"


def test_a_daily_candle_shows_its_date() -> None:
    """Candles of a day or longer open at midnight: the board shows their date alone."""
    board = CandleBoard(PriceDecimals())
    board.add(kline(1_796_601_600_000, interval="1d"))
    assert [c.plain for c in board.render(200).columns[1].cells] == ["2026-12-07"]  # type: ignore[union-attr]


def test_the_screen_shows_the_sections_asked_for() -> None:
    """Symbols alone: the tick table as before. With streams: the state line, then a
    section per kind asked for, waiting until its first message."""
    assert isinstance(TailState(["BTCUSDT"]).screen(), type(TailState().render()))
    state = TailState(["BTCUSDT@trades", "BTCUSDT@kline_1m"])
    waiting = text_of(state.screen(120))
    assert "waiting for trades" in waiting and "waiting for candles" in waiting
    assert "waiting for ticks" not in waiting
    state.apply(trade())
    state.apply(kline(closed=True))
    state.apply({"type": "gap", "stream": "BTCUSDT@trades", "missed": 7})
    shown = text_of(state.screen(120))
    assert "▲ buy" in shown and "60,500.50" in shown
    assert "BTCUSDT@kline_1m" in shown and "closed" in shown
    assert "SIMULATED DATA" in shown  # the trades' source says so
    assert "7 missed" in shown


def test_decimals_on_the_screen_are_exact() -> None:
    """Prices a float would print as 0.30000000000000004 show as sent, never rounded."""
    state = TailState(["XUSDT@trades"])
    state.apply(trade(price="0.30000000000000004", qty="1e-8", symbol="XUSDT"))
    shown = text_of(state.screen(160))
    assert "0.30000000000000004" in shown and "0.00000001" in shown
