"""SIP over TCP (RFC 3261 §18.3): Content-Length framing, connection reuse, and
connections opened to peers that have none open (§18.1.1, §18.2.2)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from media.qos import set_dscp
from voipcore.config import ListenSpec
from voipcore.sip.errors import SipParseError
from voipcore.sip.message import StreamFramer
from voipcore.sip.transaction import Address
from voipcore.transport import Receiver, SendFailed, Transport

log = logging.getLogger(__name__)

#: Seconds a connection we open may take before its messages fail (§18.4).
CONNECT_TIMEOUT = 5.0


class _Connection(asyncio.Protocol):
    """One TCP connection, accepted or opened by us: frames messages, answers keep-alives."""

    def __init__(self, owner: TcpTransport, dialled: Address | None = None) -> None:
        self._owner = owner
        self._dialled = dialled
        # Kept: asyncio.get_running_loop() costs a getpid() on every call.
        self._loop = asyncio.get_running_loop()
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_active = 0.0
        self.peer: Address = ("TCP", "", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._dialled is not None:
            self.peer = self._dialled  # the address messages for it are sent to
        else:
            host, port = transport.get_extra_info("peername")[:2]
            self.peer = (self._owner.name, str(host), int(port))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_dscp(sock, self._owner.dscp)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._owner.connections[self.peer] = self
        self._touch()
        self._arm_idle()
        # Here, not when the dialling task resumes: nothing sent meanwhile overtakes them.
        for data, _ in self._owner.pending.pop(self.peer, ()):
            self.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._owner.connections.get(self.peer) is self:
            del self._owner.connections[self.peer]
        if self._idle_handle is not None:
            self._idle_handle.cancel()

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            # Framing is lost: nothing after this point can be trusted (§18.3).
            log.warning("closing %s:%s: %s", self.peer[1], self.peer[2], exc.reason)
            self._owner.framing_errors += 1
            self.close()
            return
        if self._framer.pings:
            self._framer.pings = 0
            self.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        for message in messages:
            self._owner.receiver(message, self.peer)

    def write(self, data: bytes) -> bool:
        if self._transport is None or self._transport.is_closing():
            return False
        self._touch()
        self._transport.write(data)
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _touch(self) -> None:
        self._last_active = self._loop.time()

    def _arm_idle(self) -> None:
        self._idle_handle = self._loop.call_at(
            self._last_active + self._owner.idle_timeout, self._check_idle
        )

    def _check_idle(self) -> None:
        if self._loop.time() - self._last_active >= self._owner.idle_timeout:
            log.info("closing idle connection %s:%s", self.peer[1], self.peer[2])
            self.close()
        else:
            self._arm_idle()


class TcpTransport(Transport):
    """A TCP listener; responses go back on the connection the request came on."""

    def __init__(
        self, receiver: Receiver, dscp: int, idle_timeout: float, name: str = "TCP"
    ) -> None:
        self.name = name
        self.receiver = receiver
        self.dscp = dscp
        self.idle_timeout = idle_timeout
        self.connections: dict[Address, _Connection] = {}
        #: Messages waiting for a connection being opened, in the order they were sent.
        self.pending: dict[Address, list[tuple[bytes, SendFailed]]] = {}
        self.framing_errors = 0
        self._server: asyncio.Server | None = None
        self._dialling: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(
        cls, spec: ListenSpec, receiver: Receiver, dscp: int, idle_timeout: float
    ) -> TcpTransport:
        """Listen on ``spec`` (port 0 picks one)."""
        self = cls(receiver, dscp, idle_timeout)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), spec.host, spec.port, reuse_address=True, backlog=1024
        )
        port = self._server.sockets[0].getsockname()[1]
        self.bound = ListenSpec("tcp", spec.host, port)
        return self

    def send(self, data: bytes, addr: Address) -> bool:
        conn = self.connections.get(addr)
        return conn is not None and conn.write(data)

    def dial(self, data: bytes, addr: Address, failed: SendFailed) -> None:
        """Send on the connection to ``addr``, else queue ``data`` and open one (§18.1.1,
        §18.2.2); the queue fails message by message if it cannot be opened in time."""
        if self.send(data, addr):
            return
        queue = self.pending.get(addr)
        if queue is None:
            queue = self.pending[addr] = []
            task = asyncio.get_running_loop().create_task(self._open(addr))
            self._dialling.add(task)
            task.add_done_callback(self._dialling.discard)
        queue.append((data, failed))

    async def _open(self, addr: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda: _Connection(self, addr), addr[1], addr[2])
        except OSError as exc:  # TimeoutError included
            log.info("cannot connect to %s:%s: %s", addr[1], addr[2], str(exc) or "timed out")
            for _, failed in self.pending.pop(addr, ()):
                failed()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._dialling:
            task.cancel()
        self.pending.clear()
        for conn in list(self.connections.values()):
            conn.close()
