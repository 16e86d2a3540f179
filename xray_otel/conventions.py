"""The X-Ray attribute contract (v1): every attribute name and step type, defined once.

Stdlib only, so producers and the collector can import it without pulling in anything.
The collector reads every name from here; a test checks that each one is either mapped
to a column or listed as deliberately ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

CONTRACT_VERSION: Final = 1
"""Version of the attribute contract described in this module."""

PREFIX: Final = "xray."
"""Every X-Ray attribute starts with this prefix."""

# --- run -------------------------------------------------------------------------------

RUN_ID: Final = "xray.run.id"
"""Run identifier (string). On the run span and every step. Absent: the trace id is the run id."""

RUN_PIPELINE: Final = "xray.run.pipeline"
"""Pipeline name (string). Marks the run span when ``xray.step.type`` is absent."""

RUN_ENTITY: Final = "xray.run.entity"
"""What the run is about, for example an ASIN (string)."""

RUN_VERSION: Final = "xray.run.version"
"""Version of the pipeline that ran (string), on the run span. Absent: the resource's
``service.version``. Funnel diffs compare runs of two versions."""

# --- step ------------------------------------------------------------------------------

STEP_TYPE: Final = "xray.step.type"
"""Step type (string, one of :class:`StepType`). Its presence makes a span a step."""

STEP_NAME: Final = "xray.step.name"
"""Step name (string). Defaults to the span name."""

STEP_SEQ: Final = "xray.step.seq"
"""Order of the step within its run, from 1 (int). Set by the SDK."""

STEP_CANDIDATES_IN: Final = "xray.step.candidates_in"
"""Number of items entering the step (non-negative int)."""

STEP_CANDIDATES_OUT: Final = "xray.step.candidates_out"
"""Number of items leaving the step (non-negative int)."""

STEP_WHY: Final = "xray.step.why"
"""One-line, human-readable explanation of the step's outcome (string)."""

STEP_WHY_JSON: Final = "xray.step.why_json"
"""Structured explanation: a string holding a JSON object."""

STEP_INPUT: Final = "xray.step.input"
"""Small structured input: a string holding JSON."""

STEP_OUTPUT: Final = "xray.step.output"
"""Small structured output: a string holding JSON."""

STEP_METRIC_PREFIX: Final = "xray.step.metric."
"""``xray.step.metric.<name>``: a numeric metric (int or double)."""

ARTIFACT_PREFIX: Final = "xray.artifact."
"""``xray.artifact.<name>``: bulky evidence (string or bytes), always stored as an artifact."""

# --- attributes the SDK sets about itself ----------------------------------------------

SDK_TRUNCATED: Final = "xray.sdk.truncated"
"""Names of attributes the SDK truncated to stay under its size limit (string array)."""

# --- OpenTelemetry names the collector reads -------------------------------------------

SERVICE_NAME: Final = "service.name"
"""Resource attribute naming the producing service (OpenTelemetry semantic conventions)."""

SERVICE_VERSION: Final = "service.version"
"""Resource attribute: the producer's version, the run's version when it sends none."""

EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"


class StepType(StrEnum):
    """The kinds of decision step. Unknown values are stored as ``other``."""

    LLM = "llm"
    SEARCH = "search"
    FILTER = "filter"
    RANK = "rank"
    TRANSFORM = "transform"
    OTHER = "other"


STEP_TYPES: Final = frozenset(t.value for t in StepType)
"""The accepted values of ``xray.step.type``."""

STEP_ATTRIBUTES: Final = (
    STEP_TYPE,
    STEP_NAME,
    STEP_SEQ,
    STEP_CANDIDATES_IN,
    STEP_CANDIDATES_OUT,
    STEP_WHY,
    STEP_WHY_JSON,
    STEP_INPUT,
    STEP_OUTPUT,
)
"""Every fixed-name step attribute, in contract order."""

RUN_ATTRIBUTES: Final = (RUN_ID, RUN_PIPELINE, RUN_ENTITY, RUN_VERSION)
"""Every fixed-name run attribute, in contract order."""

PREFIXED_ATTRIBUTES: Final = (STEP_METRIC_PREFIX, ARTIFACT_PREFIX)
"""Attribute families identified by prefix."""


def metric_attribute(name: str) -> str:
    """The attribute name carrying metric ``name``."""
    return STEP_METRIC_PREFIX + name


def artifact_attribute(name: str) -> str:
    """The attribute name carrying artifact ``name``."""
    return ARTIFACT_PREFIX + name


# --- artifacts uploaded by the producer ------------------------------------------------

ARTIFACT_REFERENCE_PREFIX: Final = "xray-artifact:sha256:"
"""A value of ``xray.artifact.<name>`` starting with this names an artifact the producer
already put in the collector's artifact store: the prefix, then the lowercase hex SHA-256
of the artifact's bytes. The collector records the reference instead of a payload."""


def artifact_reference(sha256_hex: str) -> str:
    """The attribute value that refers to an uploaded artifact."""
    return ARTIFACT_REFERENCE_PREFIX + sha256_hex


def parse_artifact_reference(value: object) -> str | None:
    """The SHA-256 an artifact reference names, or ``None`` if ``value`` is not one."""
    if not isinstance(value, str) or not value.startswith(ARTIFACT_REFERENCE_PREFIX):
        return None
    digest = value.removeprefix(ARTIFACT_REFERENCE_PREFIX)
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        return None
    return digest


def artifact_object_key(sha256_hex: str) -> str:
    """Where an artifact lives in an object store, below the store's prefix: ``ab/<sha256>``."""
    return f"{sha256_hex[:2]}/{sha256_hex}"
