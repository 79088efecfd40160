"""``media.workers = N``: N engine processes behind one :class:`MediaControl`.

Python runs one thread of bytecode per process, so media scales by process:
each worker owns a slice of the RTP port range and its calls.  The pool
routes every request by call id, puts new calls on the least loaded worker,
and when a worker dies it reports each of its calls ended and starts a new
worker in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

from media.control import (
    ControlAddress,
    ControlClient,
    ControlError,
    EventCallback,
    Json,
    UdpControlClient,
    connect,
)

log = logging.getLogger(__name__)


@dataclass
class _Worker:
    index: int
    ports: tuple[int, int]
    control: ControlAddress
    process: asyncio.subprocess.Process | None = None
    client: ControlClient | UdpControlClient | None = None
    calls: set[str] = field(default_factory=set)
    restarts: int = 0


def split_ports(low: int, high: int, workers: int) -> list[tuple[int, int]]:
    """Give each worker an equal, even-aligned slice of ``[low, high)``."""
    size = ((high - low) // workers) & ~1
    if size < 2:
        raise ValueError(f"RTP port range {low}-{high} is too small for {workers} workers")
    return [(low + i * size, low + (i + 1) * size) for i in range(workers)]


def worker_addresses(control: str, workers: int, directory: str) -> list[ControlAddress]:
    """Each worker's control address for ``[media] control``.

    ``unix`` puts a socket per worker in ``directory``; ``tcp:HOST:PORT`` or
    ``udp:HOST:PORT`` gives worker i port PORT + i, or a free port each if PORT is 0.
    """
    if control == "unix":
        return [
            ControlAddress("unix", os.path.join(directory, f"worker{i}.sock"))
            for i in range(workers)
        ]
    address = ControlAddress.parse(control)
    if address.transport == "unix":
        raise ValueError('write plain "unix": each worker gets its own socket')
    if address.port and address.port + workers - 1 > 65535:
        raise ValueError(
            f"{workers} workers need ports {address.port}-{address.port + workers - 1}, past 65535"
        )
    return [replace(address, port=address.port and address.port + i) for i in range(workers)]


class WorkerPool:
    """A :class:`~media.control.MediaControl` that spreads calls over worker processes."""

    def __init__(
        self,
        workers: int,
        *,
        rtp_ports: tuple[int, int],
        host: str,
        advertise: str | None = None,
        dscp: int = 46,
        media_timeout: float = 60.0,
        control: str = "unix",
    ) -> None:
        self._dir = tempfile.mkdtemp(prefix="voipcore-media-")
        self._workers = [
            _Worker(i, ports, address)
            for i, (ports, address) in enumerate(
                zip(
                    split_ports(*rtp_ports, workers),
                    worker_addresses(control, workers, self._dir),
                    strict=True,
                )
            )
        ]
        self._host = host
        self._advertise = advertise or host
        self._dscp = dscp
        self._media_timeout = media_timeout
        self._routes: dict[str, _Worker] = {}
        self._callbacks: list[EventCallback] = []
        self._monitors: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Start every worker and wait until each answers."""
        await asyncio.gather(*(self._spawn(w) for w in self._workers))

    async def stop(self) -> None:
        """Stop all workers."""
        self._stopping = True
        for worker in self._workers:
            if worker.client is not None:
                await worker.client.close()
            if worker.process is not None and worker.process.returncode is None:
                worker.process.terminate()
                with contextlib.suppress(ProcessLookupError):
                    await worker.process.wait()
        for task in self._monitors:
            task.cancel()

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers ready for calls (for tests and benchmarks)."""
        return [w.process.pid for w in self._ready() if w.process is not None]

    def _ready(self) -> list[_Worker]:
        return [w for w in self._workers if w.client is not None]

    async def request(self, command: str, args: Json) -> Json:
        if command in ("stats", "ping"):
            return await self._gather(command, args)
        call_id = args.get("call_id")
        if not isinstance(call_id, str):
            raise ControlError(f"{command} needs a call_id")
        worker = self._routes.get(call_id)
        if worker is None:
            if command != "offer":
                raise ControlError(f"unknown call {call_id!r}")
            ready = self._ready()
            if not ready:
                raise ControlError("no media worker is running")
            worker = min(ready, key=lambda w: len(w.calls))
            self._routes[call_id] = worker
            worker.calls.add(call_id)
        if worker.client is None:
            raise ControlError(f"media worker {worker.index} is restarting")
        try:
            return await worker.client.request(command, args)
        finally:
            if command == "delete" and "leg" not in args:
                self._forget(call_id)

    async def _gather(self, command: str, args: Json) -> Json:
        replies: list[Any] = []
        for worker in self._workers:
            if worker.client is not None:
                reply = await worker.client.request(command, args)
                replies.append({"worker": worker.index, "pid": self._pid(worker), **reply})
        return {"workers": replies}

    @staticmethod
    def _pid(worker: _Worker) -> int | None:
        return worker.process.pid if worker.process is not None else None

    def _forget(self, call_id: str) -> None:
        worker = self._routes.pop(call_id, None)
        if worker is not None:
            worker.calls.discard(call_id)

    async def _spawn(self, worker: _Worker) -> None:
        if worker.control.transport == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(worker.control.host)
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "media.worker",
            "--control",
            str(worker.control),
            "--ports",
            str(worker.ports[0]),
            str(worker.ports[1]),
            "--host",
            self._host,
            "--advertise",
            self._advertise,
            "--dscp",
            str(self._dscp),
            "--media-timeout",
            str(self._media_timeout),
            stdout=asyncio.subprocess.PIPE,
        )
        assert worker.process.stdout is not None
        line = await asyncio.wait_for(worker.process.stdout.readline(), timeout=30)
        word, _, bound = line.decode().strip().partition(" ")
        if word != "ready":
            raise RuntimeError(f"media worker {worker.index} failed to start")
        # The worker reports the port it bound, so a worker asked for port 0 is found.
        worker.client = await connect(ControlAddress.parse(bound))
        worker.client.subscribe(self._relay_event)
        log.info(
            "media worker %d (pid %d) ports %s", worker.index, worker.process.pid, worker.ports
        )
        task = asyncio.get_running_loop().create_task(self._monitor(worker))
        self._monitors.add(task)
        task.add_done_callback(self._monitors.discard)

    def _relay_event(self, event: Json) -> None:
        for callback in self._callbacks:
            callback(event)

    async def _monitor(self, worker: _Worker) -> None:
        assert worker.process is not None
        code = await worker.process.wait()
        if self._stopping:
            return
        log.error("media worker %d exited with %s; restarting", worker.index, code)
        worker.client = None
        for call_id in sorted(worker.calls):
            self._routes.pop(call_id, None)
            self._relay_event(
                {
                    "event": "call_ended",
                    "call_id": call_id,
                    "reason": f"media worker {worker.index} died",
                }
            )
        worker.calls.clear()
        delay = 0.1
        while not self._stopping:
            worker.restarts += 1
            try:
                await self._spawn(worker)
                return
            except (TimeoutError, OSError, RuntimeError) as exc:
                log.error("media worker %d failed to restart: %s", worker.index, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
