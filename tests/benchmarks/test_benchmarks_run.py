"""The benchmarks behind docs/performance.md still run and print their figures.

Each script runs at a tiny size against the test server, as a whole process, the way its
docstring says to run it. Only that it completes and prints each figure beside its
baseline is checked: no timing is asserted (the machine is shared and noisy)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NUMBER = r"[\d,.]+"


def _run(script: str, *args: str) -> str:
    """The script's standard output; its standard error too if it fails."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _scratch_databases(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'xray_bench%'")
        return {name for (name,) in rows.fetchall()}


@pytest.fixture
def server_url(pg_admin_url: str) -> Iterator[str]:
    """The test server; every scratch database a benchmark makes is gone after it."""
    before = _scratch_databases(pg_admin_url)
    yield pg_admin_url
    assert _scratch_databases(pg_admin_url) == before


def test_ingest_prints_each_worker_count_beside_copy(server_url: str) -> None:
    out = _run("ingest.py", "--workers", "1,2", "--spans", "2000", "--repeat", "1",
               "--database-url", server_url)
    for workers in (1, 2):
        assert re.search(rf"ingest_grpc_workers_{workers}: 2,200 spans in {NUMBER} s", out), out
        assert re.search(rf"ingest_grpc_workers_{workers}\) reaches \d+% of raw COPY", out), out
        assert re.search(rf"CPU per span, --workers {workers} .*collector {NUMBER} µs, "
                         rf"PostgreSQL {NUMBER} µs", out), out
        assert re.search(rf"peak RSS under load, --workers {workers}: ", out), out
    assert re.search(r"baseline_copy: 2,000 rows in", out), out
    assert re.search(rf"scaling: 2 workers reach {NUMBER}x one worker", out), out


def test_transports_prints_every_transport_against_grpc(server_url: str) -> None:
    out = _run("transports.py", "--spans", "2000", "--repeat", "1", "--database-url", server_url)
    for name in ("grpc", "http_protobuf", "http_protobuf_gzip", "http_json",
                 "http_json_parsedict"):
        assert re.search(rf"{name}: 2,200 spans in {NUMBER} s = {NUMBER} spans/s, "
                         rf"{NUMBER}x gRPC", out), out
    assert re.search(rf"json, collector decoder: +{NUMBER} us/span", out), out


def test_mapping_prints_both_batches_beside_parsing() -> None:
    out = _run("mapping.py", "--batches", "1", "--repeat", "1")
    for batch in ("lean", "rich"):
        assert re.search(rf"^{batch}: 1 requests, 512 spans", out, re.MULTILINE), out
    assert len(re.findall(rf"map_to_rows +{NUMBER} µs/span", out)) == 2, out
    assert len(re.findall(rf"parse_only \(baseline\) +{NUMBER} µs/span", out)) == 2, out


def test_write_path_prints_the_collectors_sql_beside_copy(server_url: str) -> None:
    with psycopg.connect(server_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        if backend is None or not Path(f"/proc/{backend[0]}/stat").exists():
            pytest.skip("write_path.py reads the server process's CPU: the server is not local")
    out = _run("write_path.py", "--spans", "2000", "--database-url", server_url)
    assert re.search(rf"collector: {NUMBER} µs of server CPU per step", out), out
    assert re.search(rf"baseline_copy \(512 rows a transaction\): {NUMBER} µs", out), out
    assert re.search(rf"ratio: the collector's SQL costs {NUMBER}x a plain COPY", out), out


def test_seed_query_prints_both_indexes_and_the_floor(server_url: str) -> None:
    out = _run("seed_query.py", "--server-url", server_url, "--steps", "100000",
               "--repeats", "3", "--drop")
    for index in ("0008 index (current)", "0001 index (baseline)"):
        assert re.search(rf"seed query, {re.escape(index)} \S+: {NUMBER} rows of 100,000 "
                         rf"steps; median {NUMBER} ms", out), out
    assert "Index Only Scan using" in out, out
    assert re.search(rf"from a table of only those rows .*median {NUMBER} ms", out), out
    assert re.search(rf"with constraint_exclusion = off: as psql runs it {NUMBER} ms", out), out


def test_cli_start_prints_each_command_beside_the_interpreter(server_url: str) -> None:
    out = _run("cli_start.py", "--server-url", server_url, "--repeats", "1")
    for command in (r"python -c pass", r"python -c 'import psycopg'", r"xray --help",
                    r"xray show RUN \(10,000 steps\)"):
        assert re.search(rf"^{command} .* {NUMBER} +{NUMBER}$", out, re.MULTILINE), out
