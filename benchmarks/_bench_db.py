"""Databases for the benchmarks: the server to use, a scratch database, a clean slate.

Shared by ``ingest.py`` and ``artifacts.py`` (run as scripts, so this folder is on
``sys.path``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector_service.embedded import EmbeddedPostgres


class BenchmarkError(RuntimeError):
    """The benchmark could not run, or the collector stored something other than expected."""


def server_description(url: str) -> str:
    """Where the server is, without credentials."""
    params = conninfo_to_dict(url)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


@contextlib.contextmanager
def embedded_server(directory: Path) -> Iterator[str]:
    """An embedded PostgreSQL in ``directory``, stopped on exit."""
    embedded = EmbeddedPostgres(directory)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``server_url``; dropped on exit."""
    name = f"xray_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    return str(row[0]) if row else "unknown"


def reset_tables(url: str) -> None:
    """Empty the X-Ray tables and checkpoint, so each phase starts from the same state."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE xray_steps, xray_runs, xray_artifacts")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")  # flush earlier phases' writes outside the timing


def check_response(response: ExportTraceServiceResponse) -> None:
    """Fail unless the collector stored every span as sent."""
    partial = response.partial_success
    if partial.rejected_spans or partial.error_message:
        raise BenchmarkError(f"the collector did not store the spans as sent "
                             f"({partial.rejected_spans} rejected): {partial.error_message[:300]}")
