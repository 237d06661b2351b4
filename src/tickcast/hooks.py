"""Callbacks of one kind, registered by whoever wants to hear of an event."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Hooks(Generic[T]):
    """Callbacks taking one value: ``add`` returns the remover; calling the hooks calls
    each in the order added, and one that raises is logged without stopping the others
    or the caller (the ingest, a reader)."""

    __slots__ = ("_describe", "_hooks", "_what")

    def __init__(self, what: str, describe: Callable[[T], str] | None = None) -> None:
        self._what = what
        self._describe = describe
        self._hooks: list[Callable[[T], None]] = []

    def add(self, hook: Callable[[T], None]) -> Callable[[], None]:
        self._hooks.append(hook)

        def remove() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return remove

    def clear(self) -> None:
        self._hooks.clear()

    def __call__(self, value: T) -> None:
        for hook in tuple(self._hooks):
            try:
                hook(value)
            except Exception:
                about = f" on {self._describe(value)}" if self._describe is not None else ""
                log.exception("%s failed%s", self._what, about)
