"""IonQ's cloud as a target that owns its queue, through IonQ's own client (``cirq-ionq``).

    qnb.register_target("qpu", "ionq", backend="qpu.aria-1")     # key: $IONQ_API_KEY
    job = qnb.submit(circuit, target="qpu", shots=1000)

Every HTTP call is ``cirq_ionq.Service`` / ``cirq_ionq.Job``: no REST client or serializer
of ours. That client is synchronous (``requests``, without a timeout), so its calls run on
a small thread pool of the target's, each with a deadline on the manager's loop, and with
a short ``max_retry_seconds`` (its default retries for about an hour).

- **Jobs survive the kernel.** The remote id the manager stores before the first poll is
  ``"<IonQ job id>|single|<backend>"`` or ``"...|batch|..."``: enough to read the job right
  after a restart (the measurement keys and qubit counts are in the job's metadata at
  IonQ). A batch is one multi-circuit IonQ job; cirq-ionq reads a batch's results from
  another address than a single circuit's, chosen by a ``batch_mode`` flag on the whole
  client that only its last ``create_job`` sets, so the target keeps one ``Service`` per
  mode and sets the flag of the batch one itself: a fresh process reads both right.
- **One poller per target**, not one per job: up to :data:`GET_EACH_UP_TO` followed jobs
  are read one by one, more through IonQ's job listing (one request per unfinished
  status), every ``poll_seconds``. Jobs that left the listing are read by id once.
- **Statuses** map through :data:`VENDOR_STATUS`, the one table. An unknown status is
  not terminal (the job keeps its last known state). The raw status stays on the handle
  (``handle.vendor_status``) and in a finished item's error text (``IonQ status
  'failed': <IonQ's reason>``). A client-side wait that runs out, or an IonQ that cannot
  be reached, never fails a job: it is read again later (``target.connected`` is False
  meanwhile).
- **Created exactly once.** IonQ has no idempotency key, so the job's name carries its
  qnb id (``"<name> (qnb <id>)"``). The POST goes through a client of its own that does
  not retry (cirq-ionq's own retries would POST again after a 500) and answers only the
  id; reading the job is the follower's work. A POST that fails other than by a
  refusal leaves the creation in doubt: the job is looked for by name before any new
  POST (see :mod:`qnb._targets._remote`). cirq-ionq's ``create_job`` reads the job back
  right after its POST, and treating a failed read as a failed creation made 3 paid
  jobs out of 12 rate-limited reads.
- **Cancel** reads the job first: IonQ marks even a completed job canceled, so a job that
  has finished keeps its outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import cirq
import cirq_ionq
from cirq_ionq import ionq_exceptions

from .. import _config
from .._secrets import Secret
from .._device import DeviceSpec, check_qubits_only
from .._errors import (
    DeviceValidationError,
    InvalidCircuitError,
    InvalidOptionError,
    NotAuthenticatedError,
    QnbError,
    RemoteError,
    ServerUnreachableError,
    UnknownJobError,
    VendorRejectedError,
)
from .._status import TERMINAL, JobStatus
from ._base import ItemOutcome, QueueOwningTarget, TargetJob
from ._calls import CallsRefused, CallTimeout, DeadlineCalls
from ._remote import Creation, qnb_marker, qnb_name

logger = logging.getLogger("qnb")

#: IonQ's job statuses (v0.4) -> qnb's. The one table; a status not in it is not terminal.
VENDOR_STATUS: dict[str, JobStatus] = {
    "ready": JobStatus.QUEUED,
    "submitted": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELLED,
    "deleted": JobStatus.CANCELLED,  # removed at IonQ (console or API): its results are gone
}
UNFINISHED_AT_IONQ = ("ready", "submitted", "running")
#: Followed jobs read one by one up to this many; more, through the listing.
GET_EACH_UP_TO = 3
#: The IonQ simulator's size; a QPU's comes from its calibration.
SIMULATOR_QUBITS = 29
MAX_BACKOFF_SECONDS = 30.0
#: A job in doubt is looked for among this many of the account's newest jobs.
FIND_AMONG = 1000
NATIVE_GATES = (
    "x", "y", "z", "h", "s", "si", "t", "ti", "v", "vi", "rx", "ry", "rz", "cnot", "swap",
    "xx", "yy", "zz", "pauliexp", "gpi", "gpi2", "ms", "zz (native)", "measure",
)  # fmt: skip


def _api_dict(job: cirq_ionq.Job) -> dict:
    """The API's last answer about ``job`` as cirq-ionq keeps it (``job.status()`` would
    ask IonQ again for an unfinished job; a listing already brought the status)."""
    return job._job


@dataclasses.dataclass
class IonQRun:
    """The handle of one IonQ job: the items' statuses as last read."""

    ionq_id: str
    batch: bool
    backend: str
    statuses: list[JobStatus]
    params: list[cirq.ParamResolver | None] | None = None
    vendor_status: str = ""
    job: cirq_ionq.Job | None = None  # the job as last read by id
    outcomes: dict[int, ItemOutcome] | None = None  # once finished and read
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    reading: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def finished(self) -> bool:
        return all(s in TERMINAL for s in self.statuses)

    @property
    def remote_id(self) -> str:
        return f"{self.ionq_id}|{'batch' if self.batch else 'single'}|{self.backend}"


def parse_remote_id(remote_id: str, n_items: int) -> tuple[str, bool, str | None]:
    """``(IonQ job id, batch?, backend)`` from a stored remote id (a bare IonQ id, as a
    user may have, is a batch when it has several items)."""
    ionq_id, _, rest = remote_id.partition("|")
    mode, _, backend = rest.partition("|")
    batch = mode == "batch" if mode else n_items > 1
    return ionq_id, batch, backend or None


def _secret(text: str | None) -> Secret | None:
    return Secret(text) if text and not isinstance(text, Secret) else text


def _key_from(name: str, variable: str | None) -> str | None:
    if variable is None:
        return None
    key = _secret(os.getenv(variable))
    if not key:
        raise NotAuthenticatedError(
            f"IonQ target {name!r} reads its API key from ${variable}, which is not set"
        )
    return key


def _resolve_options(
    name: str, backend, api_key, api_key_env, remote_host
) -> tuple[str, str, str | None]:
    """Key and host: the arguments (``api_key_env`` names a variable), else cirq-ionq's
    environment variables, else the targets file's ``[targets.NAME]`` table with
    ``kind = "ionq"`` (``backend``, ``api_key_env`` or ``api_key``, ``remote_host``)."""
    api_key = api_key or _key_from(name, api_key_env)
    api_key = api_key or _secret(os.getenv("CIRQ_IONQ_API_KEY") or os.getenv("IONQ_API_KEY"))
    remote_host = remote_host or os.getenv("CIRQ_IONQ_REMOTE_HOST") or os.getenv("IONQ_REMOTE_HOST")
    if not (api_key and remote_host and backend):
        kind, configured = _config.configured_kinds().get(name, ("", {}))
        if kind == "ionq":
            api_key = api_key or _secret(configured.get("api_key")) or _key_from(name, configured.get("api_key_env"))
            remote_host = remote_host or configured.get("remote_host")
            backend = backend or configured.get("backend")
    backend = backend or "simulator"
    if not isinstance(backend, str) or not (backend == "simulator" or backend.startswith("qpu.")):
        raise InvalidOptionError(
            f"IonQ target {name!r}: backend must be 'simulator' or 'qpu.<name>' "
            f"(e.g. 'qpu.aria-1'), got {backend!r}"
        )
    if not api_key:
        raise NotAuthenticatedError(
            f"IonQ target {name!r} has no API key: pass api_key=..., set $IONQ_API_KEY, or "
            f"add api_key_env to [targets.{name}] (kind = \"ionq\") in {_config.targets_file()}"
        )
    api_key = _secret(api_key)  # never a plain str in a frame (tracebacks with locals)
    if any(ch.isspace() or not ch.isprintable() for ch in api_key):
        # requests refuses such a header, and cirq-ionq retries that as if IonQ were away.
        raise NotAuthenticatedError(
            f"IonQ target {name!r}: the API key contains a space, newline or control "
            "character (often copied with the key); remove it where the key is set"
        )
    return backend, api_key, remote_host


def _as_qnb_error(exc: BaseException, what: str, host: str) -> QnbError:
    """cirq-ionq's exceptions as qnb's (never with the key: cirq-ionq's messages carry
    the request body at most, not its headers)."""
    if isinstance(exc, QnbError):
        return exc
    if isinstance(exc, ionq_exceptions.IonQNotFoundException):
        return UnknownJobError(f"IonQ at {host} does not know this {what} (404)")
    if isinstance(exc, ionq_exceptions.IonQException):
        status = exc.status_code
        if status == 401:
            return NotAuthenticatedError(
                f"IonQ at {host} refused the API key (401) on {what}: check api_key= or "
                "$IONQ_API_KEY"
            )
        text = str(exc)
        if len(text) > 600:
            text = text[:600] + " …"
        if status is not None and 400 <= status < 500:
            return VendorRejectedError(f"IonQ refused {what} ({status}): {text}", status=status)
        return RemoteError(f"IonQ failed {what}: {text}", status=status)
    if isinstance(exc, TimeoutError):  # cirq-ionq's retries ran out (429, 5xx, no answer)
        return ServerUnreachableError(f"IonQ at {host} did not answer {what}: {exc}")
    return RemoteError(f"IonQ call {what} failed: {type(exc).__name__}: {exc}")


class IonQTarget(QueueOwningTarget):
    """An IonQ backend (``"simulator"`` or ``"qpu.<name>"``) as a qnb target.

    ``poll_seconds``: how often followed jobs are read (cirq-ionq's own ``results()``
    polls every second). ``call_timeout``: the deadline of one call to IonQ.
    ``max_retry_seconds``: cirq-ionq's retries of one call (429, 5xx, no connection).
    ``seed``: for sampling the simulator's probabilities (cirq-ionq samples client-side).
    """

    def __init__(
        self,
        name: str,
        *,
        backend: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        remote_host: str | None = None,
        poll_seconds: float = 1.0,
        call_timeout: float = 30.0,
        max_retry_seconds: int = 2,
        threads: int = 4,
        max_shots: int = 100_000,
        max_batch: int | None = None,
        job_settings: dict | None = None,
        seed: int | None = None,
    ):
        self.name = name
        self.backend, api_key, remote_host = _resolve_options(
            name, backend, api_key, api_key_env, remote_host
        )
        self.poll_seconds = poll_seconds
        self.call_timeout = call_timeout
        self.seed = seed
        # Daemon threads: a call IonQ never answers (cirq-ionq sets no timeout) must not
        # keep a finished script from exiting.
        self._calls = DeadlineCalls(f"qnb-ionq-{name}", threads=threads)
        self.job_settings = job_settings

        def service(retry_seconds: int) -> cirq_ionq.Service:
            return cirq_ionq.Service(
                remote_host=remote_host, api_key=api_key.reveal(), max_retry_seconds=retry_seconds,
                job_settings=job_settings,
            )  # fmt: skip

        # One Service per mode: cirq-ionq reads results by its client's batch_mode flag,
        # which only its last create_job sets (see the module's notes).
        self._single = service(max_retry_seconds)
        self._batch = service(max_retry_seconds)
        self._batch._client.batch_mode = True
        # The creating POST alone, never retried by cirq-ionq (see "Created exactly once").
        self._creator = service(0)._client
        self.host = self._single.remote_host
        self.device = self._device_from_ionq(max_shots, max_batch)
        self._runs: dict[str, IonQRun] = {}
        self._follower: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._connected = True

    # -- set-up: the device, from IonQ (this also checks the key) ----------------------------

    def _blocking(self, what: str, fn: Callable[[], Any]) -> Any:
        """A call to IonQ from the caller's thread (set-up), with the call deadline."""
        try:
            return self._calls.call(self.call_timeout, fn)
        except Exception as exc:
            raise self._as_error(exc, what) from None

    def _as_error(self, exc: Exception, what: str) -> QnbError:
        if isinstance(exc, (CallTimeout, CallsRefused)):
            return ServerUnreachableError(
                f"no answer from IonQ at {self.host} to {what} within {self.call_timeout:g} s"
            )
        return _as_qnb_error(exc, what, self.host)

    def _device_from_ionq(self, max_shots: int, max_batch: int | None) -> DeviceSpec:
        connectivity = None
        if self.backend == "simulator":
            # A cheap authenticated call: a wrong key is found here, not at the first job.
            self._blocking("the job listing", lambda: self._single.list_jobs(limit=1, batch_size=1))
            n_qubits, source = SIMULATOR_QUBITS, "simulator's size"
        else:
            calibration = self._blocking("the current calibration", self._single.get_current_calibration)
            n_qubits = calibration.num_qubits()
            pairs = {frozenset(p) for p in calibration.connectivity() if p[0] != p[1]}
            if len(pairs) < n_qubits * (n_qubits - 1) // 2:  # not all-to-all
                connectivity = tuple(tuple(sorted(p)) for p in pairs)
            source = f"calibration of {calibration.target()}"
        qubits = tuple(cirq.LineQubit.range(n_qubits))
        coupling = "all-to-all" if connectivity is None else f"{len(connectivity)} pairs"
        extra = {} if max_batch is None else {"max_batch": max_batch}
        return DeviceSpec(
            name=self.name,
            max_qubits=n_qubits,
            qubits=qubits,
            connectivity=connectivity,
            compile_to=cirq_ionq.IonQTargetGateset(),
            native_gates=NATIVE_GATES,
            max_shots=max_shots,
            description=(
                f"IonQ {self.backend} via cirq-ionq at {self.host} ({n_qubits} qubits, "
                f"{coupling}, from the {source}); jobs are followed again after a restart"
            ),
            **extra,
        )

    # -- circuits: IonQ's own serializer decides -----------------------------------------------

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        self.device.validate(label, circuit)  # qubits: LineQubits 0..n-1, no qudits
        try:
            cirq_ionq.Serializer().serialize_single_circuit(circuit)
        except Exception as exc:
            gate = _refused_gate(circuit)
            named = f"gate {gate} ({type(gate.gate).__name__})" if gate is not None else "it"
            raise DeviceValidationError(
                f"circuit {label!r}: IonQ's serializer (cirq-ionq) refuses {named}: {exc}; "
                "submit with compile=True to rewrite it into IonQ's gates"
            ) from None

    def compile(self, circuit: cirq.Circuit) -> cirq.Circuit:
        """Onto ``LineQubit(0..n-1)`` (IonQ numbers its qubits; any two couple), then into
        IonQ's gates."""
        check_qubits_only(None, circuit, target=self.name)
        qubits = sorted(circuit.all_qubits())
        if not all(isinstance(q, cirq.LineQubit) and 0 <= q.x < self.device.max_qubits for q in qubits):
            circuit = circuit.transform_qubits(dict(zip(qubits, cirq.LineQubit.range(len(qubits)))))
        compiled = self.device.compile(circuit)
        # The serializer takes no global phase, which cannot change what is measured.
        return cirq.Circuit(
            cirq.Moment(op for op in moment if not isinstance(op.gate, cirq.GlobalPhaseGate))
            for moment in compiled
        )

    # -- calls to IonQ on the pool -----------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        try:
            return await self._calls.acall(self.call_timeout, fn, *args, **kwargs)
        except Exception as exc:
            raise self._as_error(exc, what) from None

    def _service(self, batch: bool) -> cirq_ionq.Service:
        return self._batch if batch else self._single

    @property
    def connected(self) -> bool:
        return self._connected

    # -- the Target protocol -------------------------------------------------------------------

    async def submit(self, job: TargetJob) -> IonQRun:
        params = job.params or [None] * len(job.circuits)
        circuits = [c if p is None else cirq.resolve_parameters(c, p) for c, p in zip(job.circuits, params)]
        batch = len(circuits) > 1
        program = await self._serialize(circuits, batch)
        creation = Creation(
            job, vendor=f"IonQ at {self.host}",
            post=functools.partial(self._post, program, batch, job),
            find=functools.partial(self._find, job.job_id),
        )  # fmt: skip
        ionq_id = await creation.run()
        self._connected = True
        # Read by the follower, never here: a failed read is no failed creation.
        run = IonQRun(ionq_id, batch, self.backend, [JobStatus.QUEUED] * len(circuits), params=params)
        run.changed.set()  # the first poll reports the state at hand-over
        self._follow(run)
        return run

    async def _serialize(self, circuits: list[cirq.Circuit], batch: bool) -> Any:
        serializer = cirq_ionq.Serializer()
        if batch:
            make = functools.partial(serializer.serialize_many_circuits, circuits)
        else:
            make = functools.partial(serializer.serialize_single_circuit, circuits[0])
        try:
            return await self._calls.acall(self.call_timeout, make, job_settings=self.job_settings)
        except (ValueError, ionq_exceptions.IonQSerializerMixedGatesetsException) as exc:
            raise InvalidCircuitError(f"IonQ's serializer refuses this job: {exc}") from None
        except CallTimeout:
            raise InvalidCircuitError(
                f"IonQ's serializer took more than {self.call_timeout:g} s on this job; "
                "submit fewer or smaller circuits"
            ) from None

    async def _post(self, program: Any, batch: bool, job: TargetJob, creation: Creation) -> str:
        """The creating POST alone: IonQ's id of the new job. Past the call deadline the
        POST may still arrive: the creation keeps its future and sends nothing again."""
        def create() -> str:
            answer = self._creator.create_job(
                serialized_program=program, repetitions=job.shots, target=self.backend,
                name=qnb_name(job), batch_mode=batch,
            )  # fmt: skip
            return str(answer["id"])

        future = self._calls.submit(create)
        wrapped = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({wrapped}, timeout=self.call_timeout)
        if not done:
            wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())  # heard later, by the creation
            self._calls.abandon(future)
            creation.in_flight = future
            self._connected = False
            raise ServerUnreachableError(
                f"no answer from IonQ at {self.host} to the job's creation within "
                f"{self.call_timeout:g} s"
            )
        try:
            return future.result()
        except Exception as exc:
            error = self._as_error(exc, "the job's creation")
            self._connected = not error.retryable
            raise error from None

    async def _find(self, job_id: str) -> str | None:
        """IonQ's id of the job whose name carries ``job_id``, if IonQ has it."""
        marker = qnb_marker(job_id)
        listed = await self._call(
            "the job listing", self._single._client.list_jobs, limit=FIND_AMONG, batch_size=FIND_AMONG
        )
        found = next((j["id"] for j in listed if str(j.get("name") or "").endswith(marker)), None)
        if found is not None:
            logger.info("qnb: job %s found at IonQ as %s after a creation in doubt", job_id, found)
        return found

    def handle_id(self, handle: IonQRun) -> str:
        return handle.remote_id

    async def reattach(self, remote_id: str, n_items: int) -> IonQRun:
        """No I/O: the poller reads the job (an IonQ that is away now is no failure)."""
        ionq_id, batch, backend = parse_remote_id(remote_id, n_items)
        run = IonQRun(ionq_id, batch, backend or self.backend, [JobStatus.QUEUED] * n_items)
        self._follow(run)
        return run

    async def poll(self, handle: IonQRun) -> list[JobStatus]:
        await handle.changed.wait()
        handle.changed.clear()
        return list(handle.statuses)

    async def results(self, handle: IonQRun, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        async with handle.reading:
            if handle.outcomes is None:
                handle.outcomes = await self._read_outcomes(handle)
        return {i: handle.outcomes[i] for i in indices}

    async def cancel(self, handle: IonQRun) -> bool:
        if not handle.finished:
            # Read first: IonQ would mark a completed job "canceled" too.
            job = await self._call("the job", self._service(handle.batch).get_job, handle.ionq_id)
            self._apply(handle, job, _api_dict(job))
        if not handle.finished:
            job = handle.job
            await self._call("the cancellation", job.cancel)
            self._apply(handle, job, _api_dict(job))
        return True

    # -- following jobs: one poller per target -------------------------------------------------

    def _follow(self, run: IonQRun) -> None:
        if run.finished:
            return
        self._runs[run.ionq_id] = run
        if self._follower is None or self._follower.done():
            self._wake = asyncio.Event()
            self._follower = asyncio.get_running_loop().create_task(self._poll_forever())
        else:
            self._wake.set()

    async def _poll_forever(self) -> None:
        backoff = self.poll_seconds
        while self._runs:
            started = time.monotonic()
            try:
                await self._poll_once()
            except RemoteError as exc:
                # IonQ away, slow, or refusing us for now: the jobs stay as they are.
                if self._connected:
                    logger.warning("qnb: IonQ target %r cannot read its jobs now (%s); retrying", self.name, exc)
                self._connected = False
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                await asyncio.sleep(backoff)
                continue
            except Exception:  # a bug here must not stop following the other jobs
                logger.exception("qnb: IonQ target %r: reading its jobs failed", self.name)
                await asyncio.sleep(MAX_BACKOFF_SECONDS)
                continue
            self._connected = True
            backoff = self.poll_seconds
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.poll_seconds - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass

    async def _poll_once(self) -> None:
        runs = list(self._runs.values())
        unread = runs
        if len(runs) > GET_EACH_UP_TO:
            listed: dict[str, dict] = {}
            for status in UNFINISHED_AT_IONQ:
                found = await self._call(
                    "the job listing", self._single.list_jobs, status=status, limit=1_000_000
                )
                listed.update((j.job_id(), _api_dict(j)) for j in found)
            unread = []
            for run in runs:
                answer = listed.get(run.ionq_id)
                if answer is None:
                    unread.append(run)  # finished (or too new to be listed): read it by id
                else:
                    self._apply(run, None, answer)
        if unread:
            answers = await asyncio.gather(
                *(self._read(run) for run in unread), return_exceptions=True
            )
            problems = [a for a in answers if isinstance(a, BaseException)]
            if problems:
                raise problems[0]

    async def _read(self, run: IonQRun) -> None:
        try:
            job = await self._call("the job", self._service(run.batch).get_job, run.ionq_id)
        except UnknownJobError:
            self._apply(run, None, {"status": "deleted", "reason": "IonQ no longer knows this job"})
            return
        self._apply(run, job, _api_dict(job))

    def _apply(self, run: IonQRun, job: cirq_ionq.Job | None, answer: dict) -> None:
        """IonQ's word on ``run`` (the lifecycle decides what it means for the record)."""
        raw = answer.get("status", "")
        if job is not None:
            run.job = job
        if raw != run.vendor_status:
            logger.debug("qnb: IonQ job %s is %r", run.ionq_id, raw)
            run.vendor_status = raw
        mapped = VENDOR_STATUS.get(raw)
        if mapped is None:
            return  # unknown: not terminal, keep the last known state
        if mapped in TERMINAL:
            if job is None and raw != "deleted":
                return  # from a listing: read by id first (results, reason)
            if raw == "deleted" and job is None:
                run.outcomes = {
                    i: ItemOutcome(JobStatus.CANCELLED, error=f"IonQ status 'deleted': {answer.get('reason', 'deleted at IonQ')}")
                    for i in range(len(run.statuses))
                }
            self._runs.pop(run.ionq_id, None)
        statuses = [old if old in TERMINAL else mapped for old in run.statuses]
        if statuses != run.statuses:
            run.statuses = statuses
            run.changed.set()

    # -- outcomes ------------------------------------------------------------------------------

    async def _read_outcomes(self, run: IonQRun) -> dict[int, ItemOutcome]:
        n = len(run.statuses)
        raw = run.vendor_status
        if raw != "completed":
            reason = _failure_reason(run.job)
            status = JobStatus.FAILED if raw == "failed" else JobStatus.CANCELLED
            text = f"IonQ status {raw!r}" + (f": {reason}" if reason else "") + f" (IonQ job {run.ionq_id})"
            return {i: ItemOutcome(status, error=text) for i in range(n)}
        backoff = 0.5
        while True:  # completed and paid for: read until IonQ answers
            try:
                texts = await self._call("the results", _results_json, run, self.seed)
                break
            except QnbError as exc:
                if not exc.retryable:
                    text = f"IonQ job {run.ionq_id} completed but its results cannot be read: {exc}"
                    return {i: ItemOutcome(JobStatus.FAILED, error=text) for i in range(n)}
                self._connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        self._connected = True
        outcomes = {}
        for i in range(n):
            if i < len(texts) and texts[i] is not None:
                outcomes[i] = ItemOutcome(JobStatus.COMPLETED, result=texts[i], engine=f"ionq {run.backend}")
            else:
                outcomes[i] = ItemOutcome(JobStatus.FAILED, error=f"IonQ returned no result for circuit {i} of job {run.ionq_id}")
        return outcomes

    def close(self) -> None:
        self._calls.close()


def _results_json(run: IonQRun, seed: int | None) -> list[str | None]:
    """On the target's threads: cirq-ionq reads the probabilities (counts for a QPU,
    sampled for the simulator with ``seed``) and makes the ``cirq.Result``; then Cirq
    JSON, off the loop."""
    answer = _api_dict(run.job)
    for message in (answer.pop("warning", None) or {}).get("messages", []):
        logger.info("qnb: IonQ job %s: %s", run.ionq_id, message)  # not printed from here
    found = run.job.results(timeout_seconds=0)
    found = found if isinstance(found, list) else [found]
    params = run.params or [None] * len(found)
    texts: list[str | None] = []
    for result, point in zip(found, params):
        resolver = point or cirq.ParamResolver({})
        if isinstance(result, cirq_ionq.SimulatorResult):
            made = result.to_cirq_result(params=resolver, seed=seed)
        else:
            made = result.to_cirq_result(params=resolver)
        texts.append(cirq.to_json(made, indent=None))
    return texts


def _failure_reason(job: cirq_ionq.Job | None) -> str:
    if job is None:
        return ""
    failure = _api_dict(job).get("failure") or {}
    if isinstance(failure, dict):
        return str(failure.get("error") or failure.get("message") or "")
    return str(failure)


def _refused_gate(circuit: cirq.Circuit) -> cirq.Operation | None:
    """The first operation IonQ's serializer refuses, to name it."""
    serializer = cirq_ionq.Serializer()
    for op in circuit.all_operations():
        if cirq.is_measurement(op):
            continue
        try:
            serializer.serialize_single_circuit(cirq.Circuit(op))
        except Exception:
            return op
    return None
