"""Call quality: the simplified ITU-T G.107 E-model and live quality warnings.

The R-factor is the reduced E-model that rtpengine (``mos_calc_legacy``) and baresip
(``mos_calculate``) use: only delay and loss impair the default R0 = 93.2.

- effective latency = RTT + 2 x jitter + 10 ms codec delay (the *full* round trip, as both do),
- Id = latency / 40 below 160 ms, else (latency - 120) / 10 (continuous at 160 ms),
- Ie = 2.5 per percent of packets lost,
- R = 93.2 - Id - Ie, floored at 0.

MOS follows G.107 Annex B (B.4), with the result also floored at 1.0 as rtpengine does: the
cubic dips below 1 for 0 < R < 6.5, which is off the P.800 scale and would make MOS rise
again as impairment grows. This is the one place baresip differs (its 1000 ms RTT vector
gives MOS 0.990; ours gives 1.0 for the same R 4.20).

:class:`QualityMonitor` applies the Twilio Voice Insights thresholds to once-a-second samples
(sans-I/O: the caller supplies ``now``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Literal, NamedTuple

#: Default transmission rating with no impairment (G.107 Table 3 defaults, simplified).
R0 = 93.2
#: Codec and packetisation delay added to the network latency, in milliseconds.
CODEC_DELAY_MS = 10.0


class QualityInputError(ValueError):
    """A quality measurement is out of range (negative delay, loss outside 0..1, NaN)."""


def _check(rtt: float, jitter: float, loss: float) -> None:
    if not (math.isfinite(rtt) and rtt >= 0):
        raise QualityInputError(f"rtt must be a finite number of seconds >= 0, got {rtt!r}")
    if not (math.isfinite(jitter) and jitter >= 0):
        raise QualityInputError(f"jitter must be a finite number of seconds >= 0, got {jitter!r}")
    if not 0.0 <= loss <= 1.0:
        raise QualityInputError(f"loss must be a fraction in 0..1, got {loss!r}")


def r_factor(rtt: float, jitter: float, loss: float) -> float:
    """Transmission rating R (0..93.2) for ``rtt``/``jitter`` in seconds and ``loss`` in 0..1."""
    _check(rtt, jitter, loss)
    latency_ms = 1000.0 * rtt + 2000.0 * jitter + CODEC_DELAY_MS
    # Delay impairment Id: 1/40 per ms up to 160 ms, 1/10 per ms beyond (continuous at 160).
    delay = latency_ms / 40.0 if latency_ms < 160.0 else (latency_ms - 120.0) / 10.0
    # Loss impairment: 2.5 per percent lost.
    return max(R0 - delay - 250.0 * loss, 0.0)


def mos_from_r(r: float) -> float:
    """Conversational MOS (1.0..4.5) from R, per ITU-T G.107 Annex B (B.4)."""
    if math.isnan(r):
        raise QualityInputError("R-factor is NaN")
    if r < 0.0:
        return 1.0
    if r > 100.0:
        return 4.5
    return max(1.0, 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r))


def mos(rtt: float, jitter: float, loss: float) -> float:
    """MOS for ``rtt``/``jitter`` in seconds and ``loss`` as a fraction 0..1."""
    return mos_from_r(r_factor(rtt, jitter, loss))


@dataclass(frozen=True)
class QualityEvent:
    """Base class of the events :meth:`QualityMonitor.sample` returns."""

    name: str
    """Warning name, e.g. ``"high-rtt"`` (Twilio Voice Insights naming)."""


@dataclass(frozen=True)
class QualityWarning(QualityEvent):
    """A threshold was crossed; raised once until the matching :class:`QualityCleared`."""

    value: float
    """The measurement that crossed: latest sample, or the window average for averaged rules."""
    threshold: float
    """The limit crossed, in the measurement's unit (seconds, fraction or MOS)."""
    now: float
    """Time of the sample that raised it."""


@dataclass(frozen=True)
class QualityCleared(QualityEvent):
    """A raised warning has gone back within its threshold."""

    value: float
    """The measurement at clearing time (as for :attr:`QualityWarning.value`)."""
    now: float
    """Time of the sample that cleared it."""


class Mode(Enum):
    """How a :class:`QualityRule` judges the recent window of samples."""

    ABOVE = "above"
    """Raise when ``raise_count`` samples in the window exceed the limit; clear when none do."""
    BELOW = "below"
    """As ``ABOVE``, for samples under the limit."""
    AVERAGE_ABOVE = "average-above"
    """Raise when the average of a full window exceeds the limit; clear at ``clear_limit``."""


Metric = Literal["rtt", "jitter", "loss", "mos"]


@dataclass(frozen=True)
class QualityRule:
    """One warning threshold."""

    name: str
    """Name carried by the events."""
    metric: Metric
    """Which measurement: rtt/jitter in seconds, loss as a fraction, or MOS."""
    mode: Mode
    """How the window is judged."""
    limit: float
    """The threshold."""
    clear_limit: float | None = None
    """Averaged rules clear at or below this (hysteresis); ``None`` means ``limit``."""


#: Twilio Voice Insights thresholds (twilio-voice.js StatsMonitor): 3 of the last 5 samples
#: for RTT, jitter and MOS; packet loss averaged over the window, cleared at 1 %.
TWILIO_RULES: tuple[QualityRule, ...] = (
    QualityRule("high-rtt", "rtt", Mode.ABOVE, 0.400),
    QualityRule("high-jitter", "jitter", Mode.ABOVE, 0.030),
    QualityRule("low-mos", "mos", Mode.BELOW, 3.5),
    QualityRule("high-packet-loss", "loss", Mode.AVERAGE_ABOVE, 0.03, clear_limit=0.01),
)


class _Sample(NamedTuple):
    rtt: float
    jitter: float
    loss: float
    mos: float


@dataclass(frozen=True)
class QualitySummary:
    """Per-stream quality over a whole call, for the call log."""

    samples: int
    """Number of samples taken."""
    mos_min: float
    mos_avg: float
    mos_max: float
    jitter_avg: float
    """Average jitter, seconds."""
    loss: float
    """Average packet loss fraction (0..1)."""
    rtt_max: float
    """Worst round-trip time, seconds."""


class QualityMonitor:
    """Raises and clears quality warnings from periodic samples (sans-I/O).

    Feed it one sample per interval (once a second, like the Twilio SDK) with
    :meth:`sample`; it returns the events that sample caused.
    """

    def __init__(
        self,
        rules: tuple[QualityRule, ...] = TWILIO_RULES,
        window: int = 5,
        raise_count: int = 3,
    ) -> None:
        if not 1 <= raise_count <= window:
            raise ValueError(f"raise_count must be within 1..window ({window}), got {raise_count}")
        self._rules = rules
        self._size = window
        self._window: deque[_Sample] = deque(maxlen=window)
        self._raise_count = raise_count
        self._active: set[str] = set()
        self._count = 0
        self._mos_min = math.inf
        self._mos_max = -math.inf
        self._mos_sum = 0.0
        self._jitter_sum = 0.0
        self._loss_sum = 0.0
        self._rtt_max = 0.0

    @property
    def latest_mos(self) -> float | None:
        """MOS of the latest sample; ``None`` before the first."""
        return self._window[-1].mos if self._window else None

    @property
    def active_warnings(self) -> frozenset[str]:
        """Names of the warnings raised and not yet cleared."""
        return frozenset(self._active)

    def sample(
        self, now: float, rtt: float, jitter: float, loss_fraction: float
    ) -> list[QualityEvent]:
        """Record one measurement (seconds, seconds, fraction) taken at ``now``."""
        score = mos(rtt, jitter, loss_fraction)
        self._window.append(_Sample(rtt, jitter, loss_fraction, score))
        self._count += 1
        self._mos_min = min(self._mos_min, score)
        self._mos_max = max(self._mos_max, score)
        self._mos_sum += score
        self._jitter_sum += jitter
        self._loss_sum += loss_fraction
        self._rtt_max = max(self._rtt_max, rtt)

        events: list[QualityEvent] = []
        for rule in self._rules:
            event = self._judge(rule, now)
            if event is not None:
                events.append(event)
        return events

    def _judge(self, rule: QualityRule, now: float) -> QualityEvent | None:
        values = [getattr(s, rule.metric) for s in self._window]
        if rule.mode is Mode.AVERAGE_ABOVE:
            if len(values) < self._size:
                return None
            value = sum(values) / len(values)
            clear_limit = rule.limit if rule.clear_limit is None else rule.clear_limit
            raise_it, clear_it = value > rule.limit, value <= clear_limit
        else:
            if rule.mode is Mode.ABOVE:
                crossing = sum(1 for v in values if v > rule.limit)
            else:
                crossing = sum(1 for v in values if v < rule.limit)
            value = values[-1]
            raise_it, clear_it = crossing >= self._raise_count, crossing == 0

        if raise_it and rule.name not in self._active:
            self._active.add(rule.name)
            return QualityWarning(rule.name, value, rule.limit, now)
        if clear_it and rule.name in self._active:
            self._active.discard(rule.name)
            return QualityCleared(rule.name, value, now)
        return None

    def summary(self) -> QualitySummary | None:
        """Summary of every sample so far; ``None`` before the first."""
        if self._count == 0:
            return None
        return QualitySummary(
            samples=self._count,
            mos_min=self._mos_min,
            mos_avg=self._mos_sum / self._count,
            mos_max=self._mos_max,
            jitter_avg=self._jitter_sum / self._count,
            loss=self._loss_sum / self._count,
            rtt_max=self._rtt_max,
        )
