"""What a new user sees when a command cannot run: one clear line, an exit code, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tickcast.edge.fastpath import fast_path_problem, write_path

from .support import free_port


def tickcast(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKCAST_")}
    return subprocess.run(
        [sys.executable, "-m", "tickcast.cli", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing was printed"
    return result.stderr


@pytest.mark.parametrize(
    ("env", "args", "variable", "flag"),
    [
        ({"TICKCAST_SIM_RATE": "abc"}, [], "TICKCAST_SIM_RATE", "--sim-rate"),
        ({}, ["--sim-rate", "-1"], "TICKCAST_SIM_RATE", "--sim-rate"),
        ({}, ["--source", "nope"], "TICKCAST_SOURCE", "--source"),
        ({"TICKCAST_SYMBOLS": "BTC-USDT"}, [], "TICKCAST_SYMBOLS", "--symbols"),
        ({}, ["--port", "70000"], "TICKCAST_PORT", "--port"),
    ],
)
def test_settings_errors_name_the_variable_and_the_flag(
    env: dict[str, str], args: list[str], variable: str, flag: str, tmp_path: Path
) -> None:
    """An invalid setting names both ways to set it and uses no library wording."""
    result = tickcast("serve", *args, env=env, cwd=tmp_path)
    text = assert_one_clear_line(result, 2)
    assert f"{variable} / {flag}" in text
    assert "Value error" not in text and "pydantic" not in text.lower()
    assert len(text.strip().splitlines()) == 1


@pytest.mark.parametrize("how", ["env", "flag", "dotenv"])
def test_settings_errors_are_json_lines_when_logs_are_json(how: str, tmp_path: Path) -> None:
    """With JSON logs asked for (environment, flag or .env), each settings error is JSON."""
    env = {"TICKCAST_SIM_RATE": "abc"}
    args = ["serve"]
    if how == "env":
        env["TICKCAST_LOG_FORMAT"] = "json"
    elif how == "flag":
        args += ["--log-format", "json"]
    else:
        (tmp_path / ".env").write_text("TICKCAST_LOG_FORMAT=json\n")
    result = tickcast(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    entry = orjson.loads(result.stderr.strip())
    assert entry["level"] == "error"
    assert entry["setting"] == "TICKCAST_SIM_RATE" and entry["flag"] == "--sim-rate"
    assert "abc" in entry["message"]


def test_a_port_in_use_is_one_line_with_the_hint_before_startup(tmp_path: Path) -> None:
    """A taken port exits 1 with one line naming it and --port / TICKCAST_PORT, before
    the app starts."""
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = tickcast("serve", "--source", "sim", "--host", "127.0.0.1", "--port", str(port))
    text = assert_one_clear_line(result, 1)
    assert f"port {port} is already in use" in text
    assert "--port" in text and "TICKCAST_PORT" in text
    assert "startup complete" not in text.lower()
    assert len(text.strip().splitlines()) == 1


def test_an_address_not_of_this_machine_is_one_line(tmp_path: Path) -> None:
    """A --host that is not a local address exits 1 with a line naming it and --host."""
    result = tickcast("serve", "--source", "sim", "--host", "192.0.2.1", "--port", "0")
    text = assert_one_clear_line(result, 1)
    assert "192.0.2.1" in text and "--host" in text


def test_the_fast_write_path_is_used_with_the_installed_uvicorn() -> None:
    """The pinned uvicorn passes the fast path's checks: a silent fallback fails here."""
    assert fast_path_problem() is None
    assert write_path() == "fast"
