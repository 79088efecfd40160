"""Tests for voipcore.sip.message (RFC 3261 §7, §8.2.6, §18.3, §20, §25)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.parsing import parsed_or_none
from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import Headers
from voipcore.sip.message import (
    MAX_MESSAGE_SIZE,
    CSeq,
    Request,
    Response,
    StreamFramer,
    Via,
    make_response,
    parse_cseq,
    parse_message,
    parse_uint,
    parse_via,
)
from voipcore.sip.uri import NameAddr, SipUri

INVITE_HEAD = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
)
SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\n"
)


def invite(extra: str = "", body: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (INVITE_HEAD + extra + f"Content-Length: {size}\r\n\r\n").encode() + body


def request(data: bytes, *, stream: bool = False) -> Request:
    msg = parse_message(data, stream=stream)
    assert isinstance(msg, Request)
    return msg


def error(data: bytes, *, stream: bool = False) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, stream=stream)
    return info.value


def replace_header(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


# -- the basics --------------------------------------------------------------


def test_parse_request_fields() -> None:
    msg = request(invite(body=SDP))
    assert msg.method == "INVITE"
    assert msg.uri_text == "sip:bob@biloxi.example.com"
    assert msg.uri == SipUri("biloxi.example.com", "bob")
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.max_forwards == 70
    assert msg.from_.display_name == "Alice" and msg.from_.tag == "1928301774"
    assert msg.to.display_name == "Bob" and msg.to.tag is None
    assert msg.via.branch == "z9hG4bK776asdhds"
    assert msg.contacts == [NameAddr(SipUri("pc33.atlanta.example.com", "alice"))]
    assert msg.body == SDP
    assert repr(msg) == "<Request INVITE sip:bob@biloxi.example.com>"


def test_parse_response_fields() -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"SIP/2.0 180 Ringing")
    msg = parse_message(data)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert repr(msg) == "<Response 180 Ringing>"


def test_reason_phrase_may_be_empty_or_hold_spaces() -> None:
    tail = invite().split(b"\r\n", 1)[1]
    msg = parse_message(b"SIP/2.0 486 Busy Here, try later\r\n" + tail)
    assert isinstance(msg, Response) and msg.reason == "Busy Here, try later"
    msg = parse_message(b"SIP/2.0 100\r\n" + tail)
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (100, "")


@pytest.mark.parametrize("code", [b"099", b"700", b"2000", b"20", b"abc", b"\xd9\xa200"])
def test_bad_status_codes(code: bytes) -> None:
    tail = invite().split(b"\r\n", 1)[1]
    assert "status code" in error(b"SIP/2.0 " + code + b" Nope\r\n" + tail).reason


def test_response_with_other_version_is_505() -> None:
    tail = invite().split(b"\r\n", 1)[1]
    assert error(b"SIP/3.0 200 OK\r\n" + tail).status == 505


# -- round trips ---------------------------------------------------------------


def test_serialize_then_parse_gives_the_same_values() -> None:
    msg = request(invite(body=SDP))
    again = request(bytes(msg))
    assert again.method == msg.method and again.uri_text == msg.uri_text
    assert list(again.headers) == list(msg.headers)
    assert (again.vias, again.from_, again.to, again.cseq) == (
        msg.vias,
        msg.from_,
        msg.to,
        msg.cseq,
    )
    assert again.body == msg.body
    assert bytes(again) == bytes(msg)


def test_serializer_writes_content_length_last_and_from_the_body() -> None:
    msg = request(invite(body=SDP))
    msg.body = b"x" * 7
    data = bytes(msg)
    assert data.endswith(b"Content-Length: 7\r\n\r\nxxxxxxx")
    assert data.count(b"Content-Length") == 1


def test_built_request_serializes() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc"),
            ("From", "<sip:a@example.com>;tag=1"),
            ("To", "<sip:b@example.com>"),
            ("Call-ID", "x@192.0.2.1"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ]
    )
    built = Request("OPTIONS", SipUri("example.com", "b"), headers)
    assert built.uri_text == "sip:b@example.com"
    parsed = request(bytes(built))
    assert parsed.cseq == CSeq(1, "OPTIONS") and parsed.body == b""


# -- compact forms, folding, lists -------------------------------------------


def test_compact_forms_are_the_same_headers() -> None:
    data = (
        b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"f: <sip:alice@example.com>;tag=9\r\n"
        b"t: <sip:bob@example.com>\r\n"
        b"i: 123@192.0.2.1\r\n"
        b"CSeq: 2 MESSAGE\r\n"
        b"m: <sip:alice@192.0.2.1;transport=tcp>\r\n"
        b"c: text/plain\r\n"
        b"k: path, outbound\r\n"
        b"s: hello\r\n"
        b"e: gzip\r\n"
        b"l: 2\r\n\r\nhi"
    )
    msg = request(data, stream=True)
    assert msg.headers.get("Via") == "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1"
    assert msg.from_.tag == "9"
    assert str(msg.to.uri) == "sip:bob@example.com"
    assert msg.call_id == "123@192.0.2.1"
    assert len(msg.contacts) == 1
    assert msg.headers.get("Content-Type") == "text/plain"
    assert msg.headers.get_all("Supported") == ["path", "outbound"]
    assert msg.headers.get("Subject") == "hello"
    assert msg.headers.get("Content-Encoding") == "gzip"
    assert msg.body == b"hi"
    assert b"\r\nContent-Type: text/plain\r\n" in bytes(msg)


def test_header_folding_joins_continuations_with_one_space() -> None:
    data = invite(extra="Subject: lunch\r\n   at noon\r\n\ttoday\r\nX-Empty:\r\n later\r\n")
    msg = request(data)
    assert msg.headers.get("Subject") == "lunch at noon today"
    assert msg.headers.get("X-Empty") == "later"
    folded = replace_header(data, "CSeq: 314159 INVITE", "CSeq: 314159\r\n INVITE")
    assert request(folded).cseq == CSeq(314159, "INVITE")


def test_continuation_before_any_header_is_rejected() -> None:
    data = invite().replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n continued\r\n", 1)
    assert "continuation" in error(data).reason


def test_lws_before_the_colon_and_no_space_after_it() -> None:
    data = replace_header(invite(), "Max-Forwards: 70", "Max-Forwards   :70")
    assert request(data).max_forwards == 70


def test_multi_valued_headers_keep_their_order() -> None:
    data = invite(
        extra=(
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
            "Record-Route: <sip:rr.example.com;lr>\r\n"
            "Route: <sip:p3.example.com;lr>\r\n"
        )
    )
    data = replace_header(
        data,
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKtop, "
        "SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKmid\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
    )
    msg = request(data)
    assert [v.host for v in msg.vias] == [
        "proxy.example.com",
        "[2001:db8::1]",
        "pc33.atlanta.example.com",
    ]
    assert msg.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]


def test_contact_list_with_quoted_commas_and_star() -> None:
    data = invite(extra='Contact: "Smith, J" <sip:j@example.com>;q=0.5, sip:k@example.com\r\n')
    contacts = request(data).contacts
    assert [c.display_name for c in contacts if isinstance(c, NameAddr)] == [None, "Smith, J", None]
    star = replace_header(invite(), "Contact: <sip:alice@pc33.atlanta.example.com>", "Contact: *")
    assert request(star).contacts == ["*"]


# -- bodies and Content-Length ------------------------------------------------


def test_body_containing_blank_lines_is_split_once() -> None:
    body = b"first\r\n\r\nsecond\r\n\r\n\r\nthird"
    msg = request(invite(body=body))
    assert msg.body == body


def test_content_length_truncates_extra_datagram_octets() -> None:
    msg = request(invite(body=b"hello world", length=5))
    assert msg.body == b"hello"


def test_content_length_larger_than_datagram_is_rejected() -> None:
    err = error(invite(body=b"hello", length=6))
    assert err.status == 400 and "Content-Length 6" in err.reason


def test_missing_content_length_means_rest_of_datagram() -> None:
    data = INVITE_HEAD.encode() + b"\r\n" + SDP
    assert request(data).body == SDP


def test_missing_content_length_on_a_stream_is_rejected() -> None:
    data = INVITE_HEAD.encode() + b"\r\n"
    assert "Content-Length is required" in error(data, stream=True).reason


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", "0x10", "\u0661", "99999999999999"])
def test_bad_content_length_values(value: str) -> None:
    data = invite(body=b"", length=0).replace(
        b"Content-Length: 0", f"Content-Length: {value}".encode()
    )
    assert "Content-Length" in error(data).reason


def test_content_length_with_leading_zeros() -> None:
    data = invite(body=b"abc", length=3).replace(b"Content-Length: 3", b"Content-Length: 0003")
    assert request(data).body == b"abc"


def test_two_content_lengths_are_rejected_even_if_equal() -> None:
    data = invite(extra="Content-Length: 0\r\n")
    assert "conflicting Content-Length" in error(data).reason


def test_lf_only_line_ends_are_tolerated() -> None:
    data = invite(body=b"x\n\ny").replace(b"\r\n", b"\n")
    msg = request(data)
    assert msg.body == b"x\n\ny"
    assert msg.cseq.seq == 314159


def test_bare_cr_or_lf_inside_headers_is_rejected() -> None:
    data = replace_header(invite(), "Max-Forwards: 70", "Max-Forwards: 70\rX-Injected: 1")
    assert "bare CR" in error(data).reason
    data = replace_header(invite(), "Max-Forwards: 70", "Max-Forwards: 70\nX-Injected: 1")
    assert "bare CR or LF" in error(data).reason


def test_crlfs_before_the_start_line_are_ignored() -> None:
    assert request(b"\r\n\r\n" + invite()).method == "INVITE"


def test_message_over_64k_is_rejected_with_513() -> None:
    body = b"x" * MAX_MESSAGE_SIZE
    assert error(invite(body=body)).status == 513


def test_missing_empty_line_and_non_utf8_headers() -> None:
    assert "no empty line" in error(INVITE_HEAD.encode()).reason
    assert (
        "UTF-8" in error(invite(extra="Subject: caf\xe9\r\n").replace(b"\xc3\xa9", b"\xe9")).reason
    )


# -- start line ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("INVITE  sip:bob@biloxi.example.com SIP/2.0", "more than one SP"),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0 ", "trailing whitespace"),
        (" INVITE sip:bob@biloxi.example.com SIP/2.0", "leading whitespace"),
        ("INVITE\tsip:bob@biloxi.example.com SIP/2.0", "more than one SP"),
        ("INVITE sip:bob@biloxi.example.com; lr SIP/2.0", "whitespace inside the Request-URI"),
        ("INVITE sip:bob@biloxi.example.com", "expected 'Method SP Request-URI SP SIP-Version'"),
        ("INV:TE sip:bob@biloxi.example.com SIP/2.0", "bad method"),
        ("INVITE <sip:bob@biloxi.example.com> SIP/2.0", "enclosed in <>"),
        ("INVITE sip:bob@biloxi.example.com?Subject=x SIP/2.0", "headers are not allowed"),
        ("INVITE sip:bob@ SIP/2.0", "bad Request-URI"),
        ("INVITE sip:bob@biloxi.example.com HTTP/1.1", "bad SIP-Version"),
    ],
)
def test_bad_request_lines(line: str, message: str) -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", line.encode(), 1)
    err = error(data)
    assert err.status == 400
    assert message in err.reason


def test_unsupported_version_is_505() -> None:
    data = invite().replace(b" SIP/2.0\r\n", b" SIP/2.1\r\n", 1)
    err = error(data)
    assert (err.status, "SIP/2.1" in err.reason) == (505, True)


@pytest.mark.parametrize("uri", ["mailto:bob@example.com", "http://example.com", "urn:x:y"])
def test_unsupported_request_uri_scheme_is_416(uri: str) -> None:
    data = invite().replace(b"sip:bob@biloxi.example.com SIP", uri.encode() + b" SIP", 1)
    err = error(data)
    assert err.status == 416 and uri.split(":")[0] in err.reason


def test_tel_and_sips_request_uris_are_accepted() -> None:
    for uri in (b"tel:+14045551234", b"sips:bob@biloxi.example.com"):
        data = invite().replace(b"sip:bob@biloxi.example.com SIP", uri + b" SIP", 1)
        assert request(data).uri_text == uri.decode()


# -- required and single-valued headers ------------------------------------


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_header(name: str) -> None:
    lines = [line for line in invite().split(b"\r\n") if not line.startswith(name.encode() + b":")]
    err = error(b"\r\n".join(lines))
    assert "missing required" in err.reason and name in err.reason


def test_max_forwards_is_optional_for_rfc2543_peers() -> None:
    data = invite().replace(b"Max-Forwards: 70\r\n", b"")
    assert request(data).max_forwards is None


@pytest.mark.parametrize("name", ["From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type"])
def test_single_valued_header_twice_is_rejected(name: str) -> None:
    value = {
        "From": "<sip:x@example.com>;tag=2",
        "To": "<sip:y@example.com>",
        "Call-ID": "other@example.com",
        "CSeq": "1 INVITE",
        "Max-Forwards": "70",
        "Content-Type": "application/sdp",
    }[name]
    twice = name not in INVITE_HEAD
    err = error(invite(extra=f"{name}: {value}\r\n" * (2 if twice else 1)))
    assert name in err.reason and "2 times" in err.reason


@pytest.mark.parametrize("call_id", ["a b", "a@b@c", "@b", "a@", "caf\u00e9"])
def test_bad_call_ids(call_id: str) -> None:
    data = replace_header(
        invite(), "Call-ID: a84b4c76e66710@pc33.atlanta.example.com", f"Call-ID: {call_id}"
    )
    assert "Call-ID" in error(data).reason


def test_call_id_word_characters() -> None:
    call_id = "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    data = replace_header(
        invite(), "Call-ID: a84b4c76e66710@pc33.atlanta.example.com", f"Call-ID: {call_id}"
    )
    assert request(data).call_id == call_id


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("To: Bell, Alexander <sip:a@example.com>", "bad To header"),
        ("Contact: sip:a@example.com?x=1", "bad Contact header"),
        ("Max-Forwards: 256", "Max-Forwards out of range"),
        ("Max-Forwards: -1", "bad Max-Forwards"),
        ("Expires: 4294967296", "Expires out of range"),
    ],
)
def test_bad_header_values_name_the_header(header: str, message: str) -> None:
    name = header.split(":")[0]
    lines = [line for line in INVITE_HEAD.split("\r\n") if not line.startswith(name + ":")]
    data = ("\r\n".join(lines) + header + "\r\nContent-Length: 0\r\n\r\n").encode()
    assert message in error(data).reason


# -- CSeq, Max-Forwards -----------------------------------------------------


def test_cseq_bounds() -> None:
    assert parse_cseq("4294967295 INVITE") == CSeq(2**32 - 1, "INVITE")
    assert parse_cseq("  0009\t INVITE ") == CSeq(9, "INVITE")
    for bad in ("4294967296 INVITE", "1", "INVITE 1", "1 IN VITE", "-1 INVITE", "1 INV;ITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)
    assert str(CSeq(5, "BYE")) == "5 BYE"


def test_cseq_method_must_match_the_request_method() -> None:
    data = replace_header(invite(), "CSeq: 314159 INVITE", "CSeq: 314159 BYE")
    err = error(data)
    assert err.status == 400 and "does not match" in err.reason


def test_ack_carries_the_invite_cseq_method() -> None:
    data = invite().replace(b"INVITE sip:", b"ACK sip:", 1)
    assert request(data).cseq == CSeq(314159, "INVITE")


def test_unknown_method_with_mismatched_cseq_is_501() -> None:
    data = invite().replace(b"INVITE sip:", b"FROBNICATE sip:", 1)
    err = error(data)
    assert err.status == 501 and "FROBNICATE" in err.reason


def test_unknown_method_with_matching_cseq_parses() -> None:
    data = invite().replace(b"INVITE sip:", b"FROBNICATE sip:", 1)
    data = replace_header(data, "CSeq: 314159 INVITE", "CSeq: 314159 FROBNICATE")
    assert request(data).method == "FROBNICATE"


def test_parse_uint() -> None:
    assert parse_uint(" 0068 ", "Max-Forwards", 255) == 68
    assert parse_uint("0" * 5000 + "7", "x", 255) == 7
    for bad in ("1" * 5000, "256", "+1", "1e3", "\uff11"):
        with pytest.raises(SipParseError):
            parse_uint(bad, "x", 255)


# -- Via ----------------------------------------------------------------------


def test_via_with_rport_received_maddr_ttl() -> None:
    via = parse_via(
        "SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bK77;rport=5061;received=198.51.100.7"
        ";maddr=224.2.0.1;ttl=16"
    )
    assert via.transport == "UDP"
    assert via.sent_by == ("192.0.2.1", 5060)
    assert via.branch == "z9hG4bK77"
    assert via.rport == 5061 and via.received == "198.51.100.7"
    assert via.params["maddr"] == "224.2.0.1" and via.params["ttl"] == "16"
    assert via.has_rfc3261_branch


def test_via_rport_flag_and_ipv6() -> None:
    via = parse_via("SIP/2.0/TCP [2001:db8::9:1]:5070;rport;branch=z9hG4bKas3-111")
    assert via.host == "[2001:db8::9:1]" and via.port == 5070
    assert "rport" in via.params and via.params["rport"] is None and via.rport is None
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKx")
    assert via.received == "[2001:db8::9:255]"
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255")
    assert via.received == "2001:db8::9:255"


def test_via_lws_around_slashes_colon_and_params() -> None:
    via = parse_via("SIP  /   2.0 /UDP    192.0.2.2 : 5060 ;  branch  =   z9hG4bK9ikj8  ")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "192.0.2.2",
        5060,
        "z9hG4bK9ikj8",
    )


def test_via_without_branch_is_rfc2543() -> None:
    via = parse_via("SIP/2.0/UDP iftgw.example.com")
    assert via.branch is None and not via.has_rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h;branch=z9hG4bK").has_rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h;branch=390skdjuw").has_rfc3261_branch


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP host;received=host.example.com",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;maddr=bad_host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP [2001:db8::1]x",
        "SIP/2.0/U(P host",
    ],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


# (valid spellings, invalid or unusual ones) of each part of a Via value.
_VIA_PARTS = [
    (["SIP/2.0/"], ["sip/2.0/", "SIP / 2.0 /", "SIP/2.1/", "SIP/2.0"]),
    (["UDP", "tcp", "WSS"], ["U(P", ""]),
    ([" "], ["  ", "\t"]),
    (["192.0.2.1", "pc33.example.com"], ["[2001:db8::1]", "bad_host", ""]),
    (["", ":5060", ":65535"], [":65536", ":99999", ":"]),
    (
        ["", ";branch=z9hG4bK77;rport", ";rport=5061;received=192.0.2.9;ttl=3"],
        [";branch", ";ttl=256"],
    ),
    (["", ";maddr=224.0.0.1"], [";received=host.example.com", ";rport=abc", "; lr", ";;"]),
]


@st.composite
def via_values(draw: st.DrawFn) -> str:
    """Via values of the usual shape, most with one unusual or invalid part."""
    odd = draw(st.integers(-1, len(_VIA_PARTS) - 1))
    return "".join(
        draw(st.sampled_from(bad if i == odd else good)) for i, (good, bad) in enumerate(_VIA_PARTS)
    )


@given(via_values())
def test_via_fast_path_agrees_with_the_general_parser(text: str) -> None:
    # Leading LWS defeats the one-step match; the general parser allows it.
    assert parsed_or_none(parse_via, text) == parsed_or_none(parse_via, " " + text)


def test_via_str_round_trip() -> None:
    text = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;rport=5061;received=2001:db8::1"
    assert str(parse_via(text)) == text
    assert str(Via("TLS", "example.com")) == "SIP/2.0/TLS example.com"


def test_from_and_contact_are_checked_at_once_but_parsed_on_first_use() -> None:
    msg = request(invite())
    # To is parsed while checking: every handler and response reads it.
    assert not {"from_", "contacts"} & msg.__dict__.keys() and "to" in msg.__dict__
    assert msg.to.display_name == "Bob" and msg.from_.tag == "1928301774"
    assert [str(c) for c in msg.contacts] == ["<sip:alice@pc33.atlanta.example.com>"]
    bad = replace_header(invite(), "Contact: <sip:alice@", "Contact: <sip:alice@@")
    with pytest.raises(SipParseError, match="bad Contact header"):
        parse_message(bad)


def test_invalidate_after_editing_headers() -> None:
    msg = request(invite())
    assert msg.via.branch == "z9hG4bK776asdhds"
    msg.headers.prepend("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnew")
    msg.invalidate()
    assert [v.branch for v in msg.vias] == ["z9hG4bKnew", "z9hG4bK776asdhds"]


# -- make_response (§8.2.6) ----------------------------------------------------


def test_make_response_copies_the_dialog_and_transaction_headers() -> None:
    data = invite(extra="Timestamp: 54\r\nSubject: hi\r\n")
    data = replace_header(
        data,
        "Via: SIP/2.0/UDP pc33",
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP pc33",
    )
    req = request(data)
    resp = make_response(req, 180, to_tag="a6c85cf")
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.headers.get("Call-ID") == req.call_id
    assert resp.headers.get("CSeq") == "314159 INVITE"
    assert resp.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    for absent in ("Contact", "Max-Forwards", "Subject", "Timestamp", "Content-Length"):
        assert absent not in resp.headers
    again = parse_message(bytes(resp))
    assert isinstance(again, Response) and again.to.tag == "a6c85cf"


def test_make_response_100_gets_no_tag_but_copies_timestamp() -> None:
    req = request(invite(extra="Timestamp: 54 0.5\r\n"))
    trying = make_response(req, 100, to_tag="a6c85cf")
    assert trying.reason == "Trying"
    assert trying.to.tag is None
    assert trying.headers.get("Timestamp") == "54 0.5"


def test_make_response_keeps_an_existing_to_tag() -> None:
    data = replace_header(
        invite(), "To: Bob <sip:bob@biloxi.example.com>", "To: <sip:bob@biloxi.example.com>;tag=x1"
    )
    resp = make_response(request(data), 200, "Fine", to_tag="other")
    assert resp.to.tag == "x1" and resp.reason == "Fine"


def test_make_response_tags_to_the_same_way_for_every_response() -> None:
    # §8.2.6.2: a UAS adds a To tag, the same for all responses to one request.
    req = request(invite())
    ringing, ok = make_response(req, 180), make_response(request(invite()), 200)
    assert ringing.to.tag is not None and ringing.to.tag == ok.to.tag
    other = request(replace_header(invite(), "branch=z9hG4bK776asdhds", "branch=z9hG4bKother"))
    assert make_response(other, 200).to.tag != ok.to.tag


def test_response_reason_defaults() -> None:
    assert Response(404).reason == "Not Found"
    assert Response(299).reason == "Unknown"
    assert Response(200, "").reason == ""


# -- StreamFramer (§18.3, RFC 5626 §3.5.1) --------------------------------------


def test_framer_reassembles_split_packets() -> None:
    data = invite(body=SDP)
    framer = StreamFramer()
    frames: list[bytes] = []
    for i in range(len(data)):
        frames += framer.feed(data[i : i + 1])
    assert frames == [data]


def test_framer_splits_two_messages_in_one_chunk() -> None:
    first, second = invite(body=SDP), invite(body=b"")
    framer = StreamFramer()
    assert framer.feed(first + second[:10]) == [first]
    assert framer.feed(second[10:]) == [second]


def test_framer_counts_keepalive_pings_and_drops_pongs() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pings == 1
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [] and framer.pings == 3
    data = invite()
    assert framer.feed(b"\r\n" + data) == [data]
    assert framer.feed(b"\r\n") == []
    assert framer.feed(data + b"\r\n\r\n" + data) == [data, data]
    assert framer.pings == 4


def test_framer_rejects_oversized_header_section() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(b"INVITE sip:x SIP/2.0\r\nX-Pad: " + b"a" * MAX_MESSAGE_SIZE)
    assert info.value.status == 513


def test_framer_rejects_a_content_length_past_the_limit_before_the_body() -> None:
    head = INVITE_HEAD.encode() + f"Content-Length: {MAX_MESSAGE_SIZE}\r\n\r\n".encode()
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(head)
    assert info.value.status == 513
    small = StreamFramer(max_size=200)
    with pytest.raises(SipParseError):
        small.feed(invite(body=SDP))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "Content-Length is required"),
        ("Content-Length: 1\r\nl: 1\r\n", "conflicting Content-Length"),
        ("Content-Length: -5\r\n", "bad Content-Length"),
    ],
)
def test_framer_loses_framing(extra: str, message: str) -> None:
    data = (INVITE_HEAD + extra + "\r\n").encode()
    with pytest.raises(SipParseError, match=message):
        StreamFramer().feed(data)


def test_framer_compact_and_folded_content_length() -> None:
    data = (INVITE_HEAD + "l:\r\n 3\r\n\r\nabc").encode()
    assert StreamFramer().feed(data + b"rest") == [data]
    assert request(data, stream=True).body == b"abc"


def test_framed_message_with_blank_lines_in_body() -> None:
    body = b"a\r\n\r\nb\r\n\r\n"
    data = invite(body=body)
    frames = StreamFramer().feed(data + data)
    assert frames == [data, data]
    assert request(frames[1], stream=True).body == body


# -- properties ------------------------------------------------------------

_TOKEN = st.from_regex(r"[A-Za-z][A-Za-z0-9\-.!%*_+`'~]{0,10}", fullmatch=True)
_VALUE = st.from_regex(r"[!-~]([ !-~]{0,20}[!-~])?", fullmatch=True)
_NAMES = st.sampled_from(
    ["Subject", "s", "User-Agent", "X-Thing", "Accept", "Allow", "Supported", "k", "Priority"]
)


@given(
    method=_TOKEN,
    extra=st.lists(st.tuples(_NAMES, _VALUE), max_size=6),
    body=st.binary(max_size=200),
    compact=st.booleans(),
)
def test_message_round_trip(
    method: str, extra: list[tuple[str, str]], body: bytes, compact: bool
) -> None:
    via, to, frm, call_id = ("v", "t", "f", "i") if compact else ("Via", "To", "From", "Call-ID")
    lines = [
        f"{method} sip:bob@example.com SIP/2.0",
        f"{via}: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKx1",
        f"{to}: <sip:bob@example.com>",
        f"{frm}: <sip:alice@example.com>;tag=77",
        f"{call_id}: 42@192.0.2.1",
        f"CSeq: 7 {method}",
        *(f"{name}: {value}" for name, value in extra),
        f"Content-Length: {len(body)}",
    ]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    msg = request(data, stream=True)
    assert msg.method == method and msg.body == body
    assert [v for n, v in msg.headers if n.lower() not in ("content-length",)][5:] == [
        v for _, v in extra
    ]
    again = request(bytes(msg), stream=True)
    assert list(again.headers) == list(msg.headers)
    assert again.body == body
    assert StreamFramer().feed(bytes(msg) * 2) == [bytes(msg)] * 2


@given(st.binary(max_size=300))
def test_parser_and_framer_raise_only_sip_parse_error(data: bytes) -> None:
    for stream in (False, True):
        with contextlib.suppress(SipParseError):
            parse_message(data, stream=stream)
    with contextlib.suppress(SipParseError):
        StreamFramer().feed(data)


@given(st.binary(max_size=120))
def test_mutated_valid_message_raises_only_sip_parse_error(noise: bytes) -> None:
    data = invite(body=SDP)
    cut = len(noise) % len(data)
    for candidate in (data[:cut] + noise, noise + data, data[:cut] + noise + data[cut:]):
        with contextlib.suppress(SipParseError):
            parse_message(candidate)
