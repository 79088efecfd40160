"""Media anchoring (voipcore.calls.anchor): codec order for each leg, each leg's SDP
session (RFC 3264 §8), and the commands the engine gets."""

from __future__ import annotations

import asyncio

import pytest

from voipcore.calls.anchor import (
    SUPPORTED,
    MediaAnchor,
    answer_formats,
    describe,
    offer_formats,
)
from voipcore.calls.model import Call, Leg
from voipcore.sdp import PCMA, PCMU, TELEPHONE_EVENT, Format, SdpError, SessionDescription

from .fakes import ENGINE_HOST, FakeMedia, sdp

G722 = Format(9, "G722", 8000)
G729 = Format(18, "G729", 8000)
#: telephone-event on another dynamic payload type, as some phones offer it.
EVENTS_96 = Format(96, "telephone-event", 8000, fmtp="0-15")


def leg(
    leg_id: str = "a",
    *,
    formats: list[Format] | None = None,
    offer: bytes | None = None,
    local: tuple[str, int] = (ENGINE_HOST, 40000),
) -> Leg:
    call = Call("call-1", "alice", "bob", "bob", "alice")
    made = Leg(
        call,
        leg_id,
        "phone",
        "caller",
        "alice",
        "call-1",
        incoming=True,
        formats=list(SUPPORTED) if formats is None else formats,
        offer=None if offer is None else SessionDescription.parse(offer),
        remote_sdp=offer or b"",
        local=local,
        session_id=123456,
    )
    call.legs.append(made)
    return made


# -- codec order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partner", "offered"),
    [
        # Nothing known of the other party: every codec the engine converts.
        ([], [PCMU, PCMA, TELEPHONE_EVENT]),
        # The partner's codecs first, in its order, then the rest of SUPPORTED.
        ([PCMA], [PCMA, PCMU, TELEPHONE_EVENT]),
        ([PCMA, PCMU], [PCMA, PCMU, TELEPHONE_EVENT]),
        ([PCMA, TELEPHONE_EVENT], [PCMA, TELEPHONE_EVENT, PCMU]),
        # Same codec under another payload type or name case: not offered twice.
        ([EVENTS_96, PCMU], [EVENTS_96, PCMU, PCMA]),
        ([Format(8, "pcma", 8000)], [Format(8, "pcma", 8000), PCMU, TELEPHONE_EVENT]),
        # Already everything: nothing added.
        ([TELEPHONE_EVENT, PCMA, PCMU], [TELEPHONE_EVENT, PCMA, PCMU]),
    ],
)
def test_offer_formats_put_the_partners_codecs_first(
    partner: list[Format], offered: list[Format]
) -> None:
    assert offer_formats(partner) == offered


def test_offer_formats_do_not_change_the_partners_list() -> None:
    partner = [PCMA]
    offer_formats(partner).append(G722)
    assert partner == [PCMA]


@pytest.mark.parametrize(
    ("offered", "chosen", "answered"),
    [
        # The other leg settled on PCMA: it leads, the rest keep the offerer's order.
        ([PCMU, PCMA, TELEPHONE_EVENT], [PCMA, TELEPHONE_EVENT], [PCMA, PCMU, TELEPHONE_EVENT]),
        ([PCMU, G722, PCMA, EVENTS_96], [PCMA], [PCMA, PCMU, G722, EVENTS_96]),
        # Already first, or not offered at all: the offerer's order stands.
        ([PCMU, PCMA], [PCMU, PCMA], [PCMU, PCMA]),
        ([PCMU, PCMA], [G729], [PCMU, PCMA]),
        ([PCMU, PCMA], [], [PCMU, PCMA]),
        # Only the chosen codec counts, not the other leg's second choice.
        ([PCMU, PCMA, TELEPHONE_EVENT], [G729, PCMA], [PCMU, PCMA, TELEPHONE_EVENT]),
        # Names match whatever their case.
        ([PCMU, Format(8, "pcma", 8000)], [PCMA], [Format(8, "pcma", 8000), PCMU]),
    ],
)
def test_answer_formats_put_the_other_legs_codec_first(
    offered: list[Format], chosen: list[Format], answered: list[Format]
) -> None:
    assert answer_formats(offered, chosen) == answered


# -- each leg's SDP session (RFC 3264 §8) ---------------------------------------------------


def origin(body: bytes) -> tuple[int, int]:
    session = SessionDescription.parse(body)
    return session.origin.session_id, session.origin.session_version


def test_describe_offers_the_legs_stream_at_the_engines_address() -> None:
    a = leg(formats=[PCMA, PCMU, TELEPHONE_EVENT])
    body = describe(a)
    session = SessionDescription.parse(body)
    audio = session.audio
    assert audio is not None
    assert (audio.connection_address, audio.port) == (ENGINE_HOST, 40000)
    assert [f.name for f in audio.codecs] == ["PCMA", "PCMU", "telephone-event"]
    assert audio.direction == "sendrecv"
    assert origin(body) == (123456, 1)
    assert a.last_sdp == body


def test_describe_keeps_the_version_while_the_session_is_unchanged() -> None:
    a = leg()
    first = describe(a)
    assert describe(a) == first  # a refresh repeats the session, version and all
    assert a.version == 1


def test_describe_raises_the_version_only_when_the_session_changes() -> None:
    a = leg()
    first = describe(a)
    held = describe(a, direction="sendonly")
    assert origin(held) == (123456, 2)
    assert describe(a, direction="sendonly") == held
    a.local = (ENGINE_HOST, 40010)  # the stream moved
    moved = describe(a, direction="sendonly")
    assert origin(moved) == (123456, 3)
    a.formats = [PCMA, TELEPHONE_EVENT]
    resumed = describe(a)
    assert origin(resumed) == (123456, 4)
    # Back to what it was at first: still a change from the last, so a new version.
    a.local, a.formats = (ENGINE_HOST, 40000), list(SUPPORTED)
    again = describe(a)
    assert origin(again) == (123456, 5)
    assert again.replace(b" 5 IN IP4", b" 1 IN IP4") == first


def test_describe_answers_an_offer_with_the_offered_stream() -> None:
    offer = sdp("203.0.113.10", 4000, (8, 0, 101))
    a = leg(formats=[PCMA, PCMU], offer=offer)
    assert a.offer is not None
    body = describe(a, answering=a.offer)
    audio = SessionDescription.parse(body).audio
    assert audio is not None
    assert (audio.connection_address, audio.port) == (ENGINE_HOST, 40000)
    assert [f.name for f in audio.codecs] == ["PCMA", "PCMU"]
    assert origin(body) == (123456, 1)
    # The same answer again (a 2xx repeating a 183's): the same version.
    assert describe(a, answering=a.offer) == body


# -- the engine ---------------------------------------------------------------------------


def test_open_gives_the_leg_a_stream_pointed_at_its_offer() -> None:
    media = FakeMedia()
    a = leg(
        formats=[PCMU, TELEPHONE_EVENT], offer=sdp("203.0.113.10", 4000, (0, 101)), local=("", 0)
    )
    asyncio.run(MediaAnchor(media).open(a))
    assert media.commands == [
        (
            "offer",
            {
                "call_id": "call-1",
                "leg": "a",
                "codecs": [
                    {"pt": 0, "name": "PCMU", "rate": 8000},
                    {"pt": 101, "name": "telephone-event", "rate": 8000},
                ],
                "remote": {"host": "203.0.113.10", "port": 4000},
            },
        )
    ]
    assert a.local == (ENGINE_HOST, media.port("call-1", "a"))
    assert a.call.anchored


def test_open_without_an_offer_has_no_remote_yet() -> None:
    media = FakeMedia()
    b = leg("b", local=("", 0))
    asyncio.run(MediaAnchor(media).open(b))
    [(command, args)] = media.commands
    assert command == "offer" and "remote" not in args
    assert [c["name"] for c in args["codecs"]] == ["PCMU", "PCMA", "telephone-event"]


def test_apply_points_the_stream_at_the_answer_with_the_codecs_in_common() -> None:
    media = FakeMedia()
    b = leg("b")
    answer = sdp("203.0.113.20", 6000, (18, 8, 101)).replace(b"a=sendrecv", b"a=sendonly")
    formats = asyncio.run(MediaAnchor(media).apply(b, answer))
    assert [f.name for f in formats] == ["PCMA", "telephone-event"]
    assert b.formats == formats and b.remote_sdp == answer
    [(command, args)] = media.commands
    assert command == "answer"
    assert args["remote"] == {"host": "203.0.113.20", "port": 6000}
    assert args["direction"] == "sendonly"
    assert [c["pt"] for c in args["codecs"]] == [8, 101]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (sdp("203.0.113.20", 6000, (18, 9)), "no codec in common"),
        (sdp("203.0.113.20", 6000, (101,)), "no codec in common"),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n", "no audio stream"),
    ],
)
def test_apply_refuses_an_answer_it_cannot_use_and_tells_the_engine_nothing(
    body: bytes, words: str
) -> None:
    media = FakeMedia()
    b = leg("b")
    with pytest.raises(SdpError, match=words):
        asyncio.run(MediaAnchor(media).apply(b, body))
    assert media.commands == []
    assert b.formats == list(SUPPORTED) and b.remote_sdp == b""


def test_set_codecs_tells_the_engine_the_new_order() -> None:
    media = FakeMedia()
    a = leg(formats=[PCMA, PCMU])
    asyncio.run(MediaAnchor(media).set_codecs(a))
    assert media.commands == [
        (
            "answer",
            {
                "call_id": "call-1",
                "leg": "a",
                "codecs": [
                    {"pt": 8, "name": "PCMA", "rate": 8000},
                    {"pt": 0, "name": "PCMU", "rate": 8000},
                ],
            },
        )
    ]


def test_remove_closes_one_stream_and_release_the_call() -> None:
    media = FakeMedia()
    anchor = MediaAnchor(media)
    a, b = leg("a", local=("", 0)), leg("b", local=("", 0))
    b.call = a.call
    asyncio.run(anchor.open(a))
    asyncio.run(anchor.open(b))
    asyncio.run(anchor.remove(b))
    assert media.of("delete") == [{"call_id": "call-1", "leg": "b"}]
    assert b.media == {"packets_in": 50, "leg": "b"}
    # A leg moved out of another call (attended transfer) is closed there.
    asyncio.run(anchor.remove(a, "other-call"))
    assert media.of("delete")[-1] == {"call_id": "other-call", "leg": "a"}
    summaries = asyncio.run(anchor.release("call-1"))
    assert media.of("delete")[-1] == {"call_id": "call-1"}
    assert set(summaries) == {"a", "b"}


def test_play_and_dtmf_name_the_leg() -> None:
    media = FakeMedia()
    anchor = MediaAnchor(media)
    a = leg()
    asyncio.run(anchor.play(a, {"file": "hello.wav"}))
    asyncio.run(anchor.send_dtmf(a, "1#", 0.2))
    assert media.commands == [
        ("play", {"call_id": "call-1", "leg": "a", "file": "hello.wav"}),
        ("dtmf", {"call_id": "call-1", "leg": "a", "digits": "1#", "duration": 0.2}),
    ]
