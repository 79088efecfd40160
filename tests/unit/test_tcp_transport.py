"""TcpTransport opens connections to peers that have none open (RFC 3261 §18.1.1):
real sockets on loopback, both event loops the server may run on."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from voipcore.config import ListenSpec
from voipcore.sip.transaction import Address
from voipcore.transport.tcp import TcpTransport

DEADLINE = 10.0
OPTIONS = b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n"

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    def runner(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as loop_runner:
            loop_runner.run(asyncio.wait_for(main, DEADLINE))

    return runner


Received = asyncio.Queue[tuple[bytes, Address]]


async def started(received: Received | None = None, idle: float = 30.0) -> TcpTransport:
    queue: Received = asyncio.Queue() if received is None else received
    return await TcpTransport.start(
        ListenSpec("tcp", "127.0.0.1", 0),
        lambda data, addr: queue.put_nowait((data, addr)),
        0,
        idle,
    )


Accepted = asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def listening_phone() -> tuple[asyncio.Server, Address, Accepted]:
    """A phone's TCP listener on loopback, its address, and the connections it accepts."""
    accepted: Accepted = asyncio.Queue()
    phone = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
    return phone, ("TCP", "127.0.0.1", phone.sockets[0].getsockname()[1]), accepted


def test_messages_sent_while_connecting_go_out_in_order_on_one_connection(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        phone, addr, accepted = await listening_phone()
        received: Received = asyncio.Queue()
        transport = await started(received)
        failures: list[int] = []
        for seq in (1, 2):
            transport.dial(OPTIONS % seq, addr, functools.partial(failures.append, seq))
        reader, writer = await accepted.get()
        assert await reader.readexactly(len(OPTIONS % 1) * 2) == OPTIONS % 1 + OPTIONS % 2
        # Kept and reused; what the phone sends on it is read like on an accepted one.
        transport.dial(OPTIONS % 3, addr, lambda: failures.append(3))
        assert await reader.readexactly(len(OPTIONS % 3)) == OPTIONS % 3
        assert accepted.empty() and list(transport.connections) == [addr]
        reply = b"SIP/2.0 200 OK\r\nCSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        writer.write(reply)
        assert await received.get() == (reply, addr) and not failures
        transport.close()
        phone.close()

    run(main())


def test_every_queued_message_fails_when_the_connection_is_refused(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        with socket.socket() as bound:  # bound, never listening: connections are refused
            bound.bind(("127.0.0.1", 0))
            addr: Address = ("TCP", "127.0.0.1", bound.getsockname()[1])
            transport = await started()
            failed: asyncio.Queue[int] = asyncio.Queue()
            for seq in (1, 2):
                transport.dial(OPTIONS % seq, addr, functools.partial(failed.put_nowait, seq))
            assert [await failed.get(), await failed.get()] == [1, 2]
            assert not transport.pending and not transport.connections
            transport.close()

    run(main())


def test_an_opened_connection_closes_when_idle(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        phone, addr, accepted = await listening_phone()
        transport = await started(idle=0.2)
        transport.dial(OPTIONS % 1, addr, lambda: None)
        reader, _ = await accepted.get()
        assert await reader.read() == OPTIONS % 1  # then EOF: the idle timeout closed it
        transport.close()
        phone.close()

    run(main())
