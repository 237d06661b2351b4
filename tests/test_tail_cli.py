"""`tickcast tail` as users run it: a real process against `tickcast serve --source sim`,
in a pipe (plain and JSON lines, an early-closing reader) and under a pseudo-terminal of a
given width (the table), plus what it says when the server is down or refuses."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tickcast.cli import main
from tickcast.tail.formatting import format_price
from tickcast.tail.localbook import book_checksum

from .support import ServerProcess, free_port, running_server

TOKEN = "tail-secret"
TAIL = [sys.executable, "-m", "tickcast.cli", "tail"]
PLAIN = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Z]+) (\d+\.\d+) ([+-]\d+\.\d\d%) "
    r"bid (\d+\.\d+) ask (\d+\.\d+)$"
)
TRADE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Z]+)@trades (buy|sell) (\d+\.\d+) "
    r"(\d+(?:\.\d+)?) id=(\d+)$"
)
CANDLE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) ([A-Z]+)@kline_1s O=(\d+\.\d+) H=(\d+\.\d+) "
    r"L=(\d+\.\d+) C=(\d+\.\d+) V=(\d+(?:\.\d+)?) trades=(\d+) (live|closed)$"
)
BOOK = re.compile(
    r"^(\S+) ([A-Z]+)@(book|depth) bid (\d+\.\d+) (\S+) ask (\d+\.\d+) (\S+) "
    r"spread (\d+\.\d+) (\d+\.\d+)bps id=(\d+)(?: levels=(\d+)/(\d+) crc=([0-9a-f]{8}))?$"
)
SIMULATED = "tickcast tail: the server is serving simulated prices, not live data\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "TICKCAST_SIM_RATE": "5",
        "TICKCAST_TOKEN": TOKEN,
        "TICKCAST_MAX_SUBSCRIPTIONS": "2",
        "TICKCAST_KLINE_INTERVALS": "1s,1m",
    }
    with running_server(tmp_path_factory.mktemp("tail"), ["--source", "sim"], env) as running:
        yield running


def tail_env(**extra: str) -> dict[str, str]:
    """The environment users have: no token, no fixed terminal size, Python's default
    buffering (a pipe is block-buffered unless tail flushes); plus ``extra``."""
    skip = {"TICKCAST_TOKEN", "COLUMNS", "LINES", "PYTHONUNBUFFERED"}
    return {**{k: v for k, v in os.environ.items() if k not in skip}, **extra}


def run_tail(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TAIL, *args], capture_output=True, text=True, env=tail_env(), timeout=timeout
    )


def start_tail(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TAIL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tail_env(), text=True
    )


def assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "Error" not in stderr  # no exception names either, such as BrokenPipeError


# ---------------------------------------------------------------------- in a pipe


def test_plain_lines_in_a_pipe(server: ServerProcess) -> None:
    """Not on a terminal, tail prints one plain line per tick: time, symbol, price, change,
    bid and ask, with the prices the server holds."""
    done = run_tail(
        "--url", server.base, "--token", TOKEN, "--seconds", "2.5", "BTCUSDT", "ETHUSDT"
    )
    assert done.returncode == 0, done.stderr
    assert_quiet(done.stderr)
    lines = done.stdout.splitlines()
    assert len(lines) >= 6, done.stdout
    parsed = [PLAIN.match(line) for line in lines]
    assert all(parsed), lines
    assert {m[2] for m in parsed if m} == {"BTCUSDT", "ETHUSDT"}
    history = server.get("/history/BTCUSDT", params={"limit": 1000}).json()
    held = {Decimal(str(t["last_price"])) for t in history}
    shown = [Decimal(m[3]) for m in parsed if m and m[2] == "BTCUSDT"]
    assert set(shown) <= held


def test_json_lines_are_ticks_in_order(server: ServerProcess) -> None:
    """--format json prints each tick as one compact JSON object; seq only goes up. The
    token comes from TICKCAST_TOKEN here."""
    done = subprocess.run(
        [*TAIL, "--url", server.base, "--format", "json", "--seconds", "2", "BTCUSDT"],
        capture_output=True,
        text=True,
        env=tail_env(TICKCAST_TOKEN=TOKEN),
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert_quiet(done.stderr)
    ticks = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(ticks) >= 5
    assert all(t["type"] == "tick" and t["symbol"] == "BTCUSDT" for t in ticks)
    seqs = [t["seq"] for t in ticks]
    assert seqs == sorted(set(seqs))
    assert ", " not in done.stdout and ": " not in done.stdout  # compact


def test_a_reader_that_leaves_early_ends_tail_quietly(server: ServerProcess) -> None:
    """`tickcast tail BTCUSDT | head -n 3`: head gets its three lines at once (each line is
    flushed), and tail then exits 0 with nothing on stderr, not a BrokenPipeError."""
    tail = subprocess.Popen(
        [*TAIL, "--url", server.base, "--token", TOKEN, "BTCUSDT"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tail_env(),
    )
    head: subprocess.Popen[str] | None = None
    try:
        assert tail.stdout is not None and tail.stderr is not None
        head = subprocess.Popen(
            ["head", "-n", "3"], stdin=tail.stdout, stdout=subprocess.PIPE, text=True
        )
        tail.stdout.close()  # head alone holds the pipe's read end now
        # One symbol at 5 ticks/s writes about 400 bytes/s: a block-buffered tail would
        # keep head waiting some 20 s for its first 8 KiB.
        shown, _ = head.communicate(timeout=8)
        code = tail.wait(timeout=10)
        stderr = tail.stderr.read().decode()
    finally:
        for process in (tail, head):
            if process is not None:
                process.kill()
                process.communicate()
    assert len(shown.splitlines()) == 3
    assert all(PLAIN.match(line) for line in shown.splitlines())
    assert code == 0
    assert stderr == SIMULATED


def test_simulated_prices_are_said_once_on_stderr_in_a_pipe(server: ServerProcess) -> None:
    """Against a --source sim server, piped tail says once on stderr that the prices are
    simulated, on both transports, while stdout keeps one plain line per tick."""
    runs = [
        start_tail("--url", server.base, "--token", TOKEN, "--seconds", "2", *sse, "BTCUSDT")
        for sse in ([], ["--sse"])
    ]
    for tail in runs:
        out, err = finish(tail, 20)
        assert tail.returncode == 0, err
        assert err == SIMULATED
        lines = out.splitlines()
        assert len(lines) >= 3
        assert all(PLAIN.match(line) for line in lines), lines


# ---------------------------------------------------------------------- on a terminal


def run_on_terminal(columns: int, *args: str, seconds: float = 3) -> subprocess.Popen[bytes]:
    """Start tail on a new pseudo-terminal ``columns`` wide; returns it with ``.master``."""
    master, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [*TAIL, *args, "--seconds", str(seconds)],
        stdin=child,
        stdout=child,
        stderr=child,
        env=tail_env(TERM="xterm-256color"),
    )
    os.close(child)
    process.master = master  # type: ignore[attr-defined]
    return process


def screen_of(process: subprocess.Popen[bytes], timeout: float = 20) -> list[str]:
    """Everything the process wrote to its terminal, as lines without escape sequences."""
    master: int = process.master  # type: ignore[attr-defined]
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child side is closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        os.close(master)
    text = ANSI.sub("", b"".join(chunks).decode(errors="replace"))
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def row_cells(lines: list[str], symbol: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in lines
        if line.startswith(f"│ {symbol} ")
    ]


def test_the_table_fits_the_terminal_by_dropping_columns(server: ServerProcess) -> None:
    """On a 60-column terminal the table keeps symbol, whole price and change and drops the
    rest; on 160 columns spread, high, low, volume and age appear too. No price is cut."""
    args = ["--url", server.base, "--token", TOKEN, "BTCUSDT", "ETHUSDT"]
    narrow, wide = run_on_terminal(60, *args), run_on_terminal(160, *args)
    narrow_lines, wide_lines = screen_of(narrow), screen_of(wide)
    history = server.get("/history/BTCUSDT", params={"limit": 1000}).json()
    held = {format_price(Decimal(str(t["last_price"]))) for t in history}

    # The last frame's header: the first ones, before any row, fit more narrow columns.
    headers = [line for line in narrow_lines if "Symbol" in line][-1]
    assert re.search(r"Symbol\s+┃\s+Price\s+┃\s+Change", headers), headers
    assert "Volume" not in headers and "High" not in headers
    assert all(len(line) <= 60 for line in narrow_lines)
    assert not [line for line in narrow_lines if "│" in line and "…" in line]
    rows = row_cells(narrow_lines, "BTCUSDT")
    assert rows
    assert all(row[1] in held for row in rows), (rows, held)
    assert all(re.fullmatch(r"[+-]\d+\.\d\d%", row[2]) for row in rows)

    wide_headers = [line for line in wide_lines if "Symbol" in line][-1]
    for name in ("Bid", "Ask", "Spread", "High", "Low", "Volume", "Age"):
        assert name in wide_headers, wide_headers
    wide_rows = row_cells(wide_lines, "BTCUSDT")
    assert wide_rows and all(row[1] in held for row in wide_rows)


# ---------------------------------------------------------------------- down or refusing


def test_a_server_that_is_down_gets_one_line_per_retry() -> None:
    """No server: each failed attempt is one short line with the retry delay; no exception
    text, no traceback; tail keeps trying until told to stop."""
    base = f"http://127.0.0.1:{free_port()}"
    done = run_tail("--url", base, "--seconds", "2.5")
    assert done.returncode == 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) >= 2, done.stderr
    expected = re.compile(
        rf"tickcast tail: server unreachable at {re.escape(base)}: is it running\? "
        r"retrying in \d+s"
    )
    assert all(expected.fullmatch(line) for line in lines), lines
    assert_quiet(done.stderr)


def test_refusals_say_what_is_wrong_and_end_tail(server: ServerProcess) -> None:
    """A missing token (401) and a wrong URL path each end tail with status 1 and one line
    that says what to fix."""
    no_token = subprocess.Popen(
        [*TAIL, "--url", server.base], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=tail_env(), text=True,
    )  # fmt: skip
    wrong_path = run_tail("--url", server.base + "/api", "--token", TOKEN, "--sse")
    out, err = no_token.communicate(timeout=20)
    assert no_token.returncode == 1
    assert err == (
        f"tickcast tail: {server.base} requires a token (401): pass --token or set TICKCAST_TOKEN\n"
    )
    assert out == ""
    assert wrong_path.returncode == 1
    assert wrong_path.stderr == (
        f"tickcast tail: {server.base}/api has no tickcast stream (404): --url takes the "
        "server's base URL, e.g. http://localhost:8000\n"
    )


def test_help_shows_the_default_url_and_the_formats(capsys: pytest.CaptureFixture[str]) -> None:
    """`tickcast tail --help` names the default URL, the three formats, --token, and the
    book streams with their ladder's --levels and their line's fields."""
    with pytest.raises(SystemExit):
        main(["tail", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default http://localhost:8000)" in text
    assert "{plain,json,table}" in text
    assert "--token" in text and "TICKCAST_TOKEN" in text
    assert "BTCUSDT@book" in text and "BTCUSDT@depth" in text
    assert "--levels N" in text and "(default 10)" in text
    assert "spread ABS BPSbps id=ID" in text and "crc=CRC32" in text


def finish(tail: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``tail``'s stdout and stderr once it exits; killed (and the test failed) if it has
    not exited within ``timeout`` seconds."""
    try:
        return tail.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tail.kill()
        tail.communicate()
        raise


@pytest.mark.parametrize("transport", [[], ["--sse"]], ids=["ws", "sse"])
def test_a_tail_of_symbols_not_served_ends_with_one_line(
    server: ServerProcess, transport: list[str]
) -> None:
    """Asked only for symbols the server does not serve, or for more than its per-client
    limit, tail exits 1 at once with one line on stderr saying why, on both transports."""
    base = ["--url", server.base, "--token", TOKEN, *transport]
    unknown = start_tail(*base, "FOOUSDT")
    too_many = start_tail(*base, "BTCUSDT", "ETHUSDT", "SOLUSDT")
    (out, err), (many_out, many_err) = finish(unknown, 15), finish(too_many, 15)
    assert unknown.returncode == 1
    assert out == ""
    assert err == (
        f"tickcast tail: FOOUSDT is not served by {server.base} (its list: {server.base}/symbols)\n"
    )
    assert too_many.returncode == 1
    assert many_out == ""
    assert many_err == (
        f"tickcast tail: {server.base} refused the subscription (too_many_subscriptions: "
        "at most 2 streams per client): ask for fewer symbols\n"
    )


@pytest.mark.parametrize("transport", [[], ["--sse"]], ids=["ws", "sse"])
def test_a_symbol_not_served_is_said_once_and_the_others_shown(
    server: ServerProcess, transport: list[str]
) -> None:
    """Asked for FOOUSDT and BTCUSDT, tail says once that FOOUSDT is not served and keeps
    printing BTCUSDT ticks until told to stop, on both transports."""
    tail = start_tail(
        "--url", server.base, "--token", TOKEN, *transport, "--seconds", "3", "FOOUSDT", "BTCUSDT"
    )
    out, err = finish(tail, 20)
    assert tail.returncode == 0, err
    assert (
        err.splitlines().count(
            f"tickcast tail: FOOUSDT is not served by {server.base}; showing BTCUSDT"
        )
        == 1
    ), err
    assert len(err.splitlines()) == 2, err  # that, and the simulated-data notice
    parsed = [PLAIN.match(line) for line in out.splitlines()]
    assert len(parsed) >= 5 and all(parsed), out
    assert {m[2] for m in parsed if m} == {"BTCUSDT"}


# ---------------------------------------------------------------------- trades and candles


def test_trades_in_a_pipe_end_quietly_when_head_has_its_lines(server: ServerProcess) -> None:
    """`tickcast tail BTCUSDT@trades | head -n 5`: five trade lines (time, stream, side,
    price, qty, id), the trades the server holds, and tail exits 0 with only the
    simulated-data notice on stderr."""
    tail = subprocess.Popen(
        [*TAIL, "--url", server.base, "--token", TOKEN, "btcusdt@trades"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tail_env(),
    )  # fmt: skip
    head: subprocess.Popen[str] | None = None
    try:
        assert tail.stdout is not None and tail.stderr is not None
        head = subprocess.Popen(
            ["head", "-n", "5"], stdin=tail.stdout, stdout=subprocess.PIPE, text=True
        )
        tail.stdout.close()
        shown, _ = head.communicate(timeout=10)
        code = tail.wait(timeout=10)
        stderr = tail.stderr.read().decode()
    finally:
        for process in (tail, head):
            if process is not None:
                process.kill()
                process.communicate()
    parsed = [TRADE.match(line) for line in shown.splitlines()]
    assert len(parsed) == 5 and all(parsed), shown
    assert code == 0
    assert stderr == SIMULATED
    ids = [int(m[6]) for m in parsed if m]
    assert ids == sorted(set(ids))
    held = server.get("/trades/BTCUSDT", params={"limit": 1000}).json()
    by_id = {t["trade_id"]: t for t in held}
    for m in parsed:
        assert m is not None
        sent = by_id[int(m[6])]
        assert (m[3], Decimal(m[4]), Decimal(m[5])) == (
            sent["side"],
            Decimal(str(sent["price"])),
            Decimal(str(sent["qty"])),
        )


@pytest.mark.parametrize("transport", [[], ["--sse"]], ids=["ws", "sse"])
def test_candles_in_a_pipe_are_live_updates_then_closed_ones(
    server: ServerProcess, transport: list[str]
) -> None:
    """`tickcast tail BTCUSDT@kline_1s` (the server carrying 1s candles) prints candle
    lines, each closed candle once, on both transports."""
    tail = start_tail(
        "--url", server.base, "--token", TOKEN, *transport, "--seconds", "3.5",
        "BTCUSDT@kline_1s",
    )  # fmt: skip
    out, err = finish(tail, 20)
    assert tail.returncode == 0, err
    assert err == SIMULATED
    parsed = [CANDLE.match(line) for line in out.splitlines()]
    assert len(parsed) >= 3 and all(parsed), out
    closed = [m[1] for m in parsed if m and m[9] == "closed"]
    assert len(closed) >= 2 and len(closed) == len(set(closed)), out
    for m in parsed:
        assert m is not None
        low, high = Decimal(m[5]), Decimal(m[4])
        assert low <= Decimal(m[3]) <= high and low <= Decimal(m[6]) <= high


def test_mixed_names_print_ticks_and_trades(server: ServerProcess) -> None:
    """`tickcast tail ETHUSDT ETHUSDT@trades` prints tick lines and trade lines."""
    tail = start_tail(
        "--url", server.base, "--token", TOKEN, "--seconds", "2.5", "ETHUSDT", "ETHUSDT@trades"
    )
    out, err = finish(tail, 20)
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert any(PLAIN.match(line) for line in lines), out
    assert any(TRADE.match(line) for line in lines), out
    assert all(PLAIN.match(line) or TRADE.match(line) for line in lines), out


@pytest.mark.parametrize("transport", [[], ["--sse"]], ids=["ws", "sse"])
def test_a_tail_of_streams_not_served_ends_with_one_line(
    server: ServerProcess, transport: list[str]
) -> None:
    """Asked only for streams the server does not serve (an unknown symbol's trades, an
    interval it does not carry), tail exits 1 with one line naming them and /streams."""
    tail = start_tail(
        "--url", server.base, "--token", TOKEN, *transport, "FOOUSDT@trades", "BTCUSDT@kline_1M"
    )
    out, err = finish(tail, 15)
    assert tail.returncode == 1
    assert out == ""
    assert err == (
        f"tickcast tail: FOOUSDT@trades, BTCUSDT@kline_1M are not served by {server.base} "
        f"(its list: {server.base}/streams)\n"
    )


def test_a_name_that_is_no_stream_is_a_usage_error() -> None:
    """`tickcast tail BTCUSDT@trade` exits 2 before connecting, saying what is wrong."""
    done = run_tail("--url", f"http://127.0.0.1:{free_port()}", "BTCUSDT@trade")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(
        "tickcast tail: error: not a stream: BTCUSDT@trade: 'trade' is not a stream kind"
    )


def test_the_terminal_shows_a_tape_of_trades(server: ServerProcess) -> None:
    """On a terminal, `tickcast tail BTCUSDT@trades` draws the tape: each trade with its
    side as a triangle and a word, its price and quantity; no tick table."""
    tail = run_on_terminal(100, "--url", server.base, "--token", TOKEN, "BTCUSDT@trades")
    lines = screen_of(tail)
    header = [line for line in lines if "Side" in line][-1]
    assert re.search(r"Time \(UTC\)\s+┃\s+Symbol\s+┃\s+Side\s+┃\s+Price\s+┃\s+Qty", header)
    cut = [line.strip("│ ").split("│") for line in lines if line.startswith("│ ")]
    rows = [[cell.strip() for cell in cells] for cells in cut]
    trades = [row for row in rows if len(row) == 5 and row[1] == "BTCUSDT"]
    assert trades, lines
    assert all(row[2] in ("▲ buy", "▼ sell") for row in trades), trades
    assert not [line for line in lines if "Change" in line]


# ---------------------------------------------------------------------- order books


def test_book_lines_in_a_pipe_have_bids_below_asks_and_rising_ids(server: ServerProcess) -> None:
    """`tickcast tail BTCUSDT@book` in a pipe prints one line per book update: its time,
    best bid below best ask, the spread they make, and update ids that only go up."""
    tail = start_tail("--url", server.base, "--token", TOKEN, "--seconds", "2.5", "BTCUSDT@book")
    out, err = finish(tail, 20)
    assert tail.returncode == 0, err
    assert err == SIMULATED
    parsed = [BOOK.match(line) for line in out.splitlines()]
    assert len(parsed) >= 5 and all(parsed), out
    ids = []
    for m in parsed:
        assert m is not None and m[3] == "book" and m[11] is None
        assert m[1] != "-"  # a whole book has its exchange time
        bid, ask = Decimal(m[4]), Decimal(m[6])
        assert bid < ask and Decimal(m[8]) == ask - bid
        ids.append(int(m[10]))
    assert ids == sorted(set(ids)), ids


def rest_books(server: ServerProcess, until: subprocess.Popen[str]) -> dict[int, str]:
    """The checksum of the server's whole BTCUSDT book at each update id seen by polling
    `GET /book/BTCUSDT?limit=5000` until ``until`` exits."""
    seen: dict[int, str] = {}
    while until.poll() is None:
        response = server.get("/book/BTCUSDT", params={"limit": 5000})
        if response.status_code == 200:
            held = json.loads(response.content, parse_float=Decimal)
            levels = [
                [(Decimal(p), Decimal(q)) for p, q in held[side]] for side in ("bids", "asks")
            ]
            seen[held["update_id"]] = book_checksum(*levels)
        time.sleep(0.03)
    return seen


@pytest.mark.parametrize("transport", [[], ["--sse"]], ids=["ws", "sse"])
def test_a_depth_tail_keeps_the_servers_whole_book(
    server: ServerProcess, transport: list[str]
) -> None:
    """`tickcast tail BTCUSDT@depth` keeps the whole book from the stream's first book and
    its diffs: at every update id where the server's REST book was also read, the tail's
    book (its size and checksum, on each line) is that book, level for level."""
    tail = start_tail(
        "--url", server.base, "--token", TOKEN, *transport, "--seconds", "4", "BTCUSDT@depth"
    )
    held = rest_books(server, tail)
    out, err = finish(tail, 20)
    assert tail.returncode == 0, err
    assert err == SIMULATED
    parsed = [BOOK.match(line) for line in out.splitlines()]
    assert len(parsed) >= 10 and all(parsed), out
    kept = {int(m[10]): m[13] for m in parsed if m}
    assert [m[3] for m in parsed if m] == ["depth"] * len(parsed)
    ids = list(kept)
    assert ids == sorted(ids)
    both = sorted(set(kept) & set(held))
    assert len(both) >= 3, (ids, sorted(held))
    assert [kept[i] for i in both] == [held[i] for i in both]


def test_the_terminal_shows_a_ladder_of_the_book(server: ServerProcess) -> None:
    """On a terminal, `tickcast tail BTCUSDT@book --levels 3` draws a ladder: three asks
    from the highest down to the best, the spread, three bids from the best down."""
    tail = run_on_terminal(
        100, "--url", server.base, "--token", TOKEN, "--levels", "3", "BTCUSDT@book"
    )
    lines = screen_of(tail)
    assert [line for line in lines if "BTCUSDT@book  update " in line], lines
    cut = [line.strip("│ ").split("│") for line in lines if line.startswith("│ ")]
    rows = [[cell.strip() for cell in cells] for cells in cut]
    spread = max(i for i, row in enumerate(rows) if row[0] == "spread")
    ladder = rows[spread - 3 : spread + 4]
    assert [row[0] for row in ladder] == ["ask"] * 3 + ["spread"] + ["bid"] * 3, ladder
    prices = [Decimal(row[1].replace(",", "")) for row in ladder]
    assert prices[:3] == sorted(prices[:3], reverse=True)
    assert prices[4:] == sorted(prices[4:], reverse=True)
    assert prices[2] - prices[4] == prices[3] > 0  # best ask - best bid: the spread
    assert ladder[3][2].endswith(" bps")
    assert not [line for line in lines if "Change" in line]
