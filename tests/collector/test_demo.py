"""``xray demo`` end to end, as a subprocess (it configures the global OpenTelemetry provider).

Each run gets a fresh, unmigrated database; every finding the demo prints is checked
against the rows it stored, and against what the example pipeline is known to do: with
``--polluted-every 3`` runs 3, 6, ... emit the stray keyword "stand" and their filter
drops over 90% of candidates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fix_db import DatabaseFactory

RUNS = 6
POLLUTED_EVERY = 3
POLLUTED_ENTITIES = {"B0CASE0002", "B0CASE0005"}  # runs 3 and 6 of sample_queries(6)

SEED_QUERY = """
SELECT run_id, step_name, seq, candidates_in, candidates_out, drop_ratio
FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9
ORDER BY drop_ratio DESC, run_id
"""


@dataclass
class Demo:
    result: subprocess.CompletedProcess[str]
    url: str

    def __str__(self) -> str:
        return (f"exit {self.result.returncode}\n--- stdout\n{self.result.stdout}"
                f"\n--- stderr\n{self.result.stderr}")


def run_demo(databases: DatabaseFactory, data_dir: Path, *extra: str, runs: int = RUNS,
             polluted_every: int = POLLUTED_EVERY) -> Demo:
    url = databases.create("xray_demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "collector_service.cli.main", "demo", "--runs", str(runs),
         "--polluted-every", str(polluted_every), *extra, "--database-url", url,
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, env=env, cwd=data_dir)
    return Demo(result, url)


@pytest.fixture(scope="module")
def demo_json(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return run_demo(databases, tmp_path_factory.mktemp("demo-json"), "--json")


@pytest.fixture(scope="module")
def demo_text(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return run_demo(databases, tmp_path_factory.mktemp("demo-text"))


def expected_findings(url: str) -> dict[str, Any]:
    """The findings, worked out here from the stored rows."""
    with psycopg.connect(url) as conn:
        run_ids = [r[0] for r in conn.execute("SELECT run_id FROM xray_runs")]
        flagged = conn.execute(SEED_QUERY).fetchall()
        assert flagged, "the demo stored no filter step dropping more than 90%"
        run_id, step_name, seq, n_in, n_out, drop_ratio = flagged[0]
        worst_row = conn.execute("SELECT why_json FROM xray_steps"
                                 " WHERE run_id = %s AND seq = %s", (run_id, seq)).fetchone()
        assert worst_row is not None
        prev = conn.execute("SELECT step_name, step_type, candidates_out, why_json"
                            " FROM xray_steps WHERE run_id = %s AND seq = %s",
                            (run_id, seq - 1)).fetchone()
        assert prev is not None
        keywords = {r[0]: set(r[1]) for r in conn.execute(
            "SELECT run_id, output FROM xray_steps WHERE step_name = 'generate_keywords'")}
        pick = conn.execute("SELECT output FROM xray_steps"
                            " WHERE run_id = %s AND step_name = 'select_best'",
                            (run_id,)).fetchone()
        assert pick is not None
    flagged_runs = {r[0] for r in flagged}
    healthy = set(run_ids) - flagged_runs
    in_all_flagged = set.intersection(*(keywords[r] for r in flagged_runs))
    in_healthy = set().union(*(keywords[r] for r in healthy))
    return {
        "runs": len(run_ids),
        "flagged": len(flagged),
        "worst": {"run_id": run_id, "step_name": step_name, "seq": seq, "candidates_in": n_in,
                  "candidates_out": n_out, "drop_ratio": drop_ratio},
        "reject_reasons": worst_row[0]["top_reject_reasons"],
        "previous": {"step_name": prev[0], "step_type": prev[1], "candidates_out": prev[2],
                     "categories": prev[3]["category_distribution"]},
        "keywords": {"only_in_flagged_runs": sorted(in_all_flagged - in_healthy),
                     "flagged_runs": len(flagged_runs), "healthy_runs": len(healthy)},
        "pick": {"title": pick[0]["title"], "category": pick[0]["category"]},
    }


def flagged_entities(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT DISTINCT r.entity FROM xray_runs r JOIN xray_steps s USING (run_id)"
            " WHERE s.step_type = 'filter' AND s.drop_ratio > 0.9")}


def test_demo_stores_every_run(demo_json: Demo) -> None:
    assert demo_json.result.returncode == 0, str(demo_json)
    with psycopg.connect(demo_json.url) as conn:
        assert conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'ok'),"
            " count(DISTINCT entity), min(pipeline), max(pipeline) FROM xray_runs"
        ).fetchone() == (RUNS, RUNS, RUNS, "competitor_search", "competitor_search")
        assert conn.execute("SELECT count(*) FROM xray_steps").fetchone() == (RUNS * 5,)
    progress = [line for line in demo_json.result.stderr.splitlines()
                if line.strip().startswith("run ")]
    assert len(progress) == RUNS, str(demo_json)


def test_demo_json_findings_match_the_database(demo_json: Demo) -> None:
    assert demo_json.result.returncode == 0, str(demo_json)
    findings = json.loads(demo_json.result.stdout)
    expected = expected_findings(demo_json.url)
    assert findings["worst"].pop("drop_ratio") == pytest.approx(
        expected["worst"].pop("drop_ratio"))
    assert findings == expected
    # Largest reason first, as the demo promises.
    counts = list(findings["reject_reasons"].values())
    assert counts == sorted(counts, reverse=True)
    assert list(findings["previous"]["categories"].values()) == sorted(
        findings["previous"]["categories"].values(), reverse=True)


def test_demo_json_findings_are_the_polluted_runs(demo_json: Demo) -> None:
    """Independently of the queries: the polluted runs are the flagged ones, and why."""
    assert demo_json.result.returncode == 0, str(demo_json)
    findings = json.loads(demo_json.result.stdout)
    assert flagged_entities(demo_json.url) == POLLUTED_ENTITIES
    assert (findings["runs"], findings["flagged"]) == (RUNS, len(POLLUTED_ENTITIES))
    worst = findings["worst"]
    assert (worst["step_name"], worst["seq"]) == ("filter_candidates", 3)
    assert worst["drop_ratio"] == pytest.approx(
        1 - worst["candidates_out"] / worst["candidates_in"])
    assert worst["drop_ratio"] > 0.9
    assert next(iter(findings["reject_reasons"])) == "category_mismatch"
    previous = findings["previous"]
    assert (previous["step_name"], previous["step_type"]) == ("search_candidates", "search")
    assert previous["candidates_out"] == worst["candidates_in"]
    assert sum(previous["categories"].values()) == previous["candidates_out"]
    assert next(iter(previous["categories"])) == "laptop_stands"
    assert findings["keywords"] == {"only_in_flagged_runs": ["phone stand", "stand"],
                                    "flagged_runs": 2, "healthy_runs": 4}
    assert findings["pick"]["category"] == "laptop_stands"
    with psycopg.connect(demo_json.url) as conn:  # the polluted release is version v2
        versions = dict(conn.execute("SELECT entity, version FROM xray_runs").fetchall())
    assert {e for e, v in versions.items() if v == "v2"} == POLLUTED_ENTITIES
    assert set(versions.values()) == {"v1", "v2"}


def test_demo_text_tells_the_stored_numbers(demo_text: Demo) -> None:
    assert demo_text.result.returncode == 0, str(demo_text)
    out = demo_text.result.stdout
    f = expected_findings(demo_text.url)
    worst, previous, kw = f["worst"], f["previous"], f["keywords"]
    top, count = max(previous["categories"].items(), key=lambda kv: kv[1])
    total = sum(previous["categories"].values())
    reasons = sorted(f["reject_reasons"].items(), key=lambda kv: -kv[1])
    expected_lines = [
        f"1. {f['flagged']} of {f['runs']} runs have a filter step dropping more than 90%",
        f"2. Worst: {worst['step_name']} in run {worst['run_id']} kept "
        f"{worst['candidates_out']} of {worst['candidates_in']} "
        f"(dropped {worst['drop_ratio']:.1%}).",
        "3. Its why_json.top_reject_reasons: "
        + ", ".join(f"{k}: {v}" for k, v in reasons) + ".",
        f"4. The step before it, {previous['step_name']} [{previous['step_type']}], returned "
        f"{previous['candidates_out']} candidates: {count} of {total} ({count / total:.0%}) "
        f"are {top}.",
        "5. Keyword generation emitted "
        + ", ".join(repr(k) for k in kw["only_in_flagged_runs"])
        + f" in every flagged run ({kw['flagged_runs']}) and in none of the "
        f"{kw['healthy_runs']} healthy ones",
        f"The run's final answer: {f['pick']['title']!r} ({f['pick']['category']}).",
    ]
    lines = [line.strip() for line in out.splitlines()]
    positions = []
    for expected in expected_lines:
        found = [i for i, line in enumerate(lines) if line.startswith(expected)]
        assert found, f"missing {expected!r} in:\n{out}"
        positions.append(found[0])
    assert positions == sorted(positions)
    assert "'stand'" in out and "laptop_stands" in out
    assert flagged_entities(demo_text.url) == POLLUTED_ENTITIES
    assert "xray steps --type filter --min-drop 0.9" in out
    # The closing hint names the worst run and one of its stored artifacts.
    assert f"  xray show {worst['run_id']}\n" in out
    with psycopg.connect(demo_text.url) as conn:
        artifacts = [r[0] for r in conn.execute(
            "SELECT artifact_id FROM xray_artifacts WHERE run_id = %s AND NOT downgraded",
            (worst["run_id"],))]
    assert any(f"  xray artifact get {a[:12]} " in out for a in artifacts), out
    assert "<RUN>" not in out and "<ID>" not in out
    assert "fork_posix" not in demo_text.result.stderr
    assert not [line for line in demo_text.result.stderr.splitlines()
                if line.strip() and not line.strip().startswith("run ")], \
        demo_text.result.stderr


def test_demo_without_pollution_has_nothing_to_debug(databases: DatabaseFactory,
                                                     tmp_path: Path) -> None:
    demo = run_demo(databases, tmp_path, runs=3, polluted_every=0)
    assert demo.result.returncode == 1, str(demo)
    assert "Ran 3 pipelines; no filter dropped more than 90%. Nothing to debug." in (
        demo.result.stdout), demo
    assert "Traceback" not in demo.result.stderr
    with psycopg.connect(demo.url) as conn:
        assert conn.execute("SELECT count(*) FROM xray_runs").fetchone() == (3,)
        assert conn.execute(SEED_QUERY).fetchall() == []
