"""Waiting for a job that another process runs: its state is read from the shared
store until it holds what the waiter asks for (a dead owner's jobs are recovered on
the way, so a waiter never waits for a process that has gone)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

from .._records import JobRecord
from . import _ownership
from ._context import Core
from ._persistence import Predicate

#: How often a job run by another process is read again from the store.
READ_EVERY_SECONDS = 0.25


class StoreWatch:
    def __init__(self, core: Core, *, recover: Callable[[], object]):
        """``recover``: mark dead owners' jobs interrupted (the manager's way)."""
        self.core = core
        self._recover = recover

    def when(self, stored: JobRecord, predicate: Predicate) -> concurrent.futures.Future:
        """A future that resolves (to the status) once the stored job holds ``predicate``."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if predicate(stored):
            future.set_result(stored.status)
        else:
            asyncio.run_coroutine_threadsafe(self._follow(stored.id, predicate, future), self.core.loop)
        return future

    async def _follow(self, job_id: str, predicate: Predicate, future: concurrent.futures.Future) -> None:
        store, owners = self.core.store, self.core.home / "owners"
        while not future.done():
            await asyncio.sleep(READ_EVERY_SECONDS)
            rec = store.load_job(job_id)
            if rec is not None and rec.owner and not rec.done:
                if not _ownership.owner_alive(owners, rec.owner):
                    self._recover()
                    rec = store.load_job(job_id)
            if rec is not None and predicate(rec):
                future.set_result(rec.status)
