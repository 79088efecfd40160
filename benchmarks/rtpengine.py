"""An rtpengine daemon of the benchmark's own on loopback, driven over its ng protocol.

The ng protocol (rtpengine's README, "The NG Control Protocol"): each UDP
datagram is a cookie, a space and a bencoded dictionary; the reply repeats the
cookie and carries ``"result": "ok"`` or ``"error-reason"``.  ``offer`` takes the
caller's SDP and returns the one for the callee, ``answer`` the reverse
(RFC 3264 offer/answer), ``delete`` ends the call.  The daemon runs in
userspace only (``--table=-1``: no kernel forwarding, no iptables rules), with
no configuration file, so the Debian package's service and settings play no part.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from benchmarks.bencode import Encodable, Value, decode, encode
from tests.harness import free_udp_port

BINARY = "rtpengine"
_AUDIO_PORT = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)


class NgError(RuntimeError):
    """rtpengine refused a command or did not answer."""


def installed() -> bool:
    return shutil.which(BINARY) is not None


def _sdp(port: int) -> str:
    """A G.711 offer or answer from ``127.0.0.1:port`` (RFC 4566)."""
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


class RtpEngine:
    """One userspace rtpengine on 127.0.0.1 relaying on ports ``[low, high]``."""

    def __init__(self, low: int, high: int, threads: int = 1) -> None:
        self.ng_port = free_udp_port()
        self.log = Path(tempfile.mkstemp(prefix="rtpengine-bench-", suffix=".log")[1])
        command = [
            BINARY,
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--table=-1",
            "--interface=127.0.0.1",
            f"--listen-ng=127.0.0.1:{self.ng_port}",
            f"--port-min={low}",
            f"--port-max={high}",
            f"--num-threads={threads}",
            "--log-level=4",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", self.ng_port))
        self._cookie = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Ping until the daemon answers (it binds the ng port once started)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise NgError(f"rtpengine exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                self.request("ping", wait=0.2)
                return
            except NgError:
                if time.monotonic() > deadline:
                    raise

    def request(
        self, command: str, args: Mapping[str, Encodable] | None = None, wait: float = 5.0
    ) -> dict[bytes, Value]:
        """Send one ng ``command`` with ``args`` and return the reply dictionary."""
        self._cookie += 1
        cookie = f"{os.getpid()}_{self._cookie}".encode()
        self.sock.settimeout(wait)
        try:
            self.sock.send(cookie + b" " + encode({**(args or {}), "command": command}))
            while True:
                data = self.sock.recv(65536)
                head, _, body = data.partition(b" ")
                if head == cookie:
                    break
        except OSError as exc:  # timeout, or ICMP refused before the daemon listens
            raise NgError(f"no answer to {command}: {exc}") from exc
        reply = decode(body)
        if not isinstance(reply, dict) or reply.get(b"result") not in (b"ok", b"pong"):
            raise NgError(f"{command}: {reply!r}")
        return reply

    def relay(
        self, call_id: str, side_a: tuple[str, int], side_b: tuple[str, int]
    ) -> tuple[tuple[str, int], tuple[str, int]]:
        """Anchor a call between two G.711 endpoints; where A and B each send to reach the other."""
        common: dict[str, Encodable] = {"call-id": call_id, "from-tag": "a", "ICE": "remove"}
        offer = self.request("offer", {**common, "sdp": _sdp(side_a[1])})
        answer = self.request("answer", {**common, "to-tag": "b", "sdp": _sdp(side_b[1])})
        return ("127.0.0.1", _port(answer)), ("127.0.0.1", _port(offer))

    def stop(self) -> None:
        self.sock.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.unlink(missing_ok=True)


def _port(reply: dict[bytes, Value]) -> int:
    """The audio port of the SDP rtpengine returned."""
    sdp = reply.get(b"sdp")
    found = _AUDIO_PORT.search(sdp) if isinstance(sdp, bytes) else None
    if found is None:
        raise NgError(f"no audio port in {sdp!r}")
    return int(found.group(1))
