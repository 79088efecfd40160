"""Tests for voipcore.sip.uri (RFC 3261 §19.1, §20.10, §25.1; RFC 3966)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.parsing import parsed_or_none
from voipcore.sip.errors import SipParseError
from voipcore.sip.uri import (
    AbsoluteUri,
    NameAddr,
    SipUri,
    TelUri,
    check_name_addr,
    parse_host,
    parse_name_addr,
    parse_port,
    parse_uri,
)


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# -- SIP and SIPS ------------------------------------------------------------


def test_full_sip_uri() -> None:
    uri = sip("sip:alice:secret@atlanta.example.com:5070;transport=tcp;lr?subject=project&x=1")
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.example.com"
    assert uri.port == 5070
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == {"subject": "project", "x": "1"}
    assert uri.transport == "TCP"


def test_host_only_uri_and_defaults() -> None:
    uri = sip("sip:example.com")
    assert (uri.user, uri.password, uri.port, uri.params, uri.headers) == (None, None, None, {}, {})
    assert uri.transport == "UDP"
    assert sip("sips:example.com").transport == "TLS"


def test_scheme_is_case_insensitive() -> None:
    uri = sip("SIP:Alice@EXAMPLE.com")
    assert uri.scheme == "sip"
    assert uri.user == "Alice"
    assert uri.address_of_record == "sip:Alice@example.com"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:alice@[2001:db8::10]:5070;transport=udp", "[2001:db8::10]", 5070),
        ("sips:[::1]:5061", "[::1]", 5061),
        ("sip:bob@[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", None),
    ],
)
def test_ipv6_references(text: str, host: str, port: int | None) -> None:
    uri = sip(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


@pytest.mark.parametrize(
    "text",
    [
        "sip:[2001:db8::10",
        "sip:[2001:db8::zz]",
        "sip:[2001:db8::10]x",
        "sip:2001:db8::10",
    ],
)
def test_bad_ipv6_references(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_user_part_may_hold_semicolons_question_marks_and_slashes() -> None:
    uri = sip("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert uri.user_unescaped == "user;par=u@example.net"
    assert uri.params == {}
    crazy = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com")
    assert crazy.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert crazy.headers == {}


def test_escapes_are_kept_and_decoded_on_demand() -> None:
    uri = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "cal%6Cer"
    assert uri.user_unescaped == "caller"
    assert uri.unescaped_params == {"lr": None, "name": "value%41"}
    assert str(uri) == "sip:cal%6Cer@host5.example.net;%6c%72;n%61me=v%61lue%25%34%31"


@pytest.mark.parametrize("text", ["sip:a%zz@x", "sip:a%4@x", "sip:x;a=%", "sip:x?h=%G0"])
def test_bad_escapes_are_rejected(text: str) -> None:
    with pytest.raises(SipParseError, match="escape"):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("sip:x;lr", {"lr": None}),
        ("sip:x;maddr=[2001:db8::1];ttl=15", {"maddr": "[2001:db8::1]", "ttl": "15"}),
        ("sip:x;TRANSPORT=TCP", {"transport": "TCP"}),
        ("sip:x;a/b=c:d;user=phone", {"a/b": "c:d", "user": "phone"}),
    ],
)
def test_uri_parameters(text: str, params: dict[str, str | None]) -> None:
    assert sip(text).params == params


@pytest.mark.parametrize(
    "text",
    ["sip:x;", "sip:x;;lr", "sip:x;=v", "sip:x;a=", "sip:x;a=b=c", "sip:x;a b", 'sip:x;a="b"'],
)
def test_bad_uri_parameters(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_uri_headers() -> None:
    uri = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E&Subject=")
    assert uri.headers == {"Route": "%3Csip:sip.example.com%3E", "Subject": ""}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E&Subject="
    for bad in ("sip:x?", "sip:x?a", "sip:x?a=1&", "sip:x?=1"):
        with pytest.raises(SipParseError, match="URI header"):
            parse_uri(bad)


@pytest.mark.parametrize(
    "text",
    [
        "example.com",
        ":x",
        "1sip:x",
        "s p:x",
        "sip:",
        "sip:user@",
        "sip:@example.com",
        "sip:a b@example.com",
        "sip:<x>",
        'sip:"x"',
        "sip:exa_mple.com",
        "sip:x:0x50",
        "sip:x:65536",
        "sip:x:",
        "sip:x:\uff15\uff10\uff16\uff10",
        "sip:us\u00e9r@x",
        "sip:a:b:c@x\u00e9",
    ],
)
def test_malformed_sip_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sip:alice:secretword@atlanta.com;transport=tcp",
        "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sips:1212@gateway.com",
        "sip:alice@192.0.2.4",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice;day=tuesday@atlanta.com",
    ],
)
def test_rfc3261_section_19_1_3_examples_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_port_and_host_helpers() -> None:
    assert parse_port("0") == 0
    assert parse_port("65535") == 65535
    for bad in ("", "65536", "-1", "123456", "5o60", "\u0665"):
        with pytest.raises(SipParseError, match="bad port"):
            parse_port(bad)
    assert parse_host("Example.COM") == "Example.COM"
    for bad in ("", "exa mple", "[::1", "[nope]"):
        with pytest.raises(SipParseError):
            parse_host(bad)


# -- tel and other schemes ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number", "params"),
    [
        ("tel:+1-404-555-1234", "+1-404-555-1234", {}),
        ("tel:+14045551234;ext=123", "+14045551234", {"ext": "123"}),
        ("tel:7042;phone-context=example.com", "7042", {"phone-context": "example.com"}),
        ("TEL:+1(404)555.1234", "+1(404)555.1234", {}),
        ("tel:*67#", "*67#", {}),
    ],
)
def test_tel_uris(text: str, number: str, params: dict[str, str | None]) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, TelUri)
    assert (uri.scheme, uri.number, uri.params) == ("tel", number, params)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize("text", ["tel:", "tel:+", "tel:-", "tel:+1 404", "tel:+1;", "tel:12$"])
def test_bad_tel_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


@pytest.mark.parametrize(
    "text",
    ["http://www.example.com", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "isbn:29837"],
)
def test_other_schemes_stay_opaque(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert str(uri) == text
    assert uri.scheme == text.split(":")[0]


def test_unknown_scheme_with_dots_and_empty_rest() -> None:
    assert parse_uri("soap.beep://192.0.2.103:3002").scheme == "soap.beep"
    with pytest.raises(SipParseError, match="empty URI"):
        parse_uri("foo:")


# -- name-addr and addr-spec --------------------------------------------------


def test_params_after_addr_spec_belong_to_the_header() -> None:
    addr = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=1")
    assert isinstance(addr.uri, SipUri)
    assert addr.uri.params == {}
    assert addr.params == {"unknownparam": None, "tag": "1"}
    assert addr.tag == "1"


def test_params_inside_angle_brackets_belong_to_the_uri() -> None:
    addr = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>;tag=1")
    assert isinstance(addr.uri, SipUri)
    assert addr.uri.params == {"unknownparam": None}
    assert addr.params == {"tag": "1"}


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ('"Alice Smith" <sip:alice@example.com>', "Alice Smith"),
        ('"" <sip:alice@example.com>', ""),
        ('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>', 'J Rosenberg \\"'),
        ("caller<sip:caller@example.com>", "caller"),
        ("A.  Bell <sip:a.g.bell@example.com>", "A. Bell"),
        (
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>",
            "token1~` token2'+_ token3*%!.-",
        ),
        ("<sip:alice@example.com>", None),
        ("sip:alice@example.com", None),
    ],
)
def test_display_names(text: str, display: str | None) -> None:
    assert parse_name_addr(text).display_name == display


def test_addr_spec_with_lws_before_parameters() -> None:
    addr = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert str(addr.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert addr.tag == "1918181833n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty address"),
        ('"Mr. J. User <sip:j.user@example.com>', "unterminated quoted string"),
        ("Bell, Alexander <sip:a.g.bell@example.com>", "quoted string"),
        ("Caf\u00e9 <sip:a@example.com>", "quoted string"),
        ('"Watson, Thomas" < sip:t.watson@example.org >', "whitespace inside <>"),
        ("<sip:a@example.com", "unterminated <URI>"),
        ("sip:a@example.com>", "stray '>'"),
        ('"Alice" sip:alice@example.com', "must be followed by <URI>"),
        ("sip:user@example.com?Route=%3Csip:sip.example.com%3E", "enclosed in <>"),
        ("sip:a,b@example.com", "enclosed in <>"),
        ("sip:a@example.com junk", "enclosed in <>"),
        ("<sip:a@example.com>junk", "expected ';'"),
        ("<sip:a@example.com>;;", "empty parameter"),
    ],
)
def test_malformed_addresses(text: str, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        parse_name_addr(text)


def test_angle_brackets_allow_headers_and_commas() -> None:
    addr = parse_name_addr("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>")
    assert isinstance(addr.uri, SipUri)
    assert addr.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}
    assert parse_name_addr("<sip:a,b@example.com>").uri == SipUri("example.com", "a,b")


def test_quoted_contact_parameter_survives() -> None:
    addr = parse_name_addr(
        '<sip:alice@192.0.2.10:5060>;expires=3600;+sip.instance="<urn:uuid:0000-1111>"'
    )
    assert addr.params == {"expires": "3600", "+sip.instance": "<urn:uuid:0000-1111>"}


@pytest.mark.parametrize(
    "text",
    [
        '"Alice" <sip:alice@example.com>;tag=1928301774',
        "<sip:bob@biloxi.example.com>",
        '"Quoted string \\"\\"" <sip:jdrosen@example.com>;newparam=newvalue;secondparam;q=0.33',
        "<tel:+14045551234>;tag=x",
        "<urn:service:sos>",
    ],
)
def test_name_addr_round_trips(text: str) -> None:
    addr = parse_name_addr(text)
    assert parse_name_addr(str(addr)) == addr
    assert str(addr) == text


# -- properties --------------------------------------------------------------

_USER = st.from_regex(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,12}", fullmatch=True)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,6}[a-z0-9])?", fullmatch=True)
_HOST = (
    st.lists(_LABEL, min_size=1, max_size=3).map(".".join)
    | st.ip_addresses(v=4).map(str)
    | st.ip_addresses(v=6).map(lambda a: f"[{a}]")
)
_PCHARS = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]"
_PNAME = st.from_regex(r"[a-z0-9\-_.!~*'()\[\]/:&+$]{1,8}", fullmatch=True)
_PVALUE = st.none() | st.from_regex(rf"{_PCHARS}{{1,8}}", fullmatch=True)
_HCHARS = r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$]"


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | _USER)
    return SipUri(
        host=draw(_HOST),
        user=user,
        password=draw(st.none() | st.from_regex(r"[A-Za-z0-9\-_.!~*'()&=+$,]{0,8}", fullmatch=True))
        if user is not None
        else None,
        port=draw(st.none() | st.integers(0, 65535)),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        params=draw(st.dictionaries(_PNAME, _PVALUE, max_size=4)),
        headers=draw(
            st.dictionaries(
                st.from_regex(rf"{_HCHARS}{{1,8}}", fullmatch=True),
                st.from_regex(rf"{_HCHARS}{{0,8}}", fullmatch=True),
                max_size=3,
            )
        ),
    )


@given(sip_uris())
def test_sip_uri_round_trip(uri: SipUri) -> None:
    text = str(uri)
    assert parse_uri(text) == uri
    assert str(parse_uri(text)) == text


@given(
    sip_uris(),
    st.none() | st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=12),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9\-.!%*_+`'~]{0,6}", fullmatch=True),
        st.none() | st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,8}", fullmatch=True),
        max_size=3,
    ),
)
def test_name_addr_round_trip(
    uri: SipUri, display: str | None, params: dict[str, str | None]
) -> None:
    addr = NameAddr(uri, display, params)
    assert parse_name_addr(str(addr)) == addr


@given(st.text(max_size=60))
def test_parse_uri_never_fails_with_anything_but_sip_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    assert parse_uri(str(uri)) == uri


# -- the one-step fast path ------------------------------------------------------


# (valid spellings, invalid or unusual ones) of each part of a name-addr.
_ADDRESS_PARTS = [
    (['"Bob" ', "Bob ", "Bob  Smith", ""], ['"B\\"o" ', "B<b ", '"Bob"', "é "]),
    (["sip:", "sips:"], ["SIP:", "tel:", "", "sip: "]),
    (["alice@", "a.b-c_d!~*'()&=+$,@", ""], ["al%41@", "a:pw@", "@", "é@"]),
    (["example.com", "192.0.2.1", "a-b.c"], ["[::1]", "", "ex ample", "a_b"]),
    (["", ":5060", ":65535"], [":65536", ":99999", ":", ":0x1"]),
    (["", ";lr", ";transport=tcp;maddr=1.2.3.4"], [";a=", ";%41", ";a=b=c", "?x=1"]),
    (["", ";tag=1", ";q=0.5;expires=60", ";tag"], [";=x", " ;tag=1", ';a="b"', ";a=<"]),
]


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """name-addr values of the usual shape, most with one unusual or invalid part."""
    odd = draw(st.integers(-1, len(_ADDRESS_PARTS) - 1))
    display, scheme, user, host, port, uri_params, params = (
        draw(st.sampled_from(bad if i == odd else good))
        for i, (good, bad) in enumerate(_ADDRESS_PARTS)
    )
    return f"{display}<{scheme}{user}{host}{port}{uri_params}>{params}"


@given(addresses())
def test_name_addr_fast_path_agrees_with_the_general_parser(text: str) -> None:
    # A leading space defeats the one-step match; the general parser strips it.
    outcome = parsed_or_none(parse_name_addr, text)
    assert outcome == parsed_or_none(parse_name_addr, " " + text)
    if outcome is None:
        with pytest.raises(SipParseError):
            check_name_addr(text)
    else:
        check_name_addr(text)
