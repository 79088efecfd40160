"""RFC 4733 telephone-events: payload, sender packet sequence, receiver de-duplication."""

from __future__ import annotations

import random

import pytest

from media.dtmf import (
    DIGITS,
    MAX_DURATION,
    DtmfEnd,
    DtmfError,
    DtmfEvent,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    DtmfStart,
    TelephoneEvent,
)

TS = 0x1234_5678


def feed_all(receiver: DtmfReceiver, packets: list[DtmfPacket]) -> list[DtmfEvent]:
    events: list[DtmfEvent] = []
    for marker, timestamp, payload in packets:
        events.extend(receiver.feed(timestamp, payload, marker))
    return events


def reports(packets: list[DtmfPacket]) -> list[TelephoneEvent]:
    return [TelephoneEvent.parse(p.payload) for p in packets]


# -- payload (§2.3) ---------------------------------------------------------------------


def test_payload_round_trips_with_end_bit_volume_and_duration() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert bytes(event) == b"\x0b\x8a\x03\x20"
    assert TelephoneEvent.parse(bytes(event)) == event
    assert event.digit == "#"
    assert TelephoneEvent(16).digit is None  # flash: not DTMF


def test_parse_ignores_the_reserved_bit() -> None:
    assert TelephoneEvent.parse(b"\x05\x4a\x00\xa0") == TelephoneEvent(5, False, 10, 160)


@pytest.mark.parametrize("data", [b"", b"\x01\x0a\x00", b"\x01\x0a\x00\xa0\x00"])
def test_parse_rejects_payloads_that_are_not_four_bytes(data: bytes) -> None:
    with pytest.raises(DtmfError, match="4 bytes"):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"event": 256}, "event code"),
        ({"event": 1, "volume": 64}, "volume"),
        ({"event": 1, "duration": 0x10000}, "duration"),
    ],
)
def test_out_of_range_fields_are_rejected(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(DtmfError, match=match):
        TelephoneEvent(**kwargs)  # type: ignore[arg-type]


# -- sender (§2.5.1) ---------------------------------------------------------------------


def test_sender_reports_100ms_digit_every_20ms_then_end_three_times() -> None:
    packets = DtmfSender().packets("5", TS, duration=0.1, volume=10)
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {TS}
    assert [r.duration for r in reports(packets)] == [160, 320, 480, 640, 800, 800, 800]
    assert [r.end for r in reports(packets)] == [False] * 4 + [True] * 3
    assert {(r.event, r.volume) for r in reports(packets)} == {(5, 10)}


def test_sender_duration_not_a_multiple_of_ptime_ends_at_the_exact_duration() -> None:
    packets = DtmfSender(ptime=0.03).packets("a", 0, duration=0.1)
    assert [r.duration for r in reports(packets)] == [240, 480, 720, 800, 800, 800]
    assert {r.event for r in reports(packets)} == {12}


def test_sender_event_shorter_than_ptime_is_only_the_marked_end_packets() -> None:
    packets = DtmfSender().packets("#", TS, duration=0.01)
    assert [p.marker for p in packets] == [True, False, False]
    assert [(r.end, r.duration) for r in reports(packets)] == [(True, 80)] * 3


def test_sender_splits_long_event_into_segments_at_0xffff() -> None:
    packets = DtmfSender().packets("0", 0xFFFF_0000, duration=10.0)  # 80000 units
    second = (0xFFFF_0000 + MAX_DURATION) % 2**32
    first_segment = [p for p in packets if p.timestamp == 0xFFFF_0000]
    second_segment = [p for p in packets if p.timestamp == second]
    assert len(first_segment) + len(second_segment) == len(packets)
    assert [p.marker for p in packets].count(True) == 1 and packets[0].marker
    # Segment 1 ends at 0xFFFF without the E bit, sent three times (§2.5.1.4).
    tail = reports(first_segment)[-4:]
    assert [(r.end, r.duration) for r in tail] == [(False, 65440)] + [(False, MAX_DURATION)] * 3
    # The 20 ms cadence runs on: the next report is at 65600 from the event start.
    durations = [r.duration for r in reports(second_segment)]
    assert durations[0] == 65600 - MAX_DURATION
    assert durations[-3:] == [80000 - MAX_DURATION] * 3
    assert [r.end for r in reports(second_segment)][-3:] == [True] * 3
    assert all(b - a == 160 for a, b in zip(durations[:-3], durations[1:-2], strict=True))


@pytest.mark.parametrize(
    ("args", "match"),
    [(("x", 0), "not a DTMF digit"), (("12", 0), "not a DTMF digit"), (("1", 0, 0.0), "positive")],
)
def test_sender_rejects_bad_digits_and_durations(
    args: tuple[str, int] | tuple[str, int, float], match: str
) -> None:
    with pytest.raises(DtmfError, match=match):
        DtmfSender().packets(*args)


def test_sender_requires_a_dynamic_payload_type() -> None:
    with pytest.raises(DtmfError, match="dynamic payload type"):
        DtmfSender(payload_type=8)


# -- receiver (§2.5.2) -------------------------------------------------------------------


@pytest.mark.parametrize("digit", list(DIGITS))
def test_every_digit_survives_sender_to_receiver(digit: str) -> None:
    events = feed_all(DtmfReceiver(), DtmfSender().packets(digit, TS, duration=0.12))
    assert events == [DtmfStart(digit, TS), DtmfEnd(digit, TS, 960)]


def test_receiver_reports_a_digit_sequence_once_each() -> None:
    sender, receiver = DtmfSender(), DtmfReceiver()
    packets = [p for i, d in enumerate("1#9") for p in sender.packets(d, TS + i * 1600)]
    events = feed_all(receiver, packets)
    assert events == [
        DtmfStart("1", TS),
        DtmfEnd("1", TS, 800),
        DtmfStart("#", TS + 1600),
        DtmfEnd("#", TS + 1600, 800),
        DtmfStart("9", TS + 3200),
        DtmfEnd("9", TS + 3200, 800),
    ]


def test_receiver_collapses_duplicated_and_retransmitted_packets() -> None:
    packets = DtmfSender().packets("7", TS)
    doubled = [p for p in packets for _ in range(2)]
    events = feed_all(DtmfReceiver(), doubled + packets[-3:])
    assert events == [DtmfStart("7", TS), DtmfEnd("7", TS, 800)]


def test_receiver_handles_reordering_within_an_event() -> None:
    packets = DtmfSender().packets("3", TS, duration=0.2)
    shuffled = packets[:]
    random.Random(7).shuffle(shuffled)
    events = feed_all(DtmfReceiver(), shuffled)
    assert events[0] == DtmfStart("3", TS)
    assert events[1:] == [DtmfEnd("3", TS, 1600)]


def test_receiver_takes_the_longest_duration_when_updates_arrive_late() -> None:
    packets = DtmfSender().packets("4", TS)
    receiver = DtmfReceiver()
    assert receiver.feed(TS, packets[3].payload) == [DtmfStart("4", TS)]
    assert receiver.feed(TS, packets[1].payload) == []
    next_event = bytes(TelephoneEvent(event=1, duration=160))
    assert receiver.feed(TS + 2000, next_event, True) == [
        DtmfEnd("4", TS, 640),
        DtmfStart("1", TS + 2000),
    ]


def test_lost_end_packets_end_the_event_when_the_next_one_starts() -> None:
    sender, receiver = DtmfSender(), DtmfReceiver()
    first = sender.packets("2", TS)[:-3]  # every E packet lost
    second = sender.packets("8", TS + 1600)
    events = feed_all(receiver, first + second)
    assert events == [
        DtmfStart("2", TS),
        DtmfEnd("2", TS, 640),
        DtmfStart("8", TS + 1600),
        DtmfEnd("8", TS + 1600, 800),
    ]


def test_lost_first_packets_still_start_the_event() -> None:
    events = feed_all(DtmfReceiver(), DtmfSender().packets("B", TS)[2:])
    assert events == [DtmfStart("B", TS), DtmfEnd("B", TS, 800)]


def test_only_end_packets_received_give_start_and_end_together() -> None:
    receiver = DtmfReceiver()
    end = bytes(TelephoneEvent(event=9, end=True, duration=800))
    assert receiver.feed(TS, end) == [DtmfStart("9", TS), DtmfEnd("9", TS, 800)]
    assert receiver.feed(TS, end) == []


def test_late_packets_of_an_earlier_event_are_dropped() -> None:
    sender, receiver = DtmfSender(), DtmfReceiver()
    first = sender.packets("1", TS)
    second = sender.packets("2", TS + 1600)
    # The rest of the first press, its marked first packet included, arrives late.
    late = first[2:] + first[:1]
    events = feed_all(receiver, first[:2] + second[:2] + late + second[2:])
    assert events == [
        DtmfStart("1", TS),
        DtmfEnd("1", TS, 320),
        DtmfStart("2", TS + 1600),
        DtmfEnd("2", TS + 1600, 800),
    ]


def test_older_unseen_timestamp_without_marker_is_dropped_but_with_marker_starts() -> None:
    receiver = DtmfReceiver()
    feed_all(receiver, DtmfSender().packets("1", TS))
    stale = bytes(TelephoneEvent(event=6, duration=160))
    assert receiver.feed(TS - 5000, stale, False) == []
    assert receiver.feed(TS - 8000, stale, True) == [DtmfStart("6", TS - 8000)]


def test_receiver_joins_long_event_segments_into_one_press() -> None:
    packets = DtmfSender().packets("*", 0xFFFF_0000, duration=10.0)
    events = feed_all(DtmfReceiver(), packets)
    assert events == [DtmfStart("*", 0xFFFF_0000), DtmfEnd("*", 0xFFFF_0000, 80000)]


def test_timestamps_wrapping_past_2_32_are_newer() -> None:
    sender, receiver = DtmfSender(), DtmfReceiver()
    packets = sender.packets("1", 2**32 - 800) + sender.packets("2", 800)
    events = feed_all(receiver, packets)
    assert [type(e) for e in events] == [DtmfStart, DtmfEnd, DtmfStart, DtmfEnd]
    assert events[2] == DtmfStart("2", 800)


def test_malformed_and_non_dtmf_payloads_are_ignored() -> None:
    receiver = DtmfReceiver()
    assert receiver.feed(TS, b"\x01\x02", True) == []
    assert receiver.invalid == 1
    assert receiver.feed(TS, bytes(TelephoneEvent(event=16, duration=160)), True) == []
    assert feed_all(receiver, DtmfSender().packets("C", TS))[0] == DtmfStart("C", TS)


def test_flush_ends_an_event_whose_end_never_came() -> None:
    receiver = DtmfReceiver()
    feed_all(receiver, DtmfSender().packets("0", TS)[:3])
    assert receiver.flush() == [DtmfEnd("0", TS, 480)]
    assert receiver.flush() == []


def test_events_are_frozen() -> None:
    event = DtmfEnd("1", TS, 800)
    with pytest.raises(AttributeError):
        event.duration = 0  # type: ignore[misc]
