"""Check that a server can listen on ``host:port`` before starting it.

uvicorn reports an address in use by logging it and exiting the process from inside its startup,
which reaches a caller of ``flock.serve()`` as a ``SystemExit`` in an exception group. Binding a
socket first turns the common cases (a port in use, a host that is not an address of this machine)
into one :class:`~flock.ConfigurationError` that says what to do. The socket is closed again at once:
another process may take the port in between, and then uvicorn's own error still stops the server.
"""

from __future__ import annotations

import errno
import os
import socket

from .._core.errors import ConfigurationError


def check_address(host: str, port: int, *, what: str = "serve") -> None:
    """Raise :class:`ConfigurationError` when nothing could listen on ``host:port`` now."""
    if port == 0:  # the OS picks a free port
        return
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"cannot {what} on {host}:{port}: the host name does not resolve ({exc.strerror}). Give an "
            "address of this machine: 127.0.0.1 for this machine only, 0.0.0.0 for every interface."
        ) from None
    try:
        with socket.create_server((host, port)):  # SO_REUSEADDR, as uvicorn binds
            pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"cannot {what} on {host}:{port}: the port is already in use (another server, or an "
                f"earlier one still running): choose another port (--port, or port=) or stop that process."
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ConfigurationError(
                f"cannot {what} on {host}:{port}: not allowed to listen on that port "
                f"({os.strerror(exc.errno)}); ports below 1024 need privileges: choose 1024 or above."
            ) from None
        raise ConfigurationError(
            f"cannot {what} on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}. Give an "
            "address of this machine (127.0.0.1 for this machine only, 0.0.0.0 for every interface)."
        ) from None
