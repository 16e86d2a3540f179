"""A real collector (gRPC and HTTP on loopback) over the test database, and a closed port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread, Endpoints


@dataclass
class RunningCollector:
    endpoints: Endpoints
    data_dir: Path

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.endpoints.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.endpoints.http_port}"


@pytest.fixture
def collector(db: psycopg.Connection, migrated_url: str,
              tmp_path: Path) -> Iterator[RunningCollector]:
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path / "xray",
                             grpc_port=0, http_port=0)
    with CollectorThread(config) as endpoints:
        yield RunningCollector(endpoints, config.data_dir)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_xray_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the command line only, whatever the developer's shell exports
    (use with ``pytestmark = pytest.mark.usefixtures("no_xray_environment")``)."""
    for name in list(os.environ):
        if name.startswith("XRAY_"):
            monkeypatch.delenv(name)
