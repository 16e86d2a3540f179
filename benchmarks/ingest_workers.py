"""``ingest.py --workers 1,2``: the collector as ``xray collector --workers N`` processes.

What it measures
----------------
* ``ingest_grpc_workers_N``: wall time for an ``xray collector --workers N`` subprocess
  to receive and commit the same step and run spans as ``ingest.py``'s other phases, in
  OTLP/gRPC requests of 512 spans sent by ``SENDER_PROCESSES`` sender processes with
  ``CHANNELS_PER_PROCESS`` channels each (separate processes, so the senders' GIL does
  not cap the figure; separate connections, because ``SO_REUSEPORT`` spreads connections,
  not requests, over the workers). Requests are taken from one shared queue, so a worker
  that got fewer connections does not hold the others back. Afterwards ``xray_steps``
  must hold exactly one row per step span.
* ``baseline_copy``: the plain ``COPY`` of the same rows, in the same rounds.
* The workers' CPU time per span (user + system, all threads, from ``/proc``): the
  Python cost per span, less sensitive than wall time to other jobs on the machine.
* Where the machine's CPU went in those rounds, per span: the workers, PostgreSQL (every
  process named ``postgres``, so only when the server runs on this machine), the sender
  processes (``getrusage`` from the start signal to their last answer), and how busy
  the machine was (``/proc/stat``). On a machine the senders and the database share,
  this says whether the collector, the database or the load generator is the limit.
* Peak RSS of every worker process (``VmHWM`` in ``/proc/<pid>/status``) after all
  rounds, that is under full load, and of the supervisor.

Every collector runs for the whole benchmark (each N on its own ports, idle while the
others are timed) so the rounds can interleave. Senders, collectors and PostgreSQL share
this machine's cores: on 2 cores, two workers compete with the senders and the database.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import grpc
from _bench_support import BenchmarkError, reset_tables
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

SENDER_PROCESSES = 2
CHANNELS_PER_PROCESS = 4
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
READY_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunningCollector:
    workers: int
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int

    def worker_pids(self) -> list[int]:
        """The processes that serve: the workers, or the single process itself."""
        if self.workers == 1:
            return [self.process.pid]
        return sorted(pid for pid in _children(self.process.pid))


@contextmanager
def collector(url: str, data_dir: Path, workers: int) -> Iterator[RunningCollector]:
    """``xray collector --workers N`` on free ports; stopped with SIGTERM on exit."""
    grpc_port, http_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "collector_service.cli.main", "collector",
               "--workers", str(workers), "--database-url", url, "--data-dir", str(data_dir),
               "--grpc-port", str(grpc_port), "--http-port", str(http_port),
               "--spool-max-bytes", "0", "--log-level", "WARNING"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRAY_")}
    process = subprocess.Popen(command, env=env, cwd=REPO, stdin=subprocess.DEVNULL)
    running = RunningCollector(workers, process, grpc_port, http_port)
    try:
        _wait_ready(running)
        yield running
    finally:
        process.terminate()
        process.wait(60)


@dataclass(frozen=True)
class Sent:
    """One timed send: wall time from start to the last answer, and the senders' CPU."""

    seconds: float
    sender_cpu_s: float


@dataclass
class CpuShares:
    """CPU seconds each part used over the timed rounds of one worker count."""

    collector: list[float]
    postgres: list[float]
    senders: list[float]
    busy: list[float]
    """Share of the machine's CPU time in use (0 to 1) during each round."""


def timed_send(port: int, requests: Sequence[bytes]) -> Sent:
    """Send every request from the sender processes; wall time from start to last answer."""
    context = multiprocessing.get_context("spawn")
    queue: Any = context.Queue()
    finished: Any = context.Queue()
    ready = [context.Event() for _ in range(SENDER_PROCESSES)]
    start = context.Event()
    senders = [context.Process(target=_sender, args=(port, queue, finished, ready[i], start))
               for i in range(SENDER_PROCESSES)]
    for sender in senders:
        sender.start()
    for request in requests:
        queue.put(request)
    for _ in range(SENDER_PROCESSES * CHANNELS_PER_PROCESS):
        queue.put(None)
    for event in ready:
        if not event.wait(READY_TIMEOUT_S):
            raise BenchmarkError("a sender process did not connect")
    began = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
    start.set()
    ends = [finished.get(timeout=600) for _ in senders]
    for sender in senders:
        sender.join(60)
    failures = [end for end in ends if isinstance(end, str)]
    if failures:
        raise BenchmarkError(failures[0])
    return Sent(max(last for last, _ in ends) - began, sum(cpu for _, cpu in ends))


def _sender(port: int, queue: Any, finished: Any, ready: Event, start: Event) -> None:
    """One sender process: several channels, each on its own thread and connection."""
    import threading

    options = [("grpc.max_send_message_length", 64 * 1024 * 1024),
               ("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
                for _ in range(CHANNELS_PER_PROCESS)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_S)
    errors: list[str] = []
    last = [0.0]

    def send(channel: grpc.Channel) -> None:
        export = channel.unary_unary(EXPORT_METHOD,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
        while (request := queue.get()) is not None:
            try:
                response = export(request, timeout=120)
            except grpc.RpcError as exc:
                errors.append(f"Export failed: {exc.code().name}")
                continue
            if response.partial_success.rejected_spans:
                errors.append(f"spans rejected: {response.partial_success.error_message}")
            last[0] = max(last[0], time.monotonic())

    threads = [threading.Thread(target=send, args=(c,)) for c in channels]
    ready.set()
    start.wait()
    before = _own_cpu_seconds()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished.put(errors[0] if errors else (last[0], _own_cpu_seconds() - before))
    for channel in channels:
        channel.close()


def _own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchmarkError(f"no VmHWM for process {pid}")


def run_worker_phases(url: str, data_dir: Path, worker_counts: Sequence[int],
                      requests: Sequence[bytes], warmup: Sequence[bytes], repeat: int,
                      timed: dict[int, list[float]], copy_round: Callable[[], None],
                      verify: Callable[[], None], cpu: dict[int, CpuShares] | None = None
                      ) -> dict[int, tuple[list[float], float | None]]:
    """Rounds of: each worker count, then ``copy_round()``; the peak RSS of each worker.
    ``cpu`` receives where the CPU went in each round of each count."""
    with ExitStack() as stack:
        running = {n: stack.enter_context(collector(url, data_dir / f"workers-{n}", n))
                   for n in worker_counts}
        for collector_ in running.values():
            timed_send(collector_.grpc_port, warmup)  # every worker opens its pool
        for _ in range(repeat):
            for n, collector_ in running.items():
                reset_tables(url)
                pids = collector_.worker_pids()
                before = cpu_seconds(pids), cpu_seconds(_postgres_pids()), _machine_ticks()
                sent = timed_send(collector_.grpc_port, requests)
                timed[n].append(sent.seconds)
                if cpu is not None:
                    busy, total = (a - b for a, b in zip(_machine_ticks(), before[2],
                                                         strict=True))
                    shares = cpu.setdefault(n, CpuShares([], [], [], []))
                    shares.collector.append(cpu_seconds(pids) - before[0])
                    shares.postgres.append(cpu_seconds(_postgres_pids()) - before[1])
                    shares.senders.append(sent.sender_cpu_s)
                    shares.busy.append(busy / max(total, 1))
                verify()
            copy_round()
        return {n: ([peak_rss_mib(pid) for pid in c.worker_pids()],
                    peak_rss_mib(c.process.pid) if n > 1 else None)
                for n, c in running.items()}


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time the processes have used so far (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # gone since listed (a database backend that ended)
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    """Every process of a PostgreSQL server on this machine (none for a remote one)."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def _machine_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append(int(stat.parent.name))
    return found


def _wait_ready(running: RunningCollector) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise BenchmarkError(f"xray collector --workers {running.workers} exited with "
                                 f"{running.process.returncode}")
        ready = _listeners(running.grpc_port) == _listeners(running.http_port) == running.workers
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/readyz",
                                        timeout=2) as response:
                if response.status == 200 and ready:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchmarkError(f"xray collector --workers {running.workers} never became ready")


def _listeners(port: int) -> int:
    """Sockets listening on ``port``: one per worker once all have bound (gRPC may bind
    an IPv6 socket for an IPv4 address)."""
    lines = [line for table in ("tcp", "tcp6")
             for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]]
    return sum(1 for line in lines
               if (fields := line.split())[3] == "0A" and fields[1].endswith(f":{port:04X}"))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
