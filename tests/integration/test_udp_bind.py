"""UDP ports the server binds are its own: a second socket cannot bind them, whatever
sharing option it sets (SO_REUSEADDR and SO_REUSEPORT need the first socket's consent)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("taken", ["udp", "http"])
def test_a_listen_address_in_use_is_named_and_the_server_exits_1(
    tmp_path: Path, server: ServerProcess, taken: str
) -> None:
    """A second server on the first one's SIP or HTTP port: one line naming the key, exit
    1, no traceback (and the first server keeps its port)."""
    config = tmp_path / "second.toml"
    text = server.config_path.read_text()
    if taken == "udp":
        text = text.replace("udp:127.0.0.1:0", f"udp:127.0.0.1:{server.udp_port}")
    else:
        text = text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{server.http_port}"')
    config.write_text(text.replace("voipcore.db", "second.db"))
    done = subprocess.run(
        [sys.executable, "-m", "voipcore.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    key = "sip.listen" if taken == "udp" else "http.listen"
    assert done.returncode == 1, done.stderr
    line = rf"^voipcore: {key}: cannot listen on \S+: Address already in use$"
    assert re.search(line, done.stderr, re.MULTILINE), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
