"""Migrations: a fresh database reaches the documented schema, once, safely in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from collector_service.errors import MigrationError
from collector_service.store.migrate import apply_migrations, load_migrations, migrations_dir
from tests.fix_db import DatabaseFactory

# The public interface analysts query: adding a column is fine, changing these is not.
EXPECTED_COLUMNS = {
    "xray_runs": [
        "run_id", "pipeline", "entity", "status", "error", "started_at", "ended_at",
        "trace_id", "span_id", "service_name", "attributes", "ingest_warnings",
        "received_at", "updated_at", "version",
    ],
    "xray_steps": [
        "run_id", "seq", "step_name", "step_type", "pipeline", "candidates_in",
        "candidates_out", "drop_ratio", "why", "why_json", "input", "output", "metrics",
        "status", "error", "started_at", "ended_at", "duration_ms", "trace_id", "span_id",
        "parent_span_id", "attributes", "ingest_warnings", "received_at",
    ],
    "xray_artifacts": [
        "artifact_id", "trace_id", "span_id", "run_id", "attribute", "size_bytes",
        "content_type", "storage", "location", "preview", "downgraded", "downgrade_reason",
        "created_at",
    ],
}


def columns(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = ANY(%s)"
            " ORDER BY table_name, ordinal_position", (list(EXPECTED_COLUMNS),)).fetchall()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


def test_fresh_database_reaches_the_schema(databases: DatabaseFactory) -> None:
    url = databases.create()
    applied = apply_migrations(url)
    assert applied == [m.name for m in load_migrations()]
    assert columns(url) == EXPECTED_COLUMNS
    with psycopg.connect(url) as conn:
        generated = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE is_generated = 'ALWAYS'"
            " AND table_name = 'xray_steps' ORDER BY 1").fetchall()
        assert generated == [("drop_ratio",), ("duration_ms",)]
        ledger = conn.execute("SELECT name FROM xray_schema_migrations ORDER BY version")
        assert [r[0] for r in ledger.fetchall()] == applied
    assert apply_migrations(url) == []


def test_concurrent_collectors_migrate_once(databases: DatabaseFactory) -> None:
    url = databases.create()
    with ThreadPoolExecutor(max_workers=4) as pool:  # four collectors starting at once
        results = list(pool.map(lambda _: apply_migrations(url), range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(load_migrations())]


def test_edited_migration_is_refused(databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.create()
    for source in migrations_dir().glob("*.sql"):
        (tmp_path / source.name).write_text(source.read_text())
    apply_migrations(url, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        apply_migrations(url, tmp_path)


def test_failed_migration_leaves_nothing_behind(databases: DatabaseFactory,
                                                tmp_path: Path) -> None:
    url = databases.create()
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT no_such_column;")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
        apply_migrations(url, tmp_path)
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NULL")
        assert tables.fetchone() == (True, True)


def test_badly_named_files_and_unreachable_database(tmp_path: Path) -> None:
    (tmp_path / "first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)
    with pytest.raises(MigrationError, match="cannot reach"):
        apply_migrations("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
