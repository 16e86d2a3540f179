"""Disk and WAL per step: what one stored step costs, the figure docs/scale.md multiplies.

What it measures
----------------
N demo-like steps (the five steps of the demo's competitor search, with its names, why
texts, why_json, outputs and an artifact reference; ids and times vary; 5 steps per run,
spread over one UTC day) are loaded with ``COPY`` into ``xray_steps`` of a fully migrated
database (partitioned by day), and one ``xray_runs`` row per run. Printed per step:

* ``row``: the row's own bytes (``pg_column_size`` of the row, averaged);
* ``table + TOAST`` and ``indexes``: from ``pg_total_relation_size`` over the partitions;
* ``WAL``: ``pg_current_wal_lsn()`` before and after the load (after a CHECKPOINT), so it
  includes the full-page images the first change of each index page writes;
* runs: the same per run.

Baseline, same run: the same rows into the unpartitioned table that migrations 0001-0006
build (one unique key on ``(trace_id, span_id)``), so the cost of the partitioned layout
and its wider key shows as a difference. The collector's own path (staging table, then
``INSERT ... SELECT``) writes the same heap and index entries; its staging table is
temporary and writes no WAL.

    python benchmarks/storage.py [--steps 200000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _bench_support import embedded_server, scratch_database, server_description

from collector_service.store.migrate import apply_migrations, load_migrations

ENV_DATABASE_URL = "XRAY_BENCH_DATABASE_URL"
DAY = datetime(2026, 1, 15, tzinfo=UTC)
COLUMNS = ("run_id", "seq", "step_name", "step_type", "pipeline", "candidates_in",
           "candidates_out", "why", "why_json", "output", "metrics", "status", "started_at",
           "ended_at", "trace_id", "span_id", "parent_span_id", "attributes")
OUTPUT = [{"asin": f"B0PH00{i}85", "score": 2.5, "title": "Orbit phone case for iPhone 15"}
          for i in range(3)]
ARTIFACT = {"xray.artifact.raw_response": {
    "preview": json.dumps(OUTPUT)[:200], "size_bytes": 223696,
    "artifact_id": "58a3cb90d2c936a994c139d4449ed8af6dfd30895decac737ec00bc9e2164c78",
    "content_type": "application/json"}}
# (name, type, in, out, why, why_json, output, attributes): the demo's five steps.
TEMPLATES = [
    ("generate_keywords", "llm", None, None, "Generated 3 search keywords from the title",
     None, ["phone case", "slim case", "case"], {}),
    ("search_candidates", "search", 9200, 1800, "1800 products matched 3 keywords",
     {"keywords": ["phone case", "slim case", "case"],
      "category_distribution": {"phone_cases": 1800}}, None, ARTIFACT),
    ("filter_candidates", "filter", 1800, 566,
     "Dropped 69% of candidates (category, price ±60%, rating ≥ 3.0)",
     {"thresholds": {"min_rating": 3.0, "price_band": 0.6},
      "top_reject_reasons": {"low_rating": 136, "price_out_of_range": 1098}}, None, {}),
    ("rank_candidates", "rank", 566, 10, "Top 10 by keyword overlap, then rating", None,
     OUTPUT, {}),
    ("select_best", "llm", 10, 1, "Picked 'Orbit phone case for iPhone 15'", None,
     OUTPUT[0], {}),
]


def step_rows(steps: int) -> Iterator[tuple[object, ...]]:
    for n in range(steps):
        run, seq = divmod(n, len(TEMPLATES))
        if seq == 0:
            run_id, trace_id = secrets.token_hex(16), secrets.token_hex(16)
            parent = secrets.token_hex(8)
            start = DAY + timedelta(seconds=86_000 * run / max(steps // len(TEMPLATES), 1))
        name, kind, n_in, n_out, why, why_json, output, attributes = TEMPLATES[seq]
        at = start + timedelta(milliseconds=300 * seq)
        yield (run_id, seq + 1, name, kind, "competitor_search", n_in, n_out, why,
               None if why_json is None else json.dumps(why_json),
               None if output is None else json.dumps(output), "{}", "ok", at,
               at + timedelta(milliseconds=250), trace_id, secrets.token_hex(8), parent,
               json.dumps(attributes))


def load(url: str, steps: int) -> dict[str, float]:
    """Load the steps and their runs; bytes per step (and per run) as measured."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regproc('xray_create_step_partitions')").fetchone() != (None,):
            conn.execute("SELECT xray_create_step_partitions(%s, %s)", (DAY.date(), DAY.date()))
        conn.execute("CHECKPOINT")
        start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        with conn.cursor().copy(f"COPY xray_steps ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in step_rows(steps):
                copy.write_row(row)
        conn.execute(
            "INSERT INTO xray_runs (run_id, pipeline, entity, status, started_at, ended_at,"
            " trace_id, span_id, service_name, version)"
            " SELECT run_id, 'competitor_search', 'B0PH001234', 'ok', min(started_at),"
            " max(ended_at), min(trace_id), min(parent_span_id), 'demo', 'v2'"
            " FROM xray_steps GROUP BY run_id")
        wal = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", start_lsn).fetchone()
        conn.execute("VACUUM ANALYZE xray_steps, xray_runs")
        sizes = conn.execute(
            "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid))"
            " FROM pg_class c WHERE c.oid = 'xray_steps'::regclass OR c.oid IN"
            " (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'xray_steps'::regclass)"
        ).fetchone()
        row = conn.execute("SELECT avg(pg_column_size(s.*)) FROM xray_steps s").fetchone()
        default = conn.execute("SELECT count(*) FROM xray_steps s WHERE s.tableoid ="
                               " to_regclass('xray_steps_default')").fetchone()
        runs = conn.execute("SELECT count(*), pg_total_relation_size('xray_runs')"
                            " FROM xray_runs").fetchone()
    assert sizes and row and runs and wal
    if default and default[0]:
        raise SystemExit(f"{default[0]} steps landed in xray_steps_default: "
                         "no partition holds their day")
    return {"row": float(row[0]), "table": float(sizes[0]) / steps,
            "indexes": float(sizes[1]) / steps, "wal": float(wal[0]) / steps,
            "run": float(runs[1]) / runs[0]}


def database_at(server_url: str, stack: contextlib.ExitStack, up_to: str | None) -> str:
    url = stack.enter_context(scratch_database(server_url))
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xray-migr-")))
    for migration in load_migrations():
        if up_to is None or migration.version <= up_to:
            (folder / migration.name).write_text(migration.sql)
    apply_migrations(url, folder)
    return url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=200_000, help="steps to load")
    parser.add_argument("--database-url", default=os.environ.get(ENV_DATABASE_URL),
                        help=f"a server to use [{ENV_DATABASE_URL}; default: embedded]")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = args.database_url
        if not server:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xray-bench-")))
            server = stack.enter_context(embedded_server(tmp / "pg"))
        print(f"{args.steps} demo-like steps, {len(TEMPLATES)} per run, on "
              f"{server_description(server)}")
        results = {
            "partitioned (schema now)": load(database_at(server, stack, None), args.steps),
            "baseline: unpartitioned (0006)": load(database_at(server, stack, "0006"),
                                                   args.steps),
        }
    print(f"{'bytes per step':32} {'row':>6} {'table':>7} {'indexes':>8} {'total':>7} "
          f"{'WAL':>7} {'per run':>8}")
    for label, r in results.items():
        print(f"{label:32} {r['row']:6.0f} {r['table']:7.0f} {r['indexes']:8.0f} "
              f"{r['table'] + r['indexes']:7.0f} {r['wal']:7.0f} {r['run']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
