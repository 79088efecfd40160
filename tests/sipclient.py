"""A minimal blocking SIP client over real sockets, for precise wire-level checks.

The interoperability tests use independent peers (SIPp, pyVoIP); this client
exists to send exactly the bytes a test needs and read exactly what comes back.
"""

from __future__ import annotations

import itertools
import socket
import uuid

from voipcore.sip.digest import Challenge, answer_challenge
from voipcore.sip.message import Request, Response, StreamFramer, make_response, parse_message

_counter = itertools.count(1)


class SipClient:
    """One UDP or TCP socket to the server."""

    def __init__(
        self,
        host: str,
        port: int,
        transport: str = "UDP",
        timeout: float = 3.0,
        accepted: socket.socket | None = None,
    ) -> None:
        """``accepted``: a connection the server opened to the phone (TCP), used instead."""
        self.transport = transport.upper()
        self.server = (host, port)
        kind = socket.SOCK_DGRAM if self.transport == "UDP" else socket.SOCK_STREAM
        self.sock = accepted or socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(timeout)
        if accepted is None and self.transport == "UDP":
            self.sock.bind(("127.0.0.1", 0))
        elif accepted is None:
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
        message = self.recv_message()
        assert isinstance(message, Response), message
        return message

    def recv_message(self) -> Request | Response:
        """The next request or response (skips keep-alive pongs on TCP)."""
        if self.transport == "UDP":
            data = self.sock.recv(65536)
        else:
            while not self._pending:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self._pending += self._framer.feed(chunk)
            data = self._pending.pop(0)
        return parse_message(data)

    def request(
        self,
        method: str,
        user: str,
        domain: str,
        *,
        headers: tuple[str, ...] = (),
        authorization: str | None = None,
        uri: str | None = None,
        to: str | None = None,
        body: bytes = b"",
    ) -> bytes:
        self.cseq += 1
        lines = [
            f"{method} {uri or f'sip:{domain}'} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} 127.0.0.1:{self.port};branch=z9hG4bK{next(_counter)}"
            f"x{uuid.uuid4().hex[:8]};rport",
            f"From: <sip:{user}@{domain}>;tag={self.call_id[:8]}",
            f"To: {to or f'<sip:{user}@{domain}>'}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            "Max-Forwards: 70",
            *headers,
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

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
        creds = _credentials(response, algorithm, "REGISTER", f"sip:{domain}", user, password)
        self.send_raw(self.request("REGISTER", user, domain, headers=headers, authorization=creds))
        return self.recv()

    # -- a minimal user agent for call tests ------------------------------------

    def invite(
        self,
        user: str,
        password: str,
        domain: str,
        target: str,
        sdp: bytes,
        extra: tuple[str, ...] = (),
    ) -> Request:
        """INVITE ``target`` (with ``extra`` header lines); answer the 407 (ACK it,
        resend with credentials).

        Returns the INVITE that went through; read its responses with :meth:`recv`.
        """
        headers: tuple[str, ...] = (f"Contact: <sip:{user}@127.0.0.1:{self.port}>", *extra)
        if sdp:
            headers += ("Content-Type: application/sdp",)
        first = self._invite_bytes(user, domain, target, headers, sdp)
        self.send_raw(first)
        challenge_response = self.recv()
        while challenge_response.status == 100:
            challenge_response = self.recv()
        assert challenge_response.status == 407, challenge_response
        self.send_raw(self.ack_bytes(parse_message(first), challenge_response))
        creds = _credentials(
            challenge_response, "MD5", "INVITE", f"sip:{target}@{domain}", user, password
        )
        second = self._invite_bytes(
            user, domain, target, (*headers, f"Proxy-Authorization: {creds}"), sdp
        )
        self.send_raw(second)
        request = parse_message(second)
        assert isinstance(request, Request)
        return request

    def _invite_bytes(
        self, user: str, domain: str, target: str, headers: tuple[str, ...], sdp: bytes
    ) -> bytes:
        data = self.request("INVITE", user, domain, headers=headers)
        head, _, _ = data.partition(b"\r\n\r\n")
        head = head.replace(
            f"INVITE sip:{domain} ".encode(), f"INVITE sip:{target}@{domain} ".encode()
        )
        head = head.replace(
            f"To: <sip:{user}@{domain}>".encode(), f"To: <sip:{target}@{domain}>".encode()
        )
        head = head.replace(b"Content-Length: 0", f"Content-Length: {len(sdp)}".encode())
        return head + b"\r\n\r\n" + sdp

    @staticmethod
    def ack_bytes(invite: Request | Response, response: Response) -> bytes:
        """ACK for a non-2xx final response: same branch and CSeq number (§17.1.1.3)."""
        assert isinstance(invite, Request)
        lines = [
            f"ACK {invite.uri_text} SIP/2.0",
            f"Via: {invite.headers.get('Via')}",
            f"From: {invite.headers.get('From')}",
            f"To: {response.headers.get('To')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {invite.cseq.seq} ACK",
            "Max-Forwards: 70",
        ]
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def in_dialog(
        self,
        method: str,
        invite: Request,
        ok: Response,
        cseq: int,
        sdp: bytes = b"",
        extra: tuple[str, ...] = (),
    ) -> bytes:
        """ACK (for a 2xx), BYE, re-INVITE or UPDATE within the dialog ``ok`` set up,
        as the caller, with ``extra`` header lines."""
        contact = ok.contacts[0]
        assert not isinstance(contact, str)
        lines = [
            f"{method} {contact.uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex}",
            f"From: {invite.headers.get('From')}",
            f"To: {ok.headers.get('To')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            *extra,
        ]
        if sdp:
            lines += [
                f"Contact: <sip:caller@127.0.0.1:{self.port}>",
                "Content-Type: application/sdp",
            ]
        head = "\r\n".join(lines) + f"\r\nContent-Length: {len(sdp)}\r\n\r\n"
        return head.encode() + sdp

    def answer(
        self, request: Request, status: int, body: bytes = b"", extra: tuple[str, ...] = ()
    ) -> None:
        """Respond to a request the server sent us, as a phone would (``extra``: header lines)."""
        response = make_response(request, status, to_tag=self.call_id[:10])
        response.headers.add("Contact", f"<sip:phone@127.0.0.1:{self.port}>")
        for line in extra:
            name, _, value = line.partition(":")
            response.headers.add(name.strip(), value.strip())
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        self.send_raw(bytes(response))

    @staticmethod
    def cancel_bytes(invite: Request) -> bytes:
        """CANCEL for our pending INVITE (§9.1): same Via branch, Call-ID, From, To, CSeq."""
        lines = [
            f"CANCEL {invite.uri_text} SIP/2.0",
            f"Via: {invite.headers.get('Via')}",
            f"From: {invite.headers.get('From')}",
            f"To: {invite.headers.get('To')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {invite.cseq.seq} CANCEL",
            "Max-Forwards: 70",
        ]
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def callee_bye(self, incoming: Request) -> bytes:
        """BYE from the callee side of the dialog ``incoming`` created (§15.1.1)."""
        contact = incoming.contacts[0]
        assert not isinstance(contact, str)
        lines = [
            f"BYE {contact.uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex}",
            f"From: {incoming.headers.get('To')};tag={self.call_id[:10]}",
            f"To: {incoming.headers.get('From')}",
            f"Call-ID: {incoming.call_id}",
            "CSeq: 1 BYE",
            "Max-Forwards: 70",
        ]
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def _credentials(
    challenge: Response, algorithm: str, method: str, uri: str, user: str, password: str
) -> str:
    """Credentials answering the ``algorithm`` challenge of a 401 or 407 (RFC 3261 §22)."""
    header = "Proxy-Authenticate" if challenge.status == 407 else "WWW-Authenticate"
    offered = next(
        c
        for c in map(Challenge.parse, challenge.headers.get_all(header))
        if c.algorithm == algorithm
    )
    return str(
        answer_challenge(
            offered,
            method=method,
            uri=uri,
            username=user,
            password=password,
            cnonce=uuid.uuid4().hex[:12],
        )
    )
