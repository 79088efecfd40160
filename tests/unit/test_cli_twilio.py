"""`voipcore twilio provision|status`: config to Twilio's REST API (through the stand-in)."""

from __future__ import annotations

from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.twilio_api import DOMAIN_TAKEN, FakeTwilio
from voipcore.cli import main, run_twilio
from voipcore.config import ConfigError, load_config

TOKEN = "t" * 32


def config_file(tmp_path: Path, fake: FakeTwilio, extra: str = "") -> Path:
    path = tmp_path / "voipcore.toml"
    path.write_text(
        f"""[sip]
listen = ["udp:127.0.0.1:0"]
domain = "example.com"
[http]
listen = "127.0.0.1:0"
[trunks.twilio]
domain = "acme.pstn.twilio.com"
username = "voipcore"
password = "Sup3rSecretPassw0rd"
origination_uri = "sip:pbx.example.com:5060"
account_sid = "{fake.account_sid}"
auth_token = "{TOKEN}"
dids = {{ "+14045551234" = "alice" }}
{extra}"""
    )
    return path


def test_provision_twice_then_status(tmp_path: Path) -> None:
    fake = FakeTwilio(auth_token=TOKEN)
    fake.add_phone_number("+14045551234")
    config = load_config(config_file(tmp_path, fake))
    first = run_twilio(config, "provision", http_client=fake)
    assert "acme.pstn.twilio.com" in first and "0 existing" in first
    second = run_twilio(config, "provision", http_client=fake)
    assert "0 created, 0 updated, 6 existing" in second
    shown = run_twilio(config, "status", http_client=fake)
    assert "sip:pbx.example.com:5060" in shown and "+14045551234" in shown


def test_provision_names_what_config_is_missing(tmp_path: Path) -> None:
    fake = FakeTwilio(auth_token=TOKEN)
    path = config_file(tmp_path, fake)
    text = path.read_text().replace('origination_uri = "sip:pbx.example.com:5060"\n', "")
    path.write_text(text.replace(f'auth_token = "{TOKEN}"\n', ""))
    with pytest.raises(ConfigError, match="trunks.twilio: set api_key_sid"):
        run_twilio(load_config(path), "status", http_client=fake)


def test_cli_reports_twilio_errors_and_missing_trunk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTwilio(auth_token=TOKEN)
    path = config_file(tmp_path, fake)
    path.write_text(path.read_text().split("[trunks.twilio]")[0])
    assert main(["twilio", "status", "--config", str(path)]) == 2
    assert "trunks.twilio: no Twilio trunk is configured" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ('password = "short1A"', "trunks.twilio.password", "at least 12"),
        ('password = "alllowercase123"', "trunks.twilio.password", "upper- and a lower-case"),
        ('domain = "acme.example.com"', "trunks.twilio.domain", "should match pattern"),
        ('edges = ["mars"]', "trunks.twilio.edges", "edges must be some of"),
        ('caller_id = "(404) 555-1234"', "trunks.twilio.caller_id", "not an E.164 number"),
        (
            'origination_uri = "sips:pbx.example.com"',
            "trunks.twilio.origination_uri",
            "Twilio routes inbound calls to sip: URIs only (not sips:)",
        ),
    ],
)
def test_bad_trunk_config_names_the_key(tmp_path: Path, line: str, key: str, problem: str) -> None:
    fake = FakeTwilio(auth_token=TOKEN)
    path = config_file(tmp_path, fake)
    name = line.split(" =")[0]
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(name + " =")]
    path.write_text("\n".join(lines) + "\n" + line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{key}: " in str(info.value) and problem in str(info.value)


def test_twilio_refuses_a_sips_origination_url() -> None:
    fake = FakeTwilio(auth_token=TOKEN)
    trunk = Client(fake.account_sid, TOKEN, http_client=fake).trunking.v1.trunks.create()
    with pytest.raises(TwilioRestException) as refused:
        trunk.origination_urls.create(
            weight=10,
            priority=10,
            enabled=True,
            friendly_name="tls",
            sip_url="sips:pbx.example.com",
        )
    assert refused.value.status == 400 and "must be a sip: URI" in refused.value.msg
    assert fake.origination_urls == {}


def test_twilio_refuses_a_trunk_domain_already_taken() -> None:
    fake = FakeTwilio(auth_token=TOKEN)
    trunks = Client(fake.account_sid, TOKEN, http_client=fake).trunking.v1.trunks
    trunks.create(domain_name="acme.pstn.twilio.com")
    other = trunks.create(domain_name="other.pstn.twilio.com")
    with pytest.raises(TwilioRestException) as created:
        trunks.create(domain_name="ACME.pstn.twilio.com")
    with pytest.raises(TwilioRestException) as renamed:
        other.update(domain_name="acme.pstn.twilio.com")
    for taken in (created, renamed):
        assert (taken.value.status, taken.value.code) == (DOMAIN_TAKEN.status, 21248)
        assert "Trunk Domain already taken: acme.pstn.twilio.com" in taken.value.msg
    assert [t.domain_name for t in fake.trunks.values()] == [
        "acme.pstn.twilio.com",
        "other.pstn.twilio.com",
    ]
