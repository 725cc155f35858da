"""Scale-out on a Dask cluster: the ``"dask"`` target kind and ``qnb serve --executor
dask://HOST:PORT``.

A :class:`DaskExecutor` runs a scheduled target's circuits on a Dask cluster instead of
the local process pool; the target, its queue, the store and the lifecycle stay as they
are (SQLite is the record: Dask forgets its futures when the client goes).

- **Chunks.** Dask costs about a millisecond a task, more than simulating a Bell pair,
  so the items that arrive together leave in chunks sized to run about
  ``task_seconds`` (50 ms) each, estimated from the circuits and corrected by what the
  workers report; never fewer chunks than the cluster has threads while there are
  items for them.
- **Keys.** Every chunk has its own key (``qnb-…``): sampling is random, and Dask's
  default ``pure=True`` would hand back a cached result for the same circuit.
- **One client per loop.** ``distributed.Client(asynchronous=True)`` lives on the loop
  that awaits :meth:`DaskExecutor.run` (the JobManager's).
- **Failures.** A worker that dies takes its tasks with it; Dask's scheduler runs them
  again elsewhere (``distributed.scheduler.allowed-failures``), and ``retries`` covers a
  task that raised. A scheduler that does not answer is a clear error after
  ``connect_timeout`` seconds, at ``register_target`` and when items run.
- **Cancel.** Cancelling an item drops it from its chunk; a chunk with no item left is
  cancelled on the cluster (one that is running finishes there and is ignored).

Jobs on a Dask target are not followed after a restart (the futures die with the
client): like local ones, they are marked interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import math
import pickle
import socket
import time
import uuid
from urllib.parse import urlsplit

import cirq
import distributed

from .._device import DeviceSpec
from .._errors import InvalidOptionError, ServerUnreachableError
from ._base import Target
from ._pool import Outcome, task_of
from ._simulators import SimulatorTarget

DEFAULT_PORT = 8786
TASK_SECONDS = 0.05
CONNECT_TIMEOUT = 10.0
#: What a chunk of items costs beyond simulating them, and the first guess of the
#: seconds one unit of ``_weight`` takes (qsim on one core); both are corrected by
#: what the workers measure.
ITEM_OVERHEAD_SECONDS = 0.001
FIRST_SECONDS_PER_WEIGHT = 2e-9
MAX_CHUNK_ITEMS = 256

ENGINES = {
    "qsim": (30, "qsimcirq state vector"),
    "cirq": (26, "cirq.Simulator state vector"),
    "density": (12, "cirq.DensityMatrixSimulator"),
}


# -- the worker's side ----------------------------------------------------------------------


def run_chunk(tasks: list[bytes]) -> tuple[list[Outcome], float]:
    """On a Dask worker: simulate a chunk of pickled tasks as the pool's workers do
    (qsim, with its fallback to Cirq's simulators); the outcomes and the seconds taken."""
    from . import _worker  # imports qsimcirq: on the worker, not in the kernel

    start = time.perf_counter()
    outcomes = [_worker.run_one(task) for task in tasks]
    return outcomes, time.perf_counter() - start


# -- the kernel's side -----------------------------------------------------------------------


def scheduler_address(address: str) -> str:
    """``tcp://HOST:PORT`` from ``tcp://…``, ``tls://…``, ``dask://HOST:PORT`` or
    ``HOST:PORT``; a clear error for anything else."""
    if not isinstance(address, str) or not address.strip():
        raise InvalidOptionError(f"a Dask address is a string such as 'tcp://HOST:8786', got {address!r}")
    text = address.strip()
    if "://" not in text:
        text = "tcp://" + text
    parts = urlsplit(text)
    scheme = "tcp" if parts.scheme == "dask" else parts.scheme
    try:
        port = parts.port
    except ValueError:
        port = None
    if scheme not in ("tcp", "tls") or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidOptionError(
            f"{address!r} is not a Dask scheduler address; use tcp://HOST:PORT (or "
            "dask://HOST:PORT)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or DEFAULT_PORT}"


def check_reachable(address: str, timeout: float) -> None:
    """Fail at once, with the address in the message, when nothing listens there."""
    parts = urlsplit(address)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            pass
    except OSError as exc:
        raise ServerUnreachableError(
            f"no Dask scheduler answers at {address} (waited up to {timeout:g} s: {exc}); "
            "start one (`dask scheduler`, or distributed.LocalCluster) or check the address"
        ) from None


def _weight(circuit: cirq.Circuit, shots: int) -> int:
    n_qubits = len(circuit.all_qubits())
    n_ops = sum(len(moment) for moment in circuit.moments)
    return (n_ops + 1) * (1 << min(n_qubits, 40)) + shots * n_qubits


@dataclasses.dataclass(eq=False)
class _Item:
    task: tuple
    weight: int
    future: asyncio.Future
    chunk: _Chunk | None = None


@dataclasses.dataclass(eq=False)
class _Chunk:
    items: list[_Item]
    weight: int
    future: distributed.Future | None = None


class _Connection:
    """The executor's client on one event loop, and the items waiting to leave."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.client: distributed.Client | None = None
        self.connecting: asyncio.Lock = asyncio.Lock()
        self.pending: list[_Item] = []
        self.flush_scheduled = False
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class DaskExecutor:
    """Runs circuits on the Dask cluster at ``address`` (see the module's docstring)."""

    def __init__(
        self,
        address: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        retries: int = 2,
        task_seconds: float = TASK_SECONDS,
        check: bool = True,
    ):
        """``check``: see at once that a scheduler answers (``ServerUnreachableError``
        after ``connect_timeout`` seconds otherwise)."""
        self.address = scheduler_address(address)
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.task_seconds = task_seconds
        self.seconds_per_weight = FIRST_SECONDS_PER_WEIGHT
        #: Tasks and items sent so far, and the seconds workers spent on them
        #: (benchmarks and tests read them).
        self.sent_chunks = 0
        self.sent_items = 0
        self.worker_seconds = 0.0
        #: The cluster's threads, as last seen (the estimator's parallelism; None: not yet).
        self.threads: int | None = None
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        if check:
            check_reachable(self.address, connect_timeout)

    def __repr__(self) -> str:
        return f"<DaskExecutor {self.address}>"

    async def run(
        self, engine: str, noise: float, circuit: cirq.Circuit, shots: int, *,
        params: cirq.ParamResolver | None = None, circuit_json: str | None = None,
    ) -> Outcome:
        """As the local pool: ``circuit_json`` (the stored text) travels to the cluster
        instead of the pickled circuit, and the Dask worker reads it."""
        conn = self._connection()
        item = _Item(task_of(engine, noise, circuit, shots, params, circuit_json), _weight(circuit, shots),
                     conn.loop.create_future())  # fmt: skip
        conn.pending.append(item)
        if not conn.flush_scheduled:
            # The items of a job arrive in one turn of the loop: they leave together.
            conn.flush_scheduled = True
            conn.loop.call_soon(self._flush, conn)
        try:
            return await item.future
        except asyncio.CancelledError:
            self._forget(conn, item)
            raise

    async def client(self) -> distributed.Client:
        """This loop's client, connected on first use."""
        conn = self._connection()
        async with conn.connecting:
            if conn.client is None or conn.client.status in ("closing", "closed"):
                client = distributed.Client(
                    self.address, asynchronous=True, timeout=self.connect_timeout,
                    set_as_default=False,
                )  # fmt: skip
                try:
                    await asyncio.wait_for(client, self.connect_timeout + 1)
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.close(), 1)
                    raise ServerUnreachableError(
                        f"no Dask scheduler answers at {self.address} (waited up to "
                        f"{self.connect_timeout:g} s: {type(exc).__name__}: {exc})"
                    ) from None
                conn.client = client
                conn.spawn(_close_with_the_loop(client))
            return conn.client

    async def close(self) -> None:
        """Close this loop's client (its unfinished tasks are released on the cluster)."""
        conn = self._connections.pop(asyncio.get_running_loop(), None)
        if conn is not None and conn.client is not None:
            await conn.client.close()

    # -- inside -----------------------------------------------------------------------

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = self._connections.get(loop)
        if conn is None:
            for old in [lp for lp in self._connections if lp.is_closed()]:
                del self._connections[old]  # a JobManager that was closed
            conn = self._connections[loop] = _Connection(loop)
        return conn

    def _flush(self, conn: _Connection) -> None:
        conn.flush_scheduled = False
        items = [item for item in conn.pending if not item.future.done()]
        conn.pending = []
        if items:
            conn.spawn(self._submit(conn, items))

    async def _submit(self, conn: _Connection, items: list[_Item]) -> None:
        try:
            client = await self.client()
        except ServerUnreachableError as exc:
            for item in items:
                _settle(item, (False, str(exc), True))  # the cluster away: a rerun may do
            return
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values())
        self.threads = max(1, threads)
        for chunk in self._chunks([item for item in items if not item.future.done()], max(1, threads)):
            if all(item.future.done() for item in chunk.items):
                continue  # cancelled while the chunks before it were sent
            try:
                tasks = [pickle.dumps(item.task, protocol=pickle.HIGHEST_PROTOCOL) for item in chunk.items]
            except Exception as exc:
                for item in chunk.items:
                    _settle(item, (False, f"cannot send the circuit to the cluster: {exc}", True))
                continue
            chunk.future = client.submit(
                run_chunk, tasks, key=f"qnb-{uuid.uuid4().hex}", pure=False, retries=self.retries
            )
            self.sent_chunks += 1
            self.sent_items += len(tasks)
            conn.spawn(self._collect(chunk, chunk.future))
            # Let the client send it now: the first chunks run while the rest are pickled.
            await asyncio.sleep(0)

    def _chunks(self, items: list[_Item], threads: int) -> list[_Chunk]:
        """Consecutive items, each chunk about ``task_seconds`` of work, and at least one
        chunk per thread while there are items enough."""
        most = max(1, min(MAX_CHUNK_ITEMS, math.ceil(len(items) / threads)))
        chunks: list[_Chunk] = []
        current: list[_Item] = []
        seconds = 0.0
        for item in items:
            current.append(item)
            seconds += ITEM_OVERHEAD_SECONDS + item.weight * self.seconds_per_weight
            if seconds >= self.task_seconds or len(current) >= most:
                chunks.append(self._chunk(current))
                current, seconds = [], 0.0
        if current:
            chunks.append(self._chunk(current))
        return chunks

    @staticmethod
    def _chunk(items: list[_Item]) -> _Chunk:
        chunk = _Chunk(items, sum(item.weight for item in items))
        for item in items:
            item.chunk = chunk
        return chunk

    async def _collect(self, chunk: _Chunk, future) -> None:
        # The future is passed in: a cancel may take it off the chunk (_forget) before
        # this task first runs.
        try:
            outcomes, seconds = await future
        except asyncio.CancelledError:
            if all(item.future.done() for item in chunk.items):
                return  # the chunk was cancelled because nobody waits for it
            raise
        except Exception as exc:  # the task raised (after its retries) or was lost
            error = f"the Dask cluster at {self.address} could not run it: {type(exc).__name__}: {exc}"
            for item in chunk.items:
                _settle(item, (False, error, True))  # a worker lost, or the cluster
            return
        for item, outcome in zip(chunk.items, outcomes):
            _settle(item, outcome)
        self.worker_seconds += seconds
        self._learn(chunk, seconds)

    def _learn(self, chunk: _Chunk, seconds: float) -> None:
        """Correct the seconds-per-weight estimate from what a worker measured."""
        work = seconds - ITEM_OVERHEAD_SECONDS * len(chunk.items)
        if chunk.weight > 0 and work > 0:
            measured = work / chunk.weight
            self.seconds_per_weight = 0.7 * self.seconds_per_weight + 0.3 * measured

    def _forget(self, conn: _Connection, item: _Item) -> None:
        chunk = item.chunk
        if chunk is None or chunk.future is None:
            return  # not sent yet: _flush and _submit skip it
        if all(i.future.done() for i in chunk.items) and conn.client is not None:
            future, chunk.future = chunk.future, None
            conn.spawn(_cancel(conn.client, future))


async def _close_with_the_loop(client: distributed.Client) -> None:
    """Close the client when the loop's tasks are cancelled (``JobManager.close``, at
    exit too): a client left to the garbage collector cannot close on a stopped loop."""
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(client.close(), 2)


async def _cancel(client: distributed.Client, future: distributed.Future) -> None:
    with contextlib.suppress(Exception):
        await client.cancel([future], reason="cancelled in qnb")


def _settle(item: _Item, outcome: Outcome) -> None:
    if not item.future.done():
        item.future.set_result(outcome)


# -- targets ---------------------------------------------------------------------------------


def DaskTarget(
    name: str,
    *,
    address: str,
    engine: str = "qsim",
    noise: float = 0.0,
    max_qubits: int | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    retries: int = 2,
    max_running_jobs: int = 64,
) -> SimulatorTarget:
    """The ``"dask"`` kind: a simulator (``engine``: ``qsim``, ``cirq`` or ``density``;
    depolarizing ``noise``) whose circuits run on the Dask cluster at ``address``."""
    if engine not in ENGINES:
        raise InvalidOptionError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
        raise InvalidOptionError(f"noise must be a probability in [0, 1), got {noise!r}")
    executor = DaskExecutor(address, connect_timeout=connect_timeout, retries=retries)
    limit, about = ENGINES[engine]
    device = DeviceSpec(
        name,
        max_qubits=max_qubits or limit,
        description=(
            f"{about}{f', noise {noise}' if noise else ''} on the Dask cluster at "
            f"{executor.address}; not followed after a restart (marked interrupted, like "
            "local jobs)"
        ),
    )
    return SimulatorTarget(
        name, engine=engine, device=device, noise=float(noise), executor=executor,
        max_running_jobs=max_running_jobs,
    )  # fmt: skip


def on_cluster(target: Target, executor: DaskExecutor) -> SimulatorTarget:
    """A copy of a simulator target (``sim``, the ``emulator``, ...) whose circuits run
    through ``executor`` (``qnb serve --executor dask://…``)."""
    if not isinstance(target, SimulatorTarget):
        raise InvalidOptionError(
            f"target {target.name!r} ({type(target).__name__}) does not run circuits "
            "through an executor; --executor takes a simulator or the emulator"
        )
    moved = copy.copy(target)
    moved.executor = executor
    moved.device = dataclasses.replace(
        target.device, description=f"{target.device.description}; circuits run on Dask at {executor.address}"
    )
    return moved
