"""The REST API's conference operations: invite a colleague or a number into a running
call, remove a party, and list who is in it (:mod:`voipcore.calls.conference`).

The call log keeps every party as a leg with its join and leave times
(``GET /api/v1/calls/{call_id}``, role ``colleague`` for the invited).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from voipcore.calls import conference
from voipcore.calls.manager import CallError, CallManager
from voipcore.dialer.numbers import InvalidNumber
from voipcore.http.api import Api, ApiError, ApiRequest, Param

if TYPE_CHECKING:
    from voipcore.http.rest import Backend


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    to: str = Field(
        min_length=1,
        max_length=64,
        description="A user's name, an extension, a ring group or a number in any common "
        "format (its extension is dialled as DTMF once it answers).",
    )


class Invited(BaseModel):
    leg_id: str = Field(description="The invited party's leg, as the participants list names it.")


class ParticipantOut(BaseModel):
    leg_id: str
    role: Literal["caller", "callee", "colleague"]
    peer: str = Field(description="The user's name, or the number of a party on the trunk.")
    name: str | None = Field(description="The user's display name; null for a number.")
    kind: Literal["phone", "browser", "trunk"]
    state: Literal["ringing", "connected", "left"]
    invited_at: str
    joined_at: str | None
    left_at: str | None


class ParticipantList(BaseModel):
    call_id: str
    owner: str = Field(description="The call's owner: who (with admins) may invite and remove.")
    items: list[ParticipantOut]


def add_conference_operations(api: Api, backend: Backend) -> None:
    """Declare the ``/api/v1/calls/{call_id}/participants`` operations on ``api``."""
    call_id = {"call_id": Param(str, "The call's id (a call in progress).")}

    def manager() -> CallManager:
        calls = backend.calls()
        if calls is None:
            raise ApiError(409, "The server is still starting.")
        return calls

    @api.operation(
        "POST",
        "/api/v1/calls/{call_id}/participants",
        summary="Invite into a call",
        tag="calls",
        params=call_id,
        body=InviteIn,
        response=Invited,
        status=202,
        errors=(403, 404, 409),
    )
    async def invite_participant(req: ApiRequest) -> Invited:
        """Dials a colleague (their phones and dialer pages) or a number into your call;
        once they answer everyone hears everyone. 409 says why when it cannot ring."""
        ident, to = req.str_param("call_id"), req.body(InviteIn).to
        try:
            leg = conference.invite(
                manager(), ident, to, user=req.user.username, admin=req.is_admin
            )
        except InvalidNumber as exc:
            raise ApiError(400, f"to: {exc}", "to") from None
        except CallError as exc:
            raise ApiError(exc.status, exc.reason) from None
        return Invited(leg_id=leg.id)

    @api.operation(
        "DELETE",
        "/api/v1/calls/{call_id}/participants/{leg_id}",
        summary="Remove a party from a call",
        tag="calls",
        params=call_id | {"leg_id": Param(str, "The party's leg.")},
        status=204,
        errors=(403, 404, 409),
    )
    async def remove_participant(req: ApiRequest) -> None:
        """Hangs up that party; the others stay connected while two or more remain. The
        call's owner and admins may remove anyone, a user themselves."""
        ident, leg_id = req.str_param("call_id"), req.str_param("leg_id")
        try:
            conference.remove(manager(), ident, leg_id, user=req.user.username, admin=req.is_admin)
        except CallError as exc:
            raise ApiError(exc.status, exc.reason) from None

    @api.operation(
        "GET",
        "/api/v1/calls/{call_id}/participants",
        summary="Who is in a call",
        tag="calls",
        params=call_id,
        response=ParticipantList,
        errors=(403, 404, 409),
    )
    async def list_participants(req: ApiRequest) -> ParticipantList:
        """The parties of a call in progress: who, on what, ringing, connected or left,
        and when they joined and left."""
        ident = req.str_param("call_id")
        calls = manager()
        try:
            call = conference.visible(calls, ident, user=req.user.username, admin=req.is_admin)
        except CallError as exc:
            raise ApiError(exc.status, exc.reason) from None
        found = conference.parties(calls, call)
        items = [ParticipantOut.model_validate(party.to_json()) for party in found]
        return ParticipantList(call_id=ident, owner=call.user, items=items)
