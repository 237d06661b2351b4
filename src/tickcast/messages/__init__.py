"""The messages tickcast serves, one module per kind (``tick`` today).

One module per message kind rather than one module for all: each kind has its own fields,
its own rules for what a valid upstream value is, and its own encoding (a trade is a single
event, a candle is replaced until it closes, a book carries price levels). Kept apart, each
stays short enough to read whole, and adding a kind touches no other kind's module. What
every kind shares, the exact decimal encoding and the ``source`` labels, stays in ``tick``
until a second kind needs it, then moves to a module of its own here.

May import nothing of tickcast but itself: every stage imports the messages.
"""
