"""How the suite runs in parallel (``make test``: pytest-xdist, ``--dist loadgroup``).

Most tests wait on sockets and processes, so several run at once on two cores. The tests
marked ``exclusive`` either load the machine (the soak, the bench's real runs, the fault
tour of ``serve``, the workers, the wire fuzz) or time what they check against the
machine's clock; they share one xdist group, so no two of them ever run beside each other,
and they are collected first, so the group starts at once instead of being the tail of the
run. Run alone (no ``-n``), the markers change nothing.

The tests marked ``solo`` need the machine to themselves (a client that must keep up with
a feed of thousands of ticks a second): ``make test`` leaves them out of the parallel run
(``-m "not solo"``) and runs them after it, one at a time.
"""

from __future__ import annotations

import pytest

EXCLUSIVE = "exclusive"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker(EXCLUSIVE) is not None:
            item.add_marker(pytest.mark.xdist_group(EXCLUSIVE))
    # A stable sort: every xdist worker must collect the same order.
    items.sort(key=lambda item: item.get_closest_marker(EXCLUSIVE) is None)
