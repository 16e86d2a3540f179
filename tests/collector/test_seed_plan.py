"""The seed query, ``xray steps`` and the viewer's steps page read one index in order.

A migrated database gets 100,000 generated steps over ten days, each in its day partition
(runs of ten, four of them filters, about a hundred filters dropping more than 90%), is
analysed and vacuumed (so the visibility map lets an index-only scan skip the table), and
the plans are read with ``EXPLAIN (FORMAT JSON)``. ``xray_steps`` is partitioned by day,
so an index is one per partition (each a partition of the parent's index, named by
PostgreSQL) and PostgreSQL combines the partitions' reads: with Merge Append, which keeps
each index's order, or, when the matching rows are few, by sorting just those rows.
The seed query exactly as written must read every partition that has rows by an
index-only scan of ``xray_steps_type_drop_ratio_idx`` (its range condition in the index,
no heap fetches); ``xray steps``'s query and the viewer's steps page must read that index
in order and sort at most the rows their LIMITs let through, and return what the plain
query (one ORDER BY ... NULLS LAST) returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from collector_service.store.migrate import apply_migrations
from collector_service.store.queries import load
from tests.fix_db import DatabaseFactory

SEED_QUERY = """
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio
FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9
ORDER BY drop_ratio DESC;
"""
INDEX = "xray_steps_type_drop_ratio_idx"
STEPS_QUERY = load("inspect.sql")["steps"].decode()
# What ``xray steps`` returns, written plainly (one index cannot serve this ORDER BY).
PLAIN_STEPS_QUERY = b"""
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio, pipeline, why
FROM xray_steps
WHERE (%(step_type)s::text IS NULL OR step_type = %(step_type)s)
  AND (%(min_drop)s::float8 IS NULL OR drop_ratio > %(min_drop)s)
  AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
  AND (%(name)s::text IS NULL OR step_name = %(name)s)
ORDER BY drop_ratio DESC NULLS LAST, started_at DESC
LIMIT %(limit)s
"""
UI_STEPS_QUERY = load("ui.sql", "collector_service.ui")["steps"].decode()
# What the viewer's steps page shows, written plainly.
PLAIN_UI_STEPS_QUERY = b"""
SELECT run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out,
       drop_ratio, why, started_at
FROM xray_steps
WHERE (%(step_type)s::text IS NULL OR step_type = %(step_type)s)
  AND (%(min_drop)s::float8 IS NULL OR drop_ratio > %(min_drop)s)
  AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
  AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)
ORDER BY drop_ratio DESC NULLS LAST, started_at DESC
LIMIT %(limit)s
"""
INDEX_0001 = f"CREATE INDEX {INDEX} ON xray_steps (step_type, drop_ratio DESC NULLS LAST)"

# Runs of ten steps; positions 1, 4, 6 and 9 are filters. llm, transform and other steps
# report no candidates (NULL drop ratio), nor does one filter in 13; one step in 397 keeps
# fewer than 10% of its 1000 candidates.
GENERATE = """
INSERT INTO xray_steps (run_id, seq, step_name, step_type, candidates_in, candidates_out,
                        status, started_at, ended_at, trace_id, span_id)
SELECT 'run-' || (g / 10), g % 10 + 1, 'step-' || (g % 10), kind,
       CASE WHEN kind IN ('llm', 'transform', 'other') THEN NULL ELSE 1000 END,
       CASE WHEN kind IN ('llm', 'transform', 'other') OR g % 13 = 0 THEN NULL
            WHEN g % 397 = 0 THEN g % 97
            ELSE 100 + g % 900 END,
       'ok', at, at + interval '5 milliseconds', md5((g / 10)::text), lpad(to_hex(g), 16, '0')
FROM generate_series(1, 100000) AS g,
     LATERAL (SELECT (ARRAY['search', 'filter', 'rank', 'llm', 'filter', 'transform',
                            'filter', 'other', 'rank', 'filter'])[g % 10 + 1] AS kind,
                     timestamptz '2026-11-01' + g * interval '8.6 seconds' AS at) AS step
"""


@pytest.fixture(scope="module")
def steps_db(databases: DatabaseFactory) -> Iterator[psycopg.Connection]:
    url = databases.create()
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT xray_create_step_partitions('2026-11-01', '2026-11-10', 1)")
        conn.execute(GENERATE)
        conn.execute("VACUUM ANALYZE xray_steps")
        yield conn


@pytest.fixture
def postgres_plans(databases: DatabaseFactory) -> None:
    """These tests read PostgreSQL's plans and statistics of the partitions themselves. On
    Citus the coordinator plans a distributed scan and each shard plans its own part."""
    if databases.citus:
        pytest.skip("PostgreSQL's own plans: on Citus each shard plans the query")


def plan_of(conn: psycopg.Connection, query: str,
            params: dict[str, Any] | None = None) -> dict[str, Any]:
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {query}".encode(), params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def sorts_of_table_rows(plan: dict[str, Any], sorting: bool = False) -> list[str]:
    """Scans whose rows reach a Sort with no Limit between them: the sorts that grow
    with the table rather than with the LIMIT."""
    if "Relation Name" in plan:
        return [plan["Node Type"]] if sorting else []
    if plan["Node Type"] == "Limit":
        sorting = False
    elif plan["Node Type"] in ("Sort", "Incremental Sort"):
        sorting = True
    return [scan for child in plan.get("Plans", ()) for scan in
            sorts_of_table_rows(child, sorting)]


def parent_index(conn: psycopg.Connection, index: str | None) -> str | None:
    """The parent's index that a partition's index belongs to (itself for the parent's)."""
    if index is None:
        return None
    row = conn.execute("SELECT i.inhparent::regclass::text FROM pg_inherits i"
                       " WHERE i.inhrelid = to_regclass(%s)", (index,)).fetchone()
    return str(row[0]) if row else index


def filled_scans(conn: psycopg.Connection,
                 plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, parent's index name) of each scan of a partition that holds rows: the
    empty partitions ahead are read however is cheapest, which is no work either way."""
    scanned = []
    for node in nodes(plan):
        if "Relation Name" not in node:
            continue
        row = conn.execute("SELECT reltuples > 0 FROM pg_class WHERE oid = to_regclass(%s)",
                           (node["Relation Name"],)).fetchone()
        if row and row[0]:
            scanned.append((node["Node Type"], parent_index(conn, node.get("Index Name"))))
    return scanned


def scans(conn: psycopg.Connection, plan: dict[str, Any]) -> set[tuple[str, str | None]]:
    return set(filled_scans(conn, plan))


@pytest.mark.usefixtures("postgres_plans")
def test_the_data_fills_ten_day_partitions(steps_db: psycopg.Connection) -> None:
    row = steps_db.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
        " WHERE i.inhparent = 'xray_steps'::regclass AND c.reltuples > 0").fetchone()
    assert row is not None and row[0] == 10


@pytest.mark.usefixtures("postgres_plans")
def test_the_seed_query_is_an_index_only_scan_of_every_partition(
        steps_db: psycopg.Connection) -> None:
    plan = plan_of(steps_db, SEED_QUERY)
    assert filled_scans(steps_db, plan) == [("Index Only Scan", INDEX)] * 10, plan
    assert {n["Node Type"] for n in nodes(plan)} <= {
        "Sort", "Merge Append", "Append", "Index Only Scan", "Seq Scan"}, plan
    for node in nodes(plan):
        if node["Node Type"] == "Index Only Scan":
            assert "drop_ratio > '0.9'" in node["Index Cond"], node
    analysed = steps_db.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + SEED_QUERY.encode())
    row = analysed.fetchone()
    assert row is not None
    fetches = [n["Heap Fetches"] for n in nodes(row[0][0]["Plan"])
               if n["Node Type"] == "Index Only Scan"]
    assert fetches and set(fetches) == {0}


@pytest.mark.usefixtures("postgres_plans")
def test_the_seed_index_gives_the_order_itself(steps_db: psycopg.Connection) -> None:
    """Told not to sort, the planner merges the partitions' index reads in order."""
    with steps_db.transaction():
        steps_db.execute("SET LOCAL enable_sort = off")
        plan = plan_of(steps_db, SEED_QUERY)
    assert plan["Node Type"] == "Merge Append", plan
    assert scans(steps_db, plan) == {("Index Only Scan", INDEX)}, plan


def test_the_seed_query_returns_every_matching_step_in_order(
        steps_db: psycopg.Connection) -> None:
    rows = steps_db.execute(SEED_QUERY).fetchall()
    with steps_db.transaction():
        steps_db.execute("SET LOCAL enable_indexscan = off")
        steps_db.execute("SET LOCAL enable_indexonlyscan = off")
        steps_db.execute("SET LOCAL enable_bitmapscan = off")
        from_table = steps_db.execute(SEED_QUERY).fetchall()
    assert 50 < len(rows) < 200
    assert sorted(rows) == sorted(from_table)
    ratios = [r[4] for r in rows]
    assert ratios == sorted(ratios, reverse=True) and min(ratios) > 0.9


@pytest.mark.usefixtures("postgres_plans")
def test_the_index_of_0001_read_the_table(steps_db: psycopg.Connection) -> None:
    """The checks above can fail: with the first index the query reads the table."""
    with steps_db.transaction(force_rollback=True):
        steps_db.execute(f"DROP INDEX {INDEX}".encode())
        steps_db.execute(INDEX_0001.encode())
        plan = plan_of(steps_db, SEED_QUERY)
    assert ("Index Only Scan", INDEX) not in scans(steps_db, plan), plan


def steps_params(min_drop: float | None, limit: int = 50,
                 step_type: str = "filter") -> dict[str, Any]:
    return {"step_type": step_type, "min_drop": min_drop, "pipeline": None, "name": None,
            "limit": limit}


@pytest.mark.parametrize(("step_type", "min_drop"), [("filter", 0.9), ("filter", None),
                                                     ("llm", None)])
@pytest.mark.usefixtures("postgres_plans")
def test_xray_steps_reads_the_index_in_order(steps_db: psycopg.Connection, step_type: str,
                                             min_drop: float | None) -> None:
    """Steps with a drop ratio and (without a bound) steps without one are each read in
    order from the index up to the limit; only those rows are sorted together."""
    plan = plan_of(steps_db, STEPS_QUERY, steps_params(min_drop, step_type=step_type))
    assert sorts_of_table_rows(plan) == [], plan
    expected = 1 if min_drop is not None else 2  # each half reads every partition
    assert scans(steps_db, plan) == {("Index Scan", INDEX)}, plan
    assert len(filled_scans(steps_db, plan)) == 10 * expected, plan


@pytest.mark.parametrize(("step_type", "min_drop", "limit"), [
    ("filter", 0.9, 50), ("filter", None, 50), ("filter", 0.5, 40_000),
    ("filter", None, 40_000), ("llm", None, 50)])
def test_xray_steps_rows_are_those_of_the_plain_query(steps_db: psycopg.Connection,
                                                      step_type: str, min_drop: float | None,
                                                      limit: int) -> None:
    """Largest drop ratio first, then newest; steps without a drop ratio last (40,000
    rows reach past the 36,900 filters that have one; llm steps have none)."""
    params = steps_params(min_drop, limit, step_type)
    rows = steps_db.execute(STEPS_QUERY.encode(), params).fetchall()
    expected = steps_db.execute(PLAIN_STEPS_QUERY, params).fetchall()
    assert rows == expected
    assert rows
    if min_drop is None and limit > 36_900:
        assert rows[-1][4] is None and rows[0][4] is not None


def ui_params(step_type: str, min_drop: float | None, limit: int) -> dict[str, Any]:
    return {"step_type": step_type, "min_drop": min_drop, "pipeline": None, "since": None,
            "until": None, "limit": limit}


@pytest.mark.parametrize(("step_type", "min_drop"), [("filter", 0.9), ("filter", None),
                                                     ("llm", None)])
@pytest.mark.usefixtures("postgres_plans")
def test_the_viewers_steps_page_reads_the_index_in_order(steps_db: psycopg.Connection,
                                                         step_type: str,
                                                         min_drop: float | None) -> None:
    plan = plan_of(steps_db, UI_STEPS_QUERY, ui_params(step_type, min_drop, 51))
    assert sorts_of_table_rows(plan) == [], plan
    assert scans(steps_db, plan) == {("Index Scan", INDEX)}, plan
    assert len(filled_scans(steps_db, plan)) == 10 * (1 if min_drop is not None else 2), plan


@pytest.mark.parametrize(("step_type", "min_drop", "limit"), [
    ("filter", 0.9, 51), ("filter", None, 40_000), ("llm", None, 51)])
def test_the_viewers_steps_are_those_of_the_plain_query(steps_db: psycopg.Connection,
                                                        step_type: str,
                                                        min_drop: float | None,
                                                        limit: int) -> None:
    params = ui_params(step_type, min_drop, limit)
    rows = steps_db.execute(UI_STEPS_QUERY.encode(), params).fetchall()
    assert rows and rows == steps_db.execute(PLAIN_UI_STEPS_QUERY, params).fetchall()
