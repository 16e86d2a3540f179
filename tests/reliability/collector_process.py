"""``xray collector`` as a real subprocess on free loopback ports, for reliability tests.

Stopped with SIGTERM (then SIGKILL if it does not exit) when the ``with`` block ends; a
process that dies or never answers ``/healthz`` fails the test with its log.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CollectorProcess:
    """One collector process over ``database_url``, with extra command-line ``flags``."""

    def __init__(self, database_url: str, data_dir: Path, flags: Sequence[str] = ()) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log_path = data_dir / "collector.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._command = [
            sys.executable, "-m", "collector_service.cli.main", "collector",
            "--database-url", database_url, "--data-dir", str(data_dir),
            "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port), *flags]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def memory(self) -> dict[str, int]:
        """The process's memory figures from ``/proc/PID/status`` (VmRSS, VmHWM, ...), in bytes."""
        assert self._process is not None
        figures = {}
        for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith(" kB"):
                figures[name] = int(value.split()[0]) * 1024
        return figures

    def __enter__(self) -> CollectorProcess:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"collector exited with {self._process.returncode}:\n"
                                   + self.log_path.read_text(errors="replace"))
            try:
                with urllib.request.urlopen(self.http_url + "/healthz", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("collector never answered /healthz:\n"
                           + self.log_path.read_text(errors="replace"))

    def __exit__(self, *exc: object) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(30)
