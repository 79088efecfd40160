"""asyncio adapters that move SIP bytes; no SIP logic lives here (RFC 3261 §18).

Every transport hands received messages to one callback as
``(data, (transport, host, port))`` and sends by the same address tuple, so
the SIP core never sees a socket.  A new transport (TLS, WebSocket) is one
more class with :meth:`Transport.send` and :meth:`Transport.close`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator

from voipcore.config import ListenSpec
from voipcore.sip.transaction import Address

log = logging.getLogger(__name__)

#: Called with one framed message and the peer it came from.
Receiver = Callable[[bytes, Address], None]
#: Called when a message handed to :meth:`Transport.dial` cannot be sent (§18.4 error).
SendFailed = Callable[[], None]


def peer_address(transport: str, sockname: tuple[object, ...]) -> Address:
    """Normalise a socket address into an :data:`Address`."""
    return (transport, str(sockname[0]), int(str(sockname[1])))


class Transport(abc.ABC):
    """One listening transport bound to a local address."""

    name: str
    bound: ListenSpec

    @abc.abstractmethod
    def send(self, data: bytes, addr: Address) -> bool:
        """Queue ``data`` for ``addr`` on what is open now; False when nothing is."""

    def dial(self, data: bytes, addr: Address, failed: SendFailed) -> None:
        """Send ``data`` to ``addr``, opening a connection if none is open (§18.1.1);
        ``failed()`` if it cannot be sent.  Connectionless: there is nothing to open."""
        failed()

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening and drop connections."""


class TransportSet:
    """The listening transports, chosen for sending by the address's transport."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Transport]] = {}

    def add(self, transport: Transport) -> None:
        """Register a started transport."""
        self._by_name.setdefault(transport.name, []).append(transport)

    def bound(self, name: str) -> ListenSpec:
        """Where the first transport called ``name`` ("UDP", "TCP") listens."""
        transports = self._by_name.get(name) or next(iter(self._by_name.values()))
        return transports[0].bound

    def send(self, data: bytes, addr: Address) -> bool:
        """Send through a transport with something open to ``addr`` (a socket, a connection)."""
        return any(transport.send(data, addr) for transport in self._candidates(addr))

    def dial(self, data: bytes, addr: Address, failed: SendFailed) -> None:
        """Send through the first transport of the right kind, which opens a connection
        to ``addr`` if it must (§18.1.1); ``failed()`` if none can."""
        transport = next(self._candidates(addr), None)
        if transport is None:
            log.debug("no %s transport for %s:%s", addr[0], addr[1], addr[2])
            failed()
        else:
            transport.dial(data, addr, failed)

    def _candidates(self, addr: Address) -> Iterator[Transport]:
        """The transports of ``addr``'s kind and address family."""
        v6 = ":" in addr[1]
        for transport in self._by_name.get(addr[0], ()):
            if (":" in transport.bound.host) == v6:
                yield transport

    def close(self) -> None:
        """Close everything."""
        for transports in self._by_name.values():
            for transport in transports:
                transport.close()
        self._by_name.clear()
