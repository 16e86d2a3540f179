"""The embedded PostgreSQL: both engines start, serve, restart on the same data, and stop."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from glob import glob
from pathlib import Path

import psycopg
import pytest

from collector_service.errors import EmbeddedDatabaseError
from collector_service.store.embedded import EmbeddedPostgres, _pgserver_available


def has_binaries() -> bool:
    return bool(shutil.which("pg_ctl") or glob("/usr/lib/postgresql/*/bin/pg_ctl"))


@pytest.mark.parametrize("engine", [
    pytest.param("pgserver", marks=pytest.mark.skipif(
        not _pgserver_available(), reason="pgserver has no wheel for this Python")),
    pytest.param("binaries", marks=pytest.mark.skipif(
        not has_binaries(), reason="no initdb/pg_ctl on this machine")),
])
def test_engine_starts_keeps_data_and_stops(engine: str) -> None:
    # Outside pytest's tmp folders, which pytest keeps at mode 0700 (see tests/fix_db.py);
    # short, because Unix socket paths are limited to ~100 bytes.
    data_dir = Path(tempfile.mkdtemp(prefix="xray-emb-"))
    data_dir.chmod(0o755)
    try:
        _start_keep_stop(engine, data_dir / "pg")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _start_keep_stop(engine: str, data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir, engine=engine)
    url = server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
    again = EmbeddedPostgres(data_dir, engine=engine)
    with psycopg.connect(again.start()) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    again.stop()


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedDatabaseError, match="unknown embedded engine"):
        EmbeddedPostgres(tmp_path, engine="sqlite").start()


KILLED_USER = """
import os, sys
from pathlib import Path
from collector_service.store.embedded import EmbeddedPostgres
EmbeddedPostgres(Path(sys.argv[1]), engine=sys.argv[2]).start()
os.kill(os.getpid(), 9)  # dies without stopping: no atexit, no cleanup
"""


@pytest.mark.parametrize("engine", [
    pytest.param("pgserver", marks=pytest.mark.skipif(
        not _pgserver_available(), reason="pgserver has no wheel for this Python")),
    pytest.param("binaries", marks=pytest.mark.skipif(
        not has_binaries(), reason="no initdb/pg_ctl on this machine")),
])
def test_a_killed_user_does_not_keep_the_server_running(engine: str) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="xray-emb-"))
    data_dir.chmod(0o755)
    try:
        killed = subprocess.run([sys.executable, "-c", KILLED_USER, str(data_dir / "pg"), engine],
                                capture_output=True, text=True, timeout=120, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        last = EmbeddedPostgres(data_dir / "pg", engine=engine)
        url = last.start()
        psycopg.connect(url, connect_timeout=5).close()  # still running after the kill
        last.stop()  # the last live user: the server stops
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
