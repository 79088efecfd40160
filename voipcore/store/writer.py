"""Group commit of store writes off the event loop."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from voipcore.store.sqlite import BindingChange, SqliteStore

log = logging.getLogger(__name__)


class BatchWriter:
    """Queues binding changes and commits them in batches on one thread.

    While one batch commits, new changes accumulate and go in the next, so
    under load many REGISTERs share a commit, and each caller's ``await``
    returns only once its change is on disk: a 200 OK is never sent for a
    binding a restart would lose.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._pending: list[BindingChange] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def apply(self, changes: list[BindingChange]) -> None:
        """Persist ``changes``; returns when they are committed."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending.extend(changes)
        self._waiters.append(waiter)
        if self._task is None:
            self._task = loop.create_task(self._flush_loop())
        await waiter

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiters:
                batch, waiters = self._pending, self._waiters
                self._pending, self._waiters = [], []
                try:
                    await loop.run_in_executor(self.executor, self._store.apply_bindings, batch)
                except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
                    log.exception("store write of %d changes failed", len(batch))
                    for w in waiters:
                        if not w.done():
                            w.set_exception(exc)
                    continue
                self.batches += 1
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._task = None

    async def close(self) -> None:
        """Wait for queued writes, then stop the thread."""
        if self._task is not None:
            await self._task
        self.executor.shutdown(wait=True)
