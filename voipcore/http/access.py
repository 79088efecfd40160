"""Who may see which calls in the call log: a rep their own, an admin everyone's.

Shared by the history, disposition and recording operations of the REST API.
"""

from __future__ import annotations

from voipcore.http.api import ApiError, ApiRequest
from voipcore.store.calls import AsyncCallLog, CallRecord


async def owned_call(call_log: AsyncCallLog, req: ApiRequest, call_id: str) -> CallRecord:
    """The call ``call_id`` from the log if the caller may see it: its user, or an admin
    (404 for no such call, 403 for another user's)."""
    found = await call_log.get(call_id)
    if found is None:
        raise ApiError(404, f"There is no call {call_id}.")
    if not req.is_admin and found.user != req.user.username:
        raise ApiError(403, "This is another user's call.")
    return found


def whose_calls(req: ApiRequest, user: str | None) -> str | None:
    """Whose calls a history query filtered by ``user`` may see: an admin's any user's
    (None: everyone's), a rep only their own (403 naming ``user`` for another's)."""
    if req.is_admin:
        return user
    if user not in (None, req.user.username):
        raise ApiError(403, "You can see only your own calls.", "user")
    return req.user.username
