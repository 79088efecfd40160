"""Termination through a Twilio Elastic SIP trunk: edges, digest, caller ID, CPS.

Calls leave as ``INVITE sip:+E164@{name}.pstn.{edge}.twilio.com`` to the
preferred edge first; the trunk answers with a digest challenge, which we
meet from the configured credential-list entry (RFC 3261 §22.3).  Call
starts are paced to the trunk's calls-per-second limit, so the trunk never
has to refuse us with "503 Trunk CPS limit exceeded".
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket

from voipcore.config import TwilioTrunkConfig, parse_host_port
from voipcore.sip.digest import Challenge, answer_challenge
from voipcore.sip.errors import SipParseError
from voipcore.sip.message import Request, Response
from voipcore.sip.transaction import Address

#: Spacing of call starts relative to 1/CPS (timing jitter headroom).
PACING_MARGIN = 1.1
#: Live edges whose ping round-trip times are within this of the fastest are
#: equally good: the configured preference order decides between them.
RTT_TOLERANCE = 0.020


class TwilioTrunk:
    """One ``[trunks.twilio]`` trunk."""

    def __init__(self, config: TwilioTrunkConfig) -> None:
        self.config = config
        self.domain = config.domain
        self.name = config.domain.removesuffix(".pstn.twilio.com")
        self._next_slot: dict[str, float] = {}
        self._acl = [ipaddress.ip_network(network) for network in config.origination_acl]
        #: Edge -> (answered the last OPTIONS ping, its round-trip time in seconds).
        self.health: dict[str, tuple[bool, float | None]] = {}

    def ordered_edges(self) -> list[str]:
        """Edges to try: the fastest live ones first (within :data:`RTT_TOLERANCE`,
        in preference order), then slower ones by round-trip time, then those not
        measured yet, and those known to be down last."""
        health = {edge: self.health.get(edge, (True, None)) for edge in self.config.edges}
        rtts = [rtt for up, rtt in health.values() if up and rtt is not None]
        fast = min(rtts, default=0.0) + RTT_TOLERANCE

        def rank(edge: str) -> tuple[int, float]:
            up, rtt = health[edge]
            if not up:
                return (3, 0.0)
            if rtt is None:
                return (2, 0.0)
            return (0, 0.0) if rtt <= fast else (1, rtt)

        return sorted(self.config.edges, key=rank)  # stable: ties keep preference order

    def from_twilio(self, host: str) -> bool:
        """Whether ``host`` is one of the trunk's signalling addresses (origination ACL)."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._acl)

    def origination_refusal(self, request: Request, host: str) -> str | None:
        """Why an inbound INVITE is not from our trunk, or None if it is.

        Twilio does not authenticate to us: its INVITEs are recognised by the
        source address and, when configured, the ``X-Twilio-AccountSid`` header.
        """
        if not self.from_twilio(host):
            return f"{host} is not a Twilio signalling address"
        expected = self.config.account_sid
        if expected is not None and request.headers.get("X-Twilio-AccountSid") != expected:
            return "X-Twilio-AccountSid does not match this trunk's account"
        return None

    def edge_domain(self, edge: str) -> str:
        """``{name}.pstn.{edge}.twilio.com``: the termination URI for one edge."""
        return f"{self.name}.pstn.{edge}.twilio.com"

    def request_uri(self, e164: str, edge: str) -> str:
        """Twilio wants the E.164 number, ``+`` included, on the trunk's domain."""
        return f"sip:{e164}@{self.edge_domain(edge)}"

    async def address(self, edge: str) -> Address:
        """Where to send for ``edge``: its configured address, the outbound proxy, or DNS."""
        configured = self.config.edge_addresses.get(edge) or self.config.outbound_proxy
        if configured is not None:
            host, port = parse_host_port(configured)
            return ("UDP", host, port)
        infos = await asyncio.get_running_loop().getaddrinfo(
            self.edge_domain(edge), 5060, type=socket.SOCK_DGRAM
        )
        return ("UDP", str(infos[0][4][0]), 5060)

    async def pace(self, kind: str = "start") -> None:
        """Wait for the next slot under the trunk's CPS limit.

        First INVITEs and their authenticated retries are each kept 1/CPS
        apart: whichever the carrier counts, round-trip jitter on the digest
        exchange cannot squeeze two into one second.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot.get(kind, 0.0))
        # 10 % over the limit's spacing: a send that wakes a little late must not
        # land inside the carrier's one-second window with the next one.
        self._next_slot[kind] = slot + PACING_MARGIN / self.config.cps
        if slot > now:
            await asyncio.sleep(slot - now)

    def authorization(self, invite: Request, challenge: Response) -> tuple[str, str] | None:
        """The Proxy-Authorization (or Authorization) header answering ``challenge``.

        None when the trunk asks for an algorithm we cannot answer.
        """
        header, reply = (
            ("Proxy-Authenticate", "Proxy-Authorization")
            if challenge.status == 407
            else ("WWW-Authenticate", "Authorization")
        )
        for value in challenge.headers.get_all(header):
            try:
                parsed = Challenge.parse(value)
                creds = answer_challenge(
                    parsed,
                    method="INVITE",
                    uri=invite.uri_text,
                    username=self.config.username,
                    password=self.config.password,
                    cnonce=secrets.token_hex(8),
                )
            except (SipParseError, ValueError):
                continue
            return reply, str(creds)
        return None
