"""Registrar (RFC 3261 §10.3) with digest auth, driven by an explicit clock."""

from __future__ import annotations

import pytest

from voipcore.cli import make_user
from voipcore.registrar import RegisterResult, Registrar
from voipcore.sip.digest import Challenge, DigestAuthenticator, answer_challenge
from voipcore.sip.message import Request, Response, parse_message
from voipcore.store import Binding

REALM = "test.local"
NOW = 1_700_000_000.0
USERS = {
    "alice": make_user(REALM, "alice", "alice-secret", "201"),
    "bob": make_user(REALM, "bob", "bob-secret", "202"),
}


def make_registrar(**kwargs: int) -> Registrar:
    auth = DigestAuthenticator(REALM, b"k" * 32, nonce_ttl=300)
    return Registrar(REALM, auth, USERS.get, **kwargs)


def register(
    user: str = "alice",
    *,
    contacts: tuple[str, ...] = ("<sip:alice@192.0.2.10:5060>",),
    expires: int | None = None,
    call_id: str = "call-1",
    cseq: int = 1,
    authorization: str | None = None,
    to_host: str = REALM,
) -> Request:
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{cseq}{call_id}",
        f"From: <sip:{user}@{to_host}>;tag=ft",
        f"To: <sip:{user}@{to_host}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def authorize(
    registrar: Registrar,
    request: Request,
    now: float,
    *,
    password: str = "alice-secret",
    username: str = "alice",
    algorithm: str = "SHA-256",
    nc: int = 1,
) -> RegisterResult:
    """Send ``request`` unauthenticated, answer the challenge, resend."""
    first = registrar.register(request, "udp:192.0.2.10:5060", now)
    assert first.response.status == 401
    challenge = challenge_for(first.response, algorithm)
    return registrar.register(
        with_auth(request, challenge, username=username, password=password, nc=nc),
        "udp:192.0.2.10:5060",
        now,
    )


def challenge_for(response: Response, algorithm: str) -> Challenge:
    challenges = [Challenge.parse(v) for v in response.headers.get_all("WWW-Authenticate")]
    return next(c for c in challenges if c.algorithm == algorithm)


def with_auth(
    request: Request, challenge: Challenge, *, username: str, password: str, nc: int = 1
) -> Request:
    creds = answer_challenge(
        challenge,
        method="REGISTER",
        uri=request.uri_text,
        username=username,
        password=password,
        cnonce="cn",
        nc=nc,
    )
    text = (
        bytes(request)
        .decode()
        .replace("Content-Length: 0", f"Authorization: {creds}\r\nContent-Length: 0")
    )
    new = parse_message(text.encode())
    assert isinstance(new, Request)
    return new


def test_unauthenticated_register_is_challenged_sha256_first() -> None:
    result = make_registrar().register(register(), "udp:192.0.2.10:5060", NOW)
    assert result.response.status == 401
    algorithms = [
        Challenge.parse(v).algorithm for v in result.response.headers.get_all("WWW-Authenticate")
    ]
    assert algorithms == ["SHA-256", "MD5"]
    assert result.changes == []


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_authenticated_register_creates_binding(algorithm: str) -> None:
    registrar = make_registrar()
    result = authorize(registrar, register(), NOW, algorithm=algorithm)
    assert result.response.status == 200
    assert result.response.headers.get_all("Contact") == [
        "<sip:alice@192.0.2.10:5060>;expires=3600"
    ]
    [(binding, removed)] = result.changes
    assert not removed
    assert binding.expires_at == NOW + 3600
    assert binding.source == "udp:192.0.2.10:5060"
    assert [b.contact for b in registrar.lookup("alice", NOW)] == ["sip:alice@192.0.2.10:5060"]


def test_wrong_password_is_forbidden() -> None:
    result = authorize(make_registrar(), register(), NOW, password="wrong")
    assert result.response.status == 403


def test_unknown_user_is_forbidden_after_challenge() -> None:
    result = authorize(make_registrar(), register("mallory"), NOW, username="mallory", password="x")
    assert result.response.status == 403


def test_user_cannot_register_someone_elses_address() -> None:
    # bob authenticates correctly but asks to bind alice's address of record.
    result = authorize(
        make_registrar(), register("alice"), NOW, username="bob", password="bob-secret"
    )
    assert result.response.status == 403
    assert "may not register" in result.response.reason


def test_stale_nonce_gets_new_challenge_with_stale_true() -> None:
    registrar = make_registrar()
    first = registrar.register(register(), "udp:192.0.2.10:5060", NOW)
    challenge = challenge_for(first.response, "MD5")
    late = registrar.register(
        with_auth(register(cseq=2), challenge, username="alice", password="alice-secret"),
        "udp:192.0.2.10:5060",
        NOW + 301,
    )
    assert late.response.status == 401
    assert all(Challenge.parse(v).stale for v in late.response.headers.get_all("WWW-Authenticate"))


def test_replayed_nonce_count_is_challenged_again() -> None:
    registrar = make_registrar()
    first = registrar.register(register(), "udp:192.0.2.10:5060", NOW)
    challenge = challenge_for(first.response, "MD5")
    signed = with_auth(register(cseq=2), challenge, username="alice", password="alice-secret")
    assert registrar.register(signed, "udp:192.0.2.10:5060", NOW).response.status == 200
    replay = registrar.register(signed, "udp:192.0.2.10:5060", NOW + 1)
    assert replay.response.status == 401


def test_expires_below_minimum_gets_423_with_min_expires() -> None:
    result = authorize(make_registrar(min_expires=60), register(expires=30), NOW)
    assert result.response.status == 423
    assert result.response.headers.get("Min-Expires") == "60"
    assert result.changes == []


def test_expires_above_maximum_is_capped() -> None:
    registrar = make_registrar(max_expires=600)
    result = authorize(registrar, register(expires=86400), NOW)
    assert result.response.headers.get_all("Contact") == ["<sip:alice@192.0.2.10:5060>;expires=600"]


def test_contact_expires_parameter_overrides_header() -> None:
    registrar = make_registrar()
    request = register(contacts=("<sip:alice@192.0.2.10>;expires=120",), expires=900)
    result = authorize(registrar, request, NOW)
    assert result.response.headers.get_all("Contact") == ["<sip:alice@192.0.2.10>;expires=120"]


def test_several_contacts_sorted_by_q_value() -> None:
    registrar = make_registrar()
    contacts = ("<sip:desk@192.0.2.11>;q=0.5", "<sip:mobile@192.0.2.12>;q=0.9")
    assert authorize(registrar, register(contacts=contacts), NOW).response.status == 200
    assert [b.contact for b in registrar.lookup("alice", NOW)] == [
        "sip:mobile@192.0.2.12",
        "sip:desk@192.0.2.11",
    ]


def test_q_value_out_of_range_is_bad_request() -> None:
    result = authorize(make_registrar(), register(contacts=("<sip:a@192.0.2.1>;q=1.5",)), NOW)
    assert result.response.status == 400
    assert "q value" in result.response.reason


def test_refresh_updates_expiry_and_keeps_one_binding() -> None:
    registrar = make_registrar()
    authorize(registrar, register(cseq=1), NOW)
    authorize(registrar, register(cseq=3), NOW + 100, nc=1)
    [binding] = registrar.lookup("alice", NOW + 100)
    assert binding.expires_at == NOW + 100 + 3600
    assert binding.cseq == 3


def test_out_of_order_cseq_on_same_call_id_is_rejected() -> None:
    registrar = make_registrar()
    authorize(registrar, register(cseq=5), NOW)
    result = authorize(registrar, register(cseq=4), NOW + 1)
    assert result.response.status == 400
    assert "CSeq" in result.response.reason


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    registrar = make_registrar()
    authorize(registrar, register(cseq=1), NOW)
    result = authorize(registrar, register(contacts=(), cseq=2), NOW + 10)
    assert result.response.status == 200
    assert result.response.headers.get_all("Contact") == [
        "<sip:alice@192.0.2.10:5060>;expires=3590"
    ]
    assert result.changes == []


def test_expires_zero_removes_one_binding() -> None:
    registrar = make_registrar()
    contacts = ("<sip:desk@192.0.2.11>", "<sip:mobile@192.0.2.12>")
    authorize(registrar, register(contacts=contacts, cseq=1), NOW)
    result = authorize(
        registrar, register(contacts=("<sip:desk@192.0.2.11>",), expires=0, cseq=2), NOW
    )
    assert [(b.contact, removed) for b, removed in result.changes] == [
        ("sip:desk@192.0.2.11", True)
    ]
    assert [b.contact for b in registrar.lookup("alice", NOW)] == ["sip:mobile@192.0.2.12"]


def test_star_contact_with_expires_zero_removes_all() -> None:
    registrar = make_registrar()
    authorize(registrar, register(contacts=("<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>")), NOW)
    result = authorize(registrar, register(contacts=("*",), expires=0, cseq=2), NOW)
    assert result.response.status == 200
    assert len(result.changes) == 2
    assert registrar.lookup("alice", NOW) == []


def test_star_contact_without_expires_zero_is_bad_request() -> None:
    result = authorize(make_registrar(), register(contacts=("*",), expires=60), NOW)
    assert result.response.status == 400


def test_too_many_contacts_is_refused() -> None:
    registrar = make_registrar(max_contacts=2)
    contacts = tuple(f"<sip:d{i}@192.0.2.{i}>" for i in range(1, 4))
    result = authorize(registrar, register(contacts=contacts), NOW)
    assert result.response.status == 503
    assert registrar.lookup("alice", NOW) == []


def test_foreign_domain_is_not_found() -> None:
    result = make_registrar().register(
        register(to_host="elsewhere.example"), "udp:192.0.2.10:5060", NOW
    )
    assert result.response.status == 404


def test_ip_address_domain_is_accepted() -> None:
    result = authorize(make_registrar(), register(to_host="192.0.2.1"), NOW)
    assert result.response.status == 200


def test_bindings_expire_on_time() -> None:
    registrar = make_registrar()
    authorize(registrar, register(expires=120), NOW)
    assert registrar.next_expiry() == NOW + 120
    assert registrar.expire(NOW + 119) == []
    [(binding, removed)] = registrar.expire(NOW + 120)
    assert removed and binding.contact == "sip:alice@192.0.2.10:5060"
    assert registrar.lookup("alice", NOW + 120) == []


def test_refreshed_binding_does_not_expire_at_old_time() -> None:
    registrar = make_registrar()
    authorize(registrar, register(expires=120, cseq=1), NOW)
    authorize(registrar, register(expires=600, cseq=2), NOW + 60)
    assert registrar.expire(NOW + 121) == []
    assert len(registrar.lookup("alice", NOW + 121)) == 1


def test_loaded_bindings_are_served() -> None:
    registrar = make_registrar()
    registrar.load(
        [Binding("alice", "sip:alice@192.0.2.9", NOW + 50, 1.0, "c", 1, "udp:192.0.2.9:5060")]
    )
    assert [b.contact for b in registrar.lookup("alice", NOW)] == ["sip:alice@192.0.2.9"]
    assert len(registrar) == 1


def signed_with_digest_uri(
    registrar: Registrar, digest_uri: str, *, answer_as: str | None = None
) -> Request:
    """A second REGISTER answering the first's MD5 challenge (optionally claiming
    another algorithm with the same nonce) for ``digest_uri``."""
    first = registrar.register(register(), "udp:192.0.2.10:5060", NOW)
    challenge = challenge_for(first.response, "MD5")
    if answer_as is not None:
        challenge = Challenge(REALM, challenge.nonce, answer_as)
    creds = answer_challenge(
        challenge,
        method="REGISTER",
        uri=digest_uri,
        username="alice",
        password="alice-secret",
        cnonce="cn",
    )
    text = bytes(register(cseq=2)).decode()
    signed = parse_message(
        text.replace("Content-Length: 0", f"Authorization: {creds}\r\nContent-Length: 0").encode()
    )
    assert isinstance(signed, Request)
    return signed


def test_digest_uri_equivalent_to_request_uri_is_accepted() -> None:
    # pyVoIP signs "sip:test.local;transport=UDP" for Request-URI "sip:test.local":
    # equal under RFC 3261 §19.1.4 (transport in only one URI is ignored).
    registrar = make_registrar()
    signed = signed_with_digest_uri(registrar, f"sip:{REALM};transport=UDP")
    assert registrar.register(signed, "udp:192.0.2.10:5060", NOW).response.status == 200


def test_digest_uri_for_another_target_is_bad_request() -> None:
    registrar = make_registrar()
    signed = signed_with_digest_uri(registrar, "sip:other.example")
    result = registrar.register(signed, "udp:192.0.2.10:5060", NOW)
    assert result.response.status == 400
    assert "digest uri" in result.response.reason


def test_offered_algorithms_follow_configured_preference() -> None:
    auth = DigestAuthenticator(REALM, b"k" * 32, algorithms=("MD5",))
    registrar = Registrar(REALM, auth, USERS.get)
    first = registrar.register(register(), "udp:192.0.2.10:5060", NOW)
    offered = [
        Challenge.parse(v).algorithm for v in first.response.headers.get_all("WWW-Authenticate")
    ]
    assert offered == ["MD5"]
    # A SHA-256 answer to a server that does not offer SHA-256 is challenged again.
    signed = signed_with_digest_uri(registrar, f"sip:{REALM}", answer_as="SHA-256")
    assert registrar.register(signed, "udp:192.0.2.10:5060", NOW).response.status == 401


def test_refreshes_do_not_grow_the_expiry_heap_without_bound() -> None:
    registrar = make_registrar()
    contact = "sip:alice@192.0.2.9"
    for n in range(5000):
        registrar.load([Binding("alice", contact, NOW + 60 + n, 1.0, "c", n, "udp:x:1")])
    assert len(registrar) == 1
    assert len(registrar._expiry) <= 2 * len(registrar) + 1024
    assert registrar.expire(NOW + 60 + 4998) == []
    assert [removed for _, removed in registrar.expire(NOW + 60 + 4999)] == [True]
    assert len(registrar) == 0
