"""Tests for RFC 3550 statistics: A.1 validity, A.3 loss, A.8 jitter, §6.4.1 RTT, A.7 interval."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from media.rtcp import ReportBlock, SenderReport, ntp_from_unix, ntp_middle32, unix_from_ntp
from media.stats import (
    COMPENSATION,
    ReceiverStats,
    RtcpInterval,
    SenderStats,
    rtt_from_report_block,
)

RATE = 8000
PTIME = 0.02
SAMPLES = 160
T0 = 1_700_000_000.0
#: Arrival clock for jitter tests: small values keep float arrival times exact enough.
START = 50.0


def feed(stats: ReceiverStats, seqs: Iterable[int]) -> list[bool]:
    """Deliver packets on a perfect 20 ms clock: timestamp and arrival follow ``seq``."""
    return [stats.on_packet(seq & 0xFFFF, seq * SAMPLES, T0 + seq * PTIME) for seq in seqs]


def test_first_packet_is_on_probation_and_second_validates() -> None:
    stats = ReceiverStats(RATE)
    assert feed(stats, [100]) == [False]
    assert not stats.valid
    assert feed(stats, [101]) == [True]
    assert stats.valid
    assert (stats.base_seq, stats.received, stats.expected, stats.lost) == (101, 1, 1, 0)


def test_probation_restarts_on_non_sequential_packet() -> None:
    stats = ReceiverStats(RATE)
    assert feed(stats, [10, 12, 13, 14]) == [False, False, True, True]
    assert (stats.base_seq, stats.received, stats.expected) == (13, 2, 2)


def test_report_block_before_validation_reports_nothing() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [10, 500])
    block = stats.report_block(0xABC, T0)
    assert block == ReportBlock(0xABC)


def test_loss_counts_and_fraction_lost() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [100, 101, 102, 104, 106, 107, 108, 109])
    # Valid from 101: 101..109 expected (9), 103 and 105 missing.
    assert (stats.expected, stats.received, stats.lost) == (9, 7, 2)
    block = stats.report_block(0x1111, T0)
    assert block.fraction_lost == 2 * 256 // 9
    assert block.cumulative_lost == 2
    assert block.highest_sequence == 109


def test_fraction_lost_covers_only_the_interval_since_the_last_report() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [1, 2, 3, 5])  # 4 lost of 4 expected (2..5)
    assert stats.report_block(1, T0).fraction_lost == 64
    feed(stats, [6, 7, 8, 9])  # no loss
    second = stats.report_block(1, T0)
    assert (second.fraction_lost, second.cumulative_lost) == (0, 1)
    feed(stats, [11, 13])  # 10 and 12 lost of 4 expected
    third = stats.report_block(1, T0)
    assert (third.fraction_lost, third.cumulative_lost) == (128, 3)
    fourth = stats.report_block(1, T0)  # nothing arrived: expected_interval 0
    assert (fourth.fraction_lost, fourth.cumulative_lost) == (0, 3)


def test_reordered_packets_are_accepted_without_loss() -> None:
    stats = ReceiverStats(RATE)
    assert feed(stats, [1, 2, 3, 5, 4, 6]) == [False, True, True, True, True, True]
    assert (stats.expected, stats.received, stats.lost, stats.duplicates) == (5, 5, 0, 0)
    assert stats.max_seq == 6


def test_late_packet_is_counted_and_interval_fraction_goes_to_zero() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [1, 2, 3, 5])
    stats.report_block(1, T0)
    feed(stats, [4])  # arrives after the report: received grows, expected does not
    block = stats.report_block(1, T0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 0)


def test_duplicates_are_counted_received_and_discarded() -> None:
    stats = ReceiverStats(RATE)
    assert feed(stats, [1, 2, 3, 3, 2, 4]) == [False, True, True, False, False, True]
    assert stats.duplicates == 2
    # A.3 counts every packet that arrives, so duplicates make the loss negative.
    assert (stats.expected, stats.received, stats.lost) == (3, 5, -2)
    assert stats.report_block(1, T0).cumulative_lost == -2


def test_sequence_wrap_extends_highest_sequence() -> None:
    stats = ReceiverStats(RATE)
    assert all(feed(stats, range(65533, 65539))[1:])  # 65533 .. 65535, 0, 1, 2
    assert stats.cycles == 65536
    assert stats.extended_max_seq == 65536 + 2
    assert (stats.expected, stats.received, stats.lost) == (5, 5, 0)
    assert stats.report_block(1, T0).highest_sequence == 0x00010002


def test_reordering_across_the_wrap_does_not_add_a_cycle() -> None:
    stats = ReceiverStats(RATE)
    assert all(feed(stats, [65533, 65534, 0, 65535, 1])[1:])
    assert stats.cycles == 65536
    assert (stats.expected, stats.lost) == (4, 0)


def test_big_jump_then_sequential_packet_restarts_the_source() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, range(1, 11))
    assert stats.on_packet(5000, 5000 * SAMPLES, T0 + 1) is False
    assert stats.on_packet(5001, 5001 * SAMPLES, T0 + 1.02) is True
    assert (stats.base_seq, stats.max_seq, stats.received, stats.expected) == (5001, 5001, 1, 1)


def test_restart_does_not_count_the_timestamp_jump_as_jitter() -> None:
    stats = ReceiverStats(RATE)
    for seq in range(1, 11):
        stats.on_packet(seq, seq * SAMPLES, START + seq * PTIME)
    stats.on_packet(5000, 0x7000_0000, START + 1)
    stats.on_packet(5001, 0x7000_0000 + SAMPLES, START + 1.02)
    stats.on_packet(5002, 0x7000_0000 + 2 * SAMPLES, START + 1.04)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_big_jump_not_followed_in_sequence_is_discarded() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, range(1, 6))
    assert feed(stats, [5000, 9000, 6]) == [False, False, True]
    assert (stats.max_seq, stats.base_seq, stats.expected, stats.lost) == (6, 2, 5, 0)


def test_packet_later_than_max_misorder_is_treated_as_a_jump() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [seq for seq in range(1, 502) if seq not in (300, 402)])
    assert feed(stats, [300]) == [False]  # 201 behind: outside MAX_MISORDER (100)
    assert feed(stats, [402]) == [True]  # 99 behind: late, accepted
    assert stats.lost == 1
    assert stats.max_seq == 501


def test_jitter_from_known_transit_deltas() -> None:
    stats = ReceiverStats(RATE)
    # Extra network delay per packet in ms; packet 0 is the probation packet.
    extra_ms = [0, 0, 1, 0, 2]
    for i, extra in enumerate(extra_ms):
        stats.on_packet(i, i * SAMPLES, START + i * PTIME + extra / 1000)
    # Transit deltas |D| in timestamp units from packet 1 on: 8, 8, 16.
    expected = 0.0
    for delta in (8, 8, 16):
        expected += (delta - expected) / 16
    assert expected == pytest.approx(1.908203125)
    assert stats.jitter == pytest.approx(expected)
    assert stats.jitter_seconds == pytest.approx(expected / RATE)
    assert stats.report_block(1, T0).jitter == 1


def test_jitter_stays_zero_across_timestamp_wrap() -> None:
    stats = ReceiverStats(RATE)
    start = 0xFFFF_FFFF - 2 * SAMPLES
    for i in range(6):
        stats.on_packet(i, (start + i * SAMPLES) & 0xFFFF_FFFF, START + i * PTIME)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_constant_jitter_converges_to_mean_deviation() -> None:
    stats = ReceiverStats(RATE)
    # Alternating +-1 ms around the nominal arrival: |D| is 16 units every packet.
    for i in range(400):
        stats.on_packet(i, i * SAMPLES, START + i * PTIME + (0.001 if i % 2 else -0.001))
    assert stats.jitter == pytest.approx(16.0, rel=1e-3)


def test_invalid_clock_rate_is_rejected() -> None:
    with pytest.raises(ValueError, match="clock rate must be positive"):
        ReceiverStats(0)


def test_report_block_echoes_last_sender_report() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [1, 2])
    sr = SenderReport(9, 0xE1A2B3C4_80000000, rtp_timestamp=0, packet_count=0, octet_count=0)
    stats.on_sender_report(sr, T0 + 10)
    block = stats.report_block(9, T0 + 11.5)
    assert block.lsr == 0xB3C48000
    assert block.dlsr == 98304  # 1.5 s in 1/65536 s


def test_report_block_without_sender_report_has_zero_lsr_and_dlsr() -> None:
    stats = ReceiverStats(RATE)
    feed(stats, [1, 2])
    block = stats.report_block(9, T0 + 5)
    assert (block.lsr, block.dlsr) == (0, 0)


def test_cumulative_lost_is_clamped_to_24_bits() -> None:
    stats = ReceiverStats(RATE)
    # Jumps of 2999 stay under MAX_DROPOUT; each loses 2998 packets, 8_394_400 in all.
    seqs = [1, 2] + [2 + 2999 * step for step in range(1, 2801)]
    assert all(feed(stats, seqs)[1:])
    assert stats.lost == 2800 * 2998
    assert stats.report_block(1, T0).cumulative_lost == 0x7FFFFF


def test_rtt_matches_rfc_3550_example() -> None:
    # §6.4.1 figure: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 -> 6.125 s.
    arrival = unix_from_ntp(0xB710_8000 << 16)
    assert ntp_middle32(ntp_from_unix(arrival)) == 0xB710_8000
    block = ReportBlock(1, lsr=0xB705_2000, dlsr=0x0005_4000)
    assert rtt_from_report_block(block, arrival) == 6.125


def test_rtt_is_none_before_the_peer_saw_a_sender_report() -> None:
    assert rtt_from_report_block(ReportBlock(1, lsr=0, dlsr=0), T0) is None


def test_rtt_never_negative() -> None:
    block = ReportBlock(1, lsr=ntp_middle32(ntp_from_unix(T0)), dlsr=65536)
    assert rtt_from_report_block(block, T0 + 0.5) == 0.0


def test_rtt_end_to_end_through_sender_and_receiver_stats() -> None:
    sender = SenderStats()
    receiver = ReceiverStats(RATE)
    feed(receiver, [1, 2])
    sr = sender.sender_report(0xA, T0, 0)
    receiver.on_sender_report(sr, T0 + 0.04)  # 40 ms one way
    block = receiver.report_block(0xA, T0 + 1.04)  # held 1 s
    rtt = rtt_from_report_block(block, T0 + 1.10)  # 60 ms back
    assert rtt == pytest.approx(0.1, abs=2 / 65536)


def test_sender_stats_count_packets_and_payload_octets() -> None:
    sender = SenderStats()
    for i in range(3):
        sender.on_packet(160, i * SAMPLES)
    block = ReportBlock(5)
    sr = sender.sender_report(0xA, T0 + 0.5, 12345, [block])
    assert sr == SenderReport(
        ssrc=0xA,
        ntp_timestamp=ntp_from_unix(T0 + 0.5),
        rtp_timestamp=12345,
        packet_count=3,
        octet_count=480,
        reports=[block],
    )
    assert sender.last_timestamp == 2 * SAMPLES


def test_sender_report_counts_wrap_modulo_2_32() -> None:
    sender = SenderStats(packets=(1 << 32) + 1, octets=(1 << 32) + 7)
    sr = sender.sender_report(1, T0, (1 << 32) + 3)
    assert (sr.packet_count, sr.octet_count, sr.rtp_timestamp) == (1, 7, 3)
    assert SenderReport.parse(bytes(sr)) == sr


class FixedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` returns one value, to hit interval bounds."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("initial", "minimum"),
    [(True, 2.5), (False, 5.0)],
    ids=["initial-halved", "after-first-report"],
)
def test_two_party_call_uses_minimum_interval(initial: bool, minimum: float) -> None:
    # 64 kb/s -> RTCP 400 B/s; 100 B x 2 members / 300 B/s is far below the minimum.
    low = RtcpInterval(64_000, FixedRandom(0.0), members=2, initial=initial).interval()
    high = RtcpInterval(64_000, FixedRandom(1.0), members=2, initial=initial).interval()
    assert low == pytest.approx(minimum * 0.5 / COMPENSATION)
    assert high == pytest.approx(minimum * 1.5 / COMPENSATION)


def test_interval_stays_within_randomisation_bounds() -> None:
    timer = RtcpInterval(64_000, random.Random(1234), members=2, senders=2, we_sent=True)
    timer.on_rtcp_sent(120)
    samples = [timer.interval() for _ in range(1000)]
    assert min(samples) >= 5.0 * 0.5 / COMPENSATION
    assert max(samples) <= 5.0 * 1.5 / COMPENSATION
    assert max(samples) - min(samples) > 5.0 / COMPENSATION * 0.9


def test_interval_is_deterministic_for_a_seed() -> None:
    a = RtcpInterval(64_000, random.Random(7), members=2)
    b = RtcpInterval(64_000, random.Random(7), members=2)
    assert [a.interval() for _ in range(5)] == [b.interval() for _ in range(5)]


def test_large_session_receiver_shares_three_quarters_of_rtcp_bandwidth() -> None:
    timer = RtcpInterval(64_000, FixedRandom(0.5), members=1000, senders=1)
    # 400 B/s x 0.75 = 300 B/s for 999 receivers of 100 B each: 333 s.
    assert timer.interval() == pytest.approx(100 * 999 / 300 / COMPENSATION)


def test_large_session_sender_shares_one_quarter_among_senders() -> None:
    timer = RtcpInterval(
        1_280_000, FixedRandom(0.5), members=1000, senders=10, we_sent=True, initial=False
    )
    # 8000 B/s x 0.25 = 2000 B/s for 10 senders of 100 B each: 0.5 s, below the 5 s floor.
    assert timer.interval() == pytest.approx(5.0 / COMPENSATION)
    timer.senders = 200
    # 200 senders > 25% of 1000? No: 200 <= 250, so 200 x 100 / 2000 = 10 s.
    assert timer.interval() == pytest.approx(10.0 / COMPENSATION)


def test_many_senders_share_the_whole_rtcp_bandwidth() -> None:
    timer = RtcpInterval(64_000, FixedRandom(0.5), members=100, senders=50, we_sent=True)
    # 50 senders > 25 %: all 100 members share 400 B/s: 25 s.
    assert timer.interval() == pytest.approx(100 * 100 / 400 / COMPENSATION)


def test_average_rtcp_size_is_a_running_average() -> None:
    timer = RtcpInterval(64_000, FixedRandom(0.5))
    timer.on_rtcp_packet(260)
    assert timer.avg_rtcp_size == pytest.approx(110.0)
    assert timer.initial
    timer.on_rtcp_sent(110)
    assert timer.avg_rtcp_size == pytest.approx(110.0)
    assert not timer.initial


def test_interval_rejects_non_positive_bandwidth() -> None:
    with pytest.raises(ValueError, match="session bandwidth must be positive"):
        RtcpInterval(0, random.Random(0)).interval()
