"""Test-only hooks loaded into server processes started by tests and benchmarks.

Put on a server's PYTHONPATH by :func:`tests.sipp.md5_first_challenges`; each
hook acts only when its environment variable is set.

``VOIPCORE_TEST_DIGEST_ALGORITHMS``
    Comma-separated digest algorithms, in the order the server challenges with.
    SIPp 3.6.1 (Debian's sip-tester) reads only the first WWW-Authenticate and
    answers only MD5, so it aborts on the server's SHA-256-first challenges
    (RFC 8760 §2.4 order).  This stands in for a server setting until there is
    one; both algorithms stay accepted, only the order changes.

``VOIPCORE_TEST_GC_LOG``
    A file to which every garbage collection of generation 2, or longer than
    5 ms, appends ``pid generation milliseconds collected total_gc_ms`` (child
    processes inherit the variable, hence the pid): the benchmarks use it to
    tell collector pauses from protocol work.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

_ORDER = os.environ.get("VOIPCORE_TEST_DIGEST_ALGORITHMS")
_GC_LOG = os.environ.get("VOIPCORE_TEST_GC_LOG")

if _ORDER:
    import voipcore.sip.digest as _digest

    _digest.ALGORITHMS = tuple(name.strip() for name in _ORDER.split(",") if name.strip())

if _GC_LOG:
    _log = open(_GC_LOG, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    _started = [0.0]
    _total = [0.0]

    def _on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        took = time.perf_counter() - _started[0]
        _total[0] += took
        generation, collected = info["generation"], info["collected"]
        if generation == 2 or took > 0.005:
            line = f"{generation} {1000 * took:.2f} {collected} {1000 * _total[0]:.1f}"
            _log.write(f"{os.getpid()} {line}\n")

    gc.callbacks.append(_on_gc)
