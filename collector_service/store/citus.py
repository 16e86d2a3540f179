"""Distribute X-Ray's tables by ``run_id`` when the database is a Citus coordinator.

``xray migrate`` (and a collector's start) ends here. On plain PostgreSQL, where the
``citus`` extension is not installed in the database, nothing happens. On a Citus
coordinator the three tables become distributed tables co-located on ``run_id`` (a run's
row, its steps and its artifact references on one shard group), and the token table a
reference table (copied to every node, so token checks stay local). Tables already
distributed are skipped, so this runs on every migrate; a table added by a later
migration is distributed the next time.

Every unique key of the three tables contains ``run_id`` (migration 0007), which is
Citus's rule for distributed tables, so nothing in the schema changes.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.conninfo import conninfo_to_dict

from collector_service.store.queries import load

logger = logging.getLogger(__name__)

QUERIES = load("citus.sql")

DISTRIBUTED = ("xray_runs", "xray_steps", "xray_artifacts")
"""Distributed by ``run_id``, co-located with the first."""
REFERENCE = ("xray_auth_tokens",)
"""Small tables read by every node: one full copy on each."""


def is_citus(conn: psycopg.Connection) -> bool:
    """Whether the ``citus`` extension is installed in this database."""
    row = conn.execute(QUERIES["citus_installed"]).fetchone()
    return bool(row and row[0])


def server_preloads_citus(conn: psycopg.Connection) -> bool:
    """Whether the server loads Citus at start, so a database on it can become a cluster
    (:func:`make_single_node`)."""
    row = conn.execute(QUERIES["citus_preloaded"]).fetchone()
    return bool(row and row[0])


def distribute_tables(conn: psycopg.Connection) -> list[str]:
    """Distribute (or replicate) each X-Ray table not yet known to Citus; return what was
    done, as ``table (kind)``. Nothing on a database without the extension."""
    if not is_citus(conn):
        return []
    known = {row[0] for row in conn.execute(QUERIES["citus_tables"]).fetchall()}
    done: list[str] = []
    for table in DISTRIBUTED:
        if table not in known:
            conn.execute(QUERIES["distribute_table"],
                         {"table": table, "colocate_with": _colocation(table)})
            done.append(f"{table} (distributed by run_id)")
    for table in REFERENCE:
        if table not in known:
            conn.execute(QUERIES["replicate_table"], {"table": table})
            done.append(f"{table} (reference)")
    for item in done:
        logger.info("citus: %s", item)
    return done


def make_single_node(conninfo: str) -> None:
    """Make the database at ``conninfo`` a one-node Citus cluster: the extension, and the
    coordinator holding the shards itself. For trying X-Ray on Citus on one machine (the
    tests and benchmarks do, on a server that preloads Citus); then migrate."""
    params = conninfo_to_dict(conninfo)
    host, port = str(params.get("host") or "localhost"), int(params.get("port") or 5432)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(QUERIES["create_extension"])
        conn.execute(QUERIES["set_coordinator"], {"host": host, "port": port})
        conn.execute(QUERIES["coordinator_holds_shards"], {"host": host, "port": port})


def describe_layout(conn: psycopg.Connection) -> list[str]:
    """How each X-Ray table is laid out on a Citus coordinator, one line a table, for
    ``xray migrate`` to print; nothing on a database without the extension."""
    if not is_citus(conn):
        return []
    rows = conn.execute(QUERIES["table_layout"],
                        {"tables": [*DISTRIBUTED, *REFERENCE]}).fetchall()
    return [f"{table}: {kind}" + (f" by {column}" if column != "<none>" else "")
            + f", {shards} shard{'s' if shards != 1 else ''}"
            for table, kind, column, shards in rows]


def _colocation(table: str) -> str:
    """The first distributed table starts a co-location group; the others join it."""
    return "default" if table == DISTRIBUTED[0] else DISTRIBUTED[0]
