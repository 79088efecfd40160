"""Mutated requests through the whole service (parser, transactions, registrar, digest).

Whatever arrives, :meth:`SipService.receive` must not raise: it answers (a 4xx/5xx
naming the problem, or a real reply) or drops and counts.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_service import PHONE, make_service, request
from voipcore.sip.message import parse_message
from voipcore.sip.transaction import Address

LINES = [
    line.decode()
    for line in request("REGISTER", extra="Contact: <sip:alice@192.0.2.10>;expires=60\r\n").split(
        b"\r\n"
    )[1:]
    if line
]
NASTY = [
    "",
    " ",
    ";;;",
    "<",
    ">",
    '"',
    "\x00",
    "Digest",
    'Digest username="alice", realm="test.local", nonce="x", uri="sip:a", response="0"',
    "*",
    "0",
    "-1",
    "99999999999999999999",
    "sip:",
    "<sip:@>",
    "SIP/2.0/UDP",
    "1 REGISTER REGISTER",
    "tel:+1;;",
    "é",
]
HEADERS = [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Expires",
    "Max-Forwards",
    "Authorization",
    "Require",
    "Content-Length",
    "Route",
    "Record-Route",
    "v",
    "m",
]


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["REGISTER", "OPTIONS", "INVITE", "BYE", "CANCEL", "ACK", "XYZ"]))
    uri = draw(st.sampled_from(["sip:test.local", "sip:a@b", "sips:x", "tel:+1", "<sip:x>", ""]))
    lines = list(LINES)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["drop", "dup", "add", "garble"]))
        index = draw(st.integers(0, max(0, len(lines) - 1)))
        if action == "drop" and lines:
            del lines[index]
        elif action == "dup" and lines:
            lines.insert(index, lines[index])
        elif action == "add":
            lines.insert(index, f"{draw(st.sampled_from(HEADERS))}: {draw(st.sampled_from(NASTY))}")
        elif lines:
            name = lines[index].split(":", 1)[0]
            lines[index] = f"{name}: {draw(st.sampled_from(NASTY) | st.text(max_size=30))}"
    body = draw(st.binary(max_size=40))
    head = "\r\n".join([f"{method} {uri} SIP/2.0", *lines])
    return head.encode("utf-8", "surrogatepass") + b"\r\n\r\n" + body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_request(), transport=st.sampled_from(["UDP", "TCP"]))
def test_mutated_requests_never_break_the_service(data: bytes, transport: str) -> None:
    service = make_service()
    addr: Address = (transport, PHONE[1], PHONE[2])
    service.receive(data, addr, 0.0)
    for outgoing in service.datagrams_to_send():
        reply = parse_message(outgoing.data)  # whatever we send must itself be valid SIP
        assert reply is not None
    # ... and the service still answers a good request afterwards.
    service.receive(request("OPTIONS", branch="z9hG4bKafter"), PHONE, 1.0)
    assert service.datagrams_to_send()[-1].data.startswith(b"SIP/2.0 200 OK")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_break_the_service(data: bytes) -> None:
    service = make_service()
    service.receive(data, PHONE, 0.0)
    for outgoing in service.datagrams_to_send():
        parse_message(outgoing.data)
