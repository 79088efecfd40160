"""QoS marking of sockets with DSCP code points (RFC 2474, RFC 4594)."""

from __future__ import annotations

import socket

#: Expedited Forwarding: the class for voice media (RFC 3246, RFC 4594 §4.2).
DSCP_EF = 46
#: Class Selector 3: the class for call signalling (RFC 4594 §3.2).
DSCP_CS3 = 24


def set_dscp(sock: socket.socket, dscp: int) -> None:
    """Mark every packet ``sock`` sends with ``dscp`` (IPv4 ToS / IPv6 traffic class).

    The DSCP field is the top six bits of the old ToS octet, hence ``<< 2``;
    the low two bits belong to ECN and stay zero.
    """
    if not 0 <= dscp <= 63:
        raise ValueError(f"DSCP must be 0-63, got {dscp}")
    tos = dscp << 2
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
