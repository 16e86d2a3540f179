"""Move step payloads to artifact storage and leave references in their place.

Every ``xray.artifact.<name>`` value is written to the store before the row that
points to it is committed (an orphan is tolerable, a dangling reference is not). When
the store fails, the payload is downgraded to a summary (size, hash, preview) and the
step is stored anyway: step metadata and metrics are never dropped for an artifact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from collector_service.artifact_store import ArtifactStore, artifact_id
from collector_service.rows import Adjustment, ArtifactRef, ArtifactValue, StepRow

logger = logging.getLogger(__name__)

PREVIEW_CHARS = 200


def preview(value: ArtifactValue) -> str:
    """A short readable beginning of the payload (binary payloads say so)."""
    if value.content_type.startswith(("text/", "application/json")):
        text = value.data[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
        text = text.replace("\x00", "\ufffd")
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
    return f"<{len(value.data)} bytes of {value.content_type}>"


class ArtifactOffloader:
    """Writes a batch's artifacts to ``store`` and rewrites its steps to reference them."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    async def offload(self, steps: Sequence[StepRow]) -> tuple[list[StepRow], list[ArtifactRef]]:
        out_steps: list[StepRow] = []
        refs: list[ArtifactRef] = []
        for step in steps:
            if not step.artifacts:
                out_steps.append(step)
                continue
            step_refs = [await self._store_one(step, value) for value in step.artifacts]
            refs.extend(step_refs)
            notes = [Adjustment(r.attribute, f"artifact downgraded to a summary: "
                                f"{r.downgrade_reason}") for r in step_refs if r.downgraded]
            out_steps.append(replace(
                step,
                attributes={**step.attributes, **{r.attribute: r.as_json() for r in step_refs}},
                adjustments=step.adjustments + tuple(notes),
                artifacts=(),
            ))
        return out_steps, refs

    async def _store_one(self, step: StepRow, value: ArtifactValue) -> ArtifactRef:
        key = artifact_id(value.data)
        ref = ArtifactRef(
            artifact_id=key, trace_id=step.trace_id, span_id=step.span_id, run_id=step.run_id,
            attribute=value.attribute, size_bytes=len(value.data),
            content_type=value.content_type, storage=self._store.kind, location=None,
            preview=preview(value),
        )
        try:
            location = await asyncio.to_thread(self._store.put, key, value.data,
                                               value.content_type)
        except Exception as exc:  # any store failure downgrades; the step is still stored
            logger.warning("artifact store failed for %s: %s", key, exc)
            return replace(ref, storage="summary", downgraded=True,
                           downgrade_reason=f"store failed: {type(exc).__name__}")
        return replace(ref, location=location)
