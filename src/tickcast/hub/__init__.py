"""The hub: where ingest publishes ticks and where the edge and REST read them: the
``Hub`` interface, the per-symbol tick store, the in-memory hub, and for several nodes the
Redis hub (its publish script, publishing connection and stream reader) and the leader
lease.

May import ``tickcast.messages.tick``, ``tickcast.tasks``, ``tickcast.hooks`` and itself only.
"""

from tickcast.hub.base import Hub, Listener
from tickcast.hub.memory import MemoryHub
from tickcast.hub.store import MessageStore

__all__ = ["Hub", "Listener", "MemoryHub", "MessageStore"]
