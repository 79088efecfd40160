"""Log the garbage collector's pauses in a server process started by a benchmark.

``benchmarks.register_load`` puts this directory on the server's PYTHONPATH and
names a file in ``VOIPCORE_BENCH_GC_LOG``; every collection of generation 2, or
longer than 5 ms, then appends ``pid generation milliseconds collected`` to it
(child processes inherit the variable, hence the pid).  Collector pauses stop
the event loop, so they tell queueing delay apart from protocol work.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

_GC_LOG = os.environ.get("VOIPCORE_BENCH_GC_LOG")

if _GC_LOG:
    _log = open(_GC_LOG, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    _started = [0.0]

    def _on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        took = time.perf_counter() - _started[0]
        generation, collected = info["generation"], info["collected"]
        if generation == 2 or took > 0.005:
            _log.write(f"{os.getpid()} {generation} {1000 * took:.2f} {collected}\n")

    gc.callbacks.append(_on_gc)
