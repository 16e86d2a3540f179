"""``xray retention``: whole old partitions dropped (the cutoff moved back to a partition's
start), runs kept or deleted whole, artifacts only the deleted runs used removed from the
store, shared ones kept."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import psycopg
import pytest

from collector_service.cli.main import main
from collector_service.store.artifacts import LocalArtifactStore
from collector_service.store.partitions import step_partitions
from collector_service.store.retention import RetentionLocked, apply_retention
from tests.fix_db import PARTITION_OF_ROW

ONLY_OLD = b"evidence only the old run used"
SHARED = b"evidence a recent run uses too"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Steps:
    """The test database, with runs and steps written straight into it."""

    def __init__(self, db: psycopg.Connection, url: str, folder: Path) -> None:
        self.db, self.url, self.folder = db, url, folder

    def run(self, run_id: str, start: datetime, end: datetime,
            steps: list[tuple[str, datetime]]) -> None:
        self.db.execute("INSERT INTO xray_runs (run_id, trace_id, status, started_at, ended_at)"
                        " VALUES (%s, 't', 'ok', %s, %s)", (run_id, start, end))
        for span, started in steps:
            self.db.execute(
                "INSERT INTO xray_steps (run_id, step_name, step_type, status, started_at,"
                " ended_at, trace_id, span_id) VALUES (%s, 'f', 'filter', 'ok', %s, %s, 't', %s)",
                (run_id, started, started + timedelta(minutes=1), span))

    def xray(self, *argv: str) -> int:
        return main(["retention", *argv, "--database-url", self.url,
                     "--artifact-dir", str(self.folder)])


class World(Steps):
    """Runs on both sides of the cutoff of ``--older-than 30d`` (a UTC midnight), in day
    partitions (one partition per day, as databases before migration 0009 have)."""

    def __init__(self, db: psycopg.Connection, url: str, folder: Path) -> None:
        super().__init__(db, url, folder)
        self.cutoff = datetime.now(UTC).date() - timedelta(days=30)
        self.days = [self.cutoff + timedelta(days=d) for d in (-3, -2, -1, 0, 1)]
        db.execute("SELECT xray_create_step_partitions(%s, %s, 1)",
                   (self.days[0], self.days[-1]))
        c = self.cutoff
        d = timedelta(days=1)
        self.run("old", at(c - 3 * d, 10), at(c - 2 * d, 11),
                 [("o1", at(c - 3 * d, 10)), ("o2", at(c - 2 * d, 10))])
        self.run("straddle", at(c - d, 23), at(c, 1),
                 [("s1", at(c - d, 23, 30)), ("s2", at(c, 0, 30))])
        self.run("recent", at(c + d, 9), at(c + d, 10), [("r1", at(c + d, 9))])
        self.run("ancient", at(date(2000, 1, 1), 0), at(date(2000, 1, 1), 1),
                 [("a1", at(date(2000, 1, 1), 0))])
        self.run("skewed", at(c + d, 9), at(c + d, 10), [("k1", at(date(2100, 1, 1), 0))])
        store = LocalArtifactStore(folder)
        for data, run, span in [(ONLY_OLD, "old", "o1"), (SHARED, "old", "o2"),
                                (SHARED, "recent", "r1")]:
            store.put(key(data), data, "text/plain")
            db.execute("INSERT INTO xray_artifacts (artifact_id, trace_id, span_id, run_id,"
                       " attribute, size_bytes, content_type, storage) VALUES"
                       " (%s, 't', %s, %s, 'xray.artifact.page', %s, 'text/plain', 'local')",
                       (key(data), span, run, len(data)))
        db.execute("ANALYZE xray_steps")

    def state(self) -> dict[str, object]:
        one = self.db.execute
        return {
            "runs": [r[0] for r in one("SELECT run_id FROM xray_runs ORDER BY 1")],
            "steps": one(f"SELECT span_id, {PARTITION_OF_ROW} FROM xray_steps"
                         " ORDER BY 1").fetchall(),
            "artifacts": one("SELECT run_id, span_id FROM xray_artifacts ORDER BY 1, 2"
                             ).fetchall(),
            "days": [p.start.date() for p in step_partitions(self.db)
                     if p.start.date() in self.days],
            "files": sorted(p.name for p in self.folder.rglob("*") if p.is_file()),
        }


@pytest.fixture
def world(db: psycopg.Connection, migrated_url: str, tmp_path: Path) -> World:
    return World(db, migrated_url, tmp_path / "artifacts")


def test_dry_run_counts_and_removes_nothing(world: World,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = world.state()
    assert world.xray("--older-than", "30d", "--dry-run") == 0
    c = world.cutoff
    assert capsys.readouterr().out == (
        f"cutoff {c:%Y-%m-%d} 00:00 UTC: would drop 3 partitions ({world.days[0]:%Y%m%d}.."
        f"{world.days[2]:%Y%m%d}, about 3 steps), would delete 2 runs, 1 step from "
        "xray_steps_default and 1 artifact; 1 older step of runs that end after the cutoff "
        "would move to xray_steps_default\n")
    assert world.state() == before


def test_old_days_runs_and_only_their_artifacts_go(world: World,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert world.xray("--older-than", "30d", "--artifact-grace", "0m", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "cutoff": datetime.combine(world.cutoff, time(), tzinfo=UTC).isoformat(),
        "requested_cutoff": datetime.combine(world.cutoff, time(), tzinfo=UTC).isoformat(),
        "dry_run": False,
        "partitions": [f"xray_steps_p{d:%Y%m%d}" for d in world.days[:3]],
        "partition_steps_estimate": 3, "runs": 2, "default_steps": 1,
        "steps_kept_in_default": 1, "artifacts": 1, "artifacts_kept_within_grace": 0}
    c = world.cutoff
    assert world.state() == {
        # "old" (both days dropped) and "ancient" (in DEFAULT) are gone; "straddle" keeps
        # its step of a dropped day, now in DEFAULT; "skewed" keeps its odd-dated step.
        "runs": ["recent", "skewed", "straddle"],
        "steps": [("k1", "xray_steps_default"), ("r1", f"xray_steps_p{c + timedelta(1):%Y%m%d}"),
                  ("s1", "xray_steps_default"), ("s2", f"xray_steps_p{c:%Y%m%d}")],
        "artifacts": [("recent", "r1")],
        "days": world.days[3:],
        "files": [key(SHARED)],
    }
    # Nothing more to do; the moved step is not moved again.
    assert world.xray("--older-than", "30d", "--artifact-grace", "0m") == 0
    assert capsys.readouterr().out == (
        f"cutoff {c:%Y-%m-%d} 00:00 UTC: dropped 0 partitions, deleted 0 runs, 0 steps "
        "from xray_steps_default and 0 artifacts\n")


def test_a_recently_written_artifact_is_kept(world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert world.xray("--older-than", "30d") == 0
    assert capsys.readouterr().out.endswith(
        "deleted 2 runs, 1 step from xray_steps_default and 0 artifacts; 1 older step of runs "
        "that end after the cutoff moved to xray_steps_default; kept 1 artifact written "
        "within --artifact-grace\n")
    assert world.state()["files"] == sorted([key(SHARED), key(ONLY_OLD)])


def test_a_locked_table_times_out_and_removes_nothing(world: World) -> None:
    before = world.state()
    with psycopg.connect(world.url) as reader:
        reader.execute("SELECT count(*) FROM xray_steps")  # holds its lock until rollback
        with pytest.raises(RetentionLocked, match="lock timeout"):
            apply_retention(world.db, timedelta(days=30), dry_run=False, lock_timeout_ms=200)
        reader.rollback()
    assert world.state() == before


def test_a_bad_age_names_its_flag(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.xray("--older-than", "a month") == 2
    assert "--older-than 'a month'" in capsys.readouterr().err


def test_with_weekly_partitions_the_cutoff_moves_back_to_its_weeks_monday(
        db: psycopg.Connection, migrated_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A week partition goes whole or stays whole: a run older than the cutoff asked for,
    but in the week that holds it, stays until that week goes."""
    today = datetime.now(UTC).date()
    age = 60 + ((today - timedelta(days=60)).weekday() - 2) % 7  # the cutoff: a Wednesday
    asked = today - timedelta(days=age)
    monday = asked - timedelta(days=2)
    db.execute("SELECT xray_create_step_partitions(%s, %s, 7)",
               (monday - timedelta(days=7), asked))
    world = Steps(db, migrated_url, tmp_path / "artifacts")
    world.run("last-week", at(monday - timedelta(days=3), 9), at(monday - timedelta(days=3), 10),
              [("w1", at(monday - timedelta(days=3), 9))])
    world.run("this-week", at(monday, 9), at(monday, 10), [("w2", at(monday, 9))])

    assert world.xray("--older-than", f"{age}d") == 0
    out = capsys.readouterr().out
    last_week = f"xray_steps_p{monday - timedelta(days=7):%Y%m%d}"
    assert out.startswith(
        f"cutoff {monday:%Y-%m-%d} 00:00 UTC (the start of the partition holding "
        f"{asked:%Y-%m-%d} 00:00: partitions go whole): dropped 1 partition "
        f"({last_week[-8:]}..{last_week[-8:]}, about "), out
    assert [r[0] for r in db.execute("SELECT run_id FROM xray_runs ORDER BY 1")] == ["this-week"]
    assert db.execute(f"SELECT span_id, {PARTITION_OF_ROW} FROM xray_steps").fetchall() == [
        ("w2", f"xray_steps_p{monday:%Y%m%d}")]
    assert last_week not in {p.name for p in step_partitions(db)}
    db.execute(f"DROP TABLE xray_steps_p{monday:%Y%m%d}")
