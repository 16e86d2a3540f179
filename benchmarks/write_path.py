"""PostgreSQL's CPU per step for the collector's write path, beside a plain COPY.

What it measures
----------------
The step spans of ``ingest.py``'s workload are mapped once (no timing), then written
request by request (512 spans, one transaction each) through the collector's own write
function on one connection, on a database of this machine. For each statement the
script reads the CPU time the connection's *server process* used (``/proc/<pid>/stat``
of ``pg_backend_pid()``), so the figure is PostgreSQL's own work, whatever Python costs:

* ``collector``: the collector's transactions (runs upserted, stored step keys read,
  new steps by ``COPY`` into ``xray_steps``), in µs of server CPU per step, and per
  statement;
* ``staging route``: the same batches written as replays are (every step through the
  staging table and ``INSERT … SELECT``), the route all steps took before;
* ``baseline_copy``: a plain ``COPY`` of the same rows, 512 per transaction, into a
  table created ``LIKE xray_steps INCLUDING ALL``.

Needs a PostgreSQL on this machine (the server process must be readable under
``/proc``): ``--database-url``, else ``$XRAY_BENCH_DATABASE_URL``, else an embedded one.

Usage::

    python benchmarks/write_path.py [--spans N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from _bench_support import BenchmarkError, embedded_server, scratch_database
from ingest import build_requests, copy_rows, fresh_copy_table, generate_runs

from collector_service.ingest.mapping import map_request
from collector_service.store import postgres
from collector_service.store.migrate import apply_migrations
from collector_service.store.queries import load
from collector_service.store.rows import MappedBatch

DEFAULT_SPANS = 50_000
ENV_DATABASE_URL = "XRAY_BENCH_DATABASE_URL"
BATCH_ROWS = 512


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the server process ``pid`` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        raise BenchmarkError("the database's server process is not on this machine") from None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StatementClock:
    """Server CPU per named statement of ``ingest.sql`` run through ``AsyncCursor.execute``
    (COPY data and commits are counted in the total only)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.by_statement: dict[str, float] = defaultdict(float)
        self._names = {text: name for name, text in load("ingest.sql").items()}
        self._execute = psycopg.AsyncCursor.execute

    def __enter__(self) -> StatementClock:
        clock, execute = self, self._execute

        async def timed(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            before = server_cpu_s(clock.pid)
            try:
                return await execute(cursor, query, params, **kwargs)
            finally:
                name = clock._names.get(query, "other")
                clock.by_statement[name] += server_cpu_s(clock.pid) - before

        psycopg.AsyncCursor.execute = timed  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        psycopg.AsyncCursor.execute = self._execute  # type: ignore[method-assign]


async def write_batches(url: str, batches: Sequence[MappedBatch], copy_new: bool
                        ) -> tuple[float, dict[str, float]]:
    """Server CPU seconds for all batches, and per statement."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        await conn.execute("TRUNCATE xray_steps, xray_runs")
        with StatementClock(pid) as clock:
            before = server_cpu_s(pid)
            for batch in batches:
                async with conn.transaction():
                    await postgres._write_rows(conn, batch.runs, batch.steps, [],
                                               copy_new=copy_new)
            total = server_cpu_s(pid) - before
        return total, dict(clock.by_statement)


def copy_baseline(url: str, rows: Sequence[tuple[Any, ...]]) -> float:
    """Server CPU seconds of a plain COPY of ``rows``, ``BATCH_ROWS`` per transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        statement = fresh_copy_table(conn)
        pid = conn.info.backend_pid
        before = server_cpu_s(pid)
        for start in range(0, len(rows), BATCH_ROWS):
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                for row in rows[start: start + BATCH_ROWS]:
                    copy.write_row(row)
        return server_cpu_s(pid) - before


def report(label: str, seconds: float, steps: int, parts: dict[str, float] | None = None
           ) -> None:
    print(f"{label}: {seconds / steps * 1e6:.1f} µs of server CPU per step")
    for name, part in sorted((parts or {}).items(), key=lambda item: -item[1]):
        print(f"    {name:<26}{part / steps * 1e6:6.1f} µs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=DEFAULT_SPANS,
                        help=f"step spans (default {DEFAULT_SPANS:,})")
    parser.add_argument("--database-url", default=os.environ.get(ENV_DATABASE_URL))
    args = parser.parse_args(argv)
    runs = generate_runs(args.spans)
    received = datetime.now(UTC)
    batches = [map_request(request, received) for request in build_requests(runs)]
    steps = sum(len(batch.steps) for batch in batches)
    try:
        with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
            server = (contextlib.nullcontext(args.database_url) if args.database_url
                      else embedded_server(Path(tmp) / "pg"))
            with server as server_url, scratch_database(server_url) as url:
                apply_migrations(url)
                collector = asyncio.run(write_batches(url, batches, copy_new=True))
                staged = asyncio.run(write_batches(url, batches, copy_new=False))
                baseline = copy_baseline(url, copy_rows(runs))
    except BenchmarkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"workload: {steps:,} step spans in {len(batches)} requests of up to "
          f"{BATCH_ROWS} spans, one transaction each")
    report("collector", collector[0], steps, collector[1])
    report("staging route (every step as a replay is written)", staged[0], steps, staged[1])
    report(f"baseline_copy ({BATCH_ROWS} rows a transaction)", baseline, steps)
    print(f"ratio: the collector's SQL costs {collector[0] / baseline:.2f}x a plain COPY "
          f"(staging route: {staged[0] / baseline:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
