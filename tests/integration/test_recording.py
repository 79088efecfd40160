"""Call recording over real sockets: a call between two RTP phones, recorded through the
REST API, paused for a stretch, resumed and stopped, then downloaded and listened to.

Alice (the rep, the caller) says 440 Hz and Bob 1000 Hz the whole time.  The file must be
stereo with Alice's tone on the left and Bob's on the right, the paused stretch silent,
and as long as the recording ran.  Only Alice and the admin may list or fetch it; the
retention sweep, driven with an explicit ``now`` on the server's own store, deletes it,
after which it is 410 Gone.

A dialer page (the aiortc stand-in) records its call to a baresip through its own socket
with a media worker process, gets each state back (and in hello after a reconnect), and
hangs up while recording: the call's end stops and indexes the file.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import ssl
import time
import urllib.request
import wave
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.audio import assert_no_tone, assert_tone
from tests.baresip import BINARY, Baresip
from tests.harness import ServerProcess, TestUser, wait_for_async
from tests.integration.test_calls import DOMAIN, blocking, connected, media_target
from tests.integration.test_media import longest_silence
from tests.integration.test_rest_api import Client, Reply, covers
from tests.rtpphone import RtpPhone
from tests.webpage import PageClient
from voipcore.http.tls import CERT_FILE
from voipcore.sip.message import Request
from voipcore.store.db import open_engine
from voipcore.store.recordings import DAY, RecordingStore

pytestmark = pytest.mark.integration

ALICE = TestUser("alice", "alice-secret", "201")
BOB = TestUser("bob", "bob-secret", "202")
CAROL = TestUser("carol", "carol-secret", "203")
ADMIN = TestUser("dana", "dana-secret", "204", role="admin")
#: What each phone says: the rep (Alice) and the other party (Bob).
ALICE_HZ, BOB_HZ = 440.0, 1000.0
#: Seconds recorded, paused, and recorded again.
SPAN = 1.5


def signed_in(server: ServerProcess, document: dict[str, Any], user: TestUser) -> Client:
    client = Client(server, document=document)
    assert client.sign_in(user).status == 200
    return client


def download(server: ServerProcess, cookies: CookieJar, url: str) -> tuple[str, bytes]:
    """The bytes at ``url`` (a WAV file, not text) with the signed-in cookie."""
    context = ssl.create_default_context(cafile=server.workdir / CERT_FILE)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), urllib.request.HTTPCookieProcessor(cookies)
    )
    with opener.open(f"https://127.0.0.1:{server.https_port}{url}", timeout=10) as response:
        return response.headers["Content-Type"], response.read()


@covers("control_recording", "list_recordings", "get_recording")
def test_a_call_recorded_paused_and_resumed_has_each_party_on_its_channel(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, users=[ALICE, BOB, CAROL, ADMIN], https=True).start()
    try:
        document = Client(server).get("/api/v1/openapi.json").json
        alice, carol, bob, admin = (
            signed_in(server, document, user) for user in (ALICE, CAROL, BOB, ADMIN)
        )
        call_id = asyncio.run(record_a_call(server, alice, carol))
        [item] = alice.get(f"/api/v1/calls/{call_id}/recordings").json["items"]
        check_access_and_file(server, item, alice, carol, bob, admin)
        check_retention(server, item, alice)
    finally:
        server.stop()


async def record_a_call(server: ServerProcess, alice: Client, carol: Client) -> str:
    """Alice calls Bob; both talk; Alice records, pauses, resumes and stops, and hangs up.
    Returns the call's id."""
    phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
    caller, callee, invite, incoming, ok = await connected(server, phone_a, phone_b)
    control = f"/api/v1/calls/{invite.call_id}/recording"

    async def post(client: Client, path: str, body: dict[str, str]) -> Reply:
        return await asyncio.to_thread(client.post, path, body)

    talkers = [
        asyncio.create_task(phone_a.send_tone(media_target(ok), ALICE_HZ)),
        asyncio.create_task(phone_b.send_tone(media_target(incoming), BOB_HZ)),
    ]
    try:
        refused = await post(carol, control, {"action": "start"})
        assert (refused.status, refused.json["error"]) == (403, "This is another user's call.")
        nothing = await post(alice, control, {"action": "pause"})
        assert nothing.status == 409
        assert nothing.json["error"] == "Nothing to pause: the call is not being recorded."
        bad = await post(alice, control, {"action": "rewind"})
        assert (bad.status, bad.json["field"]) == (400, "action")
        unknown = await post(alice, "/api/v1/calls/nope/recording", {"action": "start"})
        assert unknown.status == 404

        started = await post(alice, control, {"action": "start"})
        assert started.status == 200, started.text
        assert started.json["state"] == "recording" and len(started.json["recording_id"]) >= 24
        for action, state in (("pause", "paused"), ("resume", "recording"), ("stop", "stopped")):
            await asyncio.sleep(SPAN)
            moved = await post(alice, control, {"action": action})
            assert (moved.status, moved.json["state"]) == (200, state), moved.text
            assert moved.json["recording_id"] == started.json["recording_id"]
    finally:
        for talker in talkers:
            talker.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
        phone_a.close()
        phone_b.close()
    await blocking(caller.send_raw, caller.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
    assert (await blocking(caller.recv)).status == 200
    bye = await blocking(callee.recv_message)
    assert isinstance(bye, Request) and bye.method == "BYE"
    await blocking(callee.answer, bye, 200)
    caller.close()
    callee.close()
    return invite.call_id


def check_access_and_file(
    server: ServerProcess,
    item: dict[str, Any],
    alice: Client,
    carol: Client,
    bob: Client,
    admin: Client,
) -> None:
    """Only the call's owner and the admin list and fetch it; the file is right."""
    call_id, url = item["call_id"], item["url"]
    assert url == f"/api/v1/recordings/{item['id']}"
    assert item["duration"] == pytest.approx(3 * SPAN, abs=0.5)
    assert item["expired_at"] is None and item["size"] > 44
    for other in (carol, bob):  # Bob was in the call, but it is Alice's
        listed = other.get(f"/api/v1/calls/{call_id}/recordings")
        assert listed.status == 403
        fetched = other.get(url)
        assert (fetched.status, fetched.json["error"]) == (403, "This is another user's call.")
    assert admin.get(f"/api/v1/calls/{call_id}/recordings").json["items"] == [item]
    assert alice.get("/api/v1/recordings/not-a-recording").status == 404

    kind, data = download(server, admin.cookies, url)
    assert kind == "audio/wav"
    kind, data = download(server, alice.cookies, url)
    assert kind == "audio/wav" and len(data) == item["size"]
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        assert wav.getnframes() / 8000 == pytest.approx(item["duration"])
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    # Alice, the rep, on the left; Bob on the right; each party on its own channel only.
    assert_tone(pcm[:, 0], ALICE_HZ, seconds=2 * SPAN - 0.5)
    assert_tone(pcm[:, 1], BOB_HZ, seconds=2 * SPAN - 0.5)
    assert_no_tone(pcm[:, 0], BOB_HZ, max_level_dbfs=-40)
    assert_no_tone(pcm[:, 1], ALICE_HZ, max_level_dbfs=-40)
    # The paused stretch is silent on both channels, though both talked all along.
    assert longest_silence(pcm) == pytest.approx(SPAN, abs=0.3)


def check_retention(server: ServerProcess, item: dict[str, Any], alice: Client) -> None:
    """The sweep, as the server runs it hourly but with ``now`` 90 days on, deletes it."""
    engine = open_engine(f"sqlite:///{server.workdir / 'voipcore.db'}")
    try:
        store = RecordingStore(engine)
        indexed = store.get(item["id"])
        assert indexed is not None
        path = Path(indexed.path)
        assert path.parent == server.workdir / "recordings" and path.exists()
        assert store.sweep(time.time() + 89 * DAY, retention_days=90) == []
        [expired] = store.sweep(time.time() + 90 * DAY + 60, retention_days=90)
    finally:
        engine.dispose()
    assert expired.id == item["id"] and not path.exists()
    gone = alice.get(item["url"])
    assert gone.status == 410 and "retention" in gone.json["error"]
    [listed] = alice.get(f"/api/v1/calls/{item['call_id']}/recordings").json["items"]
    assert listed["expired_at"] is not None


@pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed")
def test_a_page_records_its_call_through_a_media_worker_and_gets_the_state_back(
    tmp_path: Path,
) -> None:
    """The page's own socket: ``record`` messages, ``recording`` states to the page and in
    a reconnected page's hello; the browser leg (the rep, who dialled) on the left."""
    workers = "[media]\nworkers = 1\n"
    server = ServerProcess(tmp_path, https=True, extra_config=workers).start()

    async def scenario() -> str:
        async with (
            Baresip(tmp_path / "bob", "bob", "bob-secret", DOMAIN, server.udp_port, BOB_HZ) as bob,
            PageClient(f"https://127.0.0.1:{server.https_port}", "alice", "alice-secret") as page,
        ):
            call = await page.dial("202", ALICE_HZ)
            await bob.wait_event("CALL_INCOMING")
            await bob.command("accept")
            await page.wait("answered", call=call)
            await page.send({"type": "record", "ref": "r0", "call": call, "action": "rewind"})
            error = await page.wait("error", ref="r0")
            assert error["message"] == "action: one of start, pause, resume, stop"
            await page.send({"type": "record", "ref": "r1", "call": call, "action": "start"})
            await page.wait("recording", call=call, state="recording")
            hello = await page.reconnect()
            [listed] = hello["calls"]
            assert (listed["call"], listed["recording"]) == (call, "recording")
            await asyncio.sleep(SPAN)
            await page.send({"type": "record", "ref": "r2", "call": call, "action": "pause"})
            await page.wait("recording", call=call, state="paused")
            await asyncio.sleep(SPAN)
            await page.send({"type": "record", "ref": "r3", "call": call, "action": "resume"})
            await page.wait("recording", call=call, state="recording")
            await asyncio.sleep(SPAN)
            await page.send({"type": "hangup", "call": call})  # the call's end stops it
            await bob.wait_event("CALL_CLOSED")
            await page.wait("ended", call=call)
            return call

    try:
        call_id = asyncio.run(scenario())
        engine = open_engine(f"sqlite:///{server.workdir / 'voipcore.db'}")
        try:
            store = RecordingStore(engine)
            [recording] = asyncio.run(
                wait_for_async(lambda: store.of_call(call_id), "the recording was not indexed")
            )
        finally:
            engine.dispose()
        with wave.open(recording.path, "rb") as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
        assert recording.duration == pytest.approx(3 * SPAN, abs=0.6)
        assert_tone(pcm[:, 0], ALICE_HZ, seconds=2 * SPAN - 0.5)  # the page, who dialled
        assert_tone(pcm[:, 1], BOB_HZ, seconds=2 * SPAN - 0.5)
        assert longest_silence(pcm) == pytest.approx(SPAN, abs=0.3)
    finally:
        server.stop()
