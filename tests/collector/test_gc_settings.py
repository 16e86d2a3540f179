"""The collector process's garbage-collector settings (server.settle_garbage_collector):
start-up objects frozen, the young generation collected less often, cycles still freed."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc, weakref
from collector_service.server import GC_YOUNG_THRESHOLD, settle_garbage_collector

class Node:
    pass

settle_garbage_collector()
assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD, gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # the imports' objects
probes = []
for i in range(200_000):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle, unreachable at once: only the cyclic collector frees it
    if i % 1000 == 0:
        probes.append(weakref.ref(a))
print(sum(probe() is not None for probe in probes))
"""


def test_cyclic_garbage_is_still_collected_after_the_tuning() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    alive = int(result.stdout)
    # 200 cycles probed; only those made since the last collection may still wait.
    assert alive <= 30, f"{alive} of 200 probed cycles were never collected"
