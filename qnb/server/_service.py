"""The queue service: what a queue server does, as plain Python.

Every method takes the calling :class:`~qnb.server._auth.User`, decides what they may
do, calls the :class:`~qnb._api.JobManager` and answers JSON-ready dicts, or
raises a :class:`~qnb._errors.QnbError` whose ``code`` and ``http_status`` the HTTP
layer sends as they are. No HTTP here: tests call the service directly, and the
routers (``_routes.py``) only turn requests into calls.

Methods are blocking (SQLite, parsing): call them from worker threads, never on the
server's event loop. The exception is :meth:`QueueService.live_view`, a memory read.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pickle
import threading
import uuid
from collections.abc import Sequence

import cirq

from .. import _options, _prices
from .._estimate import CircuitFeatures
from .._features import features_of
from .._views import queue_entry, server_job
from .._errors import (
    DeviceValidationError,
    DuplicateJobError,
    InvalidCircuitError,
    InvalidOptionError,
    LimitExceededError,
    QnbError,
    RemoteAuthError,
)
from .._api import JobManager
from .._records import JobRecord
from .._status import IN_QUEUE
from ._auth import User
from ._cpu import CpuPool, worker
from ._intake import Counted, Limits, checked, field
from ._intake import check as check_circuits
from ._intake import count as count_circuits
from ._intake import parse as parse_circuits

#: A batch of Cirq JSON is checked in the request's own thread up to this many
#: operations (below it, parsing takes less than a hop to a worker process).
SMALL_BATCH_OPERATIONS = 2_000
#: OpenQASM or compiled circuits are checked in the request's own thread up to this
#: many circuits and operations (~20 ms a small circuit: Cirq builds its OpenQASM
#: parser each time), so a small submit never waits for a worker other users' compiles
#: hold; more go to the worker pool (``_cpu.py``), one request per user at a time.
SMALL_SLOW_CIRCUITS = 2
SMALL_SLOW_OPERATIONS = 200
#: Longest Idempotency-Key kept.
MAX_KEY = _options.MAX_NAME_LENGTH


@dataclasses.dataclass(frozen=True)
class Submission:
    """A job as a client sends it (the body of ``POST /v1/jobs``)."""

    circuits: dict[str, str]
    shots: int = 1000
    name: str | None = None
    position: str = "end"  # or "start"
    priority: int = 0
    compile: bool = False
    id: str | None = None  # a new job id chosen by the client
    #: label -> the sweep point (a cirq.ParamResolver as Cirq JSON) the circuit, sent
    #: resolved, was made at: kept with the item and given back in its view.
    params: dict[str, str] | None = None
    tags: list[str] | None = None  # checked as qnb.submit checks them
    retries: int | None = None  # runs again of transiently failed items (None: 0)
    max_cost: float | None = None  # the most the job may cost, as the server prices it

    def digest(self) -> str:
        """What an idempotency key is bound to (same text as before the service existed,
        so keys stored by an older server still match)."""
        fields = dataclasses.asdict(self)
        for optional in ("params", "tags", "retries", "max_cost"):
            if fields[optional] is None:
                del fields[optional]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _sweep_points(params: dict[str, str] | None, labelled: dict) -> list[str | None] | None:
    """The items' sweep points, checked: plain numbers by symbol name, for known labels."""
    if not params:
        return None
    unknown = sorted(set(params) - set(labelled))
    if unknown:
        raise field(InvalidOptionError(f"params for labels that are not circuits: {unknown}"), "params")
    for label, text in params.items():
        try:
            values = json.loads(text)
            pairs = values["param_dict"] if values.get("cirq_type") == "ParamResolver" else None
            plain = pairs is not None and all(
                isinstance(k, str) and type(v) in (int, float) for k, v in pairs
            )
        except (ValueError, TypeError, AttributeError, KeyError):
            plain = False
        if not plain:
            raise field(
                InvalidOptionError(
                    f"params of {label!r} must be a cirq.ParamResolver of plain numbers as "
                    "Cirq JSON (symbol name -> value)"
                ),
                "params",
            )
    return [params.get(label) for label in labelled]


class QueueService:
    """One device's shared queue, for many users."""

    def __init__(
        self,
        manager: JobManager,
        *,
        device: str,
        limits: Limits | None = None,
        cpu: CpuPool | None = None,
    ):
        self.manager = manager
        self.device = device
        self.target = manager.targets.get(device)
        self.limits = limits or Limits()
        self.cpu = cpu or worker
        self._submit_lock = threading.Lock()  # one claim of a key or an id at a time
        # Queued jobs per user, kept by a listener: a look-up per submit, not a scan of
        # the queue (a full count confirms it before anyone is refused).
        self._queued: dict[str, set[str]] = {}
        # And their circuit text's bytes (jobs queued before this server started: 0).
        self._sizes: dict[str, int] = {}  # job id -> bytes
        self._queued_bytes: dict[str, int] = collections.defaultdict(int)
        self._bytes_lock = threading.Lock()
        self._remove_listener = manager.add_listener(self._count_queued)
        for rec in manager.pending(device):
            self._queued.setdefault(rec.user, set()).add(rec.id)

    def close(self) -> None:
        self._remove_listener()

    def _count_queued(self, rec: JobRecord) -> None:
        if rec.target != self.device:
            return
        if rec.status in IN_QUEUE:
            self._queued.setdefault(rec.user, set()).add(rec.id)
        else:
            mine = self._queued.get(rec.user)
            if mine is not None:
                mine.discard(rec.id)
            self._forget_size(rec.id, rec.user)

    def _note_size(self, job_id: str, user: User, size: int) -> None:
        """Count ``size`` bytes against ``user`` until the job leaves the queue; refuse
        the job if they are above the limit (admins, the queue keepers, are not)."""
        limit = self.limits.queued_circuit_bytes_per_user
        with self._bytes_lock:
            held = self._queued_bytes[user.name]
            if not user.is_admin and held + size > limit:
                raise LimitExceededError(
                    f"{user.name}'s waiting jobs hold {held:,} bytes of circuits; this one "
                    f"({size:,}) would pass the server's limit of {limit:,} per user; wait "
                    "for some to run, or remove some (DELETE /v1/queue/jobs/ID)"
                )
            self._sizes[job_id] = size
            self._queued_bytes[user.name] = held + size

    def _forget_size(self, job_id: str, user: str) -> None:
        with self._bytes_lock:
            size = self._sizes.pop(job_id, 0)
            if size:
                self._queued_bytes[user] -= size

    # -- authorisation -----------------------------------------------------------------

    def _load(self, job_id: str) -> JobRecord:
        return self.manager.load(job_id)

    def _own(self, user: User, job_id: str, action: str) -> JobRecord:
        rec = self._load(job_id)
        if not user.may_act_on(rec.user):
            raise RemoteAuthError(
                f"job {job_id[:8]} belongs to {rec.user}; only they or an admin may {action}"
            )
        return rec

    def full_view(self, rec: JobRecord) -> dict:
        return server_job(rec, items=True, position=self.manager.position(rec))

    # -- jobs --------------------------------------------------------------------------

    def accept(self, user: User, sub: Submission, *, idempotency_key: str | None = None) -> dict:
        """Queue a job (or find the one a retried key made); its view once it is stored."""
        if idempotency_key is not None and len(idempotency_key) > MAX_KEY:
            raise field(InvalidOptionError(f"at most {MAX_KEY} characters"), "header", "idempotency-key")
        options = self._check_options(user, sub)
        self._check_room(user)
        labelled, texts = self.intake(
            sub.circuits, shots=options.shots, compile=options.compile, user=user.name
        )
        self._check_size(labelled, options.shots)
        features = [features_of(c) for c in labelled.values()]
        points = _sweep_points(sub.params, labelled)
        job_id = sub.id or uuid.uuid4().hex
        with self._submit_lock:
            if idempotency_key is not None:
                digest = sub.digest()
                job_id, bound = self.manager.store.claim_idempotency_key(
                    user.name, idempotency_key, job_id, digest
                )
                if bound != digest:
                    raise DuplicateJobError(
                        "this Idempotency-Key was used for a different submission; use a "
                        "new key for a new job"
                    )
            # A fresh server-made id needs no look-up; a given id or a bound key may
            # name a job that exists.
            chosen = idempotency_key is not None or sub.id is not None
            existing = chosen and (
                self.manager.record(job_id) or self.manager.store.load_job(job_id)
            )
            if existing:
                if idempotency_key is None or existing.user != user.name:
                    raise DuplicateJobError(f"a job with id {job_id} exists already")
                return self.full_view(existing)  # the retry of a submit that got through
            # Priced here (the server knows its device's price and budget), under the lock
            # (two submits near the budget see each other) and after a retried key found
            # its job (which counts as spent already); nothing stored if refused.
            cost = _prices.cost_at_submit(
                self.target, features, options.shots, max_cost=options.max_cost,
                spent=lambda: self.manager.store.spent(self.target.name),
            )  # fmt: skip
            self._note_size(job_id, user, sum(map(len, texts)))
            try:
                rec = self.manager.submit(
                    self.target,
                    labelled,
                    shots=options.shots,
                    name=options.name or _options.default_name(labelled),
                    user=user.name,
                    front=options.front,
                    priority=options.priority,
                    circuit_json=texts,
                    job_id=job_id,
                    params=points,
                    tags=options.tags,
                    retries=options.retries,
                    cost=cost.amount, currency=cost.currency,
                    features=features,  # (taken once: the estimator reads them too)
                )
            except BaseException:
                self._forget_size(job_id, user.name)
                raise
        return self.full_view(rec)

    def _check_options(self, user: User, sub: Submission) -> _options.SubmitOptions:
        """The options, by the same checks as ``qnb.submit`` (the service is also called
        directly, so nothing is taken as checked by the HTTP body model), then what
        only an admin may ask for."""
        _check_circuit_texts(sub.circuits)
        options = _options.check(
            shots=sub.shots, max_shots=self.target.device.max_shots, target=self.device,
            name=sub.name, front=_options.check_position(sub.position), compile=sub.compile,
            priority=sub.priority, tags=sub.tags, retries=0 if sub.retries is None else sub.retries,
            max_cost=sub.max_cost,
        )  # fmt: skip
        if options.front and not user.is_admin:
            raise RemoteAuthError("only an admin may put a job at the head of the queue")
        if options.priority > 0 and not user.is_admin:
            raise RemoteAuthError("only an admin may give a job a priority above 0")
        return options

    def _check_room(self, user: User) -> None:
        if user.is_admin:
            return  # the queue keeper
        if len(self._queued.get(user.name, ())) < self.limits.queued_jobs_per_user:
            return
        waiting = sum(rec.user == user.name for rec in self.manager.pending(self.device))
        if waiting >= self.limits.queued_jobs_per_user:
            raise LimitExceededError(
                f"{user.name} has {waiting} jobs waiting in the queue, the server's limit "
                "per user; wait for some to run, or remove some (DELETE /v1/queue/jobs/ID)"
            )

    def _check_size(self, labelled: dict, shots: int) -> None:
        qubits = sum(len(c.all_qubits()) for c in labelled.values())
        size = qubits * shots
        if size > self.limits.qubit_shots_per_job:
            raise LimitExceededError(
                f"this job asks for {size:,} qubit-shots (qubits x shots, summed over its "
                f"circuits), above the server's limit of {self.limits.qubit_shots_per_job:,} "
                "per job; lower shots or split the batch into several jobs"
            )

    def intake(
        self, circuits: dict[str, str], *, shots: int, compile: bool, user: str = ""
    ) -> tuple[dict, list[str]]:
        """Circuit texts to checked (and maybe compiled) circuits, and their Cirq JSON:
        counted first, then parsed and checked against the target once, in this thread
        when small (:func:`is_small`), else in the worker pool in ``user``'s turn (the
        target's checks with them, when the target can travel there)."""
        spec = self.target.device
        counted = count_circuits(circuits, self.limits, max_batch=spec.max_batch)
        if is_small(counted, len(circuits), compile=compile):
            return check_circuits(
                circuits, counted.json_labels, spec, self.target, shots=shots, compile=compile
            )
        # A copy of the target checks them there, if it can travel (asked each time:
        # a cluster client or a connection it opens later would not).
        travelling = self.target if _travels(self.target) else None
        labelled, texts = self.cpu.run(
            user, self.limits.cpu_seconds, check_circuits, circuits, counted.json_labels, spec,
            travelling, shots=shots, compile=compile,
        )
        if travelling is None:
            labelled = checked(labelled, self.target, shots=shots)
        return labelled, texts

    def estimate(
        self, user: User, sub: Submission | None = None, *,
        features: Sequence[CircuitFeatures] | None = None, shots: int = 1000,
    ) -> dict:  # fmt: skip
        """What a job would take here if submitted now (``POST /v1/estimate``), as
        :meth:`qnb.Estimate.as_json`: its circuits checked as a submit's (``sub``), or
        only their ``features`` (what a client's ``qnb.estimate`` sends); nothing stored.
        The wait counts every user's jobs ahead (this server sees them all)."""
        if sub is not None:
            options = self._check_options(user, sub)
            shots = options.shots
            labelled, _ = self.intake(sub.circuits, shots=shots, compile=options.compile, user=user.name)
            features = [features_of(circuit) for circuit in labelled.values()]
        else:
            shots = _options.check_shots(shots, max_shots=self.target.device.max_shots, target=self.device)
            features = self._check_features(features or [])
        timing = self.manager.estimate_submission(self.target, features, shots)
        cost = _prices.cost_at_submit(self.target, features, shots, max_cost=None, spent=None)
        answer = timing.as_json()
        answer.update(cost=cost.amount, currency=cost.currency,
                      basis="; ".join(part for part in (timing.basis, cost.basis) if part))  # fmt: skip
        return answer

    def _check_features(self, features: Sequence[CircuitFeatures]) -> list[CircuitFeatures]:
        """Circuits described by their features: as many as a batch may have, none wider
        than the device or longer than a circuit may be."""
        spec = self.target.device
        if not features or len(features) > spec.max_batch:
            raise field(InvalidOptionError(f"give 1 to {spec.max_batch} circuits' features"), "features")
        for f in features:
            if f.qubits > spec.max_qubits or f.gates + f.measurements > self.limits.operations_per_circuit:
                raise field(InvalidOptionError(
                    f"a circuit of {f.qubits} qubits and {f.gates + f.measurements} operations does not fit "
                    f"this device ({spec.max_qubits} qubits, {self.limits.operations_per_circuit} operations)"
                ), "features")  # fmt: skip
        return list(features)

    def view(self, user: User, job_id: str) -> dict:
        return self.full_view(self._own(user, job_id, "read it"))

    def live_view(self, user: User, job_id: str) -> dict | None:
        """The view of a job this server runs, from memory (no SQLite, no parsing: fit
        for the event loop), or None when the full :meth:`view` must answer."""
        rec = self.manager.record(job_id)
        if rec is None or not user.may_act_on(rec.user):
            return None
        return self.full_view(rec)

    def list_jobs(
        self,
        user: User,
        *,
        status: Sequence[str] | None = None,
        owner: str | None = None,
        limit: int = 100,
        tags: Sequence[str] = (),
    ) -> dict:
        """Jobs, newest first: your own (an admin: everybody's, or ``owner``'s)."""
        if owner is None and not user.is_admin:
            owner = user.name
        if owner is not None and not user.may_act_on(owner):
            raise RemoteAuthError(f"only an admin may list the jobs of {owner}")
        found = self.manager.find(status=status or None, target=self.device, user=owner, limit=limit,
                                  tags=_options.check_tags(list(tags)))  # fmt: skip
        return {"jobs": [server_job(rec) for rec in found]}

    def results(self, user: User, job_id: str, *, items: Sequence[int] | None = None) -> dict:
        """Finished items' outcomes (``items``: indices; all if None), at most
        ``limits.results_bytes`` of result text per answer: ``more`` lists the finished
        items left for the next request (``?items=`` with those indices)."""
        rec = self._own(user, job_id, "read its results")
        wanted = range(len(rec.items)) if items is None else items
        for i in wanted:
            if not 0 <= i < len(rec.items):
                raise field(
                    InvalidOptionError(f"item {i} does not exist (0 to {len(rec.items) - 1})"),
                    "items",
                )
        texts = self.manager.results(job_id)
        outcomes: dict[str, dict] = {}
        more: list[int] = []
        size = 0
        for i in wanted:
            item = rec.items[i]
            if not item.status.is_terminal:
                continue
            text = texts.get(i)
            size += len(text or "")
            if outcomes and size > self.limits.results_bytes:
                more.append(i)
                continue
            outcomes[str(i)] = {
                "label": item.label, "status": item.status.value, "result": text, "error": item.error,
                "retryable": item.retryable,
                **({"attempts": item.attempts, "history": list(item.history)} if item.attempts else {}),
            }
        answer = {"id": job_id, "status": rec.status.value, "items": outcomes}
        if more:
            answer["more"] = more
        return answer

    def circuits(self, user: User, job_id: str) -> dict:
        rec = self._own(user, job_id, "read its circuits")
        texts = self.manager.circuits(job_id)
        return {"id": job_id, "circuits": {it.label: t for it, t in zip(rec.items, texts)}}

    def cancel(self, user: User, job_id: str) -> dict:
        """Idempotent: a finished job answers with its final state."""
        self._own(user, job_id, "cancel it")
        self.manager.cancel(job_id)
        return self.full_view(self._load(job_id))

    def resubmit(self, user: User, job_id: str, *, only_failed: bool = False) -> dict:
        """A new job of the finished job's items (or its failed and cancelled ones), with
        the caller's own rights: a priority an admin gave the old job is not the
        owner's to keep (capped at 0 unless the caller is an admin)."""
        rec = self._own(user, job_id, "resubmit it")
        self._check_room(user)
        new = self.manager.resubmit(
            job_id,
            only_failed=only_failed,
            priority=rec.priority if user.is_admin else min(rec.priority, 0),
        )
        return self.full_view(new)

    # -- the queue ---------------------------------------------------------------------

    def queue(self, user: User) -> dict:
        """Waiting jobs head first (1-based positions), and the running ones; the
        caller's own with their estimates (an admin's: all)."""
        pending = self.manager.pending(self.device)
        running = self.manager.find(status=["running", "cancelling"], target=self.device, limit=1000)
        return {
            "device": self.device,
            "entries": [queue_entry(rec, pos, own=user.may_act_on(rec.user)) for pos, rec in enumerate(pending, 1)],
            "running": [queue_entry(rec, None, own=user.may_act_on(rec.user)) for rec in running],
        }

    def remove_by_id(self, user: User, job_id: str) -> dict:
        self._own(user, job_id, "remove it")
        return server_job(self.manager.remove_queued(self.device, job_id=job_id))

    def remove_by_position(self, user: User, position: int, *, expected_id: str) -> dict:
        """Remove the job at ``position`` only if it is still ``expected_id``."""
        self._own(user, expected_id, "remove it")
        rec = self.manager.remove_queued(self.device, position=position, expected_id=expected_id)
        return server_job(rec)

    def remove_by_user(self, user: User, owner: str) -> dict:
        if not user.may_act_on(owner):
            raise RemoteAuthError(f"only {owner} or an admin may remove {owner}'s jobs")
        removed = []
        for rec in self.manager.pending(self.device):
            if rec.user != owner:
                continue
            try:
                self.manager.remove_queued(self.device, job_id=rec.id)
            except QnbError:
                continue  # it started meanwhile: not in the queue any more
            removed.append(rec.id)
        return {"removed": removed}

    def move_to_front(self, user: User, job_id: str) -> dict:
        """Admins only: moving ahead of everybody else is the queue keeper's call."""
        if not user.is_admin:
            raise RemoteAuthError("only an admin may move a job to the front of the queue")
        self._load(job_id)
        rec = self.manager.move_to_front(job_id)
        return queue_entry(rec, self.manager.position(rec))

    # -- the device --------------------------------------------------------------------

    def device_info(self, user: User) -> dict:
        spec = self.target.device
        return {**spec.summary(), "cirq_json": _device_json(spec)}

    def compile(self, user: User, circuits: dict[str, str]) -> dict:
        """The circuits rewritten for the device (Cirq JSON), not submitted."""
        _check_circuit_texts(circuits)
        spec = self.target.device
        counted = count_circuits(circuits, self.limits, max_batch=spec.max_batch)
        try:
            compiled = self.cpu.run(
                user.name, self.limits.cpu_seconds, _compile_texts, circuits,
                counted.json_labels, spec,
            )
        except DeviceValidationError as exc:
            raise field(DeviceValidationError(f"cannot compile: {exc}"), "circuits") from None
        return {"circuits": compiled}

    def whoami(self, user: User) -> dict:
        return {"user": user.name, "role": user.role}


def _check_circuit_texts(circuits: object) -> None:
    """At least one circuit, label -> non-empty text."""
    if not isinstance(circuits, dict) or not circuits:
        raise field(InvalidCircuitError("give at least one circuit: label -> text"), "circuits")
    _options.check_labels(circuits)
    for label, text in circuits.items():
        if not isinstance(text, str) or not text:
            raise field(InvalidCircuitError(f"circuit {label!r}: give its text"), "circuits", label)


def is_small(counted: Counted, circuits: int, *, compile: bool) -> bool:
    """Whether a batch is checked in the request's own thread (milliseconds of Cirq),
    not in the worker pool."""
    slow = circuits - len(counted.json_labels) + (circuits if compile else 0)
    if slow == 0:
        return counted.operations <= SMALL_BATCH_OPERATIONS
    return slow <= SMALL_SLOW_CIRCUITS and counted.operations <= SMALL_SLOW_OPERATIONS


def _travels(target) -> bool:
    """Whether ``target`` can be copied to the worker process (~0.2 ms for a simulator)."""
    try:
        pickle.dumps(target)
    except Exception:  # whatever a target holds may refuse: a lock, a socket, a loop
        return False
    return True


def _compile_texts(circuits: dict[str, str], json_labels: set[str], spec) -> dict[str, str]:
    """In the worker process: parse, compile, and answer Cirq JSON."""
    compiled, texts = parse_circuits(
        circuits, json_labels, spec, compile=True, serialize=True, measured=False
    )
    return dict(zip(compiled, texts))


def _device_json(spec) -> dict:
    """What a client needs to check and compile circuits itself, as Cirq JSON."""
    def dump(value):
        return None if value is None else cirq.to_json(value, indent=None)

    return {
        "qubits": dump(list(spec.qubits) if spec.qubits is not None else None),
        "connectivity": dump(
            [list(edge) for edge in spec.connectivity] if spec.connectivity is not None else None
        ),
        "gateset": dump(spec.gateset),
        "compile_to": dump(spec.compile_to),
    }
