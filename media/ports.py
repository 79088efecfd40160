"""RTP/RTCP port pairs from the configured range (RFC 3550 §11: RTP even, RTCP odd)."""

from __future__ import annotations

import socket
from collections import deque

from media.qos import set_dscp


class PortsExhausted(RuntimeError):
    """Every even port of the range is in use (or refused by the OS)."""


class PortAllocator:
    """Hands out bound (RTP, RTCP) UDP socket pairs on consecutive even/odd ports.

    Ports are reused least-recently-released first, so a port freed by a call
    that just ended is not immediately given to the next call (late packets of
    the old call would land in the new one).
    """

    def __init__(self, low: int, high: int, host: str = "0.0.0.0") -> None:
        if low % 2:
            low += 1
        if not 0 < low < high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        self.host = host
        self._free: deque[int] = deque(range(low, high, 2))
        self._used: set[int] = set()

    def __len__(self) -> int:
        """Pairs in use."""
        return len(self._used)

    @property
    def available(self) -> int:
        """Pairs that may still be allocated."""
        return len(self._free)

    def allocate(self, dscp: int) -> tuple[socket.socket, socket.socket]:
        """Bind the next free pair, non-blocking, marked with ``dscp``."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(len(self._free)):
            port = self._free.popleft()
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((self.host, port))
                rtcp.bind((self.host, port + 1))
            except OSError:
                # Taken by another program: skip it, try again at the back of the queue.
                rtp.close()
                rtcp.close()
                self._free.append(port)
                continue
            for sock in (rtp, rtcp):
                sock.setblocking(False)
                set_dscp(sock, dscp)
            self._used.add(port)
            return rtp, rtcp
        raise PortsExhausted(f"no free RTP port pair on {self.host}")

    def release(self, port: int) -> None:
        """Return the pair whose RTP port is ``port``."""
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)
