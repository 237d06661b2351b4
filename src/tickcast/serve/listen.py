"""The listening socket, opened before anything else starts: a port in use is one clear
line, not a traceback after start-up. Kept apart from ``server`` so that the ``--workers``
supervisor can reserve the port without loading the app."""

from __future__ import annotations

import errno
import socket


class BindError(Exception):
    """The listening socket could not be opened; the message says what to do."""


def bind_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """Open the listening socket before the app starts, so a port in use is one clear
    error before anything else is logged (uvicorn would report it after startup).
    ``reuse_port``: other processes of this user may bind the same port, and the kernel
    spreads connections over every one of them that listens."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
