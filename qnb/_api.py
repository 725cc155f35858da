"""The functions of qnb's public API. Magics, widgets, CLI and server call these."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import getpass
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

import cirq
import httpx

from . import _circuits, _config, _features, _notify, _options, _prices, _secrets, _sweeps
from ._device import DeviceSpec
from ._errors import InvalidCircuitError, InvalidOptionError, UnknownJobError
from ._estimate import Estimate
from ._job import Job
from ._manager import JobManager, default_home, get_manager, is_done  # noqa: F401 (default_home: for the faces)
from ._queue import LocalQueueBackend, Queue
from ._results import JobResult
from ._sweeps import SweptItems
from ._status import JobStatus
from ._targets import QueueOwningTarget, Target, registry
from ._targets import register_target as _register_target
from ._targets._queue_server import RemoteTarget
from ._targets._registry import UnloadedTarget


def default_user() -> str:
    return os.environ.get("QNB_USER") or _login_name()


@functools.lru_cache(maxsize=1)
def _login_name() -> str:
    return getpass.getuser()  # a passwd lookup: ~1 ms, once per process is enough


def prepare(
    circuits: object, target: Target, *, shots: object, compile: bool = False
) -> dict[str, cirq.Circuit]:
    """Everything that can be wrong with a submission is found here, before anything is
    queued or stored: label -> circuit as it will run."""
    return prepare_items(circuits, target, shots=shots, compile=compile, write=False).circuits


def prepare_items(
    circuits: object,
    target: Target,
    *,
    shots: object,
    compile: object = False,
    sweeps: Mapping[str, Sequence[cirq.ParamResolver]] | None = None,
    write: bool = True,
    storing: bool = True,
) -> SweptItems:
    """:func:`prepare` for jobs with sweeps: each circuit of ``sweeps`` becomes one item
    per point (the circuit as written, with the point's resolver). With ``write``, the
    walk that checks a circuit also writes its Cirq JSON (the items' ``texts``), where
    it can (:func:`qnb._circuits.scan`). Without ``storing`` (an estimate), what only
    storing needs is not checked: that each operation can be written as Cirq JSON."""
    _options.check_shots(shots, max_shots=target.device.max_shots, target=target.name)
    compile = _options.check_flag("compile", compile)
    sweeps = sweeps or {}
    labelled = _circuits.normalize(circuits)
    unknown = sorted(set(sweeps) - set(labelled))
    if unknown:
        raise InvalidOptionError(f"sweeps for circuits that are not in the job: {unknown}")
    n_items = sum(len(sweeps.get(label, (None,))) for label in labelled)
    if n_items > target.device.max_batch:
        what = f"{n_items} items (circuits x sweep points)" if sweeps else f"{n_items} circuits"
        raise InvalidOptionError(
            f"a batch of {what} is above the max_batch of target "
            f"{target.name!r} ({target.device.max_batch}); submit it as several jobs"
        )
    scans: dict[str, _circuits.Scan | None] = {}
    for label, circuit in labelled.items():
        # (Compiled circuits are written once compiled: by the store's insert.)
        scans[label] = _circuits.scan(label, circuit) if write and not compile else None
        if scans[label] is None:
            _circuits.check_measured(label, circuit)  # (and repeated subcircuits' size, first)
        if label in sweeps:
            _sweeps.check_covered(label, circuit, sweeps[label])
    if compile:
        labelled = {
            label: _compile_swept(target, label, c) if label in sweeps else target.compile(c)
            for label, c in labelled.items()
        }
    for label, circuit in labelled.items():
        # A swept circuit is checked as it runs at its sweep's first point.
        points = sweeps.get(label)
        target.check(label, circuit if points is None else cirq.resolve_parameters(circuit, points[0]))
        scan = scans.get(label) if not compile else None
        unchecked = None if scan is None else scan.unchecked
        if storing:
            _circuits.check_serializable(label, circuit, resolved=points is None, operations=unchecked)
    texts = {label: scan.text for label, scan in scans.items() if scan is not None and not compile}
    return _sweeps.expand(labelled, sweeps, texts)


def _compile_swept(target: Target, label: str, circuit: cirq.Circuit) -> cirq.Circuit:
    """Compile a parameterised circuit once for all its points (Cirq's gateset
    optimisation keeps symbols), checking the result at the first point."""
    try:
        return target.compile(circuit)
    except Exception as exc:  # noqa: BLE001 - the message is what the user needs
        raise InvalidCircuitError(
            f"circuit {label!r} could not be compiled with its parameters as symbols "
            f"({type(exc).__name__}: {exc}); compile each point yourself with "
            "qnb.compile(cirq.resolve_parameters(circuit, point), target)"
        ) from None


def submit(
    circuits,
    *,
    target: str = "sim",
    shots: int = 1000,
    name: str | None = None,
    user: str | None = None,
    front: bool = False,
    compile: bool = False,
    priority: int = 0,
    params: cirq.Sweepable | None = None,
    tags: Sequence[str] | str = (),
    notify: Sequence[str] | str | bool | None = None,
    max_cost: float | None = None,
    retries: int = 0,
) -> Job:
    """Submit circuits as one job and return at once.

    ``circuits``: a ``cirq.Circuit``, an OpenQASM 2.0 string, a list of them (labels
    "0", "1", ...) or a dict label -> circuit. ``front`` puts the job at the head of
    the target's queue; ``compile`` maps circuits onto the target's device first.
    ``priority``: jobs of higher priority run first; equal ones in queue order.
    ``params``: a parameter sweep (any ``cirq.Sweepable``: ``cirq.Linspace``,
    ``cirq.Points``, ``Zip``, ``Product``, dicts, ...) run for every circuit; each point is
    one item, labelled ``"label[k]"``, and ``job.result().sweep()`` gives the results
    in sweep order. ``tags``: labels to find the job again by (``qnb.jobs(tag=...)``),
    at most 20 of 1 to 64 characters; one text is one tag. ``notify``: an Apprise URL
    (``"ntfy://my-topic"``) or a list of them, sent one message when the job ends; by
    default ``$QNB_NOTIFY`` or the targets file's ``[notify] urls``; ``False`` for none.
    Only this process sends it (the URLs, which may hold tokens, are never stored).
    ``max_cost``: refuse the job (``qnb.CostLimitError``, nothing stored) if its
    estimated cost is above this, in the target's currency; a target's ``budget`` in the
    targets file is checked as well. ``retries``: run again, up to this many times, an
    item whose failure is transient (a lost worker, a vendor's 5xx), never a
    deterministic one (a bad circuit).
    """
    sweeps = None
    if params is not None:
        points = _sweeps.resolvers(params)
        circuits = _circuits.normalize(circuits)  # parsed once: prepare takes it as it is
        sweeps = {label: points for label in circuits}
    return _submit_items(
        circuits, target=target, shots=shots, name=name, user=user, front=front,
        compile=compile, priority=priority, sweeps=sweeps, tags=tags, notify=notify,
        max_cost=max_cost, retries=retries,
    )  # fmt: skip


def _submit_items(
    circuits,
    *,
    target: str,
    shots: int,
    name: str | None,
    user: str | None,
    front: bool,
    compile: bool,
    priority: int,
    sweeps: Mapping[str, Sequence[cirq.ParamResolver]] | None,
    tags: object = (),
    notify: object = (),
    max_cost: object = None,
    retries: object = 0,
) -> Job:
    """One job of circuits, each with its sweep (``qnb.Sampler.run_batch`` gives each
    circuit a sweep of its own). ``notify`` defaults to none here: a Sampler's many
    jobs are not announced one by one."""
    manager = get_manager()
    tgt = manager.targets.get(target)
    options = _options.check(
        shots=shots, max_shots=tgt.device.max_shots, target=tgt.name, name=name, front=front,
        compile=compile, priority=priority, tags=tags, notify=notify, max_cost=max_cost,
        retries=retries,
    )  # fmt: skip
    user = _options.check_name(user, what="user")
    items = prepare_items(circuits, tgt, shots=options.shots, compile=options.compile, sweeps=sweeps)
    labelled = items.circuits
    # Refused over max_cost or the target's budget before anything is stored.
    features = [_features.features_of(c) for c in labelled.values()]  # (the estimate's too)
    cost = _prices.cost_at_submit(
        tgt, features, options.shots,
        max_cost=options.max_cost, spent=lambda: manager.store.spent(tgt.name),
    )  # fmt: skip
    texts = None if items.texts is None else _circuits.CircuitTexts(labelled.values(), items.texts)
    rec = manager.submit(
        tgt,
        labelled,
        shots=options.shots,
        name=options.name if options.name is not None else _options.default_name(labelled, swept=bool(sweeps)),
        # A queue server knows the user by their token; the local record says the same.
        user=user or getattr(tgt, "remote_user", None) or default_user(),
        front=options.front,
        priority=options.priority,
        params=items.params if items.swept else None,
        resolvers=items.resolvers if items.swept else None,
        circuit_json=texts,
        tags=options.tags,
        cost=cost.amount,
        currency=cost.currency,
        retries=options.retries,
        features=features,
        max_cost=options.max_cost,
    )
    job = Job(rec.id, manager=manager)
    _notify.notifier.watch(job, options.notify)
    return job


def estimate(
    circuits,
    *,
    target: str = "sim",
    shots: int = 1000,
    params: cirq.Sweepable | None = None,
    compile: bool = False,
) -> Estimate:
    """What submitting these circuits would take, before anything is submitted: a
    :class:`qnb.Estimate` with ``run_seconds``, ``wait_seconds``, ``finish``, ``cost``,
    ``currency`` and ``basis``. The circuits are checked as ``submit`` checks them (but
    for what only storing them needs), and nothing is stored."""
    manager = get_manager()
    tgt = manager.targets.get(target)
    sweeps = None
    if params is not None:
        points = _sweeps.resolvers(params)
        circuits = _circuits.normalize(circuits)
        sweeps = {label: points for label in circuits}
    items = prepare_items(circuits, tgt, shots=shots, compile=compile, sweeps=sweeps, write=False, storing=False)
    features = [_features.features_of(c) for c in items.circuits.values()]
    timing = manager.estimate_submission(tgt, features, shots)
    cost = _prices.cost_at_submit(tgt, features, shots, max_cost=None, spent=None)
    if cost.amount is None and timing.cost is not None:
        cost = _prices.Cost(timing.cost, timing.currency, "")  # a queue server's own price
    return dataclasses.replace(
        timing, cost=cost.amount, currency=cost.currency,
        basis="; ".join(part for part in (timing.basis, cost.basis) if part),
    )  # fmt: skip


def run(circuits, *, timeout: float | None = None, **options) -> JobResult:
    """Submit and wait: the blocking convenience. Options as for :func:`submit`."""
    return submit(circuits, **options).result(timeout=timeout)


def wait_all(timeout: float | None = None) -> list[Job]:
    """Wait until every job this process runs or follows has ended (e.g. at the end of
    a script, whose exit would otherwise leave them interrupted); returns them all,
    those that had ended before the call included.
    ``TimeoutError`` after ``timeout`` seconds, and the jobs carry on."""
    manager = get_manager()
    records = manager.live_records()
    deadline = None if timeout is None else time.monotonic() + timeout
    jobs = [Job(rec.id, manager=manager) for rec in records]
    for job in (j for j, rec in zip(jobs, records) if not rec.done):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            manager.when(job.id, is_done).result(left)
        except concurrent.futures.TimeoutError:
            unfinished = sum(1 for j in jobs if not j.done())
            raise TimeoutError(
                f"{unfinished} of {len(jobs)} jobs still running after {timeout} s; they carry on"
            ) from None
    return jobs


def get_job(job_id: str) -> Job:
    """A job by id (or a unique prefix of it), from this process or the store."""
    manager = get_manager()
    try:
        return Job(job_id, manager=manager)
    except UnknownJobError:
        return Job(manager.resolve_prefix(job_id), manager=manager)


def status_values(status) -> list[str] | None:
    """Statuses as the store names them (None for all), or an InvalidOptionError."""
    if status is None:
        return None
    values = [status] if isinstance(status, (str, JobStatus)) else list(status)
    try:
        return [JobStatus(s).value for s in values]
    except ValueError:
        raise InvalidOptionError(
            f"unknown status {status!r}; statuses: {', '.join(s.value for s in JobStatus)}"
        ) from None


def jobs(
    status: str | JobStatus | Iterable[str | JobStatus] | None = None,
    target: str | None = None,
    user: str | None = None,
    limit: int = 100,
    *,
    tag: str | Iterable[str] | None = None,
    name: str | None = None,
    since: datetime.datetime | float | None = None,
) -> list[Job]:
    """Jobs in the store, newest first (works in a new kernel too).

    ``tag``: only jobs with this tag (a list: with all of them); ``name``: only jobs
    whose name contains this text (any case); ``since``: only jobs added at or after
    this time (a ``datetime``, naive ones in local time, or epoch seconds)."""
    manager = get_manager()
    found = manager.find(
        status=status_values(status), target=target, user=user, limit=limit,
        tags=() if tag is None else _options.check_tags(tag), name=name, since=since_seconds(since),
    )  # fmt: skip
    return [Job(r.id, manager=manager) for r in found]


def since_seconds(since: object) -> float | None:
    """``since`` as epoch seconds, or an InvalidOptionError saying what it takes."""
    if since is None:
        return None
    if isinstance(since, datetime.datetime):
        return since.timestamp()
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    raise InvalidOptionError(
        f"since must be a datetime or epoch seconds, got {type(since).__name__} {since!r}; "
        "e.g. since=datetime.datetime.now() - datetime.timedelta(days=1)"
    )


def queue(target: str = "sim") -> Queue:
    """The shared-lab queue of ``target``."""
    return queue_of(get_manager(), target)


def queue_of(manager: JobManager, target: str) -> Queue:
    """``target``'s queue as ``manager`` sees it (layers above use their manager)."""
    tgt = manager.targets.get(target)  # unknown targets fail here
    if isinstance(tgt, QueueOwningTarget):
        backend = tgt.queue_backend()  # the target's own: everybody's entries
    else:
        backend = LocalQueueBackend(manager, target)
    return Queue(target, manager=manager, backend=backend, submit=submit)


def compile(circuits, target: str = "emulator") -> dict[str, cirq.Circuit]:
    """Rewrite circuits onto the target's native gates and connectivity."""
    tgt = registry.get(target)
    labelled = _circuits.normalize(circuits)
    return {label: tgt.compile(c) for label, c in labelled.items()}


def targets() -> dict[str, DeviceSpec | UnloadedTarget]:
    """Every target by name, with its :class:`DeviceSpec`.

    Targets known by name and not loaded yet (plug-ins under the ``qnb.targets`` entry
    points, the targets file's tables with a ``kind``) are listed without importing them,
    as an :class:`UnloadedTarget` whose ``description`` says where they come from; a
    plug-in that failed to load says why. ``description`` also says what survives a
    restart (a sampler target's jobs, having no job id, do not)."""
    return registry.listing()


def register_target(name: str, target: object, **options) -> Target:
    """Add a target under ``name``: a :class:`Target`, a ``cirq.Sampler``, or a kind with
    its options (``qnb.register_target("qpu", "ionq", backend="qpu.aria-1")``).

    Kinds: ``"density"``, ``"emulator"``, ``"dask"``, ``"ionq"``, ... (their options are
    described in the docs: ``docs/clusters.md``, ``docs/hardware/ionq.md``). A target that
    keeps its own queue and job ids (IonQ) has its unfinished jobs in the local store (from
    a kernel that ended) followed again, as :func:`connect` does for a queue server.
    """
    options = _secrets.masked(options)  # keys never sit in this frame as plain text
    made = _register_target(name, target, **options)
    if isinstance(made, QueueOwningTarget):
        get_manager().follow_target_jobs(made)
    return made


_connect_lock = threading.Lock()


def connect(
    name: str,
    url: str | None = None,
    *,
    token: str | None = None,
    timeout: float = 10.0,
    retry_for: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RemoteTarget:
    """Use the queue server at ``url`` as target ``name``.

    Without ``url`` it is read (with its token) from the targets file: ``$QNB_TARGETS``
    or ``~/.config/qnb/targets.toml``, tables ``[targets.NAME]`` with ``url`` and
    ``token`` or ``token_env``. Unfinished jobs of ``name`` in the local store (from a
    kernel that ended) are followed again.
    """
    if url is None:
        url, configured_token = _config.configured_server(name)
        token = token or configured_token
    manager = get_manager()
    with _connect_lock:
        target = RemoteTarget(
            name,
            url,
            token=token,
            loop=manager.loop,
            on_display_change=lambda: manager.renotify(name),
            timeout=timeout,
            retry_for=retry_for,
            transport=transport,
        )
        manager.targets.register(name, target)
    manager.follow_target_jobs(target)
    return target
