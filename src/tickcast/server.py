"""Running the app under uvicorn with the settings' host, port and limits."""

from __future__ import annotations

import uvicorn

from tickcast.api import create_app
from tickcast.edge.fastpath import SocketTuning, protocol_classes
from tickcast.logs import configure_logging
from tickcast.settings import Settings

# SPEC: on SIGTERM, clients are closed and the process exits within 5 s.
GRACEFUL_SHUTDOWN_SECONDS = 4


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    # Sockets pause well before a client's buffer limit, so a client the fan-out still
    # writes to can never be over it (the slow-client sweep relies on that).
    write_high = min(SocketTuning.write_high, settings.client_buffer_bytes // 2)
    tuning = SocketTuning(sndbuf=settings.client_sndbuf, write_high=write_high)
    http, ws = protocol_classes(tuning)
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=http,
        ws=ws,
        ws_max_size=settings.max_message_bytes,
        # Frames are pre-encoded once for every client: no per-client compression.
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=max(1.0, settings.idle_timeout - settings.ping_interval),
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run_server(settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    configure_logging(settings.log_format, settings.log_level)
    server = uvicorn.Server(uvicorn_config(settings))
    server.run()
    return 0 if server.started else 1
