"""Upstream: the Binance client (sharding, pacing, rotation, watchdog), the normalizer of
Binance payloads, the sources (``binance``, ``sim``, ``auto``, ``replay``), the pure
cores that keep what the stream says whole (``tradegaps``, ``localbook``, ``snapshotpace``)
and the REST drivers around them (``backfill``, ``tradefill``, ``books``).

May import the shared modules (``messages``, ``settings``, ``tasks``, ``errors``, ``logs``) and
``sim`` (the ``sim`` source starts it in-process); never the hub, ingest or the edge.
"""
