"""Where a request's heavy CPU work runs: never on the server's event loop, never
ahead of other users, and never after the server is gone.

Small work (a few Cirq JSON circuits, one or two small OpenQASM ones) runs in the
request's own thread (see ``_service.py``): it takes milliseconds, less than a hop to
another process. Heavy work (OpenQASM, which Cirq parses at ~10 ms a circuit;
compiling, ~10 ms a circuit; large batches) runs here, in a pool of worker processes,
one per core (at most :data:`MAX_PROCESSES`). In a thread it would hold the GIL for
seconds and every other request would wait for it in slices of the switch interval; in
a process the server's loop keeps its core.

**Fair.** A user has at most one request in a worker at a time; their others wait in
their own line, and a free worker takes the next request of the user whose turn it is
(round robin: a user who was just served goes to the back). Two users' 300-circuit
compiles take a worker each; a third user's cheap submit never comes here. A thread
that comes here to wait gives its lane back first (:func:`lane`), so waits for heavy
capacity never hold the threads that cheap requests run on. Waiting is bounded per user
(:data:`WAITING_PER_USER`) and in total (:data:`MAX_WAITING`), and in time.

**Deadlines.** Each request's work has one: past it, its worker is killed and replaced,
and the request is refused.

**Cheap to start.** A worker is forked from the forkserver that the simulation pool
starts with the server (``_pool.start_forked``), which holds Cirq already: it starts in
milliseconds, where a fresh interpreter paid ~1.5 s of CPU importing Cirq again (with
every server start, and again for each worker replaced after a deadline).

**No orphans.** A worker watches the server through multiprocessing's parent sentinel
(a pipe the server holds: it closes however the server ends, SIGKILL included) and
exits at once, even in the middle of a compile; it also exits when its request pipe
closes. It does not depend on the forkserver, which the simulation pool may stop.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import gc
import logging
import os
import pickle
import queue
import select
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from .._errors import LimitExceededError, QnbError
from .._targets._child import init_worker
from .._targets._pool import died_in_a_stop, start_forked, stopping

T = TypeVar("T")
#: How long a new worker process may take to start (the first waits for the forkserver
#: to import Cirq: ~2 s when quiet).
STARTUP_SECONDS = 120.0
#: Worker processes at most, whatever the cores (each computes on a core of its own).
MAX_PROCESSES = 4
#: Heavy requests one user may have here at once (one running, the others waiting).
WAITING_PER_USER = 4
#: Heavy requests all users may have here at once (each holds a thread while it waits).
MAX_WAITING = 32
#: What ``ps`` and ``top`` call a worker.
PROCESS_NAME = "qnb-circuits"
_FRAME = struct.Struct("!Q")
log = logging.getLogger("qnb.server")


def default_processes() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES))


# -- lanes: the threads cheap requests run on -------------------------------------------------

_lane = threading.local()


@contextlib.contextmanager
def lane(give_back: Callable[[], None]) -> Iterator[None]:
    """Run the body in a lane: if it comes to wait for a worker, ``give_back`` is called
    first (once), so the lane serves cheap requests meanwhile."""
    previous = getattr(_lane, "give_back", None)
    _lane.give_back = give_back
    try:
        yield
    finally:
        _lane.give_back = previous


def _give_lane_back() -> None:
    give_back = getattr(_lane, "give_back", None)
    if give_back is not None:
        _lane.give_back = None
        give_back()


# -- the pool ---------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Ticket:
    user: str
    process: _Process | None = None
    refused: str | None = None  # why it will get no turn


class CpuPool:
    """Worker processes, started on first use (or :meth:`warm`), shared fairly by users."""

    def __init__(self, processes: int | None = None):
        self.size = processes or default_processes()
        self._cond = threading.Condition()
        self._idle: list[_Process] = []
        self._all: set[_Process] = set()
        self._alive = 0  # processes started or starting
        self._lines: dict[str, collections.deque[_Ticket]] = {}  # in turn order
        self._running: set[str] = set()  # users with a request in a worker
        self._waiting = 0
        self._closed = False
        self._starter = _Starter()

    def warm(self, processes: int | None = None) -> None:
        """Start workers now (each imports Cirq: seconds), not at the first request: all
        of them, or up to ``processes``; the rest start when the first request comes."""
        with self._cond:
            self._top_up(None if processes is None else min(processes, self.size))

    def run(self, user: str, deadline: float, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker, in ``user``'s turn; blocks the calling
        thread (never call it on the event loop). Refused with
        :class:`LimitExceededError` when the work takes more than ``deadline`` seconds,
        or when ``user`` already has :data:`WAITING_PER_USER` requests here."""
        ticket = self._enter(user)
        _give_lane_back()
        try:
            process = self._wait_for_turn(ticket, deadline + STARTUP_SECONDS)
        except BaseException:
            self._abandon(ticket)
            raise
        try:
            status, value = self._call(process, deadline, fn, args, kwargs)
        finally:
            self._leave(ticket, process)
        if status == "error":
            raise value
        return value

    def _enter(self, user: str) -> _Ticket:
        with self._cond:
            if self._closed:
                raise QnbError("the server is shutting down; send the request again later")
            line = self._lines.get(user, ())
            if len(line) + (user in self._running) >= WAITING_PER_USER:
                raise LimitExceededError(
                    f"{user} has {WAITING_PER_USER} requests being parsed or compiled on the "
                    "server already, its limit per user; wait for their answers first"
                )
            if self._waiting >= MAX_WAITING:
                raise LimitExceededError(
                    f"the server is parsing or compiling {MAX_WAITING} requests already, its "
                    "limit; send this one again in a minute, or compile in your notebook"
                )
            ticket = _Ticket(user)
            self._lines.setdefault(user, collections.deque()).append(ticket)
            self._waiting += 1
            self._top_up()
            self._dispatch()
            return ticket

    def _wait_for_turn(self, ticket: _Ticket, timeout: float) -> _Process:
        with self._cond:
            self._cond.wait_for(
                lambda: ticket.process is not None or ticket.refused or self._closed, timeout
            )
            if ticket.process is not None:
                return ticket.process
            if ticket.refused:
                raise QnbError(ticket.refused)
            if self._closed:
                raise QnbError("the server is shutting down; send the request again later")
            raise LimitExceededError(
                f"waited {timeout:g} s for the server's circuit workers (other users' "
                "requests held them); send the request again later"
            )

    def _abandon(self, ticket: _Ticket) -> None:
        """A waiting ticket given up (its wait ended without a turn, or was interrupted)."""
        with self._cond:
            if ticket.process is not None:  # its turn came after all: pass it on
                self._leave_locked(ticket, ticket.process)
                return
            if ticket.refused:
                return  # out of its line and of the count already
            line = self._lines.get(ticket.user)
            if line is not None and ticket in line:
                line.remove(ticket)
                if not line:
                    del self._lines[ticket.user]
            self._waiting -= 1

    def _call(self, process: _Process, deadline: float, fn, args, kwargs) -> tuple[str, Any]:
        try:
            return process.call(deadline, (fn, args, kwargs))
        except TimeoutError:
            raise LimitExceededError(
                f"checking and compiling the circuits took more than {deadline:g} s of the "
                "server's time, its limit per request; submit fewer or smaller circuits "
                "per job, or compile them in your notebook (qnb.compile) and send the result"
            ) from None
        except (EOFError, OSError, pickle.UnpicklingError):
            raise QnbError(
                "the server's circuit worker ended (out of memory, or the server is "
                "stopping) while checking these circuits; send the request again"
            ) from None

    def _leave(self, ticket: _Ticket, process: _Process) -> None:
        with self._cond:
            self._leave_locked(ticket, process)

    def _leave_locked(self, ticket: _Ticket, process: _Process) -> None:
        self._running.discard(ticket.user)
        self._waiting -= 1
        if process.broken or self._closed:
            self._all.discard(process)
            self._alive -= 1
            process.kill()
            if process.timed_out:
                log.warning("ended a circuit worker process (a request passed its CPU deadline)")
            self._top_up()
        else:
            self._idle.append(process)
        self._dispatch()

    def _dispatch(self) -> None:  # with self._cond held
        while self._idle:
            ticket = self._next_ticket()
            if ticket is None:
                break
            ticket.process = self._idle.pop()
            self._running.add(ticket.user)
        self._cond.notify_all()

    def _next_ticket(self) -> _Ticket | None:
        """The first waiting request of the first user in turn order with none running;
        that user goes to the back of the order."""
        for user, line in self._lines.items():
            if user not in self._running:
                ticket = line.popleft()
                del self._lines[user]
                if line:
                    self._lines[user] = line
                return ticket
        return None

    def _top_up(self, size: int | None = None) -> None:  # with self._cond held
        while self._alive < (self.size if size is None else size) and not self._closed:
            self._alive += 1
            self._starter.start(self._started)

    def _started(self, process: _Process | None) -> None:
        with self._cond:
            if process is None:  # logged by the starter; the next request tries again
                self._alive -= 1
                if self._alive == 0:
                    self._refuse_waiting("the server's circuit worker could not start (its "
                                         "log says why); send the request again later")
            elif self._closed:
                process.kill()
            else:
                self._all.add(process)
                self._idle.append(process)
            self._dispatch()

    def _refuse_waiting(self, reason: str) -> None:  # with self._cond held
        for line in self._lines.values():
            for ticket in line:
                ticket.refused = reason
        self._waiting -= sum(len(line) for line in self._lines.values())
        self._lines.clear()

    def waiting(self) -> dict[str, int]:
        """Requests waiting for a worker, by user (for tests and diagnostics)."""
        with self._cond:
            return {user: len(line) for user, line in self._lines.items()}

    def started(self) -> int:
        """Worker processes started or starting (for tests and diagnostics)."""
        with self._cond:
            return self._alive

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and diagnostics)."""
        with self._cond:
            return [process.pid for process in self._all]

    def close(self) -> None:
        """Kill every worker now; waiting requests are refused."""
        with self._cond:
            self._closed = self._starter.closed = True
            processes, self._all, self._idle = list(self._all), set(), []
            self._cond.notify_all()
        for process in processes:
            process.kill()


#: The name older code and tests use.
CpuWorker = CpuPool


class _Starter:
    """Starts worker processes, one at a time, on a thread of its own: the first start
    waits for the forkserver to import Cirq (seconds), which no request thread should."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[Callable[[_Process | None], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.closed = False  # the pool is closing: start nothing more, and a start that
        # fails then (its forkserver stopped as the server exits) is no news for the log

    def start(self, then: Callable[[_Process | None], None]) -> None:
        """Start a worker; ``then(process)`` once it is ready (None if it failed)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="qnb-cpu-starter", daemon=True)
                self._thread.start()
        self._requests.put(then)

    def _serve(self) -> None:
        while True:
            then = self._requests.get()
            if self.closed:
                then(None)
                continue
            process = None
            try:
                process = _Process()
                process.wait_ready(STARTUP_SECONDS)
            except Exception:
                # Stopping (start_forked refuses then), the server's group may have had
                # the signal: this worker too. No news either way.
                in_a_stop = stopping() if process is None else process.died_in_a_stop()
                if not (self.closed or in_a_stop):
                    log.warning("a circuit worker process did not start", exc_info=True)
                if process is not None:
                    process.kill()
                process = None
            then(process)


# -- one worker process, seen from the server --------------------------------------------------


class _Process:
    """A worker process: a request is a pickled ``(fn, args, kwargs)`` sent down its
    pipe, the answer a pickled ``(status, value)`` sent back, each behind its length."""

    def __init__(self) -> None:
        self._process, self._conn = start_forked(serve_requests, name="qnb-circuit-worker")
        self.pid = self._process.pid
        self._pipe = self._conn.fileno()  # requests go down it, answers come back
        os.set_blocking(self._pipe, False)
        self.broken = False  # the pipe is out of step, or the process is gone
        self.timed_out = False

    def died_in_a_stop(self) -> bool:
        """Whether this process ended because the server is stopping (``_pool.died_in_a_stop``)."""
        return died_in_a_stop(self._process)

    def wait_ready(self, timeout: float) -> None:
        status, _ = pickle.loads(_read_frame(self._pipe, time.monotonic() + timeout))
        if status != "ready":
            raise QnbError(f"the circuit worker answered {status!r} at start")

    def call(self, seconds: float, request: tuple) -> tuple[str, Any]:
        """The answer to ``request``; TimeoutError past ``seconds`` (then the process is
        broken: kill it)."""
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)  # may raise: not broken
        until = time.monotonic() + seconds
        try:
            _write_frame(self._pipe, data, until)
            return pickle.loads(_read_frame(self._pipe, until))
        except TimeoutError:
            self.broken = self.timed_out = True
            raise
        except BaseException:
            self.broken = True
            raise

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        self._process.join(5)
        self._conn.close()


def _write_frame(fd: int, data: bytes, until: float | None) -> None:
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        _wait(fd, select.POLLOUT, until)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_frame(fd: int, until: float | None) -> bytes:
    (size,) = _FRAME.unpack(_read_exact(fd, _FRAME.size, until))
    return _read_exact(fd, size, until)


def _read_exact(fd: int, size: int, until: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        _wait(fd, select.POLLIN, until)
        try:
            chunk = os.read(fd, min(size, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the other end of the pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _wait(fd: int, event: int, until: float | None) -> None:
    """Until ``fd`` is ready (poll, not select: a server's descriptors pass 1024)."""
    poller = select.poll()
    poller.register(fd, event)
    timeout = None if until is None else (until - time.monotonic()) * 1000
    if timeout is not None and timeout <= 0:
        raise TimeoutError
    if not poller.poll(timeout):
        raise TimeoutError


# -- one worker process, from the inside --------------------------------------------------------


def serve_requests(conn: Connection) -> None:
    """The worker's main loop: answer requests until the server closes the pipe."""
    init_worker(PROCESS_NAME)  # Ctrl-C is the server's to handle; exit the moment the server is gone
    pipe = conn.fileno()
    os.dup2(2, 1)  # whatever Cirq or a plug-in prints goes to the server's log
    _warm()
    _write_frame(pipe, pickle.dumps(("ready", os.getpid())), None)
    while True:
        try:
            fn, args, kwargs = pickle.loads(_read_frame(pipe, None))
        except EOFError:
            os._exit(0)  # the server closed the pipe: it has stopped, or is gone
        try:
            answer: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # the server re-raises it in the request's thread
            answer = ("error", exc)
        _write_frame(pipe, _pickled(answer), None)


def _pickled(answer: tuple[str, Any]) -> bytes:
    try:
        return pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an answer (or an error) that cannot travel
        what = f"{type(answer[1]).__name__}: {answer[1]}"[:500]
        return pickle.dumps(("error", QnbError(f"the circuit worker could not send back {what} ({exc})")))


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


#: One pool per server process, shared by every app in it (tests make many).
worker = CpuPool()
# Ended before the interpreter tears its modules down.
atexit.register(worker.close)
