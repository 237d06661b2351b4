"""The dashboard in headless Chromium against a real server (Playwright, system Chromium).

Screenshots go to each test's temp dir (docs/dashboard.png, the README's picture, comes
from tests/test_dashboard.py with TICKCAST_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest

from tickcast.messages.tick import DEFAULT_SYMBOLS as DEFAULT_SYMBOL_NAMES
from tickcast.messages.tick import Tick

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

DEFAULT_SYMBOLS = len(DEFAULT_SYMBOL_NAMES)
REPO = Path(__file__).resolve().parent.parent

require_program(CHROMIUM, "chromium", "browser")

from playwright.sync_api import Browser, Page, WebSocketRoute, expect  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield cast(Browser, instance)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("e2e")
    with running_server(tmp, ["--source", "sim"], {"TICKCAST_SIM_RATE": "4"}) as process:
        yield process


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    new_page = context.new_page()
    new_page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield new_page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def rows(page: Page) -> list[str]:
    return page.eval_on_selector_all("tr[data-symbol]", "rs => rs.map(r => r.dataset.symbol)")


def tick_count(page: Page) -> int:
    return int(page.inner_text("#tick-count") or 0)


def wait_for_more_ticks(page: Page, than: int, timeout_ms: int = 10_000) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('#tick-count').textContent) > n",
        arg=than,
        timeout=timeout_ms,
    )


def capture_dashboard(page: Page, base_url: str, out: Path) -> None:
    """Load the dashboard, wait until every default symbol has a price, change and
    sparkline, and take the screenshot (also the README's picture)."""
    page.goto(base_url + "/")
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    page.wait_for_function(
        """() => [...document.querySelectorAll('tr[data-symbol]')].every(r =>
             r.querySelector('.price').textContent.trim() &&
             r.querySelector('.change').textContent.trim() &&
             r.querySelector('.spark polyline').getAttribute('points').trim().split(' ').length >= 8)""",
        timeout=15_000,
    )
    page.screenshot(path=str(out), full_page=True)


def test_table_fills_with_live_prices_that_change(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    """Every default symbol gets a row with a price, change and sparkline; prices move."""
    shot = tmp_path / "dashboard.png"
    capture_dashboard(page, server.base, shot)
    assert shot.stat().st_size > 10_000
    expect(page.locator("#conn-state")).to_have_text("connected")
    price = page.locator('tr[data-symbol="BTCUSDT"] .price')
    first = price.inner_text()
    page.wait_for_function(
        "p => document.querySelector('tr[data-symbol=\"BTCUSDT\"] .price').textContent !== p",
        arg=first,
        timeout=10_000,
    )
    latency = page.inner_text("#latency")
    assert "ms" in latency


def test_disconnect_stops_updates_and_connect_resumes(page: Page, server: ServerProcess) -> None:
    """Disconnect freezes the table (no reconnect); Connect brings live ticks back."""
    page.goto(server.base + "/")
    wait_for_more_ticks(page, 10)
    page.click("#disconnect")
    expect(page.locator("#conn-state")).to_have_text("disconnected")
    frozen = tick_count(page)
    time.sleep(1.5)
    assert tick_count(page) == frozen
    expect(page.locator("#conn-state")).to_have_text("disconnected")
    page.click("#connect")
    expect(page.locator("#conn-state")).to_have_text("connected")
    wait_for_more_ticks(page, frozen)


def test_sse_switch(page: Page, server: ServerProcess, tmp_path: Path) -> None:
    """Switching to SSE closes the WebSocket and streams over /sse instead."""
    page.goto(server.base + "/")
    wait_for_more_ticks(page, 10)
    page.select_option("#transport", "sse")
    before = tick_count(page)
    wait_for_more_ticks(page, before + 5)
    clients = server.status()["edge"]["clients"]  # type: ignore[index]
    assert clients["sse"] >= 1
    page.screenshot(path=str(tmp_path / "sse.png"))
    page.select_option("#transport", "ws")
    wait_for_more_ticks(page, tick_count(page) + 5)


def test_dashboard_opened_on_sse_fills_every_row(page: Page, server: ServerProcess) -> None:
    """With ?transport=sse the table fills from unnamed tick events and the named status
    event raises the simulated-data banner."""
    streams: list[str] = []
    page.on(
        "request", lambda request: streams.append(request.url) if "/sse" in request.url else None
    )
    page.goto(server.base + "/?transport=sse")
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    wait_for_more_ticks(page, 3 * DEFAULT_SYMBOLS)
    expect(page.locator("#sim-banner")).to_be_visible()
    assert streams == [server.base + "/sse"]


def test_remove_and_add_a_symbol(page: Page, server: ServerProcess, tmp_path: Path) -> None:
    """Removing a row unsubscribes it for good; adding it back subscribes and fills it;
    an unknown symbol shows an error."""
    page.goto(server.base + "/")
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    page.click('button.remove[aria-label="Remove ADAUSDT"]')
    expect(page.locator('tr[data-symbol="ADAUSDT"]')).to_have_count(0)
    wait_for_more_ticks(page, tick_count(page) + 20)
    expect(page.locator('tr[data-symbol="ADAUSDT"]')).to_have_count(0)

    page.fill("#add-symbol", "adausdt")
    page.click("#add-btn")
    expect(page.locator('tr[data-symbol="ADAUSDT"] .price')).not_to_be_empty(timeout=10_000)
    assert len(rows(page)) == DEFAULT_SYMBOLS

    page.fill("#add-symbol", "NOPEUSDT")
    page.click("#add-btn")
    expect(page.locator("#error")).to_contain_text("NOPEUSDT", timeout=10_000)
    expect(page.locator('tr[data-symbol="NOPEUSDT"]')).to_have_count(0)
    page.screenshot(path=str(tmp_path / "add-remove.png"))


def test_add_box_offers_the_served_symbols_and_refuses_others(
    page: Page, server: ServerProcess
) -> None:
    """The add box suggests only symbols the server serves and the table lacks (never one
    it does not serve, such as DOTUSDT); a symbol not served gets a message saying so."""
    page.goto(server.base + "/")
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    served = server.get("/symbols").json()["symbols"]
    page.click('button.remove[aria-label="Remove ADAUSDT"]')
    page.click('button.remove[aria-label="Remove SOLUSDT"]')
    options = page.locator("#served-symbols option")
    expect(options).to_have_count(2)
    assert sorted(options.evaluate_all("os => os.map(o => o.value)")) == ["ADAUSDT", "SOLUSDT"]
    assert page.get_attribute("#add-symbol", "list") == "served-symbols"
    placeholder = page.get_attribute("#add-symbol", "placeholder") or ""
    assert placeholder.split()[-1] in served, placeholder

    page.fill("#add-symbol", "dotusdt")
    page.click("#add-btn")
    expect(page.locator("#error")).to_contain_text("DOTUSDT is not served by this server")
    expect(page.locator('tr[data-symbol="DOTUSDT"]')).to_have_count(0)
    page.fill("#add-symbol", "SOLUSDT")
    page.click("#add-btn")
    expect(page.locator('tr[data-symbol="SOLUSDT"] .price')).not_to_be_empty(timeout=10_000)
    expect(options).to_have_count(1)
    expect(page.locator("#error")).to_be_empty()


def test_simulated_data_banner(page: Page, server: ServerProcess) -> None:
    """With --source sim the page says plainly that the data is simulated."""
    page.goto(server.base + "/")
    expect(page.locator("#sim-banner")).to_be_visible(timeout=10_000)
    expect(page.locator("#sim-banner")).to_contain_text("Simulated")


def test_phone_width_has_no_horizontal_overflow(browser: Browser, server: ServerProcess) -> None:
    """At 375 px the page fits: the table may scroll, the page does not."""
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    try:
        page.goto(server.base + "/")
        expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        expect(page.locator("#connect")).to_be_visible()
    finally:
        context.close()


def test_upstream_banner_while_the_feed_is_stalled(page: Page, tmp_path: Path) -> None:
    """A stalled upstream (status stale/reconnecting) raises the banner; it clears after.
    The simulated exchange at the Binance URL is announced by the simulated-data banner."""
    with sim_exchange("--rate", "4") as sim_port:
        env = {"TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{sim_port}", "TICKCAST_STALE_AFTER": "1"}
        with running_server(tmp_path, ["--source", "binance"], env) as server:
            page.goto(server.base + "/")
            wait_for_more_ticks(page, 5)
            expect(page.locator("#upstream-banner")).to_be_hidden()
            expect(page.locator("#sim-banner")).to_be_visible()  # the simulator says so
            httpx.post(f"http://127.0.0.1:{sim_port}/_sim/fault?kind=stall&duration=120")
            expect(page.locator("#upstream-banner")).to_be_visible(timeout=10_000)
            page.screenshot(path=str(tmp_path / "upstream-banner.png"))
            httpx.delete(f"http://127.0.0.1:{sim_port}/_sim/fault")
            expect(page.locator("#upstream-banner")).to_be_hidden(timeout=20_000)


def test_page_recovers_when_the_server_restarts(page: Page, tmp_path: Path) -> None:
    """Killing the server shows the reconnecting state; a restarted server on the same
    port is picked up by itself, without a click."""
    port = free_port()
    args = ["--source", "sim"]
    first = ServerProcess(args, {"TICKCAST_SIM_RATE": "4"}, tmp_path / "first.log", port)
    try:
        first.wait_ready()
        page.goto(f"http://127.0.0.1:{port}/")
        wait_for_more_ticks(page, 5)
    finally:
        first.stop(signal.SIGKILL)
    expect(page.locator("#conn-state")).not_to_have_text("connected", timeout=5_000)
    count = tick_count(page)
    second = ServerProcess(args, {"TICKCAST_SIM_RATE": "4"}, tmp_path / "second.log", port)
    try:
        second.wait_ready()
        expect(page.locator("#conn-state")).to_have_text("connected", timeout=40_000)
        wait_for_more_ticks(page, count)
    finally:
        second.stop()


def test_page_opened_from_disk_connects_to_localhost_8000(page: Page) -> None:
    """index.html opened as a file connects to ws://localhost:8000/ws by itself and shows
    what that server sends (the browser's socket is answered in place of a server on 8000,
    so the test needs no fixed port and runs beside anything already on 8000)."""
    opened: list[str] = []
    ticks = [
        Tick(symbol=symbol, seq=seq, timestamp_ms=int(time.time() * 1000), source="sim",
             last_price=f"{100 + seq}.5", change_percent="1.25")
        for seq, symbol in enumerate(DEFAULT_SYMBOL_NAMES, start=1)
    ]  # fmt: skip

    def answer(route: WebSocketRoute) -> None:
        opened.append(route.url)
        for tick in ticks:
            route.send(tick.encode().decode())

    page.route_web_socket(re.compile(r"^ws://localhost:8000/ws(\?.*)?$"), answer)
    page.goto((REPO / "src" / "tickcast" / "static" / "index.html").as_uri())
    expect(page.locator("tr[data-symbol]")).to_have_count(DEFAULT_SYMBOLS, timeout=15_000)
    expect(page.locator("#conn-state")).to_have_text("connected")
    expect(page.locator('tr[data-symbol="BTCUSDT"] td.price')).to_contain_text("101.5")
    assert opened and all(url.startswith("ws://localhost:8000/ws") for url in opened)


# A page written the way most browser code is: one EventSource, its onmessage, nothing else.
ONMESSAGE_PAGE = """
window.received = 0;
window.withId = 0;
const source = new EventSource(%s);
window.source = source;
source.onmessage = function (event) {
  const message = JSON.parse(event.data);
  if (message.type === "tick") {
    window.received += 1;
    if (event.lastEventId) {
      window.withId += 1;
    }
  }
};
"""


def test_event_source_onmessage_receives_every_tick(page: Page, server: ServerProcess) -> None:
    """`new EventSource("/sse").onmessage` alone gets the ticks, each with a resume id."""
    page.goto(server.base + "/healthz")  # any page of the server's origin: no CORS involved
    page.add_script_tag(content=ONMESSAGE_PAGE % json.dumps("/sse?symbols=BTCUSDT,ETHUSDT"))
    wanted = 10  # 2 snapshot ticks, then 8 per second at TICKCAST_SIM_RATE=4
    deadline = time.monotonic() + 10
    while page.evaluate("window.received") < wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    received, with_id, ready = page.evaluate(
        "[window.received, window.withId, window.source.readyState]"
    )
    assert received >= wanted, f"onmessage got {received} ticks in 10 s (readyState {ready})"
    assert with_id == received
