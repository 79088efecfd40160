"""pyVoIP, an independent SIP stack, registering to the server over UDP."""

from __future__ import annotations

import socket
import time

import pytest
from pyVoIP.VoIP import PhoneStatus, VoIPPhone

from tests.harness import ServerProcess
from tests.integration.test_registrar_wire import contacts_of

pytestmark = pytest.mark.integration


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def make_phone(server: ServerProcess, password: str = "alice-secret") -> tuple[VoIPPhone, int]:
    port = free_udp_port()
    phone = VoIPPhone(
        "127.0.0.1",
        server.udp_port,
        "alice",
        password,
        myIP="127.0.0.1",
        sipPort=port,
        rtpPortLow=40000,
        rtpPortHigh=40100,
    )
    return phone, port


def test_pyvoip_phone_registers_and_unregisters(server: ServerProcess) -> None:
    phone, port = make_phone(server)
    phone.start()
    try:
        assert wait_for(lambda: phone.get_status() == PhoneStatus.REGISTERED)
        [contact] = contacts_of(server)
        assert contact.startswith(f"<sip:alice@127.0.0.1:{port};transport=UDP>;expires=")
    finally:
        phone.stop()
    assert wait_for(lambda: contacts_of(server) == [])
