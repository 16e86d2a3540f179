"""Run and artifact ids by unique prefix, as git accepts short hashes."""

from __future__ import annotations

import psycopg

from collector_service.errors import NotFound, XRayError
from collector_service.store.queries import load

_QUERIES = load("inspect.sql")


def resolve_run_id(conn: psycopg.Connection, text: str) -> str:
    """The run id ``text`` names: itself, or the one run id it begins."""
    return _resolve(conn, text, "run_ids_by_prefix", "run", "xray runs")


def resolve_artifact_id(conn: psycopg.Connection, text: str) -> str:
    """The artifact id ``text`` names: itself, or the one artifact id it begins."""
    return _resolve(conn, text.lower(), "artifact_ids_by_prefix", "artifact", "xray show RUN")


def _resolve(conn: psycopg.Connection, text: str, query: str, noun: str, hint: str) -> str:
    if not text:
        raise XRayError(f"an empty {noun} id names nothing; list them with `{hint}`")
    found = [row[0] for row in conn.execute(_QUERIES[query], {"prefix": text})]
    if text in found:
        return text
    if len(found) == 1:
        return str(found[0])
    if not found:
        raise NotFound(f"no {noun} {text!r}; list them with `{hint}`")
    shown = ", ".join(found[:10]) + (", …" if len(found) > 10 else "")
    raise XRayError(f"{noun} id {text!r} is ambiguous; it could be {shown}: type more of it")
