"""The simulation process pool and the dispatcher that feeds it in chunks.

Why a forkserver: forking a kernel that already runs threads (ZMQ, the JobManager) is
unsafe, and spawning pays ~3 s of ``import cirq, qsimcirq`` per worker. The forkserver
imports them once (:mod:`qnb._targets._worker`) and forks workers from that clean process.

Why chunks: pickling a circuit and its result costs more than simulating a Bell
circuit, so small circuits that are waiting together travel in one task. Only a few
chunks are in flight at a time, so while the pool is busy later items pile up and
leave in bigger chunks.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import multiprocessing
import multiprocessing.spawn as mp_spawn
import os
import threading
import weakref
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cirq

from . import _worker

MAX_CHUNK_ITEMS = 64
# Roughly (operations x amplitudes); a chunk stops growing past this much work.
MAX_CHUNK_WEIGHT = 1 << 17


def default_workers() -> int:
    return int(os.environ.get("QNB_WORKERS", "0")) or os.cpu_count() or 1


def _weight(circuit: cirq.Circuit, shots: int) -> int:
    n_qubits = len(circuit.all_qubits())
    n_ops = sum(len(moment) for moment in circuit.moments)
    return (n_ops + 1) * (1 << min(n_qubits, 40)) + shots * n_qubits


_spawn_patch_lock = threading.Lock()


@contextlib.contextmanager
def _workers_skip_main_module():
    """Spawn workers that do not re-import ``__main__``.

    multiprocessing re-imports the parent's main module in every spawned or
    forkserver child: a user's unguarded script would run again in each worker, and in
    a kernel each worker would import ipykernel's launcher. Our workers need only
    :mod:`qnb._targets._worker`, so while qnb spawns them the main-module entries are dropped
    from the preparation data.
    """
    original = mp_spawn.get_preparation_data

    def without_main(name):
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _spawn_patch_lock:
        mp_spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            mp_spawn.get_preparation_data = original


class SimulationPool:
    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        # Dispatch state is per event loop (one per JobManager; tests make several).
        self._dispatchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Spawning a worker blocks for seconds (the forkserver's imports), so workers are
        # spawned on a helper thread and nothing is dispatched before they exist: the
        # manager's loop must never block.
        self._ready = threading.Event()
        self._warming = False
        self._on_ready: list = []

    def _get_executor(self) -> ProcessPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(["qnb._targets._worker"])
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=_worker.init_worker
                )
            return self._executor

    def start_warming(self, on_ready=None) -> None:
        """Start the forkserver and every worker in the background; then call ``on_ready``."""
        with self._executor_lock:
            if on_ready is not None:
                self._on_ready.append(on_ready)
            if self._warming or self._ready.is_set():
                ready_now = self._ready.is_set()
            else:
                self._warming, ready_now = True, False
                threading.Thread(target=self._warm, name="qnb-pool-warm", daemon=True).start()
        if ready_now and on_ready is not None:
            self._run_on_ready()

    def wait_ready(self, timeout: float | None = None) -> bool:
        self.start_warming()
        return self._ready.wait(timeout)

    def _warm(self) -> None:
        try:
            executor = self._get_executor()
            with _workers_skip_main_module():
                # Workers are spawned inside submit() for non-fork contexts.
                tasks = [executor.submit(_worker.ping) for _ in range(self.workers)]
            for task in tasks:
                task.result()
        except Exception:
            pass  # the next dispatch reports the broken pool on the items themselves
        finally:
            with self._executor_lock:
                self._warming = False
                self._ready.set()
            self._run_on_ready()

    def _run_on_ready(self) -> None:
        with self._executor_lock:
            callbacks, self._on_ready = self._on_ready, []
        for callback in callbacks:
            callback()

    def shutdown(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def run(
        self, engine: str, noise: float, circuit: cirq.Circuit, shots: int
    ) -> tuple[bool, str]:
        """Simulate one circuit in the pool: ``(True, result json)`` or ``(False, error)``.

        Cancelling the caller drops the circuit if it has not left for a worker yet.
        """
        loop = asyncio.get_running_loop()
        with self._executor_lock:
            dispatcher = self._dispatchers.get(loop)
            if dispatcher is None:
                dispatcher = self._dispatchers[loop] = _Dispatcher(self, loop)
        return await dispatcher.run((engine, noise, circuit, shots))

    def reset_broken(self) -> None:
        with self._executor_lock:
            broken, self._executor = self._executor, None
            self._ready.clear()
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)


_pool: SimulationPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SimulationPool:
    """The process-wide pool (one per kernel: the workers are the expensive part)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SimulationPool()
            atexit.register(_pool.shutdown)
        return _pool


class _Dispatcher:
    """Feeds one event loop's circuits to the shared pool, in chunks."""

    def __init__(self, pool: SimulationPool, loop: asyncio.AbstractEventLoop):
        self.pool = pool
        self.loop = loop
        self.pending: deque[tuple[_worker.Task, int, asyncio.Future]] = deque()
        self.in_flight = 0
        self.pump_scheduled = False

    async def run(self, task: _worker.Task) -> tuple[bool, str]:
        done = self.loop.create_future()
        self.pending.append((task, _weight(task[2], task[3]), done))
        if not self.pump_scheduled:
            # Deferred to the end of this loop iteration so that items arriving together
            # share a chunk.
            self.pump_scheduled = True
            self.loop.call_soon(self.pump)
        return await done

    def pump(self) -> None:
        self.pump_scheduled = False
        pool = self.pool
        if not pool._ready.is_set():
            pool.start_warming(lambda: self._call_soon(self.pump))
            return
        while self.pending and self.in_flight < 2 * pool.workers:
            chunk = self._take_chunk()
            if not chunk:
                break
            try:
                task = pool._get_executor().submit(_worker.run_chunk, [t for t, _, _ in chunk])
            except (BrokenProcessPool, RuntimeError) as exc:
                pool.reset_broken()
                _settle(chunk, [(False, f"simulation pool unavailable: {exc}")] * len(chunk))
                continue
            self.in_flight += 1
            task.add_done_callback(
                lambda fut, chunk=chunk: self._call_soon(self._finish, fut, chunk)
            )

    def _call_soon(self, callback, *args) -> None:
        # From pool threads; the loop may be closed by then (its JobManager was closed
        # with work in flight): that work has nobody left to report to.
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass

    def _take_chunk(self) -> list:
        limit = max(1, min(MAX_CHUNK_ITEMS, math.ceil(len(self.pending) / self.pool.workers)))
        chunk, total = [], 0
        while self.pending and len(chunk) < limit:
            _, weight, done = self.pending[0]
            if done.cancelled():
                self.pending.popleft()
                continue
            if chunk and total + weight > MAX_CHUNK_WEIGHT:
                break
            chunk.append(self.pending.popleft())
            total += weight
        return chunk

    def _finish(self, task: Future, chunk: list) -> None:
        self.in_flight -= 1
        try:
            outcomes = task.result()
        except BrokenProcessPool:
            self.pool.reset_broken()
            outcomes = [(False, "the simulation worker process died (killed, or out of memory)")] * len(chunk)
        except Exception as exc:  # e.g. a circuit that cannot be pickled
            outcomes = [(False, f"{type(exc).__name__}: {exc}")] * len(chunk)
        _settle(chunk, outcomes)
        self.pump()


def _settle(chunk: list, outcomes: list[tuple[bool, str]]) -> None:
    for (_, _, done), outcome in zip(chunk, outcomes):
        if not done.done():
            done.set_result(outcome)
