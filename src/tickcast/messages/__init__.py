"""The messages tickcast serves, one module per kind: ``tick`` (the 24h ticker),
``trade`` (the tape), ``kline`` (candles), ``book`` (order books: the ``book`` and
``depth`` messages and the depth diffs and snapshots they are built from); ``stream``
names what a client chooses and ``decimals`` is the exact decimal encoding they all share.

One module per message kind rather than one module for all: each kind has its own fields,
its own rules for what a valid upstream value is, and its own delivery (a tick is replaced
by the next, a trade is an event that is never dropped silently, a candle is replaced until
it closes, a book carries price levels). Kept apart, each stays short enough to read whole,
and adding a kind touches no other kind's module.

May import nothing of tickcast but itself: every stage imports the messages.
"""
