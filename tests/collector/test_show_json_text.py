"""``xray show`` reads JSON values as PostgreSQL's text of them and decodes them a column
at a time: the printed cells and decoded values must be what decoding each value alone
gives. The texts come from a real PostgreSQL, so its ``jsonb`` output rules are the ones
tested (key order, spacing, escapes).
"""

from __future__ import annotations

import gc
import json
from typing import Any

import psycopg
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from collector_service.cli import inspect_runs
from collector_service.cli.tables import cell, decode_json_texts, json_text_cells
from tests.otlp_strategies import ci_settings

# Text that tries the quote splitting: quotes, escapes, separators, spaces, non-ASCII.
_TEXT = st.text(alphabet=st.sampled_from(list('ab ,:"\\{}[]\n\té€😀')), max_size=12)
# Floats whose decimal form PostgreSQL and Python write alike (quarters); other numbers
# print as PostgreSQL wrote them, which the compact form keeps on purpose.
_NUMBER = st.one_of(st.integers(-10**12, 10**12),
                    st.integers(-10**6, 10**6).map(lambda n: n / 4))
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBER, _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=12)


def postgres_texts(conn: psycopg.Connection, values: list[Any]) -> list[str | None]:
    """Each value stored as ``jsonb`` and read back as text (``None`` for SQL NULL)."""
    rows = conn.execute(
        "SELECT v::jsonb::text FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n",
        ([None if v is None else json.dumps(v) for v in values],)).fetchall()
    return [row[0] for row in rows]


@pytest.fixture(scope="module")
def conn(migrated_url: str) -> Any:
    with psycopg.connect(migrated_url, autocommit=True) as connection:
        yield connection


@ci_settings(max_examples=150)
@given(values=st.lists(st.one_of(st.none(), _JSON), max_size=6))
@example(values=[{"a, b": "x: y", "q": 'say "hi"'}, ["a\\", "b"], "plain, text", 0.5, None])
@example(values=[{"é": ["😀", {"": ""}]}, [], {}, True, "\\"])
def test_column_at_a_time_matches_one_value_at_a_time(conn: psycopg.Connection,
                                                      values: list[Any]) -> None:
    texts = postgres_texts(conn, values)
    one_at_a_time = [None if t is None else json.loads(t) for t in texts]
    assert decode_json_texts(texts) == one_at_a_time
    assert json_text_cells(texts) == [None if v is None else cell(v) for v in one_at_a_time]


def test_a_cell_is_compact_and_a_string_unquoted(conn: psycopg.Connection) -> None:
    texts = postgres_texts(conn, [{"title": "phone case", "n": [1, 2]}, "a, b: c"])
    assert texts[0] == '{"n": [1, 2], "title": "phone case"}'  # PostgreSQL's own form
    assert json_text_cells(texts) == ['{"n":[1,2],"title":"phone case"}', "a, b: c"]


def test_show_leaves_the_cycle_collector_as_it_found_it() -> None:
    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            with inspect_runs._cycle_collector_paused():
                assert not gc.isenabled()
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
