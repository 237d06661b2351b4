"""schemathesis against the app's own OpenAPI schema: no 5xx, every response as documented.

The operations are driven through schemathesis' hypothesis strategies directly (its pytest
fixture integration does not run under this pytest); ``/sse`` is a stream that never ends,
so it is left to the wire fuzz test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .support import ServerProcess, running_server

PATHS = ["/price", "/prices", "/prices/{symbol}", "/symbols", "/history/{symbol}"]
PATHS += ["/healthz", "/readyz", "/status", "/metrics"]
PATHS += ["/streams", "/trades/{symbol}", "/klines/{symbol}", "/book/{symbol}"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("schema"), ["--source", "sim"]) as process:
        yield process


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(server.base + "/openapi.json")


def test_the_schema_lists_every_fuzzed_path(api_schema: schemathesis.BaseSchema) -> None:
    """Every REST path is in the schema (and fuzzed below); /sse is documented too."""
    documented = {op.ok().path for op in api_schema.get_all_operations()}
    assert documented == {*PATHS, "/sse"}


@pytest.mark.parametrize("path", PATHS)
def test_every_endpoint_answers_as_documented(
    api_schema: schemathesis.BaseSchema, path: str
) -> None:
    """Generated and mutated requests never get a 5xx or an undocumented response."""
    operation = api_schema[path]["GET"]

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate()

    check()
