"""Provision a Twilio Elastic SIP trunk for voipcore, idempotently, with twilio-python.

What is provisioned (twilio.com/docs/sip-trunking/api):

- the Trunk, found by its termination ``DomainName`` (``<name>.pstn.twilio.com``) or else by
  its friendly name, created if neither exists; its friendly name, domain name and Secure
  flag are brought in line with the spec;
- a SIP Credential List (api 2010-04-01), found by friendly name, holding a Credential for the
  username voipcore answers Twilio's digest challenge with, and associated with the trunk;
- an Origination URL (found by ``SipUrl``) pointing Twilio's inbound calls at this server;
- each phone number (E.164), looked up among the account's IncomingPhoneNumbers and
  associated with the trunk. Numbers the account does not hold are refused before anything
  is written.

Every step reads before it writes, so a second run creates nothing. Twilio never returns a
credential's password (it keeps only the digest hash), so a difference cannot be seen: the
password of an existing credential is sent again on every run, one idempotent write that
makes the trunk accept the configured password whether or not it changed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.api.v2010.account import AccountContext
from twilio.rest.api.v2010.account.incoming_phone_number import IncomingPhoneNumberInstance
from twilio.rest.trunking.v1.trunk import TrunkContext, TrunkInstance

_log = logging.getLogger(__name__)

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_TWILIO_PREFIX = re.compile(r"^Unable to \w+ (record|page): ")


class ProvisioningError(Exception):
    """Provisioning stopped; the message says which step and, from Twilio, why."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        """Twilio's error code (twilio.com/docs/errors/CODE), when Twilio answered with one."""
        self.status = status
        """The HTTP status of Twilio's answer, when there was one."""


@dataclass(frozen=True)
class TrunkSpec:
    """What the Twilio side of ``[trunks.twilio]`` should look like."""

    friendly_name: str
    domain_name: str
    """Termination domain, ``<name>.pstn.twilio.com``."""
    username: str
    password: str
    """Twilio requires 12+ characters with a digit, a lower- and an upper-case letter."""
    origination_uri: str
    """Where Twilio sends inbound calls, e.g. ``sip:pbx.example.com:5060``."""
    phone_numbers: list[str] = field(default_factory=list)
    """E.164 numbers the trunk should receive calls for."""
    credential_list_name: str = "voipcore"
    secure: bool = False
    """Secure trunking: TLS signalling and SRTP media on the trunk."""
    origination_priority: int = 10
    origination_weight: int = 10


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    EXISTING = "existing"


@dataclass(frozen=True)
class Step:
    """One provisioned item and what provisioning did to it."""

    kind: str
    """``trunk``, ``credential list``, ``credential``, ``trunk credential list``,
    ``origination URL`` or ``phone number``."""
    name: str
    sid: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class ProvisionReport:
    trunk_sid: str
    domain_name: str
    steps: tuple[Step, ...]

    @property
    def changed(self) -> bool:
        """Whether anything was created or updated."""
        return any(step.outcome is not Outcome.EXISTING for step in self.steps)


@dataclass(frozen=True)
class OriginationInfo:
    sid: str
    sip_url: str
    priority: int
    weight: int
    enabled: bool


@dataclass(frozen=True)
class CredentialListInfo:
    sid: str
    friendly_name: str
    usernames: tuple[str, ...]


@dataclass(frozen=True)
class NumberInfo:
    sid: str
    phone_number: str


@dataclass(frozen=True)
class TrunkStatus:
    """What exists on Twilio for a spec, and what provisioning would still change."""

    domain_name: str
    trunk_sid: str | None
    """None when no trunk matches the spec."""
    friendly_name: str | None = None
    trunk_domain_name: str | None = None
    secure: bool = False
    origination_urls: tuple[OriginationInfo, ...] = ()
    credential_lists: tuple[CredentialListInfo, ...] = ()
    phone_numbers: tuple[NumberInfo, ...] = ()
    missing: tuple[str, ...] = ()
    """Differences from the spec, one phrase each; empty when in sync."""


@contextmanager
def _twilio(action: str) -> Iterator[None]:
    """Turn what twilio-python raises into a ProvisioningError naming ``action``."""
    try:
        yield
    except TwilioRestException as exc:
        message = _TWILIO_PREFIX.sub("", exc.msg)
        raise ProvisioningError(
            f"{action}: Twilio error {exc.code} (HTTP {exc.status}): {message}",
            code=exc.code,
            status=exc.status,
        ) from exc
    except TwilioException as exc:
        # A failed list page is raised as TwilioException("Unable to fetch page", response).
        response = next((arg for arg in exc.args if isinstance(arg, Response)), None)
        if response is None:
            raise ProvisioningError(f"{action}: {exc}") from exc
        code, message = _error_body(response)
        raise ProvisioningError(
            f"{action}: Twilio error {code} (HTTP {response.status_code}): {message}",
            code=code,
            status=response.status_code,
        ) from exc
    except OSError as exc:  # requests' connection errors are OSErrors
        raise ProvisioningError(f"{action}: cannot reach Twilio: {exc}") from exc


def _error_body(response: Response) -> tuple[int, str]:
    try:
        body = json.loads(response.text)
        return int(body["code"]), str(body["message"])
    except (ValueError, TypeError, KeyError):
        return response.status_code, response.text[:200] or "no error body"


def _sid(sid: str | None, what: str) -> str:
    if not sid:
        raise ProvisioningError(f"Twilio returned {what} without a SID")
    return sid


def _written(step: Step) -> Step:
    if step.outcome is not Outcome.EXISTING:
        _log.info(
            "twilio: %s %s %s (%s) %s", step.outcome, step.kind, step.name, step.sid, step.detail
        )
    return step


def _check(spec: TrunkSpec) -> None:
    bad = [number for number in spec.phone_numbers if not _E164.match(number)]
    if bad:
        raise ProvisioningError(f"phone numbers must be E.164 (+ and digits): {', '.join(bad)}")


def _resolve_numbers(client: Client, numbers: list[str]) -> dict[str, IncomingPhoneNumberInstance]:
    """Each number's IncomingPhoneNumber; raises listing every number the account lacks."""
    account = client.api.v2010.account
    found: dict[str, IncomingPhoneNumberInstance] = {}
    for number in dict.fromkeys(numbers):
        with _twilio(f"looking up phone number {number}"):
            # PhoneNumber is a pattern filter; keep only the exact number.
            matches = account.incoming_phone_numbers.list(phone_number=number)
        for record in matches:
            if record.phone_number == number:
                found[number] = record
    missing = [number for number in dict.fromkeys(numbers) if number not in found]
    if missing:
        raise ProvisioningError(
            f"phone numbers not in Twilio account {client.account_sid}: "
            f"{', '.join(missing)} (buy or port them into this account first; nothing was changed)"
        )
    return found


def _find_trunk(client: Client, spec: TrunkSpec) -> TrunkInstance | None:
    domain = spec.domain_name.lower()
    with _twilio("listing trunks"):
        trunks = client.trunking.v1.trunks.list()
    for trunk in trunks:
        if (trunk.domain_name or "").lower() == domain:
            return trunk
    named = [trunk for trunk in trunks if trunk.friendly_name == spec.friendly_name]
    if len(named) > 1:
        sids = ", ".join(_sid(trunk.sid, "a trunk") for trunk in named)
        raise ProvisioningError(
            f"{len(named)} trunks are named {spec.friendly_name!r} and none has domain "
            f"{domain}: {sids}; give one of them that domain or rename the others"
        )
    return named[0] if named else None


def _ensure_trunk(client: Client, spec: TrunkSpec) -> Step:
    domain = spec.domain_name.lower()
    trunk = _find_trunk(client, spec)
    if trunk is None:
        with _twilio(f"creating trunk {domain}"):
            trunk = client.trunking.v1.trunks.create(
                friendly_name=spec.friendly_name, domain_name=domain, secure=spec.secure
            )
        return Step("trunk", spec.friendly_name, _sid(trunk.sid, "a trunk"), Outcome.CREATED)
    sid = _sid(trunk.sid, "a trunk")
    have = {
        "domain name": (trunk.domain_name or "(none)").lower(),
        "friendly name": trunk.friendly_name,
        "secure": bool(trunk.secure),
    }
    wanted = {"domain name": domain, "friendly name": spec.friendly_name, "secure": spec.secure}
    changes = [
        f"{key} {have[key]} -> {value}" for key, value in wanted.items() if have[key] != value
    ]
    if not changes:
        return Step("trunk", spec.friendly_name, sid, Outcome.EXISTING)
    with _twilio(f"updating trunk {sid}"):
        client.trunking.v1.trunks(sid).update(
            friendly_name=spec.friendly_name, domain_name=domain, secure=spec.secure
        )
    return Step("trunk", spec.friendly_name, sid, Outcome.UPDATED, ", ".join(changes))


def _ensure_credential_list(account: AccountContext, spec: TrunkSpec) -> Step:
    name = spec.credential_list_name
    with _twilio("listing SIP credential lists"):
        lists = account.sip.credential_lists.list()
    named = [cl for cl in lists if cl.friendly_name == name]
    if len(named) > 1:
        sids = ", ".join(_sid(cl.sid, "a credential list") for cl in named)
        raise ProvisioningError(
            f"{len(named)} SIP credential lists are named {name!r}: {sids}; rename or delete "
            "all but one"
        )
    if named:
        return Step(
            "credential list", name, _sid(named[0].sid, "a credential list"), Outcome.EXISTING
        )
    with _twilio(f"creating SIP credential list {name!r}"):
        created = account.sip.credential_lists.create(friendly_name=name)
    return Step("credential list", name, _sid(created.sid, "a credential list"), Outcome.CREATED)


def _ensure_credential(account: AccountContext, list_sid: str, spec: TrunkSpec) -> Step:
    credentials = account.sip.credential_lists(list_sid).credentials
    with _twilio(f"listing credentials of {list_sid}"):
        existing = [c for c in credentials.list() if c.username == spec.username]
    if existing:
        sid = _sid(existing[0].sid, "a credential")
        with _twilio(f"setting the password of credential {spec.username!r} ({sid})"):
            credentials(sid).update(password=spec.password)
        return Step("credential", spec.username, sid, Outcome.EXISTING, "password re-sent")
    with _twilio(f"creating credential {spec.username!r} in credential list {list_sid}"):
        created = credentials.create(username=spec.username, password=spec.password)
    return Step("credential", spec.username, _sid(created.sid, "a credential"), Outcome.CREATED)


def _ensure_trunk_credential_list(trunk: TrunkContext, list_sid: str, name: str) -> Step:
    with _twilio("listing the trunk's credential lists"):
        associated = {cl.sid for cl in trunk.credentials_lists.list()}
    if list_sid in associated:
        return Step("trunk credential list", name, list_sid, Outcome.EXISTING)
    with _twilio(f"associating credential list {list_sid} with the trunk"):
        trunk.credentials_lists.create(credential_list_sid=list_sid)
    return Step("trunk credential list", name, list_sid, Outcome.CREATED)


def _ensure_origination(trunk: TrunkContext, spec: TrunkSpec) -> Step:
    uri, priority, weight = spec.origination_uri, spec.origination_priority, spec.origination_weight
    with _twilio("listing origination URLs"):
        matches = [u for u in trunk.origination_urls.list() if u.sip_url == uri]
    if not matches:
        with _twilio(f"creating origination URL {uri}"):
            created = trunk.origination_urls.create(
                weight=weight,
                priority=priority,
                enabled=True,
                friendly_name=spec.friendly_name,
                sip_url=uri,
            )
        return Step(
            "origination URL", uri, _sid(created.sid, "an origination URL"), Outcome.CREATED
        )
    url = matches[0]
    sid = _sid(url.sid, "an origination URL")
    have = {"priority": url.priority, "weight": url.weight, "enabled": url.enabled}
    wanted = {"priority": priority, "weight": weight, "enabled": True}
    changes = [
        f"{key} {have[key]} -> {value}" for key, value in wanted.items() if have[key] != value
    ]
    if not changes:
        return Step("origination URL", uri, sid, Outcome.EXISTING)
    with _twilio(f"updating origination URL {uri} ({sid})"):
        trunk.origination_urls(sid).update(priority=priority, weight=weight, enabled=True)
    return Step("origination URL", uri, sid, Outcome.UPDATED, ", ".join(changes))


def _ensure_numbers(
    trunk: TrunkContext, trunk_sid: str, numbers: dict[str, IncomingPhoneNumberInstance]
) -> list[Step]:
    with _twilio("listing the trunk's phone numbers"):
        on_trunk = {number.sid for number in trunk.phone_numbers.list()}
    steps = []
    for e164, number in numbers.items():
        sid = _sid(number.sid, f"phone number {e164}")
        if sid in on_trunk:
            steps.append(Step("phone number", e164, sid, Outcome.EXISTING))
            continue
        with _twilio(f"associating phone number {e164} ({sid}) with the trunk"):
            trunk.phone_numbers.create(phone_number_sid=sid)
        moved = (
            f"moved from trunk {number.trunk_sid}"
            if number.trunk_sid not in (None, trunk_sid)
            else ""
        )
        steps.append(_written(Step("phone number", e164, sid, Outcome.CREATED, moved)))
    return steps


def provision(client: Client, spec: TrunkSpec) -> ProvisionReport:
    """Create or update the trunk, credentials, origination URL and numbers of ``spec``."""
    _check(spec)
    account = client.api.v2010.account
    numbers = _resolve_numbers(client, spec.phone_numbers)
    trunk_step = _written(_ensure_trunk(client, spec))
    trunk = client.trunking.v1.trunks(trunk_step.sid)
    list_step = _written(_ensure_credential_list(account, spec))
    steps = [
        trunk_step,
        list_step,
        _written(_ensure_credential(account, list_step.sid, spec)),
        _written(_ensure_trunk_credential_list(trunk, list_step.sid, list_step.name)),
        _written(_ensure_origination(trunk, spec)),
        *_ensure_numbers(trunk, trunk_step.sid, numbers),
    ]
    return ProvisionReport(trunk_step.sid, spec.domain_name.lower(), tuple(steps))


def status(client: Client, spec: TrunkSpec) -> TrunkStatus:
    """Read what exists on Twilio for ``spec``; writes nothing."""
    _check(spec)
    domain = spec.domain_name.lower()
    trunk = _find_trunk(client, spec)
    if trunk is None:
        return TrunkStatus(domain, None, missing=(f"trunk {domain}",))
    sid = _sid(trunk.sid, "a trunk")
    context = client.trunking.v1.trunks(sid)
    account = client.api.v2010.account
    with _twilio(f"reading trunk {sid}"):
        urls = tuple(
            OriginationInfo(
                _sid(u.sid, "an origination URL"),
                u.sip_url or "",
                u.priority or 0,
                u.weight or 0,
                bool(u.enabled),
            )
            for u in context.origination_urls.list()
        )
        lists = []
        for cl in context.credentials_lists.list():
            list_sid = _sid(cl.sid, "a credential list")
            credentials = account.sip.credential_lists(list_sid).credentials.list()
            usernames = tuple(c.username or "" for c in credentials)
            lists.append(CredentialListInfo(list_sid, cl.friendly_name or "", usernames))
        numbers = tuple(
            NumberInfo(_sid(n.sid, "a phone number"), n.phone_number or "")
            for n in context.phone_numbers.list()
        )
    missing: list[str] = []
    if (trunk.domain_name or "").lower() != domain:
        missing.append(f"domain name {domain} (trunk has {trunk.domain_name or 'none'})")
    if bool(trunk.secure) != spec.secure:
        missing.append(f"secure trunking {'on' if spec.secure else 'off'}")
    wanted_url = (spec.origination_uri, spec.origination_priority, spec.origination_weight, True)
    if not any((u.sip_url, u.priority, u.weight, u.enabled) == wanted_url for u in urls):
        missing.append(
            f"origination URL {spec.origination_uri} (priority {spec.origination_priority}, "
            f"weight {spec.origination_weight}, enabled)"
        )
    if not any(spec.username in cl.usernames for cl in lists):
        missing.append(f"credential {spec.username!r} in a credential list on the trunk")
    present = {n.phone_number for n in numbers}
    missing += [f"phone number {n}" for n in dict.fromkeys(spec.phone_numbers) if n not in present]
    return TrunkStatus(
        domain_name=domain,
        trunk_sid=sid,
        friendly_name=trunk.friendly_name,
        trunk_domain_name=trunk.domain_name,
        secure=bool(trunk.secure),
        origination_urls=urls,
        credential_lists=tuple(lists),
        phone_numbers=numbers,
        missing=tuple(missing),
    )


def format_report(report: ProvisionReport) -> str:
    """The report as the CLI prints it: one line per item, then a count."""
    lines = [f"Twilio trunk {report.trunk_sid} (termination {report.domain_name})"]
    width = max((len(step.name) for step in report.steps), default=0)
    for step in report.steps:
        line = f"  {step.outcome:<9} {step.kind:<22} {step.name:<{width}}  {step.sid}"
        lines.append(f"{line}  ({step.detail})" if step.detail else line)
    counts = {outcome: 0 for outcome in Outcome}
    for step in report.steps:
        counts[step.outcome] += 1
    lines.append(", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    return "\n".join(lines)


def format_status(state: TrunkStatus) -> str:
    """The status as the CLI prints it."""
    if state.trunk_sid is None:
        return f"No Twilio trunk with domain {state.domain_name} (not provisioned yet)"
    lines = [
        f"Twilio trunk {state.friendly_name} ({state.trunk_sid})",
        f"  termination  {state.trunk_domain_name or '(no domain)'}"
        f"  secure: {'yes' if state.secure else 'no'}",
    ]
    for u in state.origination_urls:
        enabled = "enabled" if u.enabled else "disabled"
        lines.append(
            f"  origination  {u.sip_url}  priority {u.priority} weight {u.weight} {enabled}"
        )
    for cl in state.credential_lists:
        users = ", ".join(cl.usernames) or "(no credentials)"
        lines.append(f"  credentials  {cl.friendly_name} ({cl.sid}): {users}")
    for n in state.phone_numbers:
        lines.append(f"  number       {n.phone_number} ({n.sid})")
    if state.missing:
        lines.append("Not as configured: " + "; ".join(state.missing))
    else:
        lines.append("In sync with the configuration.")
    return "\n".join(lines)
