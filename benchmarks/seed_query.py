"""The seed query at 10 million steps: the index of migration 0008 beside the one of 0001.

    python3 benchmarks/seed_query.py [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
                                     [--steps 10000000] [--repeats 30] [--drop]

Builds, once, a database named ``xray_bench_seed_<steps>`` on the server: migrated, its
partitions created for the 30 days the data covers (as collectors create them: a week
each, unless the server's ``xray.step_partition_days`` says otherwise), then
``--steps`` realistic steps generated in SQL (runs of ten steps over 30 days, three
filters a run, about one filter in 300 dropping more than 90%: some 10,000 rows for the
seed query), with 0001's index built beside the current one, vacuumed and analysed. A
later run reuses it when it holds that many steps (``--drop`` drops it at the end).

Then, for each index alone (the other dropped inside a transaction that is rolled back),
the seed query exactly as written is run ``--repeats`` times and the median and p95
wall times are printed (client side: the query and fetching its rows into Python tuples, as
text, psycopg's default, then as binary, as asyncpg and JDBC fetch; and as psql's
``\timing`` sees it: planned every time, the rows received by libpq and not converted,
so the figure is the database's and the wire's, not the Python client's), the server's own median
planning and execution times (no rows sent) and the plan; for the current index also with
``constraint_exclusion = off``, an operator's choice. Beside them: fetching the same
rows from a table of only those rows (the floor under any index), the index sizes (summed
over the partitions), and the time to insert 100,000 more steps (rolled back) with either
index or neither (fastest of three).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_support import server_description, server_version

from collector_service.store.migrate import apply_migrations

SEED_QUERY = """
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio
FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9
ORDER BY drop_ratio DESC;
"""
CURRENT = "xray_steps_type_drop_ratio_idx"
BASELINE = "bench_seed_0001_idx"
BASELINE_DDL = f"CREATE INDEX {BASELINE} ON xray_steps (step_type, drop_ratio DESC NULLS LAST)"
INSERT_ROWS = 100_000

# Step g of run g / 10 at position g % 10: search, filter, llm, filter, rank, transform,
# filter, llm, rank, other. Filters keep 11-95% of their candidates, but one in 300 keeps
# under 10% and one in 100 reports no output; llm, transform and other steps report no
# candidates. Runs start over 30 days before 2026-11-01, steps 40 ms apart.
GENERATE = """
INSERT INTO xray_steps (run_id, seq, step_name, step_type, pipeline, candidates_in,
                        candidates_out, why, status, started_at, ended_at, trace_id, span_id)
SELECT md5(run::text), pos + 1, name, kind, 'pipeline-' || (run %% 20),
       CASE WHEN kind IN ('filter', 'rank') THEN n_in END,
       CASE WHEN kind = 'search' THEN n_in
            WHEN kind = 'rank' THEN n_in
            WHEN kind <> 'filter' OR luck < 0.01 THEN NULL
            WHEN luck < 0.01 + 1.0 / 300 THEN floor(n_in * random() * 0.1)
            ELSE floor(n_in * (0.11 + random() * 0.84)) END,
       CASE WHEN kind = 'filter' THEN 'kept those passing ' || name END,
       'ok', at, at + interval '35 milliseconds', md5(run::text), lpad(to_hex(g), 16, '0')
FROM generate_series(%(first)s, %(last)s) AS g,
     LATERAL (SELECT g / 10 AS run, g %% 10 AS pos, random() AS luck,
                     200 + floor(random() * 4800)::bigint AS n_in) AS r,
     LATERAL (SELECT (ARRAY['search', 'filter', 'llm', 'filter', 'rank', 'transform',
                            'filter', 'llm', 'rank', 'other'])[pos + 1] AS kind,
                     (ARRAY['retrieve', 'dedupe_filter', 'llm_score', 'price_filter',
                            'rank', 'summarize', 'stock_filter', 'llm_explain', 'rerank',
                            'emit'])[pos + 1] AS name,
                     timestamptz '2026-11-01' - interval '30 days'
                         + (run * 10.0 / %(steps)s) * interval '30 days'
                         + pos * interval '40 milliseconds' AS at) AS s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="The seed query at 10 million steps.")
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    name = f"xray_bench_seed_{args.steps}"
    url = make_conninfo(args.server_url, dbname=name)
    print(f"server {server_description(args.server_url)}: {server_version(args.server_url)}")
    try:
        ensure_database(args.server_url, name, url, args.steps)
        with psycopg.connect(url, autocommit=True) as conn:
            report(conn, args.repeats)
    finally:
        if args.drop:
            with psycopg.connect(args.server_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


def ensure_database(server_url: str, name: str, url: str, steps: int) -> None:
    """Reuse the database when it holds ``steps`` steps and both indexes; else build it."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if exists.fetchone() is not None:
            with psycopg.connect(url) as conn:
                if is_complete(conn, steps):
                    print(f"reusing database {name} ({steps:,} steps)")
                    return
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    began = time.perf_counter()
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        build(conn, steps)
    print(f"built database {name}: {steps:,} steps in {time.perf_counter() - began:.0f} s")


def is_complete(conn: psycopg.Connection, steps: int) -> bool:
    try:
        row = conn.execute(
            "SELECT count(*), to_regclass(%s) IS NOT NULL,"
            " (SELECT relkind = 'p' FROM pg_class WHERE oid = 'xray_steps'::regclass)"
            " FROM xray_steps", (BASELINE,)).fetchone()
    except psycopg.errors.UndefinedTable:
        return False
    return row is not None and row[0] == steps and bool(row[1]) and bool(row[2])


def build(conn: psycopg.Connection, steps: int) -> None:
    """Load the steps with the indexes dropped, then rebuild them (far faster than
    maintaining them row by row), add 0001's index, vacuum and analyse."""
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("SELECT setseed(0.42)")
    conn.execute("SELECT xray_create_step_partitions(date '2026-10-01', date '2026-11-01')")
    indexes = conn.execute(
        "SELECT c.relname, pg_get_indexdef(c.oid), con.conname, pg_get_constraintdef(con.oid)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid"
        " WHERE i.indrelid = 'xray_steps'::regclass").fetchall()
    for index, _, constraint, _ in indexes:
        if constraint:
            conn.execute(sql.SQL("ALTER TABLE xray_steps DROP CONSTRAINT {}").format(
                sql.Identifier(constraint)))
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
    chunk = 1_000_000
    for first in range(1, steps + 1, chunk):
        last = min(first + chunk - 1, steps)
        began = time.perf_counter()
        conn.execute(GENERATE, {"first": first, "last": last, "steps": steps})
        print(f"  steps {first:,}-{last:,}: {time.perf_counter() - began:.1f} s", flush=True)
    for index, definition, constraint, constraint_def in indexes:
        began = time.perf_counter()
        if constraint:
            conn.execute(sql.SQL("ALTER TABLE xray_steps ADD CONSTRAINT {} {}").format(
                sql.Identifier(constraint), sql.SQL(constraint_def)))
        else:  # a partitioned table's index is defined ON ONLY the parent: build them all
            conn.execute(definition.replace(" ON ONLY ", " ON ", 1).encode())
        print(f"  index {index}: {time.perf_counter() - began:.1f} s", flush=True)
    began = time.perf_counter()
    conn.execute(BASELINE_DDL.encode())
    print(f"  index {BASELINE} (0001's definition): {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) xray_steps")
    print(f"  vacuum analyze: {time.perf_counter() - began:.1f} s", flush=True)


@contextmanager
def only(conn: psycopg.Connection, keep: str | None) -> Iterator[None]:
    """Inside a rolled-back transaction, the seed indexes other than ``keep`` dropped."""
    with conn.transaction(force_rollback=True):
        for index in (CURRENT, BASELINE):
            if index != keep:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
        yield


def median_p95(times: list[float]) -> tuple[float, float]:
    """The median and the 95th percentile (nearest rank) of ``times``."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * len(ordered)))]


def time_query(conn: psycopg.Connection, repeats: int, binary: bool = False,
               query: str = SEED_QUERY) -> tuple[float, float, int]:
    """Median and p95 wall time (ms) of the query and its rows fetched, after two
    warm-up runs; results as text (psql's and psycopg's default) or ``binary``."""
    cur = conn.cursor(binary=binary)
    for _ in range(2):
        rows = cur.execute(query.encode()).fetchall()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        rows = cur.execute(query.encode()).fetchall()
        times.append((time.perf_counter() - began) * 1000)
    return (*median_p95(times), len(rows))


def time_as_psql(conn: psycopg.Connection, repeats: int, query: str = SEED_QUERY
                 ) -> tuple[float, float, int]:
    """Median and p95 wall time (ms) of the query as psql's ``\\timing`` reports it: sent as
    a simple query (so planned every time, never prepared), every row received by libpq,
    none turned into Python values. After two warm-up runs."""
    pgconn = conn.pgconn
    times, rows = [], 0
    for run in range(repeats + 2):
        began = time.perf_counter()
        result = pgconn.exec_(query.encode())
        elapsed = (time.perf_counter() - began) * 1000
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise RuntimeError(f"the query failed: {result.error_message.decode()}")
        rows = result.ntuples
        if run >= 2:
            times.append(elapsed)
    return (*median_p95(times), rows)


def print_without_constraint_exclusion(conn: psycopg.Connection, repeats: int) -> None:
    """The same with ``constraint_exclusion = off``, an operator's choice (see
    docs/performance.md): PostgreSQL's default makes every plan parse and test the
    ``CHECK`` constraints of each partition; declarative partitions need none of it."""
    conn.execute("SET constraint_exclusion = off")
    try:
        psql_median, _, _ = time_as_psql(conn, repeats)
        planning, execution = server_ms(conn, repeats)
    finally:
        conn.execute("RESET constraint_exclusion")
    print(f"  with constraint_exclusion = off: as psql runs it {psql_median:.1f} ms;"
          f" {execution:.1f} ms to execute, {planning:.1f} ms to plan (median)")


def server_ms(conn: psycopg.Connection, repeats: int) -> tuple[float, float]:
    """Median planning and execution time (ms) on the server alone, no rows sent:
    ``EXPLAIN (ANALYZE, TIMING OFF)``, which skips the per-node clocks."""
    planning, execution = [], []
    for _ in range(repeats):
        summary = conn.execute(b"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) "
                               + SEED_QUERY.encode()).fetchone()
        assert summary is not None
        planning.append(summary[0][0]["Planning Time"])
        execution.append(summary[0][0]["Execution Time"])
    return statistics.median(planning), statistics.median(execution)


def plan(conn: psycopg.Connection) -> str:
    rows = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + SEED_QUERY.encode()).fetchall()
    return "\n".join("    " + r[0] for r in rows)


def insert_seconds(conn: psycopg.Connection, keep: str | None, steps: int) -> float:
    """Time to insert ``INSERT_ROWS`` more steps (with every other index), rolled back."""
    with only(conn, keep):
        began = time.perf_counter()
        conn.execute(GENERATE, {"first": steps + 1, "last": steps + INSERT_ROWS,
                                "steps": steps})
        return time.perf_counter() - began


def report(conn: psycopg.Connection, repeats: int) -> None:
    steps = conn.execute("SELECT count(*) FROM xray_steps").fetchone()
    total = steps[0] if steps else 0
    # The floor under any index: the same rows, fetched from a table of only those rows.
    conn.execute(b"CREATE TEMP TABLE seed_rows AS " + SEED_QUERY.rstrip().rstrip(";").encode())
    rows_alone = ("SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio"
                  " FROM seed_rows")
    median, p95, count = time_query(conn, repeats, query=rows_alone)
    binary_median, _, _ = time_query(conn, repeats, binary=True, query=rows_alone)
    psql_median, _, _ = time_as_psql(conn, repeats, query=rows_alone)
    print(f"\nthe same {count:,} rows from a table of only those rows (no search, no sort):"
          f" median {median:.1f} ms, p95 {p95:.1f} ms; binary results {binary_median:.1f} ms;"
          f" as psql receives them {psql_median:.1f} ms")
    conn.execute("DROP TABLE seed_rows")
    for label, index in (("0008 index (current)", CURRENT), ("0001 index (baseline)", BASELINE)):
        with only(conn, index):
            median, p95, count = time_query(conn, repeats)
            binary_median, binary_p95, _ = time_query(conn, repeats, binary=True)
            psql_median, psql_p95, _ = time_as_psql(conn, repeats)
            planning, execution = server_ms(conn, repeats)
            print(f"\nseed query, {label} {index}: {count:,} rows of {total:,} steps; "
                  f"median {median:.1f} ms, p95 {p95:.1f} ms over {repeats} runs")
            print(f"  as psql runs it (planned each time, rows received by libpq, not turned"
                  f" into Python values): median {psql_median:.1f} ms, p95 {psql_p95:.1f} ms")
            print(f"  binary results: median {binary_median:.1f} ms, p95 {binary_p95:.1f} ms;"
                  f" on the server alone (no rows sent): {execution:.1f} ms to execute,"
                  f" {planning:.1f} ms to plan (median)")
            if index == CURRENT:
                print_without_constraint_exclusion(conn, repeats)
            print(plan(conn))
    print("\nindex sizes:")
    for index in (CURRENT, BASELINE):
        size = conn.execute(
            "SELECT pg_size_pretty(sum(pg_relation_size(relid))), sum(pg_relation_size(relid))"
            " FROM pg_partition_tree(%s::regclass)", (index,)).fetchone()
        assert size is not None
        print(f"  {index}: {size[0]} ({size[1] / max(total, 1):.0f} bytes a step)")
    print(f"\ninserting {INSERT_ROWS:,} steps into {total:,} (all other indexes kept, "
          "rolled back; three interleaved rounds, the fastest kept):")
    timings: dict[str | None, float] = {}
    for _ in range(3):
        for keep in (None, BASELINE, CURRENT):
            seconds = insert_seconds(conn, keep, total)
            timings[keep] = min(seconds, timings.get(keep, seconds))
    for keep, seconds in timings.items():
        extra = seconds - timings[None]
        print(f"  {keep or 'neither seed index'}: {seconds:.2f} s"
              + (f" (+{extra * 1e6 / INSERT_ROWS:.1f} us a step)" if keep else ""))
    began = time.perf_counter()
    conn.execute("VACUUM xray_steps")  # the rolled-back rows, so a rerun finds the same
    print(f"\n(vacuum after the inserts: {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
