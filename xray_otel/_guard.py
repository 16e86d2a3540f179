"""The size guard: no single attribute value may make an export batch fail downstream.

A string or bytes value whose UTF-8 size exceeds the per-value limit (64 KiB by default)
is replaced by a marked summary that keeps a prefix and says how big the original was
and its SHA-256, e.g. ``"<prefix>…[truncated by xray: 1048576 bytes, sha256=ab12…]"``.
Callers append the attribute's name to ``xray.sdk.truncated``. Oversized *artifacts*
are first offered to an optional :class:`ArtifactUploader` (a hook for a client-side
artifact store); if it returns a reference, the reference replaces the value.

The guard used by ``xray.record`` is the one installed by the most recently created
``XRaySpanProcessor`` (default limits until then). Stdlib only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from xray_otel._ratelimit import log
from xray_otel._stats import COUNTERS
from xray_otel.conventions import ARTIFACT_PREFIX

DEFAULT_MAX_VALUE_BYTES: Final = 64 * 1024
DEFAULT_MAX_ARTIFACT_BYTES: Final = 2 * 1024 * 1024
"""``xray.artifact.*`` values are evidence meant to be bulky: they get a larger limit.
Requests stay small all the same, because the exporter splits batches by size."""
"""Default per-value size limit, in UTF-8 bytes."""

_MARKER_ROOM: Final = 128  # room kept for the marker so a summary stays under the limit
_SCALAR_SIZE: Final = 8  # estimated encoded size of a number or bool in an array


@runtime_checkable
class ArtifactUploader(Protocol):
    """Hook for a client-side artifact store (none ships yet; the default is ``None``).

    ``upload`` receives an oversized ``xray.artifact.<name>`` value and returns a
    reference string that replaces the value on the span, or ``None`` to fall back
    to truncation. It runs on the pipeline's thread: it must be fast (hand the bytes
    to a queue) and should not raise (if it does, X-Ray logs it and truncates).
    """

    def upload(self, name: str, data: bytes, content_type: str) -> str | None:
        """Store ``data`` (from attribute ``name``); return its reference or ``None``."""
        ...


def utf8_size(value: str) -> int:
    """The UTF-8 size of ``value`` (cheap when it is obviously small or ASCII)."""
    if value.isascii():
        return len(value)
    return len(value.encode("utf-8", "surrogatepass"))


def _marker(size: int, digest: str | None) -> str:
    tail = f", sha256={digest}" if digest is not None else ""
    return f"…[truncated by xray: {size} bytes{tail}]"


def _truncate_bytes(data: bytes, limit: int) -> bytes:
    keep = max(0, limit - _MARKER_ROOM)
    marker = _marker(len(data), hashlib.sha256(data).hexdigest())
    return data[:keep] + marker.encode()


def _truncate_str(value: str, limit: int) -> str:
    data = value.encode("utf-8", "surrogatepass")
    keep = max(0, limit - _MARKER_ROOM)
    prefix = data[:keep].decode("utf-8", "ignore")
    return prefix + _marker(len(data), hashlib.sha256(data).hexdigest())


def _element_size(value: object) -> int:
    if isinstance(value, str):
        return utf8_size(value)
    if isinstance(value, bytes):
        return len(value)
    return _SCALAR_SIZE


def _truncate_sequence(values: Sequence[object], limit: int) -> tuple[object, ...] | None:
    total = sum(_element_size(v) for v in values)
    if total <= limit:
        return None
    kept: list[object] = []
    budget = max(0, limit - _MARKER_ROOM)
    for item in values:
        budget -= _element_size(item)
        if budget < 0:
            break
        kept.append(item)
    if all(isinstance(v, str) for v in values):
        kept.append(_marker(total, None))
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class SizeGuard:
    """Per-value size limits (artifacts have their own) plus the optional artifact uploader."""

    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    uploader: ArtifactUploader | None = None
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES

    def limit_for(self, name: str) -> int:
        """The size limit of attribute ``name``."""
        if name.startswith(ARTIFACT_PREFIX):
            return max(self.max_artifact_bytes, self.max_value_bytes)
        return self.max_value_bytes

    def may_exceed(self, value: object) -> bool:
        """Cheap, conservative test: ``False`` means ``value`` is certainly within the limit."""
        limit = self.max_value_bytes
        if isinstance(value, str):
            return len(value) * 4 > limit  # a character is at most 4 UTF-8 bytes
        if isinstance(value, bytes):
            return len(value) > limit
        if isinstance(value, (tuple, list)):
            return (
                sum(len(v) * 4 if isinstance(v, (str, bytes)) else _SCALAR_SIZE for v in value)
                > limit
            )
        return False

    def shrink(self, name: str, value: object) -> tuple[object, bool]:
        """Return ``(value', truncated)``, ``value'`` within the limit (often ``value`` itself)."""
        limit = self.limit_for(name)
        if isinstance(value, str) and utf8_size(value) <= limit:
            return value, False
        if isinstance(value, bytes) and len(value) <= limit:
            return value, False
        if isinstance(value, (tuple, list)):
            shrunk = _truncate_sequence(value, limit)
            if shrunk is None:
                return value, False
            COUNTERS.add("truncated_values")
            return shrunk, True
        if not isinstance(value, (str, bytes)):
            return value, False
        if name.startswith(ARTIFACT_PREFIX) and self.uploader is not None:
            reference = self._upload(name, value)
            if reference is not None:
                return reference, False
        COUNTERS.add("truncated_values")
        if isinstance(value, bytes):
            return _truncate_bytes(value, limit), True
        return _truncate_str(value, limit), True

    def _upload(self, name: str, value: str | bytes) -> str | None:
        if isinstance(value, bytes):
            data, content_type = value, "application/octet-stream"
        else:
            data, content_type = value.encode("utf-8", "backslashreplace"), "text/plain"
        try:
            reference = self.uploader.upload(name, data, content_type)  # type: ignore[union-attr]
        except Exception:
            COUNTERS.add("internal_errors")
            log.error(("upload", name), "xray: artifact uploader failed for %s", name, exc=True)
            return None
        return reference if isinstance(reference, str) else None


_active = SizeGuard()


def active_guard() -> SizeGuard:
    """The guard ``xray.record`` applies (set by the latest ``XRaySpanProcessor``)."""
    return _active


def set_active_guard(guard: SizeGuard) -> None:
    """Install ``guard`` as the one ``xray.record`` applies."""
    global _active
    _active = guard
