"""Tests for voipcore.dialer.numbers (ITU-T E.164, RFC 3966, RFC 3261 §19.1.6, §21.4)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from voipcore.dialer.numbers import (
    CountryPolicy,
    DialledNumber,
    ForbiddenDestination,
    InvalidNumber,
    is_extension_like,
    normalize,
    validate_region,
)

DERANDOMIZED = settings(derandomize=True, database=None, max_examples=300)
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def e164(numobj: phonenumbers.PhoneNumber | None) -> str:
    assert numobj is not None
    return phonenumbers.format_number(numobj, PhoneNumberFormat.E164)


def premium_example(region: str) -> str:
    return e164(phonenumbers.example_number_for_type(region, PhoneNumberType.PREMIUM_RATE))


def invalid(dialled: str, region: str | None) -> InvalidNumber:
    with pytest.raises(InvalidNumber) as info:
        normalize(dialled, region)
    return info.value


# -- accepted forms ----------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "default_region", "expected", "region"),
    [
        ("(404) 555-1234", "US", "+14045551234", "US"),
        ("404-555-1234", "us", "+14045551234", "US"),
        ("1 404 555 1234", "US", "+14045551234", "US"),
        ("  +1 404 555 1234  ", None, "+14045551234", "US"),
        ("020 7183 8750", "GB", "+442071838750", "GB"),
        ("+44 20 7183 8750", "US", "+442071838750", "GB"),
        ("+44 20 7183 8750", "DE", "+442071838750", "GB"),
        ("+44 20 7183 8750", None, "+442071838750", "GB"),
        ("00 44 20 7183 8750", "DE", "+442071838750", "GB"),
        ("011 44 20 7183 8750", "US", "+442071838750", "GB"),
        ("tel:+1-404-555-1234", None, "+14045551234", "US"),
        ("TEL:+1.404.555.1234", None, "+14045551234", "US"),
        ("tel:555-1234;phone-context=+1404", None, "+14045551234", "US"),
        ("sip:+14045551234@trunk.pstn.twilio.com", None, "+14045551234", "US"),
        ("sips:+1-404-555-1234@host:5061;user=phone", None, "+14045551234", "US"),
        ("sip:4045551234@pbx.example.com", "US", "+14045551234", "US"),
        ("1-800-FLOWERS", "US", "+18003569377", "US"),
        ("404-555-CALL", "US", "+14045552255", "US"),
        ("+1 876 555 1234", "US", "+18765551234", "JM"),
        ("+800 1234 5678", None, "+80012345678", "001"),
    ],
)
def test_normalize_accepts_national_international_and_uri_forms(
    dialled: str, default_region: str | None, expected: str, region: str
) -> None:
    number = normalize(dialled, default_region)
    assert number.e164 == expected
    assert number.region == region
    assert number.dialled == dialled


def test_normalize_fills_display_formats_type_and_country_code() -> None:
    assert normalize("(404) 555-1234", "US") == DialledNumber(
        e164="+14045551234",
        region="US",
        country_code=1,
        national="(404) 555-1234",
        international="+1 404-555-1234",
        extension=None,
        number_type="fixed_line_or_mobile",
        dialled="(404) 555-1234",
    )
    london = normalize("+44 20 7183 8750", None)
    assert (london.country_code, london.national, london.number_type) == (
        44,
        "020 7183 8750",
        "fixed_line",
    )


@pytest.mark.parametrize(
    ("dialled", "number_type"),
    [
        ("1-800-FLOWERS", "toll_free"),
        (e164(phonenumbers.example_number_for_type("GB", PhoneNumberType.MOBILE)), "mobile"),
        (premium_example("GB"), "premium_rate"),
    ],
)
def test_number_type_is_the_lower_case_phonenumbers_name(dialled: str, number_type: str) -> None:
    assert normalize(dialled, "US").number_type == number_type


def test_dialled_number_is_frozen() -> None:
    number = normalize("+14045551234", None)
    with pytest.raises(AttributeError):
        number.e164 = "+1"  # type: ignore[misc]


@pytest.mark.parametrize(
    "dialled",
    [
        "404.555.1234 x 201",
        "404.555.1234 x201",
        "(404) 555-1234 ext. 201",
        "+1 404 555 1234 extension 201",
        "4045551234;ext=201",
        "+1 404 555 1234 #201",
        "404-555-1234 доб. 201",
        "404 555 1234 x\uff12\uff10\uff11",
        "tel:+1-404-555-1234;ext=201",
        "sip:+1-404-555-1234;ext=201@host;user=phone",
    ],
)
def test_extension_is_split_off_as_ascii_digits(dialled: str) -> None:
    number = normalize(dialled, "US")
    assert number.e164 == "+14045551234"
    assert number.extension == "201"
    assert number.national == "(404) 555-1234"
    assert number.international == "+1 404-555-1234"


# -- refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "region", "reason", "message", "status"),
    [
        ("", "US", "empty", "empty: no number was dialled", 484),
        ("   ", "US", "empty", "empty: no number was dialled", 484),
        (
            "sip:pbx.example.com",
            "US",
            "empty",
            "empty: the SIP address has no number before '@'",
            484,
        ),
        ("12", "US", "too_short", "too short for a number in US", 484),
        ("404 555 12", "US", "too_short", "too short for a number in US", 484),
        ("1", "US", "too_short", "too short to be a phone number", 484),
        ("+44 1", "US", "too_short", "too short to be a phone number", 484),
        (
            "011 4",
            "US",
            "too_short",
            "too short: the international prefix must be followed by a country code and number",
            484,
        ),
        (
            "555-1234",
            "US",
            "local_only",
            "missing the area code: this number can only be dialled locally in US",
            484,
        ),
        (
            "4045551234",
            None,
            "no_country_code",
            "needs a country code: dial + and the country code (e.g. +44) or set a default region",
            484,
        ),
        ("+1 404 555 1234 5", "US", "too_long", "too long for a number in US", 404),
        ("4" * 300, "US", "too_long", "too long to be a phone number", 404),
        ("+47 212345", None, "invalid_length", "wrong number of digits for a number in NO", 404),
        (
            "+1 200 555 1234",
            "US",
            "invalid",
            "not a valid number in US (wrong length or unassigned range)",
            404,
        ),
        (
            "+44 20 7183 875",
            "GB",
            "invalid",
            "not a valid number in GB (wrong length or unassigned range)",
            404,
        ),
        ("+999 1234567", "US", "unknown_country_code", "country code 999 does not exist", 404),
        ("011 999 1234567", "US", "unknown_country_code", "country code 999 does not exist", 404),
        ("00 999 1234567", "DE", "unknown_country_code", "country code 999 does not exist", 404),
        ("+0 1234567", "US", "unknown_country_code", "a country code never starts with 0", 404),
        ("1+4045551234", "US", "plus_not_first", "'+' must come first", 404),
        ("404 555 1234 +1", "US", "plus_not_first", "'+' must come first", 404),
        (
            "*67 404 555 1234",
            "US",
            "feature_code",
            "contains * or #: feature codes such as *67 are not numbers",
            404,
        ),
        ("abc", "US", "letters", "contains letters: 'abc'", 404),
        ("4045551234ab", "US", "letters", "contains letters: 'ab'", 404),
        ("call 4045551234", "US", "letters", "contains letters: 'call'", 404),
        ("404 555 1234 x", "US", "letters", "contains letters: 'x'", 404),
        ("sip:alice@example.com", "US", "letters", "contains letters: 'alice'", 404),
        (
            "404-555-1234 (cell)",
            "US",
            "letters",
            "contains letters that do not spell a valid number: 'cell'",
            404,
        ),
        ("---", "US", "not_a_number", "not a phone number: it has no digits", 404),
        ("tel:+14045551234;phone-context=+1", "US", "not_a_number", "not a phone number", 404),
        (
            "tel:404 555 1234",
            "US",
            "bad_uri",
            "not a valid address: whitespace, quote or angle bracket inside URI 'tel:404 555 1234'",
            404,
        ),
    ],
)
def test_invalid_number_says_what_is_wrong(
    dialled: str, region: str | None, reason: str, message: str, status: int
) -> None:
    error = invalid(dialled, region)
    assert (error.reason, str(error), error.sip_status) == (reason, message, status)
    assert error.dialled == dialled


def test_invalid_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too short"):
        normalize("12", "US")


def test_unknown_default_region_is_a_configuration_error_not_a_dialling_one() -> None:
    with pytest.raises(ValueError, match="unknown region 'XX'") as info:
        normalize("4045551234", "XX")
    assert not isinstance(info.value, InvalidNumber)


# -- every region, and separators ---------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_example_number_of_every_region_round_trips(region: str) -> None:
    example = phonenumbers.example_number(region)
    assert example is not None
    expected = e164(example)
    assert normalize(expected, None).e164 == expected
    national = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
    assert normalize(national, region).e164 == expected
    rfc3966 = phonenumbers.format_number(example, PhoneNumberFormat.RFC3966)
    assert normalize(rfc3966, None).e164 == expected


@DERANDOMIZED
@given(
    region=st.sampled_from(REGIONS),
    separators=st.lists(st.sampled_from(["", "", " ", "-", ".", "(", ")"]), min_size=20),
)
def test_visual_separators_never_change_the_number(region: str, separators: list[str]) -> None:
    expected = e164(phonenumbers.example_number(region))
    digits = expected[1:]
    spaced = "+" + "".join(d + s for d, s in zip(digits, separators, strict=False))
    assert normalize(spaced, None).e164 == expected
    assert normalize(f"sip:{spaced.replace(' ', '')}@host", None).e164 == expected


# -- country policy ------------------------------------------------------------


def test_policy_admits_allowed_country() -> None:
    CountryPolicy(frozenset({"US"})).check(normalize("(404) 555-1234", "US"))


def test_policy_refuses_other_country_with_403() -> None:
    policy = CountryPolicy(frozenset({"US"}))
    with pytest.raises(ForbiddenDestination) as info:
        policy.check(normalize("+44 20 7183 8750", "US"))
    assert str(info.value) == "calls to GB (+44) are not allowed; allowed: US"
    assert (info.value.reason, info.value.sip_status) == ("country", 403)
    assert info.value.number.e164 == "+442071838750"
    assert isinstance(info.value, PermissionError)


def test_policy_tells_nanp_countries_apart() -> None:
    with pytest.raises(ForbiddenDestination, match=r"calls to JM \(\+1\) are not allowed"):
        CountryPolicy(frozenset({"US", "CA"})).check(normalize("+1 876 555 1234", "US"))


def test_policy_lists_allowed_countries_sorted_and_upper_cased() -> None:
    policy = CountryPolicy(frozenset({"us", "gb", "De"}))
    assert policy.allowed == frozenset({"US", "GB", "DE"})
    with pytest.raises(ForbiddenDestination, match="; allowed: DE, GB, US$"):
        policy.check(normalize("+33 1 42 68 53 00", None))


def test_policy_refuses_non_geographic_numbers() -> None:
    with pytest.raises(ForbiddenDestination) as info:
        CountryPolicy(frozenset({"US"})).check(normalize("+800 1234 5678", None))
    assert str(info.value) == "calls to non-geographic numbers (+800) are not allowed; allowed: US"


def test_empty_policy_refuses_everything() -> None:
    with pytest.raises(ForbiddenDestination, match="allowed: none$"):
        CountryPolicy(frozenset()).check(normalize("+14045551234", None))


def test_policy_rejects_unknown_region() -> None:
    with pytest.raises(ValueError, match="unknown region 'XX'"):
        CountryPolicy(frozenset({"US", "XX"}))


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "AU", "JP"])
def test_policy_blocks_premium_rate_unless_allowed(region: str) -> None:
    number = normalize(premium_example(region), None)
    assert number.number_type == "premium_rate"
    with pytest.raises(ForbiddenDestination) as info:
        CountryPolicy(frozenset({region})).check(number)
    assert (info.value.reason, info.value.sip_status) == ("premium_rate", 403)
    assert str(info.value) == (
        f"calls to premium-rate numbers such as {number.e164} are not allowed "
        "(toll-fraud protection)"
    )
    CountryPolicy(frozenset({region}), allow_premium=True).check(number)


def test_country_check_comes_before_premium_check() -> None:
    with pytest.raises(ForbiddenDestination) as info:
        CountryPolicy(frozenset({"US"})).check(normalize(premium_example("GB"), None))
    assert info.value.reason == "country"


# -- helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("1", True),
        ("201", True),
        (" 201 ", True),
        ("123456", True),
        ("*67", True),
        ("*", True),
        ("#21#", True),
        ("*97*201", True),
        ("1234567", False),
        ("4045551234", False),
        ("", False),
        ("+201", False),
        ("20 1", False),
        ("2o1", False),
        ("*67 404", False),
        ("\uff12\uff10\uff11", False),
    ],
)
def test_is_extension_like(dialled: str, expected: bool) -> None:
    assert is_extension_like(dialled) is expected


def test_is_extension_like_honours_max_len() -> None:
    assert is_extension_like("1234", max_len=4)
    assert not is_extension_like("12345", max_len=4)


@pytest.mark.parametrize(("code", "expected"), [("US", "US"), ("gb", "GB"), (" de ", "DE")])
def test_validate_region_upper_cases_known_regions(code: str, expected: str) -> None:
    assert validate_region(code) == expected


@pytest.mark.parametrize("code", ["XX", "ZZ", "001", "USA", ""])
def test_validate_region_rejects_unknown_region(code: str) -> None:
    with pytest.raises(ValueError, match=f"^unknown region {code!r}"):
        validate_region(code)
