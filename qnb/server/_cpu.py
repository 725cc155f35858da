"""Where a request's CPU work runs: never on the server's event loop.

Small work (a few Cirq JSON circuits, no compiling) runs in the calling worker
thread: it takes well under a millisecond, less than a hop to another process.
Heavy work (OpenQASM, which Cirq parses at ~10 ms a circuit; compiling, ~10 ms a
circuit; large batches) runs in one dedicated worker process. In a thread it would
hold the GIL for seconds at a time and every other request would wait for it in
slices of the switch interval; in a process the server's loop keeps its core. The
process also gives each request's work a real deadline: past it, the worker is ended
and replaced, and the request is refused.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import gc
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from .._errors import LimitExceededError, QnbError

T = TypeVar("T")
#: How long a new worker process may take to start (it imports Cirq: ~2 s when quiet).
STARTUP_SECONDS = 120.0
log = logging.getLogger("qnb.server")


class CpuWorker:
    """One worker process (spawned, so it shares nothing with the server's threads),
    started on first use and replaced when a deadline ends it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._ready: concurrent.futures.Future | None = None

    def _executor(self) -> tuple[concurrent.futures.ProcessPoolExecutor, concurrent.futures.Future]:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_warm,
                )
                self._ready = self._pool.submit(int)  # done once the worker has started
            return self._pool, self._ready

    def warm(self) -> None:
        """Start the worker now (it imports Cirq: a few seconds), not at the first request."""
        self._executor()

    def run(self, deadline: float, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` in the worker process; blocks the calling thread (never
        call it on the event loop). Refused with :class:`LimitExceededError` after
        ``deadline`` seconds (waiting for another request's work included)."""
        pool, ready = self._executor()
        try:
            # The deadline is the work's: a worker starting (importing Cirq) does not count.
            ready.result(timeout=STARTUP_SECONDS)
            future = pool.submit(fn, *args, **kwargs)
            return future.result(timeout=deadline)
        except concurrent.futures.TimeoutError:
            self._end(pool)
            raise LimitExceededError(
                f"checking and compiling the circuits took more than {deadline:g} s of the "
                "server's time, its limit per request; submit fewer or smaller circuits "
                "per job, or compile them in your notebook (qnb.compile) and send the result"
            ) from None
        except concurrent.futures.process.BrokenProcessPool:
            self._end(pool)
            raise QnbError(
                "the server's circuit worker ended (another request's deadline, or out of "
                "memory) while checking these circuits; send the request again"
            ) from None

    def _end(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """End ``pool``'s worker at once (a deadline passed); the next call starts another."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)
        log.warning("ended the circuit worker process (a request passed its CPU deadline)")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            self._end_quietly(pool)

    @staticmethod
    def _end_quietly(pool: concurrent.futures.ProcessPoolExecutor) -> None:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


def _warm() -> None:
    # Below the server in the CPU scheduler's eyes: on a busy machine the loop that
    # answers everyone comes before one user's compile.
    try:
        os.nice(10)
    except OSError:
        pass
    from ._intake import check  # noqa: F401  (imports Cirq and qnb once, before the first request)

    # What the imports made lives as long as the worker: frozen, the collector no longer
    # walks it (measured: full collections took 1.2 s of a 7.5 s 300-circuit compile
    # with it, 0.4-0.5 s without).
    gc.collect()
    gc.freeze()


#: One worker per server process, shared by every app in it (tests make many).
worker = CpuWorker()
# Ended before the interpreter tears its modules down (a pool collected then complains).
atexit.register(worker.close)
