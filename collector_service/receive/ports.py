"""Whether the receivers' ports are free, and the error that names a taken one."""

from __future__ import annotations

import socket

from collector_service.config import CollectorConfig
from collector_service.errors import ConfigError


def check_ports_free(config: CollectorConfig) -> None:
    """Fail at once, before anything starts, when a receiver's port is taken."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    for port, kind in ((config.grpc_port, "grpc"), (config.http_port, "http")):
        if port == 0:
            continue
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                probe.bind((config.host, port))
            except OSError as exc:
                raise port_taken(config.host, port, kind) from exc


def port_taken(host: str, port: int, kind: str) -> ConfigError:
    """The error for a receiver (``grpc`` or ``http``) that cannot listen on ``port``."""
    name = "gRPC" if kind == "grpc" else "HTTP"
    return ConfigError(f"cannot listen for OTLP/{name} on {host}:{port}: the port is in use "
                       f"or not available; choose another with --{kind}-port / "
                       f"XRAY_{kind.upper()}_PORT (0 picks a free port)")
