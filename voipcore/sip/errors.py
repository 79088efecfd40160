"""Typed SIP errors that carry what a response needs (RFC 3261 §21)."""

from __future__ import annotations


class SipError(Exception):
    """Base class of every SIP protocol error."""


class SipParseError(SipError):
    """A message, header or URI that does not follow the RFC 3261 §25 grammar.

    ``status`` and ``reason`` are what the server answers when a reply is
    possible (400 Bad Request unless a more precise code applies, e.g. 505
    for an unsupported SIP version or 416 for an unsupported URI scheme).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
