"""A small declarative layer for the REST API: each operation names its method, path,
pydantic models and who may call it; the same declaration validates requests, shapes
errors and writes the OpenAPI 3.1 document (pydantic makes the JSON Schemas).

Authentication (RFC 9110 §11): the web dialer's session cookie, or
``Authorization: Bearer <token>`` (RFC 6750 §2.1) for scripts and CRMs. A request
signed in by cookie that changes state must come from this site: a foreign
``Origin`` (RFC 6454 §7) is refused, on top of the cookie's ``SameSite=Strict``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from voipcore.http.auth import SESSION_COOKIE, Accounts
from voipcore.store import User

M = TypeVar("M", bound=BaseModel)
Access = Literal["public", "user", "admin"]
Handler = Callable[["ApiRequest"], Awaitable[BaseModel | web.StreamResponse | None]]

ACCOUNTS = web.AppKey("accounts", Accounts)
#: Methods that change state: a cookie-signed request for one must be same-origin.
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REF = "#/components/schemas/{model}"


class ApiError(Exception):
    """An error answered as ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        body: dict[str, object] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return web.json_response(body, status=self.status)


class ErrorOut(BaseModel):
    """Every error response: words for a person, and the field at fault when one is."""

    error: str
    field: str | None = None


def invalid(exc: ValidationError, prefix: str = "") -> ApiError:
    """A 400 naming the first field pydantic refused, as a dotted path (``numbers.0.number``)."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    name = prefix + path if path else None
    return ApiError(400, f"{name}: {message}" if name else message, name)


@dataclass(frozen=True, slots=True)
class Param:
    """A path parameter: its type and what it is."""

    kind: type[int] | type[str]
    description: str


@dataclass(frozen=True, slots=True)
class Operation:
    """One endpoint as declared: what the router, the validator and the document need."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    access: Access = "user"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    params: Mapping[str, Param] = field(default_factory=dict)
    produces: str = "application/json"
    errors: tuple[int, ...] = ()


class ApiRequest:
    """What a handler gets: the caller, the validated body, query and path parameters."""

    def __init__(
        self,
        request: web.Request,
        user: User | None,
        body: BaseModel | None,
        query: BaseModel | None,
        params: dict[str, int | str],
    ) -> None:
        self.request = request
        self._user = user
        self._body = body
        self._query = query
        self._params = params

    @property
    def user(self) -> User:
        """The signed-in user (operations with ``access="public"`` have none)."""
        assert self._user is not None, "a public operation has no user"
        return self._user

    @property
    def is_admin(self) -> bool:
        return self._user is not None and self._user.role == "admin"

    def body(self, model: type[M]) -> M:
        """The request body, validated as the operation declared."""
        assert isinstance(self._body, model)
        return self._body

    def query(self, model: type[M]) -> M:
        """The query string, validated as the operation declared."""
        assert isinstance(self._query, model)
        return self._query

    def int_param(self, name: str) -> int:
        value = self._params[name]
        assert isinstance(value, int)
        return value

    def str_param(self, name: str) -> str:
        return str(self._params[name])


class Api:
    """The operations of one API: their aiohttp routes and their OpenAPI document."""

    def __init__(self, title: str, version: str, description: str) -> None:
        self.title = title
        self.version = version
        self.description = description
        self.operations: list[Operation] = []

    def operation(
        self, method: str, path: str, *, summary: str, tag: str, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler as ``method path`` (options: see :class:`Operation`)."""

        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(method, path, handler.__name__, summary, tag, handler, **options)
            )
            return handler

        return register

    def routes(self) -> list[web.RouteDef]:
        return [web.route(op.method, op.path, _endpoint(op)) for op in self.operations]

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every operation."""
        models: set[type[BaseModel]] = {ErrorOut}
        for op in self.operations:
            models.update(m for m in (op.body, op.response) if m is not None)
        _, schemas = models_json_schema(
            [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
            ref_template=_REF,
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = _describe(op)
        return {
            "openapi": "3.1.0",
            "info": {
                "title": self.title,
                "version": self.version,
                "description": self.description,
            },
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {
                "schemas": schemas.get("$defs", {}),
                "securitySchemes": {
                    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                    "token": {"type": "http", "scheme": "bearer"},
                },
            },
        }


_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    400: "Invalid input; `field` names the part at fault",
    401: "Not signed in",
    403: "Not allowed for this user",
    404: "Not found",
    409: "Conflicts with what is stored",
    410: "Gone for good",
    429: "Too many attempts; see Retry-After",
    480: "Nobody to ring",
}


def _describe(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": param.description,
            "schema": {"type": "integer" if param.kind is int else "string"},
        }
        for name, param in op.params.items()
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": prop.pop("description", ""),
                    "schema": prop,
                }
            )
    success: dict[str, Any] = {"description": _STATUS_TEXT[op.status]}
    if op.response is not None:
        ref = {"$ref": _REF.format(model=op.response.__name__)}
        success["content"] = {op.produces: {"schema": ref}}
    elif op.produces != "application/json":
        success["content"] = {op.produces: {"schema": {"type": "string"}}}
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorOut")}}}}
    statuses = set(op.errors) | ({400} if op.body or op.query or op.params else set())
    if op.access != "public":
        statuses |= {401}
    if op.access == "admin" or (op.access == "user" and op.method in _UNSAFE):
        statuses |= {403}  # not an admin; a cookie-signed request from another site
    responses: dict[str, Any] = {str(op.status): success}
    for status in sorted(statuses):
        responses[str(status)] = {"description": _STATUS_TEXT[status], **error}
    described: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
    }
    if op.handler.__doc__:
        described["description"] = " ".join(op.handler.__doc__.split())
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
            },
        }
    described["security"] = [] if op.access == "public" else [{"session": []}, {"token": []}]
    return described


def caller(request: web.Request) -> tuple[User | None, bool]:
    """The user a request is signed in as, and whether by session cookie.

    A bearer token wins over a cookie; a bad or expired one is not signed in.
    """
    accounts = request.config_dict[ACCOUNTS]
    now = time.time()
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return accounts.api_user(token.strip(), now), False
    return session_user(request, now), True


def session_user(request: web.Request, now: float) -> User | None:
    """The user of the request's session cookie (RFC 6265), None if not signed in."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return None if not cookie else request.config_dict[ACCOUNTS].user(cookie, now)


def same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` (if any) is this server (RFC 6454 §7.3)."""
    origin = request.headers.get("Origin")
    return origin is None or origin.split("://", 1)[-1] == request.host


def _endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            return await _serve(op, request)
        except ApiError as exc:
            return exc.response()

    return endpoint


async def _serve(op: Operation, request: web.Request) -> web.StreamResponse:
    user: User | None = None
    if op.access != "public":
        user, by_cookie = caller(request)
        if user is None:
            raise ApiError(401, "Sign in first, or send an API token as 'Authorization: Bearer'.")
        if by_cookie and request.method in _UNSAFE and not same_origin(request):
            raise ApiError(403, "Requests from another site are refused.")
        if op.access == "admin" and user.role != "admin":
            raise ApiError(403, "Only an admin may do this.")
    params: dict[str, int | str] = {}
    for name, param in op.params.items():
        text = request.match_info[name]
        if param.kind is int:
            if not text.isdigit():
                raise ApiError(400, f"{name}: must be a whole number, not {text!r}", name)
            params[name] = int(text)
        else:
            params[name] = text
    query = None
    if op.query is not None:
        try:
            query = op.query.model_validate(dict(request.query))
        except ValidationError as exc:
            raise invalid(exc) from None
    body = None
    if op.body is not None:
        try:
            data = json.loads(await request.text() or "null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "The body must be JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "The body must be a JSON object.")
        try:
            body = op.body.model_validate(data)
        except ValidationError as exc:
            raise invalid(exc) from None
    result = await op.handler(ApiRequest(request, user, body, query, params))
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=op.status)
    return web.json_response(result.model_dump(mode="json"), status=op.status)
