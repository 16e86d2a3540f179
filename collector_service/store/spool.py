"""The outage spool: requests kept durably on local disk while PostgreSQL is down.

``append`` writes one record and fsyncs it before returning, so a request acknowledged
from the spool survives a crash; ``drain`` hands the records back oldest first once the
database answers again. Records live in segment files ``spool-<20-digit seq>.seg`` of
about 16 MiB. Each record is framed as::

    crc32 (u32) | kind length (u16) | payload length (u32) | kind (UTF-8) | payload

little-endian, the CRC covering everything after itself. A segment is deleted only once
every record in it was handled, so a process killed mid-drain replays that segment from
its start (harmless: writes are idempotent). A process killed mid-append leaves a torn
record at the end of its last segment; opening the spool finds it by length and CRC and
cuts it off with a warning, keeping every record before it. One folder belongs to one
process at a time, enforced with ``flock`` on ``spool.lock``.

Worker processes each spool to ``<root>/worker-<i>``, a single process to ``<root>``.
When the number of processes changes, folders nobody owns any more are *adopted*: a
process opening its spool locks each orphan folder it is given (skipping those another
process holds), moves their segments into its own folder and replays them with its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge

from collector_service.errors import ConfigError, SpoolFull
from collector_service.store.spool_folders import (
    LOCK_NAME,
    SEGMENT_NAME,
    adopt,
    fsync_directory,
    orphan_folders,
)

__all__ = ["SEGMENT_BYTES", "Handler", "Spool", "orphan_folders"]

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 16 * 1024**2
"""A new segment is started when the record would take the current one past this size."""

Handler = Callable[[str, bytes], Awaitable[None]]

_HEADER = struct.Struct("<IHI")
_MAX_KIND_BYTES = 255
_MAX_PAYLOAD_BYTES = 2**32 - 1
_EVENTS = ("spooled", "replayed", "refused_full", "corrupt_tail")


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int


@dataclass(frozen=True)
class _Record:
    end: int  # offset just past the record in its segment
    kind: str
    payload: bytes


class Spool:
    """A bounded, durable FIFO of ``(kind, payload)`` records in one folder.

    ``append`` is synchronous and thread-safe (call it through ``asyncio.to_thread``);
    ``drain`` runs on the event loop and reads files in worker threads.
    """

    def __init__(self, directory: Path, max_bytes: int, registry: CollectorRegistry, *,
                 segment_bytes: int = SEGMENT_BYTES, adopt_from: Sequence[Path] = ()) -> None:
        self.directory = directory
        self._orphans = tuple(adopt_from)
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self._active: int | None = None  # the newest segment's fd, while appends go there
        self._lock_fd: int | None = None
        self._next_seq = 1
        self._bytes = 0
        self._appended = 0  # records recovered or appended: changed only by appends
        self._handled = 0  # records handed to a drain handler: changed only by drains
        self._head_done = 0  # offset in the oldest segment up to which records were handled
        self._draining = False
        self._bytes_gauge = Gauge("xray_spool_bytes",
                                  "Bytes in the outage spool's segment files",
                                  multiprocess_mode="livesum", registry=registry)
        self._events = Counter("xray_spool_records", "Outage spool records, by event",
                               ["event"], registry=registry)
        for event in _EVENTS:
            self._events.labels(event)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the segment files on disk: what counts against ``max_bytes``."""
        return self._bytes

    @property
    def pending_records(self) -> int:
        """Records not yet handled by a drain in this process."""
        return self._appended - self._handled

    def open(self) -> Spool:
        """Lock the folder for this process and recover the segments already in it."""
        if self._lock_fd is not None:
            raise RuntimeError("the spool is already open")
        self._lock_fd = _lock_folder(self.directory)
        for orphan in self._orphans:
            adopt(orphan, self.directory)
        for path in sorted(self.directory.glob("spool-*.seg")):
            if match := SEGMENT_NAME.fullmatch(path.name):
                self._recover(int(match.group(1)), path)
        self._bytes_gauge.set(self._bytes)
        return self

    def close(self) -> None:
        """Close the newest segment and release the folder; safe to call twice."""
        with self._lock:
            self._seal()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def append(self, kind: str, payload: bytes) -> None:
        """Write one record durably; raises SpoolFull if it does not fit in ``max_bytes``."""
        record = _frame(kind, payload)
        with self._lock:
            if self._lock_fd is None:
                raise RuntimeError("the spool is not open")
            if self._bytes + len(record) > self.max_bytes:
                self._events.labels("refused_full").inc()
                if self.max_bytes == 0:
                    raise SpoolFull("the spool is disabled (XRAY_SPOOL_MAX_BYTES=0)")
                raise SpoolFull(f"the spool is full ({self._bytes} of {self.max_bytes} bytes "
                                f"used, {len(record)} more needed)")
            segment = self._writable(len(record))
            assert self._active is not None
            try:
                _write_all(self._active, record)
                os.fsync(self._active)
            except OSError as exc:  # cut the partial record off; write no more to this file
                logger.error("spool segment %s could not be written: %s", segment.path, exc)
                with contextlib.suppress(OSError):
                    os.ftruncate(self._active, segment.size)
                self._seal()
                raise SpoolFull(f"the spool could not be written: {exc}") from exc
            segment.size += len(record)
            self._bytes += len(record)
            self._appended += 1
            self._bytes_gauge.set(self._bytes)
        self._events.labels("spooled").inc()

    async def drain(self, handler: Handler) -> int:
        """Hand every record to ``handler``, oldest first; return how many were handled.

        If ``handler`` raises, the drain stops and the exception propagates; that record
        and all after it stay for the next drain. A drain already running makes this call
        return 0 at once.
        """
        if self._draining:
            return 0
        self._draining = True
        handled = 0
        try:
            while (head := await asyncio.to_thread(self._head)) is not None:
                records = await asyncio.to_thread(self._read, head)
                for record in records:
                    if record.end <= self._head_done:
                        continue
                    await handler(record.kind, record.payload)
                    self._head_done = record.end
                    self._handled += 1
                    handled += 1
                    self._events.labels("replayed").inc()
                await asyncio.to_thread(self._retire, head)
        finally:
            self._draining = False
        return handled

    def _recover(self, seq: int, path: Path) -> None:
        data = path.read_bytes()
        records, good = _parse(data)
        if good < len(data):
            logger.warning("spool segment %s: damaged or torn record at byte %d of %d; "
                           "cut there, %d records before it kept", path, good, len(data),
                           len(records))
            self._events.labels("corrupt_tail").inc()
            with open(path, "r+b") as file:
                file.truncate(good)
                os.fsync(file.fileno())
        self._next_seq = max(self._next_seq, seq + 1)
        if good == 0:
            path.unlink()
            return
        self._segments.append(_Segment(seq, path, good))
        self._bytes += good
        self._appended += len(records)

    def _writable(self, size: int) -> _Segment:
        """The segment the next record goes to, starting a new one when needed (locked)."""
        if self._active is not None:
            current = self._segments[-1]
            if current.size == 0 or current.size + size <= self._segment_bytes:
                return current
            self._seal()
        seq = self._next_seq
        path = self.directory / f"spool-{seq:020d}.seg"
        self._active = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._next_seq += 1
        segment = _Segment(seq, path, 0)
        self._segments.append(segment)
        fsync_directory(self.directory)
        return segment

    def _seal(self) -> None:
        if self._active is not None:
            os.close(self._active)
            self._active = None

    def _head(self) -> _Segment | None:
        """The oldest segment, sealed so that it no longer changes (locked)."""
        with self._lock:
            if not self._segments:
                return None
            if self._active is not None and len(self._segments) == 1:
                self._seal()
            return self._segments[0]

    def _read(self, segment: _Segment) -> list[_Record]:
        data = segment.path.read_bytes()[:segment.size]
        records, good = _parse(data)
        if good < len(data):
            logger.warning("spool segment %s: damaged record at byte %d; the rest of the "
                           "segment is skipped", segment.path, good)
            self._events.labels("corrupt_tail").inc()
        return records

    def _retire(self, segment: _Segment) -> None:
        """Delete a segment every record of which was handled (locked)."""
        with self._lock:
            segment.path.unlink(missing_ok=True)
            self._segments.popleft()
            self._bytes -= segment.size
            self._head_done = 0
            self._bytes_gauge.set(self._bytes)


def _frame(kind: str, payload: bytes) -> bytes:
    encoded = kind.encode()
    if not 0 < len(encoded) <= _MAX_KIND_BYTES:
        raise ValueError(f"spool record kind must be 1 to {_MAX_KIND_BYTES} bytes: {kind!r}")
    if len(payload) > _MAX_PAYLOAD_BYTES:
        raise ValueError(f"spool record payload of {len(payload)} bytes is too large")
    rest = _HEADER.pack(0, len(encoded), len(payload))[4:]
    crc = zlib.crc32(payload, zlib.crc32(encoded, zlib.crc32(rest)))
    return b"".join((struct.pack("<I", crc), rest, encoded, payload))


def _parse(data: bytes) -> tuple[list[_Record], int]:
    """The whole records at the start of ``data`` and the offset where they end."""
    records: list[_Record] = []
    view = memoryview(data)
    offset = 0
    while offset + _HEADER.size <= len(data):
        crc, kind_len, payload_len = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + kind_len + payload_len
        if kind_len == 0 or end > len(data) or zlib.crc32(view[offset + 4:end]) != crc:
            break
        kind = bytes(view[start:start + kind_len]).decode(errors="replace")
        records.append(_Record(end, kind, bytes(view[start + kind_len:end])))
        offset = end
    return records, offset


def _lock_folder(directory: Path) -> int:
    """Create the folder and hold its lock file; a second holder gets a ConfigError."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"XRAY_SPOOL_DIR {directory} cannot be used: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"XRAY_SPOOL_DIR {directory} is in use by another collector process "
                          f"(pid {holder}); give each process a folder of its own") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

