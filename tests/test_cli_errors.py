"""What a new user sees when a command cannot run: one clear line, an exit code, no traceback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tickcast.edge.fastpath import fast_path_problem, write_path
from tickcast.settings import TOOL_VARIABLES, unknown_variables

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
        ({}, ["--redis-url", "http://x"], "TICKCAST_REDIS_URL", "--redis-url"),
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


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("hello\n", "is not a tickcast capture (line 1"),
        ('{"t": 1}\n', "is not a tickcast capture (line 1"),
        ("", "holds no frames"),
        ("\n\n", "holds no frames"),
        ("dir", "is a directory"),
    ],
    ids=["missing", "text", "json-not-capture", "empty", "blank-lines", "directory"],
)
def test_a_bad_replay_capture_is_one_clear_line(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    """serve --source replay:PATH with a missing, foreign, empty or directory path exits 2
    with one line naming the file and what to do."""
    path = tmp_path / "capture.jsonl"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    result = tickcast("serve", "--source", f"replay:{path}", "--port", "0")
    text = assert_one_clear_line(result, 2)
    assert str(path) in text and expected in text
    assert len(text.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("{tmp}", "is a directory: give a file path"),
        ("{tmp}/afile/x.jsonl", "afile is a file, not a folder"),
        ("/sys/tickcast-capture.jsonl", "no permission to write"),
    ],
    ids=["directory", "file-as-folder", "no-permission"],
)
def test_record_to_an_unwritable_path_is_one_clear_line(
    tmp_path: Path, out: str, expected: str
) -> None:
    """record --out a directory, under a file, or where writing is refused exits 2 with one
    line, before connecting to anything."""
    (tmp_path / "afile").write_text("x")
    path = out.format(tmp=tmp_path)
    result = tickcast("record", "--out", path, "--seconds", "1", "--source", "sim")
    text = assert_one_clear_line(result, 2)
    assert expected in text and "tickcast record:" in text
    assert len(text.strip().splitlines()) == 1


def test_a_role_without_redis_is_one_clear_line(tmp_path: Path) -> None:
    """--role edge or ingest without --redis-url says what is missing, exit 2."""
    result = tickcast("serve", "--role", "edge", cwd=tmp_path)
    text = assert_one_clear_line(result, 2)
    assert "TICKCAST_REDIS_URL / --redis-url" in text


# ---------------------------------------------------------------------- flags and variables


def test_a_misspelt_flag_is_refused_by_its_command_with_the_closest_flag(tmp_path: Path) -> None:
    """`serve --prot 9000` is refused by serve (not the top level), in two lines: the error
    with "did you mean --port?", then serve's usage in short."""
    result = tickcast("serve", "--prot", "9000", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "tickcast serve: error: unrecognized arguments: --prot 9000: did you mean --port?",
        "usage: tickcast serve [FLAG ...]; see tickcast serve --help",
    ]


def test_a_flag_value_of_the_wrong_type_is_two_lines(tmp_path: Path) -> None:
    """`serve --port abc` is two lines naming the flag and the bad value, not serve's
    40-flag usage."""
    result = tickcast("serve", "--port", "abc", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert "--port" in lines[0] and "'abc'" in lines[0]


def test_unknown_tickcast_variables_are_warned_with_the_closest_setting(tmp_path: Path) -> None:
    """A TICKCAST_ name that no setting reads, from the environment or .env, gets one line
    each with the closest setting's name; the test suite's own variables get none."""
    (tmp_path / ".env").write_text("TICKCAST_SIMRATE=2\nTICKCAST_NOTHING_LIKE_IT=1\n")
    env = {
        "TICKCAST_PROT": "9000",
        "TICKCAST_SOURCE": "nope",  # stops serve once the settings are read
        "TICKCAST_E2E_REQUIRED": "1",
        "TICKCAST_SOAK_SECONDS": "5",
        "TICKCAST_FUZZ_CASES": "10",
        "TICKCAST_FUZZ_SEED": "1",
    }
    result = tickcast("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "tickcast: ignoring TICKCAST_PROT (from the environment): not a setting; "
        "did you mean TICKCAST_PORT?",
        "tickcast: ignoring TICKCAST_NOTHING_LIKE_IT (from .env): not a setting",
        "tickcast: ignoring TICKCAST_SIMRATE (from .env): not a setting; "
        "did you mean TICKCAST_SIM_RATE?",
    ]
    assert len(lines) == 4 and "TICKCAST_SOURCE" in lines[3]


def test_every_tickcast_variable_the_project_reads_is_a_setting_or_a_tool_variable() -> None:
    """Each TICKCAST_ variable read by the code, the tests and CI is a setting or one of the
    listed tool variables (so it is never warned about), and each listed one is read."""
    root = Path(__file__).resolve().parent.parent
    reads = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|export )["']?(TICKCAST_\w+)""")
    files = [*(root / "src").rglob("*.py"), *(root / "tests").rglob("*.py"), root / ".ci/run"]
    read = {name for path in files for name in reads.findall(path.read_text())}
    assert unknown_variables(read) == []
    assert read >= TOOL_VARIABLES


def test_a_bad_value_from_dotenv_says_it_came_from_dotenv(tmp_path: Path) -> None:
    """An invalid value read from .env is reported as such; the same value in the
    environment (which wins over .env) is not."""
    (tmp_path / ".env").write_text("TICKCAST_SIM_RATE=abc\n")
    from_file = tickcast("serve", cwd=tmp_path)
    from_env = tickcast("serve", env={"TICKCAST_SIM_RATE": "xyz"}, cwd=tmp_path)
    assert from_file.returncode == 2 and from_env.returncode == 2
    assert "TICKCAST_SIM_RATE / --sim-rate" in from_file.stderr
    assert "(got 'abc' from .env)" in from_file.stderr
    assert "(got 'xyz')" in from_env.stderr and ".env" not in from_env.stderr


def test_ctrl_c_while_the_command_loads_exits_quietly(tmp_path: Path) -> None:
    """SIGINT while `tickcast serve` is still importing its libraries ends it with 130 and
    no traceback, as Ctrl-C does once it runs."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKCAST_")}
    serve = subprocess.Popen(
        [sys.executable, "-m", "tickcast.cli", "serve", "--source", "sim", "--port", "0"],
        env=clean, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a suite started in the background (a shell's `&`) passes
        # SIGINT on ignored, and Python then never turns it into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        # pydantic's native core is loaded early in pydantic's import, which takes a good
        # while longer: the signal lands in the middle of the command's imports.
        maps = Path(f"/proc/{serve.pid}/maps")
        deadline = time.monotonic() + 10
        while "pydantic_core" not in maps.read_text() and time.monotonic() < deadline:
            time.sleep(0.002)
        serve.send_signal(signal.SIGINT)
        out, err = serve.communicate(timeout=10)
    finally:
        serve.kill()
        serve.communicate()  # reaps it and closes its pipes, whatever happened above
    assert "Traceback" not in err, err
    assert serve.returncode == 130
    assert out == ""
