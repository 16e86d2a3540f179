"""Which spool folder a process owns, and adopting the folders nobody owns any more.

Worker processes each spool to ``<root>/worker-<i>``, a single process to ``<root>``.
When the number of processes changes, a process opening its spool adopts the orphan
folders :func:`orphan_folders` names: it locks each (skipping those another process
holds), moves their segments into its own folder and replays them with its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from pathlib import Path

from collector_service.config import CollectorConfig

logger = logging.getLogger(__name__)

SEGMENT_NAME = re.compile(r"spool-(\d{20})\.seg")
LOCK_NAME = "spool.lock"
_WORKER_FOLDER = re.compile(r"worker-(\d+)")


def orphan_folders(config: CollectorConfig) -> list[Path]:
    """The spool folders this process should adopt, given how many processes there are.

    A single process takes every ``worker-<i>`` folder; worker ``i`` of ``n`` takes the
    root's own segments (worker 0) and ``worker-<j>`` for ``j >= n`` with ``j % n == i``,
    so no two workers reach for the same folder.
    """
    root = config.local_spool_dir
    if not root.is_dir():
        return []
    workers = sorted((int(m.group(1)), path) for path in root.iterdir()
                     if path.is_dir() and (m := _WORKER_FOLDER.fullmatch(path.name)))
    if config.worker_index is None:
        return [path for _, path in workers]
    index, count = config.worker_index, config.workers
    mine = [path for j, path in workers if j >= count and j % count == index]
    return [root, *mine] if index == 0 else mine


def adopt(orphan: Path, own: Path) -> None:
    """Move an unowned folder's segments into ``own`` (whose lock the caller holds)."""
    fd = _try_lock(orphan)
    if fd is None:
        return
    try:
        taken = sorted(orphan.glob("spool-*.seg"))
        seq = max((int(m.group(1)) for p in own.glob("spool-*.seg")
                   if (m := SEGMENT_NAME.fullmatch(p.name))), default=0)
        for path in taken:
            if SEGMENT_NAME.fullmatch(path.name):
                seq += 1
                path.rename(own / f"spool-{seq:020d}.seg")
        if taken:
            fsync_directory(own)
            fsync_directory(orphan)
            logger.info("adopted %d spool segment(s) from %s", len(taken), orphan)
        if orphan != own.parent and _WORKER_FOLDER.fullmatch(orphan.name):
            with contextlib.suppress(OSError):  # tidy only: an empty folder does no harm
                (orphan / LOCK_NAME).unlink()
                orphan.rmdir()
    finally:
        os.close(fd)


def _try_lock(folder: Path) -> int | None:
    """The lock of an existing spool folder, or None if another process holds it."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        logger.info("spool folder %s is in use by another process; left to it", folder)
        return None
    return fd


def fsync_directory(directory: Path) -> None:
    """Make a new segment's name durable, not only its contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

