"""Tests for the RFC 3261 §17 transaction layer: no sockets, no sleeps, explicit ``now``."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from voipcore.sip.message import Request, Response, make_response, parse_message
from voipcore.sip.transaction import (
    Address,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timers,
    TransactionEvent,
    TransactionKey,
    TransactionLayer,
    TransactionState,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
    _server_key,
    outgoing_key,
    reopen_address,
)

T1 = 0.5
T2 = 4.0
T4 = 5.0
BRANCH = "z9hG4bKabc123"
UAC: Address = ("UDP", "192.0.2.10", 5060)
UAS: Address = ("UDP", "198.51.100.20", 5060)
UAS_TCP: Address = ("TCP", "198.51.100.20", 5060)
UAC_TCP: Address = ("TCP", "192.0.2.10", 40001)

#: What a layer hands out to send: messages, or completed responses as bytes.
Sent = Request | Response | bytes


# -- message builders ------------------------------------------------------


def request(
    method: str = "INVITE",
    *,
    branch: str | None = BRANCH,
    transport: str = "UDP",
    sent_by: str = "192.0.2.10:5060",
    uri: str = "sip:bob@example.com",
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    from_tag: str = "fromtag1",
    to_tag: str | None = None,
    extra: str = "",
) -> Request:
    """A request parsed from text, as the transport would hand it over."""
    via_params = f";branch={branch}" if branch is not None else ""
    to_params = f";tag={to_tag}" if to_tag is not None else ""
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Alice <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: Bob <sip:bob@example.com>{to_params}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def response(req: Request, status: int, to_tag: str = "totag9") -> Response:
    """A response to ``req`` as the peer would send it, round-tripped through bytes."""
    message = parse_message(bytes(make_response(req, status, to_tag=to_tag)))
    assert isinstance(message, Response)
    return message


def ack_for(req: Request, resp: Response, *, branch: str | None = None) -> Request:
    """An ACK as a peer builds it: same branch for non-2xx (§17.1.1.3), new one for 2xx."""
    via_branch = branch if branch is not None else req.via.branch
    message = request(
        "ACK",
        branch=via_branch,
        sent_by=f"{req.via.host}:{req.via.port}",
        transport=req.via.transport,
        uri=req.uri_text,
        call_id=req.call_id,
        cseq=req.cseq.seq,
        from_tag=req.from_.tag or "",
        to_tag=resp.to.tag,
    )
    return message


# -- harness helpers -------------------------------------------------------


def events(layer: TransactionLayer) -> list[TransactionEvent]:
    out: list[TransactionEvent] = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[Sent]:
    return [message for message, _ in layer.messages_to_send()]


def statuses(messages: list[Sent]) -> list[int | str]:
    """Status codes and methods; completed responses come as their wire bytes."""
    out: list[int | str] = []
    for m in messages:
        if isinstance(m, bytes):
            m = parse_message(m)
        out.append(m.status if isinstance(m, Response) else m.method)
    return out


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, list[Sent]]]:
    """Fire every timer up to ``until`` at its own deadline, like an event loop would."""
    fired: list[tuple[float, list[Sent]]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        fired.append((deadline, sent(layer)))
    return fired


def retransmit_times(fired: list[tuple[float, list[Sent]]]) -> list[float]:
    return [at for at, messages in fired if messages]


def start_client(
    method: str = "INVITE", addr: Address = UAS, now: float = 0.0, **kwargs: Any
) -> tuple[TransactionLayer, Request, TransactionKey]:
    layer = TransactionLayer()
    req = request(method, **kwargs)
    key = layer.send_request(req, addr, now)
    assert sent(layer) == [req]
    return layer, req, key


def start_server(
    method: str = "INVITE", addr: Address = UAC, now: float = 0.0, **kwargs: Any
) -> tuple[TransactionLayer, Request, TransactionKey]:
    layer = TransactionLayer()
    req = request(method, **kwargs)
    layer.receive(req, addr, now)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key is not None
    return layer, req, event.key


# -- timers ----------------------------------------------------------------


def test_timers_follow_rfc3261_table_4() -> None:
    timers = Timers()
    assert (timers.t1, timers.t2, timers.t4) == (0.5, 4.0, 5.0)
    assert timers.timer_a == timers.timer_e == timers.timer_g == 0.5
    assert timers.timer_b == timers.timer_f == timers.timer_h == timers.timer_j == 32.0
    assert timers.timer_c == 180.0
    assert timers.timer_d == 32.0
    assert timers.timer_i == timers.timer_k == 5.0
    assert timers.timer_l == timers.timer_m == 32.0


def test_timer_d_is_at_least_32_seconds_and_covers_timer_h() -> None:
    assert Timers(t1=0.1).timer_d == 32.0
    assert Timers(t1=1.0).timer_d == 64.0 == Timers(t1=1.0).timer_h


# -- INVITE client (§17.1.1) -----------------------------------------------


def test_invite_client_starts_in_calling() -> None:
    layer, _, key = start_client()
    assert key == TransactionKey(BRANCH, "", "INVITE", False)
    assert layer.state(key) is TransactionState.CALLING
    assert len(layer) == 1
    assert layer.get_timer() == T1


def test_invite_client_retransmits_until_timer_b() -> None:
    layer, req, key = start_client()
    fired = run_timers(layer, 100.0)
    # Timer A doubles with no T2 cap: 0.5, 1, 2, 4, 8, 16 s between sends.
    assert retransmit_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(messages == [req] for _, messages in fired if messages)
    assert fired[-1][0] == 32.0
    assert events(layer) == [TransactionTimeout(key), TransactionTerminated(key)]
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_invite_client_provisional_stops_retransmissions_and_timer_b() -> None:
    layer, req, key = start_client()
    ringing = response(req, 180)
    layer.receive(ringing, UAS, 0.2)
    assert events(layer) == [ResponseReceived(ringing, key)]
    assert layer.state(key) is TransactionState.PROCEEDING
    assert layer.get_timer() is None
    layer.handle_timer(1000.0)
    assert sent(layer) == []
    assert events(layer) == []
    assert layer.state(key) is TransactionState.PROCEEDING


def test_invite_client_passes_every_provisional_up() -> None:
    layer, req, key = start_client()
    for status in (100, 180, 183):
        layer.receive(response(req, status), UAS, 0.1)
    assert [e.response.status for e in events(layer) if isinstance(e, ResponseReceived)] == [
        100,
        180,
        183,
    ]


def test_invite_client_acks_non_2xx_inside_transaction() -> None:
    layer, req, key = start_client(
        extra="Route: <sip:proxy1.example.com;lr>\r\nRoute: <sip:proxy2.example.com;lr>\r\n"
        "Contact: <sip:alice@192.0.2.10>\r\nSubject: lunch\r\n"
    )
    busy = response(req, 486)
    layer.receive(busy, UAS, 0.3)
    assert events(layer) == [ResponseReceived(busy, key)]
    [(ack, addr)] = layer.messages_to_send()
    assert addr == UAS
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri_text == req.uri_text
    assert ack.call_id == req.call_id
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.headers.get("To") == busy.headers.get("To")
    assert ack.to.tag == "totag9"
    assert ack.headers.get_all("Via") == [req.headers.get_all("Via")[0]]
    assert (ack.cseq.seq, ack.cseq.method) == (req.cseq.seq, "ACK")
    assert ack.headers.get_all("Route") == [
        "<sip:proxy1.example.com;lr>",
        "<sip:proxy2.example.com;lr>",
    ]
    assert ack.headers.get("Subject") is None
    assert ack.body == b""
    # The ACK must survive the wire.
    reparsed = parse_message(bytes(ack))
    assert isinstance(reparsed, Request) and reparsed.via.branch == BRANCH
    assert layer.state(key) is TransactionState.COMPLETED


def test_invite_client_acks_final_after_provisional() -> None:
    layer, req, key = start_client()
    layer.receive(response(req, 180), UAS, 0.2)
    layer.receive(response(req, 603), UAS, 5.0)
    assert statuses(sent(layer)) == ["ACK"]
    assert layer.state(key) is TransactionState.COMPLETED


def test_invite_client_resends_ack_on_retransmitted_final_without_passing_it_up() -> None:
    layer, req, key = start_client()
    busy = response(req, 486)
    layer.receive(busy, UAS, 0.3)
    [first_ack] = sent(layer)
    events(layer)
    layer.receive(response(req, 486), UAS, 0.8)
    assert sent(layer) == [first_ack]
    assert events(layer) == []
    # A late provisional or 2xx is not acted upon in Completed.
    layer.receive(response(req, 180), UAS, 0.9)
    layer.receive(response(req, 200), UAS, 0.9)
    assert sent(layer) == []
    assert events(layer) == []


def test_invite_client_timer_d_terminates_completed() -> None:
    layer, req, key = start_client()
    layer.receive(response(req, 404), UAS, 1.0)
    events(layer)
    sent(layer)
    assert layer.get_timer() == 1.0 + 32.0
    layer.handle_timer(32.9)
    assert events(layer) == []
    layer.handle_timer(33.0)
    assert sent(layer) == []
    assert events(layer) == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_invite_client_timer_d_is_zero_on_reliable_transport() -> None:
    layer, req, key = start_client(addr=UAS_TCP, transport="TCP")
    busy = response(req, 486)
    layer.receive(busy, UAS_TCP, 1.0)
    assert statuses(sent(layer)) == ["ACK"]
    assert events(layer) == [ResponseReceived(busy, key), TransactionTerminated(key)]
    assert len(layer) == 0


def test_invite_client_passes_2xx_retransmissions_up_until_timer_m() -> None:
    layer, req, key = start_client()
    ok = response(req, 200)
    layer.receive(ok, UAS, 1.0)
    assert events(layer) == [ResponseReceived(ok, key)]
    assert sent(layer) == []  # the TU, not the transaction, ACKs a 2xx (§13.2.2.4)
    assert layer.state(key) is TransactionState.ACCEPTED
    retransmitted = response(req, 200)
    layer.receive(retransmitted, UAS, 1.5)
    forked = response(req, 200, to_tag="fork2")
    layer.receive(forked, UAS, 1.6)
    assert events(layer) == [ResponseReceived(retransmitted, key), ResponseReceived(forked, key)]
    layer.receive(response(req, 486), UAS, 1.7)
    assert events(layer) == []
    assert sent(layer) == []
    layer.handle_timer(1.0 + 32.0)
    assert events(layer) == [TransactionTerminated(key)]
    late = response(req, 200)
    layer.receive(late, UAS, 40.0)
    assert events(layer) == [StrayResponse(late, UAS)]


def test_invite_client_2xx_stops_timers_a_and_b() -> None:
    layer, req, key = start_client()
    ok = response(req, 200)
    layer.receive(ok, UAS, 0.1)
    fired = run_timers(layer, 100.0)
    assert retransmit_times(fired) == []
    assert [at for at, _ in fired] == [pytest.approx(0.1 + 32.0)]  # timer M, not B
    assert events(layer) == [ResponseReceived(ok, key), TransactionTerminated(key)]


# -- non-INVITE client (§17.1.2) -------------------------------------------


def test_non_invite_client_retransmit_interval_caps_at_t2() -> None:
    layer, req, key = start_client("REGISTER", uri="sip:example.com")
    assert layer.state(key) is TransactionState.TRYING
    fired = run_timers(layer, 100.0)
    times = retransmit_times(fired)
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert [b - a for a, b in zip(times[3:], times[4:], strict=False)] == [T2] * (len(times) - 4)
    assert times[-1] == 31.5
    assert events(layer) == [TransactionTimeout(key), TransactionTerminated(key)]


def test_non_invite_client_timer_f_fires_in_proceeding() -> None:
    layer, req, key = start_client("OPTIONS")
    trying = response(req, 100)
    layer.receive(trying, UAS, 0.1)
    assert events(layer) == [ResponseReceived(trying, key)]
    assert layer.state(key) is TransactionState.PROCEEDING
    run_timers(layer, 100.0)
    assert events(layer) == [TransactionTimeout(key), TransactionTerminated(key)]


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    layer, req, key = start_client("REGISTER")
    layer.handle_timer(0.5)  # first timer E; next one 1 s later
    assert sent(layer) == [req]
    layer.receive(response(req, 100), UAS, 0.6)
    fired = run_timers(layer, 20.0)
    # Timer E keeps its pending deadline, then restarts with T2 each time.
    assert retransmit_times(fired) == [1.5, 5.5, 9.5, 13.5, 17.5]


def test_non_invite_client_completed_absorbs_retransmitted_final_until_timer_k() -> None:
    layer, req, key = start_client("REGISTER")
    ok = response(req, 200)
    layer.receive(ok, UAS, 2.0)
    assert events(layer) == [ResponseReceived(ok, key)]
    assert layer.state(key) is TransactionState.COMPLETED
    layer.receive(response(req, 200), UAS, 2.5)
    layer.receive(response(req, 100), UAS, 2.6)
    assert events(layer) == []
    assert layer.get_timer() == 2.0 + T4
    fired = run_timers(layer, 100.0)
    assert retransmit_times(fired) == []
    assert events(layer) == [TransactionTerminated(key)]


def test_non_invite_client_timer_k_is_zero_on_reliable_transport() -> None:
    layer, req, key = start_client("REGISTER", addr=UAS_TCP, transport="TCP")
    ok = response(req, 401)
    layer.receive(ok, UAS_TCP, 0.1)
    assert events(layer) == [ResponseReceived(ok, key), TransactionTerminated(key)]
    assert len(layer) == 0


# -- INVITE server (§17.2.1) -----------------------------------------------


def test_invite_server_passes_request_up_with_its_key() -> None:
    layer, req, key = start_server()
    assert key == TransactionKey(BRANCH, "192.0.2.10:5060", "INVITE", True)
    assert layer.state(key) is TransactionState.PROCEEDING
    assert len(layer) == 1


def test_invite_server_sends_100_trying_after_200ms() -> None:
    layer, req, key = start_server(extra="Timestamp: 54.2\r\n")
    assert sent(layer) == []
    assert layer.get_timer() == pytest.approx(0.2)
    layer.handle_timer(0.19)
    assert sent(layer) == []
    layer.handle_timer(0.2)
    [(trying, addr)] = layer.messages_to_send()
    assert addr == UAC
    assert isinstance(trying, Response)
    assert trying.status == 100
    assert trying.to.tag is None
    assert trying.headers.get("Timestamp") == "54.2"
    assert trying.via.branch == BRANCH
    # A retransmitted INVITE gets the 100 again (§17.2.1).
    layer.receive(request(), UAC, 0.5)
    assert sent(layer) == [trying]
    assert events(layer) == []


def test_invite_server_no_automatic_100_when_tu_responds_in_time() -> None:
    layer, req, key = start_server()
    ringing = make_response(req, 180, to_tag="t1")
    layer.send_response(ringing, 0.05)
    assert sent(layer) == [ringing]
    assert layer.get_timer() is None
    layer.handle_timer(1.0)
    assert sent(layer) == []


def test_invite_server_trying_delay_zero_sends_100_at_once() -> None:
    layer = TransactionLayer(Timers(trying_delay=0.0))
    layer.receive(request(), UAC, 0.0)
    assert statuses(sent(layer)) == [100]


def test_invite_server_resends_last_provisional_on_retransmission() -> None:
    layer, req, key = start_server()
    layer.send_response(make_response(req, 180, to_tag="t1"), 0.1)
    progress = make_response(req, 183, to_tag="t1")
    layer.send_response(progress, 0.2)
    sent(layer)
    layer.receive(request(), UAC, 0.5)
    assert sent(layer) == [progress]
    assert events(layer) == []


def test_invite_server_timer_g_then_h_timeout() -> None:
    layer, req, key = start_server()
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(busy, 0.0)
    assert sent(layer) == [busy]
    assert layer.state(key) is TransactionState.COMPLETED
    fired = run_timers(layer, 100.0)
    # Timer G doubles up to T2: 0.5, 1, 2, 4, 4, ... until timer H at 64*T1.
    assert retransmit_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(messages == [busy] for _, messages in fired if messages)
    assert fired[-1][0] == 32.0
    assert events(layer) == [TransactionTimeout(key), TransactionTerminated(key)]
    assert len(layer) == 0


def test_invite_server_resends_final_on_retransmitted_invite_in_completed() -> None:
    layer, req, key = start_server()
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(busy, 0.0)
    sent(layer)
    layer.receive(request(), UAC, 0.3)
    assert sent(layer) == [busy]
    assert events(layer) == []


def test_invite_server_ack_confirms_and_timer_i_terminates() -> None:
    layer, req, key = start_server()
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(busy, 0.0)
    sent(layer)
    layer.receive(ack_for(req, busy), UAC, 0.2)
    assert events(layer) == []  # the ACK to a non-2xx stays inside the transaction
    assert layer.state(key) is TransactionState.CONFIRMED
    # Retransmitted ACKs and INVITEs are absorbed in Confirmed.
    layer.receive(ack_for(req, busy), UAC, 0.7)
    layer.receive(request(), UAC, 0.8)
    assert sent(layer) == []
    assert events(layer) == []
    fired = run_timers(layer, 100.0)
    assert retransmit_times(fired) == []  # timer G stopped
    assert fired[-1][0] == pytest.approx(0.2 + T4)
    assert events(layer) == [TransactionTerminated(key)]


def test_invite_server_reliable_transport_keeps_timer_h_and_ends_on_ack() -> None:
    layer, req, key = start_server(addr=UAC_TCP, transport="TCP")
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(busy, 0.0)
    assert sent(layer) == [busy]
    assert layer.get_timer() == 32.0  # only timer H; no timer G over TCP
    layer.receive(ack_for(req, busy), UAC_TCP, 0.1)
    assert events(layer) == [TransactionTerminated(key)]  # timer I is zero


def test_invite_server_reliable_transport_times_out_without_ack() -> None:
    layer, req, key = start_server(addr=UAC_TCP, transport="TCP")
    layer.send_response(make_response(req, 500, to_tag="t1"), 0.0)
    sent(layer)
    fired = run_timers(layer, 100.0)
    assert retransmit_times(fired) == []
    assert events(layer) == [TransactionTimeout(key), TransactionTerminated(key)]


def test_2xx_passed_up_and_retransmissions_absorbed() -> None:
    layer, req, key = start_server()
    ok = make_response(req, 200, to_tag="t1")
    layer.send_response(ok, 0.1)
    assert sent(layer) == [ok]
    assert layer.state(key) is TransactionState.ACCEPTED
    # RFC 6026 §7.1: retransmitted INVITEs are absorbed, the TU's own 2xx
    # retransmissions pass through, and the ACK (new branch) goes to the TU.
    layer.receive(request(), UAC, 0.6)
    assert sent(layer) == []
    assert events(layer) == []
    layer.send_response(ok, 0.6)
    assert sent(layer) == [ok]
    ack = ack_for(req, ok, branch="z9hG4bKack2xx")
    layer.receive(ack, UAC, 0.7)
    assert events(layer) == [RequestReceived(ack, UAC, None)]
    with pytest.raises(TransactionStateError):
        layer.send_response(make_response(req, 486, to_tag="t1"), 0.8)
    run_timers(layer, 100.0)
    assert events(layer) == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_invite_server_rejects_response_after_final() -> None:
    layer, req, key = start_server()
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0)
    with pytest.raises(TransactionStateError):
        layer.send_response(make_response(req, 180, to_tag="t1"), 0.1)


def test_ack_before_final_response_is_passed_up() -> None:
    layer, req, key = start_server()
    ack = ack_for(req, response(req, 180))
    layer.receive(ack, UAC, 0.1)
    assert events(layer) == [RequestReceived(ack, UAC, None)]
    assert layer.state(key) is TransactionState.PROCEEDING


def test_ack_without_transaction_is_passed_up_with_no_key() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKnew", to_tag="t1")
    layer.receive(ack, UAC, 0.0)
    assert events(layer) == [RequestReceived(ack, UAC, None)]
    assert len(layer) == 0


# -- non-INVITE server (§17.2.2) -------------------------------------------


def test_non_invite_server_absorbs_retransmission() -> None:
    layer, req, key = start_server("REGISTER", uri="sip:example.com")
    assert layer.state(key) is TransactionState.TRYING
    assert layer.get_timer() is None  # no automatic 100 for non-INVITE
    # Trying: absorbed, nothing to resend.
    layer.receive(request("REGISTER", uri="sip:example.com"), UAC, 0.5)
    assert sent(layer) == []
    assert events(layer) == []
    # Proceeding: the last provisional is resent.
    trying = make_response(req, 100)
    layer.send_response(trying, 0.6)
    assert layer.state(key) is TransactionState.PROCEEDING
    sent(layer)
    layer.receive(request("REGISTER", uri="sip:example.com"), UAC, 1.5)
    assert sent(layer) == [trying]
    # Completed: the final response is resent, still nothing for the TU.
    ok = make_response(req, 200, to_tag="t1")
    layer.send_response(ok, 2.0)
    # Completed keeps only the bytes first sent (no parsed objects for timer J's 32 s).
    assert sent(layer) == [bytes(ok)]
    assert layer.state(key) is TransactionState.COMPLETED
    layer.receive(request("REGISTER", uri="sip:example.com"), UAC, 3.5)
    assert sent(layer) == [bytes(ok)]
    assert events(layer) == []


def test_non_invite_server_timer_j_terminates_completed() -> None:
    layer, req, key = start_server("OPTIONS")
    layer.send_response(make_response(req, 200, to_tag="t1"), 1.0)
    sent(layer)
    assert layer.get_timer() == 1.0 + 32.0
    fired = run_timers(layer, 100.0)
    assert retransmit_times(fired) == []  # a server never retransmits non-INVITE responses
    assert events(layer) == [TransactionTerminated(key)]


def test_non_invite_server_timer_j_is_zero_on_reliable_transport() -> None:
    layer, req, key = start_server("REGISTER", addr=UAC_TCP, transport="TCP")
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    assert statuses(sent(layer)) == [200]
    assert events(layer) == [TransactionTerminated(key)]
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_non_invite_server_rejects_response_after_final() -> None:
    layer, req, key = start_server("OPTIONS")
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    with pytest.raises(TransactionStateError):
        layer.send_response(make_response(req, 200, to_tag="t1"), 0.1)


def test_send_response_without_transaction_raises_key_error() -> None:
    layer = TransactionLayer()
    with pytest.raises(KeyError):
        layer.send_response(make_response(request("OPTIONS"), 200), 0.0)
    layer, req, key = start_server("OPTIONS", addr=UAC_TCP, transport="TCP")
    layer.send_response(make_response(req, 200), 0.0)
    with pytest.raises(KeyError):
        layer.send_response(make_response(req, 200), 0.1)


@pytest.mark.parametrize(
    ("via_params", "expected"),
    [
        # RFC 3581 §4: rport (filled in by the transport, or left empty) means the source.
        (";rport=34567;received=203.0.113.7", ("UDP", "203.0.113.7", 34567)),
        (";rport", ("UDP", "203.0.113.7", 34567)),
        # RFC 3261 §18.2.2: received address, sent-by port.
        (";received=203.0.113.7", ("UDP", "203.0.113.7", 5070)),
        ("", ("UDP", "10.0.0.5", 5070)),
    ],
)
def test_udp_responses_follow_via_received_and_rport(via_params: str, expected: Address) -> None:
    nat: Address = ("UDP", "203.0.113.7", 34567)
    layer = TransactionLayer()
    req = request("OPTIONS", sent_by=f"10.0.0.5:5070{via_params}")
    layer.receive(req, nat, 0.0)
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    [(_, addr)] = layer.messages_to_send()
    assert addr == expected


def test_reliable_responses_go_back_on_the_connection() -> None:
    conn: Address = ("TCP", "203.0.113.7", 34567)
    layer = TransactionLayer()
    req = request("OPTIONS", transport="TCP", sent_by="10.0.0.5:5070")
    layer.receive(req, conn, 0.0)
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    [(_, addr)] = layer.messages_to_send()
    assert addr == conn


# -- matching (§17.1.3, §17.2.3) -------------------------------------------


def test_server_matching_uses_branch_sent_by_and_method() -> None:
    layer, req, key = start_server()
    layer.receive(request(sent_by="192.0.2.99:5060"), UAC, 0.1)
    layer.receive(request("OPTIONS"), UAC, 0.1)
    keys = [e.key for e in events(layer) if isinstance(e, RequestReceived)]
    assert keys == [
        TransactionKey(BRANCH, "192.0.2.99:5060", "INVITE", True),
        TransactionKey(BRANCH, "192.0.2.10:5060", "OPTIONS", True),
    ]
    assert len(layer) == 3


def test_sent_by_host_compares_case_insensitively() -> None:
    layer, req, key = start_server(sent_by="PC33.Example.com")
    layer.receive(request(sent_by="pc33.example.com"), UAC, 0.5)
    assert events(layer) == []
    assert len(layer) == 1


def test_client_response_matches_branch_and_cseq_method() -> None:
    layer, invite, invite_key = start_client()
    layer.receive(response(invite, 180), UAS, 0.1)
    cancel = request("CANCEL")
    cancel_key = layer.send_request(cancel, UAS, 0.2)
    assert cancel_key == TransactionKey(BRANCH, "", "CANCEL", False)
    assert cancel_key != invite_key
    events(layer)
    ok = response(cancel, 200)
    layer.receive(ok, UAS, 0.3)
    terminated = response(invite, 487)
    layer.receive(terminated, UAS, 0.3)
    assert events(layer)[:2] == [ResponseReceived(ok, cancel_key)] + [
        ResponseReceived(terminated, invite_key)
    ]


def test_stray_response() -> None:
    layer, req, key = start_client("OPTIONS")
    other = response(request("OPTIONS", branch="z9hG4bKother"), 200)
    wrong_method = response(request("INFO"), 200)
    no_branch = response(request("OPTIONS", branch=None), 200)
    for resp in (other, wrong_method, no_branch):
        layer.receive(resp, UAS, 0.1)
    assert events(layer) == [
        StrayResponse(other, UAS),
        StrayResponse(wrong_method, UAS),
        StrayResponse(no_branch, UAS),
    ]
    assert layer.state(key) is TransactionState.TRYING


def test_rfc2543_fallback_matching() -> None:
    layer, req, key = start_server(branch=None)
    assert not key.branch.startswith("z9hG4bK")
    # An identical retransmission matches; changing any key field does not.
    layer.receive(request(branch=None), UAC, 0.1)
    assert events(layer) == []
    layer.receive(request(branch=None, cseq=2), UAC, 0.1)
    layer.receive(request(branch=None, from_tag="other"), UAC, 0.1)
    layer.receive(request(branch=None, call_id="call-2"), UAC, 0.1)
    assert [type(e) for e in events(layer)] == [RequestReceived] * 3
    # A response finds the transaction without a cookie branch.
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(busy, 0.2)
    assert sent(layer) == [busy]
    # An ACK whose To tag is not the response's belongs to nothing.
    wrong = ack_for(req, make_response(req, 486, to_tag="zzz"))
    layer.receive(wrong, UAC, 0.3)
    assert events(layer) == [RequestReceived(wrong, UAC, None)]
    assert layer.state(key) is TransactionState.COMPLETED
    # The right ACK confirms it.
    layer.receive(ack_for(req, busy), UAC, 0.4)
    assert events(layer) == []
    assert layer.state(key) is TransactionState.CONFIRMED


def test_rfc2543_fallback_distinguishes_old_style_branches() -> None:
    layer, req, key = start_server(branch="1")
    layer.receive(request(branch="1"), UAC, 0.1)
    layer.receive(request(branch="2"), UAC, 0.1)
    assert [type(e) for e in events(layer)] == [RequestReceived]
    assert len(layer) == 2


def test_rfc2543_request_with_other_request_uri_is_dropped() -> None:
    layer, req, key = start_server(branch=None)
    layer.receive(request(branch=None, uri="sip:carol@example.com"), UAC, 0.1)
    assert events(layer) == []
    assert sent(layer) == []
    assert len(layer) == 1


def test_cancel_finds_invite_server_transaction() -> None:
    layer, invite, invite_key = start_server()
    layer.send_response(make_response(invite, 180, to_tag="t1"), 0.1)
    sent(layer)
    cancel = request("CANCEL")
    layer.receive(cancel, UAC, 1.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    cancel_key = event.key
    assert cancel_key == TransactionKey(BRANCH, "192.0.2.10:5060", "CANCEL", True)
    assert layer.find_invite_server(cancel) == invite_key
    # §9.2: 200 to the CANCEL through its own transaction, 487 through the INVITE's.
    ok = make_response(cancel, 200, to_tag="t1")
    terminated = make_response(invite, 487, to_tag="t1")
    layer.send_response(ok, 1.0)
    layer.send_response(terminated, 1.0)
    assert sent(layer) == [bytes(ok), terminated]
    assert layer.state(cancel_key) is TransactionState.COMPLETED
    assert layer.state(invite_key) is TransactionState.COMPLETED


def test_cancel_without_invite_finds_nothing() -> None:
    layer = TransactionLayer()
    cancel = request("CANCEL")
    layer.receive(cancel, UAC, 0.0)
    assert layer.find_invite_server(cancel) is None
    assert layer.find_invite_server(request("CANCEL", branch="z9hG4bKelse")) is None


def test_cancel_finds_rfc2543_invite_server_transaction() -> None:
    layer, invite, invite_key = start_server(branch=None)
    cancel = request("CANCEL", branch=None)
    layer.receive(cancel, UAC, 0.5)
    [event] = events(layer)
    assert isinstance(event, RequestReceived) and event.key != invite_key
    assert layer.find_invite_server(cancel) == invite_key
    assert layer.find_invite_server(request("CANCEL", branch=None, uri="sip:x@y")) is None


# -- sending ---------------------------------------------------------------


def test_send_ack_is_stateless() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKack1", to_tag="t1")
    key = layer.send_request(ack, UAS, 0.0)
    assert key == TransactionKey("z9hG4bKack1", "", "ACK", False)
    assert layer.messages_to_send() == [(ack, UAS)]
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_send_request_requires_magic_cookie_branch() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(request("OPTIONS", branch="old-style"), UAS, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request("OPTIONS", branch=None), UAS, 0.0)
    assert layer.messages_to_send() == []


def test_send_request_refuses_duplicate_branch() -> None:
    layer, req, key = start_client("OPTIONS")
    with pytest.raises(ValueError):
        layer.send_request(request("OPTIONS"), UAS, 0.1)
    assert sent(layer) == []


# -- transport errors (§17.1.4, §17.2.4) -----------------------------------


def test_transport_error_reported() -> None:
    layer, req, key = start_client()
    layer.transport_error(key, 0.1)
    assert events(layer) == [TransportFailure(key), TransactionTerminated(key)]
    assert len(layer) == 0
    assert run_timers(layer, 100.0) == []


def test_transport_error_on_server_transaction() -> None:
    layer, req, key = start_server("OPTIONS")
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    layer.transport_error(key, 0.0)
    assert events(layer) == [TransportFailure(key), TransactionTerminated(key)]
    assert layer.state(key) is None


def test_outgoing_key_maps_sent_messages_back_to_their_transaction() -> None:
    layer, req, key = start_client()
    layer.receive(response(req, 486), UAS, 0.1)
    [ack] = sent(layer)
    assert isinstance(ack, Request)
    assert outgoing_key(req) == outgoing_key(ack) == key
    layer.transport_error(outgoing_key(ack), 0.2)
    assert events(layer)[-2:] == [TransportFailure(key), TransactionTerminated(key)]
    server, invite, server_key = start_server()
    ringing = make_response(invite, 180, to_tag="t1")
    server.send_response(ringing, 0.0)
    assert outgoing_key(ringing) == server_key
    stateless_ack = request("ACK", branch="z9hG4bKack2xx", to_tag="t1")
    layer.transport_error(outgoing_key(stateless_ack), 0.3)
    assert events(layer) == []


def test_transport_error_for_unknown_key_is_ignored() -> None:
    layer, req, key = start_client()
    layer.transport_error(TransactionKey("z9hG4bKnone", "", "INVITE", False), 0.0)
    layer.transport_error(key._replace(server=True), 0.0)
    assert events(layer) == []
    assert len(layer) == 1


# -- reliability and timer plumbing ----------------------------------------


def test_reliable_transport_has_no_retransmissions() -> None:
    invite_layer, _, invite_key = start_client(addr=UAS_TCP, transport="TCP")
    register_layer, _, register_key = start_client("REGISTER", addr=UAS_TCP, transport="TCP")
    for layer, key in ((invite_layer, invite_key), (register_layer, register_key)):
        assert layer.get_timer() == 32.0  # only timer B / F
        fired = run_timers(layer, 100.0)
        assert retransmit_times(fired) == []
        assert events(layer) == [TransactionTimeout(key), TransactionTerminated(key)]
    for transport in ("TLS", "WS", "WSS"):
        layer = TransactionLayer()
        layer.send_request(request("OPTIONS"), (transport, "198.51.100.20", 443), 0.0)
        sent(layer)
        assert retransmit_times(run_timers(layer, 100.0)) == []


def test_get_timer_skips_cancelled_deadlines() -> None:
    layer, req, key = start_client("REGISTER")
    layer.receive(response(req, 200), UAS, 0.1)
    # Timers E (0.5) and F (32) are still in the heap but no longer count.
    assert layer.get_timer() == pytest.approx(0.1 + T4)


def test_late_handle_timer_retransmits_once() -> None:
    layer, req, key = start_client()
    layer.handle_timer(10.0)  # a stalled loop: three timer A deadlines have passed
    assert sent(layer) == [req]
    assert layer.get_timer() == pytest.approx(11.0)


def test_timers_of_many_transactions_fire_in_deadline_order() -> None:
    layer = TransactionLayer()
    first = request("OPTIONS", branch="z9hG4bK1")
    second = request("OPTIONS", branch="z9hG4bK2")
    layer.send_request(first, UAS, 0.0)
    layer.send_request(second, UAS, 0.2)
    sent(layer)
    fired = run_timers(layer, 1.0)
    assert [(at, messages) for at, messages in fired] == [(0.5, [first]), (0.7, [second])]


def test_custom_t1_scales_timers() -> None:
    layer = TransactionLayer(Timers(t1=0.1, t2=0.4))
    layer.send_request(request("OPTIONS"), UAS, 0.0)
    sent(layer)
    fired = run_timers(layer, 10.0)
    assert retransmit_times(fired)[:4] == pytest.approx([0.1, 0.3, 0.7, 1.1])
    assert fired[-1][0] == pytest.approx(6.4)


# -- two layers over a lossy link (aioquic-style) --------------------------


def transfer(
    source: TransactionLayer, source_addr: Address, sink: TransactionLayer, now: float
) -> int:
    """Move every queued message from ``source`` to ``sink`` through bytes."""
    messages = source.messages_to_send()
    for message, _ in messages:
        sink.receive(parse_message(bytes(message)), source_addr, now)
    return len(messages)


def drop(source: TransactionLayer) -> int:
    """Lose every queued message of ``source``."""
    return len(source.messages_to_send())


def test_invite_rejected_over_lossy_link_completes_on_both_sides() -> None:
    client, server = TransactionLayer(), TransactionLayer()
    invite = request()
    client_key = client.send_request(invite, UAS, 0.0)
    assert drop(client) == 1  # the INVITE is lost
    client.handle_timer(0.5)  # timer A
    transfer(client, UAC, server, 0.5)
    [event] = events(server)
    assert isinstance(event, RequestReceived) and event.key is not None
    server_key = event.key
    server.send_response(make_response(event.request, 486, to_tag="srv"), 0.55)
    assert drop(server) == 1  # the 486 is lost
    client.handle_timer(1.5)  # timer A again: the server resends the 486
    transfer(client, UAC, server, 1.5)
    transfer(server, UAS, client, 1.5)
    assert [type(e) for e in events(client)] == [ResponseReceived]
    transfer(client, UAC, server, 1.5)  # the ACK
    assert server.state(server_key) is TransactionState.CONFIRMED
    assert client.state(client_key) is TransactionState.COMPLETED
    run_timers(server, 100.0)
    run_timers(client, 100.0)
    assert events(server) == [TransactionTerminated(server_key)]
    assert events(client) == [TransactionTerminated(client_key)]


def test_completed_udp_transactions_are_invisible_to_the_garbage_collector() -> None:
    # Thousands wait out timer J on a busy registrar; parsed messages would make
    # every full collection walk dozens of objects each.
    layer = TransactionLayer()
    keys = []
    for n in range(50):
        req = request("REGISTER", branch=f"z9hG4bKgc{n}", uri="sip:example.com")
        layer.receive(req, UAC, 0.0)
        layer.send_response(make_response(req, 200), 0.0)
        keys.append(_server_key(req, "REGISTER"))
    layer.messages_to_send()
    # A tuple is untracked once its items are, so nesting takes a second pass.
    gc.collect()
    gc.collect()
    assert all(layer.state(key) is TransactionState.COMPLETED for key in keys)
    entries = [(plain, value) for plain, value in layer._completed.items()]
    assert len(entries) == 50
    assert not any(gc.is_tracked(plain) or gc.is_tracked(value) for plain, value in entries)


def test_reopen_address_for_a_tcp_response_is_the_via_sent_by_at_received() -> None:
    """§18.2.2: the request's connection is gone, so the response's connection goes to
    ``received`` at the sent-by port; ``rport`` (the old connection's port) is not used."""
    req = request(transport="TCP", sent_by="client.example.com:5070")
    req.via.params.update(received="192.0.2.10", rport="40001")
    req.headers.replace_first("Via", str(req.via))
    assert reopen_address(response(req, 200), UAC_TCP) == ("TCP", "192.0.2.10", 5070)
    bare = request(transport="TCP", sent_by="192.0.2.10")
    assert reopen_address(response(bare, 200), UAC_TCP) == ("TCP", "192.0.2.10", 5060)
    # A request goes where it was addressed (§18.1.1); so does a response on UDP.
    assert reopen_address(req, UAS_TCP) == UAS_TCP
    assert reopen_address(response(request(), 200), UAC) == UAC
    assert reopen_address(None, UAC_TCP) == UAC_TCP  # a stateless reply: no Via to read
