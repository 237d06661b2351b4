"""The edge: one session per client (its ops, its resume backlog), the fan-out from the
hub, wire formats and resume tokens, the uvicorn fast path and the queued transport, and
the ``/ws`` and ``/sse`` endpoints.

May import the hub and the shared modules; never the upstream package, the simulator,
ingest or the node (it sees its node through the ``Feed`` protocol).
"""
