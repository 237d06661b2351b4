"""The simulated Binance exchange (``tickcast sim-exchange``): the server, one client
connection's sans-I/O protocol, control messages, fault injection and the random-walk market.

A standalone peer of the server side: it imports ``tickcast.messages.tick`` and itself,
nothing else.
"""
