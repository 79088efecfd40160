"""Objects touched for every RTP packet keep their attributes in slots.

Past 30 attributes CPython stops sharing an instance dict's keys and every
attribute read becomes a dictionary lookup; the relay measured slower the day
``Stream`` crossed that line (benchmarks/RESULTS.md, fourth round).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from media.jitter import JitterBuffer
from media.stats import ReceiverStats, SenderStats
from media.stream import Codec, OutputState, Stream, StreamCounters


def stream() -> Stream:
    return Stream(
        "c1",
        "a",
        [Codec(0, "PCMU")],
        local=("127.0.0.1", 20000),
        remote=None,
        on_event=lambda *_: None,
        clock=lambda: 0.0,
    )


@pytest.mark.parametrize(
    "make",
    [stream, JitterBuffer, lambda: ReceiverStats(8000), SenderStats, OutputState, StreamCounters],
)
def test_per_packet_objects_have_no_instance_dict(make: Callable[[], object]) -> None:
    assert not hasattr(make(), "__dict__")
