"""The simulated Binance exchange (``tickcast sim-exchange``): the server, one client
connection's sans-I/O protocol, control messages, fault injection, the random-walk market,
its candles, its order books and its REST market data.

A standalone peer of the server side: it imports ``tickcast.messages`` and itself, nothing
else.
"""
