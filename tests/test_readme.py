"""The README's commands work for a newcomer who ran `make run`: one way of naming the
`tickcast` command, said once how to get, and only commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

from tickcast.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def code_of(text: str) -> list[str]:
    """The README's code: the lines of its fenced blocks and its inline code spans."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines()] + re.findall(
        r"`([^`\n]+)`", prose
    )


def subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
    return {name for action in actions for name in action.choices}


def test_the_readme_names_tickcast_one_way_and_says_how_to_get_it_on_path() -> None:
    """Examples run `tickcast` by name, never `.venv/bin/tickcast` beside it, and the set-up
    says how to put the command on PATH (activating .venv)."""
    text = README.read_text()
    assert ". .venv/bin/activate" in text
    mixed = [line for line in code_of(text) if ".venv/bin/tickcast" in line]
    assert mixed == []


def test_every_tickcast_command_in_the_readme_exists() -> None:
    """Each `tickcast COMMAND` the README shows is a command of the installed CLI."""
    known = subcommands()
    shown = {
        match
        for line in code_of(README.read_text())
        for match in re.findall(r"(?:^|[\s$;|(])tickcast ([a-z][a-z-]*)", line)
    }
    assert shown, "the README shows no tickcast command"
    assert shown <= known, shown - known
