"""What the driver reports to: the ``TailView`` protocol that the live table and the line
printer both follow, the client's ``ConnectionState`` and the ``OutputFormat`` choice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from tickcast.tail.failures import Problem
from tickcast.tail.protocol import Message


class ConnectionState(StrEnum):
    """This client's connection to the tickcast server (not the server's upstream)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class OutputFormat(StrEnum):
    """How ticks are shown: a live table, or one line per tick (for pipes and files)."""

    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"


class TailView(Protocol):
    """What the driver reports to: the table's state, or the line printer."""

    def apply(self, message: Message | None) -> None:
        """One decoded server message (None: one that could not be decoded)."""

    def set_connection(self, state: ConnectionState, *, retry_in: float | None = None) -> None:
        """The client's own connection state (and the seconds left before a retry)."""

    def note_problem(self, problem: Problem, retry_in: float | None) -> None:
        """A connection failed or ended; a retry follows in ``retry_in`` s unless fatal."""

    def note(self, text: str) -> None:
        """Something the user should know once, such as a symbol the server does not serve."""
