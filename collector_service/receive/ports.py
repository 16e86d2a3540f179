"""Whether the receivers' ports are free, and the error that names a taken one.

A single collector process binds its ports exclusively, so a second collector started
by mistake on the same ports fails with a clear error instead of silently sharing the
load. Worker processes share their ports with ``SO_REUSEPORT``: the supervisor checks
that the ports are free (exclusively, as a single process does), then holds them with
:func:`reserve_ports` while its workers bind beside it.
"""

from __future__ import annotations

import socket

from collector_service.config import CollectorConfig
from collector_service.errors import ConfigError


def shares_ports(config: CollectorConfig) -> bool:
    """Whether this process is one of several workers listening on the same ports."""
    return config.worker_index is not None


def check_ports_free(config: CollectorConfig) -> None:
    """Fail at once, before anything starts, when a receiver's port is taken.

    A worker skips the check: its supervisor made it and holds the ports for it.
    """
    if shares_ports(config):
        return
    for port, kind in ((config.grpc_port, "grpc"), (config.http_port, "http")):
        if port == 0:
            continue
        with socket.socket(_family(config.host)) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                probe.bind((config.host, port))
            except OSError as exc:
                raise port_taken(config.host, port, kind) from exc


def reserve_ports(config: CollectorConfig) -> tuple[socket.socket, socket.socket]:
    """Bind (without listening) a shared socket on each receiver port.

    Port 0 becomes a concrete free port that every worker then uses. A bound socket that
    does not listen receives no connections, but keeps programs that do not share the
    port from taking it while workers start and restart.
    """
    held: list[socket.socket] = []
    try:
        for port, kind in ((config.grpc_port, "grpc"), (config.http_port, "http")):
            sock = socket.socket(_family(config.host))
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind((config.host, port))
            except OSError as exc:
                raise port_taken(config.host, port, kind) from exc
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held[0], held[1]


def port_taken(host: str, port: int, kind: str) -> ConfigError:
    """The error for a receiver (``grpc`` or ``http``) that cannot listen on ``port``."""
    name = "gRPC" if kind == "grpc" else "HTTP"
    return ConfigError(f"cannot listen for OTLP/{name} on {host}:{port}: the port is in use "
                       f"or not available; choose another with --{kind}-port / "
                       f"XRAY_{kind.upper()}_PORT (0 picks a free port)")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
