"""What ``--help`` shows: serve's flags under named headings with their defaults and
choices, a description for record, and no reference to internal documents anywhere a
user reads (every command's help, the OpenAPI description)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tickcast.cli import SETTING_GROUPS, build_parser, main, ungrouped_settings
from tickcast.serve.api import create_app
from tickcast.settings import Settings

HEADING = re.compile(r"^(\S[^:]*):$")
FLAG = re.compile(r"^ {2}(?:-[a-z], )?(--[a-z0-9-]+)")


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    args = [command, "--help"] if command else ["--help"]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    return capsys.readouterr().out


def sections(text: str) -> dict[str, dict[str, str]]:
    """``{heading: {flag: its help text, on one line}}`` of an argparse help page."""
    out: dict[str, dict[str, str]] = {}
    heading, flag = "", ""
    for line in text.splitlines():
        if match := HEADING.match(line):
            heading, flag = match.group(1), ""
            out[heading] = {}
        elif match := FLAG.match(line):
            flag = match.group(1)
            out[heading][flag] = line.strip()
        elif flag and line.strip():
            out[heading][flag] += " " + line.strip()
    return out


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_every_setting_is_in_exactly_one_group() -> None:
    """The group table names each setting once, and only settings that exist."""
    listed = [name for group in SETTING_GROUPS for name in group.settings]
    assert ungrouped_settings(Settings.model_fields) == []
    assert len(listed) == len(set(listed)), "a setting is listed under two headings"
    assert set(listed) <= set(Settings.model_fields), "a group names a setting that is gone"


def test_a_setting_without_a_group_is_caught() -> None:
    """A new setting not added to the table is what the check above reports."""
    assert ungrouped_settings([*Settings.model_fields, "brand_new"]) == ["brand_new"]


def test_serve_help_lists_each_flag_under_its_heading(capsys: pytest.CaptureFixture[str]) -> None:
    """Every serve flag is under its group's heading, with its variable and default;
    the headings are the named groups, in order, and none is a catch-all."""
    found = sections(help_of("serve", capsys))
    titles = [group.title for group in SETTING_GROUPS]
    assert [h for h in found if h != "options"] == titles
    assert list(found["options"]) == ["--help"]
    for group in SETTING_GROUPS:
        for name in group.settings:
            text = found[group.title][flag_of(name)]
            assert f"[TICKCAST_{name.upper()}; default " in text, text


def test_choices_defaults_and_bool_forms_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """A fixed set of values shows as {a,b}; a boolean as --x/--no-x; a computed or list
    default as a user would write it."""
    text = help_of("serve", capsys)
    assert "--role {all,edge,ingest}" in text and "--log-format {text,json}" in text
    assert "--book/--no-book" in text
    assert "[TICKCAST_CORS_ORIGINS; default '*']" in text
    assert "[TICKCAST_SYMBOLS; default 'BTCUSDT,ETHUSDT," in text
    assert "[TICKCAST_NODE_ID; default HOSTNAME-PID]" in text


def test_grouped_flags_still_parse_and_leave_checking_to_the_settings() -> None:
    """The headings change nothing in parsing: values reach the same settings, and a
    value outside the choices is left for the settings to refuse, naming the variable."""
    args = build_parser().parse_args(
        ["serve", "--role", "edge", "--no-book", "--workers", "auto", "--port", "9000"]
    )
    assert (args.role, args.book, args.workers, args.port) == ("edge", False, "auto", 9000)
    assert build_parser().parse_args(["serve", "--role", "nope"]).role == "nope"


def test_record_help_says_what_it_writes_and_how_to_replay(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """record's help names the JSONL line format and the serve command that replays it."""
    text = " ".join(help_of("record", capsys).split())
    assert "JSONL" in text and '"frame"' in text and '"t"' in text
    assert "tickcast serve --source replay:FILE" in text


def commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return ["", *subparsers.choices]


@pytest.mark.parametrize("command", commands())
def test_no_help_refers_to_internal_documents(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No command's help cites the specification by section."""
    text = help_of(command, capsys)
    assert "SPEC" not in text and "§" not in text


async def test_the_served_openapi_description_cites_no_internal_document() -> None:
    """/openapi.json, as served, holds no reference to the specification."""
    app = create_app(Settings(_env_file=None, source="sim"))  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/ws" in response.json()["info"]["description"]
    assert "SPEC" not in response.text


def test_version_prints_the_packages_version() -> None:
    """``tickcast --version`` prints ``tickcast X.Y.Z``, the version pyproject.toml gives."""
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "tickcast.cli", "--version"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tickcast {project['project']['version']}\n"
