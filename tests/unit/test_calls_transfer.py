"""REFER parsing and Replaces matching (RFC 3515 §2.4.1, RFC 3891 §3, RFC 4488 §4)."""

from __future__ import annotations

import pytest

from voipcore.calls.model import Call, Leg
from voipcore.calls.transfer import ReferError, Replaces, matches, parse_refer
from voipcore.sip.dialog import Dialog, dialog_response
from voipcore.sip.message import Request, parse_message


def refer(*headers: str) -> Request:
    lines = [
        "REFER sip:voipcore@192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-r1",
        "From: <sip:alice@test.local>;tag=a1",
        "To: <sip:voipcore@test.local>;tag=s1",
        "Call-ID: call-1",
        "CSeq: 3 REFER",
        "Max-Forwards: 70",
        *headers,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_blind_refer_names_the_target_with_or_without_angle_brackets() -> None:
    # baresip sends the bare URI; most phones a name-addr.
    for value in ("<sip:carol@test.local>", "sip:203@test.local"):
        referral = parse_refer(refer(f"Refer-To: {value}"))
        assert referral.replaces is None and referral.subscribe
    assert parse_refer(refer("Refer-To: sip:203@test.local")).target == "203"


def test_attended_refer_carries_the_escaped_replaces_dialog() -> None:
    value = "<sip:carol@test.local?Replaces=c2%40host%3Bto-tag%3Dours%3Bfrom-tag%3Dtheirs>"
    referral = parse_refer(refer(f"Refer-To: {value}"))
    assert referral.target == "carol"
    assert referral.replaces == Replaces("c2@host", "ours", "theirs")


def test_refer_sub_false_asks_for_no_notifies() -> None:
    referral = parse_refer(refer("Refer-To: <sip:carol@test.local>", "Refer-Sub: false"))
    assert not referral.subscribe


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ((), "exactly one Refer-To"),
        (("Refer-To: <sip:a@x>", "Refer-To: <sip:b@x>"), "exactly one Refer-To"),
        (("Refer-To: <tel:+14045551234>",), "SIP URI with a user part"),
        (("Refer-To: <sip:test.local>",), "SIP URI with a user part"),
        (("Refer-To: <sip:carol@x?Replaces=c2%3Bto-tag%3Dours>",), "to-tag and from-tag"),
    ],
)
def test_bad_refers_get_400_naming_the_problem(headers: tuple[str, ...], words: str) -> None:
    request = refer(*headers)
    with pytest.raises(ReferError, match=words) as caught:
        parse_refer(request)
    response = caught.value.response(request)
    assert response.status == 400
    assert response.reason.startswith("Bad Request (") and words in response.reason


def test_replaces_matches_only_our_dialog_with_the_party() -> None:
    lines = [
        "INVITE sip:203@test.local SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-i1",
        "From: <sip:alice@test.local>;tag=a1",
        "To: <sip:203@test.local>",
        "Call-ID: call-2",
        "CSeq: 1 INVITE",
        "Contact: <sip:alice@192.0.2.9>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    invite = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(invite, Request)
    ok = dialog_response(invite, 200, contact="sip:voipcore@192.0.2.1", to_tag="s1")
    call = Call("call-2", "alice", "carol", "203", "alice")
    dialog = Dialog.from_uas(invite, ok)
    leg = Leg(call, "a", "phone", "caller", "alice", "call-2", incoming=True, dialog=dialog)
    # As the REFER's sender (Alice) sees it: to-tag is ours (s1), from-tag her own (a1).
    assert matches(leg, Replaces("call-2", "s1", "a1"))
    assert not matches(leg, Replaces("call-2", "a1", "s1"))
    assert not matches(leg, Replaces("call-1", "s1", "a1"))
