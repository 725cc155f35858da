"""Blocking calls into other people's code (a vendor's client, a ``cirq.Sampler``), each
with a deadline, on daemon threads of the target's own.

Why not ``concurrent.futures.ThreadPoolExecutor``: the interpreter joins its threads at
exit, so a call that never returns (``requests`` without a timeout, as cirq-ionq sends
them; a sampler stuck in ``run_sweep``) keeps a finished script alive for ever. These
threads are daemons: exit never waits for them. A call past its deadline is abandoned
(its thread finishes on its own, nobody waits for it) and no longer takes a place of the
target's, so one stuck call never holds the others; at most ``max_abandoned`` may be
left running, past that calls are refused at once rather than piling up threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_numbers = itertools.count(1)


class CallTimeout(Exception):
    """A call passed its deadline (it may still finish on its thread, unheard)."""


class CallsRefused(Exception):
    """Too many earlier calls are stuck past their deadlines: nothing new is started."""


class DeadlineCalls:
    """Up to ``threads`` calls at once on daemon threads; each caller waits at most its
    deadline."""

    def __init__(self, name: str, *, threads: int = 4, max_abandoned: int = 32):
        self.name = name
        self.threads = threads
        self.max_abandoned = max_abandoned
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        # A call is claimed by an idle thread when it is queued (``_idle`` counts threads
        # waiting and not yet promised a call); calls no idle thread was promised are
        # ``_unclaimed`` and taken by the next thread that comes free. Counting an idle
        # thread only when it takes work would send two calls queued at once to one
        # thread, the second waiting behind the first.
        self._idle = 0
        self._unclaimed = 0
        self._live = 0  # threads not abandoned
        self._abandoned = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise CallsRefused(f"{self.name}: closed")
            if self._abandoned >= self.max_abandoned:
                raise CallsRefused(
                    f"{self.name}: {self._abandoned} earlier calls are stuck past their deadlines"
                )
            self._work.put((future, fn, args, kwargs))
            if self._idle > 0:
                self._idle -= 1
            else:
                self._unclaimed += 1
                if self._live < self.threads:
                    self._start_thread()
        return future

    def _start_thread(self) -> None:
        self._live += 1
        threading.Thread(target=self._serve, name=f"{self.name}-{next(_numbers)}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._unclaimed > 0:
                    self._unclaimed -= 1  # a call waits for no one in particular: take it
                else:
                    self._idle += 1  # a call queued from now on is promised to this thread
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it, whatever it is
                future.set_exception(exc)
            # (abandon() marks only a future not yet done, so this reads the final word.)
            if getattr(future, "_qnb_abandoned", False):
                with self._lock:
                    self._abandoned -= 1
                return  # a replacement took this thread's place when it was abandoned

    def abandon(self, future: concurrent.futures.Future) -> None:
        """The caller stopped waiting: a queued call is dropped; a running one's thread
        leaves the count and another may start in its place."""
        if future.cancel():
            return
        with self._lock:
            if future.done() or getattr(future, "_qnb_abandoned", False):
                return
            future._qnb_abandoned = True  # noqa: SLF001
            self._abandoned += 1
            self._live -= 1
            if self._unclaimed > 0 and not self._closed:
                self._start_thread()

    def call(self, timeout: float, fn: Callable[..., T], *args, **kwargs) -> T:
        """From a thread that may block (set-up): the answer, or :class:`CallTimeout`."""
        future = self.submit(fn, *args, **kwargs)
        done, _ = concurrent.futures.wait([future], timeout=timeout)
        if not done:
            self.abandon(future)
            raise CallTimeout(f"{self.name}: no answer within {timeout:g} s")
        return future.result()

    async def acall(self, timeout: float, fn: Callable[..., T], *args, **kwargs) -> T:
        """On an event loop: the answer, or :class:`CallTimeout`; cancelling the awaiting
        task abandons a call that has not started."""
        future = self.submit(fn, *args, **kwargs)
        wrapped = asyncio.wrap_future(future)
        try:
            # asyncio.wait, not wait_for: the callee's own TimeoutError must not read as ours.
            done, _ = await asyncio.wait({wrapped}, timeout=timeout)
        except asyncio.CancelledError:
            # A cancel drops a call that has not started; a running one keeps its place
            # until it ends (it is still at work: nothing new should start beside it).
            future.cancel()
            raise
        if not done:
            self.abandon(future)
            _quiet(wrapped)
            raise CallTimeout(f"{self.name}: no answer within {timeout:g} s")
        return wrapped.result()

    def close(self) -> None:
        """Start nothing new; idle threads end (running calls finish on their own)."""
        with self._lock:
            self._closed = True
            live = self._live
        for _ in range(live):
            self._work.put(None)

    @property
    def abandoned(self) -> int:
        with self._lock:
            return self._abandoned


def _quiet(wrapped: asyncio.Future) -> None:
    """Nobody awaits an abandoned call: its late error is dropped, not logged by asyncio
    as "never retrieved"."""
    wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())
