"""The call as the call log keeps it: one record, every leg it ever had."""

from __future__ import annotations

from collections.abc import Mapping

from voipcore.calls.model import Call, Leg
from voipcore.store.calls import CallRecord, LegRecord

#: Final statuses to the caller, as call-log hangup causes.
CAUSES = {
    486: "busy",
    600: "busy",
    480: "no_answer",
    408: "no_answer",
    487: "cancelled",
    603: "rejected",
    403: "rejected",
    404: "failed",
    488: "failed",
    503: "failed",
}


def cause_of(status: int) -> str:
    return CAUSES.get(status, "failed")


def leg_record(leg: Leg) -> LegRecord:
    """One leg as logged, with the engine's quality summary once it is released."""
    winner = leg.winner
    # An answered outgoing leg's address is its winning branch's.
    transport = leg.addr[0] if leg.addr is not None else ""
    peer = (winner.user if winner is not None else None) or leg.peer
    record = LegRecord(
        leg_id=leg.id,
        role=leg.role,
        peer=peer,
        transport=transport.lower(),
        kind=leg.kind,
        edge=winner.edge if winner is not None else None,
        billable=leg.billable,
        started_at=leg.started_at,
        answered_at=leg.answered_at,
        ended_at=leg.ended_at,
        sip_status=leg.status,
        transferred_to=leg.transferred_to,
    )
    return record.with_media(leg.media) if isinstance(leg.media, Mapping) else record


def call_record(call: Call, ended_at: float | None = None) -> CallRecord:
    """The call as the call log keeps it; without ``ended_at``, a call in progress
    (written as it starts and when it is answered, so a crash cannot lose it)."""
    codec = next((leg.formats[0].name for leg in call.legs if leg.formats), None)
    return CallRecord(
        call_id=call.id,
        direction=call.direction,
        caller=call.caller,
        callee_dialled=call.dialled,
        callee_e164=call.e164,
        user=call.user,
        started_at=call.started_at,
        ringing_at=call.ringing_at,
        answered_at=call.answered_at,
        ended_at=ended_at,
        hangup_cause=call.cause or (None if ended_at is None else "normal"),
        sip_status=call.status,
        hung_up_by=call.hung_up_by,
        codec=codec,
        callee_extension=call.extension,
        person_id=call.person_id,
        mode=call.mode,
        legs=[leg_record(leg) for leg in call.legs],
    )
