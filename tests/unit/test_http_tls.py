"""The self-signed HTTPS certificate: its names, key mode, reuse and fingerprint."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from media.webrtc import fingerprint
from voipcore.http.tls import (
    CERT_FILE,
    KEY_FILE,
    VALIDITY,
    https_context,
    self_signed_files,
)

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificate_names_the_host_and_loopback_with_a_p256_key(tmp_path: Path) -> None:
    cert_path, key_path = self_signed_files(tmp_path, ["192.0.2.10", "pbx.lan"], NOW)
    assert (cert_path.name, key_path.name) == (CERT_FILE, KEY_FILE)
    cert = load(cert_path)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["pbx.lan", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert cert.not_valid_after_utc == NOW + VALIDITY
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_certificate_is_reused_until_it_expires(tmp_path: Path) -> None:
    cert_path, _ = self_signed_files(tmp_path, ["pbx.lan"], NOW)
    first = cert_path.read_bytes()
    self_signed_files(tmp_path, ["renamed.lan"], NOW + VALIDITY / 2)
    assert cert_path.read_bytes() == first
    _, key_path = self_signed_files(tmp_path, ["pbx.lan"], NOW + VALIDITY)
    assert cert_path.read_bytes() != first
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_context_logs_the_fingerprint_browsers_show(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "voipcore.http.tls")
    context, sha256 = https_context(None, None, tmp_path, ["pbx.lan"])
    assert isinstance(context, ssl.SSLContext)
    der = ssl.PEM_cert_to_DER_cert((tmp_path / CERT_FILE).read_text())
    assert sha256 == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert sha256 in caplog.text and str(tmp_path / CERT_FILE) in caplog.text


def test_configured_certificate_is_used_and_nothing_is_made(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    cert, key = self_signed_files(mine, ["pbx.lan"], datetime.datetime.now(datetime.UTC))
    data = tmp_path / "data"
    _, sha256 = https_context(cert, key, data, ["pbx.lan"])
    assert sha256 == fingerprint(load(cert))
    assert not data.exists()
