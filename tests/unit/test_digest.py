"""Tests for voipcore.sip.digest (RFC 3261 §22, RFC 7616, RFC 8760)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.parsing import parsed_or_none
from voipcore.sip.digest import (
    ALGORITHMS,
    AuthResult,
    Challenge,
    Credentials,
    DigestAuthenticator,
    _parse_auth_params,
    answer_challenge,
    compute_ha1,
    expected_response,
    parse_auth_params,
)
from voipcore.sip.errors import SipParseError

# RFC 7616 §3.9.1.
USER = "Mufasa"
PASSWORD = "Circle of Life"
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}

REALM = "voip.example.com"
URI = "sip:voip.example.com"
T0 = 1_700_000_000.0


def authenticator(nonce_ttl: float = 300.0, max_tracked_nonces: int = 100) -> DigestAuthenticator:
    return DigestAuthenticator(
        REALM, b"k" * 32, nonce_ttl=nonce_ttl, max_tracked_nonces=max_tracked_nonces
    )


def answer(challenge: Challenge, password: str = PASSWORD, nc: int = 1) -> Credentials:
    return answer_challenge(
        challenge,
        method="REGISTER",
        uri=URI,
        username=USER,
        password=password,
        cnonce="0a4f113b",
        nc=nc,
    )


def ha1_for(algorithm: str) -> str:
    return compute_ha1(USER, REALM, PASSWORD, algorithm)


def challenge_for(auth: DigestAuthenticator, algorithm: str, now: float = T0) -> Challenge:
    return next(c for c in auth.challenges(now) if c.algorithm == algorithm)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_response(algorithm: str) -> None:
    ha1 = compute_ha1(USER, RFC_REALM, PASSWORD, algorithm)
    response = expected_response(
        ha1,
        "GET",
        "/dir/index.html",
        RFC_NONCE,
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert response == RFC_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_answered_by_client(algorithm: str) -> None:
    challenge = Challenge.parse(
        f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )
    assert challenge.qop == ("auth", "auth-int")
    creds = answer_challenge(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username=USER,
        password=PASSWORD,
        cnonce=RFC_CNONCE,
    )
    assert creds == Credentials(
        username=USER,
        realm=RFC_REALM,
        nonce=RFC_NONCE,
        uri="/dir/index.html",
        response=RFC_RESPONSES[algorithm],
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
        opaque=RFC_OPAQUE,
    )


def test_rfc7616_example_authorization_parses() -> None:
    creds = Credentials.parse(
        f'Digest username="Mufasa", realm="{RFC_REALM}", uri="/dir/index.html", '
        f'algorithm=MD5, nonce="{RFC_NONCE}", nc=00000001, cnonce="{RFC_CNONCE}", '
        f'qop=auth, response="{RFC_RESPONSES["MD5"]}", opaque="{RFC_OPAQUE}"'
    )
    assert (creds.username, creds.uri, creds.qop, creds.nc) == (
        "Mufasa",
        "/dir/index.html",
        "auth",
        "00000001",
    )
    assert creds.opaque == RFC_OPAQUE


def test_sess_algorithm_keys_the_response_with_nonce_and_cnonce() -> None:
    challenge = Challenge(REALM, "abc", algorithm="SHA-256-sess")
    creds = answer(challenge)

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    session_key = h(f"{h(f'{USER}:{REALM}:{PASSWORD}')}:abc:0a4f113b")
    ha2 = h(f"REGISTER:{URI}")
    assert creds.response == h(f"{session_key}:abc:00000001:0a4f113b:auth:{ha2}")
    assert compute_ha1(USER, REALM, PASSWORD, "SHA-256-sess") == ha1_for("SHA-256")


def test_auth_int_hashes_the_body_when_auth_is_not_offered() -> None:
    challenge = Challenge(REALM, "abc", qop=("auth-int",))
    body = b"v=0\r\n"
    creds = answer_challenge(
        challenge,
        method="INVITE",
        uri=URI,
        username=USER,
        password=PASSWORD,
        cnonce="c",
        body=body,
    )

    def h(data: str | bytes) -> str:
        return hashlib.md5(data.encode() if isinstance(data, str) else data).hexdigest()

    ha2 = h(f"INVITE:{URI}:{h(body)}")
    assert creds.qop == "auth-int"
    assert creds.response == h(f"{ha1_for('MD5')}:abc:00000001:c:auth-int:{ha2}")


def test_rfc2069_challenge_is_answered_without_qop() -> None:
    creds = answer(Challenge(REALM, "abc", qop=()))
    assert (creds.qop, creds.nc, creds.cnonce) == (None, None, None)
    ha2 = hashlib.md5(f"REGISTER:{URI}".encode()).hexdigest()
    assert creds.response == hashlib.md5(f"{ha1_for('MD5')}:abc:{ha2}".encode()).hexdigest()


def test_client_refuses_unsupported_algorithm_and_qop() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        answer(Challenge(REALM, "abc", algorithm="SHA-512-256"))
    with pytest.raises(ValueError, match="qop"):
        answer(Challenge(REALM, "abc", qop=("auth-conf",)))


def test_challenges_offer_sha256_first_each_with_fresh_nonce() -> None:
    auth = authenticator()
    challenges = auth.challenges(T0)
    assert ALGORITHMS == ("SHA-256", "MD5")
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in challenges)
    nonces = {c.nonce for c in challenges + auth.challenges(T0)}
    assert len(nonces) == 4
    assert all(c.stale for c in auth.challenges(T0, stale=True))


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_client_answer_verifies_through_header_text(algorithm: str) -> None:
    auth = authenticator()
    challenge = Challenge.parse(str(challenge_for(auth, algorithm)))
    creds = Credentials.parse(str(answer(challenge)))
    result = auth.verify(creds, "REGISTER", ha1_for(algorithm), T0 + 1, request_uri=URI)
    assert result is AuthResult.OK


def test_expired_nonce_with_right_password_is_stale() -> None:
    auth = authenticator(nonce_ttl=60.0)
    creds = answer(challenge_for(auth, "SHA-256"))
    assert auth.verify(creds, "REGISTER", ha1_for("SHA-256"), T0 + 60) is AuthResult.OK
    later = answer(challenge_for(auth, "SHA-256"), nc=2)
    assert auth.verify(later, "REGISTER", ha1_for("SHA-256"), T0 + 61) is AuthResult.STALE


def test_expired_nonce_with_wrong_password_is_invalid_not_stale() -> None:
    auth = authenticator(nonce_ttl=60.0)
    creds = answer(challenge_for(auth, "MD5"), password="wrong")
    assert auth.verify(creds, "REGISTER", ha1_for("MD5"), T0 + 3600) is AuthResult.INVALID


def test_nonce_from_the_future_is_stale() -> None:
    auth = authenticator()
    creds = answer(challenge_for(auth, "MD5"))
    assert auth.verify(creds, "REGISTER", ha1_for("MD5"), T0 - 10) is AuthResult.STALE


def test_nonce_signed_with_another_secret_is_invalid() -> None:
    other = DigestAuthenticator(REALM, b"x" * 32)
    creds = answer(challenge_for(other, "MD5"))
    assert authenticator().verify(creds, "REGISTER", ha1_for("MD5"), T0) is AuthResult.INVALID


@pytest.mark.parametrize(
    "nonce", ["", "abc", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "é" * 43]
)
def test_made_up_nonce_is_invalid(nonce: str) -> None:
    creds = answer(Challenge(REALM, nonce))
    assert authenticator().verify(creds, "REGISTER", ha1_for("MD5"), T0) is AuthResult.INVALID


def test_tampered_nonce_timestamp_is_invalid() -> None:
    auth = authenticator()
    nonce = challenge_for(auth, "MD5").nonce
    tampered = ("B" if nonce[0] != "B" else "C") + nonce[1:]
    creds = answer(Challenge(REALM, tampered))
    assert auth.verify(creds, "REGISTER", ha1_for("MD5"), T0) is AuthResult.INVALID


def test_repeated_nonce_count_is_replay() -> None:
    auth = authenticator()
    challenge = challenge_for(auth, "SHA-256")
    ha1 = ha1_for("SHA-256")
    assert auth.verify(answer(challenge, nc=1), "REGISTER", ha1, T0) is AuthResult.OK
    assert auth.verify(answer(challenge, nc=1), "REGISTER", ha1, T0) is AuthResult.REPLAY
    assert auth.verify(answer(challenge, nc=3), "REGISTER", ha1, T0) is AuthResult.OK
    assert auth.verify(answer(challenge, nc=2), "REGISTER", ha1, T0) is AuthResult.REPLAY
    assert auth.verify(answer(challenge, nc=4), "REGISTER", ha1, T0) is AuthResult.OK


def test_nonce_evicted_from_count_table_is_stale_not_replayable() -> None:
    auth = authenticator(max_tracked_nonces=2)
    ha1 = ha1_for("MD5")
    first, second, third = (challenge_for(auth, "MD5", T0 + i) for i in range(3))
    for challenge in (first, second, third):
        assert auth.verify(answer(challenge), "REGISTER", ha1, T0 + 3) is AuthResult.OK
    assert auth.verify(answer(first, nc=2), "REGISTER", ha1, T0 + 3) is AuthResult.STALE
    assert auth.verify(answer(third, nc=2), "REGISTER", ha1, T0 + 3) is AuthResult.OK


def test_wrong_password_is_invalid() -> None:
    auth = authenticator()
    creds = answer(challenge_for(auth, "SHA-256"), password="Circle of Death")
    assert auth.verify(creds, "REGISTER", ha1_for("SHA-256"), T0) is AuthResult.INVALID


def test_unknown_user_is_invalid() -> None:
    auth = authenticator()
    creds = answer(challenge_for(auth, "SHA-256"))
    assert auth.verify(creds, "REGISTER", None, T0) is AuthResult.INVALID


def test_response_for_another_method_is_invalid() -> None:
    auth = authenticator()
    creds = answer(challenge_for(auth, "MD5"))
    assert auth.verify(creds, "INVITE", ha1_for("MD5"), T0) is AuthResult.INVALID


def test_rfc2069_credentials_are_accepted_within_nonce_lifetime() -> None:
    auth = authenticator(nonce_ttl=60.0)
    nonce = challenge_for(auth, "MD5").nonce
    creds = answer(Challenge(REALM, nonce, qop=()))
    assert auth.verify(creds, "REGISTER", ha1_for("MD5"), T0 + 30) is AuthResult.OK
    assert auth.verify(creds, "REGISTER", ha1_for("MD5"), T0 + 90) is AuthResult.STALE


@pytest.mark.parametrize(
    ("realm", "algorithm", "qop", "request_uri"),
    [
        ("other.example.com", "SHA-256", "auth", URI),
        (REALM, "SHA-256", "auth", "sip:other.example.com"),
        (REALM, "SHA-256-sess", "auth", URI),
        (REALM, "SHA-256", "auth-int", URI),
    ],
)
def test_realm_uri_algorithm_or_qop_not_challenged_is_mismatch(
    realm: str, algorithm: str, qop: str, request_uri: str
) -> None:
    auth = authenticator()
    nonce = challenge_for(auth, "SHA-256").nonce
    creds = answer(Challenge(realm, nonce, algorithm, (qop,)))
    result = auth.verify(creds, "REGISTER", ha1_for("SHA-256"), T0, request_uri=request_uri)
    assert result is AuthResult.MISMATCH


def test_parse_auth_params_handles_quotes_case_and_spacing() -> None:
    scheme, params = parse_auth_params(
        'Digest  Realm = "a, \\"b\\"",nonce="x",, algorithm=MD5 ,qop="auth,auth-int"'
    )
    assert scheme == "Digest"
    assert params == {"realm": 'a, "b"', "nonce": "x", "algorithm": "MD5", "qop": "auth,auth-int"}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["realm", "Nonce", "qop", "nc", "uri", "x!", "a b", ""]),
            st.sampled_from(["=", " = ", "", "=="]),
            st.sampled_from(['"r"', '"a, \\"b\\""', '""', "MD5", "00000001", 'a"b', "", '"x']),
            st.sampled_from([", ", ",", " , ", ",,", " ", "\t,"]),
        ),
        max_size=5,
    ).map(lambda items: "Digest " + "".join(n + e + v + sep for n, e, v, sep in items)[:-1])
)
def test_parse_auth_params_fast_path_agrees_with_the_general_parser(value: str) -> None:
    # With a trailing comma too (an empty list element, RFC 7230 §7).
    for candidate in (value, value + ",", value + " ,"):
        general = parsed_or_none(lambda v: _parse_auth_params(v, v.strip()), candidate)
        assert parsed_or_none(parse_auth_params, candidate) == general, candidate


def test_nonces_made_before_and_after_this_version_verify_alike() -> None:
    # The nonce MAC is HMAC-SHA256 over time, salt and realm: nonces issued by the
    # previous code (random salt, hmac module) still verify after an upgrade.
    secret = b"k" * 32
    head = struct.pack(">q", int(T0 * 1000)) + bytes(range(8))
    mac = hmac.digest(secret, head + REALM.encode(), "sha256")[:16]
    nonce = base64.urlsafe_b64encode(head + mac).rstrip(b"=").decode()
    creds = answer(Challenge(REALM, nonce, "SHA-256"))
    assert authenticator().verify(creds, "REGISTER", ha1_for("SHA-256"), T0) is AuthResult.OK
    forged = answer(Challenge(REALM, nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]))
    assert authenticator().verify(forged, "REGISTER", ha1_for("MD5"), T0) is AuthResult.INVALID


def test_nonces_are_unique_within_one_millisecond() -> None:
    auth = authenticator()
    nonces = {c.nonce for _ in range(500) for c in auth.challenges(T0)}
    assert len(nonces) == 1000


def test_challenge_parse_defaults_and_ignores_unknown_parameters() -> None:
    challenge = Challenge.parse(
        'digest realm="r", nonce="n", domain="sip:a sip:b", stale=TRUE, charset=UTF-8'
    )
    assert challenge == Challenge("r", "n", algorithm="MD5", qop=(), stale=True)
    assert not Challenge.parse('Digest realm="r", nonce="n", stale=maybe').stale
    assert Challenge.parse('Digest realm="r", nonce="n", algorithm=sha-256').algorithm == "SHA-256"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest realm="r", nonce="n', "unterminated"),
        ('Digest realm="r", qop="auth"', "'nonce' is missing"),
        ('Basic realm="r", nonce="n"', "not Digest"),
        ("", "scheme"),
        ('Digest realm="r" nonce="n"', "expected ','"),
        ('Digest realm, nonce="n"', "no value"),
        ('Digest realm="r", nonce="n", realm="s"', "twice"),
        ('Digest realm=a"b, nonce="n"', "bad value"),
        ('Digest realm="r", nonce="n", qop=""', "qop"),
        ('Digest =x, realm="r"', "parameter name"),
    ],
)
def test_malformed_challenge_names_the_problem(value: str, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        Challenge.parse(value)


GOOD_CREDENTIALS = 'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00"'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest username="u", realm="r", uri="sip:r", response="00"', "'nonce' is missing"),
        ('Digest username="u", realm="r", nonce="n", response="00"', "'uri' is missing"),
        (GOOD_CREDENTIALS.replace('"00"', '"00'), "unterminated"),
        (GOOD_CREDENTIALS.replace("Digest", "Basic"), "not Digest"),
        (GOOD_CREDENTIALS + ", qop=auth", "without nc and cnonce"),
        (GOOD_CREDENTIALS + ', qop=auth, nc=1, cnonce="c"', "nonce-count"),
        ("Digest dXNlcjpwYXNz", "no value"),
    ],
)
def test_malformed_credentials_name_the_problem(value: str, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        Credentials.parse(value)


def test_challenge_str_round_trips() -> None:
    challenge = Challenge(
        'realm "quoted", with comma', "n/+=", "SHA-256", ("auth", "auth-int"), "op", True
    )
    assert str(challenge).startswith('Digest realm="realm \\"quoted\\", with comma"')
    assert Challenge.parse(str(challenge)) == challenge


def test_credentials_str_round_trips() -> None:
    creds = answer(Challenge(REALM, "abc", opaque="xyz"))
    assert "qop=auth, nc=00000001" in str(creds)
    assert Credentials.parse(str(creds)) == creds


_text = st.text(st.characters(codec="utf-8"), max_size=20)
_hex = st.text("0123456789abcdef", min_size=8, max_size=8)
_algorithms = st.sampled_from(["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])


@st.composite
def credentials(draw: st.DrawFn) -> Credentials:
    qop = draw(st.sampled_from([None, "auth", "auth-int"]))
    return Credentials(
        username=draw(_text),
        realm=draw(_text),
        nonce=draw(_text),
        uri=draw(_text),
        response=draw(_hex),
        algorithm=draw(_algorithms),
        qop=qop,
        nc=None if qop is None else draw(_hex),
        cnonce=None if qop is None else draw(_text),
        opaque=draw(st.none() | _text),
    )


@given(credentials())
def test_credentials_parse_inverts_str(creds: Credentials) -> None:
    assert Credentials.parse(str(creds)) == creds


@given(
    st.builds(
        Challenge,
        realm=_text,
        nonce=_text,
        algorithm=_algorithms,
        qop=st.sampled_from([(), ("auth",), ("auth", "auth-int")]),
        opaque=st.none() | _text,
        stale=st.booleans(),
    )
)
def test_challenge_parse_inverts_str(challenge: Challenge) -> None:
    assert Challenge.parse(str(challenge)) == challenge
