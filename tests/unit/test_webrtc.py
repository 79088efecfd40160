"""The browser leg's sans-I/O transport (media.webrtc) against a browser stand-in.

Like aioquic's connection tests, two in-memory endpoints pass datagrams with
fake addresses: :class:`Browser` is what Chrome does on the wire — STUN
Binding requests built with aioice (RFC 8445 §7.2.2), a pyOpenSSL DTLS client
over memory BIOs (RFC 5763 §5, it takes ``a=setup:active``) and pylibsrtp
keyed from the handshake (RFC 5764 §4.2).  No sockets, no sleeping.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import re
import struct

import pylibsrtp
import pytest
from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from media.stream import Addr
from media.webrtc import (
    FINGERPRINT_HASHES,
    SRTP_PROFILES,
    Connected,
    DtlsIdentity,
    Event,
    Failed,
    IceParameters,
    Nominated,
    WebRtcError,
    WebRtcTransport,
    fingerprint,
    self_signed,
)

BROWSER_UFRAG = "Bv8e"
#: Where the browser's checks come from (its host candidate), and somebody else.
BROWSER: Addr = ("198.51.100.7", 50123)
STRANGER: Addr = ("203.0.113.66", 50123)
BOTH_PROFILES = b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"

_IDENTITY = DtlsIdentity()  # an EC key per test would only slow the suite down


def browser_certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A browser's DTLS certificate: self-signed, a fresh EC key (RFC 8827 §6.5)."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    return self_signed("WebRTC", now - day, now + 30 * day)


_BROWSER_CERT = browser_certificate()


class Browser:
    """The browser's side of one leg: ICE controlling agent, DTLS client, SRTP."""

    def __init__(
        self,
        server: IceParameters,
        *,
        addr: Addr = BROWSER,
        profiles: bytes = BOTH_PROFILES,
        certificate: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] = _BROWSER_CERT,
    ) -> None:
        self.server = server
        self.addr = addr
        self.certificate = certificate[0]
        context = SSL.Context(SSL.DTLS_METHOD)
        context.use_certificate(certificate[0])
        context.use_privatekey(certificate[1])
        # The server's certificate is checked against its SDP fingerprint below.
        context.set_verify(SSL.VERIFY_PEER, lambda *_: True)
        context.set_tlsext_use_srtp(profiles)
        self.ssl = SSL.Connection(context)
        self.ssl.set_connect_state()
        self.tx: pylibsrtp.Session | None = None
        self.rx: pylibsrtp.Session | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    # -- ICE ----------------------------------------------------------------------------

    def check(
        self,
        *,
        nominate: bool = True,
        username: str | None = None,
        pwd: str | None = None,
    ) -> bytes:
        """A connectivity check (RFC 8445 §7.2.2): USERNAME "server:browser", signed
        with the server's password (RFC 8489 §14.5), nominating on USE-CANDIDATE."""
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = username or f"{self.server.ufrag}:{BROWSER_UFRAG}"
        request.attributes["PRIORITY"] = 2130706431
        request.attributes["ICE-CONTROLLING"] = 0x1234_5678_9ABC_DEF0
        if nominate:
            request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity((pwd or self.server.pwd).encode())
        request.add_fingerprint()
        return bytes(request)

    # -- DTLS ---------------------------------------------------------------------------

    def flight(self) -> list[bytes]:
        """Advance the handshake; the datagrams the client has to send."""
        with contextlib.suppress(SSL.WantReadError):
            self.ssl.do_handshake()
        return self.outgoing()

    def outgoing(self) -> list[bytes]:
        """What the client's memory BIO holds for the wire, a datagram each."""
        out = []
        while True:
            try:
                out.append(self.ssl.bio_read(65535))
            except SSL.WantReadError:
                return out

    def deliver(self, datagrams: list[tuple[bytes, Addr]]) -> None:
        for data, to in datagrams:
            assert to == self.addr
            self.ssl.bio_write(data)

    def key(self) -> str:
        """Key SRTP as the DTLS client: the client write key is the first in the
        exported material, then the server's, then the two salts (RFC 5764 §4.2)."""
        chosen = self.ssl.get_selected_srtp_profile()
        _, profile, key_length, salt_length = next(p for p in SRTP_PROFILES if p[0] == chosen)
        material = self.ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_length + salt_length)
        )
        client_key, server_key = material[:key_length], material[key_length : 2 * key_length]
        salts = material[2 * key_length :]
        client_salt, server_salt = salts[:salt_length], salts[salt_length:]
        self.tx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=client_key + client_salt,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=profile,
            )
        )
        self.rx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=server_key + server_salt,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=profile,
            )
        )
        return chosen.decode()


def transport_for(
    browser_print: str, *, algorithm: str = "sha-256", local: IceParameters | None = None
) -> WebRtcTransport:
    return WebRtcTransport(
        _IDENTITY,
        local or IceParameters.generate(),
        BROWSER_UFRAG,
        [(algorithm, browser_print)],
    )


def events(transport: WebRtcTransport) -> list[Event]:
    found = []
    while (event := transport.next_event()) is not None:
        found.append(event)
    return found


def nominate(transport: WebRtcTransport, browser: Browser) -> None:
    assert transport.receive(browser.check(), browser.addr) is None
    transport.datagrams_to_send()
    assert events(transport) == [Nominated(browser.addr)]


def handshake(transport: WebRtcTransport, browser: Browser, *, rounds: int = 8) -> list[Event]:
    """Move DTLS flights both ways until both sides are done (or stuck): the events."""
    for _ in range(rounds):
        for datagram in browser.flight():
            assert transport.receive(datagram, browser.addr) is None
        browser.deliver(transport.datagrams_to_send())
        if transport.connected or transport.failed:
            break
    browser.flight()  # the client reads the server's last flight (Finished)
    return events(transport)


def connected_pair(profiles: bytes = BOTH_PROFILES) -> tuple[WebRtcTransport, Browser]:
    local = IceParameters.generate()
    browser = Browser(local, profiles=profiles)
    transport = transport_for(browser.fingerprint, local=local)
    nominate(transport, browser)
    [connected] = handshake(transport, browser)
    assert isinstance(connected, Connected)
    assert browser.ssl.get_state_string() == b"SSL negotiation finished successfully"
    return transport, browser


def rtp(seq: int, payload: bytes = b"\xff" * 160, *, marker: bool = False) -> bytes:
    """A PCMU packet (RFC 3550 §5.1)."""
    return struct.pack("!BBHII", 0x80, marker << 7, seq, seq * 160, 0x1234ABCD) + payload


def rtcp_sender_report() -> bytes:
    """An SR without report blocks (RFC 3550 §6.4.1): 28 octets."""
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, 0x1234ABCD, 1, 2, 3, 4, 5)


# -- helpers of the module -----------------------------------------------------------------


def test_fingerprint_is_upper_case_hex_pairs_joined_by_colons() -> None:
    certificate, _ = _BROWSER_CERT
    for algorithm, algorithm_hash in FINGERPRINT_HASHES.items():
        text = fingerprint(certificate, algorithm)
        assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2})*", text)
        assert bytes.fromhex(text.replace(":", "")) == certificate.fingerprint(algorithm_hash)
    assert len(fingerprint(certificate).split(":")) == 32  # sha-256 by default


def test_dtls_identity_fingerprint_is_its_certificates_sha256() -> None:
    assert _IDENTITY.fingerprint == fingerprint(_IDENTITY.certificate, "sha-256")


def test_generated_ice_credentials_are_long_enough_and_fresh() -> None:
    first, second = IceParameters.generate(), IceParameters.generate()
    assert len(first.ufrag) >= 4 and len(first.pwd) >= 22  # RFC 8839 §5.4
    assert first != second


def test_an_offer_without_a_usable_fingerprint_is_refused() -> None:
    local = IceParameters.generate()
    with pytest.raises(WebRtcError, match="fingerprint"):
        WebRtcTransport(_IDENTITY, local, BROWSER_UFRAG, [])
    with pytest.raises(WebRtcError, match="fingerprint"):
        WebRtcTransport(_IDENTITY, local, BROWSER_UFRAG, [("md5", "AB:CD")])


def test_an_offer_without_an_ice_ufrag_is_refused() -> None:
    with pytest.raises(WebRtcError, match="ice-ufrag"):
        WebRtcTransport(_IDENTITY, IceParameters.generate(), "", [("sha-256", "AB:CD")])


def test_fingerprints_are_compared_whatever_their_case_in_the_sdp() -> None:
    transport = WebRtcTransport(
        _IDENTITY, IceParameters.generate(), BROWSER_UFRAG, [("SHA-256", "ab:cd"), ("md5", "x")]
    )
    assert transport.remote_fingerprints == [("sha-256", "AB:CD")]


# -- ICE-lite: answering connectivity checks (RFC 8445 §7.3) -------------------------------


def test_a_good_check_gets_a_signed_success_with_the_source_address() -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)
    sent = browser.check(nominate=False)

    assert transport.receive(sent, BROWSER) is None

    [(data, to)] = transport.datagrams_to_send()
    assert to == BROWSER
    response = stun.parse_message(data)
    assert response.message_method == stun.Method.BINDING
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == stun.parse_message(sent).transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == BROWSER
    assert response.check_message_integrity(local.pwd.encode())
    assert not response.check_message_integrity(b"another password entirely")
    # Without USE-CANDIDATE the pair is checked, not chosen (§7.3.1.5).
    assert events(transport) == []
    assert transport.nominated is None


def test_use_candidate_nominates_the_source_address_once() -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)

    transport.receive(browser.check(), BROWSER)
    assert events(transport) == [Nominated(BROWSER)]
    assert transport.nominated == BROWSER
    # Consent checks go on every few seconds (RFC 7675): answered, no new event.
    transport.receive(browser.check(), BROWSER)
    assert len(transport.datagrams_to_send()) == 2
    assert events(transport) == []


def test_a_nomination_from_a_new_address_moves_the_media() -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)
    transport.receive(browser.check(), BROWSER)
    moved: Addr = ("198.51.100.7", 50999)

    transport.receive(browser.check(), moved)

    assert events(transport) == [Nominated(BROWSER), Nominated(moved)]
    assert transport.nominated == moved


@pytest.mark.parametrize(
    ("username", "pwd"),
    [
        pytest.param(f"nobody:{BROWSER_UFRAG}", None, id="wrong-username"),
        pytest.param(None, "a-password-that-is-not-the-servers", id="wrong-password"),
    ],
)
def test_a_check_with_wrong_credentials_gets_401_and_nominates_nothing(
    username: str | None, pwd: str | None
) -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)

    transport.receive(browser.check(username=username, pwd=pwd), BROWSER)

    [(data, to)] = transport.datagrams_to_send()
    response = stun.parse_message(data)
    assert to == BROWSER
    assert response.message_class == stun.Class.ERROR
    assert response.attributes["ERROR-CODE"] == (401, "Unauthenticated")
    assert "XOR-MAPPED-ADDRESS" not in response.attributes
    assert events(transport) == []
    assert transport.nominated is None


def test_stun_responses_and_indications_are_not_answered() -> None:
    local = IceParameters.generate()
    transport = transport_for("AB:CD", local=local)
    for message_class in (stun.Class.RESPONSE, stun.Class.INDICATION):
        message = stun.Message(message_method=stun.Method.BINDING, message_class=message_class)
        message.add_message_integrity(local.pwd.encode())
        transport.receive(bytes(message), BROWSER)
    assert transport.datagrams_to_send() == []
    assert events(transport) == []


def test_a_stun_attribute_of_the_wrong_length_is_ignored_not_raised() -> None:
    # aioice unpacks a 2-octet PRIORITY with struct.unpack("!I"): struct.error, no
    # ValueError, comes out of its parser and must not come out of receive().
    header = bytes(
        stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    )
    attribute = struct.pack("!HH", 0x0024, 2) + b"\0\0\0\0"  # PRIORITY, 2 octets + padding
    datagram = header[:2] + struct.pack("!H", len(attribute)) + header[4:20] + attribute
    transport = transport_for("AB:CD")

    assert transport.receive(datagram, BROWSER) is None
    assert transport.datagrams_to_send() == []


# -- DTLS (RFC 5763 §5, RFC 5764 §4.2) -------------------------------------------------------


def test_dtls_before_nomination_or_from_another_address_is_ignored() -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)
    [client_hello] = browser.flight()

    transport.receive(client_hello, BROWSER)  # no nomination yet
    assert transport.datagrams_to_send() == []

    nominate(transport, browser)
    transport.receive(client_hello, STRANGER)
    assert transport.datagrams_to_send() == []
    assert events(transport) == []
    assert not transport.connected and not transport.failed


@pytest.mark.parametrize(
    ("offered", "agreed"),
    [
        (BOTH_PROFILES, "SRTP_AEAD_AES_128_GCM"),
        (b"SRTP_AES128_CM_SHA1_80", "SRTP_AES128_CM_SHA1_80"),
    ],
)
def test_a_full_handshake_connects_with_the_profile_both_keyed(offered: bytes, agreed: str) -> None:
    local = IceParameters.generate()
    browser = Browser(local, profiles=offered)
    transport = transport_for(browser.fingerprint, local=local)
    nominate(transport, browser)

    assert handshake(transport, browser) == [Connected(agreed)]

    assert transport.connected and not transport.failed
    assert browser.key() == agreed
    # The browser checks our certificate against the fingerprint of our answer.
    server_certificate = browser.ssl.get_peer_certificate(as_cryptography=True)
    assert server_certificate is not None
    assert fingerprint(server_certificate) == _IDENTITY.fingerprint


def test_a_fingerprint_in_sha512_is_checked_too() -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(
        fingerprint(browser.certificate, "sha-512"), algorithm="sha-512", local=local
    )
    nominate(transport, browser)
    assert handshake(transport, browser) == [Connected("SRTP_AEAD_AES_128_GCM")]


def test_a_certificate_not_matching_the_sdp_fingerprint_fails_and_keys_nothing() -> None:
    local = IceParameters.generate()
    browser = Browser(local, certificate=browser_certificate())  # not the one the SDP names
    transport = transport_for(fingerprint(_BROWSER_CERT[0]), local=local)
    nominate(transport, browser)

    [failed] = handshake(transport, browser)

    assert isinstance(failed, Failed) and "fingerprint" in failed.reason
    assert transport.failed and not transport.connected
    assert transport.protect(rtp(1)) is None
    # Whatever the browser sends now is not media.
    assert transport.receive(rtp(1), BROWSER) is None


def test_the_browser_closing_dtls_fails_the_transport() -> None:
    transport, browser = connected_pair()
    assert browser.ssl.shutdown() is False  # close_notify out, ours not in yet
    for alert in browser.outgoing():
        transport.receive(alert, BROWSER)
    [failed] = events(transport)
    assert isinstance(failed, Failed) and "closed" in failed.reason


def test_handle_timer_does_nothing_before_nomination() -> None:
    transport = transport_for("AB:CD")
    transport.handle_timer()
    assert transport.datagrams_to_send() == []
    assert events(transport) == []


def test_handle_timer_after_handshake_sends_nothing() -> None:
    transport, _ = connected_pair()
    transport.handle_timer()
    assert transport.datagrams_to_send() == []


# -- SRTP (RFC 3711, rtcp-mux RFC 5761) -------------------------------------------------------


@pytest.mark.parametrize("profiles", [BOTH_PROFILES, b"SRTP_AES128_CM_SHA1_80"])
def test_srtp_from_the_browser_comes_out_plain(profiles: bytes) -> None:
    transport, browser = connected_pair(profiles)
    browser.key()
    assert browser.tx is not None
    for seq, plain in enumerate([rtp(1), rtp(2, marker=True), rtp(3)], start=1):
        protected = browser.tx.protect(plain)
        assert protected != plain
        assert transport.receive(protected, BROWSER) == plain, seq
    report = rtcp_sender_report()
    assert transport.receive(browser.tx.protect_rtcp(report), BROWSER) == report


@pytest.mark.parametrize("profiles", [BOTH_PROFILES, b"SRTP_AES128_CM_SHA1_80"])
def test_protect_output_is_unprotected_by_the_browser(profiles: bytes) -> None:
    transport, browser = connected_pair(profiles)
    browser.key()
    assert browser.rx is not None
    packet, report = rtp(7), rtcp_sender_report()

    protected, protected_report = transport.protect(packet), transport.protect(report)

    assert protected is not None and protected_report is not None
    assert browser.rx.unprotect(protected) == packet
    assert browser.rx.unprotect_rtcp(protected_report) == report
    assert transport.protect(bytearray(rtp(8))) is not None  # the relay path's buffers


def test_srtp_from_another_address_is_dropped() -> None:
    transport, browser = connected_pair()
    browser.key()
    assert browser.tx is not None
    assert transport.receive(browser.tx.protect(rtp(1)), STRANGER) is None


def test_forged_or_replayed_srtp_is_dropped() -> None:
    transport, browser = connected_pair()
    browser.key()
    assert browser.tx is not None
    protected = browser.tx.protect(rtp(1))
    assert transport.receive(protected, BROWSER) == rtp(1)
    assert transport.receive(protected, BROWSER) is None  # replay (RFC 3711 §3.3.2)
    forged = protected[:-1] + bytes([protected[-1] ^ 1])
    assert transport.receive(browser.tx.protect(rtp(2))[:12] + forged[12:], BROWSER) is None
    assert transport.receive(rtp(3), BROWSER) is None  # plain RTP is never accepted


def test_nothing_is_protected_or_unprotected_before_the_handshake() -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)
    nominate(transport, browser)
    assert transport.protect(rtp(1)) is None
    assert transport.receive(rtp(1), BROWSER) is None


# -- garbage never raises (RFC 7983 §7 demultiplexing) ----------------------------------------

#: First octets of each class a datagram is demultiplexed by, and those of none.
_FIRST_OCTETS = st.one_of(
    st.integers(0, 3),  # STUN
    st.integers(20, 63),  # DTLS
    st.integers(128, 191),  # RTP / RTCP
    st.integers(4, 19) | st.integers(64, 127) | st.integers(192, 255),  # nothing of ours
)
_GARBAGE = st.builds(lambda first, rest: bytes([first]) + rest, _FIRST_OCTETS, st.binary())


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_GARBAGE, min_size=1, max_size=6), st.sampled_from(["fresh", "nominated"]))
def test_garbage_datagrams_never_raise_before_the_handshake(
    datagrams: list[bytes], state: str
) -> None:
    local = IceParameters.generate()
    browser = Browser(local)
    transport = transport_for(browser.fingerprint, local=local)
    if state == "nominated":
        nominate(transport, browser)
    for data in [b"", *datagrams]:
        for addr in (BROWSER, STRANGER):
            assert transport.receive(data, addr) is None
    transport.handle_timer()
    transport.datagrams_to_send()
    events(transport)


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_GARBAGE, min_size=1, max_size=6))
def test_garbage_datagrams_never_raise_once_connected(datagrams: list[bytes]) -> None:
    transport, browser = connected_pair()
    for data in datagrams:
        transport.receive(data, BROWSER)
    # Forged records are dropped (RFC 6347 §4.1.2.7): the leg is not failed, and
    # media still flows both ways.
    assert not transport.failed and events(transport) == []
    browser.key()
    assert browser.tx is not None and browser.rx is not None
    assert transport.receive(browser.tx.protect(rtp(9)), BROWSER) == rtp(9)
    protected = transport.protect(rtp(9))
    assert protected is not None and browser.rx.unprotect(protected) == rtp(9)


def test_random_bytes_of_every_length_at_the_edges_never_raise() -> None:
    transport, _ = connected_pair()
    noise = random.Random(7)
    for first in (0, 3, 20, 63, 128, 191, 200, 255):
        for length in (1, 2, 11, 12, 13, 20, 21):
            data = bytes([first]) + noise.randbytes(length - 1)
            transport.receive(data, BROWSER)
