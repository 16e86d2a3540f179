"""Start-up failures a new user meets, with ``xray`` as a real subprocess.

A taken port is a one-line error naming the port and its setting, exit code 2, never a
hang; a malformed database URL is a one-line error; an embedded database whose users
were SIGKILLed stops when its last live user exits. Short commands start fast: they
load neither the server stack nor, for ``--help``, the database driver.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collector_service.store.embedded import _pgserver_available
from tests.fix_collector_process import REPO
from tests.fix_pg_instance import free_port

# Generous: a hang is what these tests catch, not slowness on a busy machine.
_HANG_S = 60


def environment_without_xray() -> dict[str, str]:
    """This process's environment minus X-Ray's settings, for a child ``xray``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("XRAY_")}


def xray(*argv: str, timeout: float = _HANG_S) -> subprocess.CompletedProcess[str]:
    env = environment_without_xray()
    return subprocess.run([sys.executable, "-m", "collector_service.cli.main", *argv],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_a_taken_port_is_a_one_line_error(kind: str, taken_port: int, migrated_url: str,
                                          tmp_path: Path) -> None:
    ports = {"grpc": str(free_port()), "http": str(free_port())}
    ports[kind] = str(taken_port)
    result = xray("collector", "--database-url", migrated_url, "--data-dir", str(tmp_path),
                  "--grpc-port", ports["grpc"], "--http-port", ports["http"],
                  "--spool-max-bytes", "0")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xray: error: cannot listen for OTLP/")
    assert f"127.0.0.1:{taken_port}" in lines[0]
    assert f"--{kind}-port" in lines[0] and f"XRAY_{kind.upper()}_PORT" in lines[0]


def test_a_taken_port_fails_before_the_database_is_reached(taken_port: int,
                                                           tmp_path: Path) -> None:
    """The port is checked first: the error is about the port, not the unreachable URL."""
    result = xray("collector", "--database-url", "postgresql://nobody@127.0.0.1:1/none",
                  "--data-dir", str(tmp_path), "--grpc-port", str(taken_port),
                  "--http-port", "0")
    assert result.returncode == 2, result
    assert "cannot listen for OTLP/gRPC" in result.stderr
    assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr


@pytest.mark.parametrize("url", ["notaurl", "mysql://root@db/xray", "postgresql://db/xray?bogus=1"])
def test_a_malformed_database_url_is_a_one_line_error(url: str, tmp_path: Path) -> None:
    result = xray("collector", "--database-url", url, "--data-dir", str(tmp_path))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"xray: error: --database-url={url!r}: ")


@pytest.fixture
def short_data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 folders and short: Unix socket paths are limited to ~100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="xray-cli-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not _pgserver_available(), reason="pgserver has no wheel for this Python")
def test_embedded_server_stops_when_its_last_live_user_exits(short_data_dir: Path) -> None:
    pgdata = short_data_dir / "postgres" / "pgdata"
    http_port = free_port()
    env = environment_without_xray()
    collector = subprocess.Popen(
        [sys.executable, "-m", "collector_service.cli.main", "collector", "--data-dir",
         str(short_data_dir), "--grpc-port", "0", "--http-port", str(http_port),
         "--spool-max-bytes", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=env, cwd=REPO)
    try:
        _wait_healthy(collector, http_port)
        assert collector.pid in json.loads((pgdata / ".handle_pids.json").read_text())
        assert (pgdata / "postmaster.pid").exists()
    finally:
        collector.send_signal(signal.SIGKILL)
        collector.wait(_HANG_S)
    # The killed collector is still listed and the server still runs ...
    assert collector.pid in json.loads((pgdata / ".handle_pids.json").read_text())
    assert (pgdata / "postmaster.pid").exists()
    # ... until a short command starts and exits: the last live user stops the server.
    result = xray("migrate", "--data-dir", str(short_data_dir))
    assert result.returncode == 0, result
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    assert not (pgdata / "postmaster.pid").exists()


def _wait_healthy(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + _HANG_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the collector exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError("the collector never became healthy")


# What a short command must not load: the collector's server stack (gRPC, the HTTP
# framework, the exporters' SDK, S3), which only `xray collector` and `xray ui` need.
_SERVER_STACK = ("grpc", "aiohttp", "boto3", "botocore", "opentelemetry.sdk",
                 "collector_service.server", "collector_service.receive",
                 "collector_service.forward", "collector_service.ingest",
                 "collector_service.ui")
_LOADED = """
import json, sys
from collector_service.cli.main import main
try:
    code = main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def modules_loaded_by(tmp_path: Path, *argv: str, code: int = 0) -> list[str]:
    """The server-stack modules a fresh interpreter holds after running ``xray ARGV``."""
    report = tmp_path / "modules.json"
    env = environment_without_xray()
    subprocess.run([sys.executable, "-c", _LOADED, str(report), *argv], cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=_HANG_S,
                   check=True)
    found = json.loads(report.read_text())
    assert found["code"] == code
    return [m for m in found["modules"]
            if any(m == s or m.startswith(s + ".") for s in _SERVER_STACK)]


def test_help_loads_neither_the_server_nor_the_database_driver(tmp_path: Path) -> None:
    loaded = modules_loaded_by(tmp_path, "--help")
    assert loaded == []
    everything = json.loads((tmp_path / "modules.json").read_text())["modules"]
    assert "psycopg" not in everything and "importlib.metadata" not in everything


def test_show_steps_and_runs_load_no_server_stack(tmp_path: Path, db: psycopg.Connection,
                                                  migrated_url: str) -> None:
    db.execute("INSERT INTO xray_runs (run_id, status, trace_id) VALUES ('r1', 'ok', 't1')")
    db.execute("INSERT INTO xray_steps (run_id, seq, step_name, step_type, candidates_in,"
               " candidates_out, status, started_at, ended_at, trace_id, span_id)"
               " VALUES ('r1', 1, 'f', 'filter', 100, 5, 'ok', now(), now(), 't1', 's1')")
    assert modules_loaded_by(tmp_path, "show", "r1", "--database-url", migrated_url) == []
    assert modules_loaded_by(tmp_path, "steps", "--type", "filter", "--database-url",
                             migrated_url) == []
    assert modules_loaded_by(tmp_path, "runs", "--since", "1d", "--database-url",
                             migrated_url) == []


def test_the_check_sees_the_server_stack(tmp_path: Path, taken_port: int,
                                         migrated_url: str) -> None:
    """The check above can fail: `xray ui` loads the web stack before its port is refused."""
    loaded = modules_loaded_by(tmp_path, "ui", "--port", str(taken_port), "--database-url",
                               migrated_url, code=2)
    assert "aiohttp" in loaded and "collector_service.ui" in loaded


def test_a_reader_that_stops_early_ends_the_command_quietly(
        db: psycopg.Connection, migrated_url: str) -> None:
    """`xray steps | head`: once the reader is gone, xray stops with the shell's SIGPIPE
    status and prints no traceback."""
    db.execute(
        "INSERT INTO xray_steps (run_id, seq, step_name, step_type, status, started_at,"
        " ended_at, trace_id, span_id, candidates_in, candidates_out, why)"
        " SELECT 'run-' || g, 1, 'filter_' || g, 'filter', 'ok', now(), now(),"
        " md5(g::text), lpad(to_hex(g), 16, '0'), 100, 1, repeat('dropped ', 20)"
        " FROM generate_series(1, 5000) AS g")
    reader = subprocess.Popen(
        [sys.executable, "-m", "collector_service.cli.main", "steps", "--limit", "5000",
         "--database-url", migrated_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=environment_without_xray(), cwd=REPO)
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.read(100)  # more than a pipe holds is still to come
    reader.stdout.close()
    assert reader.wait(timeout=_HANG_S) == 141
    assert reader.stderr.read() == b""
    reader.stderr.close()
