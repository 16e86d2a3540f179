"""The outage spool keeps what it acknowledged, across rotation, reopening, failures and SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector_service.errors import ConfigError, SpoolFull
from collector_service.store.spool import Spool

REPO = Path(__file__).resolve().parents[2]


def payload(index: int, size: int = 100) -> bytes:
    return f"{index:08d}".encode().ljust(size, b"x")


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("spool-*.seg"))


def drain_all(spool: Spool) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []

    async def handler(kind: str, data: bytes) -> None:
        seen.append((kind, data))

    asyncio.run(spool.drain(handler))
    return seen


def events(registry: CollectorRegistry, event: str) -> float | None:
    return registry.get_sample_value("xray_spool_records_total", {"event": event})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def spool(tmp_path: Path, registry: CollectorRegistry) -> Iterator[Spool]:
    with Spool(tmp_path, 10**7, registry, segment_bytes=2048) as opened:
        yield opened


def test_records_come_back_in_order_across_segments(spool: Spool, tmp_path: Path,
                                                    registry: CollectorRegistry) -> None:
    sent = [("otlp-traces" if i % 3 else "other", payload(i, 50 + 37 * i)) for i in range(60)]
    for kind, data in sent:
        spool.append(kind, data)
    assert len(segments(tmp_path)) > 5
    assert spool.pending_records == 60
    assert spool.pending_bytes == sum(p.stat().st_size for p in segments(tmp_path))
    assert registry.get_sample_value("xray_spool_bytes") == spool.pending_bytes

    assert drain_all(spool) == sent
    assert segments(tmp_path) == []
    assert (spool.pending_records, spool.pending_bytes) == (0, 0)
    assert registry.get_sample_value("xray_spool_bytes") == 0
    assert events(registry, "spooled") == events(registry, "replayed") == 60
    assert drain_all(spool) == []


def test_records_appended_during_a_drain_are_drained_after_the_older_ones(spool: Spool) -> None:
    spool.append("k", b"first")
    spool.append("k", b"second")
    seen: list[bytes] = []

    async def handler(kind: str, data: bytes) -> None:
        seen.append(data)
        if len(seen) < 4:
            await asyncio.to_thread(spool.append, "k", b"later %d" % len(seen))

    assert asyncio.run(spool.drain(handler)) == 5
    assert seen == [b"first", b"second", b"later 1", b"later 2", b"later 3"]
    assert spool.pending_records == 0


def test_a_new_spool_on_the_same_folder_drains_what_the_old_one_held(tmp_path: Path) -> None:
    with Spool(tmp_path, 10**7, CollectorRegistry(), segment_bytes=1024) as old:
        for i in range(30):
            old.append("k", payload(i))
    with Spool(tmp_path, 10**7, CollectorRegistry(), segment_bytes=1024) as new:
        assert new.pending_records == 30
        new.append("k", payload(30))
        assert [data for _, data in drain_all(new)] == [payload(i) for i in range(31)]


def test_a_full_spool_refuses_without_writing_anything(tmp_path: Path,
                                                       registry: CollectorRegistry) -> None:
    with Spool(tmp_path, 1000, registry) as spool:
        spool.append("k", payload(0, 600))
        on_disk = [(p.name, p.read_bytes()) for p in segments(tmp_path)]
        with pytest.raises(SpoolFull, match="full"):
            spool.append("k", payload(1, 600))
        assert [(p.name, p.read_bytes()) for p in segments(tmp_path)] == on_disk
        assert spool.pending_records == 1
        assert events(registry, "refused_full") == 1
        spool.append("k", payload(2, 300))  # a smaller record still fits
        assert [data for _, data in drain_all(spool)] == [payload(0, 600), payload(2, 300)]
        spool.append("k", payload(3, 600))  # draining made room


def test_a_disabled_spool_refuses_everything(tmp_path: Path) -> None:
    with Spool(tmp_path, 0, CollectorRegistry()) as spool, \
            pytest.raises(SpoolFull, match="XRAY_SPOOL_MAX_BYTES=0"):
        spool.append("k", b"x")
    assert segments(tmp_path) == []


def test_bad_kinds_are_refused_with_a_clear_error(spool: Spool) -> None:
    with pytest.raises(ValueError, match="kind"):
        spool.append("", b"x")
    with pytest.raises(ValueError, match="kind"):
        spool.append("k" * 256, b"x")


def test_a_failing_handler_leaves_its_record_for_the_next_drain(spool: Spool) -> None:
    for i in range(40):
        spool.append("k", payload(i))
    seen: list[bytes] = []

    async def flaky(kind: str, data: bytes) -> None:
        if data == payload(25) and b"failed" not in seen:
            seen.append(b"failed")
            raise ConnectionError("database still down")
        seen.append(data)

    with pytest.raises(ConnectionError):
        asyncio.run(spool.drain(flaky))
    assert seen[-1] == b"failed"
    assert spool.pending_records == 15
    assert asyncio.run(spool.drain(flaky)) == 15
    assert [d for d in seen if d != b"failed"] == [payload(i) for i in range(40)]


def test_a_second_process_cannot_open_the_same_folder(spool: Spool, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"XRAY_SPOOL_DIR.*pid {os.getpid()}"):
        Spool(tmp_path, 10**7, CollectorRegistry()).open()
    code = textwrap.dedent(f"""
        from pathlib import Path
        from prometheus_client import CollectorRegistry
        from collector_service.errors import ConfigError
        from collector_service.store.spool import Spool
        try:
            Spool(Path({str(tmp_path)!r}), 1000, CollectorRegistry()).open()
        except ConfigError as exc:
            print(exc)
    """)
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                           text=True, timeout=60, check=True)
    assert "XRAY_SPOOL_DIR" in child.stdout
    spool.close()
    Spool(tmp_path, 10**7, CollectorRegistry()).open().close()


def write_records(folder: Path, count: int) -> list[int]:
    """Append ``count`` records to a fresh spool in ``folder``; return their end offsets."""
    ends = []
    with Spool(folder, 10**7, CollectorRegistry()) as spool:
        for i in range(count):
            spool.append("k", payload(i, 200))
            ends.append(spool.pending_bytes)
    return ends


@pytest.mark.parametrize("cut", [1, 5, 10, 11, 150, 210])
def test_a_torn_tail_is_cut_off_and_everything_before_it_kept(
        tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    ends = write_records(tmp_path, 5)
    (segment,) = segments(tmp_path)
    os.truncate(segment, ends[3] + cut)  # the last record is 211 bytes: torn somewhere inside
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING), Spool(tmp_path, 10**7, registry) as spool:
        assert spool.pending_records == 4
        assert segment.stat().st_size == ends[3]
        spool.append("k", b"after recovery")
        drained = [data for _, data in drain_all(spool)]
    assert drained == [*(payload(i, 200) for i in range(4)), b"after recovery"]
    assert events(registry, "corrupt_tail") == 1
    assert "torn record" in caplog.text


@pytest.mark.parametrize("where", [0, 4, 6, 10, 11, 100, 210])
def test_a_flipped_byte_in_the_last_record_is_detected(tmp_path: Path, where: int) -> None:
    ends = write_records(tmp_path, 5)
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[ends[3] + where] ^= 0x40
    segment.write_bytes(bytes(data))
    with Spool(tmp_path, 10**7, CollectorRegistry()) as spool:
        assert [data for _, data in drain_all(spool)] == [payload(i, 200) for i in range(4)]


def test_a_segment_with_nothing_whole_in_it_is_removed(tmp_path: Path) -> None:
    write_records(tmp_path, 1)
    (segment,) = segments(tmp_path)
    os.truncate(segment, 7)
    with Spool(tmp_path, 10**7, CollectorRegistry()) as spool:
        assert (spool.pending_records, spool.pending_bytes) == (0, 0)
    assert segments(tmp_path) == []


CHILD = """
import sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from collector_service.store.spool import Spool

spool = Spool(Path(sys.argv[1]), 10**9, CollectorRegistry(), segment_bytes=64 * 1024).open()
index = 0
while True:
    spool.append("k", str(index).encode().ljust(1 + index * 7919 % 20000, b"."))
    print(index, flush=True)
    index += 1
"""


@pytest.mark.slow
def test_a_process_killed_while_appending_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    printed = []
    with subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            printed.append(int(line))
            if len(printed) == 400:
                break
        child.send_signal(signal.SIGKILL)
        printed.extend(int(line) for line in child.stdout)  # what it printed before dying
    assert child.returncode == -signal.SIGKILL
    assert printed == list(range(len(printed)))
    assert len(segments(tmp_path)) > 3

    with Spool(tmp_path, 10**9, CollectorRegistry()) as spool:
        drained = [int(data.rstrip(b".")) for _, data in drain_all(spool)]
    assert drained[:len(printed)] == printed
    assert len(drained) - len(printed) in (0, 1)
    assert drained == list(range(len(drained)))


FILE_SIZE_LIMITED = """
import resource, signal, sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from collector_service.errors import SpoolFull
from collector_service.store.spool import Spool

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
spool = Spool(Path(sys.argv[1]), 10**9, CollectorRegistry()).open()
for index in range(12):
    try:
        spool.append("k", str(index).encode().ljust(1500, b"."))
        print(index, "ok")
    except SpoolFull as exc:
        print(index, "refused", exc)
"""


def test_a_failed_write_is_refused_and_leaves_no_partial_record(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMITED, str(tmp_path)], cwd=REPO,
                           capture_output=True, text=True, timeout=60, check=True)
    outcomes = [line.split(" ", 2) for line in child.stdout.splitlines()]
    accepted = [int(index) for index, outcome, *_ in outcomes if outcome == "ok"]
    refused = [line for line in outcomes if line[1] == "refused"]
    assert refused and all("could not be written" in line[2] for line in refused)
    assert len(accepted) > 4
    registry = CollectorRegistry()
    with Spool(tmp_path, 10**9, registry) as spool:
        drained = [int(data.rstrip(b".")) for _, data in drain_all(spool)]
    assert drained == accepted
    assert events(registry, "corrupt_tail") == 0
