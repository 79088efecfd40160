"""The registration benchmark's pass criterion (RFC 7501 §3.4.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.register_load import Attempts, read_rtt_trace


def _trace(rate: float, count: int, took: float = 0.004) -> list[tuple[float, float]]:
    """``count`` registrations offered every 1/``rate`` s, each answered after ``took`` s."""
    return [(k / rate + took, took) for k in range(count)]


def test_offered_rate_held_and_answered_in_time_passes() -> None:
    attempts = Attempts.from_trace(_trace(1000, 30_000))
    assert round(attempts.offered) == 1000
    assert attempts.sustained(1000, 30_000, 0.5)


def test_one_late_answer_fails() -> None:
    rows = _trace(1000, 30_000)
    rows[12_345] = (rows[12_345][0] + 0.6, 0.604)
    assert not Attempts.from_trace(rows).sustained(1000, 30_000, 0.5)


def test_backlog_that_slows_the_offer_fails() -> None:
    # SIPp held back at its limit of calls in progress: the 30,000 attempts took 33 s.
    attempts = Attempts.from_trace(_trace(909, 30_000))
    assert attempts.slowest < 0.5
    assert not attempts.sustained(1000, 30_000, 0.5)


def test_missing_attempts_fail() -> None:
    assert not Attempts.from_trace(_trace(1000, 29_999)).sustained(1000, 30_000, 0.5)
    assert not Attempts.from_trace([]).sustained(1000, 30_000, 0.5)


def test_read_rtt_trace(tmp_path: Path) -> None:
    (tmp_path / "register_auth_42_rtt.csv").write_text(
        "Date_ms;response_time_ms;rtd_no\n56.001;4;1\n108.001;12;1\n"
    )
    assert read_rtt_trace(tmp_path) == [
        pytest.approx((0.056001, 0.004)),
        pytest.approx((0.108001, 0.012)),
    ]
