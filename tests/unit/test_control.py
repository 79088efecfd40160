"""The control protocol's pure parts: addresses, the UDP reply cache, the UDP event log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from media.control import ControlAddress, EventLog, ReplyCache
from media.workers import worker_addresses
from voipcore.config import ConfigError, load_config

PEER = ("127.0.0.1", 40000)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("unix:/run/voipcore/w0.sock", ControlAddress("unix", "/run/voipcore/w0.sock")),
        ("tcp:127.0.0.1:2222", ControlAddress("tcp", "127.0.0.1", 2222)),
        ("udp:[::1]:0", ControlAddress("udp", "::1", 0)),
    ],
)
def test_control_address_round_trips(text: str, address: ControlAddress) -> None:
    assert ControlAddress.parse(text) == address
    assert str(address) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sctp:127.0.0.1:1", "expected unix:PATH, tcp:HOST:PORT or udp:HOST:PORT"),
        ("udp:", "expected unix:PATH"),
        ("udp:127.0.0.1", "expected HOST:PORT"),
        ("udp:127.0.0.1:99999", "port must be 0-65535"),
    ],
)
def test_malformed_control_address_says_what_is_expected(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ControlAddress.parse(text)


def test_pool_gives_each_worker_its_own_control_address() -> None:
    assert worker_addresses("unix", 2, "/d") == [
        ControlAddress("unix", "/d/worker0.sock"),
        ControlAddress("unix", "/d/worker1.sock"),
    ]
    assert worker_addresses("udp:127.0.0.1:2223", 2, "/d") == [
        ControlAddress("udp", "127.0.0.1", 2223),
        ControlAddress("udp", "127.0.0.1", 2224),
    ]
    assert worker_addresses("tcp:127.0.0.1:0", 2, "/d") == [ControlAddress("tcp", "127.0.0.1")] * 2
    with pytest.raises(ValueError, match="past 65535"):
        worker_addresses("udp:127.0.0.1:65535", 2, "/d")
    with pytest.raises(ValueError, match='plain "unix"'):
        worker_addresses("unix:/tmp/x.sock", 2, "/d")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"udp:localhost"', "expected HOST:PORT"),
        ('"quic:127.0.0.1:1"', "expected unix:PATH, tcp:HOST:PORT or udp:HOST:PORT"),
    ],
)
def test_malformed_media_control_names_the_key(tmp_path: Path, value: str, problem: str) -> None:
    path = tmp_path / "voipcore.toml"
    path.write_text(
        '[sip]\nlisten = ["udp:127.0.0.1:0"]\ndomain = "example.com"\n'
        f'[http]\nlisten = "127.0.0.1:8080"\n[media]\nworkers = 2\ncontrol = {value}\n'
    )
    with pytest.raises(ConfigError, match=f"media.control: .*{problem}"):
        load_config(path)


def test_reply_cache_answers_a_retransmission_until_the_reply_expires() -> None:
    cache = ReplyCache(ttl=30.0)
    key = (PEER, b"c1")
    assert cache.begin(key, now=0.0)
    # Still running: a retransmission is recognised but has nothing to send yet.
    assert not cache.begin(key, now=0.1) and cache.reply(key) is None
    cache.finish(key, b"c1 {}", now=1.0)
    assert not cache.begin(key, now=30.9) and cache.reply(key) == b"c1 {}"
    # The same cookie from another client is another request.
    assert cache.begin((("127.0.0.1", 40001), b"c1"), now=30.9)
    assert cache.begin(key, now=31.0)


def test_event_poll_without_a_position_answers_at_once_with_the_current_one() -> None:
    async def main() -> None:
        log = EventLog()
        log.append({"event": "dtmf"})
        assert await log.poll({"after": None}) == {
            "result": "ok",
            "events": [],
            "seq": 1,
            "missed": 0,
        }

    asyncio.run(main())


def test_event_poll_is_held_until_an_event_arrives() -> None:
    async def main() -> None:
        log = EventLog(wait=10.0)
        poll = asyncio.create_task(log.poll({"after": 0}))
        await asyncio.sleep(0)
        assert not poll.done()
        log.append({"event": "media_timeout", "call_id": "c1"})
        reply = await asyncio.wait_for(poll, 1.0)
        assert reply["events"] == [{"event": "media_timeout", "call_id": "c1", "seq": 1}]
        assert reply["seq"] == 1

    asyncio.run(main())


def test_idle_event_poll_answers_empty_after_the_wait() -> None:
    async def main() -> None:
        reply = await EventLog(wait=0.01).poll({"after": 0})
        assert reply["events"] == [] and reply["seq"] == 0

    asyncio.run(main())


def test_client_behind_the_backlog_is_told_how_many_events_it_missed() -> None:
    async def main() -> None:
        log = EventLog(size=4)
        for n in range(6):
            log.append({"event": "dtmf", "digit": str(n)})
        reply = await log.poll({"after": 1})
        assert reply["missed"] == 1
        assert [e["seq"] for e in reply["events"]] == [3, 4, 5, 6]
        assert reply["seq"] == 6

    asyncio.run(main())
