"""``xray collector --workers N``: a supervisor and N worker processes sharing the ports.

The collector spends most of its time in Python (decoding and mapping spans), so one
process uses one core. Workers listen on the same gRPC and HTTP ports with
``SO_REUSEPORT``; the kernel spreads connections over them, and each worker is a full
:class:`~collector_service.server.Collector` with its own event loop, connection pool,
admission limits and spool folder (``<spool root>/worker-<i>``).

The supervisor does the once-only work (TLS files, free ports, the database and its
migrations), holds the ports, and starts each worker as a fresh interpreter
(``python -m collector_service.workers``, its configuration pickled on stdin): nothing
that has loaded gRPC is forked. It forwards SIGTERM and SIGINT (each worker drains as a
single collector does) and exits 0 once every worker has; a worker that dies otherwise
is logged and restarted with back-off. Workers do not outlive the supervisor, even one
killed with SIGKILL: the kernel signals them (``PR_SET_PDEATHSIG`` on Linux) and each
also watches its parent's pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from collector_service.config import CollectorConfig
from collector_service.errors import ConfigError, XRayError
from collector_service.receive.ports import check_ports_free, reserve_ports
from collector_service.telemetry.logs import configure_logging

logger = logging.getLogger("collector_service.workers")  # also when run as __main__

_POLL_S = 0.1
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
_STABLE_S = 30.0
"""A worker that ran this long before dying is restarted after the shortest back-off."""
_CONFIG_ERROR = 2
"""A worker's exit code for a configuration error: restarting would not help."""
_PARENT_CHECK_S = 1.0
_PR_SET_PDEATHSIG = 1
_METRICS_PREFIX = "xray-metrics-"


def run_supervisor(config: CollectorConfig) -> int:
    """Check, prepare and hold what the workers share, then run them until stopped."""
    from collector_service.receive.tls import load_server_tls
    from collector_service.store.embedded import resolve_database
    from collector_service.store.migrate import apply_migrations

    load_server_tls(config)  # bad files fail here, once, not in every worker
    check_ports_free(config)
    grpc_socket, http_socket = reserve_ports(config)
    with grpc_socket, http_socket:
        config = replace(config, grpc_port=grpc_socket.getsockname()[1],
                         http_port=http_socket.getsockname()[1])
        url, embedded = resolve_database(config)
        try:
            applied = apply_migrations(url)
            if applied:
                logger.info("migrations applied: %s", ", ".join(applied))
            _remove_stale_metrics()
            with tempfile.TemporaryDirectory(prefix=f"{_METRICS_PREFIX}{os.getpid()}-") \
                    as metrics_dir:
                shared = replace(config, database_url=url, metrics_dir=Path(metrics_dir),
                                 spool_max_bytes=config.spool_max_bytes // config.workers)
                return Supervisor(shared).run()
        finally:
            if embedded is not None:
                embedded.stop()


def _remove_stale_metrics() -> None:
    """Delete the metrics folders of supervisors that are gone (killed with SIGKILL)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_METRICS_PREFIX}*-*"):
        owner = folder.name.removeprefix(_METRICS_PREFIX).split("-", 1)[0]
        if not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


@dataclass
class _Slot:
    """One worker position: its current process and its restart schedule."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = _FIRST_BACKOFF_S
    restart_at: float | None = None
    exit_code: int | None = None


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, config: CollectorConfig) -> None:
        assert config.metrics_dir is not None, "workers share their metrics through a folder"
        self._config = config
        self._slots = [_Slot(i) for i in range(config.workers)]
        self._stopping = False
        self._failed = False

    @property
    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self._slots if slot.process is not None]

    def run(self) -> int:
        """Run the workers until a signal stops them; 0 when every one drained cleanly."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        config = self._config
        logger.info("starting %d workers on %s, gRPC port %d, HTTP port %d", config.workers,
                    config.host, config.grpc_port, config.http_port)
        for slot in self._slots:
            self._start(slot)
        while not self._stopping or any(s.process is not None for s in self._slots):
            self._reap()
            time.sleep(_POLL_S)
        if self._failed:
            return _CONFIG_ERROR
        # A worker stopped by the signal before it could install its handlers counts as
        # stopped cleanly: it had taken no request yet.
        stopped = (None, 0, -signal.SIGTERM, -signal.SIGINT)
        clean = all(slot.exit_code in stopped for slot in self._slots)
        logger.info("stopped" if clean else "stopped; a worker did not exit cleanly")
        return 0 if clean else 1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info("shutting down %d workers (grace %gs)", len(self.pids),
                        self._config.shutdown_grace)
        self._stopping = True
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def _start(self, slot: _Slot) -> None:
        config = replace(self._config, worker_index=slot.index,
                         ui_port=self._config.ui_port if slot.index == 0 else None)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(config.metrics_dir)}
        process = subprocess.Popen([sys.executable, "-m", "collector_service.workers"],
                                   stdin=subprocess.PIPE, env=env)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError), process.stdin:
            process.stdin.write(pickle.dumps((config, os.getpid())))  # it died: reaped later
        slot.process, slot.started, slot.restart_at = process, time.monotonic(), None
        logger.info("worker %d started (pid %d)", slot.index, process.pid)
        if self._stopping:  # the stop signal came while it was being started
            process.send_signal(signal.SIGTERM)

    def _reap(self) -> None:
        """Note workers that exited; restart them unless stopping, when their time comes."""
        now = time.monotonic()
        for slot in self._slots:
            if slot.process is None:
                if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                    self._start(slot)
                continue
            code = slot.process.poll()
            if code is None:
                continue
            _forget_metrics(slot.process.pid, self._config)
            pid, slot.process, slot.exit_code = slot.process.pid, None, code
            if self._stopping:
                continue
            if code == _CONFIG_ERROR:
                logger.error("worker %d (pid %d) stopped on a configuration error; stopping "
                             "the collector", slot.index, pid)
                self._failed = self._stopping = True
                self._signal_all(signal.SIGTERM)
                continue
            if now - slot.started > _STABLE_S:
                slot.backoff = _FIRST_BACKOFF_S
            logger.error("worker %d (pid %d) exited unexpectedly (%s); restarting it in %gs",
                         slot.index, pid, _describe(code), slot.backoff)
            slot.restart_at = now + slot.backoff
            slot.backoff = min(slot.backoff * 2, _MAX_BACKOFF_S)


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _forget_metrics(pid: int, config: CollectorConfig) -> None:
    """Drop a dead worker's live gauges (in-flight requests, pool); counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(config.metrics_dir))  # type: ignore[no-untyped-call]


def worker_main() -> int:
    """A worker process: read its configuration from stdin and serve until stopped."""
    config, parent = pickle.load(sys.stdin.buffer)
    assert isinstance(config, CollectorConfig)
    _die_with_parent()
    configure_logging(config.log_level, config.log_format, worker=config.worker_index)
    if os.getppid() != parent:  # the supervisor died before the kernel could be told
        return 0
    try:
        asyncio.run(_serve(config, parent))
    except ConfigError as exc:  # the supervisor stops: restarting would fail the same way
        print(f"xray: error: {exc}", file=sys.stderr)
        return _CONFIG_ERROR
    except XRayError as exc:  # e.g. the database is unreachable: restarted with back-off
        print(f"xray: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve(config: CollectorConfig, parent: int) -> None:
    """Serve until SIGTERM or SIGINT, or until the supervisor is gone; then drain."""
    from collector_service.server import Collector

    await Collector(config).serve_forever(watch=functools.partial(_watch_parent, parent))


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop when the supervisor is gone (where the kernel cannot tell us)."""
    while os.getppid() == parent:
        await asyncio.sleep(_PARENT_CHECK_S)
    logger.warning("the supervisor (pid %d) is gone; stopping", parent)
    stop.set()


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the supervisor dies; elsewhere the watch does it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable; watching the parent pid only")


if __name__ == "__main__":
    sys.exit(worker_main())
