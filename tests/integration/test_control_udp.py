"""The control protocol over UDP, ng-style: cookies, retransmission, reply cache, event polls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from media.control import (
    MAX_DATAGRAM,
    ControlError,
    ControlServer,
    EventCallback,
    Json,
    MediaControl,
    UdpControlClient,
)
from media.engine import MediaEngine
from media.workers import WorkerPool
from tests.harness import wait_for_async
from tests.integration.test_media import DTMF, PCMU, addr, local
from tests.integration.test_media_workers import relay_call
from tests.rtpphone import RtpPhone

pytestmark = pytest.mark.integration

Peer = tuple[str, int]
OFFER = {"command": "offer", "call_id": "c1", "leg": "a", "codecs": [PCMU]}


class Endpoint(asyncio.DatagramProtocol):
    """A bare UDP socket on loopback: what it receives is queued with the sender."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> Endpoint:
        _, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, local_addr=("127.0.0.1", 0)
        )
        return endpoint

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Peer) -> None:
        self.received.put_nowait((data, addr))

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def recv(self) -> bytes:
        data, _ = await asyncio.wait_for(self.received.get(), 2.0)
        return data

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


class DropProxy:
    """Relays client ⇄ server, losing the first ``drop_requests`` / ``drop_replies``."""

    def __init__(self, server_port: int, drop_requests: int = 0, drop_replies: int = 0) -> None:
        self.server_port = server_port
        self.drop_requests = drop_requests
        self.drop_replies = drop_replies
        self.requests: list[bytes] = []
        self.client: Peer | None = None

    async def start(self) -> int:
        """Start relaying; returns the port clients send to."""
        self.front, self.back = await Endpoint.open(), await Endpoint.open()
        self.front.datagram_received = self._from_client  # type: ignore[method-assign]
        self.back.datagram_received = self._from_server  # type: ignore[method-assign]
        return self.front.port

    def _from_client(self, data: bytes, addr: Peer) -> None:
        self.client = addr
        self.requests.append(data)
        if len(self.requests) > self.drop_requests:
            self.back.send(data, self.server_port)

    def _from_server(self, data: bytes, addr: Peer) -> None:
        if self.drop_replies:
            self.drop_replies -= 1
        elif self.client is not None and self.front.transport is not None:
            self.front.transport.sendto(data, self.client)

    def close(self) -> None:
        self.front.close()
        self.back.close()


class StubEngine:
    """A :class:`MediaControl` that counts requests and can be held or made to answer big."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Json]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.reply: Json = {}
        self.callbacks: list[EventCallback] = []

    async def request(self, command: str, args: Json) -> Json:
        self.calls.append((command, args))
        await self.gate.wait()
        return self.reply

    def subscribe(self, callback: EventCallback) -> None:
        self.callbacks.append(callback)


@asynccontextmanager
async def udp_server(engine: MediaControl) -> AsyncIterator[int]:
    """``engine`` served over UDP on loopback; yields the port."""
    server = ControlServer(engine)
    try:
        yield await server.listen_udp("127.0.0.1", 0)
    finally:
        server.close()


@asynccontextmanager
async def real_engine() -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(rtp_ports=(34000, 34100), host="127.0.0.1")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def datagram(cookie: bytes, message: Json) -> bytes:
    return cookie + b" " + json.dumps(message).encode()


def parse(data: bytes) -> tuple[bytes, Json]:
    cookie, _, body = data.partition(b" ")
    return cookie, json.loads(body)


async def wait_for_event(events: list[Json], name: str) -> Json:
    for _ in range(100):
        found = [e for e in events if e["event"] == name]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} event in {events}")


async def press_7(control: MediaControl, events: list[Json]) -> Json:
    """A call whose caller presses 7; returns the ``dtmf`` event the control side reports."""
    phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
    reply = await control.request(
        "offer", {"call_id": "d1", "leg": "a", "codecs": [PCMU, DTMF], "remote": addr(phone_a)}
    )
    await control.request(
        "answer", {"call_id": "d1", "leg": "b", "codecs": [PCMU, DTMF], "remote": addr(phone_b)}
    )
    await phone_a.send_dtmf(local(reply), "7")
    try:
        return await wait_for_event(events, "dtmf")
    finally:
        phone_a.close()
        phone_b.close()


def test_request_and_reply_over_udp_against_a_real_engine() -> None:
    async def main() -> None:
        async with real_engine() as engine, udp_server(engine) as port:
            client = await UdpControlClient.connect("127.0.0.1", port)
            await relay_call(client, "c1")
            assert (await client.request("stats", {}))["calls"] == 1
            with pytest.raises(ControlError, match="unknown call 'zz'"):
                await client.request("delete", {"call_id": "zz"})
            summary = await client.request("delete", {"call_id": "c1"})
            assert summary["legs"]["a"]["packets_in"] == 25
            await client.close()

    asyncio.run(main())


def test_retransmitted_offer_is_answered_from_the_cache_not_run_twice() -> None:
    async def main() -> None:
        async with real_engine() as engine, udp_server(engine) as port:
            raw = await Endpoint.open()
            offer = datagram(b"k1", OFFER)
            raw.send(offer, port)
            first = await raw.recv()
            raw.send(offer, port)
            assert await raw.recv() == first
            assert parse(first) == (b"k1", {"result": "ok", "local": parse(first)[1]["local"]})
            # One leg, one port pair: the second datagram was not executed.
            assert list(engine.calls["c1"].streams) == ["a"]
            assert len(engine.ports) == 1
            # A new cookie is a new request, even with the same body.
            raw.send(datagram(b"k2", OFFER), port)
            assert parse(await raw.recv())[0] == b"k2"
            raw.close()

    asyncio.run(main())


def test_retransmission_of_a_running_request_is_dropped() -> None:
    async def main() -> None:
        engine = StubEngine()
        engine.gate.clear()
        async with udp_server(engine) as port:
            raw = await Endpoint.open()
            delete = datagram(b"k1", {"command": "delete", "call_id": "c1"})
            raw.send(delete, port)
            raw.send(delete, port)
            # A ping sent after both reaches the engine once the server has read them.
            raw.send(datagram(b"k2", {"command": "ping"}), port)
            await wait_for_async(lambda: len(engine.calls) == 2, lambda: f"{engine.calls}")
            engine.gate.set()
            first, second = await raw.recv(), await raw.recv()
            assert sorted([parse(first)[0], parse(second)[0]]) == [b"k1", b"k2"]
            reply = first if parse(first)[0] == b"k1" else second
            # Once answered, a retransmission gets the cached reply.
            raw.send(delete, port)
            assert await raw.recv() == reply
            # Nothing else was sent: a new request's reply is the next datagram.
            raw.send(datagram(b"k3", {"command": "ping"}), port)
            assert parse(await raw.recv())[0] == b"k3"
            assert engine.calls == [("delete", {"call_id": "c1"}), ("ping", {}), ("ping", {})]
            raw.close()

    asyncio.run(main())


def test_client_retransmits_when_its_first_request_is_lost() -> None:
    async def main() -> None:
        async with real_engine() as engine, udp_server(engine) as port:
            proxy = DropProxy(port, drop_requests=1)
            client = await UdpControlClient.connect("127.0.0.1", await proxy.start(), t1=0.05)
            reply = await client.request(
                "offer", {k: v for k, v in OFFER.items() if k != "command"}
            )
            assert reply["local"]["port"] > 0
            assert len(proxy.requests) == 2 and proxy.requests[0] == proxy.requests[1]
            assert len(engine.ports) == 1
            await client.close()
            proxy.close()

    asyncio.run(main())


def test_lost_reply_is_resent_from_the_cache() -> None:
    async def main() -> None:
        async with real_engine() as engine, udp_server(engine) as port:
            proxy = DropProxy(port, drop_replies=1)
            client = await UdpControlClient.connect("127.0.0.1", await proxy.start(), t1=0.05)
            await client.request("offer", {k: v for k, v in OFFER.items() if k != "command"})
            assert len(proxy.requests) == 2
            # The engine ran the offer once: one leg, one port pair.
            assert list(engine.calls["c1"].streams) == ["a"]
            assert len(engine.ports) == 1
            await client.close()
            proxy.close()

    asyncio.run(main())


def test_no_reply_is_a_control_error_after_the_timeout() -> None:
    async def main() -> None:
        silent = await Endpoint.open()
        client = await UdpControlClient.connect("127.0.0.1", silent.port, t1=0.3, timeout=3.0)
        started = time.monotonic()
        with pytest.raises(ControlError, match=r"no reply to ping from .* in 3 s"):
            await client.request("ping", {})
        assert time.monotonic() - started >= 3.0
        # Sent at 0, 0.3, 0.9 and 2.1 s (the fifth would be at 4.5 s): the same datagram
        # each time.  The last is 0.9 s clear of the timeout, for a slow machine's sake.
        sent = [silent.received.get_nowait()[0] for _ in range(silent.received.qsize())]
        assert len(sent) == 4 and len(set(sent)) == 1
        await client.close()
        silent.close()

    asyncio.run(main())


def test_request_too_big_for_one_datagram_is_refused_unsent() -> None:
    async def main() -> None:
        engine = StubEngine()
        async with udp_server(engine) as port:
            client = await UdpControlClient.connect("127.0.0.1", port)
            with pytest.raises(ControlError, match=f"does not fit one datagram \\({MAX_DATAGRAM}"):
                await client.request("play", {"file": "x" * MAX_DATAGRAM})
            assert engine.calls == []
            await client.close()

    asyncio.run(main())


def test_reply_too_big_for_one_datagram_is_an_error_reply() -> None:
    async def main() -> None:
        engine = StubEngine()
        engine.reply = {"legs": "x" * MAX_DATAGRAM}
        async with udp_server(engine) as port:
            client = await UdpControlClient.connect("127.0.0.1", port)
            with pytest.raises(
                ControlError, match="reply of 655.. bytes does not fit one datagram"
            ):
                await client.request("query", {"call_id": "c1"})
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON: Expecting property name"),
        (b"[1, 2]", "a request must be a JSON object"),
        (b'{"command": "reboot"}', "unknown command 'reboot'"),
    ],
)
def test_malformed_request_gets_an_error_reply(body: bytes, reason: str) -> None:
    async def main() -> None:
        async with udp_server(StubEngine()) as port:
            raw = await Endpoint.open()
            # Without a cookie there is nothing to answer to: dropped.
            raw.send(b'{"command":"ping"}', port)
            raw.send(b"k9 " + body, port)
            cookie, reply = parse(await raw.recv())
            assert cookie == b"k9"
            assert reply["result"] == "error" and reply["error_reason"].startswith(reason)
            raw.close()

    asyncio.run(main())


def test_engine_events_reach_a_udp_client() -> None:
    async def main() -> None:
        async with real_engine() as engine, udp_server(engine) as port:
            client = await UdpControlClient.connect("127.0.0.1", port)
            events: list[Json] = []
            client.subscribe(events.append)
            # Its first poll, sent before the call's offer, fixes its place in the event log.
            event = await press_7(client, events)
            assert (event["call_id"], event["leg"], event["digit"]) == ("d1", "a", "7")
            assert "seq" not in event
            await client.close()

    asyncio.run(main())


def test_events_are_not_lost_when_a_poll_reply_is() -> None:
    async def main() -> None:
        engine = StubEngine()
        async with udp_server(engine) as port:
            proxy = DropProxy(port)
            client = await UdpControlClient.connect("127.0.0.1", await proxy.start(), t1=0.05)
            events: list[Json] = []
            client.subscribe(events.append)
            while b'"after":0' not in b"".join(proxy.requests):
                await asyncio.sleep(0.01)  # the client knows where the log stands
            proxy.drop_replies = 1  # the poll answer carrying the event
            for callback in engine.callbacks:
                callback({"event": "media_timeout", "call_id": "c1", "leg": "a"})
            assert await wait_for_event(events, "media_timeout") == {
                "event": "media_timeout",
                "call_id": "c1",
                "leg": "a",
            }
            assert len(events) == 1
            await client.close()
            proxy.close()

    asyncio.run(main())


def test_worker_pool_drives_its_workers_over_udp() -> None:
    async def main() -> None:
        pool = WorkerPool(2, rtp_ports=(34200, 34600), host="127.0.0.1", control="udp:127.0.0.1:0")
        await pool.start()
        events: list[Json] = []
        pool.subscribe(events.append)
        try:
            await relay_call(pool, "c1")
            event = await press_7(pool, events)
            assert (event["call_id"], event["digit"]) == ("d1", "7")
            per_worker = [w["calls"] for w in (await pool.request("stats", {}))["workers"]]
            assert per_worker == [1, 1]
            summary: dict[str, Any] = await pool.request("delete", {"call_id": "c1"})
            assert summary["legs"]["a"]["packets_in"] == 25
        finally:
            await pool.stop()

    asyncio.run(main())
