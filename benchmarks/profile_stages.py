"""Where the collector's time goes, by ingest stage, from a py-spy profile of ``ingest.py``.

Record the benchmark with py-spy (the dev extra), sampling only the thread that holds the
GIL, so the figures are the Python work that bounds one collector process::

    py-spy record --gil --format raw -r 200 -o ingest.raw -- \\
        python benchmarks/ingest.py --spans 20000 --repeat 2
    python benchmarks/profile_stages.py ingest.raw

Each sample (a collapsed stack) goes to the first stage below that one of its frames
names; imports at start-up are left out, and the benchmark's own work (building requests,
the gRPC senders, the baseline COPY) is shown apart from the collector's share.
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Sequence
from pathlib import Path

BENCHMARK = "benchmark: requests, senders, baseline COPY"
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (  # the first that matches wins
    (BENCHMARK, ("build_requests", "generate_runs", "open_sender", "send_all", "time_copy",
                 "copy_rows", "reset_tables", "verify_")),
    ("JSON encoding", ("compact_json", "json_bytes", "JsonCache.encode", "JSONEncoder")),
    ("JSON parsing", ("_loads", "loads (", "JSONDecoder")),
    ("COPY text formatting (write_row)", ("AsyncCopy.write_row",)),
    ("mapping: attributes to rows", ("map_request", "map_events")),
    ("decompress, protobuf decode", ("Ingestor._decode",)),
    ("artifact plan", ("ArtifactOffloader.offload",)),
    ("psycopg: statements, waits, pool", ("PostgresStore.write", "AsyncConnection", "psycopg")),
)
OTHER = "other: event loop, gRPC server, threads"


def stage_samples(raw: Path) -> collections.Counter[str]:
    """Samples per stage in a py-spy ``--format raw`` file."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit() or "_find_and_load" in stack:
            continue
        frames = stack.split(";")
        label = next((name for name, keys in STAGES
                      if any(key in frame for frame in frames for key in keys)), OTHER)
        counts[label] += int(number)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("raw", type=Path, help="py-spy record --format raw output")
    counts = stage_samples(parser.parse_args(argv).raw)
    collector = sum(n for name, n in counts.items() if name != BENCHMARK)
    print(f"{'stage':<44}{'samples':>8}{'share of collector':>20}")
    for name, number in counts.most_common():
        share = "" if name == BENCHMARK else f"{100 * number / max(collector, 1):.0f}%"
        print(f"{name:<44}{number:>8}{share:>20}")
    print(f"{'collector total':<44}{collector:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
