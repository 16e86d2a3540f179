"""``xray artifact get`` and ``xray prune``: fetch evidence, and drop old runs with theirs."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from collector_service.cli import db as cli_db
from collector_service.cli.ids import resolve_artifact_id
from collector_service.config import CollectorConfig
from collector_service.errors import NotFound, XRayError
from collector_service.store.artifacts import (
    ArtifactCorrupted,
    ArtifactNotFound,
    build_artifact_store,
    valid_artifact_id,
    verified,
)
from collector_service.store.queries import load

_QUERIES = load("retention.sql")
_DURATION = re.compile(r"^(\d+)([dhm])$")
_HEX = re.compile(r"^[0-9a-f]{1,63}$")


def cmd_artifact_get(args: argparse.Namespace, config: CollectorConfig) -> int:
    """Stream an artifact to a file or stdout, verifying its hash as it goes."""
    key = args.artifact_id.lower()
    if not valid_artifact_id(key):
        if not _HEX.match(key):
            raise XRayError(f"{args.artifact_id!r} is not an artifact id (64 hex characters, "
                            "or a unique prefix of one)")
        with cli_db.connect(config) as conn:
            key = resolve_artifact_id(conn, key)
    chunks = verified(key, build_artifact_store(config).open(key))
    to_file = bool(args.output) and args.output != "-"
    try:
        if to_file:
            _to_file(chunks, Path(args.output))
        else:
            _to_stdout(chunks)
    except ArtifactNotFound:
        raise _explain_missing(config, key) from None
    except ArtifactCorrupted as exc:
        consequence = (f"{args.output} was not written" if to_file
                       else "the bytes written above are not the artifact")
        raise XRayError(f"{exc}; {consequence}") from None
    return 0


def _to_file(chunks: Iterator[bytes], target: Path) -> None:
    """Write to a temporary file beside ``target``; it replaces ``target`` only if whole."""
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise XRayError(f"-o {target}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".xray-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _to_stdout(chunks: Iterator[bytes]) -> None:
    out = sys.stdout.buffer
    try:
        for chunk in chunks:
            out.write(chunk)
    finally:
        out.flush()


def _explain_missing(config: CollectorConfig, key: str) -> XRayError:
    """Why the store has no such object: never stored (not found), or lost (an error)."""
    with cli_db.connect(config) as conn:
        row = conn.execute(load("ingest.sql")["artifact_info"], {"artifact_id": key}).fetchone()
    if row is None:
        return NotFound(f"no artifact {key}: no step references it")
    if not row[3]:
        return NotFound(f"artifact {key} was kept only as a summary ({row[4]}); "
                        f"preview: {row[5]!r}")
    return XRayError(f"artifact {key} is referenced but missing from the "
                     f"{config.artifact_store} store")


def parse_age(text: str, flag: str) -> timedelta:
    """``30d``, ``12h`` or ``15m`` as a duration; an error names ``flag``."""
    match = _DURATION.match(text)
    if match is None:
        raise XRayError(f"{flag} {text!r}: use a number and d, h or m, e.g. 30d")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount),
            "m": timedelta(minutes=amount)}[unit]


def cmd_prune(args: argparse.Namespace, config: CollectorConfig) -> int:
    """Delete runs older than ``--older-than`` with their steps, and unreferenced artifacts."""
    age = parse_age(args.older_than, "--older-than")
    grace_s = parse_age(args.artifact_grace, "--artifact-grace").total_seconds()
    with cli_db.connect(config) as conn, conn.transaction():
        params = {"older_than": age, "dry_run": args.dry_run}
        counts = conn.execute(_QUERIES["count_old"], params).fetchone()
        runs, steps = counts or (0, 0)
        if args.dry_run:
            print(f"would delete {_plural(runs, 'run')} and {_plural(steps, 'step')}")
            return 0
        freed = [r[0] for r in conn.execute(_QUERIES["delete_old"], params).fetchall()]
        unreferenced = [r[0] for r in conn.execute(
            _QUERIES["unreferenced"], {"artifact_ids": freed}).fetchall()]
    store = build_artifact_store(config)
    deleted = sum(store.delete_if_idle(key, grace_s) for key in unreferenced)
    kept = len(unreferenced) - deleted
    print(f"deleted {_plural(runs, 'run')}, {_plural(steps, 'step')} and "
          f"{_plural(deleted, 'artifact')}"
          + (f"; kept {_plural(kept, 'artifact')} written within --artifact-grace"
             if kept else ""))
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
