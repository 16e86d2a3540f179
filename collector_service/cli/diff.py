"""``xray diff``: the funnel diff of one pipeline between two versions, as a table or JSON."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg.rows import dict_row

from collector_service.cli import db as cli_db
from collector_service.cli.tables import as_json, table
from collector_service.config import CollectorConfig
from collector_service.errors import XRayError
from collector_service.ui import diff


def cmd_diff(args: argparse.Namespace, config: CollectorConfig) -> int:
    try:
        wanted = diff.DiffRequest.parse({"pipeline": args.pipeline, "base": args.base,
                                         "head": args.head})
    except ValueError as exc:
        raise XRayError(str(exc)) from None
    with cli_db.connect(config) as conn:
        conn.read_only = True
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(diff.QUERY, wanted.params())
            rows = diff.shape(cur.fetchall())
    if args.json:
        for row in rows:
            print(as_json(row))
    elif rows:
        print(table(["step", "steps base/head", "drop base", "drop head", "change",
                     "out base→head", "top reason shift"], [_cells(r) for r in rows]))
    else:
        print(f"no steps of pipeline {args.pipeline!r} in version {args.base!r} or "
              f"{args.head!r}; list versions with SELECT DISTINCT version FROM xray_runs")
    return 0


def _cells(row: dict[str, Any]) -> list[str]:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    change = "-" if row["drop_change"] is None else f"{row['drop_change'] * 100:+.1f} pts"
    shift = ""
    if row["reject_shares"]:
        top = row["reject_shares"][0]
        shift = f"{top['reason']} {pct(top['base'])} → {pct(top['head'])}"
    return [row["step_name"], f"{row['base_steps']}/{row['head_steps']}",
            pct(row["base_drop"]), pct(row["head_drop"]), change,
            f"{_count(row['base_out'])} → {_count(row['head_out'])}", shift]


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
