"""RTP port pairs: even RTP, odd RTCP, reuse order, ports taken by others."""

from __future__ import annotations

import socket

import pytest

from media.ports import PortAllocator, PortsExhausted


def test_pairs_are_even_and_odd_and_marked() -> None:
    ports = PortAllocator(34001, 34010, host="127.0.0.1")
    rtp, rtcp = ports.allocate(dscp=46)
    assert rtp.getsockname()[1] == 34002 and rtcp.getsockname()[1] == 34003
    assert rtp.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 46 << 2
    assert len(ports) == 1
    rtp.close()
    rtcp.close()


def test_released_port_goes_to_the_back_of_the_queue() -> None:
    ports = PortAllocator(34100, 34106, host="127.0.0.1")
    first = ports.allocate(0)
    port = first[0].getsockname()[1]
    for sock in first:
        sock.close()
    ports.release(port)
    following = [ports.allocate(0) for _ in range(3)]
    assert [pair[0].getsockname()[1] for pair in following] == [34102, 34104, 34100]
    with pytest.raises(PortsExhausted):
        ports.allocate(0)
    for pair in following:
        for sock in pair:
            sock.close()


def test_port_used_by_another_program_is_skipped() -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", 34201))
    ports = PortAllocator(34200, 34204, host="127.0.0.1")
    rtp, rtcp = ports.allocate(0)
    assert rtp.getsockname()[1] == 34202
    for sock in (rtp, rtcp, squatter):
        sock.close()


def test_bad_range_is_refused() -> None:
    with pytest.raises(ValueError, match="bad RTP port range"):
        PortAllocator(30000, 20000)
