"""voipcore in this process, on an event loop whose clock a test moves forward.

For behaviour that takes minutes of protocol time (RFC 4028 session timers):
the server runs on its own thread with real sockets, and :meth:`ClockedServer.advance`
jumps its loop's clock, so every timer due by then fires at once.

Tests of the call-control API drive the server's :class:`CallManager` with
:meth:`ClockedServer.control`, which runs a function (or coroutine function) on the
server's loop, where call objects live, and returns its result to the test's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from tests.harness import ServerProcess
from voipcore.calls.manager import CallManager
from voipcore.cli import seed_users
from voipcore.config import load_config
from voipcore.server import Server
from voipcore.store.db import open_engine
from voipcore.store.users import Store

T = TypeVar("T")


class ClockedLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` runs ``offset`` seconds ahead of the monotonic clock."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset


@dataclass
class ClockedServer(ServerProcess):
    """:class:`ServerProcess`'s config and users, served in-process on a :class:`ClockedLoop`."""

    loop: ClockedLoop | None = None
    "The server's loop; each :meth:`start` makes a new one."
    server: Server | None = None
    "The running server; touch what it holds only on :attr:`loop` (see :meth:`control`)."
    _thread: threading.Thread | None = None
    _stopping: asyncio.Event | None = None

    def start(self, timeout: float = 15.0) -> ClockedServer:
        loop = self.loop = ClockedLoop()  # a closed loop cannot run again (restart)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        config = load_config(self.config_path)
        store = Store(open_engine(config.store.url))
        seed_users(config, store)
        server = self.server = Server(config, store)
        ready = threading.Event()

        async def serve() -> None:
            self._stopping = asyncio.Event()
            await server.start()
            self.ports = {
                "udp": server.transports.bound("UDP").port,
                "tcp": server.transports.bound("TCP").port,
            }
            ready.set()
            await self._stopping.wait()
            await server.stop()

        self._thread = threading.Thread(
            target=loop.run_until_complete, args=(serve(),), daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("in-process server did not start")
        return self

    def advance(self, seconds: float) -> None:
        """Move the server's clock ``seconds`` ahead and let what fell due run."""

        loop = self.loop
        assert loop is not None, "start() the server first"

        async def jump() -> None:
            loop.offset += seconds
            for _ in range(5):
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(jump(), loop).result(5.0)

    @overload
    def control(
        self, action: Callable[[CallManager], Coroutine[Any, Any, T]], timeout: float = ...
    ) -> T: ...

    @overload
    def control(self, action: Callable[[CallManager], T], timeout: float = ...) -> T: ...

    def control(
        self, action: Callable[[CallManager], T | Awaitable[T]], timeout: float = 10.0
    ) -> T:
        """Run ``action`` on the server's loop with its call manager and return what it
        returns (awaited first when that is awaitable); what it raises is raised here.

        Call and leg objects belong to that loop: return plain values (ids, states) from
        ``action`` rather than the objects themselves."""
        loop, server = self.loop, self.server
        assert loop is not None and server is not None, "start() the server first"

        async def run() -> T:
            calls = server.calls
            assert calls is not None, "the server has not started its call layer"
            result = action(calls)
            if inspect.isawaitable(result):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def stop(self, sig: int = 0) -> int | None:
        loop = self.loop
        if self._thread is not None and self._stopping is not None and loop is not None:
            loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10.0)
            self._thread = None
            loop.close()
        return 0

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
