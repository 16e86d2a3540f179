"""Start (or reuse) the embedded PostgreSQL that X-Ray uses when no database is configured.

Two engines, tried in order: ``pgserver`` from PyPI (bundled binaries, works as root),
then the machine's own ``initdb``/``pg_ctl``. Both keep the cluster in a data directory
and listen only on a Unix socket inside it, so nothing else on the machine is touched
(``xray db url`` prints a URL for psql while the server runs).

Every process using the server is listed in the data directory; the last live one to
stop stops the server. Processes that died without stopping (SIGKILL, a crash) are
pruned from the list on every start and stop, so they never keep it running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from collector_service.config import CollectorConfig
from collector_service.errors import EmbeddedDatabaseError

logger = logging.getLogger(__name__)

DATABASE_NAME = "xray"
_START_TIMEOUT_S = 60


@dataclass
class EmbeddedPostgres:
    """A handle on the embedded server; ``url`` points at its ``xray`` database."""

    data_dir: Path
    engine: str = "auto"
    """``auto`` (pgserver if installed, else the machine's binaries), ``pgserver``, ``binaries``."""
    url: str = ""
    _server: Any = field(default=None, repr=False)
    _started_here: bool = False

    def start(self) -> str:
        """Start the server (or attach to a running one) and return the database URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.engine not in ("auto", "pgserver", "binaries"):
            raise EmbeddedDatabaseError(f"unknown embedded engine {self.engine!r}")
        use_pgserver = self.engine == "pgserver" or (
            self.engine == "auto" and _pgserver_available())
        admin_url = self._start_pgserver() if use_pgserver else self._start_local_binaries()
        _ensure_database(admin_url, DATABASE_NAME)
        self.url = admin_url.replace("/postgres?", f"/{DATABASE_NAME}?", 1)
        logger.info("embedded PostgreSQL (%s) in %s", self.engine, self.data_dir)
        return self.url

    def stop(self) -> None:
        """Leave the server; the last live user stops it."""
        if self._server is not None:
            _prune_pgserver_users(self._pgdata)
            self._server.cleanup()
            self._server = None
        elif self._started_here:
            with _users_lock(self._pgdata):
                if not _update_users(self._pgdata, remove=os.getpid()):
                    run_as_owner([postgres_binary("pg_ctl"), "stop", "-D", str(self._pgdata),
                                   "-m", "fast"], self._pgdata)
            self._started_here = False

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _start_pgserver(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver import get_server  # type: ignore[attr-defined]  # `embedded` extra

        logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every command
        self.engine = "pgserver"
        self._pgdata.mkdir(parents=True, exist_ok=True)
        _prune_pgserver_users(self._pgdata)
        try:
            self._server = get_server(self._pgdata, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises bare exceptions of several kinds
            raise EmbeddedDatabaseError(
                f"could not start the embedded PostgreSQL in {self._pgdata}: {exc}"
            ) from exc
        return str(self._server.get_uri())

    def _start_local_binaries(self) -> str:
        self.engine = "initdb/pg_ctl"
        pgdata = self._pgdata
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            chown_to_owner(pgdata)
            run_as_owner([postgres_binary("initdb"), "-D", str(pgdata), "-U", "postgres",
                           "--auth=trust", "--encoding=UTF8", "--no-instructions"], pgdata)
        socket_dir = str(pgdata)
        with _users_lock(pgdata):
            _update_users(pgdata, add=os.getpid())
            self._started_here = True
            if not _socket_ready(socket_dir):
                run_as_owner([postgres_binary("pg_ctl"), "start", "-D", str(pgdata), "-w",
                               "-t", str(_START_TIMEOUT_S), "-l", str(pgdata / "server.log"),
                               "-o", f"-c listen_addresses='' -k {socket_dir}"], pgdata)
        return f"postgresql://postgres@/postgres?host={socket_dir}"


def resolve_database(config: CollectorConfig) -> tuple[str, EmbeddedPostgres | None]:
    """The database URL to use: the configured one, or the embedded server's."""
    if config.database_url:
        return config.database_url, None
    embedded = EmbeddedPostgres(config.data_dir / "postgres")
    return embedded.start(), embedded


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune_pgserver_users(pgdata: Path) -> None:
    """Drop dead processes from pgserver's list of users, under pgserver's own lock."""
    from pgserver.postgres_server import PostgresServer

    users = pgdata / ".handle_pids.json"
    with PostgresServer._lock, contextlib.suppress(FileNotFoundError, ValueError):
        pids = json.loads(users.read_text())
        live = [pid for pid in pids if pid == os.getpid() or _alive(pid)]
        if live != pids:
            logger.info("embedded PostgreSQL: %d user(s) had died", len(pids) - len(live))
            users.write_text(json.dumps(live))


@contextlib.contextmanager
def _users_lock(pgdata: Path) -> Any:
    with open(pgdata / ".xray_users.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _update_users(pgdata: Path, add: int | None = None, remove: int | None = None) -> list[int]:
    """Add or remove a user, prune dead ones, and return who is left (hold the lock)."""
    path = pgdata / ".xray_users.json"
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        pids = []
    live = [p for p in pids if p != remove and _alive(p)]
    if add is not None and add not in live:
        live.append(add)
    path.write_text(json.dumps(live))
    return live


def _pgserver_available() -> bool:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver  # noqa: F401
    except ImportError:
        return False
    return True


def postgres_binary(name: str) -> str:
    """The path of a PostgreSQL program (``initdb``, ``pg_ctl``): PATH, then Debian's folders."""
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else None
    if found is None:
        raise EmbeddedDatabaseError(
            f"no embedded database engine: install the 'embedded' extra (pgserver) or put "
            f"PostgreSQL's {name} on PATH, or set XRAY_DATABASE_URL"
        )
    return found


def _owner_user() -> str | None:
    """PostgreSQL refuses to run as root; as root, run it as the ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise EmbeddedDatabaseError(
            "running as root needs a 'postgres' system user for the embedded database; "
            "create one, install the 'embedded' extra, or set XRAY_DATABASE_URL"
        ) from exc
    return "postgres"


def chown_to_owner(path: Path) -> None:
    """Give the data directory to the server's user, and let it reach the directory."""
    user = _owner_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:  # traverse only: others still cannot list it
            logger.info("allowing %s to traverse %s", user, parent)
            parent.chmod(mode | stat.S_IXOTH)


def run_as_owner(command: list[str], pgdata: Path) -> None:
    """Run a server program as the data directory's owner (PostgreSQL refuses root)."""
    user = _owner_user()
    identity: dict[str, Any] = {}
    if user is not None:  # drop root's groups too, or group permissions would apply
        entry = pwd.getpwnam(user)
        identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    try:
        subprocess.run(command, check=True, capture_output=True, text=True,
                       timeout=_START_TIMEOUT_S + 30, **identity)
    except subprocess.CalledProcessError as exc:
        raise EmbeddedDatabaseError(
            f"{Path(command[0]).name} failed for {pgdata}: {exc.stderr.strip()}"
        ) from exc


def _socket_ready(socket_dir: str) -> bool:
    with contextlib.suppress(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@/postgres?host={socket_dir}",
                        connect_timeout=2).close()
        return True
    return False


def _ensure_database(admin_url: str, name: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return
        except psycopg.errors.DuplicateDatabase:
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise EmbeddedDatabaseError(f"embedded PostgreSQL did not answer: {exc}") from exc
            time.sleep(0.2)
