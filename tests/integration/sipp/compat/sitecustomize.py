"""Test-only stand-in for a configurable digest challenge order.

SIPp 3.6.1 (Debian's sip-tester) reads only the first WWW-Authenticate and can
answer only MD5, so it aborts on the server's SHA-256-first challenges
(RFC 8760 section 2.4 order).  Until the server can be configured to offer MD5
first, :func:`tests.sipp.md5_first_challenges` puts this directory on the
server process's PYTHONPATH, and this module reorders the algorithms named in
``VOIPCORE_TEST_DIGEST_ALGORITHMS`` (comma-separated) before the server starts.
Both algorithms stay accepted; only the order of the challenges changes.
"""

from __future__ import annotations

import os

_ORDER = os.environ.get("VOIPCORE_TEST_DIGEST_ALGORITHMS")

if _ORDER:
    import voipcore.sip.digest as _digest

    _digest.ALGORITHMS = tuple(name.strip() for name in _ORDER.split(",") if name.strip())
