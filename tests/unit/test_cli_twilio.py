"""`voipcore twilio provision|status`: config to Twilio's REST API (through the stand-in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.twilio_api import FakeTwilio
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
