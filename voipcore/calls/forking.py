"""Dialling an outgoing leg: forking to a user's phones, or the trunk's edges in turn.

A leg to users rings every registered contact at once (RFC 3261 §16.7-style:
the first 2xx wins, the other branches are cancelled, and the best final
response of all is the leg's when none answers).  A leg to the trunk tries one
edge at a time: an edge silent for the failover timeout, or answering 408/5xx,
passes the call to the next (Twilio's guidance for its edges).  The trunk's
digest challenge is met here (§22.2), a 422 is retried at the peer's Min-SE
(RFC 4028 §7.3), and each edge is pinged with OPTIONS for its health.

What the leg's dialling comes to is told to a :class:`DialObserver`: ringing,
answered by a branch, or failed with a final status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from voipcore.calls.model import Branch, Leg, LegState, new_tag
from voipcore.calls.routing import Contact
from voipcore.calls.signalling import Runtime, Signalling
from voipcore.sip.dialog import create_cancel
from voipcore.sip.message import Request, Response
from voipcore.sip.transaction import Address, TransactionKey
from voipcore.trunks.twilio import TwilioTrunk

log = logging.getLogger(__name__)


class DialObserver(Protocol):
    """What the call layer hears about a leg being dialled."""

    def leg_progress(self, leg: Leg, response: Response) -> None:
        """A provisional response above 100 (ringing, early media)."""

    def leg_answered(self, leg: Leg, branch: Branch, response: Response) -> None:
        """A 2xx from one branch (later 2xx from other branches come here too)."""

    def leg_failed(self, leg: Leg, status: int, reason: str | None) -> None:
        """No branch answered: the leg's final status."""


def final_status(finals: list[int]) -> int:
    """The leg's final status from its branches' (§16.7 step 6).

    A trunk's challenge is ours to answer (§22.2), never the caller's: once met
    the retry's final counts, and one we could not meet means we may not call
    (403).  6xx beat everything; then a busy beats a vague failure, a timeout
    reads as no answer, and otherwise the lowest class wins.
    """
    finals = [s for s in finals if s not in (401, 407)] or [403]
    status = next((s for s in finals if s >= 600), None)
    return status or (486 if 486 in finals else 480 if 408 in finals else min(finals))


class Dialler:
    """Sends, retries and cancels the INVITE branches of outgoing legs."""

    def __init__(
        self,
        sig: Signalling,
        runtime: Runtime,
        observer: DialObserver,
        *,
        trunk: TwilioTrunk | None,
        ring_timeout: float,
    ) -> None:
        self.sig = sig
        self.runtime = runtime
        self.observer = observer
        self.trunk = trunk
        #: How long a leg's phones may ring before it fails with 480 (no answer).
        self.ring_timeout = ring_timeout
        self._branches: dict[TransactionKey, Leg] = {}
        #: Our OPTIONS pings to trunk edges in flight: edge and when it was sent.
        self._pings: dict[TransactionKey, tuple[str, float]] = {}

    # -- starting -------------------------------------------------------------

    def ring(self, leg: Leg, contacts: list[Contact], *, from_uri: str, max_forwards: int) -> None:
        """INVITE every contact at once; give up after the ring timeout."""
        leg.from_uri, leg.max_forwards = from_uri, max_forwards
        for contact in contacts:
            invite = self.sig.invite(
                leg,
                contact.uri,
                contact.addr,
                from_uri=from_uri,
                to_uri=f"sip:{contact.user}@{self.sig.domain}",
                max_forwards=max_forwards,
                timer_headers=leg.timer.request_headers(),
                tag=new_tag(),
            )
            self._send(leg, invite, contact.addr).user = contact.user
        self.runtime.flush()
        self.ring_until_timeout(leg)

    async def dial_trunk(self, leg: Leg, *, caller_id: str, max_forwards: int) -> None:
        """Try the trunk's edges in order (health-ranked) until one takes the call."""
        assert self.trunk is not None
        leg.edges = self.trunk.ordered_edges()
        leg.from_uri = f"sip:{caller_id}@{self.trunk.domain}"
        leg.max_forwards = max_forwards
        self.ring_until_timeout(leg)
        await self._next_edge(leg)

    async def _next_edge(self, leg: Leg) -> None:
        """INVITE the next edge; move on if it stays silent (edge down) or fails."""
        trunk = self.trunk
        assert trunk is not None and leg.e164 is not None
        while leg.edges and leg.state is LegState.DIALLING:
            edge = leg.edges.pop(0)
            try:
                addr = await trunk.address(edge)
            except OSError as exc:
                log.warning("trunk edge %s cannot be resolved: %s", edge, exc)
                continue
            await trunk.pace()
            if leg.state is not LegState.DIALLING:
                return
            invite = self.sig.invite(
                leg,
                trunk.request_uri(leg.e164, edge),
                addr,
                from_uri=leg.from_uri,
                to_uri=f"sip:{leg.e164}@{trunk.domain}",
                max_forwards=leg.max_forwards,
                timer_headers=leg.timer.request_headers(),
            )
            branch = self._send(leg, invite, addr, edge)
            self.runtime.flush()
            self._watch_edge(leg, branch, trunk.config.failover_timeout)
            return
        if leg.state is LegState.DIALLING and all(b.final for b in leg.branches.values()):
            self.observer.leg_failed(leg, 503, "Service Unavailable (no trunk edge answered)")

    def _watch_edge(self, leg: Leg, branch: Branch, wait: float) -> None:
        self.runtime.call_at(self.runtime.now() + wait, lambda: self._edge_silent(leg, branch))

    def _edge_silent(self, leg: Leg, branch: Branch) -> None:
        if branch.alive or branch.final or leg.state is not LegState.DIALLING:
            return
        assert self.trunk is not None
        wait = self.trunk.config.failover_timeout
        log.warning("trunk edge %s silent for %.1f s: failing over", branch.edge, wait)
        branch.final = 408
        self.runtime.spawn(self._next_edge(leg))

    def _send(self, leg: Leg, invite: Request, addr: Address, edge: str | None = None) -> Branch:
        key = self.sig.send(invite, addr)
        branch = leg.branches[key] = Branch(invite, addr, edge=edge)
        self._branches[key] = leg
        return branch

    def ring_until_timeout(self, leg: Leg) -> None:
        """Fail the leg with 480 if nobody answers within the ring timeout (a page's
        browser leg too: it has no branches to cancel)."""
        leg.timer_handle = self.runtime.call_at(
            self.runtime.now() + self.ring_timeout, lambda: self._no_answer(leg)
        )

    def _no_answer(self, leg: Leg) -> None:
        leg.timer_handle = None
        if leg.state is LegState.DIALLING:
            self.cancel(leg)
            self.observer.leg_failed(leg, 480, "Temporarily Unavailable (no answer)")

    # -- what comes back ------------------------------------------------------

    def owns(self, key: TransactionKey) -> bool:
        return key in self._branches or key in self._pings

    def on_response(self, response: Response, key: TransactionKey) -> None:
        """A response on one of our branches, or to an edge ping."""
        ping = self._pings.pop(key, None)
        if ping is not None:
            if self.trunk is not None:
                # Any answer, even 4xx, shows the edge is up (§11).
                self.trunk.health[ping[0]] = (True, self.runtime.now() - ping[1])
            return
        leg = self._branches.get(key)
        if leg is None:
            return
        branch = leg.branches[key]
        branch.alive = True
        status = response.status
        if status < 200:
            if status > 100 and leg.state is LegState.DIALLING:
                self.observer.leg_progress(leg, response)
        elif status < 300:
            self.observer.leg_answered(leg, branch, response)
        elif leg.state is not LegState.DIALLING:
            branch.final = status
            self.settled(leg)
        elif status in (401, 407) and branch.edge is not None and not branch.authenticated:
            branch.final = status
            self._authenticate(leg, branch, response)
        elif status == 422 and not branch.retried:
            # Session interval too small for the callee: ask again at its Min-SE (RFC 4028 §7.3).
            branch.final = status
            leg.timer.apply_response(response, self.runtime.now())
            retry = self.sig.retry(branch.invite, branch.addr, leg.timer.request_headers())
            again = self._send(leg, retry, branch.addr, branch.edge)
            again.alive = again.retried = True
            again.authenticated = branch.authenticated
            again.user = branch.user
            self.runtime.flush()
        else:
            branch.final = status
            self._after_failure(leg, branch)

    def on_failure(self, key: TransactionKey, status: int) -> None:
        """No response on a branch (Timer B: 408; unsendable: 503, §8.1.3.1)."""
        self._pings.pop(key, None)
        leg = self._branches.get(key)
        if leg is not None and leg.state is LegState.DIALLING:
            branch = leg.branches[key]
            branch.final = status
            self._after_failure(leg, branch)

    def _after_failure(self, leg: Leg, branch: Branch) -> None:
        """This edge is in trouble (408, 5xx): try the next one; else settle the leg."""
        if branch.edge is not None and leg.edges and (branch.final >= 500 or branch.final == 408):
            self.runtime.spawn(self._next_edge(leg))
        else:
            self._settle(leg)

    def _settle(self, leg: Leg) -> None:
        """Every branch has its final: the leg fails with the best of them."""
        if leg.state is not LegState.DIALLING or any(b.final == 0 for b in leg.branches.values()):
            return
        self.observer.leg_failed(leg, final_status([b.final for b in leg.branches.values()]), None)

    def _authenticate(self, leg: Leg, branch: Branch, challenge: Response) -> None:
        """Meet the trunk's digest challenge from the credential list (§22.3)."""
        assert self.trunk is not None
        header = self.trunk.authorization(branch.invite, challenge)
        if header is None:
            self._settle(leg)
            return
        invite = self.sig.retry(branch.invite, branch.addr, [header])
        self.runtime.spawn(self._send_authenticated(leg, invite, branch))

    async def _send_authenticated(self, leg: Leg, invite: Request, branch: Branch) -> None:
        assert self.trunk is not None
        await self.trunk.pace("authenticated")
        if leg.state is not LegState.DIALLING:
            return
        retry = self._send(leg, invite, branch.addr, branch.edge)
        retry.alive = retry.authenticated = True
        retry.retried = branch.retried
        self.runtime.flush()

    # -- ending -----------------------------------------------------------------

    def cancel(self, leg: Leg, keep: Branch | None = None) -> None:
        """CANCEL every pending branch but ``keep`` (§9.1)."""
        for branch in leg.branches.values():
            if branch is not keep and branch.final == 0:
                branch.final = 487
                self.sig.send(create_cancel(branch.invite), branch.addr)

    def settled(self, leg: Leg) -> None:
        """Forget an ended leg once every branch has its final (a leg that lost to a
        sibling keeps listening until then, for a 200 crossing its CANCEL)."""
        if not leg.live and all(b.final for b in leg.branches.values()):
            self.forget(leg)

    def forget(self, leg: Leg) -> None:
        """The leg is over: later responses on its branches are ignored."""
        for key in leg.branches:
            self._branches.pop(key, None)

    # -- edge health ---------------------------------------------------------------

    async def ping_edges(self) -> None:
        """OPTIONS every trunk edge now and then: reachability and round-trip time."""
        trunk = self.trunk
        assert trunk is not None
        while True:
            for edge in trunk.config.edges:
                try:
                    addr = await trunk.address(edge)
                except OSError:
                    trunk.health[edge] = (False, None)
                    continue
                ping = self.sig.options(f"sip:{trunk.edge_domain(edge)}", addr)
                self._pings[self.sig.send(ping, addr)] = (edge, self.runtime.now())
            self.runtime.flush()
            await asyncio.sleep(trunk.config.ping_timeout)
            for key, (edge, _) in list(self._pings.items()):
                # No answer within the ping timeout: treat the edge as down for now.
                trunk.health[edge] = (False, None)
                del self._pings[key]
            await asyncio.sleep(max(0.0, trunk.config.ping_interval - trunk.config.ping_timeout))
