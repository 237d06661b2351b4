"""The dashboard's trading features in headless Chromium against real server processes:
staleness, bid/ask/spread and volume units, sorting, the chart (real candles and the tick
line), the trade tape, the order book ladder, the connection panel, keyboard use and
narrow screens (Playwright, system Chromium).

With TICKCAST_UPDATE_SCREENSHOT=1 the chart test also writes docs/dashboard.png, the
README's picture (1280x800, chart open); otherwise screenshots stay in the temp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import httpx
import orjson
import pytest

from .redis_support import LinkProxy
from .support import (
    CHROMIUM,
    ServerProcess,
    chromium,
    free_port,
    require_program,
    running_server,
    sim_exchange,
    wait_until,
)

pytestmark = pytest.mark.e2e

require_program(CHROMIUM, "chromium", "browser")

from playwright.sync_api import Browser, Page, WebSocketRoute, expect  # noqa: E402

from .test_e2e import (  # noqa: E402
    DEFAULT_SYMBOLS,
    REPO,
    rows,
    tick_count,
    wait_for_more_ticks,
)

STATIC = REPO / "src" / "tickcast" / "static"
SIM = {"TICKCAST_SIM_RATE": "4"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield cast(Browser, instance)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("dash"), ["--source", "sim"], SIM) as process:
        yield process


@pytest.fixture(scope="module")
def ticker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of tickers only: every message it publishes is a tick, so a page following
    every symbol receives every seq and can count gaps."""
    env = {**SIM, "TICKCAST_STREAM_KINDS": ""}
    with running_server(tmp_path_factory.mktemp("ticker"), ["--source", "sim"], env) as process:
        yield process


@contextmanager
def open_page(browser: Browser, width: int = 1280, height: int = 800) -> Iterator[Page]:
    """A fresh context (so fresh localStorage) that fails the test on a page error."""
    context = browser.new_context(viewport={"width": width, "height": height})
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser) as new_page:
        yield new_page


def load(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    expect(page.locator("#conn-state")).to_have_text("connected")


def stats(page: Page) -> dict[str, object]:
    result = page.evaluate("window.tickcast.stats()")
    assert isinstance(result, dict)
    return result


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text.replace("\N{MINUS SIGN}", "-")))


def expect_fresh(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-fresh", "yes", timeout=15_000)
    expect(page.locator("#latency")).to_contain_text("ms", timeout=10_000)
    expect(page.locator("#stale-banner")).to_be_hidden()


def expect_stale_prices(page: Page) -> None:
    """Prices dimmed and the latency figure no longer claiming freshness, together."""
    page.wait_for_function(
        """() => document.body.dataset.fresh === "no"
             && document.querySelector("#latency").textContent === "stale"
             && Number(getComputedStyle(
                  document.querySelector('tr[data-symbol="BTCUSDT"] td.price')).opacity) < 1""",
        timeout=10_000,
    )


def expect_rows_marked_stale(page: Page) -> None:
    """Every row says "stale" in words once it has missed several of its intervals."""
    expect(page.locator("tr.row-stale")).to_have_count(DEFAULT_SYMBOLS, timeout=8_000)
    expect(page.locator('tr[data-symbol="ETHUSDT"] .stale-tag')).to_be_visible()
    expect(page.locator('tr[data-symbol="ETHUSDT"] .age')).to_contain_text("stale")
    expect(page.locator('tr[data-symbol="ETHUSDT"] .age-text')).to_contain_text(" s ago")


@contextmanager
def link_proxy(
    port: int,
) -> Iterator[tuple[LinkProxy, threading.Thread, asyncio.AbstractEventLoop]]:
    """A TCP proxy to ``port`` on its own event loop thread: cutting it drops the page's
    connections for real while the server keeps running."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = LinkProxy(port)
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(5)
    try:
        yield proxy, thread, loop
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_table_shows_quotes_spread_units_and_direction(page: Page, server: ServerProcess) -> None:
    """Bid, ask and spread per row, volumes labelled BTC / USDT, ▲/▼ beside coloured
    moves, an age per row, and the panel's transport, node and message rate."""
    load(page, server.base + "/")
    btc = page.locator('tr[data-symbol="BTCUSDT"]')
    expect(btc.locator(".move")).to_have_text(re.compile("[▲▼]"), timeout=10_000)
    # One read of the three cells: read one by one, a tick may land between them.
    cells = btc.evaluate(
        "row => ['.bid', '.ask', '.spread'].map(c => row.querySelector(c).innerText)"
    )
    bid, ask, spread = (number(text) for text in cells)
    assert 0 < bid <= ask
    assert spread >= 0
    expect(btc.locator(".volume")).to_have_text(re.compile(r"^[0-9.,]+[KMB]? BTC$"))
    expect(btc.locator(".qvolume")).to_have_text(re.compile(r"^[0-9.,]+[KMB]? USDT$"))
    expect(page.locator('tr[data-symbol="ETHUSDT"] .volume')).to_contain_text(" ETH")
    change = btc.locator(".change").inner_text()
    assert change.startswith(("▲", "▼")) or change == "0.00%"
    expect(btc.locator(".age-text")).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    expect(btc.locator(".stale-tag")).to_be_hidden()

    node = server.status()["node_id"]
    expect(page.locator("#stat-node")).to_have_text(str(node))
    expect(page.locator("#stat-transport")).to_have_text("WebSocket")
    # Trades and candles share the seq with the ticks: with them not followed, the page
    # cannot tell a missed tick from another stream's message (ticker_server's tests can).
    expect(page.locator("#stat-gaps")).to_have_text("not checked (other streams)")
    page.wait_for_function("window.tickcast.stats().messagesPerSecond > 10", timeout=10_000)
    assert int(page.inner_text("#stat-seq")) > 0
    expect_fresh(page)


def test_disconnect_and_connect_buttons_follow_the_state(page: Page, server: ServerProcess) -> None:
    """Disconnect: prices dim, a banner says since when, Connect is offered again;
    Connect brings fresh prices back."""
    load(page, server.base + "/")
    expect(page.locator("#connect")).to_be_disabled()
    page.click("#disconnect")
    expect(page.locator("#conn-state")).to_have_text("disconnected")
    expect(page.locator("#connect")).to_be_enabled()
    expect(page.locator("#connect")).to_have_text("Connect")
    expect(page.locator("#disconnect")).to_be_disabled()
    expect(page.locator("#stale-banner")).to_contain_text("Disconnected at")
    expect_stale_prices(page)
    page.click("#connect")
    expect(page.locator("#conn-state")).to_have_text("connected")
    expect_fresh(page)


def test_sort_by_keyboard_is_announced_and_kept_across_reloads(
    page: Page, server: ServerProcess
) -> None:
    """A header sorts from the keyboard with a visible focus ring, says so with aria-sort,
    and the sort survives a reload (localStorage)."""
    load(page, server.base + "/")
    page.focus("#add-symbol")
    for _ in range(12):  # Tab through the form and into the table's headers
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('th')?.dataset.sort === 'symbol'"):
            break
    else:
        pytest.fail("the Symbol header's sort button is not reachable with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.keyboard.press("Enter")
    symbol_header = page.locator('th[data-sort="symbol"]')
    expect(symbol_header).to_have_attribute("aria-sort", "ascending")
    assert rows(page) == sorted(rows(page))
    page.keyboard.press("Enter")
    expect(symbol_header).to_have_attribute("aria-sort", "descending")
    assert rows(page) == sorted(rows(page), reverse=True)

    page.click('th[data-sort="price"] button')
    expect(page.locator('th[data-sort="price"]')).to_have_attribute("aria-sort", "descending")
    expect(symbol_header).to_have_attribute("aria-sort", "none")
    by_price = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "LTCUSDT", "LINKUSDT"]
    assert rows(page)[:6] == by_price

    page.reload()
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    expect(page.locator('th[data-sort="price"]')).to_have_attribute("aria-sort", "descending")
    page.wait_for_function(
        "() => document.querySelectorAll('tr[data-symbol] .price-val:not(:empty)').length === 10"
    )
    page.wait_for_timeout(1100)  # the page re-sorts at most once a second
    assert rows(page)[:6] == by_price


def test_chart_fills_from_history_then_live(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    """Enter on a symbol opens its chart with axes, in candles; the line style is filled
    from /history and then grows with live ticks, and its ranges redraw it; Escape closes
    the chart and returns focus."""
    load(page, server.base + "/")
    page.focus('tr[data-symbol="BTCUSDT"] .symbol-btn')
    page.keyboard.press("Enter")
    expect(page.locator("#chart-panel")).to_be_visible()
    expect(page.locator("#chart-title")).to_have_text("BTCUSDT")
    expect(page.locator("#chart-title")).to_be_focused()
    expect(page.locator('input[name="chart-style"][value="candles"]')).to_be_checked()
    page.wait_for_function("tickcast.chart.candles() > 0", timeout=10_000)
    expect(page.locator("#chart .u-legend")).to_contain_text("Close")
    expect(page.locator('input[name="chart-range"][value="all"]')).to_be_hidden()
    page.check('input[name="chart-style"][value="line"]')
    expect(page.locator('input[name="chart-span"][value="all"]')).to_be_hidden()
    page.wait_for_function(
        "!tickcast.chart.loading() && tickcast.chart.fromHistory() > 0", timeout=10_000
    )
    held = page.evaluate("tickcast.chart.points()")
    page.wait_for_function(f"tickcast.chart.points() > {held} + 4", timeout=10_000)
    expect(page.locator("#chart canvas")).to_have_count(1)
    expect(page.locator("#chart .u-axis")).to_have_count(2)
    expect(page.locator("#chart-note")).to_contain_text("from history, then live")
    expect(page.locator("#chart")).to_have_attribute("aria-label", re.compile("BTCUSDT price"))

    page.check('input[name="chart-range"][value="all"]')
    page.wait_for_function("tickcast.chart.shown() === tickcast.chart.points()")
    page.check('input[name="chart-style"][value="candles"]')
    page.wait_for_function("tickcast.chart.shown() === tickcast.chart.candles()")

    update_docs = os.environ.get("TICKCAST_UPDATE_SCREENSHOT") == "1"
    if update_docs:  # the README's picture: a chart with some history to it
        page.wait_for_function("tickcast.chart.points() >= 160", timeout=60_000)
    page.wait_for_timeout(300)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if update_docs:
        (REPO / "docs" / "dashboard.png").write_bytes(shot.read_bytes())

    page.focus("#chart-close")
    page.keyboard.press("Escape")
    expect(page.locator("#chart-panel")).to_be_hidden()
    expect(page.locator('tr[data-symbol="BTCUSDT"] .symbol-btn')).to_be_focused()


def test_stalled_upstream_dims_prices_and_marks_rows(page: Page, tmp_path: Path) -> None:
    """While the upstream is stale the banner says since when, prices dim, latency reads
    "stale" and silent rows say "stale"; all of it clears when the feed returns."""
    with sim_exchange("--rate", "4") as sim_port:
        env = {"TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{sim_port}", "TICKCAST_STALE_AFTER": "1"}
        with running_server(tmp_path, ["--source", "binance"], env) as server:
            load(page, server.base + "/")
            expect_fresh(page)
            # Stalled until every stale sign is seen, then ended: no window to guess.
            httpx.post(f"http://127.0.0.1:{sim_port}/_sim/fault?kind=stall&duration=120")
            banner = page.locator("#upstream-banner")
            expect(banner).to_be_visible(timeout=10_000)
            expect(banner).to_contain_text(re.compile(r"since \d\d:\d\d:\d\d"))
            expect(page.locator("#conn-state")).to_have_text("connected")
            expect_stale_prices(page)
            expect_rows_marked_stale(page)
            page.screenshot(path=str(tmp_path / "upstream-stale.png"))
            httpx.delete(f"http://127.0.0.1:{sim_port}/_sim/fault")
            expect(banner).to_be_hidden(timeout=20_000)
            expect(page.locator("tr.row-stale")).to_have_count(0, timeout=10_000)
            expect_fresh(page)


def test_server_restart_shows_stale_then_recovers_without_duplicates(
    page: Page, tmp_path: Path
) -> None:
    """Killing the server: reconnecting state, "Retry now", a banner with the time the
    connection was lost, dimmed prices, rows marked stale. With a new server on the same
    port, "Retry now" reconnects at once (without waiting out the backoff: automatic
    reconnects are proven by the dropped-link test and test_e2e) unless the backoff
    already did; the banner and marks clear, and no row is duplicated."""
    port = free_port()
    first = ServerProcess(["--source", "sim"], SIM, tmp_path / "first.log", port)
    try:
        first.wait_ready()
        load(page, f"http://127.0.0.1:{port}/")
        wait_for_more_ticks(page, 20)
    finally:
        first.stop(signal.SIGKILL)
    expect(page.locator("#conn-state")).to_contain_text("reconnecting", timeout=5_000)
    expect(page.locator("#connect")).to_have_text("Retry now")
    expect(page.locator("#connect")).to_be_enabled()
    expect(page.locator("#disconnect")).to_be_enabled()
    expect(page.locator("#stale-banner")).to_contain_text(
        re.compile(r"Connection lost at \d\d:\d\d:\d\d")
    )
    expect_stale_prices(page)
    expect_rows_marked_stale(page)
    page.screenshot(path=str(tmp_path / "server-down.png"))

    second = ServerProcess(["--source", "sim"], SIM, tmp_path / "second.log", port)
    try:
        second.wait_ready()
        # "Retry now", unless the page's own backoff got there first while the server
        # started (on a busy machine it may): checked and clicked in one step in the page.
        page.evaluate("() => { const b = document.querySelector('#connect');"
                      " if (!b.disabled) { b.click(); } }")  # fmt: skip
        expect(page.locator("#conn-state")).to_have_text("connected", timeout=10_000)
        expect(page.locator("#stale-banner")).to_be_hidden()
        expect(page.locator("tr.row-stale")).to_have_count(0, timeout=10_000)
        expect_fresh(page)
        assert sorted(rows(page)) == sorted(set(rows(page)))
        assert len(rows(page)) == DEFAULT_SYMBOLS
        counts = stats(page)
        assert counts["reconnects"] == 1
        assert counts["resumes"] == 1  # it offered the last seq it saw
    finally:
        second.stop()


def test_dropped_link_resumes_without_gaps_on_ws_and_sse(
    page: Page, ticker_server: ServerProcess
) -> None:
    """A cut connection (the server keeps running) is resumed with the last event id on
    both transports: the missed ticks arrive, the seq check finds no gap, no reset."""
    with link_proxy(ticker_server.port) as (proxy, _thread, loop):
        load(page, f"http://127.0.0.1:{proxy.port}/")
        wait_for_more_ticks(page, 40)
        expect(page.locator("#stat-gaps")).to_have_text("0")
        for transport, resumes in (("ws", 1), ("sse", 2)):
            if transport == "sse":
                page.select_option("#transport", "sse")
                expect(page.locator("#stat-transport")).to_have_text("SSE")
                wait_for_more_ticks(page, tick_count(page) + 40)
            loop.call_soon_threadsafe(proxy.reset_all)
            page.wait_for_function(
                f"window.tickcast.stats().resumes === {resumes} "
                "&& window.tickcast.stats().conn === 'connected'",
                timeout=15_000,
            )
            wait_for_more_ticks(page, tick_count(page) + 40)
            counts = stats(page)
            assert counts["gapsChecked"] is True
            assert (counts["gaps"], counts["resets"]) == (0, 0)
            assert counts["reconnects"] == resumes
        assert len(rows(page)) == DEFAULT_SYMBOLS
        expect(page.locator("#stat-resumes")).to_have_text("2")


def test_gaps_are_counted_when_ticks_are_skipped_and_not_for_a_subset(
    page: Page, ticker_server: ServerProcess
) -> None:
    """A throttled stream skips seqs on purpose: the panel counts those gaps. With a
    subset of the symbols seq is not contiguous, and the panel says it does not check."""
    load(page, ticker_server.base + "/?throttle_ms=500")
    page.wait_for_function("window.tickcast.stats().missed > 5", timeout=10_000)
    expect(page.locator("#stat-gaps")).to_contain_text("ticks missed")
    page.click('button.remove[aria-label="Remove ADAUSDT"]')
    wait_for_more_ticks(page, tick_count(page) + 10)
    expect(page.locator("#stat-gaps")).to_have_text("not checked (subset)")


def test_page_opened_from_disk_takes_a_server_parameter(page: Page, server: ServerProcess) -> None:
    """index.html from a file:// URL, pointed at the test's server with ?server=, loads
    its chart library from disk, streams prices and fills a chart from /history."""
    url = (STATIC / "index.html").as_uri() + "?server=" + server.base
    load(page, url)
    assert page.evaluate("typeof window.uPlot") == "function"
    expect(page.locator("#stat-server")).to_have_text(f"127.0.0.1:{server.port}")
    page.click('tr[data-symbol="ETHUSDT"] .symbol-btn')
    page.wait_for_function("tickcast.chart.fromHistory() > 0", timeout=10_000)


@pytest.mark.parametrize(
    ("width", "hidden", "shown"), [(390, "col-bid", "col-age"), (1920, None, "col-high")]
)
def test_narrow_and_wide_screens_fit_with_labelled_controls(
    browser: Browser, server: ServerProcess, width: int, hidden: str | None, shown: str
) -> None:
    """No horizontal page scroll at 390 px (less important columns give way) nor at
    1920 px (all columns), chart open; every control has an accessible name."""
    with open_page(browser, width, 844) as page:
        load(page, server.base + "/")
        page.click('tr[data-symbol="BTCUSDT"] .symbol-btn')
        page.wait_for_function("tickcast.chart.shown() > 0", timeout=10_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        wrap = page.eval_on_selector(".table-wrap", "w => [w.scrollWidth, w.clientWidth]")
        assert wrap[0] <= wrap[1], f"the table itself overflows: {wrap}"
        expect(page.locator(f"thead th.{shown}")).to_be_visible()
        if hidden:
            expect(page.locator(f"thead th.{hidden}")).to_be_hidden()
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('button, input, select')]
                 .filter(el => el.offsetParent !== null || el.type === 'radio')
                 .filter(el => !(el.getAttribute('aria-label') || (el.labels && el.labels.length)
                                 || el.textContent.trim() || el.title))
                 .map(el => el.outerHTML.slice(0, 80))"""
        )
        assert unnamed == []


def test_a_missing_token_is_explained_and_the_token_parameter_connects(
    browser: Browser, tmp_path: Path
) -> None:
    """With TICKCAST_TOKEN set, the page opened without ?token= says the server requires a
    token and to open the page with ?token= (over WebSocket and SSE), a wrong one says it
    was not accepted, and the page opened with the token connects."""
    env = {**SIM, "TICKCAST_TOKEN": "s3cret"}
    with running_server(tmp_path, ["--source", "sim"], env) as server:
        for query, words in (
            ("/", "requires a token"),
            ("/?transport=sse", "requires a token"),
            ("/?token=wrong", "did not accept the token"),
        ):
            with open_page(browser) as page:
                page.goto(server.base + query)
                banner = page.locator("#stale-banner")
                expect(banner).to_contain_text(words, timeout=10_000)
                expect(banner).to_contain_text("?token=")
                expect(banner).not_to_contain_text("Cannot reach")
                expect(page.locator("tr[data-symbol]")).to_have_count(0)
        with open_page(browser) as page:
            load(page, server.base + "/?token=s3cret")
            expect(page.locator("#stale-banner")).to_be_hidden()


def test_a_client_token_connects_says_when_it_expires_and_is_renewed_by_the_page(
    browser: Browser, tmp_path: Path
) -> None:
    """With TICKCAST_JWT_SECRET and TICKCAST_JWT_REST set, the page opened with ?token=
    and a short-lived token loads (its REST reads carry the token) and says the token is
    expiring; a page that defines window.tickcastRenewToken stays connected
    past the first token's exp (the renewed one went as a refresh)."""
    from .edge.tokenkit import SECRET, hs256

    env = {**SIM, "TICKCAST_JWT_SECRET": SECRET, "TICKCAST_JWT_LEEWAY": "0"}
    # REST needs the token too: the page's reads (symbols, prices, candles) carry it.
    env["TICKCAST_JWT_REST"] = "1"
    with running_server(tmp_path, ["--source", "sim"], env, ready="/healthz") as server:
        fresh = hs256({"sub": "alice", "exp": int(time.time()) + 3600})
        # Data first (a page's reads during a slow start would outlive its short token).
        headers = {"Authorization": f"Bearer {fresh}"}
        wait_until(lambda: server.get("/price", headers=headers).status_code == 200, 20)
        # Tokens of 20 s and 10 s: inside the 30 s warning from the start, and long enough
        # for a page's reads on a loaded machine (at 6 s, a slow load outlived them).
        short = hs256({"sub": "alice", "exp": int(time.time()) + 20})
        with open_page(browser) as page:
            load(page, server.base + "/?token=" + short)
            expect(page.locator("#error")).to_contain_text("expires in", timeout=5_000)
        short = hs256({"sub": "alice", "exp": int(time.time()) + 10})
        with open_page(browser) as page:
            page.add_init_script(f"window.tickcastRenewToken = () => {json.dumps(fresh)};")
            load(page, server.base + "/?token=" + short)
            page.wait_for_timeout(11_000)  # past the short token's exp
            expect(page.locator("#conn-state")).to_have_text("connected")
            expect(page.locator("#error")).not_to_contain_text("expire")
        closes = server.status()["edge"]["closes"]  # type: ignore[index]
        assert closes.get("token_expired", 0) == 0  # the first page left before its exp


def test_allowed_origins_admit_the_servers_own_page_and_explain_a_refused_one(
    browser: Browser, tmp_path: Path
) -> None:
    """With TICKCAST_ALLOWED_ORIGINS=http://example.com the dashboard at the server's own
    address still connects (WebSocket and SSE); a page of another origin (a file opened
    from disk, another host name) is told that the server refused its origin and which
    setting to change."""
    env = {**SIM, "TICKCAST_ALLOWED_ORIGINS": "http://example.com"}
    with running_server(tmp_path, ["--source", "sim"], env) as server:
        with open_page(browser) as page:
            load(page, server.base + "/")
            page.select_option("#transport", "sse")
            expect(page.locator("#stat-transport")).to_have_text("SSE")
            wait_for_more_ticks(page, tick_count(page) + 10)
            expect(page.locator("#conn-state")).to_have_text("connected")
        elsewhere = f"http://localhost:{server.port}"  # the same server, another origin
        for url, origin in (
            ((STATIC / "index.html").as_uri(), "null, a file opened from disk"),
            (elsewhere + "/", elsewhere),
        ):
            with open_page(browser) as page:
                page.goto(url + "?server=" + server.base)
                banner = page.locator("#stale-banner")
                expect(banner).to_contain_text(
                    f"refused this page's origin ({origin})", timeout=10_000
                )
                expect(banner).to_contain_text("TICKCAST_ALLOWED_ORIGINS must list it")
                expect(page.locator("tr[data-symbol]")).to_have_count(0)
        refused = server.get("/sse", headers={"Origin": "http://elsewhere.example"})
        assert refused.status_code == 403


# Every text the LINKUSDT row's price, bid and high cells show, from the first render on.
RECORD_LINK_CELLS = """
window.linkTexts = [];
new MutationObserver(function () {
  const row = document.querySelector('tr[data-symbol="LINKUSDT"]');
  if (!row) {
    return;
  }
  for (const cell of [".price-val", ".bid", ".high"]) {
    const text = row.querySelector(cell).textContent;
    if (text && window.linkTexts[window.linkTexts.length - 1] !== text) {
      window.linkTexts.push(text);
    }
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def link_capture(path: Path) -> None:
    """A capture of LINKUSDT (quoted to 0.001, sent with Binance's 8 decimals) whose price
    goes 14.966, 14.960: the server trims the second to 14.96. Every other price of both
    ticks has fewer decimals than the symbol's three."""
    with path.open("wb") as out:
        for i, price in enumerate(("14.96600000", "14.96000000")):
            event = 1_700_000_000_000 + 300 * i
            data = {"e": "24hrTicker", "E": event, "s": "LINKUSDT", "c": price, "o": "14.90000000",
                    "h": "15.10000000", "l": "14.50000000", "b": "14.95000000", "a": "14.97000000",
                    "p": "0.06000000", "P": "0.400", "v": "1000.00000000", "q": "14960.00000000"}  # fmt: skip
            frame = orjson.dumps({"stream": "linkusdt@ticker", "data": data}).decode()
            out.write(orjson.dumps({"t": event, "source": "binance", "frame": frame}) + b"\n")


def test_a_symbols_prices_keep_its_decimals_from_the_first_render(
    page: Page, tmp_path: Path
) -> None:
    """A symbol quoted to 0.001 whose price goes 14.966, 14.96 (a trailing zero trimmed)
    shows 14.966 and 14.960: its price, bid and high keep three decimals from the first
    render on, whichever tick the page sees first (the server's /symbols says three)."""
    capture = tmp_path / "link.jsonl"
    link_capture(capture)
    env = {"TICKCAST_SYMBOLS": "LINKUSDT"}
    with running_server(
        tmp_path, ["--source", f"replay:{capture}"], env, "/prices/LINKUSDT"
    ) as server:
        body = server.get("/symbols").json()
        assert body["price_decimals"] == {"LINKUSDT": 3}
        page.add_init_script(RECORD_LINK_CELLS)
        page.goto(server.base + "/")
        page.wait_for_function(
            "['14.966', '14.960'].every(p => window.linkTexts.includes(p))", timeout=15_000
        )
        shown = page.evaluate("window.linkTexts")
        assert {"14.950", "15.100"} <= set(shown)
        assert [t for t in shown if not re.fullmatch(r"1[45]\.\d{3}", t)] == [], shown


def test_link_parameters_name_the_server_symbols_transport_and_throttle(
    browser: Browser, server: ServerProcess
) -> None:
    """?server= is followed from a page of another origin too; ?symbols= naming a symbol
    not served shows the served ones (over SSE too) and says which was left out; a
    ?throttle_ms= the server would refuse is ignored with a message, not a dead page."""
    with open_page(browser) as page:
        page.goto(
            f"http://localhost:{server.port}/?server={server.base}&transport=sse"
            "&symbols=btcusdt,DOTUSDT,ETHUSDT"
        )
        expect(page.locator("#conn-state")).to_have_text("connected", timeout=15_000)
        expect(page.locator("#stat-server")).to_have_text(f"127.0.0.1:{server.port}")
        expect(page.locator("#stat-transport")).to_have_text("SSE")
        wait_for_more_ticks(page, 10)
        assert sorted(rows(page)) == ["BTCUSDT", "ETHUSDT"]
        expect(page.locator("#error")).to_contain_text("left out: DOTUSDT")
    with open_page(browser) as page:
        load(page, server.base + "/?throttle_ms=99999")
        expect(page.locator("#error")).to_contain_text("Ignoring ?throttle_ms=99999")
        assert stats(page)["missed"] == 0


def shown_columns(page: Page) -> list[str]:
    """The droppable columns the header shows, by name (``high`` for ``col-high``)."""
    result = page.evaluate(
        """() => [...document.querySelectorAll('thead th[class*="col-"]')]
             .filter(th => getComputedStyle(th).display !== 'none')
             .map(th => [...th.classList].find(c => c.startsWith('col-')).slice(4))"""
    )
    assert isinstance(result, list)
    return [str(name) for name in result]


@pytest.mark.parametrize(("width", "height", "chart"), [(1280, 800, False), (1600, 900, True)])
def test_high_and_low_are_shown_when_there_is_room(
    browser: Browser, server: ServerProcess, width: int, height: int, chart: bool
) -> None:
    """At 1280 px, and at 1600 px with the chart beside the table, 24h high and low are
    shown and the table fits its frame."""
    with open_page(browser, width, height) as page:
        load(page, server.base + "/")
        if chart:
            page.click('tr[data-symbol="BTCUSDT"] .symbol-btn')
            page.wait_for_function("tickcast.chart.shown() > 0", timeout=10_000)
        wait_for_more_ticks(page, tick_count(page) + 10)
        page.wait_for_timeout(100)  # a fit runs at the next animation frame
        expect(page.locator("thead th.col-high")).to_be_visible()
        expect(page.locator('tr[data-symbol="BTCUSDT"] td.col-low')).to_be_visible()
        wrap = page.eval_on_selector(".table-wrap", "w => [w.scrollWidth, w.clientWidth]")
        assert wrap[0] <= wrap[1], f"the table overflows its frame: {wrap}"


def test_narrow_table_drops_less_important_columns_first(
    browser: Browser, server: ServerProcess
) -> None:
    """At 700 px the table drops columns least important first (trend, quote volume, ...),
    keeps symbol, price, change and age, and fits its frame; widening the window brings
    the dropped columns back."""
    order = ["spark", "qvolume", "high", "low", "bid", "ask", "volume", "spread"]
    with open_page(browser, 700, 800) as page:
        load(page, server.base + "/")
        wait_for_more_ticks(page, tick_count(page) + 10)
        page.wait_for_timeout(100)
        shown = shown_columns(page)
        dropped = [name for name in order if name not in shown]
        assert dropped, f"nothing dropped at 700 px: {shown}"
        assert dropped == order[: len(dropped)], f"dropped out of order: {dropped}"
        for cell in (".price", ".change", ".age"):
            expect(page.locator(f'tr[data-symbol="BTCUSDT"] {cell}')).to_be_visible()
        wrap = page.eval_on_selector(".table-wrap", "w => [w.scrollWidth, w.clientWidth]")
        assert wrap[0] <= wrap[1], f"the table overflows its frame: {wrap}"
        page.set_viewport_size({"width": 1400, "height": 800})
        expect(page.locator("thead th.col-spark")).to_be_visible()
        expect(page.locator("thead th.col-high")).to_be_visible()


def test_vendored_chart_library_is_served_and_matches_its_readme(server: ServerProcess) -> None:
    """The pinned uPlot files are served next to the page (no CDN) and their sha256 are
    the ones vendor/README.md records."""
    readme = (STATIC / "vendor" / "README.md").read_text()
    for name, media in (("uPlot.iife.min.js", "javascript"), ("uPlot.min.css", "css")):
        response = server.get(f"/vendor/{name}")
        assert response.status_code == 200
        assert media in response.headers["content-type"]
        digest = hashlib.sha256(response.content).hexdigest()
        assert f"| `{name}` |" in readme and digest in readme
    assert (STATIC / "vendor" / "LICENSE").read_text().startswith("The MIT License")
    html = (STATIC / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "vendor/uPlot.iife.min.js" in refs
    assert [r for r in refs if re.match(r"(https?:)?//", r)] == []


# ---------------------------------------------------------------- candles and trade tape

# The streams the page follows for a selected symbol, in the order it subscribes them.
KINDS = ("trades", "kline_1m", "book")
BTC_STREAMS = [f"BTCUSDT@{kind}" for kind in KINDS]


def open_symbol(page: Page, symbol: str, kinds: tuple[str, ...] = KINDS) -> None:
    """Select ``symbol`` and wait until its candles and trades are loaded and its streams
    (of ``kinds``: those the server carries) followed."""
    page.click(f'tr[data-symbol="{symbol}"] .symbol-btn')
    expect(page.locator("#chart-title")).to_have_text(symbol)
    page.wait_for_function(
        """([s, kinds]) => tickcast.chart.candles() > 0 && !tickcast.chart.candlesLoading()
             && !tickcast.trades.loading()
             && tickcast.following().join() === kinds.map(k => s + "@" + k).join()""",
        arg=[symbol, list(kinds)],
        timeout=15_000,
    )


def plotted_candles(page: Page) -> dict[int, tuple[float, float, float, float]]:
    """What the chart was last given to draw: open time (ms) -> open, high, low, close."""
    data = page.evaluate("tickcast.chart.plotData()")
    assert isinstance(data, list) and len(data) == 5
    times, opens, highs, lows, closes = data
    return {
        round(t * 1000): (o, h, lo, c)
        for t, o, h, lo, c in zip(times, opens, highs, lows, closes, strict=True)
    }


def rest_candles(server: ServerProcess, symbol: str) -> list[dict[str, object]]:
    response = server.get(f"/klines/{symbol}?interval=1m&limit=1000")
    assert response.status_code == 200
    klines = response.json()
    assert isinstance(klines, list)
    return klines


def ohlc(kline: dict[str, object]) -> tuple[float, float, float, float]:
    return cast(
        tuple[float, float, float, float],
        tuple(float(cast(float, kline[k])) for k in ("open", "high", "low", "close")),
    )


def tape_ids(page: Page) -> list[int]:
    ids = page.evaluate("tickcast.trades.ids()")
    assert isinstance(ids, list)
    return [int(i) for i in ids]


def rest_trade_ids(server: ServerProcess, symbol: str, limit: int = 200) -> list[int]:
    response = server.get(f"/trades/{symbol}?limit={limit}")
    assert response.status_code == 200
    return [int(t["trade_id"]) for t in response.json()]


def subscriptions(server: ServerProcess) -> int:
    edge = server.status()["edge"]
    assert isinstance(edge, dict)
    return int(edge["subscriptions"])


def wait_for_subscriptions(server: ServerProcess, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := subscriptions(server)) != count:
        assert time.monotonic() < deadline, f"{now} subscriptions on the server, not {count}"
        time.sleep(0.1)


def expect_tape_consistent(page: Page, server: ServerProcess) -> list[int]:
    """The tape's trade ids: newest first, no duplicate, and exactly the server's trades
    between its oldest and newest row (none missed, none invented)."""
    ids = tape_ids(page)
    assert ids == sorted(set(ids), reverse=True), f"not unique and newest first: {ids}"
    served = rest_trade_ids(server, "BTCUSDT")
    between = [i for i in served if ids[-1] <= i <= ids[0]]
    assert sorted(between, reverse=True) == ids
    return ids


def test_candles_are_the_servers_klines_and_follow_live_updates(
    page: Page, server: ServerProcess
) -> None:
    """Clicking BTCUSDT draws its one-minute candles from /klines, hundreds of them (on a
    server just started, once it has fetched their history), with the OHLC /klines gives
    for the same open times; a live kline changes the last candle, and it ends equal to
    the server's candle for that minute."""
    load(page, server.base + "/")
    open_symbol(page, "BTCUSDT")
    page.wait_for_function("tickcast.chart.shown() >= 500", timeout=40_000)
    klines = rest_candles(server, "BTCUSDT")
    assert len(klines) >= 500  # the simulated exchange's history reaches back 1,000 minutes
    plotted = plotted_candles(page)
    assert len(plotted) >= 500
    assert page.evaluate("tickcast.chart.shown()") == len(plotted)
    closed = {int(cast(int, k["open_time"])): ohlc(k) for k in klines if k["closed"]}
    # Not the newest two: one may have closed while the page's redraw was pending.
    common = sorted(t for t in closed.keys() & plotted.keys() if t < max(plotted) - 60_000)
    assert len(common) >= 500
    assert [plotted[t] for t in common] == [closed[t] for t in common]
    times = sorted(plotted)
    assert all(b - a == 60_000 for a, b in zip(times, times[1:], strict=False))
    expect(page.locator("#chart-note")).to_contain_text("one-minute candles")
    expect(page.locator("#chart")).to_have_attribute(
        "aria-label", re.compile(r"BTCUSDT price, one-minute candles, last 4 hours: open ")
    )

    last = max(plotted)
    page.wait_for_function(
        """([t, before]) => {
             const d = tickcast.chart.plotData(), n = d[0].length - 1;
             return d[0][n] * 1000 !== t || JSON.stringify(d.slice(1).map(c => c[n])) !== before;
           }""",
        arg=[last, json.dumps(list(plotted[last]))],
        timeout=15_000,
    )
    deadline = time.monotonic() + 10
    while True:  # the page and /klines move together: equal once both show one update
        newest = rest_candles(server, "BTCUSDT")[-1]
        shown = plotted_candles(page)
        t = int(cast(int, newest["open_time"]))
        if max(shown) == t and shown[t] == ohlc(newest):
            break
        assert time.monotonic() < deadline, f"last candle {shown.get(t)} is not {newest}"
        time.sleep(0.2)
    assert len(shown) >= len(plotted)


def test_trade_tape_fills_from_rest_then_live_without_duplicates(
    page: Page, server: ServerProcess
) -> None:
    """The tape shows /trades and then live trades, newest first, one row per trade id
    and no hole against the server's /trades; each row shows ▲ Buy / ▼ Sell with its side
    class, the price with the symbol's decimals, the size and the time."""
    load(page, server.base + "/")
    open_symbol(page, "BTCUSDT")
    page.wait_for_function("tickcast.trades.ids().length >= 3", timeout=15_000)
    first = expect_tape_consistent(page, server)
    page.wait_for_function("n => tickcast.trades.ids()[0] >= n + 3", arg=first[0], timeout=15_000)
    ids = expect_tape_consistent(page, server)
    assert len(ids) <= 50

    trade_id = ids[0]
    row = page.locator(f'#tape-rows tr[data-trade-id="{trade_id}"]')
    trade = next(
        t for t in server.get("/trades/BTCUSDT?limit=200").json() if t["trade_id"] == trade_id
    )
    side = trade["side"]
    expect(row).to_have_class(re.compile(rf"\btrade {side}\b"))
    expect(row.locator(".side")).to_have_text("▲ Buy" if side == "buy" else "▼ Sell")
    price = row.locator(".price").inner_text()
    assert re.fullmatch(r"[0-9,]+\.\d\d", price), price  # BTCUSDT is quoted to 0.01
    assert number(price) == trade["price"]
    assert number(row.locator(".qty").inner_text()) == trade["qty"]
    expect(row.locator(".time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    color = row.locator(".side").evaluate("td => getComputedStyle(td).color")
    assert color == ("rgb(86, 211, 100)" if side == "buy" else "rgb(255, 123, 114)")  # --up/--down
    expect(page.locator(".tape")).to_have_attribute("aria-labelledby", "tape-title")


def book_ids(frames: list[str], stream: str) -> list[int]:
    """The update ids of the ``book`` messages of ``stream`` among WebSocket frames."""
    books = (orjson.loads(f) for f in frames if f'"stream":"{stream}"' in f)
    return [int(b["update_id"]) for b in books if b.get("type") == "book"]


def expect_book_unavailable(page: Page, symbol: str) -> None:
    """The ladder says the symbol's book is not served, and shows no levels."""
    note = page.locator("#book-note")
    expect(note).to_contain_text("Order book unavailable", timeout=10_000)
    expect(note).to_contain_text(re.compile(rf"{symbol}@(book|depth) is not served"))
    expect(page.locator("#book-table")).to_be_hidden()
    expect(page.locator("#book-state")).to_have_text("unavailable")
    book = page.evaluate("tickcast.book()")
    assert (book["symbol"], book["state"], book["bids"], book["asks"]) == (
        symbol,
        "unavailable",
        [],
        [],
    )


def ladder(page: Page) -> dict[str, object]:
    """What the ladder shows, read in one go: its rows' prices and sizes per side (the
    non-empty ones), the spread, the update id and state as drawn, and the hook's view."""
    result = page.evaluate(
        """() => {
             const rows = Array.from(document.querySelectorAll("#book-rows tr"));
             const num = t => t === "" ? null : Number(t.replace(/,/g, ""));
             const side = (p, q) => rows
               .map(r => [num(r.querySelector(p).textContent), num(r.querySelector(q).textContent)])
               .filter(l => l[0] !== null);
             const bars = c => rows.map(r => parseFloat(r.querySelector(c + " .bar").style.width));
             return {
               rows: rows.length,
               bids: side(".bid-price", ".bid-qty"),
               asks: side(".ask-price", ".ask-qty"),
               bidBars: bars(".bid-price"),
               askBars: bars(".ask-price"),
               spread: document.querySelector("#book-spread").textContent,
               bps: document.querySelector("#book-spread-bps").textContent,
               updateId: document.querySelector("#book-update-id").textContent,
               state: document.querySelector("#book-state").textContent,
               hook: tickcast.book(),
             };
           }"""
    )
    assert isinstance(result, dict)
    return result


def test_order_book_ladder_is_the_servers_book(page: Page, server: ServerProcess) -> None:
    """The selected symbol's ladder shows 20 bids (descending) and 20 asks (ascending),
    best bid below best ask, the spread as best ask minus best bid (and in basis points of
    the mid), the update id, and bars of cumulative size; at an update id /book also
    answers, every level shown is the server's."""
    load(page, server.base + "/")
    open_symbol(page, "BTCUSDT")
    page.wait_for_function(
        "tickcast.book().state === 'live' && tickcast.book().received !== null"
        " && tickcast.book().bids.length === 20 && tickcast.book().asks.length === 20",
        timeout=10_000,
    )
    expect(page.locator("#book-state")).to_have_text("live")
    expect(page.locator(".book-legend")).to_contain_text("cumulative size")
    deadline = time.monotonic() + 30
    while True:  # /book first, then the page catches up to its update id (or passes it)
        rest = server.get("/book/BTCUSDT?limit=20").json()
        caught_up = time.monotonic() + 1
        while True:
            shown = ladder(page)
            hook = cast(dict[str, object], shown["hook"])
            if int(str(hook["update_id"])) >= rest["update_id"] or time.monotonic() > caught_up:
                break
            time.sleep(0.02)
        if rest["update_id"] == hook["update_id"]:
            break
        assert time.monotonic() < deadline, f"never at the same update id as /book: {rest}"
    assert shown["rows"] == 20
    bids = cast(list[list[float]], shown["bids"])
    asks = cast(list[list[float]], shown["asks"])
    assert (hook["bids"], hook["asks"]) == (bids, asks), "the hook is not what is drawn"
    assert (bids, asks) == (rest["bids"], rest["asks"])
    assert shown["updateId"] == str(rest["update_id"])
    assert len(bids) == len(asks) == 20
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    best_bid, best_ask = bids[0][0], asks[0][0]
    assert best_bid < best_ask
    assert number(str(shown["spread"])) == round(best_ask - best_bid, 2)
    assert str(shown["spread"]) == f"{best_ask - best_bid:,.2f}"  # BTCUSDT is quoted to 0.01
    bps = (best_ask - best_bid) / ((best_ask + best_bid) / 2) * 10_000
    assert str(shown["bps"]).endswith(" bp")
    assert number(str(shown["bps"])) == pytest.approx(bps, rel=0.01)
    # Cumulative (% of the row): each bar at least as long as the one above it; the deeper
    # side's last bar spans its half of the row.
    for bars in (shown["bidBars"], shown["askBars"]):
        widths = cast(list[float], bars)
        assert widths == sorted(widths) and widths[-1] > 0
    assert max(cast(list[float], shown["bidBars"]) + cast(list[float], shown["askBars"])) == 50


def test_the_ladder_says_syncing_while_the_book_is_not_whole(page: Page, tmp_path: Path) -> None:
    """From the exchange (the simulated one, its own process): a diff skipped while its
    REST is down breaks BTCUSDT's book, and the ladder says "syncing" with no levels
    until the server has resynced it; then it shows the book again, at a later id."""
    with sim_exchange("--rate", "4") as sim_port:
        sim = f"http://127.0.0.1:{sim_port}"
        env = {
            "TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{sim_port}",
            "TICKCAST_BINANCE_REST_URL": sim,
            "TICKCAST_STREAM_SYMBOLS": "BTCUSDT",
        }
        with running_server(tmp_path, ["--source", "binance"], env) as server:
            load(page, server.base + "/")
            open_symbol(page, "BTCUSDT")
            page.wait_for_function("tickcast.book().state === 'live'", timeout=10_000)
            before = int(page.evaluate("tickcast.book().update_id"))
            # REST down first: the resync cannot take its snapshot until the window ends.
            httpx.post(f"{sim}/_sim/fault?kind=rest_down&duration=3").raise_for_status()
            httpx.post(f"{sim}/_sim/fault?kind=depth_gap&symbol=BTCUSDT").raise_for_status()
            expect(page.locator("#book-state")).to_have_text("syncing", timeout=5_000)
            expect(page.locator("#book-state")).to_be_visible()
            expect(page.locator("#book-note")).to_contain_text("Order book syncing")
            expect(page.locator("#book-update-id")).to_have_text("\N{EN DASH}")
            assert ladder(page)["bids"] == [] and ladder(page)["asks"] == []
            book = page.evaluate("tickcast.book()")
            assert book["state"] == "broken" and book["bids"] == [] and book["asks"] == []
            assert server.get("/book/BTCUSDT?limit=20").status_code == 503
            expect(page.locator("#book-state")).to_have_text("live", timeout=12_000)
            shown = ladder(page)
            assert len(cast(list[object], shown["bids"])) == 20
            assert int(str(shown["updateId"])) > before
            expect(page.locator("#book-note")).to_be_hidden()


def test_switching_symbol_unsubscribes_the_old_streams(page: Page, server: ServerProcess) -> None:
    """Selecting ETHUSDT after BTCUSDT unsubscribes BTCUSDT's trades, candles and book
    (the server's count of subscriptions stays at the tickers plus three, and no BTCUSDT
    trade, candle or book reaches the page afterwards) and the ladder shows ETHUSDT's
    latest book; closing the chart unsubscribes ETHUSDT's."""
    frames: list[str] = []  # in arrival order (Playwright delivers them in its own calls)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    load(page, server.base + "/")
    wait_for_subscriptions(server, DEFAULT_SYMBOLS)
    open_symbol(page, "BTCUSDT")
    wait_for_subscriptions(server, DEFAULT_SYMBOLS + 3)
    open_symbol(page, "ETHUSDT")
    page.wait_for_timeout(1000)  # frames already on their way when it switched
    switched = len(frames)
    page.wait_for_function(
        "n => tickcast.trades.ids()[0] >= n + 2", arg=tape_ids(page)[0], timeout=15_000
    )
    page.wait_for_timeout(500)
    assert subscriptions(server) == DEFAULT_SYMBOLS + 3
    after = frames[switched:]
    late = [f for f in after if re.search(r'"BTCUSDT@(trades|kline_1m|book)"', f)]
    assert late == [], f"BTCUSDT streams still arrive: {late[:3]}"
    assert sum('"ETHUSDT@trades"' in f for f in after) >= 2
    assert sum('"ETHUSDT@book"' in f for f in after) >= 2
    page.wait_for_function(
        "tickcast.book().symbol === 'ETHUSDT' && tickcast.book().state === 'live'"
    )
    assert page.evaluate("tickcast.book().received.update_id") in book_ids(frames, "ETHUSDT@book")
    page.click("#chart-close")
    wait_for_subscriptions(server, DEFAULT_SYMBOLS)
    assert page.evaluate("tickcast.following()") == []


def test_a_gap_message_is_shown_in_the_tape(page: Page, server: ServerProcess) -> None:
    """A `gap` message for the selected symbol's trades (the server dropped trades this
    page did not take in time) shows a "42 trades missed" line in the tape, above the
    trades before it and below the ones after it."""
    routes: list[WebSocketRoute] = []

    def through(route: WebSocketRoute) -> None:
        route.connect_to_server()  # the real server, frames passed both ways
        routes.append(route)

    page.route_web_socket(re.compile(rf"^ws://127\.0\.0\.1:{server.port}/ws(\?.*)?$"), through)
    load(page, server.base + "/")
    open_symbol(page, "BTCUSDT")
    page.wait_for_function("tickcast.trades.ids().length > 0", timeout=15_000)
    gap = {"type": "gap", "stream": "BTCUSDT@trades", "missed": 42}
    routes[-1].send(json.dumps(gap))
    line = page.locator("#tape-rows tr.tape-gap")
    expect(line).to_have_text("⚠ 42 trades missed")
    expect(line).to_be_visible()
    routes[-1].send(json.dumps({**gap, "stream": "ETHUSDT@trades"}))  # not this symbol's
    # The newest trade when the gap came, then one after it.
    before = int(page.get_attribute("#tape-rows tr.tape-gap + tr", "data-trade-id") or 0)
    page.wait_for_function("n => tickcast.trades.ids()[0] > n", arg=before, timeout=15_000)
    expect(line).to_have_count(1)
    order = page.eval_on_selector_all(
        "#tape-rows tr",
        "rs => rs.map(r => r.classList.contains('tape-gap') ? 'gap' : Number(r.dataset.tradeId))",
    )
    at = order.index("gap")
    assert at > 0 and all(i > before for i in order[:at]) and order[at + 1] == before, order


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_candles_and_tape_catch_up_after_a_dropped_link(
    page: Page, server: ServerProcess, transport: str
) -> None:
    """A cut connection (the server keeps running), on WebSocket and SSE: once the page is
    back, the selected symbol's streams are followed again, and the trades and candles
    missed meanwhile are filled in with no duplicate and no hole; the tape dims while the
    page is not connected, as the table's prices do, and the ladder says "stale" until
    the book moves on again."""
    with link_proxy(server.port) as (proxy, _thread, loop):
        base = f"http://127.0.0.1:{proxy.port}"
        load(page, base + f"/?transport={transport}")
        open_symbol(page, "BTCUSDT")
        page.wait_for_function("tickcast.trades.ids().length >= 2", timeout=15_000)
        page.wait_for_function("tickcast.book().state === 'live'", timeout=10_000)
        loop.call_soon_threadsafe(proxy.reset_all)
        expect(page.locator("body")).to_have_attribute("data-fresh", "no", timeout=5_000)
        expect(page.locator("#book-state")).to_have_text("stale")
        book_id = page.evaluate("tickcast.book().update_id")
        dimmed = page.eval_on_selector(
            "#tape-rows tr.trade td.price", "td => Number(getComputedStyle(td).opacity)"
        )
        assert dimmed < 1
        newest = tape_ids(page)[0]
        page.wait_for_function(
            "window.tickcast.stats().conn === 'connected' && window.tickcast.stats().reconnects >= 1",
            timeout=15_000,
        )
        page.wait_for_function("n => tickcast.trades.ids()[0] >= n + 3", arg=newest, timeout=15_000)
        assert page.evaluate("tickcast.following()") == BTC_STREAMS
        page.wait_for_function(
            "n => tickcast.book().state === 'live' && tickcast.book().update_id > n", arg=book_id
        )
        expect(page.locator("#book-state")).to_have_text("live")
        expect_tape_consistent(page, server)
        page.wait_for_function("tickcast.chart.shown() >= 500", timeout=40_000)
        times = sorted(plotted_candles(page))
        assert len(times) >= 500
        assert all(b - a == 60_000 for a, b in zip(times, times[1:], strict=False))


def test_a_symbol_without_streams_says_so_and_gaps_count_when_every_stream_is_followed(
    page: Page, tmp_path: Path
) -> None:
    """With trades and candles carried for ETHUSDT only and no books, BTCUSDT's chart,
    tape and order book say they are not served (and nothing is subscribed for it);
    selecting ETHUSDT follows every stream the server carries, so the seq check runs again
    and finds no gap, and its order book says it is not served either."""
    env = {**SIM, "TICKCAST_STREAM_SYMBOLS": "ETHUSDT", "TICKCAST_STREAM_KINDS": "trades,klines"}
    with running_server(tmp_path, ["--source", "sim"], env) as server:
        load(page, server.base + "/")
        expect(page.locator("#stat-gaps")).to_have_text("not checked (other streams)")
        page.click('tr[data-symbol="BTCUSDT"] .symbol-btn')
        expect(page.locator("#chart-note")).to_contain_text("Candles unavailable", timeout=10_000)
        expect(page.locator("#chart-note")).to_contain_text("BTCUSDT@kline_1m is not served")
        expect(page.locator("#tape-note")).to_contain_text("Trades unavailable")
        expect_book_unavailable(page, "BTCUSDT")
        assert page.evaluate("tickcast.following()") == []
        expect(page.locator("#error")).to_be_empty()
        open_symbol(page, "ETHUSDT", ("trades", "kline_1m"))
        expect_book_unavailable(page, "ETHUSDT")
        page.wait_for_function("window.tickcast.stats().gapsChecked", timeout=10_000)
        page.wait_for_function("n => tickcast.trades.ids()[0] >= n + 3", arg=tape_ids(page)[0])
        wait_for_more_ticks(page, tick_count(page) + 20)
        counts = stats(page)
        assert (counts["gapsChecked"], counts["gaps"], counts["missed"]) == (True, 0, 0)
        expect(page.locator("#stat-gaps")).to_have_text("0")


def test_every_file_the_page_names_is_served(server: ServerProcess) -> None:
    """Each script and stylesheet index.html loads is served next to it, with its type."""
    html = (STATIC / "index.html").read_text()
    names = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert {"candles.js", "tape.js", "ladder.js", "follow.js", "seq.js"} <= set(names)
    for name in names:
        response = server.get(f"/{name}")
        assert response.status_code == 200, name
        assert ("css" if name.endswith(".css") else "javascript") in response.headers[
            "content-type"
        ]
