"""``xray collector`` as a real subprocess, for tests that signal, kill and restart it.

The ports are picked once, up front, so a restarted collector listens where its clients
already point. The process writes its log to a file in its data directory; a collector
that exits before it is healthy fails the test with that log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.fix_pg_instance import free_port

REPO = Path(__file__).resolve().parents[1]
_READY_TIMEOUT_S = 60.0


class CollectorFailed(RuntimeError):
    """The collector process exited or never became healthy; the message holds its log."""


class CollectorProcess:
    """One ``xray collector`` process (and its successors after ``restart``)."""

    def __init__(self, database_url: str, data_dir: Path, flags: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        # One process unless the test asks for workers: tests here signal, kill and measure
        # that process, and the default (one worker per core) would add a supervisor.
        self.flags = tuple(flags) if any(f.startswith("--workers") for f in flags) \
            else ("--workers", "1", *flags)
        self.grpc_port = free_port()
        self.http_port = free_port()
        # Only what the test says: no XRAY_* setting leaks in from the caller's environment.
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("XRAY_")}
        self._env.update(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the collector was never started"
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"collector-{self._starts}.log"

    @property
    def log(self) -> str:
        """Everything the current (or last) process wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> CollectorProcess:
        """Start the process and return once ``/healthz`` answers."""
        if self.running:
            raise CollectorFailed("the collector is already running")
        self._starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "collector_service.cli.main", "collector",
                   "--database-url", self.database_url, "--data-dir", str(self.data_dir),
                   "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                   *self.flags]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self._env, cwd=REPO)
        self._wait_healthy()
        return self

    def restart(self) -> CollectorProcess:
        """Start a new process on the same ports and data directory (the old one must be gone)."""
        return self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self._process is not None, "the collector was never started"
        self._process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has exited (``subprocess.TimeoutExpired`` if not)."""
        assert self._process is not None, "the collector was never started"
        return self._process.wait(timeout)

    def rss_bytes(self) -> int:
        """Resident memory of the process now, from ``/proc``."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise CollectorFailed(f"no VmRSS for process {self.pid}")

    def kill(self) -> None:
        """SIGKILL the process, if it runs, and reap it."""
        if self.running:
            self.signal(signal.SIGKILL)
        if self._process is not None:
            self._process.wait(30)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                code = self._process.returncode if self._process else None
                raise CollectorFailed(f"collector exited with {code}:\n{self.log}")
            try:
                with urllib.request.urlopen(self.http_url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                exc.close()
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.kill()
        raise CollectorFailed(f"collector not healthy after {_READY_TIMEOUT_S:g}s:\n{self.log}")


SpawnCollector = Callable[..., CollectorProcess]


@pytest.fixture
def spawn_collector(tmp_path: Path) -> Iterator[SpawnCollector]:
    """Start ``xray collector`` processes; any still running at the end are killed.

    ``spawn_collector(database_url, *flags, env=None, name="collector")``.
    """
    started: list[CollectorProcess] = []

    def spawn(database_url: str, *flags: str, env: Mapping[str, str] | None = None,
              name: str = "collector") -> CollectorProcess:
        process = CollectorProcess(database_url, tmp_path / name, flags, env)
        started.append(process)
        return process.start()

    yield spawn
    for process in started:
        process.kill()
