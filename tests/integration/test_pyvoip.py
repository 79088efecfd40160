"""pyVoIP, an independent SIP stack, registering to the server over UDP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from pyVoIP.VoIP import PhoneStatus, VoIPCall, VoIPPhone

from media.tones import sine
from tests.audio import assert_tone, until_heard
from tests.harness import ServerProcess, free_udp_port, wait_for
from tests.integration.test_calls import (
    blocking,
    call,
    media_target,
    next_final,
    registered,
)
from tests.integration.test_registrar_wire import contacts_of
from tests.rtpphone import RtpPhone

pytestmark = pytest.mark.integration
#: Seconds of each 1.5 s tone that must be heard: pyVoIP sends and reads on its own
#: threads from when it answers, so its span and Alice's overlap a little less than 1.5 s.
PYVOIP_HEARD = 1.3


def make_phone(
    server: ServerProcess,
    user: str = "alice",
    password: str = "alice-secret",
    on_call: Callable[[VoIPCall], None] | None = None,
) -> tuple[VoIPPhone, int]:
    port = free_udp_port()
    phone = VoIPPhone(
        "127.0.0.1",
        server.udp_port,
        user,
        password,
        callCallback=on_call,
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
        wait_for(lambda: phone.get_status() == PhoneStatus.REGISTERED, "pyVoIP not registered")
        [contact] = contacts_of(server)
        assert contact.startswith(f"<sip:alice@127.0.0.1:{port};transport=UDP>;expires=")
    finally:
        phone.stop()
    wait_for(lambda: contacts_of(server) == [], lambda: f"still bound: {contacts_of(server)}")


def test_pyvoip_answers_a_call_and_audio_flows_both_ways(server: ServerProcess) -> None:
    """pyVoIP as the callee: it answers our INVITE and talks through the anchored media."""
    heard: list[bytes] = []

    def answer(call: VoIPCall) -> None:
        call.answer()
        tone = ((sine(600, 1.5, 0.4).astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()
        for offset in range(0, len(tone), 160):
            call.write_audio(tone[offset : offset + 160])
            heard.append(call.read_audio(160, blocking=True))

    phone, _ = make_phone(server, "bob", "bob-secret", answer)
    phone.start()
    try:
        wait_for(lambda: phone.get_status() == PhoneStatus.REGISTERED, "pyVoIP not registered")

        async def main() -> None:
            alice = await registered(server, "alice")
            phone_a = RtpPhone.open()
            invite = await call(alice, "202", phone_a)
            ok = await next_final(alice)
            assert ok.status == 200
            await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
            await phone_a.send_tone(media_target(ok), 1000, 1.5)
            await until_heard(lambda: phone_a.audio(0), 600, PYVOIP_HEARD)
            await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))

        asyncio.run(main())
        # pyVoIP hands out unsigned 8-bit linear audio.
        received = (np.frombuffer(b"".join(heard), np.uint8).astype(np.int16) - 128) << 8
        assert_tone(received, 1000, PYVOIP_HEARD)
    finally:
        phone.stop()
