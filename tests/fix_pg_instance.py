"""A PostgreSQL cluster of the test's own, which the test may stop and start at will.

Unlike the shared test server (``fix_db``), this one exists to be broken: outages are
injected with ``stop()`` and ended with ``start()``. It is created with the machine's
``initdb``/``pg_ctl``, run as the ``postgres`` user when the tests run as root (the same
helpers the embedded database uses), and listens on a free loopback TCP port so clients
see what they would see of a remote server going away: refused connections.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import psycopg
import pytest

from collector_service.store.embedded import chown_to_owner, postgres_binary, run_as_owner

StopMode = Literal["smart", "fast", "immediate"]
# The cluster lives only as long as its test: durability to the OS cache is enough.
_SERVER_OPTIONS = ("-c fsync=off -c full_page_writes=off -c shared_buffers=32MB "
                   "-c max_connections=60")


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresInstance:
    """One cluster in ``directory``, listening on ``127.0.0.1:port``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.running = False

    @property
    def pgdata(self) -> Path:
        return self.directory / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        """Create the cluster (trust authentication, as on a developer's machine)."""
        self.pgdata.mkdir(parents=True)
        chown_to_owner(self.pgdata)
        run_as_owner([postgres_binary("initdb"), "-D", str(self.pgdata), "-U", "postgres",
                       "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"],
                      self.pgdata)

    def start(self) -> None:
        """Start the server; returns once it accepts connections."""
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.pgdata} {_SERVER_OPTIONS}")
        run_as_owner([postgres_binary("pg_ctl"), "start", "-D", str(self.pgdata), "-w", "-t", "60",
                       "-l", str(self.pgdata / "server.log"), "-o", options], self.pgdata)
        self.running = True

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: ``fast`` ends sessions cleanly, ``immediate`` as a crash would."""
        run_as_owner([postgres_binary("pg_ctl"), "stop", "-D", str(self.pgdata), "-w", "-m", mode],
                      self.pgdata)
        self.running = False

    def execute(self, query: str) -> list[tuple[object, ...]]:
        """Run one query on the ``postgres`` database and return its rows."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def server_log(self) -> str:
        path = self.pgdata / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def pg_instance() -> Iterator[PostgresInstance]:
    """A started cluster of this test's own, removed afterwards."""
    # Not under pytest's basetemp: its folders are 0700, closed to the server's user.
    directory = Path(tempfile.mkdtemp(prefix="xray-pg-instance-"))
    directory.chmod(0o755)
    instance = PostgresInstance(directory)
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        if instance.running:
            instance.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
