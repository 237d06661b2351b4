"""Running the app under uvicorn with the settings' host, port and limits."""

from __future__ import annotations

import logging

import uvicorn

from tickcast import __version__
from tickcast.edge.fastpath import protocol_classes, write_path
from tickcast.edge.sockets import SocketTuning
from tickcast.hub.memory import clock_seq
from tickcast.logs import configure_logging
from tickcast.node import Node
from tickcast.serve.api import create_app
from tickcast.serve.gcpolicy import HEAP
from tickcast.serve.listen import BindError, bind_listener
from tickcast.settings import Settings

log = logging.getLogger("tickcast.server")

# SPEC: on SIGTERM, clients are closed and the process exits within 5 s.
GRACEFUL_SHUTDOWN_SECONDS = 4


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    # Sockets pause well before a client's buffer limit, so a client the fan-out still
    # writes to can never be over it (the slow-client sweep relies on that).
    write_high = min(SocketTuning.write_high, settings.client_buffer_bytes // 2)
    tuning = SocketTuning(sndbuf=settings.client_sndbuf, write_high=write_high)
    app = create_app(settings, Node(settings, first_seq=clock_seq()))
    http, ws = protocol_classes(tuning, app.guard, deflate=settings.ws_deflate)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=http,
        ws=ws,
        ws_max_size=settings.max_message_bytes,
        # Frames are pre-encoded once for every client: no per-client compression. The
        # fast path negotiates its own, shared, permessage-deflate (TICKCAST_WS_DEFLATE).
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=max(1.0, settings.idle_timeout - settings.ping_interval),
        # X-Forwarded-For/-Proto only from TICKCAST_TRUSTED_PROXIES. uvicorn's own default
        # believes 127.0.0.1, which would let any local process claim any address.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies),
        lifespan="on",
        log_config=None,
        # One line per request at INFO: REST, the /sse request and the /ws handshake alike
        # (a stream's end is tickcast's own line). Tokens in them are redacted (logs.py).
        access_log=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run_server(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status. ``reuse_port``: a worker of
    ``--workers``, sharing the port with its siblings (``SO_REUSEPORT``)."""
    # The token arrives in request targets (?token=) that uvicorn logs: keep it out. The
    # workers of --workers share one stderr: each of their lines names its node.
    node = settings.node_id if reuse_port else None
    secrets = [settings.token, settings.jwt_secret]
    configure_logging(settings.log_format, settings.log_level, secrets=secrets, node=node)
    try:
        listener = bind_listener(settings.host, settings.port, reuse_port=reuse_port)
    except BindError as exc:
        log.error("%s", exc)
        return 1
    host, port = listener.getsockname()[:2]
    log.info(
        "tickcast %s listening on http://%s:%d (node %s, write path: %s)",
        __version__,
        f"[{host}]" if ":" in host else host,
        port,
        settings.node_id,
        write_path(),
    )
    server = uvicorn.Server(uvicorn_config(settings))
    # Everything built so far lives as long as the process: out of every GC pass.
    HEAP.install()
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    return 0 if server.started else 1
