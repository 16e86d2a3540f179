"""``xray artifact get``, ``xray retention`` and ``xray prune``: fetch evidence, and
remove old runs with theirs (by whole partitions, or row by row)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from collector_service.store.retention import RetentionResult

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
    from collector_service.store.retention import unreferenced_artifacts

    age = parse_age(args.older_than, "--older-than")
    grace_s = parse_age(args.artifact_grace, "--artifact-grace").total_seconds()
    with cli_db.connect(config) as conn, conn.transaction():
        params = {"older_than": age, "dry_run": args.dry_run}
        counts = conn.execute(_QUERIES["count_old"], params).fetchone()
        runs, steps = counts or (0, 0)
        if args.dry_run:
            print(f"would delete {_plural(runs, 'run')} and {_plural(steps, 'step')}")
            return 0
        freed = {r[0] for r in conn.execute(_QUERIES["delete_old"], params).fetchall()}
        unreferenced = unreferenced_artifacts(conn, freed)
    deleted, kept = _delete_idle_artifacts(config, unreferenced, grace_s)
    print(f"deleted {_plural(runs, 'run')}, {_plural(steps, 'step')} and "
          f"{_plural(deleted, 'artifact')}"
          + (f"; kept {_plural(kept, 'artifact')} written within --artifact-grace"
             if kept else ""))
    return 0


def _delete_idle_artifacts(config: CollectorConfig, keys: Sequence[str],
                           grace_s: float) -> tuple[int, int]:
    """Delete the stored payloads ``keys`` that no row references any more, except those
    written within ``grace_s`` (a collector may be about to reference them again);
    return (deleted, kept)."""
    store = build_artifact_store(config)
    deleted = sum(store.delete_if_idle(key, grace_s) for key in keys)
    return deleted, len(keys) - deleted


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def cmd_retention(args: argparse.Namespace, config: CollectorConfig) -> int:
    """Drop the step partitions older than ``--older-than``, the runs that ended before it,
    and the artifacts only they used."""
    from collector_service.store.retention import RetentionLocked, apply_retention

    age = parse_age(args.older_than, "--older-than")
    grace_s = parse_age(args.artifact_grace, "--artifact-grace").total_seconds()
    try:
        with cli_db.connect(config) as conn:
            result = apply_retention(conn, age, args.dry_run)
    except RetentionLocked as exc:
        raise XRayError(f"{exc}: other queries kept xray_steps locked; nothing was removed, "
                        "try again") from None
    deleted, kept = (0, 0) if args.dry_run else _delete_idle_artifacts(
        config, result.unreferenced_artifacts, grace_s)
    if args.json:
        print(json.dumps({
            "cutoff": result.cutoff.isoformat(),
            "requested_cutoff": result.requested_cutoff.isoformat(), "dry_run": args.dry_run,
            "partitions": list(result.partitions),
            "partition_steps_estimate": result.partition_steps_estimate,
            "runs": result.runs, "default_steps": result.default_steps,
            "steps_kept_in_default": result.steps_kept,
            "artifacts": len(result.unreferenced_artifacts) if args.dry_run else deleted,
            "artifacts_kept_within_grace": kept}, indent=2))
        return 0
    print(_retention_summary(result, args.dry_run, deleted, kept))
    return 0


def _retention_summary(result: RetentionResult, dry_run: bool, deleted: int, kept: int) -> str:
    """One line: the cutoff, then what went (or would go), then what was kept and why."""
    parts = result.partitions
    days = (f"{_plural(len(parts), 'partition')} ({parts[0][-8:]}..{parts[-1][-8:]}, "
            f"about {result.partition_steps_estimate} steps)" if parts
            else "0 partitions")
    artifacts = len(result.unreferenced_artifacts) if dry_run else deleted
    moved = ("" if result.cutoff == result.requested_cutoff else
             f" (the start of the partition holding "
             f"{result.requested_cutoff.astimezone(UTC):%Y-%m-%d %H:%M}: partitions go whole)")
    line = (f"cutoff {result.cutoff.astimezone(UTC):%Y-%m-%d %H:%M} UTC{moved}: "
            + ("would drop " if dry_run else "dropped ") + days
            + (", would delete " if dry_run else ", deleted ")
            + f"{_plural(result.runs, 'run')}, "
            + f"{_plural(result.default_steps, 'step')} from xray_steps_default and "
            + f"{_plural(artifacts, 'artifact')}")
    if result.steps_kept:
        line += (f"; {_plural(result.steps_kept, 'older step')} of runs that end after the "
                 "cutoff " + ("would move" if dry_run else "moved") + " to xray_steps_default")
    if kept:
        line += f"; kept {_plural(kept, 'artifact')} written within --artifact-grace"
    return line
