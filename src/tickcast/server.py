"""Running the app under uvicorn with the settings' host, port and limits."""

from __future__ import annotations

import uvicorn

from tickcast.api import create_app
from tickcast.fastpath import SocketTuning, protocol_classes
from tickcast.logs import configure_logging
from tickcast.settings import Settings

# SPEC: on SIGTERM, clients are closed and the process exits within 5 s.
GRACEFUL_SHUTDOWN_SECONDS = 4


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    http, ws = protocol_classes(SocketTuning(sndbuf=settings.client_sndbuf))
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
