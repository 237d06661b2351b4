"""The hub: where ticks are published and where edges and REST read them."""

from tickcast.hub.base import Hub, Listener
from tickcast.hub.memory import MemoryHub
from tickcast.hub.store import TickStore

__all__ = ["Hub", "Listener", "MemoryHub", "TickStore"]
