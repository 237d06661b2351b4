"""Hooks: callbacks of one kind, each failure logged without stopping the rest."""

from __future__ import annotations

import logging

import pytest

from tickcast.hooks import Hooks


def test_hooks_run_in_order_and_a_removed_hook_is_not_called() -> None:
    """Every hook gets the value in the order added; the remover takes one out (twice is
    harmless)."""
    seen: list[tuple[str, int]] = []
    hooks: Hooks[int] = Hooks("test hook")
    hooks.add(lambda v: seen.append(("a", v)))
    remove_b = hooks.add(lambda v: seen.append(("b", v)))
    hooks(1)
    remove_b()
    remove_b()
    hooks(2)
    assert seen == [("a", 1), ("b", 1), ("a", 2)]


def test_a_failing_hook_is_logged_with_the_value_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One hook raising is logged, named with the value, and neither the caller nor the
    later hooks see the error."""
    seen: list[int] = []
    hooks: Hooks[int] = Hooks("test hook", describe=lambda v: f"value {v}")

    def broken(_value: int) -> None:
        raise RuntimeError("boom")

    hooks.add(broken)
    hooks.add(seen.append)
    with caplog.at_level(logging.ERROR, logger="tickcast.hooks"):
        hooks(7)
    assert seen == [7]
    assert "test hook failed on value 7" in caplog.text
