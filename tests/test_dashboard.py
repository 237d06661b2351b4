"""The dashboard's trading features in headless Chromium against real server processes:
staleness, bid/ask/spread and volume units, sorting, the chart, the connection panel,
keyboard use and narrow screens (Playwright, system Chromium).

With TICKCAST_UPDATE_SCREENSHOT=1 the chart test also writes docs/dashboard.png, the
README's picture (1280x800, chart open); otherwise screenshots stay in the temp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import threading
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
)

pytestmark = pytest.mark.e2e

require_program(CHROMIUM, "chromium", "browser")

from playwright.sync_api import Browser, Page, expect  # noqa: E402

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
    expect(page.locator("#stat-gaps")).to_have_text("0")
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
    """Enter on a symbol opens its chart with axes, filled from /history and then growing
    with live ticks; ranges and candles redraw it; Escape closes it and returns focus."""
    load(page, server.base + "/")
    page.focus('tr[data-symbol="BTCUSDT"] .symbol-btn')
    page.keyboard.press("Enter")
    expect(page.locator("#chart-panel")).to_be_visible()
    expect(page.locator("#chart-title")).to_have_text("BTCUSDT")
    expect(page.locator("#chart-title")).to_be_focused()
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
    page.wait_for_function("tickcast.chart.shown() < tickcast.chart.points()")
    expect(page.locator("#chart .u-legend")).to_contain_text("Close")
    page.check('input[name="chart-style"][value="line"]')

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


def test_dropped_link_resumes_without_gaps_on_ws_and_sse(page: Page, server: ServerProcess) -> None:
    """A cut connection (the server keeps running) is resumed with the last event id on
    both transports: the missed ticks arrive, the seq check finds no gap, no reset."""
    with link_proxy(server.port) as (proxy, _thread, loop):
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
    page: Page, server: ServerProcess
) -> None:
    """A throttled stream skips seqs on purpose: the panel counts those gaps. With a
    subset of the symbols seq is not contiguous, and the panel says it does not check."""
    load(page, server.base + "/?throttle_ms=500")
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
