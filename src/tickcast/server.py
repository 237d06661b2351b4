"""Running the app under uvicorn with the settings' host, port and limits."""

from __future__ import annotations

import errno
import logging
import socket

import uvicorn

from tickcast import __version__
from tickcast.api import create_app
from tickcast.edge.fastpath import SocketTuning, protocol_classes, write_path
from tickcast.logs import configure_logging
from tickcast.settings import Settings

log = logging.getLogger("tickcast.server")

# SPEC: on SIGTERM, clients are closed and the process exits within 5 s.
GRACEFUL_SHUTDOWN_SECONDS = 4


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    # Sockets pause well before a client's buffer limit, so a client the fan-out still
    # writes to can never be over it (the slow-client sweep relies on that).
    write_high = min(SocketTuning.write_high, settings.client_buffer_bytes // 2)
    tuning = SocketTuning(sndbuf=settings.client_sndbuf, write_high=write_high)
    app = create_app(settings)
    http, ws = protocol_classes(tuning, app.guard)
    return uvicorn.Config(
        app,
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
    # The token arrives in request targets (?token=) that uvicorn logs: keep it out.
    configure_logging(settings.log_format, settings.log_level, secrets=[settings.token])
    try:
        listener = bind_listener(settings.host, settings.port)
    except BindError as exc:
        log.error("%s", exc)
        return 1
    host, port = listener.getsockname()[:2]
    log.info(
        "tickcast %s listening on http://%s:%d (write path: %s)",
        __version__,
        f"[{host}]" if ":" in host else host,
        port,
        write_path(),
    )
    server = uvicorn.Server(uvicorn_config(settings))
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    return 0 if server.started else 1


class BindError(Exception):
    """The listening socket could not be opened; the message says what to do."""


def bind_listener(host: str, port: int) -> socket.socket:
    """Open the listening socket before the app starts, so a port in use is one clear
    error before anything else is logged (uvicorn would report it after startup)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(_bind_problem(host, port, exc)) from exc
    sock.set_inheritable(True)
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    hint = "choose another port with --port or TICKCAST_PORT"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use on {host} (is tickcast already running?): {hint}"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {where} (ports below 1024 need privileges): {hint}"
    if exc.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME) or isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {where}: {host} is not an address of this machine: "
            "choose another with --host or TICKCAST_HOST"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"
