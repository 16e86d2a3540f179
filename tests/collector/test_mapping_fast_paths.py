"""The mapping's shortcuts for common values give exactly what the general readers give:
the same rows, the same notes in the same order, whatever the request holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_service.ingest import attributes
from collector_service.ingest.attributes import SpanAttributes
from collector_service.ingest.mapping import map_request
from collector_service.store.rows import MappedBatch
from tests.otlp_strategies import ci_settings, requests
from xray_otel import conventions as c

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)

EDGES = [None, True, False, 0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 5.0, 1.5,
         float("nan"), float("inf"), "", "7", "a\x00b", "x" * 512, "x" * 513, "é" * 512,
         "\ud800", b"ab", [1], {"k": 1}]
SCALARS = st.one_of(
    st.sampled_from(EDGES), st.integers(-(2**64), 2**64), st.floats(), st.text(max_size=20),
    st.binary(max_size=8), st.lists(st.integers(), max_size=2),
)
SIMPLE_KEYS = (c.STEP_SEQ, c.RUN_PIPELINE, c.RUN_ENTITY, c.STEP_CANDIDATES_IN,
               c.STEP_CANDIDATES_OUT, c.STEP_WHY)


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the shortcuts off: every value takes the general readers."""
    monkeypatch.setattr(SpanAttributes, "_simple_columns", lambda self: None)
    monkeypatch.setattr(attributes, "plain_scalar", lambda value: False)


def _read(values: dict[str, Any]) -> tuple[Any, ...]:
    attrs = SpanAttributes(dict(values))
    columns = attrs.step_columns()
    return columns, attrs.remaining(), attrs.adjustments


@given(st.dictionaries(st.sampled_from([*SIMPLE_KEYS, "extra.a", "extra.b"]), SCALARS))
@ci_settings(max_examples=300)
def test_step_columns_are_the_general_readers(values: dict[str, Any]) -> None:
    fast = _read(values)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general(monkeypatch)
        general = _read(values)
    assert repr(fast) == repr(general)  # repr: NaN compares unequal to itself


@pytest.mark.parametrize("key", [*SIMPLE_KEYS, "extra"])
def test_each_column_at_its_edges_is_the_general_readers(key: str) -> None:
    for value in EDGES:
        values = {c.STEP_WHY: "why", "extra": "x", key: value}
        fast = _read(values)
        with pytest.MonkeyPatch.context() as monkeypatch:
            _general(monkeypatch)
            general = _read(values)
        assert repr(fast) == repr(general), value


def _mapped(request: ExportTraceServiceRequest) -> MappedBatch:
    return map_request(request, RECEIVED)


@given(requests())
@ci_settings(max_examples=150)
def test_whole_requests_map_the_same_with_and_without_shortcuts(
        request: ExportTraceServiceRequest) -> None:
    fast = _mapped(request)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general(monkeypatch)
        general = _mapped(request)
    assert repr(fast) == repr(general)


def test_the_shortcuts_are_taken_for_a_plain_step() -> None:
    attrs = SpanAttributes({c.STEP_SEQ: 3, c.RUN_PIPELINE: "p", c.STEP_WHY: "w"})
    assert attrs._simple_columns() == {
        "seq": 3, "pipeline": "p", "entity": None, "candidates_in": None,
        "candidates_out": None, "why": "w"}
    assert SpanAttributes({c.STEP_SEQ: 5.0})._simple_columns() is None  # converted by a reader
