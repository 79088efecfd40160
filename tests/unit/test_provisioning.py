"""Twilio trunk provisioning through twilio-python against the in-memory REST stand-in."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.twilio_api import INVALID_DOMAIN, WEAK_PASSWORD, FakeTwilio
from voipcore.trunks.provisioning import (
    Outcome,
    ProvisioningError,
    TrunkSpec,
    format_report,
    format_status,
    provision,
    status,
)

NUMBER_1 = "+14045551234"
NUMBER_2 = "+14045559876"
SPEC = TrunkSpec(
    friendly_name="voipcore",
    domain_name="acme.pstn.twilio.com",
    username="voipcore-trunk",
    password="Correct-Horse-9",
    origination_uri="sip:pbx.example.com:5060",
    phone_numbers=[NUMBER_1, NUMBER_2],
    credential_list_name="voipcore trunk",
)


@pytest.fixture
def fake() -> FakeTwilio:
    account = FakeTwilio(seed=7)
    account.add_phone_number(NUMBER_1)
    account.add_phone_number(NUMBER_2)
    return account


def client_for(fake: FakeTwilio, token: str | None = None) -> Client:
    return Client(fake.account_sid, token or fake.auth_token, http_client=fake)


def test_first_run_creates_trunk_credentials_origination_and_numbers(fake: FakeTwilio) -> None:
    report = provision(client_for(fake), SPEC)

    assert [(s.kind, s.outcome) for s in report.steps] == [
        ("trunk", Outcome.CREATED),
        ("credential list", Outcome.CREATED),
        ("credential", Outcome.CREATED),
        ("trunk credential list", Outcome.CREATED),
        ("origination URL", Outcome.CREATED),
        ("phone number", Outcome.CREATED),
        ("phone number", Outcome.CREATED),
    ]
    assert report.changed
    (trunk,) = fake.trunks.values()
    assert (trunk.sid, trunk.friendly_name, trunk.domain_name) == (
        report.trunk_sid,
        "voipcore",
        "acme.pstn.twilio.com",
    )
    assert trunk.sid.startswith("TK") and len(trunk.sid) == 34
    (cl,) = fake.credential_lists.values()
    assert cl.friendly_name == "voipcore trunk" and list(cl.trunk_sids) == [trunk.sid]
    (credential,) = fake.credentials.values()
    assert (credential.username, credential.password) == ("voipcore-trunk", "Correct-Horse-9")
    (url,) = fake.origination_urls.values()
    assert (url.trunk_sid, url.sip_url, url.priority, url.weight, url.enabled) == (
        trunk.sid,
        "sip:pbx.example.com:5060",
        10,
        10,
        True,
    )
    assert {n.phone_number: n.trunk_sid for n in fake.phone_numbers.values()} == {
        NUMBER_1: trunk.sid,
        NUMBER_2: trunk.sid,
    }


def test_requests_are_form_encoded_with_twilio_parameter_names(fake: FakeTwilio) -> None:
    provision(client_for(fake), SPEC)

    created = {call.path.rsplit("/", 1)[-1]: call.params for call in fake.posts()}
    assert created["Trunks"] == {
        "FriendlyName": "voipcore",
        "DomainName": "acme.pstn.twilio.com",
        "Secure": "false",
    }
    assert created["OriginationUrls"] == {
        "Weight": "10",
        "Priority": "10",
        "Enabled": "true",
        "FriendlyName": "voipcore",
        "SipUrl": "sip:pbx.example.com:5060",
    }
    assert set(created["Credentials.json"]) == {"Username", "Password"}


def test_second_run_changes_nothing_and_reports_everything_existing(fake: FakeTwilio) -> None:
    client = client_for(fake)
    first = provision(client, SPEC)
    writes_before = len(fake.posts())

    second = provision(client, SPEC)

    assert not second.changed
    assert {step.outcome for step in second.steps} == {Outcome.EXISTING}
    assert [s.sid for s in second.steps] == [s.sid for s in first.steps]
    # The one write: Twilio cannot show the stored password, so it is sent again.
    (resend,) = fake.posts()[writes_before:]
    assert resend.path.endswith(f"/Credentials/{second.steps[2].sid}.json")
    assert resend.params == {"Password": "Correct-Horse-9"}
    assert (len(fake.trunks), len(fake.credential_lists), len(fake.credentials)) == (1, 1, 1)
    assert len(fake.origination_urls) == 1


def test_changed_password_is_set_on_the_existing_credential(fake: FakeTwilio) -> None:
    client = client_for(fake)
    provision(client, SPEC)

    report = provision(client, dataclasses.replace(SPEC, password="Battery-Staple-42"))

    (credential,) = fake.credentials.values()
    assert credential.password == "Battery-Staple-42"
    assert report.steps[2].sid == credential.sid


def test_numbers_not_in_the_account_are_all_listed_and_nothing_is_written(
    fake: FakeTwilio,
) -> None:
    spec = dataclasses.replace(SPEC, phone_numbers=["+15550001111", NUMBER_1, "+15550002222"])

    with pytest.raises(ProvisioningError) as caught:
        provision(client_for(fake), spec)

    message = str(caught.value)
    assert "+15550001111, +15550002222" in message
    assert fake.account_sid in message
    assert NUMBER_1 not in message
    assert fake.posts() == []


def test_a_number_that_is_not_e164_is_refused_before_asking_twilio(fake: FakeTwilio) -> None:
    spec = dataclasses.replace(SPEC, phone_numbers=["(404) 555-1234"])

    with pytest.raises(ProvisioningError, match=r"E\.164.*\(404\) 555-1234"):
        provision(client_for(fake), spec)

    assert fake.calls == []


def test_weak_password_raises_with_twilios_code_and_message(fake: FakeTwilio) -> None:
    with pytest.raises(ProvisioningError) as caught:
        provision(client_for(fake), dataclasses.replace(SPEC, password="alllowercase1"))

    error = caught.value
    assert (error.code, error.status) == (WEAK_PASSWORD.code, WEAK_PASSWORD.status)
    assert str(error).startswith("creating credential 'voipcore-trunk'")
    assert "minimum of 12 characters" in str(error)
    assert fake.credentials == {}


def test_domain_outside_pstn_twilio_com_raises_twilios_invalid_domain(fake: FakeTwilio) -> None:
    with pytest.raises(ProvisioningError) as caught:
        provision(client_for(fake), dataclasses.replace(SPEC, domain_name="acme.example.com"))

    assert caught.value.code == INVALID_DOMAIN.code == 21232
    assert fake.trunks == {}


def test_wrong_auth_token_raises_authenticate(fake: FakeTwilio) -> None:
    with pytest.raises(ProvisioningError) as caught:
        provision(client_for(fake, token="not-the-token"), SPEC)

    assert (caught.value.code, caught.value.status) == (20003, 401)
    assert "Authenticate" in str(caught.value)
    assert fake.calls == []


def test_api_key_and_secret_authenticate_for_the_account() -> None:
    fake = FakeTwilio(api_keys={"SK" + "1" * 32: "key-secret"})
    client = Client("SK" + "1" * 32, "key-secret", account_sid=fake.account_sid, http_client=fake)

    report = provision(client, dataclasses.replace(SPEC, phone_numbers=[]))

    assert report.changed and len(fake.trunks) == 1


def test_existing_items_beyond_the_first_page_are_found(fake: FakeTwilio) -> None:
    client = client_for(fake)
    for index in range(55):
        client.trunking.v1.trunks.create(friendly_name=f"other {index}")
        client.api.v2010.account.sip.credential_lists.create(friendly_name=f"other {index}")
    provision(client, SPEC)

    second = provision(client, SPEC)

    assert {step.outcome for step in second.steps} == {Outcome.EXISTING}
    assert len(fake.trunks) == 56 and len(fake.credential_lists) == 56
    paged = {call.path for call in fake.calls if "PageToken" in call.params}
    assert "/v1/Trunks" in paged
    assert f"/2010-04-01/Accounts/{fake.account_sid}/SIP/CredentialLists.json" in paged


def test_stand_in_honours_page_size_on_both_api_versions(fake: FakeTwilio) -> None:
    client = client_for(fake)
    for index in range(10):
        client.trunking.v1.trunks.create(friendly_name=f"t{index}")
        client.api.v2010.account.sip.credential_lists.create(friendly_name=f"l{index}")
    reads = len(fake.calls)

    trunks = client.trunking.v1.trunks.list(page_size=3)
    lists = client.api.v2010.account.sip.credential_lists.list(page_size=4)

    assert [t.friendly_name for t in trunks] == [f"t{i}" for i in range(10)]
    assert [cl.friendly_name for cl in lists] == [f"l{i}" for i in range(10)]
    sizes = [call.params["PageSize"] for call in fake.calls[reads:]]
    assert sizes == ["3"] * 4 + ["4"] * 3


def test_trunk_found_by_friendly_name_is_given_the_domain(fake: FakeTwilio) -> None:
    client = client_for(fake)
    existing = client.trunking.v1.trunks.create(friendly_name="voipcore")

    report = provision(client, SPEC)

    assert report.steps[0].outcome is Outcome.UPDATED
    assert report.trunk_sid == existing.sid
    assert report.steps[0].detail == "domain name (none) -> acme.pstn.twilio.com"
    assert fake.trunks[report.trunk_sid].domain_name == "acme.pstn.twilio.com"


def test_two_trunks_with_the_name_and_no_domain_is_an_error(fake: FakeTwilio) -> None:
    client = client_for(fake)
    client.trunking.v1.trunks.create(friendly_name="voipcore")
    client.trunking.v1.trunks.create(friendly_name="voipcore")

    with pytest.raises(ProvisioningError, match="2 trunks are named 'voipcore'"):
        provision(client, SPEC)


def test_two_credential_lists_with_the_name_is_an_error(fake: FakeTwilio) -> None:
    client = client_for(fake)
    for _ in range(2):
        client.api.v2010.account.sip.credential_lists.create(friendly_name="voipcore trunk")

    with pytest.raises(ProvisioningError, match="2 SIP credential lists are named"):
        provision(client, SPEC)


def test_origination_url_that_drifted_is_updated(fake: FakeTwilio) -> None:
    client = client_for(fake)
    provision(client, SPEC)
    (url,) = fake.origination_urls.values()
    url.priority, url.enabled = 50, False

    report = provision(client, SPEC)

    step = report.steps[4]
    assert (step.outcome, step.detail) == (
        Outcome.UPDATED,
        "priority 50 -> 10, enabled False -> True",
    )
    assert (url.priority, url.weight, url.enabled) == (10, 10, True)


def test_secure_trunking_is_switched_on_an_existing_trunk(fake: FakeTwilio) -> None:
    client = client_for(fake)
    provision(client, SPEC)

    report = provision(client, dataclasses.replace(SPEC, secure=True))

    assert report.steps[0].outcome is Outcome.UPDATED
    assert fake.trunks[report.trunk_sid].secure is True


def test_number_on_another_trunk_is_moved_and_reported(fake: FakeTwilio) -> None:
    client = client_for(fake)
    other = client.trunking.v1.trunks.create(friendly_name="old pbx")
    assert other.sid is not None
    number_sid = next(n.sid for n in fake.phone_numbers.values() if n.phone_number == NUMBER_1)
    client.trunking.v1.trunks(other.sid).phone_numbers.create(phone_number_sid=number_sid)

    report = provision(client, SPEC)

    step = next(s for s in report.steps if s.name == NUMBER_1)
    assert step.detail == f"moved from trunk {other.sid}"
    assert fake.phone_numbers[number_sid].trunk_sid == report.trunk_sid


def test_status_before_provisioning_says_there_is_no_trunk(fake: FakeTwilio) -> None:
    state = status(client_for(fake), SPEC)

    assert state.trunk_sid is None
    assert state.missing == ("trunk acme.pstn.twilio.com",)
    assert format_status(state) == (
        "No Twilio trunk with domain acme.pstn.twilio.com (not provisioned yet)"
    )
    assert fake.posts() == []


def test_status_after_provisioning_shows_everything_in_sync(fake: FakeTwilio) -> None:
    client = client_for(fake)
    report = provision(client, SPEC)
    writes = len(fake.posts())

    state = status(client, SPEC)

    assert state.trunk_sid == report.trunk_sid and state.missing == ()
    assert [u.sip_url for u in state.origination_urls] == ["sip:pbx.example.com:5060"]
    assert [(cl.friendly_name, cl.usernames) for cl in state.credential_lists] == [
        ("voipcore trunk", ("voipcore-trunk",))
    ]
    assert [n.phone_number for n in state.phone_numbers] == [NUMBER_1, NUMBER_2]
    text = format_status(state)
    assert f"Twilio trunk voipcore ({report.trunk_sid})" in text
    assert "termination  acme.pstn.twilio.com  secure: no" in text
    assert "origination  sip:pbx.example.com:5060  priority 10 weight 10 enabled" in text
    assert text.endswith("In sync with the configuration.")
    assert len(fake.posts()) == writes


def test_status_names_what_differs_from_the_spec(fake: FakeTwilio) -> None:
    client = client_for(fake)
    provision(client, dataclasses.replace(SPEC, phone_numbers=[NUMBER_1]))
    wanted = dataclasses.replace(SPEC, username="someone-else", origination_priority=20)

    state = status(client, wanted)

    assert state.missing == (
        "origination URL sip:pbx.example.com:5060 (priority 20, weight 10, enabled)",
        "credential 'someone-else' in a credential list on the trunk",
        f"phone number {NUMBER_2}",
    )
    assert format_status(state).splitlines()[-1].startswith("Not as configured: origination")


def test_format_report_lists_each_item_and_counts_outcomes(fake: FakeTwilio) -> None:
    client = client_for(fake)
    provision(client, SPEC)

    text = format_report(provision(client, SPEC))

    lines = text.splitlines()
    assert lines[0].endswith("(termination acme.pstn.twilio.com)")
    assert lines[3].split()[:3] == ["existing", "credential", "voipcore-trunk"]
    assert lines[3].endswith("(password re-sent)")
    assert lines[-1] == "0 created, 0 updated, 7 existing"


def test_stand_in_fetches_each_provisioned_record_by_sid(fake: FakeTwilio) -> None:
    client = client_for(fake)
    report = provision(client, SPEC)
    trunk_sid, list_sid, credential_sid, _, url_sid, number_sid, _ = (s.sid for s in report.steps)
    trunk = client.trunking.v1.trunks(trunk_sid)
    cl = client.api.v2010.account.sip.credential_lists(list_sid)

    assert trunk.fetch().auth_type_set == ["CREDENTIAL_LIST"]
    assert trunk.fetch().date_created == datetime(2024, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert trunk.origination_urls(url_sid).fetch().sip_url == SPEC.origination_uri
    assert trunk.credentials_lists(list_sid).fetch().friendly_name == "voipcore trunk"
    assert trunk.phone_numbers(number_sid).fetch().phone_number == NUMBER_1
    assert cl.fetch().date_created is not None
    assert cl.credentials(credential_sid).fetch().username == "voipcore-trunk"
    incoming = client.api.v2010.account.incoming_phone_numbers(number_sid).fetch()
    assert (incoming.trunk_sid, incoming.friendly_name) == (trunk_sid, "(404) 555-1234")
    with pytest.raises(TwilioRestException) as caught:
        client.trunking.v1.trunks("TK" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)
