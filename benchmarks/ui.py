"""How fast the viewer renders its two heaviest pages: a run of 10,000 steps, and the runs
page over about 1,000,000 runs. Prints, per page, the median time of the page request
(loopback HTTP: query plus render) beside the bare time of the query behind it.

    python3 benchmarks/ui.py [--server-url postgresql://postgres@127.0.0.1:5432/postgres]

The data is generated in the database with generate_series, in a scratch database that
is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_support import scratch_database

from collector_service.store.migrate import apply_migrations
from collector_service.ui.db import QUERIES
from collector_service.ui.serve import start_viewer

RUNS = 1_000_000
STEPS = 10_000
BIG_RUN = "big-run"
REPEATS = 15

LOAD_RUNS = """
INSERT INTO xray_runs (run_id, pipeline, entity, status, started_at, ended_at, trace_id,
                       span_id, version)
SELECT 'run-' || i, 'pipeline-' || (i %% 20), 'entity-' || (i %% 50000), 'ok',
       now() - make_interval(secs => i), now() - make_interval(secs => i) + interval '2 s',
       md5(i::text), left(md5(i::text), 16), 'v' || (i %% 3)
FROM generate_series(1, %(runs)s) AS i
"""
LOAD_STEPS = """
INSERT INTO xray_steps (run_id, seq, step_name, step_type, pipeline, candidates_in,
                        candidates_out, why, why_json, status, started_at, ended_at,
                        trace_id, span_id)
SELECT %(run)s, i, 'step-' || i, 'filter', 'pipeline-0', 10001 - i, 10000 - i,
       'dropped one', jsonb_build_object('top_reject_reasons',
                                         jsonb_build_object('too_far', i %% 7, 'bad', 1)),
       'ok', now() + make_interval(secs => i), now() + make_interval(secs => i + 1),
       md5('big'), lpad(to_hex(i), 16, '0')
FROM generate_series(1, %(steps)s) AS i
"""
RUN_ROW = """
INSERT INTO xray_runs (run_id, pipeline, status, started_at, trace_id, span_id)
VALUES (%(run)s, 'pipeline-0', 'ok', now(), md5('big'), 'ffffffffffffffff')
"""


def load(url: str) -> None:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LOAD_RUNS, {"runs": RUNS})
        conn.execute(RUN_ROW, {"run": BIG_RUN})
        conn.execute(LOAD_STEPS, {"run": BIG_RUN, "steps": STEPS})
        conn.execute("ANALYZE")
    print(f"loaded {RUNS:,} runs and a run of {STEPS:,} steps in "
          f"{time.perf_counter() - started:.1f} s")


def median_ms(action: Callable[[], object]) -> float:
    action()  # warm caches and the pool
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def query_time(url: str, name: str, params: dict[str, object]) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        return median_ms(lambda: conn.execute(QUERIES[name], params).fetchall())


async def page_times(url: str, pages: list[str]) -> list[float]:
    runner, port = await start_viewer(url, None, "127.0.0.1", 0)
    try:
        def fetch(path: str) -> Callable[[], bytes]:
            def get() -> bytes:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                            timeout=60) as response:
                    return bytes(response.read())
            return get
        return [await asyncio.to_thread(median_ms, fetch(p)) for p in pages]
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with scratch_database(args.server_url) as url:
        apply_migrations(url)
        load(url)
        runs_params = {"pipeline": None, "status": None, "entity": None, "since": None,
                       "until": None, "min_drop": None, "after_started": None,
                       "after_id": None, "limit": 51}
        bare_runs = query_time(url, "runs", runs_params)
        bare_steps = query_time(url, "run_steps", {"run_id": BIG_RUN, "from": None,
                                                      "limit": 201})
        run_page, runs_page, runs_filtered = asyncio.run(page_times(
            url, [f"/runs/{BIG_RUN}", "/runs", "/runs?pipeline=pipeline-3&status=ok"]))
    print(f"{'page':<44}{'request ms':>12}{'query ms':>10}")
    print(f"{'/runs/' + BIG_RUN + f' ({STEPS:,} steps)':<44}{run_page:>12.1f}{bare_steps:>10.1f}")
    print(f"{f'/runs ({RUNS:,} runs)':<44}{runs_page:>12.1f}{bare_runs:>10.1f}")
    print(f"{'/runs?pipeline=pipeline-3&status=ok':<44}{runs_filtered:>12.1f}{'':>10}")


if __name__ == "__main__":
    main()
