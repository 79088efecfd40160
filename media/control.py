"""The control protocol between signalling and media (in the spirit of rtpengine's ng).

Requests and replies are JSON objects.  Over a Unix socket (local workers) or
TCP (workers on other hosts) they go one per line, matched by ``id``::

    → {"id": 7, "command": "offer", "call_id": "c1", "leg": "a", "codecs": [...]}
    ← {"id": 7, "result": "ok", "local": {"host": "192.0.2.5", "port": 30000}}
    ← {"id": 8, "result": "error", "error_reason": "unknown call 'c9'"}
    ← {"event": "dtmf", "call_id": "c1", "leg": "a", "digit": "1", "duration": 0.1}

Lines without an ``id`` are events pushed by the media side.

Over UDP, as rtpengine's ng protocol does, each datagram is a cookie (the
request id: no spaces, at most 64 bytes), one space, and the JSON
object; the reply echoes the cookie::

    → 5f3a_7 {"command":"delete","call_id":"c1"}
    ← 5f3a_7 {"result":"ok","call_id":"c1","legs":{...}}

The client sends again after :data:`T1`, doubling the interval, and gives up
with :class:`ControlError` after :data:`TIMEOUT`.  The server keeps each reply
for :data:`REPLY_TTL` by (client address, cookie): a retransmission is answered
from that cache, and one arriving while its request still runs is dropped, so
``offer`` and ``delete`` never run twice.  A request or reply that does not fit
one datagram (:data:`MAX_DATAGRAM`) is refused with a ControlError or an error
reply.  A datagram without a cookie cannot be answered and is dropped.

Events over UDP are fetched, not pushed: the client long-polls with
``{"command": "events", "after": SEQ}``, which the server holds up to
:data:`EVENT_WAIT` seconds until it has events numbered after SEQ, answering
``{"events": [{..., "seq": N}, ...], "seq": N, "missed": K}`` (``after`` null
answers at once with the current number).  Why not push datagrams: an event
lost in a full socket buffer, under the load where it is likeliest, would be
lost silently, and a lost ``media_timeout`` or ``dtmf`` leaves a billable dead
call up or a pass-through call waiting for a key press forever.  Polls ride on
the same retransmission and reply cache as any request, so each event arrives
once and in order; a client more than :data:`EVENT_BACKLOG` events behind is
told how many it ``missed``.  Events from before a client's first poll are not
replayed to it.

The in-process engine, a client of one worker and the worker pool all offer the
same two methods (:class:`MediaControl`), so signalling never knows which it
drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Protocol, cast

log = logging.getLogger(__name__)

#: Commands a media engine answers.
COMMANDS = frozenset(
    {"offer", "answer", "delete", "query", "play", "stop_play", "record", "dtmf", "stats", "ping"}
)
#: In ``record start``'s ``channels``: every leg not named on another channel, mixed (a
#: conference's other parties on one channel, whoever joins later included).
OTHERS = "*"
#: A line longer than this is a protocol error, not a request.
MAX_LINE = 1 << 20
#: The largest UDP payload over IPv4 (65,535 less the 8-byte UDP and 20-byte IP headers).
MAX_DATAGRAM = 65_507
#: The longest request cookie a UDP server accepts.
MAX_COOKIE = 64
#: A UDP client's first retransmission interval; it doubles after each try.
T1 = 0.5
#: How long a UDP client tries before a request fails.
TIMEOUT = 5.0
#: How long a UDP server keeps a reply: far beyond a client's TIMEOUT (plus an
#: events poll's hold), so no retransmission outlives its cached reply.
REPLY_TTL = 30.0
#: Events a UDP server keeps numbered for clients to fetch.
EVENT_BACKLOG = 1024
#: How long a UDP server holds an ``events`` poll that has nothing to return.  Short,
#: because a lost poll reply is only asked for again after this plus T1: an idle poll
#: a second costs little, and an event whose reply was lost comes 1.5 s late, not 5.
EVENT_WAIT = 1.0
#: Room left in an events reply for the cookie and the envelope around the events.
_EVENT_BUDGET = MAX_DATAGRAM - 1024
#: Transports a control address can name.
TRANSPORTS = ("unix", "tcp", "udp")

Json = dict[str, Any]
EventCallback = Callable[[Json], None]
_Peer = tuple[Any, ...]


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


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` and validate both parts."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"port must be 0-65535, got {port_text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"host must be an IP address or localhost, got {host!r}") from None
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class ControlAddress:
    """``unix:PATH``, ``tcp:HOST:PORT`` or ``udp:HOST:PORT`` (port 0 picks a free one)."""

    transport: str
    #: The host, or the socket path for ``unix``.
    host: str
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> ControlAddress:
        """Parse the textual form; ValueError naming the expected forms."""
        transport, sep, rest = text.partition(":")
        if not sep or transport not in TRANSPORTS or not rest:
            raise ValueError(f"expected unix:PATH, tcp:HOST:PORT or udp:HOST:PORT, got {text!r}")
        if transport == "unix":
            return cls(transport, rest)
        return cls(transport, *parse_host_port(rest))

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def _dumps(message: Json) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def encode(message: Json) -> bytes:
    """One protocol line."""
    return _dumps(message) + b"\n"


def decode(data: bytes) -> Json:
    """A message's JSON object; ControlError saying what is wrong otherwise."""
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise ControlError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ControlError("a request must be a JSON object")
    return message


def error_reply(reason: str) -> Json:
    """The reply to a request that failed."""
    return {"result": "error", "error_reason": reason}


def unwrap(reply: Json) -> Json:
    """A reply without its ``result``; ControlError with the reason if it is an error."""
    if reply.pop("result", None) != "ok":
        raise ControlError(str(reply.get("error_reason", "unknown error")))
    return reply


class ControlServer:
    """Serves one engine's :class:`MediaControl` to clients over sockets."""

    def __init__(self, engine: MediaControl) -> None:
        self.engine = engine
        self._writers: set[asyncio.StreamWriter] = set()
        self._outgoing: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._udp: _UdpServer | None = None
        engine.subscribe(self._broadcast)

    async def listen(self, address: ControlAddress) -> ControlAddress:
        """Listen on ``address``; returns it with the port actually bound."""
        if address.transport == "unix":
            await self.listen_unix(address.host)
            return address
        if address.transport == "tcp":
            return replace(address, port=await self.listen_tcp(address.host, address.port))
        return replace(address, port=await self.listen_udp(address.host, address.port))

    async def listen_unix(self, path: str) -> None:
        """Listen on a Unix socket (local workers)."""
        self._server = await asyncio.start_unix_server(self._serve, path, limit=MAX_LINE)

    async def listen_tcp(self, host: str, port: int) -> int:
        """Listen on TCP (workers on other hosts); returns the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        return int(self._server.sockets[0].getsockname()[1])

    async def listen_udp(self, host: str, port: int) -> int:
        """Listen on UDP, ng-style (see the module docstring); returns the bound port."""
        udp = _UdpServer(self.execute)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: udp, local_addr=(host, port)
        )
        self._udp = udp
        return int(transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        """Stop listening and drop clients."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._udp is not None:
            self._udp.close()

    async def execute(self, message: Json) -> Json:
        """Run one decoded request: ``{"result": "ok", ...}`` or an error reply."""
        command = message.pop("command", None)
        try:
            if command not in COMMANDS:
                raise ControlError(f"unknown command {command!r}")
            reply = await self.engine.request(str(command), message)
        except ControlError as exc:
            return error_reply(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill the worker
            log.exception("control command %s failed", command)
            return error_reply(f"internal: {exc}")
        return {"result": "ok", **reply}

    def _broadcast(self, event: Json) -> None:
        if self._writers:
            if not self._outgoing:
                asyncio.get_running_loop().call_soon(self._flush_events)
            self._outgoing.append(encode(event))
        if self._udp is not None:
            self._udp.events.append(event)

    def _flush_events(self) -> None:
        """Write the events queued since the last flush, in one write per client.

        A second's quality samples of a thousand calls are thousands of events;
        sent as they come they would be a system call each, in the middle of the
        relay.  Replies flush first, so events keep their order against them.
        """
        if not self._outgoing:
            return
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        for writer in self._writers:
            # A client that is going away must not break the engine's tick.
            if not writer.is_closing():
                writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                reply = await self._handle_line(line)
                self._flush_events()
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
            message = decode(line)
        except ControlError as exc:
            return error_reply(str(exc))
        request_id = message.pop("id", None)
        return {"id": request_id, **await self.execute(message)}


class ControlClient:
    """:class:`MediaControl` over a stream connection to a :class:`ControlServer`."""

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
        return unwrap(await future)

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


_Key = tuple[_Peer, bytes]


class ReplyCache:
    """UDP replies by (client address, cookie), so a retransmission is answered, not re-run.

    A key is *begun* when its request arrives and *finished* with the encoded
    reply, which is then kept ``ttl`` seconds.  ``now`` is passed in (monotonic).
    """

    def __init__(self, ttl: float = REPLY_TTL) -> None:
        self.ttl = ttl
        self._replies: dict[_Key, bytes | None] = {}
        self._expiry: deque[tuple[float, _Key]] = deque()

    def begin(self, key: _Key, now: float) -> bool:
        """True for a new request; False for a retransmission (see :meth:`reply`)."""
        while self._expiry and self._expiry[0][0] <= now:
            self._replies.pop(self._expiry.popleft()[1], None)
        if key in self._replies:
            return False
        self._replies[key] = None
        return True

    def reply(self, key: _Key) -> bytes | None:
        """The cached reply; None while the request still runs."""
        return self._replies.get(key)

    def finish(self, key: _Key, reply: bytes, now: float) -> None:
        """Keep ``reply`` until ``now + ttl``."""
        self._replies[key] = reply
        self._expiry.append((now + self.ttl, key))


class EventLog:
    """Engine events numbered for UDP clients, who fetch them with ``events`` polls."""

    def __init__(self, size: int = EVENT_BACKLOG, wait: float = EVENT_WAIT) -> None:
        self.seq = 0
        self.wait = wait
        self._events: deque[Json] = deque(maxlen=size)
        self._new = asyncio.Event()

    def append(self, event: Json) -> None:
        """Number ``event`` and wake the polls waiting for it."""
        self.seq += 1
        self._events.append({**event, "seq": self.seq})
        self._new.set()
        self._new = asyncio.Event()

    async def poll(self, args: Json) -> Json:
        """The ``events`` command: events after ``args["after"]``, held while there are none."""
        after = args.get("after")
        if not isinstance(after, int) or after > self.seq:
            # A first poll, or one numbered by an earlier server at this address.
            return {"result": "ok", "events": [], "seq": self.seq, "missed": 0}
        if after == self.seq:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), self.wait)
        first = self.seq - len(self._events) + 1
        batch: list[Json] = []
        size = 0
        for event in islice(self._events, max(0, after + 1 - first), None):
            size += len(_dumps(event)) + 1
            if batch and size > _EVENT_BUDGET:
                break
            batch.append(event)
        return {
            "result": "ok",
            "events": batch,
            "seq": batch[-1]["seq"] if batch else after,
            "missed": max(0, first - after - 1),
        }


class _UdpServer(asyncio.DatagramProtocol):
    """The UDP listener of a :class:`ControlServer`: cookies, reply cache, event polls."""

    def __init__(self, execute: Callable[[Json], Awaitable[Json]]) -> None:
        self._execute = execute
        self._transport: asyncio.DatagramTransport | None = None
        self.replies = ReplyCache()
        self.events = EventLog()
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for task in self._tasks:
            task.cancel()

    def datagram_received(self, data: bytes, addr: _Peer) -> None:
        cookie, sep, body = data.partition(b" ")
        if not sep or not cookie or len(cookie) > MAX_COOKIE:
            log.warning("control datagram from %s has no cookie; dropped", addr)
            return
        key = (addr, cookie)
        if not self.replies.begin(key, asyncio.get_running_loop().time()):
            cached = self.replies.reply(key)
            if cached is not None and self._transport is not None:
                self._transport.sendto(cached, addr)
            return
        task = asyncio.get_running_loop().create_task(self._answer(key, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, key: _Key, body: bytes) -> None:
        addr, cookie = key
        try:
            message = decode(body)
        except ControlError as exc:
            reply = error_reply(str(exc))
        else:
            if message.get("command") == "events":
                reply = await self.events.poll(message)
            else:
                reply = await self._execute(message)
        data = cookie + b" " + _dumps(reply)
        if len(data) > MAX_DATAGRAM:
            reason = f"reply of {len(data)} bytes does not fit one datagram ({MAX_DATAGRAM})"
            data = cookie + b" " + _dumps(error_reply(reason))
        self.replies.finish(key, data, asyncio.get_running_loop().time())
        if self._transport is not None:
            self._transport.sendto(data, addr)


class UdpControlClient(asyncio.DatagramProtocol):
    """:class:`MediaControl` over UDP to a :class:`ControlServer` (see the module docstring)."""

    def __init__(self, *, t1: float = T1, timeout: float = TIMEOUT) -> None:
        self.t1 = t1
        self.timeout = timeout
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, asyncio.Future[Json]] = {}
        # A random prefix keeps a restarted client's cookies out of the server's cache.
        self._prefix = secrets.token_hex(4)
        self._next_id = 1
        self._callbacks: list[EventCallback] = []
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, *, t1: float = T1, timeout: float = TIMEOUT
    ) -> UdpControlClient:
        """A client of the server at ``host:port``."""
        _, client = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: cls(t1=t1, timeout=timeout), remote_addr=(host, port)
        )
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ControlError("media control socket closed"))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the server (re)starts: the retransmission timer decides.
        log.debug("media control: %s", exc)

    def datagram_received(self, data: bytes, addr: _Peer) -> None:
        cookie, _, body = data.partition(b" ")
        future = self._pending.get(cookie)
        if future is None or future.done():
            return  # a reply to a retransmission we already have
        try:
            future.set_result(decode(body))
        except ControlError as exc:
            future.set_exception(ControlError(f"bad reply: {exc}"))

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_events())

    async def request(self, command: str, args: Json) -> Json:
        return unwrap(await self._exchange({"command": command, **args}))

    async def close(self) -> None:
        """Stop polling for events and close the socket."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    async def _exchange(self, message: Json, hold: float = 0.0) -> Json:
        """Send until answered: first again after ``hold + t1``, then at doubling intervals."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ControlError("media control socket is closed")
        cookie = f"{self._prefix}_{self._next_id}".encode()
        self._next_id += 1
        data = cookie + b" " + _dumps(message)
        if len(data) > MAX_DATAGRAM:
            raise ControlError(
                f"{message['command']} request of {len(data)} bytes does not fit one "
                f"datagram ({MAX_DATAGRAM})"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Json] = loop.create_future()
        self._pending[cookie] = future
        deadline = loop.time() + hold + self.timeout
        interval, delay = self.t1, hold + self.t1
        try:
            while True:
                transport.sendto(data)
                await asyncio.wait([future], timeout=min(delay, deadline - loop.time()))
                if future.done():
                    return future.result()
                if loop.time() >= deadline:
                    peer = transport.get_extra_info("peername")
                    raise ControlError(
                        f"no reply to {message['command']} from {peer} in {hold + self.timeout:g} s"
                    )
                interval *= 2
                delay = interval
        finally:
            del self._pending[cookie]

    async def _poll_events(self) -> None:
        after: int | None = None
        while True:
            try:
                reply = unwrap(
                    await self._exchange({"command": "events", "after": after}, hold=EVENT_WAIT)
                )
            except ControlError as exc:
                if self._transport is None or self._transport.is_closing():
                    return
                log.warning("media events: %s", exc)
                await asyncio.sleep(self.t1)
                continue
            if reply["missed"]:
                log.warning("media events: %d lost (client fell behind)", reply["missed"])
            for event in reply["events"]:
                del event["seq"]
                for callback in self._callbacks:
                    callback(event)
            after = reply["seq"]


async def connect(address: ControlAddress) -> ControlClient | UdpControlClient:
    """A client of the control server at ``address``."""
    if address.transport == "unix":
        return await ControlClient.connect_unix(address.host)
    if address.transport == "tcp":
        return await ControlClient.connect_tcp(address.host, address.port)
    return await UdpControlClient.connect(address.host, address.port)
