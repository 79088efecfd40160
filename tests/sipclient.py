"""A minimal blocking SIP client over real sockets, for precise wire-level checks.

The interoperability tests use independent peers (SIPp, pyVoIP); this client
exists to send exactly the bytes a test needs and read exactly what comes back.
"""

from __future__ import annotations

import itertools
import socket
import uuid

from voipcore.sip.digest import Challenge, answer_challenge
from voipcore.sip.message import Response, StreamFramer, parse_message

_counter = itertools.count(1)


class SipClient:
    """One UDP or TCP socket to the server."""

    def __init__(self, host: str, port: int, transport: str = "UDP", timeout: float = 3.0) -> None:
        self.transport = transport.upper()
        self.server = (host, port)
        kind = socket.SOCK_DGRAM if self.transport == "UDP" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(timeout)
        if self.transport == "UDP":
            self.sock.bind(("127.0.0.1", 0))
        else:
            self.sock.connect(self.server)
        self.port = self.sock.getsockname()[1]
        self._framer = StreamFramer()
        self._pending: list[bytes] = []
        self.call_id = uuid.uuid4().hex
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        if self.transport == "UDP":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv(self) -> Response:
        """The next response (skips keep-alive pongs on TCP)."""
        if self.transport == "UDP":
            data = self.sock.recv(65536)
        else:
            while not self._pending:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self._pending += self._framer.feed(chunk)
            data = self._pending.pop(0)
        message = parse_message(data)
        assert isinstance(message, Response), message
        return message

    def request(
        self,
        method: str,
        user: str,
        domain: str,
        *,
        headers: tuple[str, ...] = (),
        authorization: str | None = None,
    ) -> bytes:
        self.cseq += 1
        lines = [
            f"{method} sip:{domain} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} 127.0.0.1:{self.port};branch=z9hG4bK{next(_counter)}"
            f"x{uuid.uuid4().hex[:8]};rport",
            f"From: <sip:{user}@{domain}>;tag={self.call_id[:8]}",
            f"To: <sip:{user}@{domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            "Max-Forwards: 70",
            *headers,
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def register(
        self,
        user: str,
        password: str,
        domain: str,
        *,
        contacts: tuple[str, ...] | None = None,
        expires: int | None = None,
        algorithm: str = "MD5",
    ) -> Response:
        """REGISTER, answering the digest challenge; returns the final response."""
        if contacts is None:
            contacts = (f"<sip:{user}@127.0.0.1:{self.port}>",)
        headers = tuple(f"Contact: {c}" for c in contacts)
        if expires is not None:
            headers += (f"Expires: {expires}",)
        self.send_raw(self.request("REGISTER", user, domain, headers=headers))
        response = self.recv()
        if response.status != 401:
            return response
        challenge = next(
            c
            for c in map(Challenge.parse, response.headers.get_all("WWW-Authenticate"))
            if c.algorithm == algorithm
        )
        creds = answer_challenge(
            challenge,
            method="REGISTER",
            uri=f"sip:{domain}",
            username=user,
            password=password,
            cnonce=uuid.uuid4().hex[:12],
        )
        self.send_raw(
            self.request("REGISTER", user, domain, headers=headers, authorization=str(creds))
        )
        return self.recv()
