"""The registrar over real UDP/TCP sockets: persistence, expiry, bad input."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import ServerProcess, wait_for
from tests.sipclient import SipClient

if TYPE_CHECKING:
    from tests.integration.conftest import StartServer

pytestmark = pytest.mark.integration
DOMAIN = "test.local"
TORTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torture"


def contacts_of(
    server: ServerProcess, user: str = "alice", password: str = "alice-secret"
) -> list[str]:
    """Query-only REGISTER (no Contact): the bindings the server holds now."""
    client = SipClient("127.0.0.1", server.udp_port)
    try:
        response = client.register(user, password, DOMAIN, contacts=())
    finally:
        client.close()
    assert response.status == 200
    return response.headers.get_all("Contact")


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_register_and_unregister(start_server: StartServer, transport: str) -> None:
    server = start_server(extra_sip='digest_algorithms = ["SHA-256", "MD5"]')
    port = server.udp_port if transport == "UDP" else server.tcp_port
    client = SipClient("127.0.0.1", port, transport)
    response = client.register("alice", "alice-secret", DOMAIN, algorithm="SHA-256")
    assert response.status == 200
    assert response.headers.get_all("Contact") == [
        f"<sip:alice@127.0.0.1:{client.port}>;expires=3600"
    ]
    assert len(contacts_of(server)) == 1
    assert client.register("alice", "alice-secret", DOMAIN, expires=0).status == 200
    assert contacts_of(server) == []
    client.close()


def test_wrong_password_is_403(server: ServerProcess) -> None:
    client = SipClient("127.0.0.1", server.udp_port)
    assert client.register("alice", "not-it", DOMAIN).status == 403
    client.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["clean", "crash"])
def test_restart_keeps_registrations(server: ServerProcess, sig: int) -> None:
    client = SipClient("127.0.0.1", server.udp_port)
    assert client.register("bob", "bob-secret", DOMAIN, expires=600).status == 200
    client.close()
    server.restart(sig)
    [contact] = contacts_of(server, "bob", "bob-secret")
    assert contact.startswith(f"<sip:bob@127.0.0.1:{client.port}>;expires=")


def test_registration_expires(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra_sip="min_expires = 1\ndefault_expires = 1").start()
    try:
        client = SipClient("127.0.0.1", server.udp_port)
        assert client.register("alice", "alice-secret", DOMAIN, expires=1).status == 200
        client.close()
        wait_for(lambda: contacts_of(server) == [], "the 1 s binding did not expire")
        server.restart()
        assert contacts_of(server) == []
    finally:
        server.stop()


def test_garbage_and_torture_messages_do_not_stop_service(server: ServerProcess) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk = [b"", b"\x00" * 1500, b"\xff\xfe" * 700, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"]
    junk += [path.read_bytes() for path in sorted(TORTURE.glob("*.sip"))]
    for data in junk:
        udp.sendto(data, ("127.0.0.1", server.udp_port))
        tcp = socket.create_connection(("127.0.0.1", server.tcp_port))
        tcp.sendall(data)
        tcp.close()
    udp.close()
    client = SipClient("127.0.0.1", server.udp_port)
    client.send_raw(client.request("OPTIONS", "alice", DOMAIN))
    assert client.recv().status == 200
    assert server.alive()


def test_unparsable_request_gets_400_with_reason(server: ServerProcess) -> None:
    client = SipClient("127.0.0.1", server.udp_port)
    data = client.request("OPTIONS", "alice", DOMAIN).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 BYE")
    client.send_raw(data)
    response = client.recv()
    assert response.status == 400
    assert "does not match request method" in response.reason


def test_tcp_stream_framing(server: ServerProcess) -> None:
    client = SipClient("127.0.0.1", server.tcp_port, "TCP")
    first = client.request("OPTIONS", "alice", DOMAIN)
    second = client.request("OPTIONS", "alice", DOMAIN)
    # One message split across writes, then two in one write, with keep-alives.
    client.send_raw(first[:17])
    time.sleep(0.05)
    client.send_raw(first[17:] + b"\r\n\r\n" + second)
    assert [client.recv().cseq.seq, client.recv().cseq.seq] == [1, 2]
    client.close()


def test_tcp_message_over_64k_closes_only_that_connection(server: ServerProcess) -> None:
    big = socket.create_connection(("127.0.0.1", server.tcp_port))
    big.settimeout(3)
    # Closing with unread data makes the kernel send RST, so either end is fine.
    try:
        big.sendall(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000)
        assert big.recv(100) == b""
    except ConnectionResetError:
        pass
    big.close()
    client = SipClient("127.0.0.1", server.tcp_port, "TCP")
    client.send_raw(client.request("OPTIONS", "alice", DOMAIN))
    assert client.recv().status == 200


def test_idle_tcp_connection_is_closed(start_server: StartServer) -> None:
    server = start_server(extra_sip="tcp_idle_timeout = 0.5")
    conn = socket.create_connection(("127.0.0.1", server.tcp_port))
    conn.settimeout(5)
    started = time.monotonic()
    assert conn.recv(100) == b""
    assert time.monotonic() - started >= 0.4
    conn.close()
