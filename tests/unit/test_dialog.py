"""Tests for the RFC 3261 §12-§15 dialog layer and RFC 4028 session timers: explicit clock."""

from __future__ import annotations

import pytest

from voipcore.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogManager,
    DialogState,
    DialogStateError,
    Expire,
    Negotiated,
    Refresh,
    Refresher,
    SessionExpires,
    SessionTimer,
    TooSmall,
    create_cancel,
    dialog_response,
    min_se_of,
    negotiate_uas,
    requires_timer,
    supports_timer,
)
from voipcore.sip.errors import SipParseError
from voipcore.sip.message import MAGIC_COOKIE, Request, Response, parse_message

CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
ALICE_TAG = "1928301774"
BOB_TAG = "a6c85cf"
VIA_ALICE = "SIP/2.0/UDP pc33.atlanta.example.com:5060"
VIA_BOB = "SIP/2.0/UDP 192.0.2.4:5060"
#: Record-Route as proxy1 (Alice's side) then proxy2 (Bob's side) wrote it.
RECORD_ROUTE = (
    "Record-Route: <sip:proxy2.biloxi.example.com;lr>\n"
    "Record-Route: <sip:proxy1.atlanta.example.com;lr>\n"
)


def parse_request(text: str) -> Request:
    message = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Request)
    return message


def parse_response(text: str) -> Response:
    message = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Response)
    return message


def alice_invite(*, uri: str = "sip:bob@biloxi.example.com", extra: str = "") -> Request:
    """Alice's INVITE as she sent it (the UAC's view)."""
    return parse_request(
        f"INVITE {uri} SIP/2.0\n"
        f"Via: {VIA_ALICE};branch=z9hG4bK776asdhds\n"
        "Max-Forwards: 70\n"
        "To: Bob <sip:bob@biloxi.example.com>\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\n"
        f"Call-ID: {CALL_ID}\n"
        "CSeq: 314159 INVITE\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\n"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


def invite_at_bob(extra: str = "") -> Request:
    """The same INVITE as Bob receives it, after two record-routing proxies."""
    return parse_request(
        "INVITE sip:bob@192.0.2.4 SIP/2.0\n"
        "Via: SIP/2.0/UDP proxy2.biloxi.example.com:5060;branch=z9hG4bK721e.1\n"
        "Via: SIP/2.0/UDP proxy1.atlanta.example.com:5060;branch=z9hG4bK2d4.1\n"
        f"Via: {VIA_ALICE};branch=z9hG4bK776asdhds;received=192.0.2.101\n"
        "Max-Forwards: 68\n"
        f"{RECORD_ROUTE}"
        "To: Bob <sip:bob@biloxi.example.com>\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\n"
        f"Call-ID: {CALL_ID}\n"
        "CSeq: 314159 INVITE\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\n"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


def response_to_alice(
    status: int = 200,
    *,
    tag: str | None = BOB_TAG,
    contact: str | None = "<sip:bob@192.0.2.4>",
    record_route: str = RECORD_ROUTE,
    cseq: str = "314159 INVITE",
    extra: str = "",
) -> Response:
    """A response as it reaches Alice."""
    to_tag = f";tag={tag}" if tag else ""
    contact_line = f"Contact: {contact}\n" if contact else ""
    return parse_response(
        f"SIP/2.0 {status} Whatever\n"
        f"Via: {VIA_ALICE};branch=z9hG4bK776asdhds;received=192.0.2.101\n"
        f"{record_route}"
        f"To: Bob <sip:bob@biloxi.example.com>{to_tag}\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\n"
        f"Call-ID: {CALL_ID}\n"
        f"CSeq: {cseq}\n"
        f"{contact_line}"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


def in_dialog_request(
    method: str, cseq: int, *, contact: str | None = None, to_alice: bool = True
) -> Request:
    """A request Bob sends to Alice inside the dialog, as Alice receives it."""
    contact_line = f"Contact: {contact}\n" if contact else ""
    return parse_request(
        f"{method} sip:alice@pc33.atlanta.example.com SIP/2.0\n"
        f"Via: {VIA_BOB};branch=z9hG4bKbob{cseq}{method}\n"
        "Max-Forwards: 70\n"
        f"From: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG}\n"
        f"To: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\n"
        f"Call-ID: {CALL_ID}\n"
        f"CSeq: {cseq} {method}\n"
        f"{contact_line}"
        "Content-Length: 0\n\n"
    )


def alice_dialog() -> Dialog:
    return Dialog.from_uac(alice_invite(), response_to_alice(200))


def bob_dialog(status: int = 200) -> Dialog:
    invite = invite_at_bob()
    return Dialog.from_uas(
        invite, dialog_response(invite, status, contact="sip:bob@192.0.2.4", to_tag=BOB_TAG)
    )


def routes(request: Request) -> list[str]:
    return request.headers.get_all("Route")


# -- dialog creation (§12.1) ---------------------------------------------------


def test_dialog_response_copies_record_route_in_order_and_adds_contact() -> None:
    response = dialog_response(invite_at_bob(), 180, contact="sip:bob@192.0.2.4", to_tag=BOB_TAG)
    assert response.headers.get_all("Record-Route") == [
        "<sip:proxy2.biloxi.example.com;lr>",
        "<sip:proxy1.atlanta.example.com;lr>",
    ]
    assert response.headers.get("Contact") == "<sip:bob@192.0.2.4>"
    assert response.to.tag == BOB_TAG


def test_uas_dialog_from_180_is_early_with_the_request_record_route_as_is() -> None:
    dialog = bob_dialog(180)
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId(CALL_ID, BOB_TAG, ALICE_TAG)
    assert not dialog.is_uac
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:proxy2.biloxi.example.com;lr",
        "sip:proxy1.atlanta.example.com;lr",
    ]
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    assert str(dialog.local_target) == "sip:bob@192.0.2.4"
    assert str(dialog.local_uri) == '"Bob" <sip:bob@biloxi.example.com>'
    assert str(dialog.remote_uri) == '"Alice" <sip:alice@atlanta.example.com>'
    assert (dialog.local_cseq, dialog.remote_cseq) == (None, 314159)
    assert not dialog.secure


def test_uas_early_dialog_is_confirmed_by_sending_200() -> None:
    invite = invite_at_bob()
    dialog = bob_dialog(180)
    dialog.send_response(
        dialog_response(invite, 200, contact="sip:bob@198.51.100.7", to_tag=BOB_TAG)
    )
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.local_target) == "sip:bob@198.51.100.7"


def test_uas_early_dialog_ends_with_a_non_2xx_final_response() -> None:
    dialog = bob_dialog(180)
    dialog.send_response(dialog_response(invite_at_bob(), 486, contact="sip:bob@192.0.2.4"))
    assert dialog.state is DialogState.TERMINATED


def test_invite_without_contact_cannot_create_a_uas_dialog() -> None:
    text = bytes(invite_at_bob()).replace(b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n", b"")
    invite = parse_message(text)
    assert isinstance(invite, Request)
    with pytest.raises(DialogError) as info:
        Dialog.from_uas(invite, dialog_response(invite, 200, contact="sip:bob@192.0.2.4"))
    assert info.value.status == 400


def test_uac_dialog_from_200_reverses_record_route() -> None:
    dialog = alice_dialog()
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.is_uac
    assert dialog.id == DialogId(CALL_ID, ALICE_TAG, BOB_TAG)
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:proxy1.atlanta.example.com;lr",
        "sip:proxy2.biloxi.example.com;lr",
    ]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    assert (dialog.local_cseq, dialog.remote_cseq) == (314159, None)


def test_uac_dialog_is_secure_for_a_sips_request_uri() -> None:
    invite = alice_invite(uri="sips:bob@biloxi.example.com")
    assert Dialog.from_uac(invite, response_to_alice(200)).secure


def test_provisional_response_without_to_tag_creates_no_dialog() -> None:
    with pytest.raises(ValueError, match="To tag"):
        Dialog.from_uac(alice_invite(), response_to_alice(180, tag=None))


def test_provisional_response_without_contact_targets_the_request_uri() -> None:
    dialog = Dialog.from_uac(alice_invite(), response_to_alice(180, contact=None))
    assert str(dialog.remote_target) == "sip:bob@biloxi.example.com"
    dialog.receive_response(response_to_alice(200))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"


# -- requests within a dialog (§12.2.1.1) ----------------------------------------


def test_uac_request_follows_the_12_2_1_1_checklist() -> None:
    dialog = alice_dialog()
    bye = dialog.create_request("BYE", via=VIA_ALICE)
    assert bye.method == "BYE"
    assert bye.uri_text == "sip:bob@192.0.2.4"  # remote target: loose routing
    assert routes(bye) == [
        "<sip:proxy1.atlanta.example.com;lr>",
        "<sip:proxy2.biloxi.example.com;lr>",
    ]
    assert bye.headers.get("To") == f'"Bob" <sip:bob@biloxi.example.com>;tag={BOB_TAG}'
    assert bye.headers.get("From") == f'"Alice" <sip:alice@atlanta.example.com>;tag={ALICE_TAG}'
    assert bye.call_id == CALL_ID
    assert str(bye.cseq) == "314160 BYE"
    assert bye.max_forwards == 70
    assert bye.via.sent_by == ("pc33.atlanta.example.com", 5060)
    assert bye.via.has_rfc3261_branch
    assert "Contact" not in bye.headers  # RFC 3261 Table 3: not in BYE
    assert parse_message(bytes(bye)).headers.get("CSeq") == "314160 BYE"


def test_target_refresh_request_carries_the_local_target_and_body() -> None:
    dialog = alice_dialog()
    reinvite = dialog.create_request(
        "INVITE",
        via=VIA_ALICE,
        body=b"v=0\r\n",
        content_type="application/sdp",
        extra_headers=[("Supported", "timer")],
    )
    assert reinvite.headers.get("Contact") == "<sip:alice@pc33.atlanta.example.com>"
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert reinvite.headers.get("Supported") == "timer"
    assert b"Content-Length: 5\r\n\r\nv=0\r\n" in bytes(reinvite)


def test_body_without_content_type_is_refused_and_cseq_is_unchanged() -> None:
    dialog = alice_dialog()
    with pytest.raises(ValueError, match="Content-Type"):
        dialog.create_request("INFO", via=VIA_ALICE, body=b"x")
    assert dialog.local_cseq == 314159


def test_cseq_increments_and_each_request_gets_a_fresh_branch() -> None:
    dialog = alice_dialog()
    first = dialog.create_request("INFO", via=VIA_ALICE)
    second = dialog.create_request("UPDATE", via=VIA_ALICE)
    assert [first.cseq.seq, second.cseq.seq] == [314160, 314161]
    assert dialog.local_cseq == 314161
    assert first.via.branch != second.via.branch
    assert (first.via.branch or "").startswith(MAGIC_COOKIE)


def test_uas_first_request_starts_cseq_and_routes_in_record_route_order() -> None:
    dialog = bob_dialog()
    bye = dialog.create_request("BYE", via=VIA_BOB)
    assert bye.cseq.seq == 1
    assert bye.uri_text == "sip:alice@pc33.atlanta.example.com"
    assert routes(bye) == [
        "<sip:proxy2.biloxi.example.com;lr>",
        "<sip:proxy1.atlanta.example.com;lr>",
    ]
    assert bye.headers.get("From") == f'"Bob" <sip:bob@biloxi.example.com>;tag={BOB_TAG}'
    assert bye.headers.get("To") == f'"Alice" <sip:alice@atlanta.example.com>;tag={ALICE_TAG}'
    assert dialog.create_request("INFO", via=VIA_BOB).cseq.seq == 2


def test_strict_router_takes_the_request_uri_and_remote_target_goes_last() -> None:
    strict = (
        "Record-Route: <sip:proxy2.biloxi.example.com;lr>\n"
        "Record-Route: <sip:proxy1.atlanta.example.com;transport=tcp;method=INVITE>\n"
    )
    dialog = Dialog.from_uac(alice_invite(), response_to_alice(200, record_route=strict))
    bye = dialog.create_request("BYE", via=VIA_ALICE)
    # §12.2.1.1: first route URI, minus parameters a Request-URI may not hold.
    assert bye.uri_text == "sip:proxy1.atlanta.example.com;transport=tcp"
    assert routes(bye) == ["<sip:proxy2.biloxi.example.com;lr>", "<sip:bob@192.0.2.4>"]


def test_escaped_lr_parameter_marks_a_loose_router() -> None:
    escaped = "Record-Route: <sip:proxy1.atlanta.example.com;%6C%72>\n"
    dialog = Dialog.from_uac(alice_invite(), response_to_alice(200, record_route=escaped))
    bye = dialog.create_request("BYE", via=VIA_ALICE)
    assert bye.uri_text == "sip:bob@192.0.2.4"
    assert [r.lower() for r in routes(bye)] == ["<sip:proxy1.atlanta.example.com;%6c%72>"]


def test_ack_for_2xx_uses_the_invite_cseq_and_leaves_local_cseq_alone() -> None:
    dialog = alice_dialog()
    reinvite = dialog.create_request("INVITE", via=VIA_ALICE)
    ack = dialog.create_ack(reinvite.cseq.seq, via=VIA_ALICE)
    assert str(ack.cseq) == "314160 ACK"
    assert dialog.local_cseq == 314160
    assert ack.uri_text == "sip:bob@192.0.2.4"
    assert len(routes(ack)) == 2
    assert ack.headers.get("To") == f'"Bob" <sip:bob@biloxi.example.com>;tag={BOB_TAG}'
    assert ack.via.branch != reinvite.via.branch


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_create_request_refuses_ack_and_cancel(method: str) -> None:
    with pytest.raises(ValueError, match="create_ack / create_cancel"):
        alice_dialog().create_request(method, via=VIA_ALICE)


def test_cancel_matches_the_invite_per_9_1() -> None:
    invite = alice_invite(extra="Route: <sip:proxy1.atlanta.example.com;lr>\nRequire: 100rel\n")
    invite.headers.add("Via", "SIP/2.0/UDP should-not-be-copied.example.com")
    cancel = create_cancel(invite)
    assert cancel.method == "CANCEL"
    assert cancel.uri_text == invite.uri_text
    assert cancel.headers.get_all("Via") == [f"{VIA_ALICE};branch=z9hG4bK776asdhds"]
    for name in ("From", "To", "Call-ID"):
        assert cancel.headers.get(name) == invite.headers.get(name)
    assert str(cancel.cseq) == "314159 CANCEL"
    assert routes(cancel) == ["<sip:proxy1.atlanta.example.com;lr>"]
    assert "Require" not in cancel.headers
    assert cancel.max_forwards == 70


# -- requests received within a dialog (§12.2.2) -----------------------------------


def test_request_with_lower_cseq_is_rejected_with_500() -> None:
    dialog = alice_dialog()
    dialog.receive_request(in_dialog_request("INFO", 20))
    with pytest.raises(DialogError) as info:
        dialog.receive_request(in_dialog_request("INFO", 19))
    assert (info.value.status, info.value.reason) == (500, "CSeq out of order")
    assert dialog.remote_cseq == 20


def test_ack_and_cancel_are_exempt_from_the_cseq_order() -> None:
    dialog = alice_dialog()
    dialog.receive_request(in_dialog_request("INFO", 20))
    dialog.receive_request(in_dialog_request("ACK", 3))
    dialog.receive_request(in_dialog_request("CANCEL", 3))
    assert dialog.remote_cseq == 20


def test_reinvite_contact_refreshes_the_remote_target_but_info_does_not() -> None:
    dialog = alice_dialog()
    dialog.receive_request(in_dialog_request("INFO", 1, contact="<sip:bob@203.0.113.1>"))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    dialog.receive_request(in_dialog_request("INVITE", 2, contact="<sip:bob@203.0.113.9:5080>"))
    assert str(dialog.remote_target) == "sip:bob@203.0.113.9:5080"
    assert dialog.create_request("BYE", via=VIA_ALICE).uri_text == "sip:bob@203.0.113.9:5080"


def test_2xx_to_reinvite_refreshes_the_remote_target() -> None:
    dialog = alice_dialog()
    reinvite = dialog.create_request("INVITE", via=VIA_ALICE)
    ok = response_to_alice(200, contact="<sip:bob@203.0.113.5>", cseq=str(reinvite.cseq))
    dialog.receive_response(ok)
    assert str(dialog.remote_target) == "sip:bob@203.0.113.5"
    assert dialog.state is DialogState.CONFIRMED


def test_received_bye_terminates_and_later_requests_get_481() -> None:
    dialog = alice_dialog()
    dialog.receive_request(in_dialog_request("BYE", 1))
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogError) as info:
        dialog.receive_request(in_dialog_request("INFO", 2))
    assert info.value.status == 481
    with pytest.raises(DialogStateError):
        dialog.create_request("INFO", via=VIA_ALICE)


def test_callee_may_not_send_bye_in_an_early_dialog() -> None:
    with pytest.raises(DialogStateError, match="§15"):
        bob_dialog(180).create_request("BYE", via=VIA_BOB)


@pytest.mark.parametrize(
    ("status", "method", "state"),
    [
        (481, "INFO", DialogState.TERMINATED),
        (408, "UPDATE", DialogState.TERMINATED),
        (200, "BYE", DialogState.TERMINATED),
        (401, "BYE", DialogState.CONFIRMED),
        (486, "INVITE", DialogState.CONFIRMED),
    ],
)
def test_responses_that_end_the_dialog(status: int, method: str, state: DialogState) -> None:
    dialog = alice_dialog()
    dialog.receive_response(response_to_alice(status, cseq=f"314160 {method}"))
    assert dialog.state is state


# -- the dialog manager ----------------------------------------------------------


def test_find_uses_call_id_and_tags_by_role() -> None:
    dialogs = DialogManager()
    dialog = dialogs.add(alice_dialog())
    assert dialogs.find(in_dialog_request("BYE", 1), as_uas=True) is dialog
    assert dialogs.find(response_to_alice(200, cseq="314160 INFO"), as_uas=False) is dialog
    assert dialogs.find(in_dialog_request("BYE", 1), as_uas=False) is None
    dialogs.discard(dialog)
    assert dialogs.find(in_dialog_request("BYE", 1), as_uas=True) is None


def test_unknown_dialog_is_not_found_so_the_caller_answers_481() -> None:
    dialogs = DialogManager()
    dialogs.add(alice_dialog())
    other_tag = response_to_alice(200, tag="another")
    assert dialogs.find(other_tag, as_uas=False) is None
    assert dialogs.find(alice_invite(), as_uas=True) is None  # no To tag: not in a dialog
    with pytest.raises(ValueError, match="already exists"):
        dialogs.add(alice_dialog())


def test_forked_180s_create_separate_early_dialogs() -> None:
    invite = alice_invite()
    dialogs = DialogManager()
    for tag, host in (("fork1", "192.0.2.4"), ("fork2", "192.0.2.8")):
        ringing = response_to_alice(180, tag=tag, contact=f"<sip:bob@{host}>")
        assert dialogs.find(ringing, as_uas=False) is None
        dialogs.add(Dialog.from_uac(invite, ringing))
    assert len(dialogs) == 2
    one, two = dialogs.values()
    assert (str(one.remote_target), str(two.remote_target)) == (
        "sip:bob@192.0.2.4",
        "sip:bob@192.0.2.8",
    )
    ok = response_to_alice(200, tag="fork2", contact="<sip:bob@192.0.2.9>")
    found = dialogs.find(ok, as_uas=False)
    assert found is two
    two.receive_response(ok)
    assert (one.state, two.state) == (DialogState.EARLY, DialogState.CONFIRMED)
    assert str(two.remote_target) == "sip:bob@192.0.2.9"


def test_200_confirms_an_early_dialog_and_recomputes_the_route_set() -> None:
    dialog = Dialog.from_uac(alice_invite(), response_to_alice(183, record_route=""))
    assert dialog.route_set == []
    dialog.receive_response(response_to_alice(200))
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == [
        "<sip:proxy1.atlanta.example.com;lr>",
        "<sip:proxy2.biloxi.example.com;lr>",
    ]


def test_final_failure_ends_every_early_dialog_of_the_invite() -> None:
    invite = alice_invite()
    dialogs = DialogManager()
    for tag in ("fork1", "fork2"):
        dialogs.add(Dialog.from_uac(invite, response_to_alice(180, tag=tag)))
    busy = response_to_alice(486, tag="fork3")
    assert dialogs.find(busy, as_uas=False) is None
    ended = dialogs.terminate_early(busy.call_id, busy.from_.tag or "")
    assert [d.remote_tag for d in ended] == ["fork1", "fork2"]
    assert all(d.state is DialogState.TERMINATED for d in ended)
    assert not dialogs


# -- RFC 4028 session timers -------------------------------------------------------


def timer_invite(extra: str) -> Request:
    return invite_at_bob(extra=extra)


def test_session_expires_parses_compact_form_and_refresher() -> None:
    invite = timer_invite("x: 1800 ; Refresher=UAC\nMin-SE: 120;foo\n")
    assert SessionExpires.from_message(invite) == SessionExpires(1800, Refresher.UAC)
    assert min_se_of(invite) == 120
    assert str(SessionExpires(600, Refresher.UAS)) == "600;refresher=uas"
    assert SessionExpires.parse("90;x=y") == SessionExpires(90)
    with pytest.raises(SipParseError):
        SessionExpires.parse("1800;refresher=proxy")
    with pytest.raises(SipParseError):
        SessionExpires.parse("soon")


def test_timer_option_tag_helpers() -> None:
    assert supports_timer(timer_invite("Supported: 100rel, Timer\n"))
    assert supports_timer(timer_invite("Require: timer\n"))
    assert requires_timer(timer_invite("Require: timer\n"))
    assert not supports_timer(timer_invite("Supported: 100rel\n"))


def test_interval_below_our_min_se_gets_422_with_min_se() -> None:
    invite = timer_invite("Supported: timer\nSession-Expires: 60\n")
    result = negotiate_uas(invite, min_se=90)
    assert result == TooSmall(90)
    assert isinstance(result, TooSmall)
    response = result.response(invite)
    assert (response.status, response.reason) == (422, "Session Interval Too Small")
    assert min_se_of(response) == 90
    assert response.to.tag is not None


def test_small_interval_from_a_uac_without_timer_support_is_raised_not_refused() -> None:
    invite = timer_invite("Session-Expires: 60\n")
    assert negotiate_uas(invite, min_se=120) == Negotiated(120, Refresher.UAS)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("Session-Expires: 1800\n", Refresher.UAS),
        ("Supported: timer\nSession-Expires: 1800\n", Refresher.UAC),
        ("Supported: timer\nSession-Expires: 1800;refresher=uac\n", Refresher.UAC),
        ("Supported: timer\nSession-Expires: 1800;refresher=uas\n", Refresher.UAS),
    ],
)
def test_refresher_choice_follows_rfc4028_table_2(extra: str, expected: Refresher) -> None:
    assert negotiate_uas(timer_invite(extra)) == Negotiated(1800, expected)


def test_default_interval_when_the_request_has_no_session_expires() -> None:
    assert negotiate_uas(timer_invite("")) == Negotiated(1800, Refresher.UAS)
    assert negotiate_uas(timer_invite("Supported: timer\n"), default=600) == (600, Refresher.UAC)
    assert negotiate_uas(timer_invite("Min-SE: 3600\n")) == (3600, Refresher.UAS)


def test_2xx_headers_require_timer_only_when_the_uac_supports_it() -> None:
    with_support = timer_invite("Supported: timer\nSession-Expires: 1800\n")
    assert Negotiated(1800, Refresher.UAC).response_headers(with_support) == [
        ("Session-Expires", "1800;refresher=uac"),
        ("Require", "timer"),
    ]
    without = timer_invite("")
    assert Negotiated(1800, Refresher.UAS).response_headers(without) == [
        ("Session-Expires", "1800;refresher=uas")
    ]


def test_refresher_refreshes_at_half_the_interval_and_expires_at_the_interval() -> None:
    timer = SessionTimer()
    timer.apply_negotiated(Negotiated(1800, Refresher.UAS), now=1000.0)
    assert timer.local_refresher
    assert timer.get_timer() == 1900.0
    assert timer.due(1899.9) is None
    assert timer.due(1900.0) == Refresh(1800)
    assert timer.due(1900.0) is None  # reported once
    assert timer.get_timer() == 2800.0
    assert timer.due(2800.0) == Expire(1800)
    assert timer.get_timer() is None


@pytest.mark.parametrize(("interval", "bye_after"), [(1800, 1768.0), (90, 60.0), (120, 88.0)])
def test_other_side_sends_bye_min_32_or_a_third_before_expiry(
    interval: int, bye_after: float
) -> None:
    timer = SessionTimer()
    timer.apply_negotiated(Negotiated(interval, Refresher.UAC), now=0.0)
    assert not timer.local_refresher
    assert timer.get_timer() == bye_after
    assert timer.due(bye_after - 0.001) is None
    assert timer.due(bye_after) == Expire(interval)


def test_refreshed_pushes_the_expiry() -> None:
    timer = SessionTimer()
    timer.apply_negotiated(Negotiated(1800, Refresher.UAC), now=0.0)
    timer.refreshed(900.0)
    assert timer.due(1768.0) is None
    assert timer.get_timer() == 900.0 + 1768.0


def test_uac_takes_interval_and_refresher_from_the_2xx() -> None:
    timer = SessionTimer(interval=1800)
    timer.apply_response(response_to_alice(200, extra="Session-Expires: 900;refresher=uac\n"), 5.0)
    assert (timer.interval, timer.local_refresher, timer.refresh_at) == (900, True, 455.0)
    timer.apply_response(response_to_alice(200, extra="Session-Expires: 900;refresher=uas\n"), 5.0)
    assert (timer.local_refresher, timer.get_timer()) == (False, 5.0 + 900 - 32)


def test_2xx_without_session_expires_from_a_timer_peer_means_no_expiry() -> None:
    timer = SessionTimer()
    timer.apply_negotiated(Negotiated(1800, Refresher.UAS), now=0.0)
    timer.apply_response(response_to_alice(200, extra="Supported: timer\n"), 10.0)
    assert not timer.active
    assert timer.get_timer() is None
    assert timer.due(1e9) is None


def test_2xx_from_a_peer_without_timer_support_leaves_us_refreshing() -> None:
    timer = SessionTimer(interval=600)
    timer.apply_response(response_to_alice(200), 10.0)
    assert (timer.interval, timer.local_refresher, timer.refresh_at) == (600, True, 310.0)
    assert timer.due(310.0) == Refresh(600)
    timer.apply_response(response_to_alice(200), 320.0)  # the refresh succeeded
    assert timer.get_timer() == 620.0


def test_422_raises_interval_and_min_se_for_the_retry() -> None:
    timer = SessionTimer(interval=100, min_se=90)
    assert timer.request_headers() == [
        ("Supported", "timer"),
        ("Session-Expires", "100"),
        ("Min-SE", "90"),
    ]
    timer.apply_response(response_to_alice(422, extra="Min-SE: 300\n"), 0.0)
    assert not timer.active
    assert timer.request_headers()[1:] == [("Session-Expires", "300"), ("Min-SE", "300")]


def test_refresh_request_keeps_the_refresher_named_from_our_uac_role() -> None:
    timer = SessionTimer()
    timer.apply_negotiated(Negotiated(1800, Refresher.UAS), now=0.0)  # we answered, we refresh
    assert ("Session-Expires", "1800;refresher=uac") in timer.request_headers()
    timer.apply_negotiated(Negotiated(1800, Refresher.UAC), now=0.0)  # the peer refreshes
    assert ("Session-Expires", "1800;refresher=uas") in timer.request_headers()


def test_session_timer_refuses_min_se_below_90() -> None:
    with pytest.raises(ValueError):
        SessionTimer(min_se=60)
    with pytest.raises(ValueError):
        negotiate_uas(timer_invite(""), min_se=30)
