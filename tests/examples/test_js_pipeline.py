"""The Node.js example: TypeScript SDK on OpenTelemetry JS → OTLP/HTTP → collector → Postgres.

Runs ``examples/js_pipeline/pipeline.mjs`` with ``node`` against the ``collector``
fixture and checks, from the tables, that every run and step it traced landed with the
values the pipeline decided. Skipped when ``node`` or ``npm`` is not on PATH; installs
the locked packages with ``npm ci`` when ``node_modules`` is missing or its copy of the
SDK is not the repository's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fix_collector import RunningCollector

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "js_pipeline"
SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"
NODE = shutil.which("node")
NPM = shutil.which("npm")
NPM_CI_TIMEOUT_S = 600
NODE_TIMEOUT_S = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NODE is None or NPM is None,
                       reason="node and npm must be on PATH to run the Node.js example"),
]

PIPELINE = "competitor_finder"
SERVICE = "js-competitor-finder"
WEIGHTS = {"overlap": 0.5, "rating": 0.3, "price": 0.2}
STEP_COLUMNS = ("seq", "step_name", "step_type", "pipeline", "candidates_in", "candidates_out",
                "drop_ratio", "why", "why_json", "input", "output", "metrics", "status",
                "error", "trace_id", "parent_span_id", "attributes", "ingest_warnings")
STEP_SQL = f"SELECT {', '.join(STEP_COLUMNS)} FROM xray_steps WHERE run_id = %s ORDER BY seq"
RUN_SQL = ("SELECT pipeline, entity, status, error, service_name, trace_id, span_id,"
           " attributes, ingest_warnings, started_at <= ended_at FROM xray_runs"
           " WHERE run_id = %s")
SEED_QUERY = """
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio
FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9
ORDER BY drop_ratio DESC;
"""


@pytest.fixture(scope="module")
def installed() -> Path:
    """The example directory with its locked packages installed."""
    # npm writes node_modules/.package-lock.json last: its absence means no complete install.
    # The SDK is installed as a copy of sdk/typescript: a changed dist/ needs a reinstall.
    if not (EXAMPLE / "node_modules" / ".package-lock.json").is_file() or sdk_copy_is_stale():
        assert NPM is not None
        done = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE,
                              capture_output=True, text=True, timeout=NPM_CI_TIMEOUT_S,
                              check=False)
        if done.returncode != 0:
            pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return EXAMPLE


def sdk_copy_is_stale() -> bool:
    """Whether the example's copy of the TypeScript SDK differs from sdk/typescript/dist."""
    source, copy = SDK / "dist", EXAMPLE / "node_modules" / "@xray" / "sdk" / "dist"
    if not copy.is_dir():
        return True
    names = sorted(p.name for p in source.iterdir())
    return names != sorted(p.name for p in copy.iterdir()) or any(
        (source / name).read_bytes() != (copy / name).read_bytes() for name in names)


def run_node(example: Path, collector: RunningCollector,
             *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = collector.http_url + "/v1/traces"
    assert NODE is not None
    return subprocess.run([NODE, "pipeline.mjs", *args], cwd=example, env=env,
                          capture_output=True, text=True, timeout=NODE_TIMEOUT_S, check=False)


def fetch_run(db: psycopg.Connection, run_id: str) -> dict[str, Any]:
    row = db.execute(RUN_SQL, (run_id,)).fetchone()
    assert row is not None, f"no xray_runs row for {run_id}"
    keys = ("pipeline", "entity", "status", "error", "service_name", "trace_id", "span_id",
            "attributes", "ingest_warnings", "times_ordered")
    return dict(zip(keys, row, strict=True))


def fetch_steps(db: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    return [dict(zip(STEP_COLUMNS, row, strict=True))
            for row in db.execute(STEP_SQL, (run_id,)).fetchall()]


def check_run(run: dict[str, Any], entity: str, status: str, error: str | None) -> None:
    assert run["pipeline"] == PIPELINE
    assert run["entity"] == entity
    assert (run["status"], run["error"]) == (status, error)
    assert run["service_name"] == SERVICE
    assert run["span_id"] is not None, "the run span itself never arrived"
    assert len(run["trace_id"]) == 32 and int(run["trace_id"], 16) != 0
    # The collector keeps a failed span's stack trace; nothing else should be left unmapped.
    expected_keys = {"exception.stacktrace"} if status == "error" else set()
    assert set(run["attributes"]) == expected_keys
    assert run["ingest_warnings"] is None
    assert run["times_ordered"] is True


def check_steps(steps: list[dict[str, Any]], run: dict[str, Any],
                expected: list[tuple[Any, ...]]) -> None:
    """``expected``: (seq, name, type, candidates_in, candidates_out, drop_ratio, why_json)."""
    actual = [(s["seq"], s["step_name"], s["step_type"], s["candidates_in"],
               s["candidates_out"], s["drop_ratio"], s["why_json"]) for s in steps]
    assert actual == [(*e[:5], e[5] if e[5] is None else pytest.approx(e[5]), e[6])
                      for e in expected]
    for step in steps:
        assert step["pipeline"] == PIPELINE
        assert step["trace_id"] == run["trace_id"]
        assert step["parent_span_id"] == run["span_id"], "step is not a child of the run span"
        assert step["ingest_warnings"] is None, step["ingest_warnings"]


def test_two_runs_land_with_every_step(installed: Path, collector: RunningCollector,
                                       db: psycopg.Connection) -> None:
    case_run, stand_run = f"js-case-{uuid.uuid4().hex}", f"js-stand-{uuid.uuid4().hex}"
    done = run_node(installed, collector, f"B0CASE0001={case_run}", f"B0STND0001={stand_run}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        f'{case_run}: B0CASE0001 -> B0CASE0003 "Clear Slim Phone Case for Pixel 8 with'
        ' Kickstand" (score 0.8126)',
        f'{stand_run}: B0STND0001 -> B0STND0002 "Foldable Laptop Stand, Slim Aluminum Riser"'
        ' (score 0.7367)',
    ]
    assert db.execute("SELECT run_id FROM xray_runs ORDER BY run_id").fetchall() == [
        (case_run,), (stand_run,)]

    run = fetch_run(db, case_run)
    check_run(run, "B0CASE0001", "ok", None)
    steps = fetch_steps(db, case_run)
    check_steps(steps, run, [
        (1, "generate_keywords", "llm", None, None, None,
         {"strategy": "title_words", "skipped": 3}),
        (2, "search_catalog", "search", None, 11, None,
         {"match": "any_keyword_in_title", "catalog_size": 15}),
        (3, "filter_candidates", "filter", 11, 2, 1 - 2 / 11,
         {"top_reject_reasons": {"category_mismatch": 6, "price_out_of_range": 1,
                                 "rating_below_min": 1, "self_match": 1}}),
        (4, "rank_candidates", "rank", 2, 2, 0.0, {"weights": WEIGHTS, "top_k": 3}),
        (5, "pick_competitor", "llm", 2, 1, 0.5,
         {"rule": "highest_score", "runner_up": "B0CASE0002", "margin": 0.1033}),
    ])
    keywords, search, filtered, ranked, pick = steps
    assert keywords["input"] == {"asin": "B0CASE0001", "category": "cell_phone_cases",
                                 "title": "Slim Silicone Phone Case for Pixel 8, Black"}
    assert keywords["output"] == {"keywords": ["slim", "silicone", "phone", "case", "pixel"]}
    assert keywords["metrics"] == {"prompt_tokens": 8, "completion_tokens": 5, "temperature": 0}
    assert search["input"] == {"keywords": ["slim", "silicone", "phone", "case", "pixel"]}
    assert search["output"] == {"asins": [
        "B0CASE0001", "B0CASE0002", "B0CASE0003", "B0CASE0004", "B0CASE0005", "B0STND0002",
        "B0STND0004", "B0CHRG0001", "B0SCRN0001", "B0LAMP0001", "B0MOUS0001"]}
    assert search["metrics"] == {"catalog_size": 15}
    assert filtered["why"] == "Dropped 9 of 11 candidates, mostly category_mismatch (6)"
    assert filtered["input"] == {"category": "cell_phone_cases", "price_band": [7.495, 29.98],
                                 "min_rating": 3.5}
    assert filtered["output"] == {"asins": ["B0CASE0002", "B0CASE0003"]}
    assert filtered["metrics"] == {"price_low": 7.495, "price_high": 29.98, "min_rating": 3.5}
    assert ranked["output"] == {"ranked": [{"asin": "B0CASE0003", "score": 0.8126},
                                           {"asin": "B0CASE0002", "score": 0.7093}]}
    assert ranked["metrics"] == {"top_score": 0.8126}
    assert pick["output"]["competitor"]["asin"] == "B0CASE0003"
    assert pick["metrics"] == {"score": 0.8126}
    assert pick["why"] == "Picked B0CASE0003, the highest score (0.8126)"
    assert all((s["status"], s["error"], s["attributes"]) == ("ok", None, {}) for s in steps)

    other = fetch_run(db, stand_run)
    check_run(other, "B0STND0001", "ok", None)
    assert other["trace_id"] != run["trace_id"]
    stand_steps = fetch_steps(db, stand_run)
    check_steps(stand_steps, other, [
        (1, "generate_keywords", "llm", None, None, None,
         {"strategy": "title_words", "skipped": 1}),
        (2, "search_catalog", "search", None, 6, None,
         {"match": "any_keyword_in_title", "catalog_size": 15}),
        (3, "filter_candidates", "filter", 6, 2, 1 - 2 / 6,
         {"top_reject_reasons": {"category_mismatch": 2, "price_out_of_range": 1,
                                 "self_match": 1}}),
        (4, "rank_candidates", "rank", 2, 2, 0.0, {"weights": WEIGHTS, "top_k": 3}),
        (5, "pick_competitor", "llm", 2, 1, 0.5,
         {"rule": "highest_score", "runner_up": "B0STND0003", "margin": 0.0847}),
    ])
    assert stand_steps[4]["output"]["competitor"]["asin"] == "B0STND0002"
    assert db.execute(SEED_QUERY).fetchall() == []


def test_failed_runs_record_the_error_and_the_funnel(installed: Path,
                                                    collector: RunningCollector,
                                                    db: psycopg.Connection) -> None:
    lamp_run, unknown_run = f"js-lamp-{uuid.uuid4().hex}", f"js-none-{uuid.uuid4().hex}"
    done = run_node(installed, collector, f"B0LAMP0001={lamp_run}", f"B0NOPE0000={unknown_run}")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr == ""
    no_pick = "NoCompetitorFoundError: no candidate left to pick for B0LAMP0001"
    unknown = "UnknownProductError: ASIN B0NOPE0000 is not in the catalog"
    assert done.stdout.splitlines() == [f"{lamp_run}: B0LAMP0001 -> failed: {no_pick}",
                                        f"{unknown_run}: B0NOPE0000 -> failed: {unknown}"]

    run = fetch_run(db, lamp_run)
    check_run(run, "B0LAMP0001", "error", no_pick)
    assert "at findCompetitor" in run["attributes"]["exception.stacktrace"]
    steps = fetch_steps(db, lamp_run)
    check_steps(steps, run, [
        (1, "generate_keywords", "llm", None, None, None,
         {"strategy": "title_words", "skipped": 4}),
        (2, "search_catalog", "search", None, 11, None,
         {"match": "any_keyword_in_title", "catalog_size": 15}),
        (3, "filter_candidates", "filter", 11, 0, 1.0,
         {"top_reject_reasons": {"category_mismatch": 10, "self_match": 1}}),
        (4, "rank_candidates", "rank", 0, 0, None, {"weights": WEIGHTS, "top_k": 3}),
        (5, "pick_competitor", "llm", 0, None, None, None),
    ])
    assert [(s["status"], s["error"]) for s in steps] == [("ok", None)] * 4 + [
        ("error", no_pick)]
    assert steps[3]["metrics"] == {} and steps[3]["output"] == {"ranked": []}
    assert steps[4]["input"] == {"finalists": []}
    assert set(steps[4]["attributes"]) == {"exception.stacktrace"}
    assert "NoCompetitorFoundError" in steps[4]["attributes"]["exception.stacktrace"]
    assert db.execute(SEED_QUERY).fetchall() == [
        (lamp_run, "filter_candidates", 11, 0, 1.0)]

    missing = fetch_run(db, unknown_run)
    check_run(missing, "B0NOPE0000", "error", unknown)
    only = fetch_steps(db, unknown_run)
    check_steps(only, missing, [(1, "generate_keywords", "llm", None, None, None, None)])
    assert (only[0]["status"], only[0]["error"]) == ("error", unknown)
