"""tickcast: real-time market-data fan-out server."""

__version__ = "0.1.0"
