"""The simulation process pool: worker processes that can be stopped one at a time.

Why a forkserver: forking a kernel that already runs threads (ZMQ, the JobManager) is
unsafe, and spawning pays ~3 s of ``import cirq, qsimcirq`` per worker. The forkserver
imports them once (:mod:`qnb._targets._worker`) and forks workers from that clean
process, in milliseconds.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot stop the one task a user
cancelled (a 2^30-repetition circuit kept its worker busy for good), and at exit Python
joins its workers, so a script waited for its simulations or hung. Here each worker has
its own pipe and a supervisor thread owns them all: a cancelled or overdue task's worker
is killed and replaced, and :meth:`SimulationPool.shutdown` kills every worker at once.
Pipes only: no semaphores to leak, nothing for a late-starting child to miss.

Why chunks: pickling a circuit and its result costs more than simulating a Bell
circuit, so small circuits that are waiting together travel in one message. A worker
holds at most two chunks (the one it runs and the next), so while the pool is busy
later items pile up and leave in bigger chunks. A busy worker's next chunk must fit in
its pipe, so that sending it never waits for the worker to be free. Outcomes come back
one per item, so the pool always knows which item a worker is running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import math
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.spawn as mp_spawn
import multiprocessing.util  # registers its exit handler before ours: ours runs first
import os
import pickle
import signal
import socket
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import cirq

MAX_CHUNK_ITEMS = 64
# Roughly (operations x amplitudes); a chunk stops growing past this much work.
MAX_CHUNK_WEIGHT = 1 << 17
CHUNKS_PER_WORKER = 2
# A worker's next chunk waits in its pipe while it runs the current one: the pipe is
# asked to hold this much (a 300-circuit batch of 12 qubits is ~7 MB), and a chunk that
# does not fit waits for the worker to be free (see SimulationPool._dispatch).
PIPE_BYTES = 8 << 20
SMALLEST_PIPE_BYTES = 8 << 10
# A cancelled item that is running gets this long to finish by itself before its
# worker is killed: a cancelled batch of small circuits does not cost a worker each.
CANCEL_GRACE_SECONDS = 0.05
#: At exit, how long a worker being started may finish starting before the forkserver
#: is killed: the start waits for the forkserver (seconds, the first time: killing it
#: then is harmless), then sends the new worker its start data (a moment: cut off, the
#: worker prints "EOFError: Ran out of input" in the script's output).
STARTING_WAIT_SECONDS = 0.5
DEFAULT_ITEM_TIME_LIMIT = 3600.0
# What one worker may need: ~250 MB of imports plus room for a mid-sized simulation.
MEMORY_PER_WORKER = 2 << 30

#: What running one circuit gives: (ok, result JSON or error, engine that ran it).
Outcome = tuple[bool, str, "str | None"]

DIED = "the simulation worker process died (killed, or out of memory)"


def default_workers() -> int:
    """``$QNB_WORKERS``, else one per usable core, but no more than memory allows
    (``MEMORY_PER_WORKER`` each, from the memory available now)."""
    configured = int(os.environ.get("QNB_WORKERS", "0") or 0)
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    memory = available_memory()
    by_memory = memory // MEMORY_PER_WORKER if memory else cores
    return max(1, min(cores, by_memory))


def available_memory() -> int | None:
    """Bytes this process could still use: the system's available memory, or the
    cgroup's remaining limit in a container if that is smaller. None if unknown."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/memory.max") as limit, open(
            "/sys/fs/cgroup/memory.current"
        ) as current:
            text = limit.read().strip()
            if text != "max":
                found.append(int(text) - int(current.read()))
    if not found:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(found)) if found else None


def default_time_limit() -> float:
    """Seconds one item may simulate: ``$QNB_ITEM_TIME_LIMIT``, else an hour."""
    text = os.environ.get("QNB_ITEM_TIME_LIMIT", "")
    try:
        value = float(text) if text else DEFAULT_ITEM_TIME_LIMIT
    except ValueError:
        value = DEFAULT_ITEM_TIME_LIMIT
    return value if value > 0 else DEFAULT_ITEM_TIME_LIMIT


def _weight(circuit: cirq.Circuit, shots: int) -> int:
    n_qubits = len(circuit.all_qubits())
    n_ops = sum(len(moment) for moment in circuit.moments)
    return (n_ops + 1) * (1 << min(n_qubits, 40)) + shots * n_qubits


_spawn_patch_lock = threading.Lock()
#: Held while a process is being forked (:func:`start_forked`), which the forkserver's
#: stop waits for: a process cut off half-way (its start data half sent when the
#: forkserver is killed) prints a traceback in the script or the server's log.
_starting = threading.Lock()
#: The process is stopping: fork nothing more (:func:`stop_starting`, and the
#: process-wide pool's shutdown at exit, under ``_starting``). A start that was waiting for
#: ``_starting`` meanwhile must not bring the forkserver back, whose new socket file would
#: land in multiprocessing's temporary folder while its exit handler removes it
#: ("OSError: Directory not empty" in the server's log).
_stopping = False


def stop_starting() -> None:
    """The process is stopping (``qnb serve`` got SIGTERM): start no worker from now on.

    Its whole process group may have had the signal (``kill -- -PGID``, systemd), the
    forkserver and the workers too: replacing them would start the forkserver again,
    seconds of imports, only to stop it a moment later. Safe in a signal handler (it
    only sets a flag); the items already running go on."""
    global _stopping
    _stopping = True


def stopping() -> bool:
    """Whether the process is stopping (:func:`stop_starting`, or the pool's shutdown at
    exit): a worker that fails to start then is no news."""
    return _stopping


#: Signals that stop a whole process group: a terminal's Ctrl-C (workers ignore it),
#: ``kill -- -PGID`` and systemd's stop, a closed terminal.
_GROUP_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
#: How long a worker that died of such a signal waits for this process to say it is
#: stopping too: Python runs the handler on the main thread, a moment after the signal.
STOP_NEWS_SECONDS = 1.0


def died_in_a_stop(process) -> bool:
    """Whether ``process``, a forked worker that just ended (or failed to start), ended
    because this process is stopping: :func:`stopping`, or the worker died of a signal
    that stops a whole process group and this process's own handler then says so.

    The group's signal reaches the worker and this process at once, but Python runs this
    process's handler (:func:`stop_starting`) only when the main thread next runs: the
    thread that sees the worker die may look first. Replacing the worker then, or logging
    its failed start, would be a restart (or a traceback) in the middle of a clean stop."""
    if _stopping:
        return True
    process.join(STOP_NEWS_SECONDS)  # reaped: its exit code says what ended it
    if process.exitcode is None or -process.exitcode not in _GROUP_STOP_SIGNALS:
        return False
    deadline = time.monotonic() + STOP_NEWS_SECONDS
    while not _stopping and time.monotonic() < deadline:
        time.sleep(0.005)  # a flag a signal handler sets: nothing to wait on but it
    return _stopping


@contextlib.contextmanager
def _workers_skip_main_module():
    """Start workers that do not re-import ``__main__``.

    multiprocessing re-imports the parent's main module in every spawned or
    forkserver child: a user's unguarded script would run again in each worker, and in
    a kernel each worker would import ipykernel's launcher. Our workers need only
    :mod:`qnb._targets._worker`, so while qnb starts them the main-module entries are
    dropped from the preparation data.
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


@dataclasses.dataclass(eq=False)
class _Item:
    """One circuit on its way through the pool."""

    task: tuple | None  # what the worker runs; pickled (and dropped) when dispatched
    weight: int
    time_limit: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    cancelled: bool = False  # set on the caller's loop, read by the supervisor
    pickled: bytes | None = None
    text: str | Callable[[], str] | None = None  # the circuit's Cirq JSON, or what gives it
    #: Seconds its worker spent on it (measured there): what the estimator learns from.
    seconds: float | None = None


@dataclasses.dataclass(eq=False)
class _Worker:
    process: Any  # multiprocessing.Process
    conn: Connection
    items: deque = dataclasses.field(default_factory=deque)  # sent, no outcome yet
    chunk_sizes: deque = dataclasses.field(default_factory=deque)
    started: float = 0.0  # when items[0] began
    kill_at: float | None = None  # items[0] was cancelled: kill unless it ends first
    pipe_bytes: int = 0  # what a send to it may hold without waiting for it to read


class SimulationPool:
    """Worker processes fed by one supervisor thread; see the module's docstring."""

    def __init__(self, workers: int | None = None, *, time_limit: float | None = None):
        self.workers = workers or default_workers()
        self.time_limit = time_limit or default_time_limit()
        self._lock = threading.Lock()
        self._pending: deque[_Item] = deque()
        self._cancelled_pending = False  # some item may have been cancelled since the last look
        self._workers: list[_Worker] = []
        self._closed = False
        self._start_failure: str | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._on_ready: list = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # -- the caller's side (any thread, any loop) -------------------------------------

    def start_warming(self, on_ready=None) -> None:
        """Start the forkserver and every worker in the background; then call ``on_ready``."""
        with self._lock:
            if on_ready is not None:
                self._on_ready.append(on_ready)
            self._start_thread()
        if self._ready.is_set():
            self._run_on_ready()

    def wait_ready(self, timeout: float | None = None) -> bool:
        with self._lock:
            self._start_thread()
        return self._ready.wait(timeout)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    async def run(
        self,
        engine: str,
        noise: float,
        circuit: cirq.Circuit,
        shots: int,
        *,
        params: cirq.ParamResolver | None = None,
        time_limit: float | None = None,
        circuit_json: str | Callable[[], str] | None = None,
        timed: bool = False,
    ) -> Outcome | tuple[bool, str, Any, float | None]:
        """Simulate one circuit (at the sweep point ``params``) in the pool:
        ``(True, result json, engine)`` or ``(False, error, retryable)``; ``engine``
        names the simulator that ran it (qsim hands what it cannot run to Cirq's);
        ``retryable``: a lost worker or a pool that could not start (True), not the
        circuit's own error or its time limit (False).

        Cancelling the caller stops the circuit: dropped if it has not reached a
        worker, else its worker is killed and replaced. ``time_limit`` (seconds,
        default the pool's) fails the item and replaces its worker when exceeded.

        ``circuit_json``: the circuit's Cirq JSON when the caller has it (the text the
        store keeps), or a function that gives it, called as the item leaves for a
        worker: the worker reads that text, and the kernel does not pickle the circuit
        (pickling a 350-gate circuit cost the kernel ~1 ms; a text is copied).

        ``timed``: a fourth element, the seconds a worker spent on the circuit (None
        where none ran it).
        """
        loop = asyncio.get_running_loop()
        task = (engine, noise, circuit, shots, params)
        item = _Item(task, _weight(circuit, shots), time_limit or self.time_limit, loop, loop.create_future(),
                     text=circuit_json)  # fmt: skip
        with self._lock:
            if self._closed:
                closed = (False, "the simulation pool is shut down (the process is exiting)", True)
                return (*closed, None) if timed else closed
            # The supervisor waits with items pending only while every worker is full;
            # an outcome wakes it then. So only the first of a batch needs to wake it
            # (300 wakes were 300 turns of its loop).
            wake = not self._pending
            self._pending.append(item)
            self._start_thread()
        if wake:
            self._wake()
        try:
            outcome = await item.future
        except asyncio.CancelledError:
            item.cancelled = True
            self._cancelled_pending = True
            self._wake()
            raise
        return (*outcome, item.seconds) if timed else outcome

    def shutdown(self) -> None:
        """Kill every worker (and the forkserver) now, without waiting for their work.

        Runs at exit before multiprocessing's own exit handler, which would otherwise
        join workers that are still simulating."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._workers = self._workers, []
            self._pending.clear()
        self._wake()
        # A worker being started is let finish starting (its starter then kills it, the
        # pool being closed): a moment, bounded, never the simulations.
        started = _starting.acquire(timeout=STARTING_WAIT_SECONDS)
        stop_starting()  # under _starting: a start waiting for it forks nothing
        try:
            for worker in workers:
                _kill(worker.process)
            _stop_forkserver()
        finally:
            if started:
                _starting.release()
        for worker in workers:
            worker.process.join(1.0)
            worker.conn.close()
        # The items are not settled: the process is exiting, and their jobs are marked
        # interrupted, not failed by the pool (JobManager.shutdown_at_exit).

    def _start_thread(self) -> None:  # with self._lock held
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._supervise, name="qnb-pool", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _run_on_ready(self) -> None:
        with self._lock:
            callbacks, self._on_ready = self._on_ready, []
        for callback in callbacks:
            callback()

    # -- the supervisor thread ----------------------------------------------------------

    def _supervise(self) -> None:
        while not self._closed:
            self._start_workers()
            if not self._ready.is_set() and not self._closed:
                self._ready.set()
                self._run_on_ready()
            now = time.monotonic()
            self._note_cancellations(now)
            self._dispatch()
            with self._lock:
                workers = list(self._workers)
            deadline = min(
                (d for w in workers if (d := self._deadline(w)) is not None), default=None
            )
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            watched = [self._wake_r] + [w.conn for w in workers] + [w.process.sentinel for w in workers]
            try:
                ready = wait(watched, timeout)
            except OSError:  # a connection closed by shutdown() meanwhile
                continue
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
            for worker in workers:
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._receive(worker)
            now = time.monotonic()
            for worker in workers:
                deadline = self._deadline(worker)
                if deadline is not None and now >= deadline and worker.items:
                    head = worker.items[0]
                    overdue = not head.cancelled
                    self._replace(
                        worker,
                        f"stopped after the time limit of {head.time_limit:g} s for one circuit "
                        "(QNB_ITEM_TIME_LIMIT sets it)" if overdue else None,
                        retryable=False,  # it would take as long again
                    )

    def _start_workers(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._workers) >= self.workers:
                    return
                if self._start_failure is not None and not self._pending:
                    return  # tried and failed; try again when work arrives
            try:
                worker = self._start_worker()
            except Exception as exc:
                if self._closed or _stopping:  # start_forked refuses once stopping
                    return
                with self._lock:
                    self._start_failure = f"simulation pool unavailable: {type(exc).__name__}: {exc}"
                    failed, self._pending = list(self._pending), deque()
                for item in failed:
                    _settle(item, (False, self._start_failure, True))
                return
            with self._lock:
                if self._closed:  # shutdown() ran while this one was starting
                    _kill(worker.process)
                    return
                self._start_failure = None
                self._workers.append(worker)

    def _start_worker(self) -> _Worker:
        process, conn = start_forked(_serve_in_worker, name="qnb-worker")
        return _Worker(process, conn, pipe_bytes=_widen(conn))

    @staticmethod
    def _deadline(worker: _Worker) -> float | None:
        if not worker.items:
            return None
        deadline = worker.started + worker.items[0].time_limit
        return deadline if worker.kill_at is None else min(deadline, worker.kill_at)

    def _note_cancellations(self, now: float) -> None:
        with self._lock:
            if self._cancelled_pending:  # (a scan of every waiting item is not free)
                self._cancelled_pending = False
                self._pending = deque(item for item in self._pending if not item.cancelled)
            workers = list(self._workers)
        for worker in workers:
            if worker.items and worker.items[0].cancelled and worker.kill_at is None:
                worker.kill_at = now + CANCEL_GRACE_SECONDS

    def _dispatch(self) -> None:
        with self._lock:
            workers = list(self._workers)
        # Idle workers first, then those with one chunk: work spreads before it piles.
        for worker in sorted(workers, key=lambda w: len(w.chunk_sizes)):
            if len(worker.chunk_sizes) >= CHUNKS_PER_WORKER:
                continue
            chunk: list[_Item] = []
            while not chunk:  # (every item of a chunk may fail to pickle)
                with self._lock:
                    taken = self._take_chunk()
                if not taken:
                    return
                chunk = _pickled(taken)
            if worker.items:
                # A busy worker reads this chunk only when it is done with its current
                # one: a send that its pipe cannot hold would wait that long, holding
                # up every other worker's outcomes and chunks with it. What does not
                # fit goes back (pickled) for the next worker that is free.
                sendable = _fitting(chunk, worker.pipe_bytes)
                with self._lock:
                    self._pending.extendleft(reversed(chunk[len(sendable):]))
                chunk = sendable
                if not chunk:
                    continue
            try:
                worker.conn.send([item.pickled for item in chunk])
            except (OSError, ValueError):  # the worker died; _receive replaces it
                with self._lock:
                    self._pending.extendleft(reversed(chunk))
                continue
            if not worker.items:
                worker.started = time.monotonic()  # (not `now`: pickling took some of it)
            worker.items.extend(chunk)
            worker.chunk_sizes.append(len(chunk))

    def _take_chunk(self) -> list[_Item]:  # with self._lock held
        limit = max(1, min(MAX_CHUNK_ITEMS, math.ceil(len(self._pending) / self.workers)))
        chunk: list[_Item] = []
        total = 0
        while self._pending and len(chunk) < limit:
            item = self._pending[0]
            if item.cancelled:
                self._pending.popleft()
                continue
            if chunk and total + item.weight > MAX_CHUNK_WEIGHT:
                break
            chunk.append(self._pending.popleft())
            total += item.weight
        return chunk

    def _receive(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                *outcome, seconds = worker.conn.recv()  # (the worker's timing last)
                item = worker.items.popleft()
                item.seconds = seconds
                _settle(item, tuple(outcome))
                worker.chunk_sizes[0] -= 1
                if worker.chunk_sizes[0] == 0:
                    worker.chunk_sizes.popleft()
                worker.started = time.monotonic()
                worker.kill_at = None
                if worker.items and worker.items[0].cancelled:
                    worker.kill_at = worker.started + CANCEL_GRACE_SECONDS
        except (EOFError, OSError, IndexError):
            self._replace(worker, DIED)
            return
        if not worker.process.is_alive():
            self._replace(worker, DIED)

    def _replace(self, worker: _Worker, head_error: str | None, *, retryable: bool = True) -> None:
        """End ``worker``; its running item fails with ``head_error`` (None: it was
        cancelled), the items queued behind it go back to the front of the pending
        queue. A new worker starts on the next round."""
        with self._lock:
            if worker not in self._workers:
                return
            self._workers.remove(worker)
        if head_error == DIED:
            died_in_a_stop(worker.process)  # then the next round starts none
        _kill(worker.process)
        worker.process.join(5)
        worker.conn.close()
        items = list(worker.items)
        worker.items.clear()
        if items and head_error is not None:
            _settle(items[0], (False, head_error, retryable))
        with self._lock:
            self._pending.extendleft(reversed([it for it in items[1:] if not it.cancelled]))

    # -- compatibility ------------------------------------------------------------------


def start_forked(target: Callable[[Connection], None], *, name: str) -> tuple[Any, Connection]:
    """A process forked from the forkserver (which holds Cirq and qsimcirq: it starts in
    milliseconds) that runs ``target(conn)``, and this side's end of ``conn`` (a duplex
    pipe); started (the forkserver too, the first time: ~1.5 s of imports) before this
    returns. It does not import ``__main__``.

    The simulation workers and the queue server's circuit workers both start here, so a
    process imports Cirq once for all of them (the forkserver is process-wide)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["qnb._targets._forkserver", "qnb._targets._worker"])
    ours, theirs = ctx.Pipe(duplex=True)
    process = ctx.Process(target=target, args=(theirs,), name=name, daemon=True)
    try:
        with _workers_skip_main_module(), _starting:
            if _stopping:
                raise RuntimeError("the process is stopping: no worker starts now")
            process.start()
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def task_of(
    engine: str,
    noise: float,
    circuit: cirq.Circuit,
    shots: int,
    params: cirq.ParamResolver | None,
    circuit_json: str | None = None,
) -> tuple:
    """What a worker runs (``_worker.Task``): the circuit travels as its stored Cirq JSON
    when there is one, else pickled with the rest."""
    return (engine, noise, circuit if circuit_json is None else circuit_json, shots, params)


def _serve_in_worker(conn: Connection) -> None:
    # The worker module (Cirq, qsimcirq) is imported here, in the worker, where the
    # forkserver has it already: the kernel never pays for qsimcirq itself.
    from ._worker import serve

    serve(conn)


def _pickled(chunk: list[_Item]) -> list[_Item]:
    """The chunk's items with their tasks pickled (a circuit's stored text, when it has
    one, instead of the circuit); an item that cannot be pickled fails.

    Pickled here, as each item leaves for a worker, not when it is queued: the first
    items of a big batch start at once instead of after the whole batch is pickled,
    and a cancelled item is never pickled at all."""
    ready = []
    for item in chunk:
        if item.pickled is None:
            try:
                text = item.text() if callable(item.text) else item.text
                item.pickled = pickle.dumps(task_of(*item.task, text), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                _settle(item, (False, f"{type(exc).__name__}: {exc}", False))  # cannot be sent
                continue
            finally:
                item.task = item.text = None  # the caller's to free once it is sent
        ready.append(item)
    return ready


def _widen(conn: Connection) -> int:
    """Let the pool's end of a worker's pipe hold up to PIPE_BYTES unread (as far as the
    system allows); the bytes a send may safely leave in it."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as end:
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_BYTES)
            # Linux reports twice what it accounts, and counts its own overhead in it.
            return end.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 4
    except OSError:  # not a socket (another platform's pipe): assume the least
        return SMALLEST_PIPE_BYTES


def _fitting(chunk: list[_Item], limit: int) -> list[_Item]:
    """The longest start of ``chunk`` whose pickled items total at most ``limit`` bytes."""
    total = 0
    for n, item in enumerate(chunk):
        total += len(item.pickled)
        if total > limit:
            return chunk[:n]
    return chunk


def _settle(item: _Item, outcome: Outcome) -> None:
    def settle() -> None:
        if not item.future.done():
            item.future.set_result(outcome)

    # The loop may be closed by then (its JobManager was closed with work in flight):
    # that work has nobody left to report to.
    with contextlib.suppress(RuntimeError):
        item.loop.call_soon_threadsafe(settle)


def _kill(process) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)


def _stop_forkserver() -> None:
    """End the forkserver this process started, so nothing of qnb outlives it. (It
    would exit by itself once this process is gone, but a forkserver that is still
    importing Cirq holds up a worker's start that Python's exit would wait for.)

    Under multiprocessing's own lock: a start on another thread that found the
    forkserver dead would otherwise restart it while this stops it (a server stopping
    while its circuit worker starts)."""
    server = multiprocessing.forkserver._forkserver
    with getattr(server, "_lock", None) or contextlib.nullcontext():
        pid = getattr(server, "_forkserver_pid", None)
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
        with contextlib.suppress(AttributeError, OSError, TypeError):
            os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
        server._forkserver_pid = None
        server._forkserver_address = None


_pool: SimulationPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SimulationPool:
    """The process-wide pool (one per kernel: the workers are the expensive part)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SimulationPool()
            # Registered after multiprocessing.util's handler, so it runs before it.
            atexit.register(_pool.shutdown)
        return _pool
