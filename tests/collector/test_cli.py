"""The ``xray`` inspection commands, run in-process against a real collector's database.

Runs are seeded by sending real OTLP spans through the collector, so the commands read
exactly what ingestion stores: ``runs``, ``show``, ``steps``, ``artifact get`` and
``prune``, each for normal use, empty results and bad arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_service.cli.main import main
from tests.fix_collector import RunningCollector
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import new_trace_id, request, span
from xray_otel import conventions as c

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"
DAY_NS = 86_400 * 10**9

# The raw search response attached to run-a's search step: JSON, with a non-ASCII byte.
PAYLOAD = json.dumps({"results": [{"asin": f"B0{i:04d}", "title": "étui"} for i in range(50)]},
                     ensure_ascii=False)
PAYLOAD_BYTES = PAYLOAD.encode()
PAYLOAD_ID = hashlib.sha256(PAYLOAD_BYTES).hexdigest()
REASONS = {"low_rating": 50, "category_mismatch": 4700, "price_out_of_range": 200}


pytestmark = pytest.mark.usefixtures("no_xray_environment")


@dataclass
class Cli:
    """The database and data folder the commands run against."""

    db: psycopg.Connection
    url: str
    data_dir: Path
    stub: TraceServiceStub | None = None

    @property
    def artifact_path(self) -> Path:
        return self.data_dir / "artifacts" / PAYLOAD_ID[:2] / PAYLOAD_ID[2:4] / PAYLOAD_ID

    def xray(self, *argv: str, data_dir: bool = False) -> int:
        """``xray ARGV --database-url URL`` (and ``--data-dir``), in-process."""
        extra = ["--data-dir", str(self.data_dir)] if data_dir else []
        return main([*argv, "--database-url", self.url, *extra])


def step(name: str, step_type: str, run_id: str, trace_id: bytes, seq: int, start_ns: int,
         n_in: int | None = None, n_out: int | None = None, error: str | None = None,
         **extra: Any) -> Any:
    return span(name, {c.STEP_TYPE: step_type, c.STEP_SEQ: seq, c.RUN_ID: run_id,
                       c.STEP_CANDIDATES_IN: n_in, c.STEP_CANDIDATES_OUT: n_out, **extra},
                trace_id=trace_id, start_ns=start_ns + seq * 10_000_000, error=error)


def seed(stub: TraceServiceStub) -> None:
    """Three runs.

    run-a  competitor_search / B0AAA, now, ok: llm; search (with an artifact);
           filter 5000 → 50 with reject reasons; rank failing with an error.
    run-b  price_watch / B0BBB, 2 days ago, run span failed: filter 100 → 5;
           filter 100 → 10 (exactly 90%); search 1000 → 1 (not a filter).
    run-c  competitor_search / B0CCC, 10 days ago, steps only (pending): filter 1000 → 1.
    """
    now = time.time_ns() - 60 * 10**9
    trace = new_trace_id()
    stub.Export(request(
        span("competitor_search", {c.RUN_PIPELINE: "competitor_search", c.RUN_ENTITY: "B0AAA",
                                   c.RUN_ID: "run-a"},
             trace_id=trace, start_ns=now, duration_ns=2 * 10**9),
        step("generate_keywords", "llm", "run-a", trace, 1, now),
        step("search_candidates", "search", "run-a", trace, 2, now, 10000, 5000,
             **{c.artifact_attribute("raw"): PAYLOAD}),
        step("filter_candidates", "filter", "run-a", trace, 3, now, 5000, 50,
             **{c.STEP_WHY: "Dropped 99% of candidates",
                c.STEP_WHY_JSON: json.dumps({"top_reject_reasons": REASONS})}),
        step("rank_candidates", "rank", "run-a", trace, 4, now, 50, 10, error="ranker crashed"),
    ))
    start = now - 2 * DAY_NS
    trace = new_trace_id()
    stub.Export(request(
        span("price_watch", {c.RUN_PIPELINE: "price_watch", c.RUN_ENTITY: "B0BBB",
                             c.RUN_ID: "run-b"},
             trace_id=trace, start_ns=start, duration_ns=10**9, error="upstream timeout"),
        step("dedupe", "filter", "run-b", trace, 1, start, 100, 5, **{c.STEP_WHY: "dupes"}),
        step("threshold", "filter", "run-b", trace, 2, start, 100, 10),
        step("lookup", "search", "run-b", trace, 3, start, 1000, 1),
    ))
    start = now - 10 * DAY_NS
    stub.Export(request(step("filter_candidates", "filter", "run-c", new_trace_id(), 1, start,
                             1000, 1, **{c.RUN_PIPELINE: "competitor_search",
                                         c.RUN_ENTITY: "B0CCC"})))


@pytest.fixture
def seeded(collector: RunningCollector, db: psycopg.Connection,
           migrated_url: str) -> Iterator[Cli]:
    with grpc.insecure_channel(collector.grpc_target) as channel:
        stub = TraceServiceStub(channel)
        seed(stub)
        assert db.execute("SELECT count(*) FROM xray_runs").fetchone() == (3,)
        yield Cli(db, migrated_url, collector.data_dir, stub)


@pytest.fixture
def empty(db: psycopg.Connection, migrated_url: str, tmp_path: Path) -> Cli:
    """The migrated database with nothing in it (no collector running)."""
    return Cli(db, migrated_url, tmp_path / "xray")


@pytest.fixture(scope="module")
def unmigrated_url(databases: DatabaseFactory) -> str:
    return databases.create()


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def table_first_column(out: str) -> list[str]:
    """The first cell of each data row of a text table (after the header and rule)."""
    lines = out.splitlines()
    assert re.fullmatch(r"[- ]+", lines[1]), out
    return [line.split()[0] for line in lines[2:]]


# --- xray runs ---------------------------------------------------------------------------


def test_runs_table_lists_every_run_newest_first(seeded: Cli,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("runs") == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["run_id", "pipeline", "entity", "status",
                                           "started_at", "duration_ms", "steps", "error"]
    assert table_first_column(out) == ["run-a", "run-b", "run-c"]
    row_b = next(line for line in out.splitlines() if line.startswith("run-b"))
    assert row_b.split()[1:4] == ["price_watch", "B0BBB", "error"]
    assert row_b.endswith("upstream timeout")
    assert err == ""


@pytest.mark.parametrize(("argv", "expected"), [
    (["--pipeline", "competitor_search"], ["run-a", "run-c"]),
    (["--entity", "B0BBB"], ["run-b"]),
    (["--status", "pending"], ["run-c"]),
    (["--status", "error"], ["run-b"]),
    (["--status", "ok"], ["run-a"]),
    (["--since", "24h"], ["run-a"]),
    (["--since", "5d"], ["run-a", "run-b"]),
    (["--since", "90m"], ["run-a"]),
    (["--pipeline", "competitor_search", "--since", "5d"], ["run-a"]),
    (["--limit", "2"], ["run-a", "run-b"]),
])
def test_runs_filters(seeded: Cli, capsys: pytest.CaptureFixture[str], argv: list[str],
                      expected: list[str]) -> None:
    assert seeded.xray("runs", *argv) == 0
    assert table_first_column(capsys.readouterr().out) == expected


def test_runs_since_an_iso_date(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    five_days_ago = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    assert seeded.xray("runs", "--since", five_days_ago) == 0
    assert table_first_column(capsys.readouterr().out) == ["run-a", "run-b"]


def test_runs_jsonl_is_one_object_per_line(seeded: Cli,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("runs", "--jsonl") == 0
    rows = json_lines(capsys.readouterr().out)
    assert [r["run_id"] for r in rows] == ["run-a", "run-b", "run-c"]
    assert {k: rows[0][k] for k in ("pipeline", "entity", "status", "steps", "error")} == {
        "pipeline": "competitor_search", "entity": "B0AAA", "status": "ok", "steps": 4,
        "error": None}
    assert rows[0]["duration_ms"] == pytest.approx(2000.0)
    assert datetime.fromisoformat(rows[0]["started_at"]) > datetime.now(UTC) - timedelta(hours=1)
    assert (rows[1]["status"], rows[1]["error"], rows[1]["steps"]) == (
        "error", "upstream timeout", 3)
    assert (rows[2]["status"], rows[2]["pipeline"], rows[2]["entity"], rows[2]["steps"]) == (
        "pending", "competitor_search", "B0CCC", 1)


def test_runs_jsonl_with_no_match_prints_nothing(seeded: Cli,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("runs", "--jsonl", "--pipeline", "nope") == 0
    assert capsys.readouterr().out == ""
    assert seeded.xray("runs", "--json", "--pipeline", "nope") == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("argv", [[], ["--pipeline", "nope"]])
def test_runs_empty_says_so(empty: Cli, capsys: pytest.CaptureFixture[str],
                            argv: list[str]) -> None:
    assert empty.xray("runs", *argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("no runs match")
    assert "xray collector" in out


@pytest.mark.parametrize("since", ["yesterday", "24", "7w", "-1x", "2026-13-45", ""])
def test_runs_bad_since_is_an_error_naming_the_flag(
        empty: Cli, capsys: pytest.CaptureFixture[str], since: str) -> None:
    assert empty.xray("runs", f"--since={since}") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("xray: error: --since ")
    assert repr(since) in err and "24h" in err


def test_runs_bad_status_is_an_argparse_error(empty: Cli,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        empty.xray("runs", "--status", "failed")
    assert exc.value.code == 2
    assert "--status" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["runs", "steps"])
def test_negative_limit_is_rejected(empty: Cli, capsys: pytest.CaptureFixture[str],
                                    command: str) -> None:
    """Regression (69bf6a9): Postgres's "LIMIT must not be negative" escaped as a traceback."""
    try:
        code = empty.xray(command, "--limit", "-1")
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    assert "--limit" in capsys.readouterr().err


# --- xray show ---------------------------------------------------------------------------


def test_show_prints_the_funnel_in_order(seeded: Cli,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-a") == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "run run-a  pipeline=competitor_search  entity=B0AAA  status=ok"
    steps = [line for line in lines if re.match(r"^ *\d+\. ", line)]
    assert [re.match(r"^ *(\d+)\. (\S+) \[(\w+)\]", s).groups() for s in steps] == [  # type: ignore[union-attr]
        ("1", "generate_keywords", "llm"), ("2", "search_candidates", "search"),
        ("3", "filter_candidates", "filter"), ("4", "rank_candidates", "rank")]
    assert "→" not in steps[0]
    assert "  10000 → 5000  (dropped 50.0%)  5.0 ms" in steps[1]
    assert "  5000 → 50  (dropped 99.0%)  5.0 ms" in steps[2]
    assert "  50 → 10  (dropped 80.0%)" in steps[3]
    # Each step's details follow its own line.
    def details(n: int) -> list[str]:
        start = lines.index(steps[n])
        end = lines.index(steps[n + 1]) if n + 1 < len(steps) else len(lines)
        return [line.strip() for line in lines[start + 1:end]]

    assert details(0) == []
    assert details(1) == [f"artifact xray.artifact.raw: {PAYLOAD_ID} "
                          f"({len(PAYLOAD_BYTES)} bytes, application/json)"]
    assert details(2) == ["why: Dropped 99% of candidates",
                          "top reject reasons: category_mismatch: 4700, "
                          "price_out_of_range: 200, low_rating: 50"]
    assert details(3) == ["ERROR: ranker crashed"]
    assert err == ""


def test_show_a_failed_run_prints_its_error_first(seeded: Cli,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-b") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run run-b  pipeline=price_watch  entity=B0BBB  status=error"
    assert lines[1] == "  error: upstream timeout"
    assert "  1. dedupe [filter]  100 → 5  (dropped 95.0%)" in lines[2]
    assert lines[3].strip() == "why: dupes"


def test_show_a_run_without_steps(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    seeded.db.execute("INSERT INTO xray_runs (run_id, trace_id, pipeline) "
                      "VALUES ('bare', 'bare', NULL)")
    assert seeded.xray("show", "bare") == 0
    assert capsys.readouterr().out.splitlines() == [
        "run bare  pipeline=-  entity=-  status=pending",
        "  (no steps stored for this run yet)"]


def test_show_json(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-a", "--json") == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert {k: shown["run"][k] for k in ("run_id", "pipeline", "entity", "status", "error")} == {
        "run_id": "run-a", "pipeline": "competitor_search", "entity": "B0AAA", "status": "ok",
        "error": None}
    steps = shown["steps"]
    assert [(s["seq"], s["step_name"], s["candidates_in"], s["candidates_out"], s["status"])
            for s in steps] == [(1, "generate_keywords", None, None, "ok"),
                                (2, "search_candidates", 10000, 5000, "ok"),
                                (3, "filter_candidates", 5000, 50, "ok"),
                                (4, "rank_candidates", 50, 10, "error")]
    assert steps[2]["drop_ratio"] == pytest.approx(0.99)
    assert steps[2]["why_json"] == {"top_reject_reasons": REASONS}
    assert steps[3]["error"] == "ranker crashed"
    assert [a["artifact_id"] for a in steps[1]["artifacts"]] == [PAYLOAD_ID]
    assert steps[1]["artifacts"][0]["size_bytes"] == len(PAYLOAD_BYTES)
    assert all(s["artifacts"] == [] for s in (steps[0], steps[2], steps[3]))


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_show_unknown_run_is_not_found(seeded: Cli, capsys: pytest.CaptureFixture[str],
                                       json_flag: list[str]) -> None:
    assert seeded.xray("show", "run-zzz", *json_flag) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "'run-zzz'" in err and "xray runs" in err


def test_show_needs_a_run(empty: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        empty.xray("show")
    assert exc.value.code == 2
    assert "RUN" in capsys.readouterr().err


# --- xray steps --------------------------------------------------------------------------

SEED_ROWS = [("run-c", "filter_candidates", 1000, 1), ("run-a", "filter_candidates", 5000, 50),
             ("run-b", "dedupe", 100, 5)]


def test_steps_seed_query_json(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("steps", "--type", "filter", "--min-drop", "0.9", "--jsonl") == 0
    rows = json_lines(capsys.readouterr().out)
    assert [(r["run_id"], r["step_name"], r["candidates_in"], r["candidates_out"])
            for r in rows] == SEED_ROWS
    assert [r["drop_ratio"] for r in rows] == pytest.approx([0.999, 0.99, 0.95])
    assert [r["pipeline"] for r in rows] == ["competitor_search", "competitor_search",
                                            "price_watch"]
    assert rows[1]["why"] == "Dropped 99% of candidates"
    # The same rows as the seed query run directly.
    direct = seeded.db.execute(
        "SELECT run_id, step_name, candidates_in, candidates_out FROM xray_steps"
        " WHERE step_type = 'filter' AND drop_ratio > 0.9 ORDER BY drop_ratio DESC").fetchall()
    assert direct == SEED_ROWS


def test_steps_seed_query_table(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("steps", "--type", "filter", "--min-drop", "0.9") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["run_id", "step_name", "candidates_in",
                                           "candidates_out", "drop_ratio", "pipeline", "why"]
    assert table_first_column(out) == ["run-c", "run-a", "run-b"]
    assert [line.split()[4] for line in out.splitlines()[2:]] == ["0.999", "0.990", "0.950"]


@pytest.mark.parametrize(("argv", "expected"), [
    ([], 8),
    (["--type", "filter"], 4),
    (["--type", "search", "--min-drop", "0.9"], 1),
    (["--min-drop", "0.9"], 4),
    (["--type", "filter", "--min-drop", "0.9", "--pipeline", "price_watch"], 1),
    (["--name", "threshold"], 1),
    (["--type", "filter", "--min-drop", "0.9", "--limit", "1"], 1),
    (["--min-drop", "1"], 0),
])
def test_steps_filters(seeded: Cli, capsys: pytest.CaptureFixture[str], argv: list[str],
                       expected: int) -> None:
    assert seeded.xray("steps", "--jsonl", *argv) == 0
    assert len(json_lines(capsys.readouterr().out)) == expected


def test_steps_min_drop_is_strictly_more(seeded: Cli,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``threshold`` drops exactly 90%: not more than 0.9, so not listed."""
    assert seeded.xray("steps", "--jsonl", "--name", "threshold", "--min-drop", "0.9") == 0
    assert capsys.readouterr().out == ""
    assert seeded.xray("steps", "--jsonl", "--name", "threshold", "--min-drop", "0.89") == 0
    assert [r["step_name"] for r in json_lines(capsys.readouterr().out)] == ["threshold"]


def test_steps_empty_says_so(empty: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert empty.xray("steps", "--type", "filter", "--min-drop", "0.9") == 0
    assert capsys.readouterr().out == "no steps match\n"


@pytest.mark.parametrize(("argv", "flag"), [
    (["--min-drop", "2"], "--min-drop"),
    (["--min-drop", "-0.1"], "--min-drop"),
    (["--min-drop", "lots"], "--min-drop"),
    (["--type", "filtering"], "--type"),
    (["--limit", "ten"], "--limit"),
])
def test_steps_bad_arguments_are_argparse_errors(
        empty: Cli, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str) -> None:
    with pytest.raises(SystemExit) as exc:
        empty.xray("steps", *argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err
    if argv == ["--min-drop", "2"]:
        assert "from 0 to 1" in err and "_ratio" not in err


# --- xray artifact get -------------------------------------------------------------------


def test_artifact_get_to_stdout(seeded: Cli, capsysbinary: pytest.CaptureFixture[bytes]
                                ) -> None:
    assert seeded.xray("artifact", "get", PAYLOAD_ID, data_dir=True) == 0
    out, err = capsysbinary.readouterr()
    assert out == PAYLOAD_BYTES
    assert err == b""


def test_artifact_get_accepts_upper_case_and_dash(
        seeded: Cli, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert seeded.xray("artifact", "get", PAYLOAD_ID.upper(), "-o", "-", data_dir=True) == 0
    assert capsysbinary.readouterr().out == PAYLOAD_BYTES


def test_artifact_get_to_a_file(seeded: Cli, tmp_path: Path,
                                capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    target = tmp_path / "out" / "raw.json"
    target.parent.mkdir()
    assert seeded.xray("artifact", "get", PAYLOAD_ID, "-o", str(target), data_dir=True) == 0
    assert target.read_bytes() == PAYLOAD_BYTES
    assert os.listdir(target.parent) == ["raw.json"]  # no temporary file left behind
    assert capsysbinary.readouterr().out == b""


def test_artifact_get_overwrites_an_existing_file(seeded: Cli, tmp_path: Path) -> None:
    target = tmp_path / "raw.json"
    target.write_bytes(b"old contents, much longer than nothing")
    assert seeded.xray("artifact", "get", PAYLOAD_ID, "--output", str(target),
                       data_dir=True) == 0
    assert target.read_bytes() == PAYLOAD_BYTES


@pytest.mark.parametrize("output", [False, True])
def test_artifact_get_unknown_id(seeded: Cli, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], output: bool) -> None:
    unknown = hashlib.sha256(b"never sent").hexdigest()
    target = tmp_path / "unknown.bin"
    extra = ["-o", str(target)] if output else []
    assert seeded.xray("artifact", "get", unknown, *extra, data_dir=True) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"xray: no artifact {unknown}: no step references it\n"
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".xray-")] == []


def test_artifact_get_referenced_but_missing_file(seeded: Cli,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    seeded.artifact_path.unlink()
    assert seeded.xray("artifact", "get", PAYLOAD_ID, data_dir=True) == 2
    err = capsys.readouterr().err
    assert PAYLOAD_ID in err and "referenced but missing from the local store" in err


@pytest.mark.parametrize("bad", ["xyz", PAYLOAD_ID + "0",
                                 "g" * 64, "../" + PAYLOAD_ID[3:]])
def test_artifact_get_malformed_id(empty: Cli, capsys: pytest.CaptureFixture[str],
                                   bad: str) -> None:
    assert empty.xray("artifact", "get", bad, data_dir=True) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"xray: error: {bad!r} is not an artifact id (64 hex characters, "
                   "or a unique prefix of one)\n")


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01  # same size, one bit flipped
    path.write_bytes(bytes(data))


def test_artifact_get_corrupted_to_a_file_writes_nothing(
        seeded: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.artifact_path.read_bytes() == PAYLOAD_BYTES
    _corrupt(seeded.artifact_path)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "raw.json"
    assert seeded.xray("artifact", "get", PAYLOAD_ID, "-o", str(target), data_dir=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("xray: error: ") and "corrupted" in err and PAYLOAD_ID in err
    assert not target.exists()
    assert list(folder.iterdir()) == []  # nor a temporary file


def test_artifact_get_corrupted_to_stdout_fails(
        seeded: Cli, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    seeded.artifact_path.write_bytes(b"something else entirely")
    assert seeded.xray("artifact", "get", PAYLOAD_ID, data_dir=True) == 2
    out, err = capsysbinary.readouterr()
    assert out != PAYLOAD_BYTES
    assert b"corrupted" in err and b"not the artifact" in err


def test_artifact_get_into_a_missing_folder(seeded: Cli, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (69bf6a9): mkstemp's FileNotFoundError escaped as a traceback."""
    target = tmp_path / "missing" / "raw.json"
    assert seeded.xray("artifact", "get", PAYLOAD_ID, "-o", str(target), data_dir=True) == 2
    assert "missing" in capsys.readouterr().err


# --- xray prune --------------------------------------------------------------------------


def counts(db: psycopg.Connection) -> tuple[int, int, int]:
    row = db.execute("SELECT (SELECT count(*) FROM xray_runs), (SELECT count(*) FROM xray_steps),"
                     " (SELECT count(*) FROM xray_artifacts)").fetchone()
    assert row is not None
    return row


def age_run_a(db: psycopg.Connection) -> None:
    db.execute("UPDATE xray_runs SET ended_at = now() - interval '40 days' "
               "WHERE run_id = 'run-a'")


def test_prune_dry_run_counts_and_deletes_nothing(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    age_run_a(seeded.db)
    before = counts(seeded.db)
    assert before == (3, 8, 1)
    assert seeded.xray("prune", "--older-than", "30d", "--dry-run", data_dir=True) == 0
    assert capsys.readouterr().out == "would delete 1 run and 4 steps\n"
    assert seeded.xray("prune", "--older-than", "5d", "--dry-run", data_dir=True) == 0
    assert capsys.readouterr().out == "would delete 2 runs and 5 steps\n"  # run-a and run-c
    assert seeded.xray("prune", "--older-than", "100d", "--dry-run", data_dir=True) == 0
    assert capsys.readouterr().out == "would delete 0 runs and 0 steps\n"
    assert counts(seeded.db) == before
    assert seeded.artifact_path.exists()


def test_prune_deletes_old_runs_steps_artifacts_and_files(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (69bf6a9): `RETURNING DISTINCT` in delete_old was a syntax error."""
    age_run_a(seeded.db)
    assert seeded.xray("prune", "--older-than", "30d", "--artifact-grace", "0m",
                       data_dir=True) == 0
    assert capsys.readouterr().out == (
        "deleted 1 run, 4 steps and 1 artifact\n")
    db = seeded.db
    assert [r[0] for r in db.execute("SELECT run_id FROM xray_runs ORDER BY run_id")] == [
        "run-b", "run-c"]
    assert db.execute("SELECT count(*) FROM xray_steps WHERE run_id = 'run-a'"
                      ).fetchone() == (0,)
    assert counts(db) == (2, 4, 0)
    assert not seeded.artifact_path.exists()
    # Nothing left to prune.
    assert seeded.xray("prune", "--older-than", "30d", "--artifact-grace", "0m",
                       data_dir=True) == 0
    assert capsys.readouterr().out.startswith("deleted 0 runs, 0 steps and 0 artifacts")


def test_prune_everything_older_than_zero_minutes(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("prune", "--older-than", "0m", "--artifact-grace", "0m",
                       data_dir=True) == 0
    assert capsys.readouterr().out == (
        "deleted 3 runs, 8 steps and 1 artifact\n")
    assert counts(seeded.db) == (0, 0, 0)
    assert not seeded.artifact_path.exists()


def test_prune_keeps_a_recently_written_artifact_file(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    age_run_a(seeded.db)
    assert seeded.xray("prune", "--older-than", "30d", data_dir=True) == 0
    assert capsys.readouterr().out == (
        "deleted 1 run, 4 steps and 0 artifacts; kept 1 artifact written within --artifact-grace\n")
    assert counts(seeded.db) == (2, 4, 0)
    assert seeded.artifact_path.read_bytes() == PAYLOAD_BYTES


def test_prune_keeps_an_artifact_another_run_still_uses(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.stub is not None
    seeded.stub.Export(request(span("again", {
        c.STEP_TYPE: "search", c.RUN_ID: "run-d", c.artifact_attribute("raw"): PAYLOAD})))
    age_run_a(seeded.db)
    assert seeded.xray("prune", "--older-than", "30d", "--artifact-grace", "0m",
                       data_dir=True) == 0
    assert capsys.readouterr().out == (
        "deleted 1 run, 4 steps and 0 artifacts\n")
    assert seeded.db.execute("SELECT run_id, artifact_id FROM xray_artifacts").fetchall() == [
        ("run-d", PAYLOAD_ID)]
    assert seeded.artifact_path.read_bytes() == PAYLOAD_BYTES


def test_prune_counts_an_artifact_shared_by_old_runs_once(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """Two pruned steps naming one payload: one artifact deleted, not one plus one "kept"."""
    assert seeded.stub is not None
    seeded.stub.Export(request(span("again", {
        c.STEP_TYPE: "search", c.RUN_ID: "run-d", c.artifact_attribute("raw"): PAYLOAD})))
    assert seeded.db.execute("SELECT count(*) FROM xray_artifacts").fetchone() == (2,)
    assert seeded.xray("prune", "--older-than", "0m", "--artifact-grace", "0m",
                       data_dir=True) == 0
    assert capsys.readouterr().out == (
        "deleted 4 runs, 9 steps and 1 artifact\n")
    assert counts(seeded.db) == (0, 0, 0)
    assert not seeded.artifact_path.exists()


@pytest.mark.parametrize("age", ["30", "30 days", "1w", "d", "-3d", ""])
def test_prune_bad_age_is_an_error(empty: Cli, capsys: pytest.CaptureFixture[str],
                                   age: str) -> None:
    assert empty.xray("prune", f"--older-than={age}", data_dir=True) == 2
    err = capsys.readouterr().err
    assert err == (f"xray: error: --older-than {age!r}: use a number and d, h or m, "
                   "e.g. 30d\n")


def test_prune_bad_grace_names_its_flag(empty: Cli,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (69bf6a9): the message named --older-than."""
    assert empty.xray("prune", "--older-than", "30d", "--artifact-grace", "soon",
                      data_dir=True) == 2
    err = capsys.readouterr().err
    assert "--artifact-grace" in err and "--older-than" not in err


def test_prune_needs_older_than(empty: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        empty.xray("prune", "--dry-run")
    assert exc.value.code == 2
    assert "--older-than" in capsys.readouterr().err


# --- the database is not there -----------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["runs"], ["runs", "--json"], ["show", "run-a"], ["steps", "--type", "filter"],
    ["prune", "--older-than", "30d", "--dry-run"], ["prune", "--older-than", "30d"],
    ["artifact", "get", "0" * 64],
])
def test_unreachable_database(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              argv: list[str]) -> None:
    code = main([*argv, "--database-url", UNREACHABLE, "--data-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("xray: error: cannot reach ")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["runs"], ["show", "run-a"], ["steps"],
                                  ["prune", "--older-than", "1d"]])
def test_database_without_tables(unmigrated_url: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main([*argv, "--database-url", unmigrated_url, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tables are missing" in err and "xray migrate" in err
