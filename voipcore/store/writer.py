"""Group commit of store writes off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from voipcore.store import BindingChange
from voipcore.store.users import Store

log = logging.getLogger(__name__)

#: Called on the event loop once a submitted change is committed (None) or failed.
Done = Callable[[BaseException | None], None]


class BatchWriter:
    """Queues binding changes and commits them in batches on one thread.

    While one batch commits, new changes accumulate and go in the next, so
    under load many REGISTERs share a commit, and each caller hears back only
    once its change is on disk: a 200 OK is never sent for a binding a restart
    would lose.  Completion is a plain callback, not a task per request.
    """

    def __init__(self, store: Store, window: float = 0.002) -> None:
        self._store = store
        #: How long the first change of a batch waits for company: a commit per
        #: REGISTER would cap the rate; 2 ms costs little next to a network RTT.
        self.window = window
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._pending: list[BindingChange] = []
        self._callbacks: list[Done] = []
        self._idle: asyncio.Event | None = None
        self.batches = 0

    def submit(self, changes: list[BindingChange], done: Done) -> None:
        """Queue ``changes``; ``done`` runs on the loop when they are committed or failed."""
        self._pending.extend(changes)
        self._callbacks.append(done)
        if self._idle is None:
            self._idle = asyncio.Event()
            asyncio.get_running_loop().call_later(self.window, self._flush)

    async def apply(self, changes: list[BindingChange]) -> None:
        """Persist ``changes``; returns when they are committed, raises if they failed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(exc: BaseException | None) -> None:
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

        self.submit(changes, done)
        await future

    def _flush(self) -> None:
        batch, callbacks = self._pending, self._callbacks
        self._pending, self._callbacks = [], []
        job = asyncio.get_running_loop().run_in_executor(
            self.executor, self._store.apply_bindings, batch
        )
        job.add_done_callback(lambda finished: self._flushed(finished, callbacks, len(batch)))

    def _flushed(self, job: asyncio.Future[None], callbacks: list[Done], size: int) -> None:
        exc = job.exception()
        if exc is None:
            self.batches += 1
        else:
            log.error("store write of %d changes failed: %s", size, exc)
        for done in callbacks:
            done(exc)
        if self._callbacks:
            self._flush()
        elif self._idle is not None:
            self._idle.set()
            self._idle = None

    async def close(self) -> None:
        """Wait for queued writes, then stop the thread."""
        if self._idle is not None:
            await self._idle.wait()
        self.executor.shutdown(wait=True)
