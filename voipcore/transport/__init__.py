"""asyncio adapters that move SIP bytes; no SIP logic lives here (RFC 3261 §18).

Every transport hands received messages to one callback as
``(data, (transport, host, port))`` and sends by the same address tuple, so
the SIP core never sees a socket.  A new transport (TLS, WebSocket) is one
more class with :meth:`Transport.send` and :meth:`Transport.close`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

from voipcore.config import ListenSpec
from voipcore.sip.transaction import Address

log = logging.getLogger(__name__)

#: Called with one framed message and the peer it came from.
Receiver = Callable[[bytes, Address], None]


def peer_address(transport: str, sockname: tuple[object, ...]) -> Address:
    """Normalise a socket address into an :data:`Address`."""
    return (transport, str(sockname[0]), int(str(sockname[1])))


class Transport(abc.ABC):
    """One listening transport bound to a local address."""

    name: str
    bound: ListenSpec

    @abc.abstractmethod
    def send(self, data: bytes, addr: Address) -> bool:
        """Queue ``data`` for ``addr``; False when it cannot be sent (§18.4 error)."""

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
        """Send through the first transport of the right kind and address family."""
        candidates = self._by_name.get(addr[0], [])
        v6 = ":" in addr[1]
        for transport in candidates:
            if (":" in transport.bound.host) == v6 and transport.send(data, addr):
                return True
        log.debug("no %s transport could send to %s:%s", addr[0], addr[1], addr[2])
        return False

    def close(self) -> None:
        """Close everything."""
        for transports in self._by_name.values():
            for transport in transports:
                transport.close()
        self._by_name.clear()
