"""RFC 4475 torture messages against the SIP parser.

Each fixture in ``tests/fixtures/torture`` is listed in ``manifest.toml`` with the
RFC's verdict and ours: messages the parser accepts must yield the values the
manifest records; messages it rejects must raise :class:`SipParseError` with the
response status and a reason naming the offending element.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voipcore.sip.errors import SipParseError
from voipcore.sip.message import Message, Request, Response, StreamFramer, parse_message
from voipcore.sip.uri import NameAddr, SipUri

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torture"
MANIFEST: list[dict[str, Any]] = tomllib.loads(
    (FIXTURES / "manifest.toml").read_text(encoding="utf-8")
)["message"]

ACCEPTED = [m for m in MANIFEST if m["expect"] in ("parse", "semantic")]
REJECTED = [m for m in MANIFEST if m["expect"] == "reject"]


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [f"{e['section']}-{e['file'].removesuffix('.sip')}" for e in entries]


def load(entry: dict[str, Any]) -> bytes:
    path: Path = FIXTURES / entry["file"]
    return path.read_bytes()


def _none(value: Any) -> Any:
    """The manifest writes "absent" as false (TOML has no null)."""
    if value is False:
        return None
    if isinstance(value, list):
        return [_none(v) for v in value]
    return value


def _params(expected: dict[str, Any]) -> dict[str, str | None]:
    """Manifest parameter tables write a flag parameter as true."""
    return {k: None if v is True else v for k, v in expected.items()}


def _sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri), uri
    return uri


def _contacts(msg: Message) -> list[NameAddr]:
    out = []
    for contact in msg.contacts:
        assert isinstance(contact, NameAddr), contact
        out.append(contact)
    return out


def _request(msg: Message) -> Request:
    assert isinstance(msg, Request)
    return msg


def _response(msg: Message) -> Response:
    assert isinstance(msg, Response)
    return msg


def _address(attr: str) -> dict[str, Callable[[Message, Any], tuple[object, object]]]:
    """Checks on the From or To value: ``<attr>_uri``, ``<attr>_tag``, ..."""

    def get(msg: Message) -> NameAddr:
        value = getattr(msg, attr)
        assert isinstance(value, NameAddr)
        return value

    prefix = attr.rstrip("_")
    return {
        f"{prefix}_uri": lambda m, e: (str(get(m).uri), e),
        f"{prefix}_display": lambda m, e: (get(m).display_name, _none(e)),
        f"{prefix}_tag": lambda m, e: (get(m).tag, _none(e)),
        f"{prefix}_params": lambda m, e: (get(m).params, _params(e)),
        f"{prefix}_user_unescaped": lambda m, e: (_sip(get(m).uri).user_unescaped, e),
        f"{prefix}_uri_port": lambda m, e: (_sip(get(m).uri).port, e),
        f"{prefix}_uri_params": lambda m, e: (_sip(get(m).uri).params, _params(e)),
    }


# key in [message.values] -> (actual, expected) for a parsed message.
CHECKS: dict[str, Callable[[Message, Any], tuple[object, object]]] = {
    "kind": lambda m, e: ("request" if isinstance(m, Request) else "response", e),
    "method": lambda m, e: (_request(m).method, e),
    "request_uri": lambda m, e: (_request(m).uri_text, e),
    "ruri_user": lambda m, e: (_sip(_request(m).uri).user, e),
    "ruri_password": lambda m, e: (_sip(_request(m).uri).password, e),
    "ruri_host": lambda m, e: (_sip(_request(m).uri).host, e),
    "ruri_params": lambda m, e: (_sip(_request(m).uri).params, _params(e)),
    "ruri_user_unescaped": lambda m, e: (_sip(_request(m).uri).user_unescaped, e),
    "status_code": lambda m, e: (_response(m).status, e),
    "reason": lambda m, e: (_response(m).reason, e),
    "call_id": lambda m, e: (m.call_id, e),
    "cseq": lambda m, e: (m.cseq.seq, e),
    "cseq_method": lambda m, e: (m.cseq.method, e),
    "max_forwards": lambda m, e: (m.max_forwards, e),
    "via_count": lambda m, e: (len(m.vias), e),
    "via_transports": lambda m, e: ([v.transport for v in m.vias], e),
    "via_hosts": lambda m, e: ([v.host for v in m.vias], e),
    "via_ports": lambda m, e: ([v.port for v in m.vias], e),
    "via_branches": lambda m, e: ([v.branch for v in m.vias], _none(e)),
    "top_via_params": lambda m, e: (m.via.params, _params(e)),
    "top_via_rfc3261_branch": lambda m, e: (m.via.has_rfc3261_branch, e),
    **_address("to"),
    **_address("from_"),
    "contact_uris": lambda m, e: ([str(c.uri) for c in _contacts(m)], e),
    "contact_displays": lambda m, e: ([c.display_name for c in _contacts(m)], _none(e)),
    "contact_params": lambda m, e: ([c.params for c in _contacts(m)], [_params(p) for p in e]),
    "contact_user_unescaped": lambda m, e: (
        [_sip(c.uri).user_unescaped for c in _contacts(m)],
        e,
    ),
    "contact_unescaped_uri_params": lambda m, e: (
        [_sip(c.uri).unescaped_params for c in _contacts(m)],
        [_params(p) for p in e],
    ),
    "contact_uri_headers": lambda m, e: ([_sip(c.uri).headers for c in _contacts(m)], e),
    "headers": lambda m, e: ({k: m.headers.get(k) for k in e}, e),
    "header_counts": lambda m, e: (
        {k: sum(1 for n, _ in m.headers if n.lower() == k.lower()) for k in e},
        e,
    ),
    "list_values": lambda m, e: ({k: m.headers.get_all(k) for k in e}, e),
    "headers_absent": lambda m, e: ([k for k in e if k in m.headers], []),
    "body_length": lambda m, e: (len(m.body), e),
    "body_suffix": lambda m, e: (m.body.endswith(e.encode("utf-8")), True),
}


def mismatches(
    msg: Message, values: dict[str, Any], skip: frozenset[str] = frozenset()
) -> dict[str, tuple[object, object]]:
    """Every manifest value that the parsed message does not reproduce."""
    unknown = set(values) - set(CHECKS)
    assert not unknown, f"manifest keys with no check: {sorted(unknown)}"
    out: dict[str, tuple[object, object]] = {}
    for key, expected in values.items():
        if key in skip:
            continue
        actual, wanted = CHECKS[key](msg, expected)
        if actual != wanted:
            out[key] = (actual, wanted)
    return out


def test_manifest_lists_every_fixture_once() -> None:
    files = sorted(p.name for p in FIXTURES.glob("*.sip"))
    listed = [m["file"] for m in MANIFEST]
    assert sorted(listed) == files
    assert len(set(listed)) == len(listed)


def test_manifest_covers_rfc4475_sections() -> None:
    sections = {m["section"] for m in MANIFEST}
    assert {f"3.1.1.{n}" for n in range(1, 14)} <= sections
    assert {f"3.1.2.{n}" for n in range(1, 20)} <= sections
    assert {f"3.3.{n}" for n in range(1, 16)} | {"3.2.1", "3.4.1"} <= sections


@pytest.mark.parametrize("entry", MANIFEST, ids=_ids(MANIFEST))
def test_manifest_entry_is_consistent(entry: dict[str, Any]) -> None:
    expect = entry["expect"]
    assert expect in ("parse", "reject", "semantic")
    if expect == "reject":
        assert isinstance(entry["status"], int) and entry["reason"]
        assert "values" not in entry
    else:
        assert entry.get("status", "semantic") == "semantic"
        assert entry["values"]
    if expect == "semantic":
        assert entry["layer"]
    if expect == "parse":
        assert entry["valid"] is True


@pytest.mark.parametrize("entry", ACCEPTED, ids=_ids(ACCEPTED))
def test_accepted_message_parses_with_the_rfc_values(entry: dict[str, Any]) -> None:
    msg = parse_message(load(entry))
    assert mismatches(msg, entry["values"]) == {}


@pytest.mark.parametrize("entry", ACCEPTED, ids=_ids(ACCEPTED))
def test_accepted_message_round_trips(entry: dict[str, Any]) -> None:
    msg = parse_message(load(entry))
    again = parse_message(bytes(msg))
    # Serializing always writes a Content-Length, which inv2543 lacked.
    assert mismatches(again, entry["values"], skip=frozenset({"headers_absent"})) == {}
    assert bytes(again) == bytes(msg)


@pytest.mark.parametrize("entry", ACCEPTED, ids=_ids(ACCEPTED))
def test_accepted_message_frames_the_same_on_a_stream(entry: dict[str, Any]) -> None:
    data = load(entry)
    framer = StreamFramer()
    if b"\r\nContent-Length" not in data and b"\r\nl:" not in data.lower():
        # inv2543: without Content-Length a stream cannot be framed (§18.3).
        with pytest.raises(SipParseError, match="Content-Length"):
            framer.feed(data)
        return
    frames: list[bytes] = []
    for i in range(0, len(data), 7):
        frames += framer.feed(data[i : i + 7])
    assert frames, "no complete message framed"
    msg = parse_message(frames[0], stream=True)
    assert mismatches(msg, entry["values"]) == {}


@pytest.mark.parametrize("entry", REJECTED, ids=_ids(REJECTED))
def test_rejected_message_raises_with_status_and_reason(entry: dict[str, Any]) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(entry))
    assert info.value.status == entry["status"], info.value.reason
    for needle in entry["reason"]:
        assert needle in info.value.reason, (needle, info.value.reason)


@pytest.mark.parametrize("entry", MANIFEST, ids=_ids(MANIFEST))
def test_every_message_parses_or_fails_cleanly_when_truncated(entry: dict[str, Any]) -> None:
    data = load(entry)
    for cut in range(0, len(data), max(1, len(data) // 40)):
        with contextlib.suppress(SipParseError):
            parse_message(data[:cut])


def test_dblreq_trailing_invite_is_ignored_on_a_datagram() -> None:
    data = (FIXTURES / "dblreq.sip").read_bytes()
    msg = parse_message(data)
    assert isinstance(msg, Request) and msg.method == "REGISTER"
    assert msg.body == b""
    assert b"INVITE sip:joe@example.com" in data


def test_dblreq_on_a_stream_is_two_messages() -> None:
    frames = StreamFramer().feed((FIXTURES / "dblreq.sip").read_bytes())
    assert len(frames) == 2
    second = parse_message(frames[1], stream=True)
    assert isinstance(second, Request) and second.method == "INVITE"
    assert len(second.body) == 150


def test_mcl01_conflicting_lengths_lose_stream_framing() -> None:
    with pytest.raises(SipParseError, match="conflicting Content-Length"):
        StreamFramer().feed((FIXTURES / "mcl01.sip").read_bytes())


def test_clerr_waits_for_the_rest_of_the_body_on_a_stream() -> None:
    framer = StreamFramer()
    assert framer.feed((FIXTURES / "clerr.sip").read_bytes()) == []


def test_esc01_parameter_escapes_decode_once() -> None:
    msg = parse_message((FIXTURES / "esc01.sip").read_bytes())
    contact = msg.contacts[0]
    assert isinstance(contact, NameAddr)
    params = _sip(contact.uri).unescaped_params
    assert params == {"lr": None, "name": "value%41"}
    assert params["name"] != "valueA"


def test_esc02_percent_in_method_is_not_an_escape() -> None:
    msg = parse_message((FIXTURES / "esc02.sip").read_bytes())
    assert isinstance(msg, Request)
    assert msg.method == "RE%47IST%45R"
    assert msg.method.upper() != "REGISTER"
    assert "C%6Fntact" in msg.headers
    assert len(msg.contacts) == 2


def test_badbranch_top_via_claims_rfc3261_but_has_no_identifier() -> None:
    msg = parse_message((FIXTURES / "badbranch.sip").read_bytes())
    assert msg.via.branch == "z9hG4bK"
    assert not msg.via.has_rfc3261_branch


def test_unksm2_unknown_schemes_stay_opaque() -> None:
    msg = parse_message((FIXTURES / "unksm2.sip").read_bytes())
    assert msg.to.uri.scheme == "isbn"
    assert msg.from_.uri.scheme == "http"
    assert not isinstance(msg.to.uri, SipUri)
