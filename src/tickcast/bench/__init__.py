"""``tickcast bench``: the load benchmark (SPEC §11).

Layout: ``histogram`` and ``scan`` are the pure counting cores (latency buckets; ticks,
gaps and duplicates found in raw bytes); ``wsbytes`` and ``rawhttp`` are the hand-made
HTTP and WebSocket bytes; ``loadgen`` is the client process; ``procstat`` reads /proc;
``processes`` starts and stops the subprocesses; ``reference`` watches the simulated
exchange; ``runner`` drives one run and the comparison; ``report`` turns the numbers into
a table, ratios and JSON. ``naive`` and ``raw`` are the comparison servers, ``plot``
draws latency against client count.

May import anything but ``cli``: it runs the server, the simulator and the baselines.
"""
