"""The analyst layer (migration 0002): views, comments, the read-only role, the dashboard.

The views are a public interface, so the tests pin their exact columns and rows; the
dashboard's and the documentation's SQL is run against a migrated database so a typo in
either fails here rather than in front of an analyst.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from psycopg import sql
from psycopg.types.json import Jsonb

from collector_service.store.migrate import apply_migrations, load_migrations
from tests.fix_collector import RunningCollector
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import new_span_id, new_trace_id, request, span
from xray_otel import conventions as c

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "xray_grafana.json"
SCHEMA_DOC = ROOT / "docs" / "schema.md"
ROLE = "xray_analyst"
TABLES = ("xray_runs", "xray_steps", "xray_artifacts")

# The views are a public interface: adding a column is fine, changing these is not.
VIEW_COLUMNS = {
    "xray_step_funnel": [
        ("run_id", "text"), ("pipeline", "text"), ("entity", "text"), ("seq", "integer"),
        ("step_name", "text"), ("step_type", "text"), ("candidates_in", "bigint"),
        ("candidates_out", "bigint"), ("drop_ratio", "double precision"),
        ("dropped", "bigint"), ("why", "text"), ("status", "text"), ("error", "text"),
        ("started_at", "timestamp with time zone"), ("duration_ms", "double precision"),
        ("position", "bigint"),
    ],
    "xray_reject_reasons": [
        ("run_id", "text"), ("pipeline", "text"), ("step_name", "text"),
        ("step_type", "text"), ("seq", "integer"), ("reason", "text"), ("count", "bigint"),
        ("started_at", "timestamp with time zone"), ("position", "bigint"),
    ],
    "xray_run_summary": [
        ("run_id", "text"), ("pipeline", "text"), ("entity", "text"), ("status", "text"),
        ("error", "text"), ("started_at", "timestamp with time zone"),
        ("ended_at", "timestamp with time zone"), ("duration_ms", "double precision"),
        ("step_count", "bigint"), ("error_steps", "bigint"),
        ("max_drop_ratio", "double precision"), ("first_step", "text"),
        ("last_step", "text"), ("last_step_status", "text"), ("last_step_error", "text"),
    ],
}
VIEWS = tuple(VIEW_COLUMNS)
RELATIONS = TABLES + VIEWS

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


# --- helpers -----------------------------------------------------------------------------

def insert_run(db: psycopg.Connection, run_id: str, **values: Any) -> None:
    row: dict[str, Any] = {"run_id": run_id, "trace_id": uuid.uuid4().hex, "status": "ok",
                           "started_at": T0, "ended_at": T0 + 1000 * MS, **values}
    db.execute(sql.SQL("INSERT INTO xray_runs ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))


def insert_step(db: psycopg.Connection, run_id: str, step_name: str, **values: Any) -> None:
    """A step row; ``offset_ms`` places its start after T0, ``ms`` is its duration."""
    start = values.pop("start", T0 + values.pop("offset_ms", 0) * MS)
    row: dict[str, Any] = {
        "run_id": run_id, "step_name": step_name, "step_type": "other", "status": "ok",
        "started_at": start, "ended_at": start + values.pop("ms", 10) * MS,
        "trace_id": uuid.uuid4().hex, "span_id": new_span_id().hex(), **values}
    if "why_json" in row and row["why_json"] is not None:
        row["why_json"] = Jsonb(row["why_json"])
    if "ingest_warnings" in row:
        row["ingest_warnings"] = Jsonb(row["ingest_warnings"])
    db.execute(sql.SQL("INSERT INTO xray_steps ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))


def select_all(db: psycopg.Connection, view: str, order_by: str) -> list[tuple[Any, ...]]:
    cur = db.execute(sql.SQL("SELECT * FROM {} ORDER BY ").format(sql.Identifier(view))
                     + sql.SQL(order_by))
    assert cur.description is not None
    assert [col.name for col in cur.description] == [name for name, _ in VIEW_COLUMNS[view]]
    return cur.fetchall()


def migration_for_role(role: str) -> str:
    """Migration 0002 with the analyst role renamed, to exercise role creation afresh."""
    (source,) = [m.sql for m in load_migrations() if m.version == "0002"]
    assert source.count(ROLE) >= 4
    return source.replace(ROLE, role)


def initial_migration_only(tmp_path: Path) -> Path:
    directory = tmp_path / "only_0001"
    directory.mkdir()
    (first,) = [m for m in load_migrations() if m.version == "0001"]
    (directory / first.name).write_text(first.sql, encoding="utf-8")
    return directory


def drop_role(admin_url: str, role: str, database_urls: list[str]) -> None:
    """Remove a test role: first its grants in each database, then the role itself."""
    for url in database_urls:
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# --- views over real spans ---------------------------------------------------------------

def test_views_over_spans_sent_to_a_collector(collector: RunningCollector,
                                              db: psycopg.Connection) -> None:
    trace_id = new_trace_id()
    start = 1_717_243_200_000_000_000  # 2024-06-01T12:00:00Z in ns
    run_attrs = {c.RUN_ID: "run-otlp", c.RUN_PIPELINE: "competitor_search",
                 c.RUN_ENTITY: "B0TEST"}
    reasons = {"category_mismatch": 4720, "price_out_of_range": 180, "odd": "many"}
    steps = [
        span("keywords", {c.STEP_TYPE: "llm", c.STEP_SEQ: 1, c.RUN_ID: "run-otlp"},
             trace_id=trace_id, start_ns=start + 1_000_000, duration_ns=250_000_000),
        span("search", {c.STEP_TYPE: "search", c.STEP_SEQ: 2, c.RUN_ID: "run-otlp",
                        c.STEP_CANDIDATES_OUT: 5000},
             trace_id=trace_id, start_ns=start + 300_000_000, duration_ns=100_000_000),
        span("filter_candidates", {c.STEP_TYPE: "filter", c.STEP_SEQ: 3, c.RUN_ID: "run-otlp",
                                   c.STEP_CANDIDATES_IN: 5000, c.STEP_CANDIDATES_OUT: 40,
                                   c.STEP_WHY: "Dropped 99% below relevance 0.7",
                                   c.STEP_WHY_JSON: json.dumps({"top_reject_reasons": reasons})},
             trace_id=trace_id, start_ns=start + 400_000_000, duration_ns=20_000_000),
        span("pick", {c.STEP_TYPE: "llm", c.STEP_SEQ: 4, c.RUN_ID: "run-otlp",
                      c.STEP_CANDIDATES_IN: 40, c.STEP_CANDIDATES_OUT: 0},
             trace_id=trace_id, start_ns=start + 500_000_000, duration_ns=1_500_000_000,
             error="no candidate left"),
    ]
    run = span("competitor_search", run_attrs, trace_id=trace_id, start_ns=start,
               duration_ns=2_000_000_000)
    with grpc.insecure_channel(collector.grpc_target) as channel:
        stub = TraceServiceStub(channel)
        stub.Export(request(*steps[2:]))  # steps first, out of order, in two requests
        stub.Export(request(*steps[:2]))
        assert db.execute("SELECT status FROM xray_runs").fetchall() == [("pending",)]
        stub.Export(request(run))

    at = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert select_all(db, "xray_step_funnel", "run_id, seq, started_at") == [
        ("run-otlp", "competitor_search", "B0TEST", 1, "keywords", "llm", None, None, None,
         None, None, "ok", None, at + 1 * MS, 250.0, 1),
        ("run-otlp", "competitor_search", "B0TEST", 2, "search", "search", None, 5000, None,
         None, None, "ok", None, at + 300 * MS, 100.0, 2),
        ("run-otlp", "competitor_search", "B0TEST", 3, "filter_candidates", "filter", 5000, 40,
         pytest.approx(0.992), 4960, "Dropped 99% below relevance 0.7", "ok", None,
         at + 400 * MS, 20.0, 3),
        ("run-otlp", "competitor_search", "B0TEST", 4, "pick", "llm", 40, 0, 1.0, 40, None,
         "error", "no candidate left", at + 500 * MS, 1500.0, 4),
    ]
    assert select_all(db, "xray_reject_reasons", "run_id, seq, reason") == [
        ("run-otlp", "competitor_search", "filter_candidates", "filter", 3,
         "category_mismatch", 4720, at + 400 * MS, 3),
        ("run-otlp", "competitor_search", "filter_candidates", "filter", 3,
         "price_out_of_range", 180, at + 400 * MS, 3),
    ]
    assert select_all(db, "xray_run_summary", "run_id") == [
        ("run-otlp", "competitor_search", "B0TEST", "ok", None, at, at + 2000 * MS, 2000.0,
         4, 1, 1.0, "keywords", "pick", "error", "no candidate left"),
    ]


# --- views over rows inserted directly ---------------------------------------------------

def test_funnel_orders_and_fills_in_from_the_run(db: psycopg.Connection) -> None:
    insert_run(db, "r1", pipeline="p1", entity="E1", status="pending", span_id=None)
    # Inserted out of order; steps without seq come last, by start time (position); the
    # orphan has no run row.
    insert_step(db, "r1", "unnumbered", offset_ms=5, candidates_in=7)
    insert_step(db, "r1", "rank", seq=2, step_type="rank", offset_ms=30, pipeline="own",
                candidates_in=10, candidates_out=50, why="expanded")
    insert_step(db, "r1", "filter", seq=1, step_type="filter", offset_ms=20,
                candidates_in=0, candidates_out=0, ms=3)
    insert_step(db, "r1", "late_unnumbered", offset_ms=40, status="error", error="boom")
    insert_step(db, "orphan", "lonely", seq=1, step_type="llm")

    assert select_all(db, "xray_step_funnel", "run_id, seq, started_at") == [
        ("orphan", None, None, 1, "lonely", "llm", None, None, None, None, None, "ok", None,
         T0, 10.0, 1),
        ("r1", "p1", "E1", 1, "filter", "filter", 0, 0, None, 0, None, "ok", None,
         T0 + 20 * MS, 3.0, 1),
        ("r1", "own", "E1", 2, "rank", "rank", 10, 50, pytest.approx(-4.0), -40, "expanded",
         "ok", None, T0 + 30 * MS, 10.0, 2),
        ("r1", "p1", "E1", None, "unnumbered", "other", 7, None, None, None, None, "ok", None,
         T0 + 5 * MS, 10.0, 3),
        ("r1", "p1", "E1", None, "late_unnumbered", "other", None, None, None, None, None,
         "error", "boom", T0 + 40 * MS, 10.0, 4),
    ]


ODD_REASONS: dict[str, Any] = {
    "category_mismatch": 30, "as_text": "12", "nested": {"count": 5}, "listed": [1],
    "flag": True, "nothing": None, "half": 2.5, "whole_float": 3.0, "negative": -4,
    "huge": 1e30, "exponent": 1e3, "zero": 0, "largest": 9223372036854775807,
    "too_large": 9223372036854775808,
}


def test_reject_reasons_skip_odd_counts_and_shapes(db: psycopg.Connection) -> None:
    insert_run(db, "r1", pipeline="p1")
    insert_run(db, "r2", pipeline="p2")
    insert_step(db, "r1", "f1", seq=1, step_type="filter", pipeline="p1", why_json={
        "top_reject_reasons": {"category_mismatch": 4720, "price_out_of_range": 180}})
    insert_step(db, "r2", "f2", seq=2, step_type="filter", offset_ms=5,
                why_json={"top_reject_reasons": ODD_REASONS})
    odd_shapes: list[Any] = [
        {"top_reject_reasons": ["category_mismatch", "price"]},
        {"top_reject_reasons": "category_mismatch"},
        {"top_reject_reasons": 5},
        {"top_reject_reasons": None},
        {"top_reject_reasons": {}},
        {"reasons": {"category_mismatch": 1}},
        {},
        None,
    ]
    for i, why_json in enumerate(odd_shapes):
        insert_step(db, "r2", f"odd{i}", seq=3 + i, why_json=why_json)

    at = T0 + 5 * MS
    assert select_all(db, "xray_reject_reasons", "run_id, seq, reason") == [
        ("r1", "p1", "f1", "filter", 1, "category_mismatch", 4720, T0, 1),
        ("r1", "p1", "f1", "filter", 1, "price_out_of_range", 180, T0, 1),
        ("r2", "p2", "f2", "filter", 2, "category_mismatch", 30, at, 1),
        ("r2", "p2", "f2", "filter", 2, "exponent", 1000, at, 1),
        ("r2", "p2", "f2", "filter", 2, "largest", 9223372036854775807, at, 1),
        ("r2", "p2", "f2", "filter", 2, "whole_float", 3, at, 1),
        ("r2", "p2", "f2", "filter", 2, "zero", 0, at, 1),
    ]
    totals = db.execute("SELECT reason, sum(count) FROM xray_reject_reasons"
                        " WHERE reason IN ('category_mismatch', 'price_out_of_range')"
                        " GROUP BY reason ORDER BY reason").fetchall()
    assert totals == [("category_mismatch", 4750), ("price_out_of_range", 180)]


def test_run_summary_per_run(db: psycopg.Connection) -> None:
    insert_run(db, "a", pipeline="p", entity="E", status="error", error="RuntimeError: x",
               span_id="00000000000000aa")
    insert_step(db, "a", "search", seq=1, step_type="search", candidates_out=100)
    insert_step(db, "a", "filter", seq=2, step_type="filter", offset_ms=10,
                candidates_in=100, candidates_out=25)
    insert_step(db, "a", "pick", seq=3, step_type="llm", offset_ms=20, status="error",
                error="ValueError: empty", candidates_in=25, candidates_out=20)
    insert_run(db, "b", status="pending", started_at=None, ended_at=None)
    insert_run(db, "c", pipeline="q")
    insert_step(db, "c", "tail", offset_ms=50, status="error", error="late")  # no seq: last
    insert_step(db, "c", "head", seq=1, offset_ms=60)

    assert select_all(db, "xray_run_summary", "run_id") == [
        ("a", "p", "E", "error", "RuntimeError: x", T0, T0 + 1000 * MS, 1000.0, 3, 1, 0.75,
         "search", "pick", "error", "ValueError: empty"),
        ("b", None, None, "pending", None, None, None, None, 0, 0, None, None, None, None,
         None),
        ("c", "q", None, "ok", None, T0, T0 + 1000 * MS, 1000.0, 2, 1, None, "head", "tail",
         "error", "late"),
    ]


# --- documentation in the database -------------------------------------------------------

def test_view_columns_are_the_documented_interface(db: psycopg.Connection) -> None:
    for view, expected in VIEW_COLUMNS.items():
        rows = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s"
            " ORDER BY ordinal_position", (view,)).fetchall()
        assert rows == expected, view


def test_every_table_view_and_column_has_a_comment(db: psycopg.Connection) -> None:
    rows = db.execute(
        "SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class')"
        " FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
        " AND c.relname = ANY(%s) ORDER BY c.relname", (list(RELATIONS),)).fetchall()
    assert sorted(r[0] for r in rows) == sorted(RELATIONS)
    kinds = {**dict.fromkeys(TABLES, "r"), "xray_steps": "p", **dict.fromkeys(VIEWS, "v")}
    assert {r[0]: r[1] for r in rows} == kinds  # xray_steps is partitioned by time
    assert [r[0] for r in rows if not (r[2] or "").strip()] == []
    columns = db.execute(
        "SELECT c.relname, a.attname, col_description(c.oid, a.attnum)"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)"
        " AND a.attnum > 0 AND NOT a.attisdropped", (list(RELATIONS),)).fetchall()
    assert {rel for rel, _, _ in columns} == set(RELATIONS)
    assert {(rel, col) for rel, col, _ in columns} >= {
        (view, col) for view, cols in VIEW_COLUMNS.items() for col, _ in cols}
    missing = [f"{rel}.{col}" for rel, col, text in columns if len((text or "").strip()) < 10]
    assert missing == []


# --- the read-only role ------------------------------------------------------------------

def test_analyst_role_is_a_nologin_role_without_powers(db: psycopg.Connection) -> None:
    row = db.execute(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication,"
        " rolbypassrls FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
    assert row == (False, False, False, False, False, False)
    schema_privileges = db.execute(
        "SELECT has_schema_privilege(%s, current_schema(), 'USAGE'),"
        " has_schema_privilege(%s, current_schema(), 'CREATE')", (ROLE, ROLE)).fetchone()
    assert schema_privileges == (True, False)
    for relation in RELATIONS:
        privileges = db.execute(
            "SELECT p, has_table_privilege(%s, %s::regclass, p)"
            " FROM unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',"
            " 'REFERENCES', 'TRIGGER']) AS p", (ROLE, relation)).fetchall()
        assert [p for p, granted in privileges if granted] == ["SELECT"], relation


def test_analyst_role_reads_everything(db: psycopg.Connection) -> None:
    insert_run(db, "r1", pipeline="p")
    insert_step(db, "r1", "f", seq=1, why_json={"top_reject_reasons": {"x": 1}})
    db.execute("INSERT INTO xray_artifacts (artifact_id, trace_id, span_id, run_id, attribute,"
               " size_bytes, content_type, storage) VALUES ('a', 't', 's', 'r1', 'xray.artifact.x',"
               " 1, 'text/plain', 'local')")
    counts = {}
    with db.transaction(force_rollback=True):
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(ROLE)))
        assert db.execute("SELECT current_user").fetchone() == (ROLE,)
        for relation in RELATIONS:
            row = db.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(relation))).fetchone()
            assert row is not None
            counts[relation] = row[0]
    assert counts == dict.fromkeys(RELATIONS, 1)


WRITES = ["INSERT INTO {} DEFAULT VALUES", "UPDATE {} SET run_id = run_id", "DELETE FROM {}",
          "TRUNCATE {}"]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("statement", WRITES, ids=lambda s: s.split()[0])
def test_analyst_role_cannot_write(db: psycopg.Connection, table: str, statement: str) -> None:
    insert_run(db, "r1")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(ROLE)))
        db.execute(sql.SQL(statement).format(sql.Identifier(table)))
    assert db.execute("SELECT count(*) FROM xray_runs").fetchone() == (1,)


def test_tables_of_later_migrations_are_readable_by_default(db: psycopg.Connection) -> None:
    with db.transaction(force_rollback=True):
        db.execute("CREATE TABLE xray_later_table (x int)")
        db.execute("CREATE VIEW xray_later_view AS SELECT x FROM xray_later_table")
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(ROLE)))
        assert db.execute("SELECT count(*) FROM xray_later_table").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM xray_later_view").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
            db.execute("INSERT INTO xray_later_table VALUES (1)")


def test_role_created_concurrently_by_two_databases(databases: DatabaseFactory,
                                                    tmp_path: Path, pg_admin_url: str) -> None:
    """Two databases migrating at once both try to create the (cluster-wide) role."""
    role = f"xray_analyst_t{uuid.uuid4().hex[:8]}"
    urls = [databases.create(), databases.create()]
    only_initial = initial_migration_only(tmp_path)
    for url in urls:
        apply_migrations(url, only_initial)
    migration = migration_for_role(role).encode()
    errors: list[BaseException] = []
    try:
        with psycopg.connect(urls[0]) as first, psycopg.connect(urls[1]) as second:
            first.execute(migration)  # creates the role; not committed yet

            def migrate_second() -> None:
                try:
                    second.execute(migration)  # waits for `first`, then finds the role
                    second.commit()
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=migrate_second)
            thread.start()
            wait_until_blocked(pg_admin_url, second.info.backend_pid)
            first.commit()
            thread.join(30)
            assert not thread.is_alive()
        assert errors == []
        for url in urls:
            with psycopg.connect(url) as conn:
                granted = conn.execute("SELECT has_table_privilege(%s, 'xray_step_funnel',"
                                       " 'SELECT')", (role,)).fetchone()
                assert granted == (True,)
    finally:
        drop_role(pg_admin_url, role, urls)


def wait_until_blocked(admin_url: str, pid: int) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for _ in range(200):
            row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                               (pid,)).fetchone()
            if row == ("Lock",):
                return
            time.sleep(0.05)
    pytest.fail("the second migration never waited for the first")


@pytest.fixture
def unprivileged_database(pg_admin_url: str) -> Iterator[str]:
    """A database owned by a login role that may not create roles."""
    owner, password = f"xray_owner_t{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    name = f"xray_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(owner), sql.Literal(password)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    try:
        yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name, user=owner,
                                             password=password)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


def test_migrating_user_who_cannot_create_roles_still_migrates(
        unprivileged_database: str, pg_admin_url: str) -> None:
    role = f"xray_analyst_t{uuid.uuid4().hex[:8]}"
    notices: list[tuple[str | None, str | None]] = []
    try:
        with psycopg.connect(unprivileged_database) as conn:
            conn.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized,
                                                              d.message_primary)))
            (first,) = [m.sql for m in load_migrations() if m.version == "0001"]
            conn.execute(first.encode())
            conn.execute(migration_for_role(role).encode())
            conn.commit()
            views = conn.execute("SELECT count(*) FROM pg_views WHERE viewname = ANY(%s)",
                                 (list(VIEWS),)).fetchone()
            assert views == (len(VIEWS),)
            assert conn.execute("SELECT count(*) FROM xray_run_summary").fetchone() == (0,)
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                (role,)).fetchone() is None
        warnings = [text for severity, text in notices if severity == "WARNING"]
        assert len(warnings) == 1 and role in (warnings[0] or "")
        assert "docs/schema.md" in (warnings[0] or "")
    finally:
        drop_role(pg_admin_url, role, [])


# --- the Grafana dashboard ---------------------------------------------------------------

def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def grafana_to_sql(text: str, run_id: str) -> str:
    """A panel's SQL as Grafana would send it, with plain SQL for its macros."""
    text = re.sub(r"\$__timeFilter\((\w+)\)",
                  r"\1 BETWEEN now() - interval '7 days' AND now()", text)
    text = re.sub(r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
                  r"date_trunc('hour', \1) AS time", text)
    text = re.sub(r"\$__timeGroup\((\w+),\s*\$__interval\)", r"date_trunc('hour', \1)", text)
    text = text.replace("$__timeFrom()", "(now() - interval '7 days')")
    text = text.replace("$__timeTo()", "now()")
    text = re.sub(r"\$\{run_id\}|\$run_id\b", run_id.replace("'", "''"), text)
    assert "$" not in text, f"unsubstituted Grafana syntax in: {text}"
    return text


def panel_sql(dashboard: dict[str, Any]) -> dict[str, str]:
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']}/{target['refId']}"] = target["rawSql"]
    return found


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_POSTGRES"]["type"] == "datasource"
    assert variables["DS_POSTGRES"]["query"] == "grafana-postgresql-datasource"
    assert variables["run_id"]["type"] == "query"
    assert variables["run_id"]["query"].startswith("SELECT run_id FROM xray_runs ORDER BY "
                                                   "started_at DESC")
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_POSTGRES}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_POSTGRES}", panel["title"]
            assert target["format"] in ("table", "time_series")
    queries = "\n".join(panel_sql(dashboard).values())
    assert "WHERE step_type = 'filter' AND drop_ratio > 0.9" in queries  # the seed query
    assert "FROM xray_step_funnel" in queries and "'$run_id'" in queries
    assert "FROM xray_reject_reasons\nWHERE $__timeFilter(started_at)" in queries
    assert "$__timeGroupAlias(started_at, $__interval)" in queries
    types = {p["type"] for p in panels}
    assert {"table", "barchart", "timeseries"} <= types


def test_dashboard_queries_run_against_the_schema(db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    insert_run(db, "run'1", pipeline="p", started_at=now - timedelta(hours=1), ended_at=now)
    insert_step(db, "run'1", "search", seq=1, step_type="search", start=now - timedelta(hours=1),
                candidates_out=1000)
    insert_step(db, "run'1", "filter", seq=2, step_type="filter", start=now - timedelta(hours=1),
                candidates_in=1000, candidates_out=10,
                why_json={"top_reject_reasons": {"too_far": 900, "bad": "x"}})
    insert_step(db, "run'1", "pick", seq=3, step_type="llm", start=now - timedelta(minutes=5),
                candidates_in=10, candidates_out=1, status="error", error="boom")
    dashboard = load_dashboard()
    results = {}
    for key, text in panel_sql(dashboard).items():
        results[key] = db.execute(grafana_to_sql(text, "run'1")).fetchall()
    assert len(results) == len(dashboard["panels"])
    assert results["Filters dropping more than 90% of candidates/A"] == [
        ("run'1", "filter", 1000, 10, pytest.approx(0.99))]
    assert results["Funnel of run $run_id/A"] == [
        ("1. search", None, 1000), ("2. filter", 1000, 10), ("3. pick", 10, 1)]
    assert [r[:2] for r in results["Steps of run $run_id/A"]] == [
        (1, "search"), (2, "filter"), (3, "pick")]
    assert results["Top reject reasons/A"] == [("too_far", 900)]
    assert sorted((r[1], r[2]) for r in results["Steps by type/A"]) == [
        ("filter", 1), ("llm", 1), ("search", 1)]
    assert [r[0] for r in results["Runs whose last step failed/A"]] == ["run'1"]
    variable = {v["name"]: v for v in dashboard["templating"]["list"]}["run_id"]
    assert db.execute(variable["query"]).fetchall() == [("run'1",)]


# --- the analyst documentation -----------------------------------------------------------

def doc_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", SCHEMA_DOC.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if re.match(r"\s*(SELECT|WITH)\b", b, re.I)]


def test_documented_queries_run(db: psycopg.Connection) -> None:
    insert_run(db, "B0C1234-2024-06-01", pipeline="p", entity="B0C1234",
               started_at=datetime.now(UTC))
    insert_step(db, "B0C1234-2024-06-01", "filter", seq=1, step_type="filter",
                start=datetime.now(UTC), candidates_in=10, candidates_out=1,
                ingest_warnings=[{"attribute": "xray.step.why_json", "problem": "not valid JSON"}],
                why_json={"top_reject_reasons": {"x": 9}})
    queries = doc_queries()
    assert len(queries) >= 8
    for query in queries:
        db.execute(query).fetchall()


def test_documentation_names_every_column(db: psycopg.Connection) -> None:
    text = SCHEMA_DOC.read_text(encoding="utf-8")
    for relation in RELATIONS:
        assert re.search(rf"^##+ {relation}$", text, re.M), relation
        columns = db.execute("SELECT column_name FROM information_schema.columns"
                             " WHERE table_schema = current_schema() AND table_name = %s",
                             (relation,)).fetchall()
        assert columns
        for (name,) in columns:
            assert f"`{name}`" in text, f"{relation}.{name}"
