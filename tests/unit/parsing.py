"""Helpers for tests that hold a parser's fast path against its general form."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from voipcore.sip.errors import SipParseError

_T = TypeVar("_T")


def parsed_or_none(parse: Callable[[str], _T], text: str) -> _T | None:
    """``parse(text)``, or None where it raises :class:`SipParseError`, so two parsers
    can be compared on any input, refusals included."""
    try:
        return parse(text)
    except SipParseError:
        return None
