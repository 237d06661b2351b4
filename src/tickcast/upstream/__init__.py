"""Upstream: the Binance client (sharding, pacing, rotation, watchdog), the normalizer of
Binance payloads and the sources (``binance``, ``sim``, ``auto``, ``replay``).

May import the shared modules (``messages``, ``settings``, ``tasks``, ``errors``, ``logs``) and
``sim`` (the ``sim`` source starts it in-process); never the hub, ingest or the edge.
"""
