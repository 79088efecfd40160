"""SipService: bytes in, bytes and events out, with an explicit clock."""

from __future__ import annotations

from voipcore.cli import make_user
from voipcore.registrar import Registrar
from voipcore.service import SipService, StoreBindings
from voipcore.sip.digest import Challenge, DigestAuthenticator, answer_challenge
from voipcore.sip.message import Response, parse_message
from voipcore.sip.transaction import Address

REALM = "test.local"
PHONE: Address = ("UDP", "192.0.2.10", 40000)
USERS = {"alice": make_user(REALM, "alice", "alice-secret")}
WALL = 1_700_000_000.0


def make_service() -> SipService:
    auth = DigestAuthenticator(REALM, b"s" * 32)
    registrar = Registrar(REALM, auth, USERS.get, min_expires=60)
    return SipService(registrar, wall_offset=WALL)


def request(
    method: str = "OPTIONS",
    *,
    branch: str = "z9hG4bK1",
    cseq_method: str | None = None,
    via: str = "SIP/2.0/UDP 192.0.2.10:40000",
    extra: str = "",
    cseq: int = 1,
) -> bytes:
    return (
        f"{method} sip:{REALM} SIP/2.0\r\n"
        f"Via: {via};branch={branch}\r\n"
        f"From: <sip:alice@{REALM}>;tag=f1\r\n"
        f"To: <sip:alice@{REALM}>\r\n"
        "Call-ID: call-1\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        f"Max-Forwards: 70\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def exchange(service: SipService, data: bytes, now: float = 0.0) -> list[tuple[Response, Address]]:
    service.receive(data, PHONE, now)
    out = []
    for raw, addr, _ in service.datagrams_to_send():
        message = parse_message(raw)
        assert isinstance(message, Response)
        out.append((message, addr))
    return out


def test_options_answered_200_with_allow() -> None:
    [(response, addr)] = exchange(make_service(), request("OPTIONS"))
    assert response.status == 200
    assert "REGISTER" in (response.headers.get("Allow") or "")
    assert addr == ("UDP", "192.0.2.10", 40000)


def test_known_but_unsupported_method_gets_405_with_allow() -> None:
    [(response, _)] = exchange(make_service(), request("SUBSCRIBE"))
    assert response.status == 405
    assert response.headers.get("Allow") == "REGISTER, OPTIONS, ACK, CANCEL"


def test_unknown_method_gets_501() -> None:
    [(response, _)] = exchange(make_service(), request("FROBNICATE"))
    assert response.status == 501


def test_unsupported_require_gets_420_listing_the_extension() -> None:
    [(response, _)] = exchange(make_service(), request("OPTIONS", extra="Require: 100rel, foo\r\n"))
    assert response.status == 420
    assert response.headers.get("Unsupported") == "100rel, foo"


def test_cancel_without_invite_gets_481() -> None:
    [(response, _)] = exchange(make_service(), request("CANCEL"))
    assert response.status == 481


def test_ack_without_transaction_is_absorbed() -> None:
    assert exchange(make_service(), request("ACK", cseq_method="INVITE")) == []


def test_rport_request_is_answered_to_source_port_and_stamped() -> None:
    data = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.5:5060;rport")
    [(response, addr)] = exchange(make_service(), data)
    assert addr == PHONE
    assert response.via.params["received"] == "192.0.2.10"
    assert response.via.params["rport"] == "40000"


def test_without_rport_response_goes_to_received_host_and_via_port() -> None:
    data = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.5:5070")
    [(response, addr)] = exchange(make_service(), data)
    assert addr == ("UDP", "192.0.2.10", 5070)
    assert response.via.params["received"] == "192.0.2.10"


def test_unparsable_request_gets_400_naming_the_problem() -> None:
    service = make_service()
    [(response, addr)] = exchange(service, request("OPTIONS", cseq_method="INVITE"))
    assert response.status == 400
    assert "CSeq method INVITE" in response.reason
    assert response.to.tag is not None
    assert addr == PHONE
    assert service.counters.bad_requests_answered == 1


def test_missing_call_id_is_dropped_and_counted() -> None:
    service = make_service()
    data = request("OPTIONS").replace(b"Call-ID: call-1\r\n", b"")
    assert exchange(service, data) == []
    assert service.counters.parse_errors == 1
    assert service.counters.dropped == 1


def test_garbage_is_dropped_and_service_keeps_answering() -> None:
    service = make_service()
    for junk in (b"", b"\x00\xff" * 100, b"HELLO\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
        assert exchange(service, junk) == []
    assert service.counters.dropped == 4
    [(response, _)] = exchange(service, request("OPTIONS"))
    assert response.status == 200


def test_unauthenticated_register_is_challenged_without_a_transaction() -> None:
    service = make_service()
    [(first, addr)] = exchange(service, request("REGISTER"))
    assert first.status == 401 and addr == PHONE
    assert len(service.layer) == 0 and service.get_timer() is None
    # A retransmission is challenged afresh (RFC 3261 §8.2.7): same To tag, new nonce.
    [(again, _)] = exchange(service, request("REGISTER"), now=0.5)
    assert again.status == 401 and again.to.tag == first.to.tag
    assert first.headers.get_all("WWW-Authenticate") != again.headers.get_all("WWW-Authenticate")
    assert len(service.layer) == 0


def test_unauthenticated_register_requiring_an_extension_gets_420() -> None:
    service = make_service()
    [(response, _)] = exchange(service, request("REGISTER", extra="Require: foo\r\n"))
    assert response.status == 420 and response.headers.get("Unsupported") == "foo"


def test_authenticated_register_retransmission_is_absorbed() -> None:
    service = make_service()
    register = _authorized_register(service)
    service.receive(register, PHONE, 1.0)
    event = service.next_event()
    assert isinstance(event, StoreBindings) and event.response is not None
    service.respond(event.response, 1.1)
    [(sent, _, _)] = service.datagrams_to_send()
    # The same request again: the stored 200 is resent, nothing is re-registered.
    service.receive(register, PHONE, 1.5)
    assert service.next_event() is None
    [(resent, _, _)] = service.datagrams_to_send()
    assert resent == sent and resent.startswith(b"SIP/2.0 200 OK")


def _authorized_register(service: SipService, extra: str = "") -> bytes:
    [(challenge_response, _)] = exchange(service, request("REGISTER"))
    challenge = Challenge.parse(challenge_response.headers.get_all("WWW-Authenticate")[1])
    creds = answer_challenge(
        challenge,
        method="REGISTER",
        uri=f"sip:{REALM}",
        username="alice",
        password="alice-secret",
        cnonce="c",
    )
    return request(
        "REGISTER",
        branch="z9hG4bK2",
        cseq=2,
        extra=f"Contact: <sip:alice@192.0.2.10:40000>\r\n{extra}Authorization: {creds}\r\n",
    )


def test_register_reply_waits_for_the_store() -> None:
    service = make_service()
    service.receive(_authorized_register(service), PHONE, 1.0)
    assert service.datagrams_to_send() == []
    event = service.next_event()
    assert isinstance(event, StoreBindings)
    assert event.response is not None
    [(binding, removed)] = event.changes
    assert not removed and binding.expires_at == WALL + 1.0 + 3600
    service.respond(event.response, 1.1)
    [(raw, addr, _)] = service.datagrams_to_send()
    assert raw.startswith(b"SIP/2.0 200 OK") and addr == PHONE


def test_failed_store_write_answers_500() -> None:
    service = make_service()
    service.receive(_authorized_register(service), PHONE, 1.0)
    event = service.next_event()
    assert isinstance(event, StoreBindings)
    service.store_failed(event, 1.1)
    [(raw, _, _)] = service.datagrams_to_send()
    response = parse_message(raw)
    assert isinstance(response, Response)
    assert response.status == 500
    assert response.headers.get("Retry-After") == "5"
    assert response.headers.get("Contact") is None


def test_expiry_timer_emits_removals() -> None:
    service = make_service()
    service.receive(_authorized_register(service, "Expires: 60\r\n"), PHONE, 1.0)
    event = service.next_event()
    assert isinstance(event, StoreBindings) and event.response is not None
    service.respond(event.response, 1.0)
    service.datagrams_to_send()
    deadline = service.get_timer()
    assert deadline is not None and deadline <= 61.0
    service.handle_timer(61.0)
    while (expired := service.next_event()) is not None:
        if isinstance(expired, StoreBindings) and expired.response is None:
            break
    assert isinstance(expired, StoreBindings)
    assert [removed for _, removed in expired.changes] == [True]


def test_failed_send_is_reported_to_the_transaction() -> None:
    service = make_service()
    tcp_phone: Address = ("TCP", "192.0.2.10", 40000)
    # A 405 to INVITE waits for the ACK in Completed (timer H), so the failure matters.
    service.receive(request("INVITE", via="SIP/2.0/TCP 192.0.2.10:40000"), tcp_phone, 0.0)
    [outgoing] = service.datagrams_to_send()
    assert len(service.layer) == 1
    service.send_failed(outgoing, 0.1)
    assert service.counters.transport_failures == 1
    assert len(service.layer) == 0
