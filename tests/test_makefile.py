"""The Makefile's set-up rules, run for real by make against a stand-in Python that
records each step (into a temporary VENV, never the project's .venv)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for `python3` and the venv's python: each call is a step that takes a
# moment, logged as it starts and ends; a step that starts while another runs logs
# `overlap`. `-m venv DIR` makes DIR/bin/python a copy of this script.
FAKE_PYTHON = """#!/bin/sh
log={log}
if mkdir {busy} 2>/dev/null; then mine=1; else mine=; echo overlap >> "$log"; fi
echo "start $*" >> "$log"
sleep 0.3
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
echo "end $*" >> "$log"
[ -n "$mine" ] && rmdir {busy}
exit 0
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_two_set_ups_at_once_take_turns_and_install_once(tmp_path: Path) -> None:
    """Two `make` runs of the install rule started together in a fresh clone never run a
    step at the same time, and the second finds the venv made and the package installed."""
    log, venv = tmp_path / "log", tmp_path / "venv"
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON.format(log=log, busy=tmp_path / "busy"))
    python.chmod(0o755)
    command = ["make", "-s", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={python}"]
    runs = [
        subprocess.Popen([*command, f"{venv}/.installed"], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [run.communicate(timeout=30) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    steps = log.read_text().splitlines()
    assert "overlap" not in steps
    assert [s for s in steps if s.startswith("start")] == [
        f"start -m venv {venv}",
        "start -m pip install --quiet --upgrade pip",
        "start -m pip install --quiet -e .",
    ]
    assert (venv / ".installed").exists()
