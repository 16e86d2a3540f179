"""``xray collector --workers N``: real processes, real signals, real PostgreSQL.

Load goes over OTLP/HTTP with a new connection per request, so the kernel's
``SO_REUSEPORT`` spread reaches every worker (it spreads connections, not requests).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector_service.config import CollectorConfig
from collector_service.store.spool import Spool, orphan_folders
from tests.fix_collector_process import REPO, CollectorProcess, SpawnCollector
from tests.fix_db import DatabaseFactory
from tests.fix_pg_instance import free_port
from tests.reliability.load import SpanKey, new_batch, stored_keys, wait_stored, wait_until

pytestmark = pytest.mark.slow

EXIT_TIMEOUT_S = 60.0
OTLP_TRACES = "otlp-traces"  # the spool record kind of an OTLP trace request


def worker_pids(supervisor: int) -> set[int]:
    """The worker processes ``supervisor`` runs now (children running the workers module)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"collector_service.workers" in cmdline:
            pids.add(int(stat.parent.name))
    return pids


def listeners(port: int) -> int:
    """Sockets listening on ``port`` (gRPC may use an IPv6 socket for an IPv4 address)."""
    lines = [line for table in ("tcp", "tcp6")
             for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]]
    return sum(1 for line in lines
               if (fields := line.split())[3] == "0A" and fields[1].endswith(f":{port:04X}"))


def wait_gone(pids: set[int]) -> None:
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
               f"workers {sorted(pids)} gone")


def post_batches(collector: CollectorProcess, count: int, spans: int = 20) -> set[SpanKey]:
    """Send ``count`` requests, each on a new connection; the keys of the acknowledged."""

    def post(_: int) -> list[SpanKey]:
        batch, keys = new_batch(spans, payload_chars=20)
        request = urllib.request.Request(
            collector.http_url + "/v1/traces", data=batch.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        return keys

    with ThreadPoolExecutor(4) as pool:
        return {key for keys in pool.map(post, range(count)) for key in keys}


def stats(collector: CollectorProcess) -> dict[str, object]:
    with urllib.request.urlopen(collector.http_url + "/stats", timeout=10) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


@pytest.fixture
def url(databases: DatabaseFactory) -> str:
    return databases.create("xray_workers")  # the supervisor migrates it


@pytest.fixture
def two_workers(url: str, spawn_collector: SpawnCollector) -> Iterator[CollectorProcess]:
    collector = spawn_collector(url, "--workers", "2")
    wait_until(lambda: listeners(collector.http_port) == listeners(collector.grpc_port) == 2,
               "two workers listening on both ports")
    yield collector
    pids = worker_pids(collector.pid)
    collector.kill()
    wait_gone(pids)  # the workers follow the supervisor; do not leave them to chance


def test_both_workers_take_load_every_span_is_stored_once_and_metrics_add_up(
        two_workers: CollectorProcess, url: str) -> None:
    sent = post_batches(two_workers, 40)
    stored = wait_stored(url, sent)
    assert sorted(stored) == sorted(sent)  # every span, each once
    pids = {str(pid) for pid in worker_pids(two_workers.pid)}
    for _ in range(6):  # each scrape lands on either worker: all answer for both
        view = stats(two_workers)
        assert view["spans_stored_total"] == len(sent), view
        assert view["requests_total"] == {"http/ok": 40}, view
        by_worker = view["worker_requests_total"]
        assert isinstance(by_worker, dict) and set(by_worker) == pids, view
        assert all(count > 0 for count in by_worker.values()), f"a worker had no load: {view}"
    with urllib.request.urlopen(two_workers.http_url + "/metrics", timeout=10) as response:
        exposition = response.read().decode()
    assert f"xray_spans_stored_total {float(len(sent))}" in exposition


class HttpLoad:
    """Threads posting fresh batches, each on a new connection, until stopped."""

    def __init__(self, collector: CollectorProcess, threads: int = 4) -> None:
        self.collector = collector
        self.acked: set[SpanKey] = set()
        self.failed: set[SpanKey] = set()
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch, keys = new_batch(20, payload_chars=20)
            request = urllib.request.Request(
                self.collector.http_url + "/v1/traces", data=batch.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    outcome = str(response.status)
            except urllib.error.HTTPError as exc:
                exc.close()
                outcome = str(exc.code)
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
                outcome = "no answer"  # refused or closed before it was read
                time.sleep(0.05)
            with self._lock:
                self.outcomes[outcome] += 1
                (self.acked if outcome == "200" else self.failed).update(keys)


def test_sigterm_under_load_drains_every_worker_and_exits_0(two_workers: CollectorProcess,
                                                            url: str) -> None:
    pids = worker_pids(two_workers.pid)
    load = HttpLoad(two_workers)
    try:
        wait_until(lambda: load.outcomes["200"] >= 20, "acknowledged requests")
        two_workers.signal(signal.SIGTERM)
        assert two_workers.wait(EXIT_TIMEOUT_S) == 0, two_workers.log
    finally:
        load.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    for index in (0, 1):
        assert f"[worker {index}] collector_service.server: stopped" in two_workers.log
    assert set(load.outcomes) <= {"200", "503", "no answer"}, load.outcomes
    stored = stored_keys(url)
    assert sorted(stored) == sorted(load.acked)  # each acknowledged span once, nothing else


def test_sigkill_of_the_supervisor_leaves_no_worker(two_workers: CollectorProcess, url: str,
                                                    spawn_collector: SpawnCollector) -> None:
    pids = worker_pids(two_workers.pid)
    metrics = list(Path(tempfile.gettempdir()).glob(f"xray-metrics-{two_workers.pid}-*"))
    assert len(metrics) == 1  # where the workers share their metrics
    two_workers.signal(signal.SIGKILL)
    two_workers.wait(EXIT_TIMEOUT_S)
    wait_gone(pids)
    spawn_collector(url, "--workers", "2", name="next")
    assert not metrics[0].exists()  # the next supervisor removed the dead one's folder


def test_a_killed_worker_is_restarted(two_workers: CollectorProcess, url: str) -> None:
    first = worker_pids(two_workers.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(two_workers.pid) - first) == 1, "a new worker")
    assert worker_pids(two_workers.pid) & first == first - {victim}
    assert f"(pid {victim}) exited unexpectedly (signal SIGKILL); restarting" in two_workers.log
    sent = post_batches(two_workers, 10)
    assert set(wait_stored(url, sent)) == sent


def spool_requests(folder: Path, count: int) -> set[SpanKey]:
    """Write ``count`` trace requests into a spool folder, as a stopped collector left it."""
    keys: set[SpanKey] = set()
    with Spool(folder, 2**30, CollectorRegistry()) as spool:
        for _ in range(count):
            batch, batch_keys = new_batch(5, payload_chars=10)
            spool.append(OTLP_TRACES, batch.SerializeToString())
            keys.update(batch_keys)
    return keys


@pytest.mark.parametrize(("workers", "orphans"), [
    (2, ["", "worker-2", "worker-3"]),  # a single process's spool, and a run with 4 workers
    (1, ["worker-0", "worker-1"]),  # a run with 2 workers, now one process
])
def test_spool_folders_left_by_another_worker_count_are_replayed(
        workers: int, orphans: list[str], url: str, spawn_collector: SpawnCollector,
        tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spooled = set().union(*(spool_requests(root / name, 3) for name in orphans))
    collector = spawn_collector(url, "--workers", str(workers), "--spool-dir", str(root))
    assert set(wait_stored(url, spooled)) == spooled
    wait_until(lambda: not list(root.rglob("*.seg")), "replayed segments deleted")
    owned = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert owned == (["worker-0", "worker-1"] if workers == 2 else []), owned
    if workers == 2:  # each worker holds its own folder
        holders = {int((root / name / "spool.lock").read_text()) for name in owned}
        assert holders == worker_pids(collector.pid)


def test_orphan_folders_go_to_exactly_one_worker(tmp_path: Path) -> None:
    for name in ("worker-0", "worker-1", "worker-2", "worker-5"):
        (tmp_path / name).mkdir()
    shares = [orphan_folders(CollectorConfig(spool_dir=tmp_path, workers=2, worker_index=i))
              for i in range(2)]
    assert shares == [[tmp_path, tmp_path / "worker-2"], [tmp_path / "worker-5"]]
    assert orphan_folders(CollectorConfig(spool_dir=tmp_path, workers=1)) == [
        tmp_path / f"worker-{i}" for i in (0, 1, 2, 5)]


@pytest.mark.parametrize("taken_by", ["another program", "another collector"])
def test_a_taken_port_is_still_a_one_line_error_with_workers(
        taken_by: str, url: str, spawn_collector: SpawnCollector, tmp_path: Path) -> None:
    """Workers share ports only among themselves: a second collector cannot join them."""
    with socket.socket() as listener:
        if taken_by == "another program":
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            grpc_port = listener.getsockname()[1]
        else:
            grpc_port = spawn_collector(url, "--workers", "2").grpc_port
        result = subprocess.run(
            [sys.executable, "-m", "collector_service.cli.main", "collector", "--workers", "2",
             "--database-url", url, "--data-dir", str(tmp_path / "second"),
             "--grpc-port", str(grpc_port), "--http-port", str(free_port())],
            capture_output=True, text=True, timeout=EXIT_TIMEOUT_S, cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith("XRAY_")})
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xray: error: cannot listen for OTLP/gRPC")
