"""Dialled numbers: E.164 normalisation, validation and the destination policy.

All numbering-plan knowledge (country codes, international and national prefixes, lengths,
assigned ranges, number types) comes from libphonenumber's metadata via ``phonenumbers``;
this module decides what to accept and words each refusal for a sales rep and for SIP
(RFC 3261 §21.4). Accepted input: national or international text with visual separators,
``tel:`` URIs (RFC 3966 §5.1) and ``sip:``/``sips:`` URIs whose user part is a
telephone-subscriber (RFC 3261 §19.1.6). Output is ITU-T E.164 (``+14045551234``).

Letters: a vanity number (``1-800-FLOWERS``: at least three digits, then three or more
letters, phonenumbers' ``is_alpha_number``) is converted on the keypad and accepted only if
the result is a valid number. Any other letter outside an extension marker ("x", "ext.",
";ext=") is refused, because libphonenumber would otherwise drop one or two stray letters
silently (``4045551234ab`` would dial +14045551234).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

from voipcore.sip.errors import SipParseError
from voipcore.sip.uri import SipUri, TelUri, parse_uri

_URI_SCHEME_RE = re.compile(r"(?:tel|sips?):", re.IGNORECASE)
# RFC 3966 §5.1.5 visual separators aside, '+' may only lead; libphonenumber also reads U+FF0B.
_PLUS_SIGNS = "+\uff0b"
_FEATURE_CODE_RE = re.compile(r"[*#][0-9*#]*")
# libphonenumber's region for non-geographic country codes (+800, +881, ...).
_NON_GEOGRAPHIC = "001"
# Refusals that more digits could cure: 484 Address Incomplete (RFC 3261 §21.4.22).
_INCOMPLETE = frozenset({"empty", "no_country_code", "too_short", "local_only"})


class InvalidNumber(ValueError):
    """A dialled string that cannot be called as a phone number.

    ``reason`` is a short code for programs (``"too_short"``, ``"letters"``, ...), the
    message says what is wrong in words a sales rep understands, and ``sip_status`` is the
    response for an INVITE to it: 484 Address Incomplete (RFC 3261 §21.4.22) when more
    digits could complete it (empty, too short, missing area or country code), otherwise
    404 Not Found (§21.4.5): the number does not exist as dialled.
    """

    def __init__(self, reason: str, message: str, dialled: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.dialled = dialled
        self.sip_status = 484 if reason in _INCOMPLETE else 404


class ForbiddenDestination(PermissionError):
    """A valid number that the :class:`CountryPolicy` refuses: 403 Forbidden (§21.4.4)."""

    sip_status = 403

    def __init__(self, reason: str, message: str, number: DialledNumber) -> None:
        super().__init__(message)
        self.reason = reason
        self.number = number


@dataclass(frozen=True, slots=True)
class DialledNumber:
    """A valid number in E.164 form with what the dialer shows and the router needs."""

    e164: str
    """``+`` country code and national significant number, e.g. ``+14045551234``."""
    region: str
    """ISO 3166-1 code of the number's country (``US``); ``001`` for +800, +881, ..."""
    country_code: int
    """E.164 country calling code, e.g. 1 or 44."""
    national: str
    """National format for display, e.g. ``(404) 555-1234``; no extension."""
    international: str
    """International format for display, e.g. ``+1 404-555-1234``; no extension."""
    extension: str | None
    """ASCII digits to send as DTMF after answer (RFC 4733), or None."""
    number_type: str
    """Lower-case ``PhoneNumberType`` name: ``mobile``, ``fixed_line``, ``premium_rate``, ..."""
    dialled: str
    """The text as dialled."""


def validate_region(code: str) -> str:
    """Upper-case an ISO 3166-1 alpha-2 region and check that libphonenumber knows it."""
    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {code!r} (expected an ISO 3166-1 code such as US or GB)")
    return region


def normalize(dialled: str, default_region: str | None) -> DialledNumber:
    """Parse and validate a dialled number; national numbers are read in ``default_region``.

    Raises :class:`InvalidNumber` when the text is not a valid number, and ``ValueError``
    from :func:`validate_region` when ``default_region`` is not a known region (a
    configuration error, not a dialling one). With ``default_region=None`` only
    international numbers (``+44...``) are accepted.
    """
    region = None if default_region is None else validate_region(default_region)
    text = dialled.strip()
    if not text:
        raise InvalidNumber("empty", "empty: no number was dialled", dialled)
    is_uri = _URI_SCHEME_RE.match(text) is not None
    candidate, number_text = _from_uri(text, dialled) if is_uri else (text, text)
    try:
        numobj = phonenumbers.parse(candidate, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.NOT_A_NUMBER:
            _check_characters(number_text, dialled, vanity=False)
        raise _parse_failure(exc.error_type, number_text, region, dialled) from None
    if numobj.extension and not is_uri:
        number_text = _strip_extension(number_text)
    vanity = not is_uri and phonenumbers.is_alpha_number(text)
    _check_characters(number_text, dialled, vanity=vanity)
    possible = phonenumbers.is_possible_number_with_reason(numobj)
    if possible != ValidationResult.IS_POSSIBLE or not phonenumbers.is_valid_number(numobj):
        letters = _letters(number_text)
        if letters:
            raise InvalidNumber(
                "letters",
                f"contains letters that do not spell a valid number: {letters!r}",
                dialled,
            )
        raise _impossible(possible, numobj, dialled)
    # Sent as RFC 4733 DTMF: ASCII digits even when typed as full-width or Arabic-Indic.
    extension = phonenumbers.normalize_digits_only(numobj.extension or "")
    numobj.extension = None
    return DialledNumber(
        e164=phonenumbers.format_number(numobj, PhoneNumberFormat.E164),
        region=_region_of(numobj),
        country_code=numobj.country_code or 0,
        national=phonenumbers.format_number(numobj, PhoneNumberFormat.NATIONAL),
        international=phonenumbers.format_number(numobj, PhoneNumberFormat.INTERNATIONAL),
        extension=extension or None,
        number_type=PhoneNumberType.to_string(phonenumbers.number_type(numobj)).lower(),
        dialled=dialled,
    )


def is_extension_like(dialled: str, max_len: int = 6) -> bool:
    """True for internal extensions and feature codes: 1 to ``max_len`` ASCII digits, or
    anything of ``0-9 * #`` that starts with ``*`` or ``#`` (``*67``, ``#21#``).

    Short emergency numbers (911, 112) look like extensions too: route those first.
    """
    text = dialled.strip()
    if _FEATURE_CODE_RE.fullmatch(text):
        return True
    return text.isascii() and text.isdigit() and len(text) <= max_len


@dataclass(frozen=True, slots=True)
class CountryPolicy:
    """Destination allow-list (config ``[dialing] allowed_countries``) and toll-fraud guard.

    A number passes when its region is in ``allowed`` (ISO 3166-1 codes; the NANP's +1
    countries are told apart, so ``US`` does not admit Jamaica) and, unless
    ``allow_premium``, it is not a premium-rate number. Non-geographic numbers (+800,
    satellite +881, ...) have no region and are always refused.
    """

    allowed: frozenset[str]
    allow_premium: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", frozenset(map(validate_region, self.allowed)))

    def check(self, number: DialledNumber) -> None:
        """Raise :class:`ForbiddenDestination` unless ``number`` may be called."""
        if number.region not in self.allowed:
            if number.region == _NON_GEOGRAPHIC:
                where = f"non-geographic numbers (+{number.country_code})"
            else:
                where = f"{number.region} (+{number.country_code})"
            allowed = ", ".join(sorted(self.allowed)) or "none"
            raise ForbiddenDestination(
                "country", f"calls to {where} are not allowed; allowed: {allowed}", number
            )
        if number.number_type == "premium_rate" and not self.allow_premium:
            raise ForbiddenDestination(
                "premium_rate",
                f"calls to premium-rate numbers such as {number.e164} are not allowed "
                "(toll-fraud protection)",
                number,
            )


def _from_uri(text: str, dialled: str) -> tuple[str, str]:
    """(text for phonenumbers, number part) of a tel: URI or a SIP URI's user part."""
    try:
        uri = parse_uri(text)
    except SipParseError as exc:
        raise InvalidNumber("bad_uri", f"not a valid address: {exc.reason}", dialled) from None
    if isinstance(uri, TelUri):
        return str(uri), uri.number
    user = uri.user_unescaped if isinstance(uri, SipUri) else None
    if not user:
        raise InvalidNumber("empty", "empty: the SIP address has no number before '@'", dialled)
    # telephone-subscriber in the user part (§19.1.6) is the tel: URI syntax without scheme.
    return "tel:" + user, user.partition(";")[0]


def _strip_extension(text: str) -> str:
    """Cut the extension phonenumbers found (it ends the text) and its marker."""
    end = len(text)
    while end and not text[end - 1].isdigit():  # an ending '#'
        end -= 1
    while end and text[end - 1].isdigit():  # the extension's digits
        end -= 1
    while end and not text[end - 1].isdigit():  # " x ", " ext. ", ";ext="
        end -= 1
    return text[:end]


def _letters(text: str) -> str:
    return "".join(c for c in text if c.isalpha())


def _check_characters(number_text: str, dialled: str, *, vanity: bool) -> None:
    body = number_text.lstrip(_PLUS_SIGNS)
    if any(c in _PLUS_SIGNS for c in body):
        raise InvalidNumber("plus_not_first", "'+' must come first", dialled)
    if "*" in body or "#" in body:
        raise InvalidNumber(
            "feature_code", "contains * or #: feature codes such as *67 are not numbers", dialled
        )
    letters = _letters(body)
    if letters and not vanity:
        raise InvalidNumber("letters", f"contains letters: {letters!r}", dialled)


def _region_of(numobj: PhoneNumber) -> str:
    """The number's region, or the main region of its country code when it has none."""
    region = phonenumbers.region_code_for_number(numobj)
    return region or phonenumbers.region_code_for_country_code(numobj.country_code or 0)


def _where(numobj: PhoneNumber) -> str:
    region = _region_of(numobj)
    return f"the +{numobj.country_code} range" if region == _NON_GEOGRAPHIC else region


def _impossible(possible: int, numobj: PhoneNumber, dialled: str) -> InvalidNumber:
    """Word an ``is_possible_number_with_reason`` result, or an unassigned range.

    INVALID_COUNTRY_CODE cannot occur here: ``parse`` already refused the number.
    """
    where = _where(numobj)
    if possible == ValidationResult.TOO_SHORT:
        return InvalidNumber("too_short", f"too short for a number in {where}", dialled)
    if possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return InvalidNumber(
            "local_only",
            f"missing the area code: this number can only be dialled locally in {where}",
            dialled,
        )
    if possible == ValidationResult.TOO_LONG:
        return InvalidNumber("too_long", f"too long for a number in {where}", dialled)
    if possible == ValidationResult.INVALID_LENGTH:
        return InvalidNumber(
            "invalid_length", f"wrong number of digits for a number in {where}", dialled
        )
    return InvalidNumber(
        "invalid",
        f"not a valid number in {where} (wrong length or unassigned range)",
        dialled,
    )


def _parse_failure(
    error_type: int, number_text: str, region: str | None, dialled: str
) -> InvalidNumber:
    """Word a ``NumberParseException`` (character problems were reported already)."""
    digits = phonenumbers.normalize_digits_only(number_text)
    international = number_text.startswith(tuple(_PLUS_SIGNS))
    if error_type == NumberParseException.INVALID_COUNTRY_CODE:
        if region is None and not international:
            return InvalidNumber(
                "no_country_code",
                "needs a country code: dial + and the country code (e.g. +44) "
                "or set a default region",
                dialled,
            )
        if region is not None and not international:
            # Dialled with the region's international prefix (00, 011): skip it.
            metadata = PhoneMetadata.metadata_for_region(region)
            idd = metadata.international_prefix if metadata else None
            match = re.match(idd, digits) if idd else None
            if match:
                digits = digits[match.end() :]
        if digits.startswith("0"):
            return InvalidNumber(
                "unknown_country_code", "a country code never starts with 0", dialled
            )
        # libphonenumber tried each 1- to 3-digit prefix: none is a country code.
        return InvalidNumber(
            "unknown_country_code", f"country code {digits[:3]} does not exist", dialled
        )
    if error_type == NumberParseException.TOO_SHORT_AFTER_IDD:
        return InvalidNumber(
            "too_short",
            "too short: the international prefix must be followed by a country code and number",
            dialled,
        )
    if error_type == NumberParseException.TOO_LONG:
        return InvalidNumber("too_long", "too long to be a phone number", dialled)
    if not digits:
        return InvalidNumber("not_a_number", "not a phone number: it has no digits", dialled)
    if error_type == NumberParseException.TOO_SHORT_NSN or len(digits) < 2:
        return InvalidNumber("too_short", "too short to be a phone number", dialled)
    return InvalidNumber("not_a_number", "not a phone number", dialled)
