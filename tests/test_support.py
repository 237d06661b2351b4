"""The test helpers' own behaviour where a parallel run depends on it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from . import support


def test_a_server_whose_chosen_port_was_taken_starts_again_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ServerProcess`` picks a free port, but another process may bind it first: the
    server refuses it, and is started again on a fresh port instead of failing the test."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = support.free_port
        monkeypatch.setattr(support, "free_port", lambda: next(ports, None) or real())
        server = support.ServerProcess(["--source", "sim"], {}, tmp_path / "s.log")
        try:
            server.wait_ready()
            assert server.port != busy
            assert f"port {busy} is already in use" in server.log()
            assert server.get("/price").status_code == 200
        finally:
            server.stop()
