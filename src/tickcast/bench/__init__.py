"""``tickcast bench``: the load benchmark (SPEC §11).

Layout: ``histogram``, ``scan`` and ``tradescan`` are the pure counting cores (latency
buckets; ticks, trades, gaps, duplicates and gap messages found in raw bytes);
``wsbytes`` and ``rawhttp`` are the hand-made HTTP and WebSocket bytes; ``loadgen`` is
the client process; ``procstat`` reads /proc; ``processes`` starts and stops the
subprocesses and ``run`` holds those of one run; ``reference`` watches the simulated
exchange; ``config`` is what was asked; ``runner`` drives one run and the comparison;
``report`` turns the numbers into figures, ratios and JSON, ``table`` prints them.
``naive`` and ``raw`` are the comparison servers, ``plot`` draws latency against client
count.

May import anything but ``cli``: it runs the server, the simulator and the baselines.
"""
