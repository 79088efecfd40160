"""HTTPS for the web dialer, with a self-signed certificate when none is configured.

Browsers grant the microphone (``getUserMedia``) only to secure contexts (W3C Secure
Contexts §3), so a dialer opened from another machine on the LAN needs TLS even where
no CA will sign for a private address. The certificate made here names this host's
addresses (RFC 5280 §4.2.1.6) and is kept in the data directory, so the exception a
user accepts in the browser, or the fingerprint they compare with the log, stays valid
across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from media.webrtc import fingerprint, self_signed

log = logging.getLogger(__name__)

CERT_FILE = "voipcore-https.crt"
KEY_FILE = "voipcore-https.key"
#: Lifetime of a self-signed certificate: about two years.
VALIDITY = datetime.timedelta(days=730)
#: Names every self-signed certificate carries, whatever the host is called.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def _subject_alt_names(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys([*names, *LOCAL_NAMES]):  # ordered, without repeats
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_self_signed(
    names: Iterable[str], now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 key and a certificate for ``names`` (and :data:`LOCAL_NAMES`), valid from
    ``now`` for :data:`VALIDITY`; not a CA (RFC 5280 §4.2.1.9), for server auth only."""
    return self_signed(
        "voipcore web dialer",
        now - datetime.timedelta(minutes=5),  # clients with a slow clock
        now + VALIDITY,
        [
            (_subject_alt_names(names), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), False),
        ],
    )


def self_signed_files(
    directory: Path, names: Iterable[str], now: datetime.datetime
) -> tuple[Path, Path]:
    """:data:`CERT_FILE` and :data:`KEY_FILE` in ``directory``: the ones there unless
    missing or expired at ``now``, else new ones (the key readable by its owner only)."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if existing.not_valid_after_utc > now:
            return cert_path, key_path
        log.warning("https certificate %s expired: making a new one", cert_path)
    cert, key = make_self_signed(names, now)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path.unlink(missing_ok=True)  # O_CREAT's mode applies to a new file only
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed https certificate %s", cert_path)
    return cert_path, key_path


def https_context(
    cert: Path | None, key: Path | None, data_dir: Path, names: Iterable[str]
) -> tuple[ssl.SSLContext, str]:
    """The server context for ``[http] tls_listen`` and its certificate's fingerprint.

    With no ``cert``/``key`` (``[http] tls_cert``/``tls_key``) a self-signed pair for
    ``names`` is used from ``data_dir`` (:func:`self_signed_files`).
    """
    if cert is None or key is None:
        now = datetime.datetime.now(datetime.UTC)
        cert, key = self_signed_files(data_dir, names, now)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sha256 = fingerprint(x509.load_pem_x509_certificate(cert.read_bytes()))
    log.info(
        "https certificate %s, SHA-256 fingerprint %s",
        cert,
        sha256,
        extra={"certificate": str(cert), "fingerprint": sha256},
    )
    return context, sha256
