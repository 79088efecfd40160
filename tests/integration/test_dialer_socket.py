"""The dialer page's WebSocket with a stand-in page (aiortc, tests/webpage.py): browser
legs in media worker processes, audio checked both ways, and bad messages answered."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.audio import assert_tone
from tests.baresip import BINARY, Baresip
from tests.harness import ServerProcess, wait_for_async
from tests.integration.test_calls import logged
from tests.webpage import PageClient

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed"),
]

#: Browser legs must take their ICE port from here (firewalls and QoS policies scope it).
RTP_PORTS = (42000, 42999)
WORKERS = f"[media]\nworkers = 2\nrtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, sip_trace=True, https=True, extra_config=WORKERS).start()
    yield proc
    proc.stop()


def base(server: ServerProcess) -> str:
    return f"https://127.0.0.1:{server.https_port}"


async def hears(page: PageClient, call: str, hz: float, since: int = 0) -> None:
    """Wait until the page has 2.5 s of audio on ``call`` (from chunk ``since``), then
    check that its last 2 s hold ``hz``."""

    def enough() -> bool:
        pcm, rate = page.audio(call, since)
        return len(pcm) >= 2.5 * rate

    await wait_for_async(enough, f"page heard under 2.5 s of audio on {call}")
    pcm, rate = page.audio(call, since)
    assert_tone(pcm[-2 * rate :], hz, 2.0, rate=rate)


def bob(server: ServerProcess, tmp_path: Path, hz: float = 440.0) -> Baresip:
    return Baresip(tmp_path / "bob", "bob", "bob-secret", "test.local", server.udp_port, hz)


def test_page_dials_a_phone_through_a_media_worker_audio_both_ways(
    server: ServerProcess, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with (
            bob(server, tmp_path) as phone,
            PageClient(base(server), "alice", "alice-secret") as page,
        ):
            call = await page.dial("202", 1000.0)
            answer = page.find("dialling", call=call)
            assert answer is not None
            candidate = next(
                line for line in answer["sdp"].splitlines() if line.startswith("a=candidate")
            )
            host, port = candidate.split()[4:6]
            assert host == "127.0.0.1" and RTP_PORTS[0] <= int(port) <= RTP_PORTS[1]
            assert "a=ice-lite" in answer["sdp"] and "a=setup:passive" in answer["sdp"]
            await phone.wait_event("CALL_INCOMING")
            await page.wait("ringing", call=call)
            await phone.command("accept")
            await page.wait("answered", call=call)
            await hears(page, call, 440.0, since=len(page.heard[call]))
            await page.send({"type": "hangup", "call": call})
            await phone.wait_event("CALL_CLOSED")
            await page.wait("ended", call=call)
            assert_tone((await phone.received_audio())[-16000:], 1000.0, 2.0)
            row = await logged(server, call)
            [browser] = [leg for leg in row["legs"] if leg["kind"] == "browser"]
            assert browser["role"] == "caller" and browser["peer"] == "alice"
            assert browser["packets_in"] > 100 and browser["mos_avg"] > 4.0

    asyncio.run(scenario())


def test_phone_calls_the_signed_in_page_which_answers(
    server: ServerProcess, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with (
            bob(server, tmp_path) as phone,
            PageClient(base(server), "alice", "alice-secret") as page,
        ):
            await phone.command("dial", "201")
            incoming = await page.wait("incoming")
            assert incoming["from"]["number"] == "bob"
            call = str(incoming["call"])
            await page.answer(call, 1000.0)
            await phone.wait_event("CALL_ESTABLISHED")
            await hears(page, call, 440.0)
            await phone.command("hangup")
            await phone.wait_event("CALL_CLOSED")
            ended = await page.wait("ended", call=call)
            assert ended["cause"] == "remote_hangup"
            assert_tone((await phone.received_audio())[-16000:], 1000.0, 2.0)

    asyncio.run(scenario())


def test_a_page_that_reconnects_gets_its_call_back_and_can_hang_it_up(
    server: ServerProcess, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with (
            bob(server, tmp_path) as phone,
            PageClient(base(server), "alice", "alice-secret") as page,
        ):
            call = await page.dial("202", 1000.0)
            await phone.wait_event("CALL_INCOMING")
            await phone.command("accept")
            await page.wait("answered", call=call)
            hello = await page.reconnect()
            [listed] = hello["calls"]
            assert listed["call"] == call and listed["state"] == "connected"
            before = len(page.heard[call])
            await wait_for_async(
                lambda: len(page.heard[call]) > before + 50, "media stopped with the socket"
            )
            await page.send({"type": "hangup", "call": call})
            await phone.wait_event("CALL_CLOSED")
            await page.wait("ended", call=call)

    asyncio.run(scenario())


def test_one_page_calls_another_and_both_hear_each_other(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with (
            PageClient(base(server), "alice", "alice-secret") as alice,
            PageClient(base(server), "bob", "bob-secret") as bob_page,
        ):
            call = await alice.dial("bob", 1000.0)
            incoming = await bob_page.wait("incoming", call=call)
            assert incoming["from"]["number"] == "alice"
            await alice.wait("ringing", call=call)
            await bob_page.answer(call, 440.0)
            await alice.wait("answered", call=call)
            await hears(alice, call, 440.0)
            await hears(bob_page, call, 1000.0)
            await bob_page.send({"type": "hangup", "call": call})
            assert (await alice.wait("ended", call=call))["cause"] == "remote_hangup"
            row = await logged(server, call)
            assert [leg["kind"] for leg in row["legs"]] == ["browser", "browser"]

    asyncio.run(scenario())


def test_bad_messages_get_an_error_naming_the_field_and_the_socket_stays_up(
    server: ServerProcess,
) -> None:
    async def scenario() -> None:
        async with PageClient(base(server), "alice", "alice-secret") as page:
            await page.send({"type": "dial", "ref": 7})
            assert (await page.wait("error", ref=7))["message"] == "to: expected a str"
            await page.send({"type": "dial", "ref": 8, "to": "202", "sdp": "v=0\r\n"})
            assert "unusable offer" in (await page.wait("error", ref=8))["message"]
            await page.send({"type": "fly", "ref": 9})
            assert "unknown message type" in (await page.wait("error", ref=9))["message"]
            await page.send({"type": "hangup", "ref": 10, "call": "nope"})
            assert "no call" in (await page.wait("error", ref=10))["message"]
            await page.send({"type": "normalize", "ref": 11, "number": "(404) 555-0123"})
            number = await page.wait("number", ref=11)
            assert number["e164"] == "+14045550123"
            await page.send({"type": "normalize", "ref": 12, "number": "12"})
            assert (await page.wait("number", ref=12))["display"] == "extension 12"
            await page.send({"type": "normalize", "ref": 13, "number": "+1 404 555"})
            assert "error" in await page.wait("number", ref=13)
            await page.send({"type": "ping"})
            await page.wait("pong")

    asyncio.run(scenario())


def test_websocket_refuses_pages_not_signed_in_and_other_sites(server: ServerProcess) -> None:
    async def scenario() -> None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        jar = aiohttp.CookieJar(unsafe=True)
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as client:
            url = f"{base(server)}/api/v1/ws"
            async with client.get(url) as reply:
                assert reply.status == 401
            credentials = {"username": "alice", "password": "alice-secret"}
            async with client.post(f"{base(server)}/api/v1/session", json=credentials):
                pass
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(url, origin="https://evil.example")
            assert refused.value.status == 403
            async with client.ws_connect(url) as ws:
                hello = json.loads((await ws.receive()).data)
                assert hello["type"] == "hello" and hello["user"]["username"] == "alice"

    asyncio.run(scenario())
