"""Decorator → SDK → OTLP (gRPC and HTTP) → collector → Postgres → the seed query."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

import xray_otel as xray
from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread
from tests.fix_collector import RunningCollector
from xray_otel import _shed

SEED_QUERY = """
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio
FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9
ORDER BY drop_ratio DESC;
"""


@xray.step("llm", name="generate_keywords")
def generate_keywords(title: str) -> list[str]:
    xray.record(input={"title": title}, output=["phone case", "stand"],
                metrics={"tokens": 42}, artifacts={"prompt": f"Keywords for {title}"})
    return ["phone case", "stand"]


@xray.step("search")
async def search(keywords: list[str]) -> list[int]:
    await asyncio.sleep(0)
    return list(range(5000))


@xray.step("filter", count_candidates=True)
def filter_candidates(candidates: list[int]) -> list[int]:
    kept = candidates[:50]
    xray.record(why="Dropped 99% for category mismatch",
                why_json={"top_reject_reasons": {"category_mismatch": 4720,
                                                 "price_out_of_range": 230}})
    return kept


@xray.step("rank")
def rank(candidates: list[int]) -> list[int]:
    for _ in range(2):
        yield from candidates[:1]


@xray.step("llm", name="pick")
def pick(candidates: list[int]) -> int:
    raise LookupError("nothing suitable")


def pipeline(entity: str, provider: TracerProvider) -> str:
    with xray.run("competitor_search", entity=entity, tracer_provider=provider) as run:
        keywords = generate_keywords("Slim phone case")
        candidates = asyncio.run(search(keywords))
        kept = filter_candidates(candidates)
        ranked = list(rank(kept))
        with pytest.raises(LookupError, match="nothing suitable"):
            pick(ranked)
        return run.id


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_pipeline_to_query(protocol: str, collector: RunningCollector,
                           db: psycopg.Connection) -> None:
    endpoint = (f"http://{collector.grpc_target}" if protocol == "grpc"
                else f"{collector.http_url}/v1/traces")
    before = xray.stats()  # counters are per process: compare with what came before
    provider = xray.configure(service_name="e2e", endpoint=endpoint, protocol=protocol,
                              insecure=True, set_global=False)
    try:
        run_id = pipeline("B0E2E", provider)
        assert xray.flush(timeout=30)
    finally:
        xray.shutdown()
    counted = xray.stats() - before
    assert (counted.dropped, counted.failed, counted.exported) == (0, 0, 6)

    assert db.execute(SEED_QUERY).fetchall() == [
        (run_id, "filter_candidates", 5000, 50, pytest.approx(0.99))]
    steps = db.execute(
        "SELECT seq, step_name, step_type, pipeline, status, error, why_json, input, metrics,"
        " candidates_in, candidates_out FROM xray_steps WHERE run_id = %s ORDER BY seq",
        (run_id,)).fetchall()
    assert [s[:5] for s in steps] == [
        (1, "generate_keywords", "llm", "competitor_search", "ok"),
        (2, "search", "search", "competitor_search", "ok"),
        (3, "filter_candidates", "filter", "competitor_search", "ok"),
        (4, "rank", "rank", "competitor_search", "ok"),
        (5, "pick", "llm", "competitor_search", "error"),
    ]
    assert steps[4][5] == "LookupError: nothing suitable"
    assert steps[0][7:9] == ({"title": "Slim phone case"}, {"tokens": 42})
    assert steps[2][6]["top_reject_reasons"]["category_mismatch"] == 4720
    run = db.execute("SELECT pipeline, entity, status, service_name FROM xray_runs"
                     " WHERE run_id = %s", (run_id,)).fetchone()
    assert run == ("competitor_search", "B0E2E", "ok", "e2e")
    artifact = db.execute("SELECT attribute, preview FROM xray_artifacts WHERE run_id = %s",
                          (run_id,)).fetchone()
    assert artifact == ("xray.artifact.prompt", "Keywords for Slim phone case")
    assert json.dumps(steps)  # every stored value is plain JSON-able data


def test_collector_outage_sheds_steps_then_recovers(
    db: psycopg.Connection, migrated_url: str, tmp_path: Path, closed_port: int
) -> None:
    """The real gRPC exporter against a port where the collector starts late."""
    port = closed_port
    provider = xray.configure(
        service_name="outage", endpoint=f"http://127.0.0.1:{port}", insecure=True,
        set_global=False, max_queue_size=16, max_export_batch_size=8,
        schedule_delay_millis=20, export_timeout=1,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the queue fills and the exports fail, until a whole run is shed
            assert time.monotonic() < deadline, xray.stats()
            before = xray.stats()
            with xray.run("competitor_search", entity="B0SHED", tracer_provider=provider) as run:
                shed = not run.span.is_recording()
                assert filter_candidates(list(range(100))) == list(range(50))  # as usual
            if shed and (xray.stats() - before).dropped == 2:  # nothing of it was queued
                break
            pipeline("B0DOWN", provider)
        shed_run = run.id

        config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path / "xray",
                                 grpc_port=port, http_port=0)
        with CollectorThread(config):
            assert xray.flush(timeout=30) is True  # the queued spans get through
            assert not _shed.shedding(provider)
            recovered = pipeline("B0BACK", provider)
            assert xray.flush(timeout=30) is True
    finally:
        xray.shutdown()

    steps = db.execute("SELECT seq, step_name FROM xray_steps WHERE run_id = %s ORDER BY seq",
                       (recovered,)).fetchall()
    assert steps == [(1, "generate_keywords"), (2, "search"), (3, "filter_candidates"),
                     (4, "rank"), (5, "pick")]
    assert db.execute("SELECT count(*) FROM xray_steps WHERE run_id = %s",
                      (shed_run,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM xray_runs WHERE entity = 'B0DOWN'").fetchone()[0] > 0
