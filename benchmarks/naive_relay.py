"""Baseline for the media benchmark: a naive per-packet relay on uvloop, the engine's loop.

``python -m benchmarks.naive_relay --calls N --base PORT`` binds N pairs of UDP
ports (PORT+4i and PORT+4i+2) and forwards whatever arrives on one to the last
source seen on the other: what a first attempt at an RTP relay looks like,
with no statistics, no latching rules and no header handling.  It runs on the
same event loop as the engine, so the comparison measures the engine's work,
not the choice of loop.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import uvloop


class _Side(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: _Side | None = None
        self.source: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.source = addr
        peer = self.peer
        if peer is not None and peer.source is not None and peer.transport is not None:
            peer.transport.sendto(data, peer.source)


async def main(calls: int, base: int) -> None:
    loop = asyncio.get_running_loop()
    for index in range(calls):
        port = base + 4 * index
        _, a = await loop.create_datagram_endpoint(_Side, local_addr=("127.0.0.1", port))
        _, b = await loop.create_datagram_endpoint(_Side, local_addr=("127.0.0.1", port + 2))
        a.peer, b.peer = b, a
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--base", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.calls, args.base))
