"""UDP ports the server binds are its own: a second socket cannot bind them, whatever
sharing option it sets (SO_REUSEADDR and SO_REUSEPORT need the first socket's consent)."""

from __future__ import annotations

import socket

import pytest

from media.ports import PortAllocator
from tests.harness import ServerProcess
from tests.sipclient import SipClient

pytestmark = pytest.mark.integration

SHARING = pytest.mark.parametrize(
    "option",
    [None, socket.SO_REUSEADDR, socket.SO_REUSEPORT],
    ids=["plain", "reuseaddr", "reuseport"],
)


def bind_again(port: int, option: int | None) -> None:
    """Try to bind 127.0.0.1:``port`` with ``option`` set, as an intruder would."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if option is not None:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        sock.bind(("127.0.0.1", port))


@SHARING
def test_second_bind_of_the_sip_port_fails(server: ServerProcess, option: int | None) -> None:
    with pytest.raises(OSError, match="Address already in use"):
        bind_again(server.udp_port, option)
    client = SipClient("127.0.0.1", server.udp_port)
    client.send_raw(client.request("OPTIONS", "alice", server.domain))
    assert client.recv().status == 200
    client.close()


@SHARING
def test_second_bind_of_an_rtp_pair_fails(option: int | None) -> None:
    rtp, rtcp = PortAllocator(35000, 35100, host="127.0.0.1").allocate(dscp=0)
    for sock in (rtp, rtcp):
        with pytest.raises(OSError, match="Address already in use"):
            bind_again(sock.getsockname()[1], option)
        sock.close()
