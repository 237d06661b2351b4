"""``/docs`` and the OpenAPI schema: served from the installed bundle, complete offline."""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httpx
import pytest

from tickcast.errors import CloseReason

from .support import CHROMIUM, ServerProcess, chromium, require_program, running_server

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("docs"), ["--source", "sim"]) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=5) as http:
        yield http


def test_docs_page_loads_its_assets_from_this_server(client: httpx.Client) -> None:
    """/docs names only same-origin assets, and each of them is served."""
    html = client.get("/docs").text
    assert "cdn" not in html.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert f"/docs/assets/{asset}" in html
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 100


def test_docs_assets_serve_named_files_only(client: httpx.Client) -> None:
    """No path under /docs/assets leaves the folder of the installed assets."""
    assert client.get("/docs/assets/../__init__.py").status_code == 404
    assert client.get("/docs/assets/%2e%2e/core.py").status_code == 404


def test_openapi_describes_the_websocket_protocol(client: httpx.Client) -> None:
    """The schema's description documents /ws (ops, replies, what a connect is answered,
    every close code), /sse's named events and resume, and the error codes."""
    text = client.get("/openapi.json").json()["info"]["description"]
    for word in ("/ws", "subscribe", "unsubscribe", '"op":"list"', "pong", "ack", "error"):
        assert word in text
    for word in ("event: error", "unknown_symbol", "status=1&symbols=", "upgrade_required"):
        assert word in text, word
    for word in ("not_found", "method_not_allowed", "Last-Event-ID", "event: reset"):
        assert word in text, word
    for reason in CloseReason:
        if reason is not CloseReason.GONE:
            assert f"| {reason.code} | {reason.reason} |" in text


@pytest.mark.parametrize(
    "path",
    ["/history/BTCUSDT?limit=0", "/history/BTCUSDT?limit=abc", "/sse?throttle_ms=fast"],
)
def test_validation_errors_use_the_common_error_body(client: httpx.Client, path: str) -> None:
    """A bad parameter gets {"error","message"} naming the parameter, not FastAPI's detail."""
    response = client.get(path)
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "invalid_request"
    assert path.split("?")[1].split("=")[0] in body["message"]


def readme_block(containing: str) -> str:
    """The README's shell code block that contains ``containing``, unindented."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    found = [textwrap.dedent(b) for b in blocks if containing in b]
    assert len(found) == 1, f"one README block with {containing!r}, found {len(found)}"
    return found[0]


def test_the_readme_resume_example_resumes_without_a_reset(server: ServerProcess) -> None:
    """The README's SSE resume commands, run as written against a server, resume: the
    stream carries ticks after the id it sent back and no ``reset``."""
    require_program("/usr/bin/curl", "curl", "README example")
    script = readme_block("Last-Event-ID").replace("localhost:8000", server.base[7:])
    # The example streams until interrupted; here each stream stops after a few seconds.
    script = script.replace("curl -N ", "curl -sN --max-time 4 ")
    assert "curl -sN --max-time 4 " in script
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    out = run.stdout
    assert "event: reset" not in out, out
    ids = [int(i) for i in re.findall(r"^id: (\d+)$", out, re.MULTILINE)]
    assert ids, f"no tick received: {out!r} {run.stderr!r}"
    sent = max(int(t["seq"]) for t in httpx.get(server.base + "/history/BTCUSDT").json())
    assert ids == sorted(ids) and ids[-1] <= sent


@pytest.mark.e2e
def test_docs_render_the_endpoints_in_chromium_with_the_network_cut(
    server: ServerProcess, tmp_path: Path
) -> None:
    """With every request to another host refused, Swagger UI still lists the endpoints."""
    require_program(CHROMIUM, "chromium", "browser")
    from playwright.sync_api import Browser, Route

    own = urlsplit(server.base).netloc
    refused: list[str] = []

    def only_this_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    with chromium() as instance:
        page = cast(Browser, instance).new_page()
        page.route("**/*", only_this_server)
        page.goto(server.base + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "els => els.map(e => e.textContent.trim())"
        )
        page.screenshot(path=str(tmp_path / "docs.png"))
    for path in ("/price", "/prices", "/history/{symbol}", "/status", "/sse"):
        assert path in [p.replace("\u200b", "") for p in paths]
    assert refused == []
