"""The media engine over real UDP sockets: audio verified as audio."""

from __future__ import annotations

import asyncio
import gc
import socket
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from media.control import ControlError, Json, MediaControl
from media.engine import MediaEngine
from media.rtp import RtpPacket
from media.tones import sine
from tests.audio import assert_no_tone, assert_tone, until_heard
from tests.harness import wait_for_async
from tests.rtpphone import RtpPhone

pytestmark = pytest.mark.integration

PCMU = {"pt": 0, "name": "PCMU", "rate": 8000}
PCMA = {"pt": 8, "name": "PCMA", "rate": 8000}
DTMF = {"pt": 101, "name": "telephone-event", "rate": 8000}


def run(test: Callable[[MediaEngine], Awaitable[None]]) -> None:
    async def main() -> None:
        engine = MediaEngine(rtp_ports=(31000, 31998), host="127.0.0.1")
        await engine.start()
        try:
            await test(engine)
        finally:
            await engine.stop()

    asyncio.run(main())


async def two_legs(
    engine: MediaEngine, a_codecs: list[Json], b_codecs: list[Json]
) -> tuple[RtpPhone, RtpPhone, tuple[str, int], tuple[str, int]]:
    """Phones A and B joined through the engine; returns their engine-side addresses."""
    phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
    reply_a = await engine.request(
        "offer", {"call_id": "c1", "leg": "a", "codecs": a_codecs, "remote": addr(phone_a)}
    )
    reply_b = await engine.request(
        "answer", {"call_id": "c1", "leg": "b", "codecs": b_codecs, "remote": addr(phone_b)}
    )
    return phone_a, phone_b, local(reply_a), local(reply_b)


def addr(phone: RtpPhone) -> Json:
    host, port = phone.address
    return {"host": host, "port": port}


def local(reply: Json) -> tuple[str, int]:
    return reply["local"]["host"], reply["local"]["port"]


async def talk(
    phone_a: RtpPhone,
    to_a: tuple[str, int],
    phone_b: RtpPhone,
    to_b: tuple[str, int],
    pt_a: int = 0,
    pt_b: int = 0,
) -> None:
    """A says 1000 Hz, B says 440 Hz, for one second each, at the same time; each must
    hear the other's second of tone, and nothing else (``tests.audio.assert_tone``)."""
    await asyncio.gather(
        phone_a.send_tone(to_a, 1000, 1.0, pt_a), phone_b.send_tone(to_b, 440, 1.0, pt_b)
    )
    await until_heard(lambda: phone_b.audio(pt_b), 1000, 1.0)
    await until_heard(lambda: phone_a.audio(pt_a), 440, 1.0)


async def settled(engine: MediaEngine, check: Callable[[Json], bool], what: str) -> Json:
    """Call c1's query reply once ``check`` holds for it (polled); fail naming ``what``."""
    replies: list[Json] = []

    async def query() -> bool:
        replies.append(await engine.request("query", {"call_id": "c1"}))
        return check(replies[-1])

    deadline = asyncio.get_running_loop().time() + 15.0
    while not await query():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: {replies[-1]}")
        await asyncio.sleep(0.02)
    return replies[-1]


def test_relay_carries_tones_both_ways_and_marks_dscp() -> None:
    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, to_a, to_b = await two_legs(engine, [PCMU, DTMF], [PCMU, DTMF])
        assert (await engine.request("query", {"call_id": "c1"}))["mode"] == "relay"
        await talk(phone_a, to_a, phone_b, to_b)
        assert {r.tos for r in phone_b.received} == {46 << 2}
        # Relayed packets keep the sender's timing and SSRC: nothing was re-encoded.
        assert {r.packet.ssrc for r in phone_b.received} == {phone_a.ssrc}
        summary = await engine.request("delete", {"call_id": "c1"})
        assert summary["legs"]["a"]["packets_in"] == 50
        assert summary["legs"]["b"]["packets_out"] == 50

    run(test)


def test_relay_keeps_numbering_across_a_new_source_and_maps_dtmf_types() -> None:
    async def test(engine: MediaEngine) -> None:
        dtmf_b = {"pt": 96, "name": "telephone-event", "rate": 8000}
        phone_a, phone_b, to_a, _ = await two_legs(engine, [PCMU, DTMF], [PCMU, dtmf_b])
        await phone_a.send_tone(to_a, 1000, 0.1)
        # A re-INVITE or a restarted phone: new SSRC, sequence and timestamp (RFC 3550 §5.1).
        phone_a.ssrc ^= 0x5A5A5A5A
        phone_a.seq = (phone_a.seq + 12345) & 0xFFFF
        phone_a.timestamp = (phone_a.timestamp + 987654) & 0xFFFFFFFF
        await phone_a.send_tone(to_a, 1000, 0.1)
        await phone_a.send_dtmf(to_a, "5")
        await wait_for_async(lambda: phone_b.dtmf_events(96), "A's key press never reached B")
        packets = [r.packet for r in phone_b.received]
        assert len([p for p in packets if p.payload_type == 0]) == 10
        # B sees one source numbered without a jump, and A's events under its own type.
        assert {p.ssrc for p in packets} == {phone_a.ssrc ^ 0x5A5A5A5A}
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        audio = [p.timestamp for p in packets if p.payload_type == 0]
        assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(audio, audio[1:], strict=False))
        assert [e.digit for e in phone_b.dtmf_events(96) if type(e).__name__ == "DtmfEnd"] == ["5"]

    run(test)


def test_relay_over_ipv6_latches_and_forwards() -> None:
    async def main() -> None:
        engine = MediaEngine(rtp_ports=(31000, 31998), host="::1")
        await engine.start()
        phones = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for phone in phones:
                phone.bind(("::1", 0))
                phone.settimeout(2)
            locals_ = []
            for leg, phone in zip("ab", phones, strict=True):
                reply = await engine.request(
                    "offer",
                    {
                        "call_id": "c6",
                        "leg": leg,
                        "codecs": [PCMU],
                        "remote": {"host": "::1", "port": phone.getsockname()[1]},
                    },
                )
                locals_.append(("::1", reply["local"]["port"]))
            packet = bytes(RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160))
            phones[0].sendto(packet, locals_[0])
            loop = asyncio.get_running_loop()
            data, source = await loop.run_in_executor(None, phones[1].recvfrom, 2048)
            assert data == packet
            assert source[1] == locals_[1][1]
            legs = (await engine.request("query", {"call_id": "c6"}))["legs"]
            assert legs["a"]["remote"] == {"host": "::1", "port": phones[0].getsockname()[1]}
            assert legs["a"]["dropped_source"] == 0
        finally:
            for phone in phones:
                phone.close()
            await engine.stop()

    asyncio.run(main())


def test_transcoding_goes_through_audio_path() -> None:
    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, to_a, to_b = await two_legs(engine, [PCMU], [PCMA])
        assert (await engine.request("query", {"call_id": "c1"}))["mode"] == "audio"
        await talk(phone_a, to_a, phone_b, to_b, pt_a=0, pt_b=8)
        assert {r.tos for r in phone_a.received} == {46 << 2}
        # The audio path sends its own stream: our SSRC, continuous sequence numbers.
        seqs = [r.packet.sequence_number for r in phone_b.received]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))

    run(test)


def test_stereo_recording_has_one_party_per_channel(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"

    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, to_a, to_b = await two_legs(engine, [PCMU], [PCMU])
        await engine.request("record", {"call_id": "c1", "action": "start", "file": str(path)})
        assert (await engine.request("query", {"call_id": "c1"}))["mode"] == "audio"
        await talk(phone_a, to_a, phone_b, to_b)
        reply = await engine.request("record", {"call_id": "c1", "action": "stop"})
        assert reply["recording"]["duration"] > 0.8
        # Without a recorder the call goes back to the relay fast path.
        assert (await engine.request("query", {"call_id": "c1"}))["mode"] == "relay"

    run(test)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert_tone(pcm[:, 0], 1000, seconds=1.0)
    assert_tone(pcm[:, 1], 440, seconds=1.0)


async def record_swapped_with_a_pause(control: MediaControl, call_id: str, path: Path) -> None:
    """A says 1000 Hz and B 440 Hz into ``call_id`` while it is recorded with B on the left
    channel, for 0.6 s, 0.6 s paused and 0.6 s resumed; then check the file."""
    phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
    try:
        to_a = local(
            await control.request(
                "offer",
                {"call_id": call_id, "leg": "a", "codecs": [PCMU], "remote": addr(phone_a)},
            )
        )
        to_b = local(
            await control.request(
                "answer",
                {"call_id": call_id, "leg": "b", "codecs": [PCMU], "remote": addr(phone_b)},
            )
        )
        with pytest.raises(ControlError, match="channels: call .* has no leg 'x'"):
            await control.request(
                "record",
                {"call_id": call_id, "action": "start", "file": str(path), "channels": ["x"]},
            )
        start = {"call_id": call_id, "action": "start", "file": str(path), "channels": ["b", "a"]}
        await control.request("record", start)
        for action in ("pause", "resume", None):
            await asyncio.gather(
                phone_a.send_tone(to_a, 1000, 0.6), phone_b.send_tone(to_b, 440, 0.6)
            )
            if action is not None:
                await control.request("record", {"call_id": call_id, "action": action})
        reply = await control.request("record", {"call_id": call_id, "action": "stop"})
    finally:
        phone_a.close()
        phone_b.close()
    assert reply["recording"]["duration"] == pytest.approx(1.8, abs=0.3)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert_tone(pcm[:, 0], 440, seconds=1.0)  # B on the left, as asked
    assert_tone(pcm[:, 1], 1000, seconds=1.0)
    # The pause is in the file as silence: both phones talked all along.
    assert longest_silence(pcm) >= 0.45


def longest_silence(pcm: npt.NDArray[np.int16]) -> float:
    """Seconds of the longest run of 20 ms frames silent on every channel."""
    frames = pcm[: pcm.shape[0] // 160 * 160].reshape(-1, 160, pcm.shape[1])
    silent = np.abs(frames).max(axis=(1, 2)) < 50
    longest = run = 0
    for quiet in silent:
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    return longest * 0.02


def test_recording_channels_follow_the_legs_named_and_pauses_are_silent(tmp_path: Path) -> None:
    async def test(engine: MediaEngine) -> None:
        await record_swapped_with_a_pause(engine, "c1", tmp_path / "call.wav")

    run(test)


def test_an_others_channel_mixes_every_leg_not_named(tmp_path: Path) -> None:
    """A conference recorded with ``["a", "*"]``: A on the left, B and C mixed on the right."""
    path = tmp_path / "conference.wav"

    async def test(engine: MediaEngine) -> None:
        phones, targets = [], []
        for leg in ("a", "b", "c"):
            phone = RtpPhone.open()
            reply = await engine.request(
                "offer", {"call_id": "c1", "leg": leg, "codecs": [PCMU], "remote": addr(phone)}
            )
            phones.append(phone)
            targets.append(local(reply))
        start = {"call_id": "c1", "action": "start", "file": str(path), "channels": ["a", "*"]}
        await engine.request("record", start)
        await asyncio.gather(
            *(
                phone.send_tone(target, hz, 1.0)
                for phone, target, hz in zip(phones, targets, (1000, 440, 1600), strict=True)
            )
        )
        await engine.request("record", {"call_id": "c1", "action": "stop"})
        for phone in phones:
            phone.close()

    run(test)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert_tone(pcm[:, 0], 1000, seconds=0.8)
    assert_tone(pcm[:, 1], (440, 1600), seconds=0.8)
    assert_no_tone(pcm[:, 1], 1000, max_level_dbfs=-40)


def test_tone_played_into_a_leg_is_heard_there() -> None:
    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, _, to_b = await two_legs(engine, [PCMU], [PCMU])
        await engine.request("play", {"call_id": "c1", "leg": "b", "tone": [800], "duration": 0.6})
        # B talks meanwhile: A hears B (the path to A is live) and not the tone.
        await phone_b.send_tone(to_b, 300, 0.6)
        await until_heard(lambda: phone_b.audio(0), 800, 0.6)
        await until_heard(lambda: phone_a.audio(0), 300, 0.6)
        assert_no_tone(phone_a.audio(0), 800)

    run(test)


def test_dtmf_sent_to_a_leg_and_detected_from_one() -> None:
    async def test(engine: MediaEngine) -> None:
        events: list[Json] = []
        engine.subscribe(events.append)
        phone_a, phone_b, to_a, _ = await two_legs(engine, [PCMU, DTMF], [PCMU, DTMF])
        await engine.request("dtmf", {"call_id": "c1", "leg": "b", "digits": "12#"})
        await phone_a.send_dtmf(to_a, "7")

        def ends() -> list[Any]:
            return [e for e in phone_b.dtmf_events() if type(e).__name__ == "DtmfEnd"]

        await wait_for_async(lambda: len(ends()) >= 4, lambda: f"B heard only {ends()}")
        # B hears the three injected digits and A's relayed 7, each exactly once.
        assert sorted(e.digit for e in ends()) == sorted("12#7")
        detected = [e for e in events if e["event"] == "dtmf"]
        assert [(e["leg"], e["digit"]) for e in detected] == [("a", "7")]

    run(test)


def test_latched_leg_drops_packets_from_other_sources() -> None:
    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, to_a, _ = await two_legs(engine, [PCMU], [PCMU])
        intruder = RtpPhone.open()
        await phone_a.send_tone(to_a, 1000, 0.1)
        await intruder.send_tone(to_a, 2000, 0.1)
        reply = await settled(engine, lambda r: r["legs"]["a"]["dropped_source"] >= 5, "drops")
        assert reply["legs"]["a"]["dropped_source"] == 5
        assert {r.packet.ssrc for r in phone_b.received} == {phone_a.ssrc}

    run(test)


def test_a_leg_the_socket_cannot_send_to_counts_errors_and_the_call_recovers() -> None:
    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, to_a, _ = await two_legs(engine, [PCMU], [PCMU])
        # An IPv6 address in B's SDP while the engine's sockets are IPv4: every send fails.
        await engine.request(
            "answer",
            {"call_id": "c1", "leg": "b", "codecs": [PCMU], "remote": {"host": "::1", "port": 9}},
        )
        await phone_a.send_tone(to_a, 1000, 0.1)
        reply = await settled(engine, lambda r: r["legs"]["b"]["send_errors"] >= 5, "errors")
        legs: dict[str, Any] = reply["legs"]
        assert legs["b"]["send_errors"] == 5
        assert legs["b"]["packets_out"] == 0
        assert legs["a"]["packets_in"] == 5
        # A re-INVITE with a good address: the relay carries on.
        await engine.request(
            "answer", {"call_id": "c1", "leg": "b", "codecs": [PCMU], "remote": addr(phone_b)}
        )
        await phone_a.send_tone(to_a, 1000, 0.1)
        await until_heard(lambda: phone_b.audio(0), 1000, 0.1)
        assert len(phone_b.received) == 5

    run(test)


def test_ended_calls_leave_no_reference_cycles(tmp_path: Path) -> None:
    """Workers freeze long-lived objects (media.worker.CollectorPolicy): an ended
    call must be freed by reference counting alone, whatever path it took."""

    async def test(engine: MediaEngine) -> None:
        phone_a, phone_b, to_a, to_b = await two_legs(engine, [PCMU, DTMF], [PCMU, DTMF])
        remote = addr(phone_a)
        for leg, codecs in (("a", [PCMU]), ("b", [PCMA])):
            await engine.request(
                "offer", {"call_id": "c2", "leg": leg, "codecs": codecs, "remote": remote}
            )
        await engine.request(
            "record", {"call_id": "c2", "action": "start", "file": str(tmp_path / "c2.wav")}
        )
        await engine.request("play", {"call_id": "c2", "leg": "a", "tone": [440], "duration": 0.1})
        await engine.request("dtmf", {"call_id": "c1", "leg": "b", "digits": "1"})
        # (What is heard is not the point here; the digits interrupt B's audio anyway.)
        await asyncio.gather(
            phone_a.send_tone(to_a, 1000, 1.0),
            phone_b.send_tone(to_b, 440, 1.0),
            phone_b.send_dtmf(to_b, "2"),
        )
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for call_id in ("c1", "c2"):
                await engine.request("delete", {"call_id": call_id})
            await asyncio.sleep(0.1)
            gc.collect()
            ours = [o for o in gc.garbage if type(o).__module__.startswith("media.")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert ours == []

    run(test)


def test_bad_requests_are_refused_with_reasons() -> None:
    async def test(engine: MediaEngine) -> None:
        bad: list[tuple[str, Json, str]] = [
            ("query", {"call_id": "nope"}, "unknown call 'nope'"),
            ("offer", {"call_id": "c", "leg": "a", "codecs": [DTMF]}, "audio codec"),
            (
                "offer",
                {"call_id": "c", "leg": "a", "codecs": [{"pt": 18, "name": "G729"}]},
                "not supported",
            ),
            (
                "offer",
                {"call_id": "c", "leg": "a", "codecs": [PCMU], "remote": {"host": "x"}},
                "bad port",
            ),
            ("frobnicate", {}, "unknown command"),
        ]
        for command, args, reason in bad:
            with pytest.raises(ControlError, match=reason):
                await engine.request(command, args)

    run(test)


def test_wav_prompt_is_played_and_bad_prompts_are_refused(tmp_path: Path) -> None:
    prompt, stereo = tmp_path / "prompt.wav", tmp_path / "stereo.wav"
    with wave.open(str(prompt), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(sine(600, 0.5, 0.4).astype("<i2").tobytes())
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(3200))

    async def test(engine: MediaEngine) -> None:
        _, phone_b, _, to_b = await two_legs(engine, [PCMU], [PCMU])
        await phone_b.send_tone(to_b, 300, 0.04)
        await engine.request("play", {"call_id": "c1", "leg": "b", "file": str(prompt)})
        await until_heard(lambda: phone_b.audio(0), 600, 0.5)
        # The prompt is over: the call is relayed again.
        await settled(engine, lambda r: r["mode"] == "relay", "still playing")
        for bad, reason in ((stereo, "8000 Hz mono"), (tmp_path / "none.wav", "cannot play")):
            with pytest.raises(ControlError, match=reason):
                await engine.request("play", {"call_id": "c1", "leg": "b", "file": str(bad)})

    run(test)


@pytest.mark.expect_tracebacks  # the recorder's writer thread logs the OSError it hit
def test_recording_to_an_unwritable_place_is_reported_and_the_call_ends(tmp_path: Path) -> None:
    async def test(engine: MediaEngine) -> None:
        await two_legs(engine, [PCMU], [PCMU])
        target = str(tmp_path / "missing" / "call.wav")
        await engine.request("record", {"call_id": "c1", "action": "start", "file": target})
        summary = await engine.request("delete", {"call_id": "c1"})
        assert summary["recording"]["file"] == target
        assert "No such file or directory" in summary["recording"]["error"]
        assert engine.calls == {}

    run(test)


def test_malformed_rtp_is_counted_and_dropped_in_both_paths() -> None:
    async def test(engine: MediaEngine) -> None:
        phone_a, _, to_a, _ = await two_legs(engine, [PCMU], [PCMA])  # audio path
        await phone_a.send_tone(to_a, 1000, 0.04)
        bad = [
            b"\x00" * 20,  # version 0
            b"\x8f" + bytes(11),  # 15 CSRCs announced, none present
            b"\x90" + bytes(11) + b"\x00\x00\x00\x09",  # extension longer than the packet
            b"\xa0\x00" + bytes(10) + b"\xff",  # padding longer than the packet
            b"\x80",  # one octet
        ]
        for data in bad:
            phone_a.sock.sendto(data, to_a)
        reply = await settled(engine, lambda r: r["legs"]["a"]["dropped_invalid"] >= 5, "drops")
        legs = reply["legs"]
        assert legs["a"]["dropped_invalid"] == len(bad)
        assert legs["a"]["packets_in"] == 2

    run(test)
