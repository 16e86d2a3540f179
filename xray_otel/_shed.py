"""Load shedding: X-Ray builds no span that the export queue has no room for.

While the collector is failing and the bounded export queue is full, every span ended
now is dropped on arrival. Building it first (ids, attributes the OpenTelemetry SDK
checks one by one, every processor's ``on_start``/``on_end``) would then be pure cost to
the pipeline. So :func:`xray_otel.configure` registers the provider it created with a
predicate that says "full, and the collector is failing"; runs and steps on that
provider ask :func:`shedding` before they start a span and, while it holds, run without
one. A shed step still takes its ``xray.step.seq`` (the gap shows the loss) and counts
as dropped in :func:`xray_otel.stats`. Only X-Ray's own spans are shed: other spans keep
their sampling decision, so nothing downstream sees a changed trace flag.

Stdlib only: the API modules call it on every step.
"""

from __future__ import annotations

from collections.abc import Callable

_gate: tuple[object, Callable[[], bool]] | None = None


def install(provider: object, saturated: Callable[[], bool]) -> None:
    """Shed X-Ray spans of ``provider`` whenever ``saturated()`` is true."""
    global _gate
    _gate = (provider, saturated)


def remove(provider: object) -> None:
    """Stop shedding for ``provider`` (a no-op if another provider is registered)."""
    global _gate
    gate = _gate
    if gate is not None and gate[0] is provider:
        _gate = None


def shedding(provider: object) -> bool:
    """Whether a span started on ``provider`` now would only be dropped. Never raises."""
    gate = _gate
    if gate is None or gate[0] is not provider:
        return False
    try:
        return gate[1]()
    except Exception:
        return False
