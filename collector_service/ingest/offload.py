"""Move bulky step values to artifact storage and leave references in their place.

What moves: every ``xray.artifact.<name>`` value, and any other value of a step (``why``,
``why_json``, ``input``, ``output``, an extra attribute) whose stored form exceeds the
inline ceiling, so Postgres never holds a payload over the ceiling. Deciding that is
pure (:func:`plan`); writing is :class:`ArtifactOffloader`'s job.

A payload is written to the store before the row that points to it is committed (an
orphan is tolerable, a dangling reference is not). A payload over the maximum size,
one the store fails or is too slow to take, and every payload while the collector is
under pressure is downgraded to a summary (size, hash, preview) instead; the step is
stored either way and the downgrade is visible on its rows and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

from collector_service.store.artifacts import ArtifactStore, artifact_id
from collector_service.store.rows import (
    Adjustment,
    ArtifactRef,
    ArtifactValue,
    JsonCache,
    RunRow,
    StepRow,
)
from collector_service.telemetry.metrics import CollectorMetrics
from xray_otel import conventions as c

logger = logging.getLogger(__name__)
T = TypeVar("T")

PREVIEW_CHARS = 200
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_JSON_COLUMNS = {c.STEP_WHY_JSON: "why_json", c.STEP_INPUT: "input", c.STEP_OUTPUT: "output"}


@dataclass(frozen=True)
class OffloadPolicy:
    """Sizes and limits for artifacts, in bytes and seconds."""

    inline_ceiling: int = 4096
    max_artifact_bytes: int = 64 * 1024**2
    store_timeout_s: float = 10.0
    store_concurrency: int = 16


def preview(value: ArtifactValue) -> str:
    """A short readable beginning of the payload (binary payloads say what they are)."""
    if value.content_type.startswith(("text/", _JSON)):
        text = value.data[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
        text = text.replace("\x00", "\ufffd")
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
    return f"<{len(value.data)} bytes of {value.content_type}>"


def plan(step: StepRow, ceiling: int) -> list[ArtifactValue]:
    """Every payload of ``step`` bound for artifact storage, keyed by its attribute name.

    JSON values are encoded through the row's cache: the text measured here becomes the
    artifact's body if the value moves, and the ``COPY`` row's text if it stays."""
    payloads = list(step.artifacts)
    if step.why is not None and _text_over(step.why, ceiling):
        payloads.append(ArtifactValue(c.STEP_WHY, step.why.encode(), _TEXT))
    for attribute, value in ((c.STEP_WHY_JSON, step.why_json), (c.STEP_INPUT, step.input),
                             (c.STEP_OUTPUT, step.output)):
        if value is not None and step.encoded.size(value) > ceiling:
            payloads.append(ArtifactValue(attribute, step.encoded.text(value).encode(), _JSON))
    return payloads + oversized_attributes(step.attributes, ceiling, step.encoded)


def oversized_attributes(attributes: dict[str, Any], ceiling: int,
                         cache: JsonCache | None = None) -> list[ArtifactValue]:
    """The extra attributes (of a step or a run span) too large to keep in Postgres.

    No value's stored form is longer than the whole ``attributes`` object's JSON, which
    the row stores anyway: when that fits under the ceiling (the usual case) no value
    is looked at one by one."""
    cache = cache or JsonCache()
    if not attributes or cache.size(attributes) <= ceiling:
        return []
    payloads = []
    for key, value in attributes.items():
        if isinstance(value, str) and _text_over(value, ceiling):
            payloads.append(ArtifactValue(key, value.encode(), _TEXT))
        elif isinstance(value, dict | list) and cache.size(value) > ceiling:
            payloads.append(ArtifactValue(key, cache.text(value).encode(), _JSON))
    return payloads


def _text_over(text: str, ceiling: int) -> bool:
    """Whether ``text`` takes more than ``ceiling`` bytes in UTF-8 (at most 4 a character,
    at least 1: only lengths in between need encoding)."""
    if len(text) * 4 <= ceiling:
        return False
    return len(text) > ceiling or len(text.encode()) > ceiling


def substitute(step: StepRow, refs: Sequence[ArtifactRef]) -> StepRow:
    """``step`` with each moved payload replaced by its reference."""
    changes: dict[str, Any] = {"artifacts": ()}
    attributes = dict(step.attributes)
    notes = list(step.adjustments)
    for ref in refs:
        if ref.attribute == c.STEP_WHY:
            changes["why"] = f"{ref.preview} [full text: artifact {ref.artifact_id}]"
        elif ref.attribute in _JSON_COLUMNS:
            changes[_JSON_COLUMNS[ref.attribute]] = {"xray_artifact": ref.as_json()}
        else:
            attributes[ref.attribute] = ref.as_json()
        if ref.downgraded:
            notes.append(Adjustment(ref.attribute,
                                    f"artifact downgraded to a summary: {ref.downgrade_reason}"))
    return replace(step, attributes=attributes, adjustments=tuple(notes), **changes)


class Owner(NamedTuple):
    """The span an artifact came from: a step, or a run span."""

    trace_id: str
    span_id: str
    run_id: str


class ArtifactOffloader:
    """Writes a batch's payloads to ``store`` and rewrites its steps to reference them.

    Uploads run concurrently on a pool of their own, ``store_concurrency`` at a time
    across all requests; the timeout starts when an upload starts, not while it queues.
    """

    def __init__(self, store: ArtifactStore, policy: OffloadPolicy | None = None,
                 metrics: CollectorMetrics | None = None) -> None:
        self.store = store
        self.policy = policy or OffloadPolicy()
        self.metrics = metrics or CollectorMetrics()
        self._pool = ThreadPoolExecutor(self.policy.store_concurrency,
                                        thread_name_prefix="xray-artifacts")
        self._slots = asyncio.Semaphore(self.policy.store_concurrency)

    def close(self) -> None:
        """Stop the upload threads (uploads under way finish first)."""
        self._pool.shutdown(wait=True)

    async def offload_runs(self, runs: Sequence[RunRow], under_pressure: bool = False
                           ) -> tuple[list[RunRow], list[ArtifactRef]]:
        """Run spans' oversized extra attributes to the store, references in their place."""
        out_runs: list[RunRow] = []
        all_refs: list[ArtifactRef] = []
        for run in runs:
            payloads = oversized_attributes(run.attributes, self.policy.inline_ceiling,
                                            run.encoded)
            if not payloads or run.span_id is None:
                out_runs.append(run)
                continue
            owner = Owner(run.trace_id, run.span_id, run.run_id)
            refs = await asyncio.gather(*(self._store_one(owner, payload, under_pressure)
                                          for payload in payloads))
            all_refs.extend(refs)
            attributes = {**run.attributes, **{r.attribute: r.as_json() for r in refs}}
            out_runs.append(replace(run, attributes=attributes))
        return out_runs, all_refs

    async def offload(self, steps: Sequence[StepRow], under_pressure: bool = False
                      ) -> tuple[list[StepRow], list[ArtifactRef]]:
        plans = [(step, plan(step, self.policy.inline_ceiling)) for step in steps]
        uploads = [self._store_one(Owner(step.trace_id, step.span_id, step.run_id), payload,
                                   under_pressure)
                   for step, payloads in plans for payload in payloads]
        refs = iter(await asyncio.gather(*uploads))
        out_steps: list[StepRow] = []
        all_refs: list[ArtifactRef] = []
        for step, payloads in plans:
            if not payloads:
                out_steps.append(step)
                continue
            step_refs = [next(refs) for _ in payloads]
            all_refs.extend(step_refs)
            out_steps.append(substitute(step, step_refs))
        return out_steps, all_refs

    async def _store_one(self, step: Owner, value: ArtifactValue,
                         under_pressure: bool) -> ArtifactRef:
        if value.uploaded_id is not None:
            return await self._adopt_upload(step, value, value.uploaded_id)
        ref = ArtifactRef(
            artifact_id=artifact_id(value.data), trace_id=step.trace_id, span_id=step.span_id,
            run_id=step.run_id, attribute=value.attribute, size_bytes=len(value.data),
            content_type=value.content_type, storage=self.store.kind, location=None,
            preview=preview(value),
        )
        if len(value.data) > self.policy.max_artifact_bytes:
            return self._downgrade(ref, "too_large", f"larger than the "
                                   f"{self.policy.max_artifact_bytes}-byte artifact limit")
        if under_pressure:
            return self._downgrade(ref, "under_pressure", "collector under pressure")
        try:
            location = await self._call_store(self.store.put, ref.artifact_id, value.data,
                                              value.content_type)
        except TimeoutError:
            return self._downgrade(ref, "store_slow",
                                   f"store slower than {self.policy.store_timeout_s:g}s")
        except Exception as exc:  # any store failure downgrades; the step is still stored
            logger.warning("artifact store failed for %s: %s", ref.artifact_id, exc)
            return self._downgrade(ref, "store_failed", f"store failed: {type(exc).__name__}")
        self.metrics.artifacts_stored.inc()
        self.metrics.artifact_bytes_stored.inc(ref.size_bytes)
        return replace(ref, location=location)

    async def _adopt_upload(self, step: Owner, value: ArtifactValue, key: str) -> ArtifactRef:
        """Reference an artifact the producer uploaded itself, if the store has it."""
        ref = ArtifactRef(
            artifact_id=key, trace_id=step.trace_id, span_id=step.span_id, run_id=step.run_id,
            attribute=value.attribute, size_bytes=0, content_type=value.content_type,
            storage=self.store.kind, location=None, preview="(uploaded by the producer)")
        try:
            found = await self._call_store(self.store.stat, key)
        except Exception as exc:  # a reference that cannot be checked is not trusted
            return self._downgrade(ref, "store_failed",
                                   f"could not check the producer's upload: {type(exc).__name__}")
        if found is None:
            return self._downgrade(ref, "missing_upload",
                                   "the producer's reference names no stored object")
        size, content_type = found
        return replace(ref, size_bytes=size, content_type=content_type or ref.content_type,
                       location=f"{self.store.kind}:{key}")

    async def _call_store(self, method: Callable[..., T], *args: Any) -> T:
        """Run a store call on the upload pool; the timeout starts once a thread is free."""
        async with self._slots:  # a free upload thread is waiting for this call
            return await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._pool, method, *args),
                timeout=self.policy.store_timeout_s)

    def _downgrade(self, ref: ArtifactRef, kind: str, reason: str) -> ArtifactRef:
        self.metrics.count_downgrade(kind)
        return replace(ref, storage="summary", downgraded=True, downgrade_reason=reason)
