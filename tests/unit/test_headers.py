"""Tests for voipcore.sip.headers (RFC 3261 §7.3, §25.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voipcore.sip import headers as headers_module
from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import (
    COMPACT_FORMS,
    Headers,
    canonical_name,
    format_params,
    header_name,
    is_token,
    parse_params,
    quote,
    read_quoted,
    split_list,
)

# -- names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
    ],
)
def test_compact_form_expands_in_either_case(compact: str, full: str) -> None:
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full
    assert COMPACT_FORMS[compact] == full


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("call-id", "Call-ID"),
        ("CSEQ", "CSeq"),
        ("MaX-fOrWaRdS", "Max-Forwards"),
        ("www-authenticate", "WWW-Authenticate"),
        ("x-custom-thing", "X-Custom-Thing"),
        ("NewFangledHeader", "Newfangledheader"),
    ],
)
def test_canonical_name_spelling(raw: str, canonical: str) -> None:
    assert canonical_name(raw) == canonical


def test_header_name_rejects_non_tokens() -> None:
    for bad in ("Bad Name", "Via:", "To\x00", "", "Sübject", "a(b)"):
        with pytest.raises(SipParseError, match="bad header name"):
            header_name(bad)
    assert header_name("extensionHeader-!.%*+_`'~") == "Extensionheader-!.%*+_`'~"


def test_name_cache_is_bounded() -> None:
    for n in range(headers_module._NAME_CACHE_MAX + 100):
        canonical_name(f"X-Junk-{n}")
    assert len(headers_module._NAME_CACHE) <= headers_module._NAME_CACHE_MAX
    assert canonical_name("X-Junk-99999999") == "X-Junk-99999999"


def test_is_token() -> None:
    assert is_token("INVITE")
    assert is_token("!interesting-Method0123456789_*+`.%indeed'~")
    for bad in ("", "a b", "a;b", 'a"', "a,b", "a/b", "a=b", "é"):
        assert not is_token(bad)


# -- lists -------------------------------------------------------------------


def test_split_list_plain() -> None:
    assert split_list("INVITE, ACK ,BYE") == ["INVITE", "ACK", "BYE"]
    assert split_list("  one  ") == ["one"]
    assert split_list("") == []


def test_split_list_keeps_commas_inside_quotes_and_angle_brackets() -> None:
    value = '"Bell, Alexander" <sip:a@example.com;x=1,2>;tag=9, <sip:b@example.com>'
    assert split_list(value) == [
        '"Bell, Alexander" <sip:a@example.com;x=1,2>;tag=9',
        "<sip:b@example.com>",
    ]


def test_split_list_handles_escaped_quote_in_quoted_string() -> None:
    value = r'"a \", b" <sip:a@x>, "c" <sip:c@x>'
    assert split_list(value) == [r'"a \", b" <sip:a@x>', '"c" <sip:c@x>']


def test_split_list_rejects_empty_elements_and_open_quotes() -> None:
    with pytest.raises(SipParseError, match="empty element"):
        split_list("a,,b")
    with pytest.raises(SipParseError, match="empty element"):
        split_list("SIP/2.0/UDP 192.0.2.15;;,;,,")
    with pytest.raises(SipParseError, match="unterminated"):
        split_list('"open, <sip:a@x>')


# -- quoted strings ----------------------------------------------------------


def test_read_quoted_resolves_quoted_pairs() -> None:
    text = r'"J Rosenberg \\\""  <sip:jdrosen@example.com>'
    value, end = read_quoted(text, 0)
    assert value == 'J Rosenberg \\"'
    assert text[end:].lstrip().startswith("<")


def test_read_quoted_returns_index_past_closing_quote() -> None:
    assert read_quoted('x"abc"rest', 1) == ("abc", 6)
    assert read_quoted('""', 0) == ("", 2)


def test_read_quoted_control_characters_in_quoted_pairs() -> None:
    assert read_quoted('"BEL:\\\x07 NUL:\\\x00"', 0)[0] == "BEL:\x07 NUL:\x00"


@pytest.mark.parametrize("text", ['"abc', '"abc\\"', '"', '"a\\'])
def test_read_quoted_unterminated(text: str) -> None:
    with pytest.raises(SipParseError, match="unterminated quoted string"):
        read_quoted(text, 0)


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=40))
def test_quote_round_trips_through_read_quoted(text: str) -> None:
    quoted = quote(text)
    assert read_quoted(quoted + ";x", 0) == (text, len(quoted))


# -- parameters --------------------------------------------------------------


def test_parse_params_fast_path() -> None:
    assert parse_params(";rport;branch=z9hG4bK776;Received=192.0.2.1") == {
        "rport": None,
        "branch": "z9hG4bK776",
        "received": "192.0.2.1",
    }
    assert parse_params("") == {}


@given(
    st.lists(
        st.sampled_from(
            [";tag=1", ";lr", ";Branch=z9hG4bK", ";q=0.5", ";=", ";a=", ";", "x", ";a=<"]
        ),
        max_size=5,
    ).map("".join)
)
def test_parse_params_one_step_split_agrees_with_the_checked_one(text: str) -> None:
    # Without name folding the one-step match is not used.
    try:
        expected = {k.lower(): v for k, v in parse_params(text, lower_names=False).items()}
    except SipParseError:
        with pytest.raises(SipParseError):
            parse_params(text)
        return
    assert parse_params(text) == expected


def test_parse_params_with_lws_around_separators() -> None:
    text = " ;   tag    = 1918181833n ; newparam = newvalue ;  secondparam ; q = 0.33 "
    assert parse_params(text) == {
        "tag": "1918181833n",
        "newparam": "newvalue",
        "secondparam": None,
        "q": "0.33",
    }


def test_parse_params_quoted_values_are_unescaped() -> None:
    params = parse_params(';+sip.instance="<urn:uuid:1;2>";x="a \\"b\\"";tag=1')
    assert params == {"+sip.instance": "<urn:uuid:1;2>", "x": 'a "b"', "tag": "1"}


def test_parse_params_keeps_ipv6_values() -> None:
    assert parse_params(";received=[2001:db8::9:255];maddr=[2001:db8::1]") == {
        "received": "[2001:db8::9:255]",
        "maddr": "[2001:db8::1]",
    }


def test_parse_params_names_case() -> None:
    assert parse_params(";TaG=AbC") == {"tag": "AbC"}
    assert parse_params(";TaG=AbC", lower_names=False) == {"TaG": "AbC"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (";;;;", "empty parameter"),
        (" ; ; ", "empty parameter"),
        (";a b=c", "expected ';'"),
        ("tag=1", "expected ';'"),
        (";tag=", "bad value"),
        (";tag= ", "bad value"),
        (";a=b c", "expected ';'"),
        (';a="open', "bad"),
        (";a=<x>", "bad value"),
        (";a(b)=1", "bad parameter name"),
    ],
)
def test_parse_params_rejects_malformed(text: str, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        parse_params(text)


def test_format_params() -> None:
    assert (
        format_params({"branch": "z9hG4bK1", "rport": None, "received": "2001:db8::1"})
        == ";branch=z9hG4bK1;rport;received=2001:db8::1"
    )
    assert format_params({"x": "two words"}) == ';x="two words"'
    assert format_params({"x": 'q"uote'}) == ';x="q\\"uote"'


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9\-.!%*_+`'~]{0,8}", fullmatch=True),
        st.none()
        | st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)
        | st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=10),
        max_size=5,
    )
)
def test_format_params_round_trips_through_parse_params(params: dict[str, str | None]) -> None:
    assert parse_params(format_params(params)) == params


# -- the collection ----------------------------------------------------------


def test_headers_are_case_insensitive_and_compact_aware() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("t", "<sip:x@y>")])
    assert h.get("via") == "SIP/2.0/UDP a"
    assert h.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.get("To") == h.get("t") == "<sip:x@y>"
    assert "TO" in h and "From" not in h and 42 not in h
    assert list(h) == [("Via", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("To", "<sip:x@y>")]


def test_get_all_splits_list_headers_only() -> None:
    h = Headers(
        [
            ("Route", "<sip:p1;lr>, <sip:p2;lr>"),
            ("Route", "<sip:p3;lr>"),
            ("Authorization", 'Digest username="a", realm="b"'),
            ("Subject", "hello, world"),
        ]
    )
    assert h.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert h.get_all("Authorization") == ['Digest username="a", realm="b"']
    assert h.get_all("Subject") == ["hello, world"]
    assert h.get("Missing") is None and h.get("Missing", "d") == "d"
    assert h.get_all("Missing") == []


def test_headers_keep_order_and_duplicates() -> None:
    h = Headers()
    h.add("Via", "1")
    h.add("To", "t")
    h.add("Via", "2")
    h.prepend("Via", "0")
    assert [v for n, v in h if n == "Via"] == ["0", "1", "2"]
    assert len(h) == 4


def test_set_replaces_every_line_in_place_of_the_first() -> None:
    h = Headers([("X-A", "1"), ("Via", "x"), ("X-B", "2"), ("Via", "y")])
    h.set("via", "z")
    assert list(h) == [("X-A", "1"), ("Via", "z"), ("X-B", "2")]
    h.set("New", "n")
    assert list(h)[-1] == ("New", "n")


def test_replace_first_keeps_the_other_values_of_the_line() -> None:
    h = Headers([("X-A", "1"), ("Via", "a, b"), ("Via", "c")])
    h.replace_first("v", "z")
    assert list(h) == [("X-A", "1"), ("Via", "z, b"), ("Via", "c")]
    h.replace_first("X-A", "2, 3")
    assert h.get("X-A") == "2, 3"
    with pytest.raises(KeyError):
        h.replace_first("Route", "r")


def test_remove_and_copy() -> None:
    h = Headers([("Via", "1"), ("To", "t"), ("Via", "2")])
    c = h.copy()
    h.remove("v")
    assert list(h) == [("To", "t")]
    assert len(c) == 3
    assert "Headers(" in repr(h)


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
def test_values_with_cr_or_lf_are_refused(value: str) -> None:
    h = Headers()
    with pytest.raises(ValueError, match="CR or LF"):
        h.add("Subject", value)
    with pytest.raises(ValueError, match="CR or LF"):
        h.prepend("Subject", value)
    with pytest.raises(ValueError, match="CR or LF"):
        h.set("Subject", value)
    with pytest.raises(ValueError, match="CR or LF"):
        Headers([("Subject", value)])
