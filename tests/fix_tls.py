"""Certificates for TLS tests (a CA, a server certificate for loopback, a client
certificate, all made by ``trustme``), and a collector started with any configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread, Endpoints


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA, the server's chain and key, a client's chain and key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def read(self, name: str) -> bytes:
        path: Path = getattr(self, name)
        return path.read_bytes()


def write_certificates(folder: Path, ca: trustme.CA) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("producer.example.com")
    paths = Certificates(*(folder / name for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.server_key))
    client.private_key_pem.write_to_path(str(paths.client_key))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(paths.server_cert), append=True)
    for blob in client.cert_chain_pems:
        blob.write_to_path(str(paths.client_cert), append=True)
    return paths


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return write_certificates(tmp_path_factory.mktemp("tls"), trustme.CA())


@dataclass
class StartedCollector:
    """A running collector: where it listens, its database, and the thread running it."""

    endpoints: Endpoints
    thread: CollectorThread
    url: str

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.endpoints.grpc_port}"

    def http_url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.endpoints.http_port}"

    def metric(self, name: str, **labels: str) -> float:
        value = self.thread.collector.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def stored(self) -> tuple[int, int]:
        """(steps, runs) stored in the collector's database."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT (SELECT count(*) FROM xray_steps),"
                               " (SELECT count(*) FROM xray_runs)").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


StartCollector = Callable[..., StartedCollector]


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[StartCollector]:
    """``start_collector(url, **settings)`` starts a collector; all stop at the test's end."""
    threads: list[CollectorThread] = []

    def start(url: str, **settings: Any) -> StartedCollector:
        config = CollectorConfig(database_url=url, data_dir=tmp_path / f"xray{len(threads)}",
                                 grpc_port=0, http_port=0, **settings)
        thread = CollectorThread(config)
        threads.append(thread)
        return StartedCollector(thread.start(), thread, url)

    yield start
    for thread in threads:
        thread.stop()
