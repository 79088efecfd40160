"""SIP over UDP (RFC 3261 §18.1.1, §18.2.1)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

from media.qos import set_dscp
from voipcore.config import ListenSpec
from voipcore.sip.transaction import Address
from voipcore.transport import Receiver, Transport

log = logging.getLogger(__name__)


class UdpTransport(Transport, asyncio.DatagramProtocol):
    """One UDP socket; every datagram is one message (§18.3)."""

    name = "UDP"

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def start(cls, spec: ListenSpec, receiver: Receiver, dscp: int) -> UdpTransport:
        """Bind ``spec`` (port 0 picks one) and mark outgoing packets with ``dscp``.

        The bind is exclusive: no SO_REUSEADDR or SO_REUSEPORT, with which on Linux any
        local process setting them too could bind the port and take our SIP traffic.
        """
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # Bursts of REGISTERs must not overflow the kernel queue.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        set_dscp(sock, dscp)
        sock.bind((spec.host, spec.port))
        sock.setblocking(False)
        _, proto = await loop.create_datagram_endpoint(lambda: cls(receiver), sock=sock)
        # uvloop's libuv sets SO_REUSEADDR on a socket it adopts (uv_udp_open); Linux
        # looks at both sockets' flags when the second binds, so clearing it still counts.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        proto.bound = ListenSpec("udp", spec.host, sock.getsockname()[1])
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # (host, port), or (host, port, flowinfo, scope_id) on IPv6.
        self._receiver(data, ("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction layer times out.
        log.debug("udp error: %s", exc)

    def send(self, data: bytes, addr: Address) -> bool:
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.sendto(data, (addr[1], addr[2]))
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
