"""Citus: migrating a coordinator distributes X-Ray's tables by ``run_id``; elsewhere
nothing changes.

The tests that need Citus run when ``XRAY_TEST_DATABASE_URL`` names a server that preloads
it (tests/fix_db.py then makes each test database a single-node Citus cluster, and the
whole suite runs against distributed tables; docs/scale.md says how). On plain
PostgreSQL they are skipped, and the one below checks that migrating changes nothing.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import psycopg
import pytest

from collector_service.store.citus import DISTRIBUTED, REFERENCE, distribute_tables, is_citus
from collector_service.store.migrate import apply_migrations, load_migrations, migrations_dir
from tests.fix_db import DatabaseFactory


@pytest.fixture
def citus(databases: DatabaseFactory) -> DatabaseFactory:
    if not databases.citus:
        pytest.skip("the test server does not preload Citus (XRAY_TEST_DATABASE_URL)")
    return databases


def citus_tables(url: str) -> dict[str, tuple[str, str | None, int]]:
    """Each table Citus knows: (kind, distribution column, co-location group)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name::text, citus_table_type, distribution_column, colocation_id"
            " FROM citus_tables").fetchall()
    return {name: (kind, None if column == "<none>" else column, group)
            for name, kind, column, group in rows}


def test_plain_postgresql_is_left_alone(databases: DatabaseFactory) -> None:
    if databases.citus:
        pytest.skip("the test server preloads Citus")
    url = databases.create()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        assert not is_citus(conn)
        assert distribute_tables(conn) == []
        assert conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'citus'").fetchone() == (0,)


def test_migrating_a_coordinator_distributes_the_tables_by_run_id(
        citus: DatabaseFactory) -> None:
    url = citus.create()
    apply_migrations(url)
    tables = citus_tables(url)
    groups = {tables[name][2] for name in DISTRIBUTED}
    for name in DISTRIBUTED:
        assert tables[name][:2] == ("distributed", "run_id"), name
    assert len(groups) == 1, "runs, steps and artifacts must be co-located"
    for name in REFERENCE:
        assert tables[name][0] == "reference", name
    # The day partitions are distributed with their parent, in the same group.
    partitions = [name for name in tables if name.startswith("xray_steps_p")]
    assert partitions and all(tables[p][2] in groups for p in partitions)
    # Migrating again finds everything distributed.
    with psycopg.connect(url, autocommit=True) as conn:
        assert distribute_tables(conn) == []
    assert apply_migrations(url) == []


def test_partitions_created_later_are_distributed(citus: DatabaseFactory) -> None:
    url = citus.create()
    apply_migrations(url)
    day = date(2031, 1, 15)
    with psycopg.connect(url, autocommit=True) as conn:
        created = conn.execute("SELECT xray_create_step_partitions(%s, %s)",
                               (day, day)).fetchall()
    assert created == [("xray_steps_p20310115",)]
    assert citus_tables(url)["xray_steps_p20310115"][:2] == ("distributed", "run_id")


def test_a_schema_before_0007_is_not_distributed(citus: DatabaseFactory,
                                                 tmp_path: Path) -> None:
    """Its step key lacks run_id, which Citus refuses; migrating on to 0007 distributes."""
    early = tmp_path / "early"
    early.mkdir()
    for migration in load_migrations():
        if migration.version < "0007":
            shutil.copy(migrations_dir() / migration.name, early / migration.name)
    url = citus.create()
    apply_migrations(url, early)
    assert citus_tables(url) == {}
    apply_migrations(url)
    assert citus_tables(url)["xray_steps"][:2] == ("distributed", "run_id")
