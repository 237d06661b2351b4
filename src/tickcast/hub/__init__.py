"""The hub: where ingest publishes ticks and where the edge and REST read them: the
``Hub`` interface, the per-symbol tick store and the in-memory hub.

May import ``tickcast.tick`` and itself only.
"""

from tickcast.hub.base import Hub, Listener
from tickcast.hub.memory import MemoryHub
from tickcast.hub.store import TickStore

__all__ = ["Hub", "Listener", "MemoryHub", "TickStore"]
