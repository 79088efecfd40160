"""The control protocol between signalling and media (in the spirit of rtpengine's ng).

Requests and replies are JSON objects, one per line, over a Unix socket (local
workers) or TCP (workers on other hosts)::

    → {"id": 7, "command": "offer", "call_id": "c1", "leg": "a", "codecs": [...]}
    ← {"id": 7, "result": "ok", "local": {"host": "192.0.2.5", "port": 30000}}
    ← {"id": 8, "result": "error", "error_reason": "unknown call 'c9'"}
    ← {"event": "dtmf", "call_id": "c1", "leg": "a", "digit": "1", "duration": 0.1}

Lines without an ``id`` are events pushed by the media side.  The in-process
engine, a client of one worker and the worker pool all offer the same two
methods (:class:`MediaControl`), so signalling never knows which it drives.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Commands a media engine answers.
COMMANDS = frozenset(
    {"offer", "answer", "delete", "query", "play", "stop_play", "record", "dtmf", "stats", "ping"}
)
#: A line longer than this is a protocol error, not a request.
MAX_LINE = 1 << 20

Json = dict[str, Any]
EventCallback = Callable[[Json], None]


class ControlError(Exception):
    """A request the media side refused or could not carry out; the text says why."""


class MediaControl(Protocol):
    """What signalling needs from media, wherever the engine runs."""

    async def request(self, command: str, args: Json) -> Json:
        """Run ``command``; the reply without ``id``/``result``; ControlError on failure."""
        ...

    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback`` with every event (DTMF, quality, timeouts, call ended)."""
        ...


def encode(message: Json) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class ControlServer:
    """Serves one engine's :class:`MediaControl` to clients over a stream socket."""

    def __init__(self, engine: MediaControl) -> None:
        self.engine = engine
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        engine.subscribe(self._broadcast)

    async def listen_unix(self, path: str) -> None:
        """Listen on a Unix socket (local workers)."""
        self._server = await asyncio.start_unix_server(self._serve, path, limit=MAX_LINE)

    async def listen_tcp(self, host: str, port: int) -> int:
        """Listen on TCP (workers on other hosts); returns the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening and drop clients."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()

    def _broadcast(self, event: Json) -> None:
        line = encode(event)
        for writer in self._writers:
            # A client that is going away must not break the engine's tick.
            if not writer.is_closing():
                writer.write(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                reply = await self._handle_line(line)
                writer.write(encode(reply))
                await writer.drain()
        except ConnectionError as exc:
            log.debug("control client went away: %s", exc)
        except (asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("control client dropped: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle_line(self, line: bytes) -> Json:
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            return {"result": "error", "error_reason": f"not JSON: {exc.msg}"}
        if not isinstance(message, dict):
            return {"result": "error", "error_reason": "a request must be a JSON object"}
        request_id = message.pop("id", None)
        command = message.pop("command", None)
        try:
            if command not in COMMANDS:
                raise ControlError(f"unknown command {command!r}")
            reply = await self.engine.request(str(command), message)
        except ControlError as exc:
            return {"id": request_id, "result": "error", "error_reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill the worker
            log.exception("control command %s failed", command)
            return {"id": request_id, "result": "error", "error_reason": f"internal: {exc}"}
        return {"id": request_id, "result": "ok", **reply}


class ControlClient:
    """:class:`MediaControl` over a connection to a :class:`ControlServer`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, asyncio.Future[Json]] = {}
        self._next_id = 1
        self._callbacks: list[EventCallback] = []
        self.closed = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect_unix(cls, path: str) -> ControlClient:
        """Connect to a local worker."""
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
        return cls(reader, writer)

    @classmethod
    async def connect_tcp(cls, host: str, port: int) -> ControlClient:
        """Connect to a worker on another host."""
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
        return cls(reader, writer)

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def request(self, command: str, args: Json) -> Json:
        if self.closed.done():
            raise ControlError("media worker connection is closed")
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode({"id": request_id, "command": command, **args}))
        reply = await future
        if reply.pop("result", None) != "ok":
            raise ControlError(str(reply.get("error_reason", "unknown error")))
        return reply

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read_loop(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                request_id = message.pop("id", None)
                if request_id is None:
                    for callback in self._callbacks:
                        callback(message)
                elif (future := self._pending.pop(request_id, None)) is not None:
                    future.set_result(message)
        except (ConnectionError, json.JSONDecodeError, ValueError) as exc:
            log.warning("media control connection failed: %s", exc)
        finally:
            error = ControlError("media worker connection lost")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()
            if not self.closed.done():
                self.closed.set_result(None)
