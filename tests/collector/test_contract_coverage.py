"""Every name in the attribute contract is mapped by the collector or deliberately kept raw."""

from __future__ import annotations

import json

from collector_service.ingest.mapping import map_request
from tests.collector.test_mapping import RECEIVED
from tests.otlp_builders import request, span
from xray_otel import conventions as c

# Contract names the collector stores in `attributes` rather than a column, on purpose.
# `xray.run.version` is a column of the run (from the run span); on a step it stays raw.
KEPT_IN_ATTRIBUTES = {c.SDK_TRUNCATED, c.RUN_VERSION}
# Names that are not span attributes (resource attributes, exception event fields).
NOT_SPAN_ATTRIBUTES = {c.SERVICE_NAME, c.SERVICE_VERSION, c.EXCEPTION_TYPE, c.EXCEPTION_MESSAGE,
                       c.EXCEPTION_STACKTRACE, c.EXCEPTION_EVENT}


def contract_names() -> set[str]:
    return {value for name, value in vars(c).items()
            if name.isupper() and isinstance(value, str) and value.startswith(c.PREFIX)
            and value != c.PREFIX}


def test_every_contract_attribute_is_consumed() -> None:
    sample = {
        c.RUN_ID: "r", c.RUN_PIPELINE: "p", c.RUN_ENTITY: "e", c.RUN_VERSION: "v1",
        c.STEP_TYPE: "llm", c.STEP_NAME: "n", c.STEP_SEQ: 1, c.STEP_CANDIDATES_IN: 2,
        c.STEP_CANDIDATES_OUT: 1,
        c.STEP_WHY: "w", c.STEP_WHY_JSON: json.dumps({"a": 1}), c.STEP_INPUT: "1",
        c.STEP_OUTPUT: "2", c.SDK_TRUNCATED: ["x"],
        c.STEP_METRIC_PREFIX + "m": 1.0, c.ARTIFACT_PREFIX + "a": "payload",
    }
    covered = {name for name in contract_names() if name in sample
               or any(name == prefix for prefix in c.PREFIXED_ATTRIBUTES)}
    assert covered == contract_names() - NOT_SPAN_ATTRIBUTES, "sample misses a contract name"
    (step,) = map_request(request(span("s", sample)), RECEIVED).steps
    assert set(step.attributes) == KEPT_IN_ATTRIBUTES
    assert step.adjustments == ()
