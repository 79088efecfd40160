"""Tests for voipcore.sdp (RFC 8866 SDP, RFC 3264 offer/answer, RFC 3605 a=rtcp)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voipcore.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Attribute,
    Bandwidth,
    Connection,
    Format,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    Timing,
    answer_direction,
    build_answer,
    build_offer,
    bump_version,
    hold_direction,
    is_refresh,
    negotiate,
    rewrite,
    to_engine_codecs,
)


def sdp(*lines: str) -> str:
    return "\r\n".join(lines) + "\r\n"


def parse(*lines: str) -> SessionDescription:
    return SessionDescription.parse(sdp(*lines))


def audio_of(description: SessionDescription) -> MediaDescription:
    audio = description.audio
    assert audio is not None
    return audio


HEAD = ("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0")

# RFC 8866 §5 (RFC 4566 §5) example.
RFC4566_EXAMPLE = sdp(
    "v=0",
    "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
    "s=SDP Seminar",
    "i=A Seminar on the session description protocol",
    "u=http://www.example.com/seminars/sdp.pdf",
    "e=j.doe@example.com (Jane Doe)",
    "c=IN IP4 224.2.17.12/127",
    "t=2873397496 2873404696",
    "a=recvonly",
    "m=audio 49170 RTP/AVP 0",
    "m=video 51372 RTP/AVP 99",
    "a=rtpmap:99 h263-1998/90000",
)

# RFC 3264 §10.1: Alice offers audio and video, Bob answers a subset.
RFC3264_OFFER = sdp(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com",
    "s=",
    "c=IN IP4 host.atlanta.example.com",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 97",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:97 iLBC/8000",
    "m=video 51372 RTP/AVP 31 32",
    "a=rtpmap:31 H261/90000",
    "a=rtpmap:32 MPV/90000",
)
RFC3264_ANSWER = sdp(
    "v=0",
    "o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com",
    "s=",
    "c=IN IP4 host.biloxi.example.com",
    "t=0 0",
    "m=audio 49174 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
    "m=video 49170 RTP/AVP 32",
    "a=rtpmap:32 MPV/90000",
)

# A Linphone-style offer: opus/speex, several telephone-event rates, rtcp-fb, rtcp-xr.
LINPHONE_OFFER = sdp(
    "v=0",
    "o=alice 1936 3248 IN IP4 192.168.1.20",
    "s=Talk",
    "c=IN IP4 192.168.1.20",
    "t=0 0",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "m=audio 7078 RTP/AVP 96 97 0 8 101 99",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=fmtp:97 vbr=on",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=rtpmap:99 telephone-event/48000",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:* ccm tmmbr",
)

# A baresip-style offer: G.711 and telephone-event 101 0-16, LF line ends.
BARESIP_OFFER = (
    "v=0\n"
    "o=- 1597851247 3187356923 IN IP4 10.0.0.5\n"
    "s=-\n"
    "c=IN IP4 10.0.0.5\n"
    "t=0 0\n"
    "m=audio 10000 RTP/AVP 0 8 101\n"
    "b=AS:64\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-16\n"
    "a=ptime:20\n"
    "a=sendrecv\n"
    "a=label:1\n"
    "a=ssrc:3735928559 cname:baresip@10.0.0.5\n"
)

# A Twilio Elastic SIP Trunking style offer.
TWILIO_OFFER = sdp(
    "v=0",
    "o=root 1094567789 1094567789 IN IP4 54.172.60.1",
    "s=Twilio Media Gateway",
    "c=IN IP4 54.172.60.1",
    "t=0 0",
    "m=audio 17364 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)

# The audio section of a Chrome WebRTC offer.
CHROME_OFFER = sdp(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1467250027 1 udp 2122260223 192.168.1.2 46243 typ host generation 0",
    "a=ice-ufrag:Oyef",
    "a=ice-pwd:7ouQKZX0Mmc3Cz7FSnPFRFtK",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=sendrecv",
    "a=msid:stream track",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1001 cname:y7Ylu3bpE2Z6fdOu",
)

REAL_WORLD = [
    RFC4566_EXAMPLE,
    RFC3264_OFFER,
    RFC3264_ANSWER,
    LINPHONE_OFFER,
    BARESIP_OFFER,
    TWILIO_OFFER,
    CHROME_OFFER,
]


# -- parsing real-world descriptions -------------------------------------------


def test_rfc4566_example_parses_every_session_field() -> None:
    description = SessionDescription.parse(RFC4566_EXAMPLE)
    assert description.origin == Origin("jdoe", 2890844526, 2890842807, "IN", "IP4", "10.47.16.5")
    assert description.name == "SDP Seminar"
    assert description.info == "A Seminar on the session description protocol"
    assert description.uri == "http://www.example.com/seminars/sdp.pdf"
    assert description.emails == ["j.doe@example.com (Jane Doe)"]
    assert description.connection == Connection("IN", "IP4", "224.2.17.12/127")
    assert description.timings == [Timing(2873397496, 2873404696)]
    assert description.direction == "recvonly"
    audio, video = description.media
    assert (audio.kind, audio.port, audio.proto, audio.fmts) == ("audio", 49170, "RTP/AVP", ["0"])
    assert video.codecs == [Format(99, "h263-1998", 90000)]


def test_media_inherits_session_connection_and_direction() -> None:
    audio, _ = SessionDescription.parse(RFC4566_EXAMPLE).media
    assert audio.connection is None
    assert audio.connection_address == "224.2.17.12"
    assert audio.direction == "recvonly"


def test_static_payload_types_resolve_without_rtpmap() -> None:
    description = parse(*HEAD, "m=audio 4000 RTP/AVP 0 8 9 18 13 3")
    assert audio_of(description).codecs == [
        Format(0, "PCMU", 8000),
        Format(8, "PCMA", 8000),
        Format(9, "G722", 8000),
        Format(18, "G729", 8000),
        Format(13, "CN", 8000),
        Format(3, "GSM", 8000),
    ]


def test_dynamic_payload_type_without_rtpmap_is_left_out_of_codecs() -> None:
    description = parse(*HEAD, "m=audio 4000 RTP/AVP 96 0")
    assert audio_of(description).codecs == [PCMU]


def test_rfc3264_offer_audio_codecs_and_default_rtcp() -> None:
    description = SessionDescription.parse(RFC3264_OFFER)
    assert description.name == ""
    audio = audio_of(description)
    assert [c.name for c in audio.codecs] == ["PCMU", "PCMA", "iLBC"]
    assert audio.direction == "sendrecv"
    assert audio.rtcp_address == ("host.atlanta.example.com", 49171)
    assert audio.ptime is None


def test_linphone_offer_channels_fmtp_and_session_attribute() -> None:
    description = SessionDescription.parse(LINPHONE_OFFER)
    codecs = audio_of(description).codecs
    assert codecs[0] == Format(96, "opus", 48000, 2, "useinbandfec=1")
    assert codecs[4] == Format(101, "telephone-event", 8000, fmtp="0-16")
    assert codecs[5] == Format(99, "telephone-event", 48000)
    assert description.attributes[0].name == "rtcp-xr"


def test_baresip_offer_with_lf_line_ends_and_bandwidth() -> None:
    audio = audio_of(SessionDescription.parse(BARESIP_OFFER))
    assert audio.bandwidths == [Bandwidth("AS", 64)]
    assert audio.ptime == 20
    assert audio.codecs == [PCMU, PCMA, TELEPHONE_EVENT]
    assert audio.attribute("ssrc") == "3735928559 cname:baresip@10.0.0.5"


def test_twilio_offer_ptime_maxptime_and_remote_endpoint() -> None:
    audio = audio_of(SessionDescription.parse(TWILIO_OFFER))
    assert (audio.connection_address, audio.port) == ("54.172.60.1", 17364)
    assert audio.rtcp_address == ("54.172.60.1", 17365)
    assert (audio.ptime, audio.maxptime) == (20, 150)
    assert audio.direction == "sendrecv"


def test_chrome_offer_keeps_webrtc_attributes() -> None:
    description = SessionDescription.parse(CHROME_OFFER)
    assert description.connection is None
    assert description.attributes[2] == Attribute("msid-semantic", " WMS stream")
    audio = audio_of(description)
    assert audio.is_rtp
    assert audio.rtcp_mux
    assert audio.rtcp_address == ("0.0.0.0", 9)
    assert (audio.attribute("fingerprint") or "").startswith("sha-256 49:66:12")
    assert audio.attribute("ice-ufrag") == "Oyef"
    assert audio.codecs[0] == Format(111, "opus", 48000, 2, "minptime=10;useinbandfec=1")
    assert str(description).count("a=candidate:") == 1


def test_parse_accepts_bytes_and_trailing_whitespace() -> None:
    body = b"v=0 \r\no=- 1 1 IN IP4 192.0.2.1\t\r\ns=-\r\nc=IN IP4 192.0.2.1  \r\n\r\n"
    description = SessionDescription.parse(body)
    assert description.connection == Connection("IN", "IP4", "192.0.2.1")


def test_ipv6_connection() -> None:
    description = parse(
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "t=0 0",
        "m=audio 5004 RTP/AVP 0",
        "c=IN IP6 2001:db8::2",
    )
    audio = audio_of(description)
    assert audio.connection == Connection("IN", "IP6", "2001:db8::2")
    assert audio.connection_address == "2001:db8::2"


def test_rtcp_attribute_with_address_and_rtcp_mux_fallback() -> None:
    with_address = parse(*HEAD, "m=audio 5004 RTP/AVP 0", "a=rtcp:6000 IN IP4 198.51.100.9")
    assert audio_of(with_address).rtcp_address == ("198.51.100.9", 6000)
    port_only = parse(*HEAD, "m=audio 5004 RTP/AVP 0", "a=rtcp:6000")
    assert audio_of(port_only).rtcp_address == ("192.0.2.1", 6000)
    muxed = parse(*HEAD, "m=audio 5004 RTP/AVP 0", "a=rtcp-mux")
    assert audio_of(muxed).rtcp_address == ("192.0.2.1", 5004)


def test_disabled_stream_has_no_rtcp_address_and_is_not_the_audio() -> None:
    description = parse(*HEAD, "m=audio 0 RTP/AVP 0", "m=audio 5006 RTP/AVP 8")
    assert description.media[0].rtcp_address is None
    assert audio_of(description).port == 5006


def test_media_direction_overrides_session_direction() -> None:
    description = parse(*HEAD, "a=sendonly", "m=audio 5004 RTP/AVP 0", "a=inactive")
    assert audio_of(description).direction == "inactive"
    assert description.direction == "sendonly"


def test_port_count_and_non_rtp_formats() -> None:
    description = parse(
        *HEAD, "m=video 49170/2 RTP/AVP 31", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"
    )
    video, data = description.media
    assert (video.port, video.port_count) == (49170, 2)
    assert not data.is_rtp
    assert data.fmts == ["webrtc-datachannel"]
    assert data.codecs == []
    assert "m=video 49170/2 RTP/AVP 31" in str(description)


def test_port_zero_media_needs_no_connection() -> None:
    description = parse("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 0 RTP/AVP 0")
    assert description.media[0].connection_address is None


def test_missing_t_line_is_tolerated_and_kept_missing() -> None:
    description = parse("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1")
    assert description.timings == []
    assert "t=" not in str(description)


def test_repeat_lines_belong_to_their_timing() -> None:
    description = parse(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "t=3034423619 3042462419",
        "r=604800 3600 0 90000",
        "z=2882844526 -1h 2898848070 0",
        "k=prompt",
    )
    assert description.timings[0].repeats == ["604800 3600 0 90000"]
    assert description.time_zones == "2882844526 -1h 2898848070 0"
    assert description.key == "prompt"


# -- serialising and round trips -------------------------------------------------


@pytest.mark.parametrize("text", REAL_WORLD)
def test_round_trip_reparses_to_the_same_model(text: str) -> None:
    description = SessionDescription.parse(text)
    again = SessionDescription.parse(str(description))
    assert again == description
    assert str(again) == str(description)


@pytest.mark.parametrize("text", [RFC4566_EXAMPLE, TWILIO_OFFER, CHROME_OFFER])
def test_crlf_input_is_reproduced_byte_for_byte(text: str) -> None:
    assert SessionDescription.parse(text).to_bytes() == text.encode()


def test_output_uses_crlf_and_bytes_matches_str() -> None:
    description = SessionDescription.parse(BARESIP_OFFER)
    assert str(description).endswith("a=ssrc:3735928559 cname:baresip@10.0.0.5\r\n")
    assert "\n" not in str(description).replace("\r\n", "")
    assert bytes(description) == str(description).encode()


def test_empty_session_name_is_written_as_a_space() -> None:
    assert "\r\ns= \r\n" in str(SessionDescription.parse(RFC3264_OFFER))


def test_deep_copy_relinks_media_to_the_copy() -> None:
    description = SessionDescription.parse(RFC4566_EXAMPLE)
    clone = copy.deepcopy(description)
    assert clone == description
    assert clone.media[0].session is clone


# -- errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty session description"),
        ("\r\n \r\n", "empty session description"),
        (sdp("o=- 1 1 IN IP4 h", "s=-"), "line 1: expected 'v=0' first, got 'o=- 1 1 IN IP4 h'"),
        (sdp("v=1", "o=- 1 1 IN IP4 h", "s=-"), "line 1: expected 'v=0' first"),
        (sdp("v=0", "v=0"), "line 2: duplicate v= line 'v=0'"),
        (sdp("v=0", "s=-"), "missing o= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 h"), "missing s= line"),
        (sdp("v=0", "o=- 1 IN IP4 h", "s=-"), "line 2: bad o= line 'o=- 1 IN IP4 h'"),
        (sdp("v=0", "o=- x 1 IN IP4 h", "s=-"), "line 2: bad o= line"),
        (sdp("v=0", "o=- 1 1.5 IN IP4 h", "s=-"), "line 2: bad o= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "o=- 1 1 IN IP4 h"), "line 3: duplicate o= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "s=x"), "line 4: duplicate s= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "u=a", "u=b"), "line 5: duplicate u= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4"), "line 4: bad c= line 'c=IN IP4'"),
        (sdp(*HEAD, "c=IN IP4 h"), "line 6: duplicate c= line"),
        (sdp(*HEAD, "b=AS"), "line 6: bad b= line 'b=AS'"),
        (sdp(*HEAD, "b=AS:fast"), "line 6: bad b= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0"), "line 4: bad t= line 't=0'"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "r=1 2 3"), "line 4: r= line before any t= line"),
        (sdp(*HEAD, "x=1"), "line 6: unknown line type 'x=1'"),
        (sdp(*HEAD, "garbage"), "line 6: not a <type>=<value> line 'garbage'"),
        (sdp(*HEAD, "A=x"), "line 6: not a <type>=<value> line 'A=x'"),
        (sdp(*HEAD, "a="), "line 6: bad attribute 'a='"),
        (sdp(*HEAD, "a=:x"), "line 6: bad attribute 'a=:x'"),
        (sdp(*HEAD, "m=audio x RTP/AVP 0"), "line 6: bad m= line 'm=audio x RTP/AVP 0'"),
        (sdp(*HEAD, "m=audio 70000 RTP/AVP 0"), "line 6: bad m= line"),
        (sdp(*HEAD, "m=audio 4000/x RTP/AVP 0"), "line 6: bad m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP"), "line 6: bad m= line 'm=audio 4000 RTP/AVP'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP PCMU"), "line 6: bad m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 128"), "line 6: bad m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "o=- 1 1 IN IP4 h"), "line 7: o= line not allowed"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "t=0 0"), "line 7: t= line not allowed"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "y=1"), "line 7: unknown line type 'y=1'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "i=a", "i=b"), "line 8: duplicate i= line"),
        (
            sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "c=IN IP4 h", "c=IN IP4 h"),
            "line 8: duplicate c= line",
        ),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "k=a", "k=b"), "line 8: duplicate k= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "c=IN"), "line 7: bad c= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "b=AS:"), "line 7: bad b= line"),
        (
            sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=rtpmap:96 opus"),
            "line 7: bad a=rtpmap 'a=rtpmap:96 opus'",
        ),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=rtpmap:x PCMU/8000"), "line 7: bad a=rtpmap"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=rtpmap:200 x/8000"), "line 7: bad a=rtpmap"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=rtpmap:96 x/0"), "line 7: bad a=rtpmap"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=rtpmap:96 x/8000/0"), "line 7: bad a=rtpmap"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=rtpmap"), "line 7: bad a=rtpmap 'a=rtpmap'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 96", "a=fmtp:"), "line 7: bad a=fmtp 'a=fmtp:'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime:x"), "line 7: bad a=ptime 'a=ptime:x'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime"), "line 7: bad a=ptime 'a=ptime'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=maxptime:0"), "line 7: bad a=maxptime"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtcp:x"), "line 7: bad a=rtcp 'a=rtcp:x'"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtcp:99999"), "line 7: bad a=rtcp"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtcp:5 IN IP4"), "line 7: bad a=rtcp"),
        (
            sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"),
            "line 5: no c= for 'm=audio 4000 RTP/AVP 0' at media or session level",
        ),
    ],
)
def test_malformed_description_raises_sdp_error_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(text)
    assert str(caught.value).startswith(message)


def test_error_line_numbers_count_lf_only_lines_and_blank_lines() -> None:
    text = "v=0\no=- 1 1 IN IP4 h\n\ns=-\nc=IN IP4 h\nm=audio x RTP/AVP 0\n"
    with pytest.raises(SdpError, match="^line 6: bad m= line"):
        SessionDescription.parse(text)


def test_non_utf8_body_is_an_sdp_error() -> None:
    with pytest.raises(SdpError, match="not UTF-8 at octet 7"):
        SessionDescription.parse(b"v=0\r\ns=\xff-\r\no=\xfe")


def test_sdp_error_is_a_value_error() -> None:
    assert issubclass(SdpError, ValueError)


# -- negotiate (RFC 3264 §6.1) --------------------------------------------------

OPUS = Format(96, "opus", 48000, 2)
G729 = Format(18, "G729", 8000, fmtp="annexb=no")


def test_negotiate_keeps_common_subset_in_offerers_order() -> None:
    offer = audio_of(SessionDescription.parse(RFC3264_OFFER))
    assert negotiate(offer, [PCMA, G729, PCMU]) == [PCMU, PCMA]


def test_negotiate_remaps_dynamic_payload_types_to_the_offerers() -> None:
    offer = audio_of(SessionDescription.parse(LINPHONE_OFFER))
    ours = [Format(120, "OPUS", 48000, 2), PCMU, TELEPHONE_EVENT]
    assert negotiate(offer, ours) == [
        Format(96, "opus", 48000, 2, "useinbandfec=1"),
        PCMU,
        Format(101, "telephone-event", 8000, fmtp="0-16"),
    ]


def test_negotiate_matches_channels_and_clock_rate() -> None:
    offer = audio_of(SessionDescription.parse(LINPHONE_OFFER))
    assert negotiate(offer, [Format(96, "opus", 48000, 1), Format(97, "speex", 8000)]) == []


def test_negotiate_uses_our_fmtp_for_telephone_event() -> None:
    offer = audio_of(
        parse(
            *HEAD,
            "m=audio 4000 RTP/AVP 0 100",
            "a=rtpmap:100 telephone-event/8000",
            "a=fmtp:100 0-15",
        )
    )
    assert negotiate(offer, [PCMU, TELEPHONE_EVENT]) == [
        PCMU,
        Format(100, "telephone-event", 8000, fmtp="0-16"),
    ]


def test_negotiate_drops_telephone_event_we_do_not_support() -> None:
    offer = audio_of(SessionDescription.parse(TWILIO_OFFER))
    assert negotiate(offer, [PCMA]) == [PCMA]


def test_negotiate_picks_telephone_event_at_the_matching_rate() -> None:
    offer = audio_of(SessionDescription.parse(CHROME_OFFER))
    ours = [Format(100, "opus", 48000, 2, "useinbandfec=1"), Format(97, "telephone-event", 48000)]
    assert negotiate(offer, ours) == [
        Format(111, "opus", 48000, 2, "useinbandfec=1"),
        Format(110, "telephone-event", 48000),
    ]


def test_negotiate_without_common_codec_is_empty() -> None:
    offer = audio_of(SessionDescription.parse(TWILIO_OFFER))
    assert negotiate(offer, [G729, OPUS]) == []


def test_negotiate_with_only_telephone_event_in_common_is_empty() -> None:
    offer = audio_of(SessionDescription.parse(TWILIO_OFFER))
    assert negotiate(offer, [G729, TELEPHONE_EVENT]) == []


def test_negotiate_disabled_stream_is_empty() -> None:
    description = parse(*HEAD, "m=audio 0 RTP/AVP 0")
    assert negotiate(description.media[0], [PCMU]) == []


def test_negotiate_keeps_offered_fmtp_when_we_set_none() -> None:
    offer = audio_of(parse(*HEAD, "m=audio 4000 RTP/AVP 18", "a=fmtp:18 annexb=no"))
    assert negotiate(offer, [Format(18, "g729", 8000)]) == [G729]


# -- directions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_answer_direction(offered: str, answered: str) -> None:
    assert answer_direction(offered) == answered


@pytest.mark.parametrize(
    ("current", "held", "resumed"),
    [
        ("sendrecv", "sendonly", "sendrecv"),
        ("recvonly", "inactive", "recvonly"),
        ("sendonly", "sendonly", "sendrecv"),
        ("inactive", "inactive", "recvonly"),
    ],
)
def test_hold_and_resume_directions(current: str, held: str, resumed: str) -> None:
    assert hold_direction(current, True) == held
    assert hold_direction(current, False) == resumed


def test_unknown_direction_is_an_error() -> None:
    with pytest.raises(SdpError, match="unknown direction 'sendrcv'"):
        answer_direction("sendrcv")
    with pytest.raises(SdpError, match="unknown direction"):
        hold_direction("", True)


# -- build_offer / build_answer ------------------------------------------------------


def test_build_offer_writes_rtpmap_fmtp_ptime_rtcp_and_direction() -> None:
    offer = build_offer(
        address="192.0.2.5",
        port=30000,
        formats=[PCMU, PCMA, TELEPHONE_EVENT],
        session_id=42,
        version=1,
        ptime=20,
    )
    assert str(offer) == sdp(
        "v=0",
        "o=- 42 1 IN IP4 192.0.2.5",
        "s=-",
        "c=IN IP4 192.0.2.5",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=rtcp:30001",
        "a=sendrecv",
    )
    assert SessionDescription.parse(str(offer)) == offer
    assert audio_of(offer).codecs == [PCMU, PCMA, TELEPHONE_EVENT]


def test_build_offer_ipv6_hold_and_rtcp_mux() -> None:
    offer = build_offer(
        address="2001:db8::5",
        port=30000,
        formats=[OPUS],
        session_id=1,
        version=2,
        direction="sendonly",
        rtcp_mux=True,
    )
    audio = audio_of(offer)
    assert offer.connection == Connection("IN", "IP6", "2001:db8::5")
    assert offer.origin.addrtype == "IP6"
    assert audio.direction == "sendonly"
    assert audio.rtcp_mux
    assert "a=rtpmap:96 opus/48000/2" in str(offer)


@pytest.mark.parametrize("port", [0, 65535, 70000])
def test_build_offer_rejects_unusable_ports(port: int) -> None:
    with pytest.raises(SdpError, match="bad RTP port"):
        build_offer(address="192.0.2.5", port=port, formats=[PCMU], session_id=1, version=1)


def test_build_offer_rejects_no_formats_and_bad_direction() -> None:
    with pytest.raises(SdpError, match="no formats"):
        build_offer(address="192.0.2.5", port=4000, formats=[], session_id=1, version=1)
    with pytest.raises(SdpError, match="unknown direction"):
        build_offer(
            address="192.0.2.5",
            port=4000,
            formats=[PCMU],
            session_id=1,
            version=1,
            direction="hold",
        )


def answer_to(
    text: str, *, direction: str | None = None, ptime: int | None = None, rtcp_mux: bool = False
) -> SessionDescription:
    offer = SessionDescription.parse(text)
    formats = negotiate(audio_of(offer), [PCMU, PCMA, TELEPHONE_EVENT])
    return build_answer(
        offer,
        address="203.0.113.7",
        port=40000,
        formats=formats,
        session_id=7,
        version=1,
        direction=direction,
        ptime=ptime,
        rtcp_mux=rtcp_mux,
    )


def test_build_answer_to_twilio_offer() -> None:
    answer = answer_to(TWILIO_OFFER, ptime=20)
    assert str(answer) == sdp(
        "v=0",
        "o=- 7 1 IN IP4 203.0.113.7",
        "s=-",
        "c=IN IP4 203.0.113.7",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=rtcp:40001",
        "a=sendrecv",
    )


def test_build_answer_rejects_video_with_port_zero_keeping_its_formats() -> None:
    answer = answer_to(RFC3264_OFFER)
    assert len(answer.media) == 2
    audio, video = answer.media
    assert (audio.port, audio.fmts) == (40000, ["0", "8"])
    assert (video.kind, video.port, video.proto, video.fmts) == (
        "video",
        0,
        "RTP/AVP",
        ["31", "32"],
    )
    assert video.attributes == []
    assert "m=video 0 RTP/AVP 31 32\r\n" in str(answer)


def test_build_answer_keeps_disabled_offered_stream_disabled() -> None:
    answer = answer_to(sdp(*HEAD, "m=audio 0 RTP/AVP 8", "m=audio 4000 RTP/AVP 0"))
    assert [m.port for m in answer.media] == [0, 40000]


def test_build_answer_to_hold_offer_is_recvonly() -> None:
    offer = sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=sendonly")
    assert audio_of(answer_to(offer)).direction == "recvonly"
    inactive = sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=inactive")
    assert audio_of(answer_to(inactive)).direction == "inactive"


def test_build_answer_explicit_direction_wins() -> None:
    answer = answer_to(TWILIO_OFFER, direction="sendonly")
    assert audio_of(answer).direction == "sendonly"


def test_build_answer_echoes_rtcp_mux_only_when_offered_and_wanted() -> None:
    muxed = sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtcp-mux")
    assert audio_of(answer_to(muxed, rtcp_mux=True)).rtcp_mux
    assert not audio_of(answer_to(muxed)).rtcp_mux
    assert not audio_of(answer_to(TWILIO_OFFER, rtcp_mux=True)).rtcp_mux


def test_build_answer_skips_secure_audio_and_accepts_the_plain_one() -> None:
    offer = sdp(
        *HEAD,
        "m=audio 4000 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "m=audio 4002 RTP/AVP 0",
    )
    answer = answer_to(offer)
    assert [(m.port, m.proto) for m in answer.media] == [(0, "RTP/SAVP"), (40000, "RTP/AVP")]


def test_build_answer_without_plain_audio_is_488() -> None:
    offer = SessionDescription.parse(CHROME_OFFER)
    with pytest.raises(SdpError, match="no audio stream over RTP/AVP in the offer; answer 488"):
        build_answer(offer, address="h", port=4000, formats=[PCMU], session_id=1, version=1)


def test_build_answer_without_formats_is_488() -> None:
    offer = SessionDescription.parse(TWILIO_OFFER)
    with pytest.raises(SdpError, match="no common format; answer 488"):
        build_answer(offer, address="h", port=4000, formats=[], session_id=1, version=1)


def test_rfc3264_answer_flow_round_trips() -> None:
    answer = answer_to(RFC3264_OFFER)
    assert SessionDescription.parse(answer.to_bytes()) == answer


# -- rewrite (media anchoring) --------------------------------------------------------


def test_rewrite_anchors_address_port_rtcp_and_bumps_version() -> None:
    original = SessionDescription.parse(
        sdp(
            "v=0",
            "o=alice 5 9 IN IP4 10.0.0.5",
            "s=-",
            "c=IN IP4 10.0.0.5",
            "t=0 0",
            "m=audio 10000 RTP/AVP 0 8",
            "c=IN IP4 10.0.0.6",
            "a=rtcp:10001 IN IP4 10.0.0.6",
            "a=x-custom:kept",
            "a=sendrecv",
        )
    )
    anchored = rewrite(original, address="192.0.2.5", port=30000)
    assert anchored.origin == Origin("alice", 5, 10, "IN", "IP4", "192.0.2.5")
    assert anchored.connection == Connection("IN", "IP4", "192.0.2.5")
    audio = audio_of(anchored)
    assert audio.connection == Connection("IN", "IP4", "192.0.2.5")
    assert audio.port == 30000
    assert audio.rtcp_address == ("192.0.2.5", 30001)
    assert audio.attributes[1:] == [Attribute("x-custom", "kept"), Attribute("sendrecv")]
    assert original.origin.session_version == 9
    assert audio_of(original).port == 10000


def test_rewrite_keeps_unknown_attributes_in_order() -> None:
    original = SessionDescription.parse(BARESIP_OFFER)
    anchored = rewrite(original, address="192.0.2.5", port=30000, session_version=1)
    assert anchored.origin.session_version == 1
    assert audio_of(anchored).attributes == audio_of(original).attributes
    assert audio_of(anchored).bandwidths == [Bandwidth("AS", 64)]


def test_rewrite_with_ipv6_address_changes_addrtype() -> None:
    anchored = rewrite(SessionDescription.parse(TWILIO_OFFER), address="2001:db8::5", port=4000)
    assert anchored.origin.addrtype == "IP6"
    assert anchored.connection == Connection("IN", "IP6", "2001:db8::5")


def test_rewrite_restricts_formats_and_removes_their_lines() -> None:
    original = SessionDescription.parse(CHROME_OFFER)
    pcmu_only = SessionDescription.parse(str(original).replace("UDP/TLS/RTP/SAVPF", "RTP/AVPF"))
    anchored = rewrite(pcmu_only, address="192.0.2.5", port=30000, formats=[PCMU])
    audio = audio_of(anchored)
    assert audio.fmts == ["0"]
    assert audio.codecs == [PCMU]
    names = [a.name for a in audio.attributes]
    assert names.count("rtpmap") == 1
    assert "fmtp" not in names
    assert "rtcp-fb" not in names
    assert audio.attribute("fingerprint") is not None
    assert names.index("rtpmap") == names.index("rtcp-mux") + 1


def test_rewrite_adds_lines_for_formats_the_original_lacked() -> None:
    original = SessionDescription.parse(sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=sendrecv"))
    anchored = rewrite(original, address="192.0.2.5", port=30000, formats=[PCMA, TELEPHONE_EVENT])
    audio = audio_of(anchored)
    assert audio.codecs == [PCMA, TELEPHONE_EVENT]
    assert [str(a) for a in audio.attributes] == [
        "rtpmap:8 PCMA/8000",
        "rtpmap:101 telephone-event/8000",
        "fmtp:101 0-16",
        "sendrecv",
    ]


def test_rewrite_keeps_wildcard_rtcp_fb() -> None:
    original = SessionDescription.parse(LINPHONE_OFFER)
    anchored = rewrite(original, address="192.0.2.5", port=30000, formats=[PCMU])
    assert audio_of(anchored).attribute("rtcp-fb") == "* trr-int 1000"


def test_rewrite_disables_streams_it_does_not_relay() -> None:
    anchored = rewrite(SessionDescription.parse(RFC3264_OFFER), address="192.0.2.5", port=30000)
    assert [m.port for m in anchored.media] == [30000, 0]


def test_rewrite_without_enabled_audio_is_an_error() -> None:
    description = parse(*HEAD, "m=video 4000 RTP/AVP 31")
    with pytest.raises(SdpError, match="no enabled audio stream"):
        rewrite(description, address="192.0.2.5", port=30000)


def test_rewrite_result_round_trips() -> None:
    anchored = rewrite(SessionDescription.parse(LINPHONE_OFFER), address="192.0.2.5", port=3000)
    assert SessionDescription.parse(str(anchored)) == anchored


# -- o= version handling (RFC 3264 §8) --------------------------------------------------


def test_bump_version_increments_only_the_version() -> None:
    original = SessionDescription.parse(TWILIO_OFFER)
    bumped = bump_version(original)
    assert bumped.origin == Origin("root", 1094567789, 1094567790, "IN", "IP4", "54.172.60.1")
    assert original.origin.session_version == 1094567789
    assert bumped.media == original.media


def test_is_refresh_compares_the_origin() -> None:
    original = SessionDescription.parse(TWILIO_OFFER)
    assert is_refresh(original, SessionDescription.parse(TWILIO_OFFER))
    assert not is_refresh(original, bump_version(original))


# -- engine codecs ----------------------------------------------------------------------


def test_to_engine_codecs() -> None:
    assert to_engine_codecs([PCMU, Format(111, "opus", 48000, 2), TELEPHONE_EVENT]) == [
        {"pt": 0, "name": "PCMU", "rate": 8000},
        {"pt": 111, "name": "opus", "rate": 48000},
        {"pt": 101, "name": "telephone-event", "rate": 8000},
    ]


# -- properties -------------------------------------------------------------------------

_token = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9\-_.]{0,8}", fullmatch=True)
_text = st.from_regex(r"([!-~]([ -~]{0,20}[!-~])?)?", fullmatch=True)
_address = st.sampled_from(["192.0.2.1", "2001:db8::1", "host.example.com", "224.2.1.1/127"])
_connection = st.builds(Connection.of, _address)
_bandwidth = st.builds(
    Bandwidth, st.sampled_from(["AS", "CT", "TIAS", "RR"]), st.integers(0, 10**9)
)
_format = st.builds(
    Format,
    st.integers(96, 127),
    st.from_regex(r"[A-Za-z][A-Za-z0-9\-]{0,10}", fullmatch=True),
    st.integers(1, 200000),
    st.integers(1, 8),
)
_attribute = st.one_of(
    st.builds(Attribute, _token, st.none() | _text),
    st.builds(Attribute, st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])),
    st.builds(lambda p: Attribute("ptime", str(p)), st.integers(1, 200)),
    st.builds(lambda p: Attribute("rtcp", str(p)), st.integers(0, 65535)),
    st.builds(lambda f: Attribute("rtpmap", f"{f.payload_type} {f.encoding}"), _format),
    st.builds(lambda f, t: Attribute("fmtp", f"{f.payload_type} {t}"), _format, _token),
)


@st.composite
def _media(draw: st.DrawFn, session_connection: bool) -> MediaDescription:
    port = draw(st.integers(0, 65535))
    connection = draw(st.none() | _connection)
    if port and not session_connection and connection is None:
        connection = draw(_connection)
    return MediaDescription(
        draw(st.sampled_from(["audio", "video", "text"])),
        port,
        draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"])),
        [str(pt) for pt in draw(st.lists(st.integers(0, 127), min_size=1, max_size=6))],
        port_count=draw(st.none() | st.integers(1, 4)),
        info=draw(st.none() | _text),
        connection=connection,
        bandwidths=draw(st.lists(_bandwidth, max_size=2)),
        key=draw(st.none() | _text),
        attributes=draw(st.lists(_attribute, max_size=6)),
    )


@st.composite
def _descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(st.none() | _connection)
    timings = draw(
        st.lists(
            st.builds(
                Timing, st.integers(0, 2**40), st.integers(0, 2**40), st.lists(_text, max_size=2)
            ),
            max_size=2,
        )
    )
    return SessionDescription(
        draw(st.builds(Origin.of, _token, st.integers(0, 2**64), st.integers(0, 2**64), _address)),
        draw(_text),
        info=draw(st.none() | _text),
        uri=draw(st.none() | _text),
        emails=draw(st.lists(_text, max_size=2)),
        phones=draw(st.lists(_text, max_size=2)),
        connection=connection,
        bandwidths=draw(st.lists(_bandwidth, max_size=2)),
        timings=timings,
        time_zones=draw(st.none() | _text),
        key=draw(st.none() | _text),
        attributes=draw(st.lists(_attribute, max_size=4)),
        media=draw(st.lists(_media(connection is not None), max_size=3)),
    )


@given(_descriptions())
def test_property_serialised_model_reparses_to_itself(description: SessionDescription) -> None:
    text = str(description)
    again = SessionDescription.parse(text)
    assert again == description
    assert str(again) == text


@given(st.text(max_size=300))
def test_property_arbitrary_text_parses_or_raises_sdp_error(text: str) -> None:
    try:
        description = SessionDescription.parse(text)
    except SdpError:
        return
    assert SessionDescription.parse(str(description)) == description


@given(st.lists(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]), max_size=4))
def test_property_hold_then_resume_restores_receiving(path: list[str]) -> None:
    for direction in path:
        held = hold_direction(direction, True)
        assert "recv" not in held
        assert hold_direction(held, False) == hold_direction(direction, False)


_LINE_POOL = [
    "o=- 1 1 IN IP4 h",
    "s=-",
    "c=IN IP4 192.0.2.1",
    "c=IN IP4",
    "t=0 0",
    "r=604800 3600",
    "b=AS:64",
    "i=info",
    "k=prompt",
    "x=1",
    "a=sendonly",
    "a=rtcp-mux",
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:96 opus",
    "a=fmtp:96 useinbandfec=1",
    "a=rtcp:4001",
    "a=rtcp:4001 IN IP4 198.51.100.1",
    "a=rtcp:x",
    "a=ptime:20",
    "a=maxptime:x",
    "m=audio 4000 RTP/AVP 0 96",
    "m=audio 0 RTP/AVP 8",
    "m=audio x RTP/AVP 0",
    "m=video 5000 RTP/AVP 31",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
]


@given(st.lists(st.sampled_from(_LINE_POOL), max_size=12))
def test_property_parsed_media_views_never_raise(lines: list[str]) -> None:
    try:
        description = parse("v=0", *lines)
    except SdpError:
        return
    for media in description.media:
        assert media.direction in ("sendrecv", "sendonly", "recvonly", "inactive")
        assert all(0 <= f.payload_type <= 127 for f in media.codecs)
        assert media.rtcp_address is None or media.connection_address is not None
        assert media.ptime in (None, 20)
    assert SessionDescription.parse(str(description)) == description
