"""The Twilio stand-in over real UDP on loopback, driven by a minimal SIP client."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from media import g711
from media.dtmf import DtmfEnd
from media.tones import CALL_PROGRESS
from tests.audio import assert_tone, until_heard
from tests.carrier import (
    CPS_REASON,
    REALM,
    CallState,
    CarrierCall,
    CarrierMedia,
    CarrierThread,
    CpsWindow,
    Party,
    SessionDescription,
    TwilioCarrier,
)
from tests.harness import wait_for_async
from tests.rtpphone import RtpPhone
from voipcore.sip.digest import Challenge, answer_challenge
from voipcore.sip.message import Request, Response, make_response, parse_message
from voipcore.sip.transaction import Timers
from voipcore.sip.uri import NameAddr, SipUri

pytestmark = pytest.mark.integration

CALLER = "+14045550100"
CALLEE = "+14045551234"
USER, PASSWORD = "voipcore", "trunk-secret"
Address = tuple[str, int]
#: Seconds a test waits for what must come; generous, as it only bounds a failing test.
DEADLINE = 10.0
#: Seconds of tone a test sends, and waits to have received, before it checks the audio.
SPAN = 1.0
#: RTP packets of 20 ms in :data:`SPAN`.
FRAMES = round(SPAN / 0.02)
#: The tone the customer's phone sends while the carrier plays its own.
PHONE_HZ = 440.0


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[Request | Response, Address]]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.queue.put_nowait((parse_message(data), (str(addr[0]), int(addr[1]))))


@dataclass
class Dialed:
    """An INVITE the customer sent and every response to it."""

    invite: Request
    responses: list[Response]

    @property
    def final(self) -> Response:
        return self.responses[-1]

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


class Customer:
    """voipcore's side of the trunk, reduced to one UDP socket that writes and reads SIP."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        queue: asyncio.Queue[tuple[Request | Response, Address]],
        server: Address,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.server = server
        host, port = transport.get_extra_info("sockname")[:2]
        self.address: Address = (str(host), int(port))

    @classmethod
    async def open(cls, server: Address) -> Customer:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Request | Response, Address]] = asyncio.Queue()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Inbox(queue), local_addr=("127.0.0.1", 0)
        )
        return cls(transport, queue, server)

    def close(self) -> None:
        self.transport.close()

    def send(self, message: Request | Response, dest: Address | None = None) -> None:
        self.transport.sendto(bytes(message), dest or self.server)

    async def recv(self, timeout: float = DEADLINE) -> Request | Response:
        message, _ = await asyncio.wait_for(self.queue.get(), timeout)
        return message

    async def response(self, method: str = "INVITE", timeout: float = DEADLINE) -> Response:
        """The next response to ``method``, skipping retransmissions of earlier ones."""
        while True:
            message = await self.recv(timeout)
            if isinstance(message, Response) and message.cseq.method == method:
                return message

    async def request(self, timeout: float = DEADLINE) -> Request:
        while True:
            message = await self.recv(timeout)
            if isinstance(message, Request):
                return message

    def request_to(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_tag: str,
        cseq: int,
        caller: str = CALLER,
        to: str | None = None,
        body: bytes = b"",
    ) -> Request:
        request = Request(method, uri)
        h = request.headers
        h.add(
            "Via", f"SIP/2.0/UDP 127.0.0.1:{self.address[1]};branch=z9hG4bK{secrets.token_hex(8)}"
        )
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:{caller}@voipcore.test>;tag={from_tag}")
        h.add("To", to or f"<{uri}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} {method}")
        h.add("Contact", f"<sip:voipcore@127.0.0.1:{self.address[1]}>")
        if body:
            h.add("Content-Type", "application/sdp")
            request.body = body
        return request

    def ack(self, invite: Request, response: Response) -> None:
        """ACK a final response: same branch for non-2xx (§17.1.1.3), a new one for 2xx."""
        uri = invite.uri_text
        if response.status < 300 and response.contacts:
            uri = contact_uri(response)
        ack = Request("ACK", uri)
        via = invite.headers.get_all("Via")[0]
        if response.status < 300:
            via = f"SIP/2.0/UDP 127.0.0.1:{self.address[1]};branch=z9hG4bK{secrets.token_hex(8)}"
        ack.headers.add("Via", via)
        ack.headers.add("Max-Forwards", "70")
        ack.headers.add("From", invite.headers.get("From") or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("Call-ID", invite.call_id)
        ack.headers.add("CSeq", f"{invite.cseq.seq} ACK")
        self.send(ack)

    async def dial(
        self,
        number: str,
        *,
        domain: str = "voipcore.pstn.twilio.com",
        caller: str = CALLER,
        password: str = PASSWORD,
        rtp: Address = ("127.0.0.1", 40000),
        until: int = 200,
        acknowledge: bool = True,
    ) -> tuple[Dialed, Dialed]:
        """INVITE ``number``, answer the 407, and read responses until one >= ``until``.

        Returns the challenged attempt and the authenticated one; final responses are ACKed.
        """
        uri = f"sip:{number}@{domain}"
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        sdp = offer(rtp)
        first = self.request_to("INVITE", uri, call_id=call_id, from_tag=tag, cseq=1, caller=caller)
        first.body = sdp
        first.headers.add("Content-Type", "application/sdp")
        self.send(first)
        challenged = Dialed(first, [await self.response()])
        self.ack(first, challenged.final)
        assert challenged.final.status == 407, challenged.statuses
        value = challenged.final.headers.get("Proxy-Authenticate")
        assert value is not None
        creds = answer_challenge(
            Challenge.parse(value),
            method="INVITE",
            uri=uri,
            username=USER,
            password=password,
            cnonce=secrets.token_hex(8),
        )
        second = self.request_to(
            "INVITE", uri, call_id=call_id, from_tag=tag, cseq=2, caller=caller, body=sdp
        )
        second.headers.add("Proxy-Authorization", str(creds))
        self.send(second)
        dialed = Dialed(second, [])
        while not dialed.responses or dialed.final.status < until:
            dialed.responses.append(await self.response())
        if acknowledge and dialed.final.status >= 200:
            self.ack(second, dialed.final)
        return challenged, dialed

    def in_dialog(self, dialed: Dialed, method: str, cseq: int, body: bytes = b"") -> Request:
        """A request inside the dialog the 2xx to ``dialed`` set up (RFC 3261 §12.2.1.1)."""
        answer = dialed.final
        tag = dialed.invite.from_.tag or ""
        target = contact_uri(answer)
        return self.request_to(
            method,
            target,
            call_id=dialed.invite.call_id,
            from_tag=tag,
            cseq=cseq,
            to=answer.headers.get("To"),
            body=body,
        )


def offer(rtp: Address, direction: str = "sendrecv") -> bytes:
    host, port = rtp
    return (
        f"v=0\r\no=voipcore 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={direction}\r\n"
    ).encode()


def contact_uri(message: Request | Response) -> str:
    contact = message.contacts[0]
    assert isinstance(contact, NameAddr)
    return str(contact.uri)


def ends(phone: RtpPhone) -> str:
    """Digits of the RFC 4733 key presses ``phone`` received, in order."""
    return "".join(e.digit for e in phone.dtmf_events() if isinstance(e, DtmfEnd))


def media_address(response: Response) -> Address:
    sdp = SessionDescription.parse(response.body)
    return sdp.address, sdp.port


def run(test: Callable[[TwilioCarrier, Customer], Awaitable[None]], **options: Any) -> None:
    """Run ``test`` against a started carrier (credentials and caller ID set up)."""
    options.setdefault("credentials", {USER: PASSWORD})
    options.setdefault("caller_ids", {CALLER})

    async def main() -> None:
        async with TwilioCarrier(**options) as carrier:
            customer = await Customer.open(carrier.address())
            try:
                await test(carrier, customer)
            finally:
                customer.close()

    asyncio.run(main())


async def settle(phone: RtpPhone, count: int = FRAMES) -> None:
    """Wait until ``phone`` has received ``count`` RTP packets."""
    await wait_for_async(
        lambda: len(phone.received) >= count,
        lambda: f"the phone received {len(phone.received)} of {count} RTP packets",
    )


async def recorded(media: CarrierMedia, count: int = FRAMES) -> None:
    """Wait until the carrier has received ``count`` RTP packets."""
    await wait_for_async(
        lambda: media.packets_received >= count,
        lambda: f"the carrier received {media.packets_received} of {count} RTP packets",
    )


async def hear_each_other(
    phone: RtpPhone, dest: Address, call: CarrierCall, pt: int = g711.PCMU
) -> None:
    """The phone sends :data:`SPAN` of :data:`PHONE_HZ` to ``dest`` (payload type ``pt``)
    while ``call``'s party plays its tone: the carrier must record the phone's tone and
    the phone hear the party's, each alone (neither hears its own tone back).

    Waits for the tones themselves, not for packet counts: a transcoding server sends
    the carrier audio (silence) before the phone talks."""
    media, party = call.media, call.party
    assert media is not None and party is not None and party.media == "tone"
    await phone.send_tone(dest, PHONE_HZ, SPAN, pt)
    await until_heard(media.audio, PHONE_HZ, SPAN)
    await until_heard(lambda: phone.audio(pt), party.tone_hz, SPAN)


# -- termination rules -------------------------------------------------------


def test_first_invite_is_challenged_then_accepted_with_the_right_credentials() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        challenged, dialed = await customer.dial(CALLEE, domain="voipcore.pstn.dublin.twilio.com")
        challenge = Challenge.parse(challenged.final.headers.get("Proxy-Authenticate") or "")
        assert (challenge.realm, challenge.algorithm, challenge.qop) == (REALM, "MD5", ("auth",))
        assert dialed.statuses == [100, 200]
        answer = SessionDescription.parse(dialed.final.body)
        assert answer.payload_types == (0,) and answer.telephone_event == 101
        call = carrier.find_call(dialed.invite.call_id)
        assert call.statuses == [407, 100, 200]
        assert (call.from_number, call.to_number, call.uri_edge) == (CALLER, CALLEE, "dublin")
        assert call.request_uri == f"sip:{CALLEE}@voipcore.pstn.dublin.twilio.com"
        assert call.state is CallState.CONFIRMED and call.caller_id_verified

    run(test)


def test_wrong_password_gets_403() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE, password="guess")
        assert dialed.statuses == [403]
        assert carrier.calls[0].twilio_error == 32202

    run(test)


def test_number_not_in_e164_is_rejected() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial("4045551234")
        assert dialed.final.status == 404
        assert carrier.calls[0].twilio_error == 32101

    run(test)


def test_invite_for_another_domain_is_dropped_unanswered() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        uri = f"sip:{CALLEE}@pstn.example.com"
        invite = customer.request_to("INVITE", uri, call_id="x1", from_tag="t1", cseq=1)
        customer.send(invite)
        ping = customer.request_to(
            "OPTIONS", "sip:voipcore.pstn.twilio.com", call_id="p", from_tag="t", cseq=1
        )
        customer.send(ping)
        first = await customer.recv()
        assert isinstance(first, Response) and first.cseq.method == "OPTIONS"
        assert first.status == 200 and "INVITE" in (first.headers.get("Allow") or "")
        assert [d.reason for d in carrier.dropped] == ["not-our-domain"]
        assert carrier.calls == []

    run(test)


def test_wrong_domain_is_answered_when_configured() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        uri = f"sip:{CALLEE}@pstn.example.com"
        customer.send(customer.request_to("INVITE", uri, call_id="x1", from_tag="t1", cseq=1))
        assert (await customer.response()).status == 404

    run(test, wrong_domain_status=404)


def test_second_invite_within_a_second_gets_503_cps_limit_exceeded() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, first = await customer.dial(CALLEE)
        _, second = await customer.dial(CALLEE)
        assert first.final.status == 200
        assert (second.final.status, second.final.reason) == (503, CPS_REASON)
        assert second.final.headers.get("Retry-After") == "1"
        setups = [call.attempts[-1].at for call in carrier.calls]
        assert 0 <= setups[1] - setups[0] < 1.0

    run(test, cps=1)


def test_cps_window_slides_over_one_second() -> None:
    window = CpsWindow(2)
    assert window.admit(10.0) and window.admit(10.5)
    assert not window.admit(10.9)
    assert window.admit(11.0)  # the setup at 10.0 left the window
    assert not window.admit(11.4)
    assert window.admit(11.51)


@pytest.mark.parametrize(("policy", "status"), [("reject", 403), ("allow", 200)])
def test_unverified_caller_id(policy: str, status: int) -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE, caller="+14045559999")
        assert dialed.final.status == status
        assert carrier.calls[0].caller_id_verified is False
        if status == 403:
            assert dialed.final.reason == "Caller ID is unauthorized"

    run(test, caller_id_policy=policy)


@pytest.mark.parametrize(
    ("party", "statuses"),
    [
        (Party.busy(), [100, 486]),
        (Party.no_answer(after=0.2), [100, 180, 480]),
        (Party.no_answer(after=0.2, status=408), [100, 180, 408]),
        (Party.reject(503), [100, 503]),
        (Party(ring=0.1), [100, 180, 200]),
    ],
)
def test_called_party_behaviour(party: Party, statuses: list[int]) -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE)
        assert dialed.statuses == statuses
        assert carrier.calls[0].final_status == statuses[-1]

    run(test, parties={CALLEE: party})


def test_early_media_plays_ringback_before_the_answer() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        phone = RtpPhone.open()
        try:
            _, dialed = await customer.dial(CALLEE, rtp=phone.address)
            assert dialed.statuses == [100, 183, 200]
            early = dialed.responses[1]
            assert media_address(early) == media_address(dialed.final)
            # Silent once answered: everything the phone received was played while ringing.
            # US ringback: 440 + 480 Hz (ANSI T1.401), on for 2 s, longer than it rang here.
            await until_heard(lambda: phone.audio(0), CALL_PROGRESS["ringback"].freqs, SPAN)
        finally:
            phone.close()

    run(test, parties={CALLEE: Party(ring=SPAN + 0.2, early_media=True, media="silence")})


# -- media --------------------------------------------------------------------


def test_answered_call_plays_the_configured_tone() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        phone = RtpPhone.open()
        try:
            _, dialed = await customer.dial(CALLEE, rtp=phone.address)
            call = carrier.calls[0]
            await hear_each_other(phone, media_address(dialed.final), call)
            assert {r.packet.payload_type for r in phone.received} == {0}
            assert call.media is not None and phone.received[0].source == call.media.local
        finally:
            phone.close()

    run(test, parties={CALLEE: Party(tone_hz=1200)})


def test_echo_returns_the_audio_sent_under_its_own_ssrc() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        phone = RtpPhone.open()
        try:
            _, dialed = await customer.dial(CALLEE, rtp=phone.address)
            media = carrier.calls[0].media
            assert media is not None
            await phone.send_tone(media_address(dialed.final), 700, SPAN)
            await recorded(media)
            await settle(phone)
            packets = [r.packet for r in phone.received]
            assert {p.ssrc for p in packets} != {phone.ssrc} and len({p.ssrc for p in packets}) == 1
            seqs = [p.sequence_number for p in packets]
            assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
            assert media.packets_received == len(packets) == FRAMES
            assert_tone(media.audio(), 700, SPAN)
            assert_tone(phone.audio(0), 700, SPAN)
        finally:
            phone.close()

    run(test, parties={CALLEE: Party(media="echo")})


def test_dtmf_is_sent_after_answer_and_received_digits_are_recorded() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        phone = RtpPhone.open()
        try:
            _, dialed = await customer.dial(CALLEE, rtp=phone.address)
            dest = media_address(dialed.final)
            await phone.send_dtmf(dest, "4")
            await phone.send_dtmf(dest, "2")
            media = carrier.calls[0].media
            assert media is not None
            await wait_for_async(
                lambda: len(media.dtmf_received) == len(ends(phone)) == 2,
                lambda: (
                    f"digits: the carrier got {media.dtmf_received!r}, the phone {ends(phone)!r}"
                ),
            )
            assert media.dtmf_received == "42" and media.dtmf_sent == "1#"
            assert ends(phone) == "1#"
        finally:
            phone.close()

    run(test, parties={CALLEE: Party(media="silence", dtmf="1#", dtmf_delay=0.02)})


# -- dialogs -----------------------------------------------------------------


def test_bye_from_the_customer_ends_the_call() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE)
        customer.send(customer.in_dialog(dialed, "BYE", 3))
        assert (await customer.response("BYE")).status == 200
        call = carrier.calls[0]
        await asyncio.wait_for(call.ended(), DEADLINE)
        assert call.ended_by == "customer" and call.acked_at is not None

    run(test)


def test_hangup_from_the_carrier_sends_bye() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE)
        call = carrier.calls[0]
        hangup = asyncio.create_task(carrier.hangup(call))
        bye = await customer.request()
        assert bye.method == "BYE" and bye.call_id == dialed.invite.call_id
        assert bye.to.tag == dialed.invite.from_.tag and bye.from_.tag == dialed.final.to.tag
        customer.send(make_response(bye, 200))
        assert await asyncio.wait_for(hangup, DEADLINE) == 200
        assert call.state is CallState.ENDED and call.ended_by == "carrier"

    run(test)


def test_party_hangs_up_by_itself() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        await customer.dial(CALLEE)
        bye = await customer.request()
        assert bye.method == "BYE"
        customer.send(make_response(bye, 200))
        assert carrier.calls[0].ended_by == "carrier"

    run(test, parties={CALLEE: Party(hangup_after=0.1)})


def test_cancel_while_ringing_gets_487() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE, until=180)
        invite = dialed.invite
        cancel = Request("CANCEL", invite.uri_text)
        for name in ("Via", "From", "To", "Call-ID"):
            cancel.headers.add(name, invite.headers.get(name) or "")
        cancel.headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        customer.send(cancel)
        assert (await customer.response("CANCEL")).status == 200
        terminated = await customer.response("INVITE")
        customer.ack(invite, terminated)
        assert terminated.status == 487
        call = carrier.calls[0]
        assert call.statuses == [407, 100, 180, 487] and call.ended_by == "customer"

    run(test, parties={CALLEE: Party(ring=5)})


def test_hold_reinvite_is_answered_with_the_mirrored_direction() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        phone = RtpPhone.open()
        try:
            _, dialed = await customer.dial(CALLEE, rtp=phone.address)
            media = carrier.calls[0].media
            assert media is not None

            async def reinvite(cseq: int, direction: str) -> str:
                request = customer.in_dialog(
                    dialed, "INVITE", cseq, offer(phone.address, direction)
                )
                customer.send(request)
                ok = await customer.response()
                customer.ack(request, ok)
                assert ok.status == 200
                return SessionDescription.parse(ok.body).direction

            assert await reinvite(3, "sendonly") == "recvonly"
            # On hold the carrier only listens: it sends nothing while the phone's audio,
            # sent in real time, arrives.
            sent, received = media.packets_sent, media.packets_received
            await phone.send_tone(media.local, PHONE_HZ, 0.2)
            await recorded(media, received + 10)
            assert media.packets_sent == sent
            assert await reinvite(4, "sendrecv") == "sendrecv"
            await wait_for_async(
                lambda: media.packets_sent > sent, "the carrier did not resume sending"
            )
            assert [a.statuses for a in carrier.calls[0].reinvites] == [[200], [200]]
            assert not carrier.calls[0].on_hold
        finally:
            phone.close()

    run(test)


def test_requests_for_unknown_dialogs_get_481() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        uri = "sip:voipcore.pstn.twilio.com"
        bye = customer.request_to(
            "BYE", uri, call_id="nope", from_tag="a", cseq=1, to=f"<{uri}>;tag=b"
        )
        customer.send(bye)
        assert (await customer.response("BYE")).status == 481
        stray = customer.request_to("BYE", uri, call_id="nope2", from_tag="a", cseq=1)
        customer.send(stray)
        assert (await customer.response("BYE")).status == 481

    run(test)


def test_2xx_is_retransmitted_until_the_ack() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        _, dialed = await customer.dial(CALLEE, acknowledge=False)
        again = await customer.response()
        assert again.status == 200 and again.to.tag == dialed.final.to.tag
        customer.ack(dialed.invite, again)
        call = carrier.calls[0]
        await wait_for_async(lambda: call.acked_at is not None, "the carrier never took the ACK")
        # A retransmission sent before the carrier took the ACK may still be queued ...
        while not customer.queue.empty():
            late, _ = customer.queue.get_nowait()
            assert isinstance(late, Response) and late.status == 200
        # ... but none comes after it: 0.3 s spans the next two intervals (0.1 s, 0.2 s).
        await asyncio.sleep(0.3)
        assert customer.queue.empty()

    run(test, timers=Timers(t1=0.05))


# -- edges -------------------------------------------------------------------


def test_edge_down_drops_everything_until_it_comes_back() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        carrier.set_edge_down("ashburn")
        uri = "sip:voipcore.pstn.ashburn.twilio.com"
        customer.send(customer.request_to("OPTIONS", uri, call_id="o1", from_tag="a", cseq=1))
        await wait_for_async(lambda: carrier.dropped, "the OPTIONS never reached ashburn")
        assert [(d.edge, d.reason) for d in carrier.dropped] == [("ashburn", "edge-down")]
        ping = customer.request_to("OPTIONS", uri, call_id="o2", from_tag="a", cseq=1)
        customer.send(ping, carrier.address("umatilla"))
        # The first answer is umatilla's: ashburn, which dropped its OPTIONS, sent nothing.
        answer = await customer.recv()
        assert isinstance(answer, Response) and (answer.call_id, answer.status) == ("o2", 200)
        carrier.set_edge_down("ashburn", False)
        customer.send(customer.request_to("OPTIONS", uri, call_id="o3", from_tag="a", cseq=1))
        assert (await customer.response("OPTIONS")).call_id == "o3"

    run(test, edges=("ashburn", "umatilla"))


# -- origination -------------------------------------------------------------


def test_origination_call_to_a_plain_udp_socket() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        phone = RtpPhone.open()
        try:
            call = await carrier.call(
                "+14155550123",
                "+14045550100",
                customer.address,
                headers={"X-Twilio-AccountSid": "AC" + "1" * 32},
            )
            invite = await customer.request()
            assert invite.method == "INVITE"
            assert invite.uri_text == f"sip:+14045550100@127.0.0.1:{customer.address[1]}"
            assert isinstance(invite.from_.uri, SipUri) and invite.from_.uri.user == "+14155550123"
            assert invite.headers.get("X-Twilio-AccountSid") == "AC" + "1" * 32
            sdp = SessionDescription.parse(invite.body)
            assert sdp.payload_types == (0, 8) and sdp.telephone_event == 101
            customer.send(make_response(invite, 180, to_tag="cust"))
            ok = make_response(invite, 200, to_tag="cust")
            ok.headers.add("Contact", f"<sip:voipcore@127.0.0.1:{customer.address[1]}>")
            ok.headers.add("Content-Type", "application/sdp")
            ok.body = offer(phone.address)
            customer.send(ok)
            assert await asyncio.wait_for(call.final(), DEADLINE) == 200
            ack = await customer.request()
            assert ack.method == "ACK" and ack.to.tag == "cust"
            await hear_each_other(phone, (sdp.address, sdp.port), call)
            hangup = asyncio.create_task(carrier.hangup(call))
            bye = await customer.request()
            assert (
                bye.method == "BYE"
                and bye.uri_text == f"sip:voipcore@127.0.0.1:{customer.address[1]}"
            )
            customer.send(make_response(bye, 200))
            assert await asyncio.wait_for(hangup, DEADLINE) == 200
            assert call.statuses == [180, 200] and call.direction == "origination"
        finally:
            phone.close()

    run(test)


def test_origination_hangup_while_ringing_sends_cancel() -> None:
    async def test(carrier: TwilioCarrier, customer: Customer) -> None:
        call = await carrier.call(CALLEE, "+14045550100", customer.address)
        invite = await customer.request()
        customer.send(make_response(invite, 180, to_tag="cust"))
        hangup = asyncio.create_task(carrier.hangup(call))
        cancel = await customer.request()
        assert cancel.method == "CANCEL" and cancel.via.branch == invite.via.branch
        customer.send(make_response(cancel, 200, to_tag="cust"))
        customer.send(make_response(invite, 487, to_tag="cust"))
        assert await asyncio.wait_for(hangup, DEADLINE) == 487
        ack = await customer.request()
        assert ack.method == "ACK" and ack.cseq.seq == invite.cseq.seq

    run(test)


def test_carrier_thread_serves_synchronous_code() -> None:
    with CarrierThread(TwilioCarrier()) as thread:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(DEADLINE)
        sock.bind(("127.0.0.1", 0))
        try:
            port = sock.getsockname()[1]
            ping = (
                "OPTIONS sip:voipcore.pstn.twilio.com SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsync1\r\n"
                "From: <sip:ping@voipcore.test>;tag=1\r\nTo: <sip:voipcore.pstn.twilio.com>\r\n"
                "Call-ID: sync1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(ping.encode(), thread.carrier.address())
            reply = parse_message(sock.recv(65536))
            assert isinstance(reply, Response) and reply.status == 200
        finally:
            sock.close()


def test_session_description_round_trip() -> None:
    text = offer(("192.0.2.7", 4000), "sendonly").replace(b"c=IN IP4 192.0.2.7\r\nt", b"t")
    text = text.replace(b"a=rtpmap:0", b"c=IN IP4 198.51.100.1\r\na=rtpmap:0")
    sdp = SessionDescription.parse(text)
    assert (sdp.address, sdp.port, sdp.payload_types) == ("198.51.100.1", 4000, (0, 8))
    assert (sdp.telephone_event, sdp.direction) == (101, "sendonly")
    again = SessionDescription.parse(bytes(sdp))
    assert again == sdp
