"""Click-to-call through the REST API: a script with an API token calls a person's number.

``POST /api/v1/calls`` rings the rep's registered baresip first; once the rep answers,
the server dials the number through the trunk (the carrier stand-in answers with its
tone) and sends the number's extension as RFC 4733 digits after it answers.  The call
is then in the person's call history (``GET /api/v1/calls?person_id=``).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.audio import assert_tone, until_heard
from tests.baresip import BINARY, Baresip
from tests.carrier import CarrierCall, TwilioCarrier
from tests.harness import ServerProcess
from tests.integration.test_trunk import CALLER_ID, DOMAIN, trunk_setup
from voipcore.http.tls import CERT_FILE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed"),
]

#: What the rep's phone says into the call, and what the carrier's party plays
#: (trunk_setup's default party).
PHONE_HZ, CARRIER_HZ = 440.0, 1000.0
#: Seconds of tone each side must hear.
SPAN = 1.0


@dataclass
class HttpsServer(ServerProcess):
    """The server with HTTPS on: the session cookie that signs in for a token is Secure."""

    https: bool = True


@dataclass
class Rest:
    """The REST API as a script uses it: ``Authorization: Bearer`` over HTTPS."""

    session: aiohttp.ClientSession
    base: str
    token: str

    async def ask(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    async def expect(self, status: int, method: str, path: str, body: Any = None) -> Any:
        got, answer = await self.ask(method, path, body)
        assert got == status, (method, path, got, answer)
        return answer

    async def ended_calls(self, person_id: int, count: int) -> list[dict[str, Any]]:
        """The person's call history once it holds ``count`` ended calls."""
        async with asyncio.timeout(20.0):
            while True:
                page = await self.expect(200, "GET", f"/calls?person_id={person_id}")
                calls: list[dict[str, Any]] = page["items"]
                if len(calls) == count and all(call["ended_at"] for call in calls):
                    return calls
                await asyncio.sleep(0.1)


@asynccontextmanager
async def rest_api(server: ServerProcess) -> AsyncIterator[Rest]:
    """Alice signs in once to make an API token; from then on only the token is sent."""
    context = ssl.create_default_context(cafile=server.workdir / CERT_FILE)
    base = f"https://127.0.0.1:{server.https_port}/api/v1"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies from an IP address
    ) as session:
        signed_in = {"username": "alice", "password": "alice-secret"}
        async with session.post(base + "/session", json=signed_in) as response:
            assert response.status == 200, await response.text()
        async with session.post(base + "/tokens", json={"name": "crm"}) as response:
            assert response.status == 201, await response.text()
            token = (await response.json())["token"]
        session.cookie_jar.clear()
        yield Rest(session, base, token)


async def rep_answers(phone: Baresip, carrier: TwilioCarrier, number: str) -> None:
    """The rep's phone rings showing the number it is about to be put through to, which
    waits for the rep to answer; the rep answers."""
    incoming = await phone.wait_event("CALL_INCOMING", timeout=10.0)
    assert incoming.param == f"sip:{number}@{DOMAIN}"
    assert not carrier.calls
    await phone.command("accept")
    await phone.wait_event("CALL_ESTABLISHED")


async def hang_up(phone: Baresip, call: CarrierCall) -> None:
    await phone.command("hangup")
    await phone.wait_event("CALL_CLOSED")
    async with asyncio.timeout(10.0):
        await call.ended()


def test_click_to_call_rings_the_reps_phone_then_the_persons_number(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            trunk_setup(tmp_path, server_type=HttpsServer) as (carrier, server),
            rest_api(server) as rest,
            Baresip(
                tmp_path / "alice", "alice", "alice-secret", DOMAIN, server.udp_port, PHONE_HZ
            ) as phone,
        ):
            person = await rest.expect(
                201,
                "POST",
                "/people",
                {"name": "Pat Buyer", "numbers": [{"number": "(404) 555-1234", "label": "office"}]},
            )
            [number] = person["numbers"]
            assert number["e164"] == "+14045551234"
            refused = await rest.expect(
                409, "POST", "/calls", {"number_id": number["id"], "device": "browser"}
            )
            assert refused["error"] == "alice has no dialer page open"

            started = await rest.expect(
                202, "POST", "/calls", {"number_id": number["id"], "device": "phone"}
            )
            await rep_answers(phone, carrier, "+14045551234")
            call = await carrier.wait_for_call("+14045551234")
            assert call.from_number == CALLER_ID  # the rep's caller id on the trunk
            assert await call.final() == 200
            assert call.media is not None
            # The carrier hears the rep's tone; the rep the carrier's (checked after the
            # hang-up, when baresip's recording is complete).
            await until_heard(call.media.audio, PHONE_HZ, SPAN + 0.5)
            await hang_up(phone, call)
            assert_tone(await phone.received_audio(), CARRIER_HZ, seconds=SPAN)
            assert call.media.dtmf_received == ""

            [row] = await rest.ended_calls(person["id"], 1)
            assert row["call_id"] == started["call_id"]
            assert (row["direction"], row["callee_e164"], row["user"]) == (
                "outbound",
                "+14045551234",
                "alice",
            )
            assert (row["person_id"], row["person"]["name"], row["callee_extension"]) == (
                person["id"],
                "Pat Buyer",
                None,
            )
            assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")
            assert [(leg["kind"], leg["role"]) for leg in row["legs"]] == [
                ("phone", "caller"),
                ("trunk", "callee"),
            ]

    asyncio.run(main())


def test_click_to_call_sends_the_numbers_extension_after_it_answers(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            trunk_setup(tmp_path, server_type=HttpsServer) as (carrier, server),
            rest_api(server) as rest,
            Baresip(
                tmp_path / "alice", "alice", "alice-secret", DOMAIN, server.udp_port, PHONE_HZ
            ) as phone,
        ):
            person = await rest.expect(
                201,
                "POST",
                "/people",
                {"name": "Lee Desk", "numbers": [{"number": "404-555-1235 x123"}]},
            )
            [number] = person["numbers"]
            assert (number["e164"], number["extension"]) == ("+14045551235", "123")

            started = await rest.expect(
                202, "POST", "/calls", {"number_id": number["id"], "device": "phone"}
            )
            await rep_answers(phone, carrier, "+14045551235")
            call = await carrier.wait_for_call("+14045551235")
            assert await call.final() == 200
            media = call.media
            assert media is not None
            async with asyncio.timeout(10.0):
                while media.dtmf_received != "123":
                    await asyncio.sleep(0.05)
            await hang_up(phone, call)

            [row] = await rest.ended_calls(person["id"], 1)
            assert (row["call_id"], row["callee_extension"]) == (started["call_id"], "123")

    asyncio.run(main())
