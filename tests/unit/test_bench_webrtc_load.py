"""The WebRTC benchmark's pure parts: arguments, loss and per-core figures, the light client."""

from __future__ import annotations

import pytest

from benchmarks.aiortc_bridge import answer_json, browser_offer
from benchmarks.webrtc_client import RTP_HEADER, BrowserLeg, tone_payloads
from benchmarks.webrtc_load import (
    AIORTC,
    MAX_LOSS,
    PHONE_CODEC,
    VOIPCORE,
    Result,
    _leg_args,
    browser_legs,
    calls_for,
    compare,
    loss,
    parse_args,
    row,
)
from media.webrtc import DtlsIdentity, IceParameters, WebRtcTransport

SERVER = ("127.0.0.1", 30000)


def test_defaults_are_the_issue_levels() -> None:
    args = parse_args([])
    assert args.legs == [50, 100, 200]
    assert args.baseline_legs == [10, 20]
    assert (args.mode, args.codec, args.seconds, args.pin) == ("relay", "pcmu", 20.0, False)


def test_levels_and_flags_parse() -> None:
    args = parse_args(["--legs", "60", "--mode", "phone", "--codec", "opus", "--pin"])
    assert (args.legs, args.mode, args.codec, args.pin) == ([60], "phone", "opus", True)
    assert parse_args(["--baseline-legs"]).baseline_legs == []


@pytest.mark.parametrize(
    "argv", [["--legs", "0"], ["--seconds", "0"], ["--clients", "0"], ["--codec", "g729"]]
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_relay_calls_carry_two_browser_legs_and_phone_calls_one() -> None:
    assert (calls_for("relay", 200), browser_legs("relay", 100)) == (100, 200)
    assert calls_for("relay", 5) == 3  # rounded up to whole calls
    assert (calls_for("phone", 60), browser_legs("phone", 60)) == (60, 60)


def test_loss_counts_what_each_leg_missed_of_its_peer() -> None:
    assert loss([(1000, 1000, 1000, 1000)]) == 0.0
    # B missed 20 of A's packets: 20 of the 2000 sent.
    assert loss([(1000, 1000, 1000, 980)]) == pytest.approx(0.01)
    # A leg given more than its peer sent (the audio path's tick) hides no other loss.
    assert loss([(1000, 1010, 1000, 990)]) == pytest.approx(0.005)
    assert loss([]) == 1.0


def test_legs_per_core_projects_cpu_to_one_core() -> None:
    result = Result(VOIPCORE, "relay", "pcmu", 200, 100, connected=200, loss=0.0, cpu=0.5)
    assert result.cpu_per_leg == pytest.approx(0.0025)
    assert result.legs_per_core == pytest.approx(400)
    assert result.passes


def test_a_level_fails_on_loss_or_an_unconnected_leg() -> None:
    lossy = Result(VOIPCORE, "relay", "pcmu", 50, 25, connected=50, loss=MAX_LOSS, cpu=0.1)
    short = Result(VOIPCORE, "relay", "pcmu", 50, 25, connected=49, loss=0.0, cpu=0.1)
    assert not lossy.passes and not short.passes
    assert row(lossy).endswith("FAIL")


def test_refused_codec_is_reported_not_supported() -> None:
    result = Result(VOIPCORE, "phone", "opus", 60, 60, refused="codec opus is not supported")
    assert not result.passes
    assert "not supported: codec opus" in row(result)


def test_ratio_compares_each_system_at_its_highest_passing_load() -> None:
    results = [
        Result(VOIPCORE, "relay", "pcmu", 100, 50, connected=100, loss=0.0, cpu=0.2),
        Result(VOIPCORE, "relay", "pcmu", 200, 100, connected=200, loss=0.0, cpu=0.5),
        Result(VOIPCORE, "relay", "pcmu", 400, 200, connected=400, loss=0.2, cpu=1.0),
        Result(AIORTC, "relay", "pcmu", 10, 5, connected=10, loss=0.0, cpu=0.2),
    ]
    line = compare(results)
    assert line is not None
    assert "8.0x (400 at 200 legs / 50 at 10 legs)" in line
    assert compare(results[:3]) is None


def test_leg_requests_follow_the_control_protocol() -> None:
    browser = {"host": "127.0.0.1", "port": 5000, "ufrag": "u", "pwd": "p", "fingerprint": "AB"}
    args = _leg_args("c", "a", browser, "opus")
    assert args["codecs"] == [{"pt": 111, "name": "opus", "rate": 48000}]
    assert args["webrtc"]["fingerprints"] == [["sha-256", "AB"]]
    assert "remote" not in args  # ICE finds the browser, not the request
    phone = _leg_args("c", "b", {"host": "127.0.0.1", "port": 5002}, "pcmu")
    assert phone["codecs"] == [PHONE_CODEC]
    assert phone["remote"] == {"host": "127.0.0.1", "port": 5002}


def test_aiortc_gets_a_browser_offer_and_answers_in_the_engines_shape() -> None:
    args = {
        "codecs": [{"pt": 0, "name": "PCMU", "rate": 8000}],
        "webrtc": {"ufrag": "uf", "pwd": "pw" * 11, "fingerprints": [["sha-256", "AA:BB"]]},
        "remote": {"host": "127.0.0.1", "port": 5000},
    }
    offer = browser_offer(args)
    assert "a=setup:active\r\n" in offer
    assert "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" in offer
    answer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
        "a=candidate:abc 1 udp 2130706431 192.0.2.2 41000 typ host\r\n"
        "a=ice-ufrag:srv\r\na=ice-pwd:secret\r\na=fingerprint:sha-256 CC:DD\r\n"
    )
    assert answer_json(answer) == {
        "local": {"host": "192.0.2.2", "port": 41000},
        "webrtc": {
            "ufrag": "srv",
            "pwd": "secret",
            "fingerprint": {"algorithm": "sha-256", "value": "CC:DD"},
        },
    }


def test_client_packets_step_sequence_and_timestamp() -> None:
    leg = BrowserLeg(DtlsIdentity(), 111, tone_payloads("opus", frames=2), 960)
    try:
        first, second = (RTP_HEADER.unpack_from(leg.packet()) for _ in range(2))
        assert first[1] == second[1] == 111
        assert second[2] == (first[2] + 1) & 0xFFFF
        assert second[3] == (first[3] + 960) & 0xFFFFFFFF
    finally:
        leg.close()


def test_client_leg_connects_to_the_engines_transport_and_srtp_flows_both_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity = DtlsIdentity()
    leg = BrowserLeg(identity, 0, tone_payloads("PCMU"), 160)
    server_ice = IceParameters.generate()
    server = WebRtcTransport(
        DtlsIdentity(), server_ice, leg.ufrag, [("sha-256", identity.fingerprint)]
    )
    to_server: list[bytes] = []
    monkeypatch.setattr(leg, "_send", to_server.append)
    client = leg.address
    try:
        leg.start(SERVER, server_ice.ufrag, server_ice.pwd)
        for _ in range(20):
            for data in to_server[:]:
                to_server.remove(data)
                server.receive(data, client)
            for data, _ in server.datagrams_to_send():
                leg.datagram(data, SERVER)
            if leg.connected and server.connected:
                break
        assert leg.connected and server.connected and server.nominated == client
        plain = server.receive(leg.protect(leg.packet()), client)
        assert plain is not None and RTP_HEADER.unpack_from(plain)[1] == 0
        echoed = server.protect(plain)
        assert echoed is not None
        leg.datagram(echoed, SERVER)
        assert leg.received == 1
    finally:
        leg.close()
