"""Apply the ordered SQL files in ``migrations/`` to a database, each exactly once.

Every file runs in its own transaction and is recorded in ``xray_schema_migrations``
with its checksum. A session-level advisory lock serialises collectors that start at
the same time. An applied file whose contents changed is an error: released
migrations are never edited.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from collector_service.errors import MigrationError
from collector_service.store.citus import describe_layout, distribute_tables

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x5852_4159_0001  # "XRAY" + 1: arbitrary but fixed
DISTRIBUTABLE_FROM = "0007"
"""The first schema version whose keys all contain ``run_id``, so Citus can distribute it."""
_FILE_PATTERN = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS xray_schema_migrations (
    version     text        PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """Where the migration files are: packaged with the wheel, or the source checkout."""
    packaged = resources.files("collector_service").joinpath("migrations")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read every ``NNNN_name.sql`` file in order; reject stray or duplicate versions."""
    directory = directory or migrations_dir()
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        version = match.group(1)
        if version in found:
            raise MigrationError(f"two migrations share version {version}")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    if not found:
        raise MigrationError(f"no migration files in {directory}")
    return list(found.values())


def apply_migrations(conninfo: str, directory: Path | None = None) -> list[str]:
    """Bring the database at ``conninfo`` up to date; return the names applied now. On a
    Citus coordinator, also distribute the tables not distributed yet (:mod:`.citus`)."""
    migrations = load_migrations(directory)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            try:
                applied = _apply_locked(conn, migrations)
                if migrations[-1].version >= DISTRIBUTABLE_FROM:
                    _distribute(conn)
                return applied
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot reach the database to migrate it: {exc}") from exc


def _apply_locked(conn: psycopg.Connection, migrations: list[Migration]) -> list[str]:
    conn.execute(_CREATE_LEDGER)
    rows = conn.execute("SELECT version, name, checksum FROM xray_schema_migrations").fetchall()
    applied = {version: (name, checksum) for version, name, checksum in rows}
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            name, checksum = applied[migration.version]
            if checksum != migration.checksum:
                raise MigrationError(
                    f"{migration.name} was edited after it was applied as {name}; "
                    "add a new migration instead"
                )
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO xray_schema_migrations (version, name, checksum)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            raise MigrationError(f"{migration.name} failed: {exc}") from exc
        logger.info("applied migration %s", migration.name)
        done.append(migration.name)
    return done


def citus_layout(conninfo: str) -> list[str]:
    """How X-Ray's tables are distributed, when the database is a Citus coordinator."""
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return describe_layout(conn)
    except psycopg.Error as exc:
        raise MigrationError(f"cannot read the tables' layout on Citus: {exc}") from exc


def _distribute(conn: psycopg.Connection) -> None:
    try:
        distribute_tables(conn)
    except psycopg.Error as exc:
        raise MigrationError(f"distributing the tables on Citus failed: {exc}") from exc
