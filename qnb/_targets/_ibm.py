"""IBM Quantum as a target, through IBM's own client (``qiskit-ibm-runtime``).

    qnb.register_target("eagle", "ibm", backend="ibm_brisbane")   # $QISKIT_IBM_TOKEN, or a saved account
    qnb.register_target("ibm-fake", "ibm", backend="fake_brisbane")  # rehearsal: no account

Circuits go Cirq -> OpenQASM 2 -> Qiskit -> the backend's ISA (see :mod:`._ibm_convert`)
and run through the client-side ``qiskit_ibm_runtime.executor_sampler.Sampler`` (the
current one: ``SamplerV2`` is deprecated since 0.50), one IBM job per qnb job.

- **Rehearsal.** A fake backend (``"fake_<name>"`` or an instance) runs in the client's
  local testing mode, with the device's noise (Qiskit Aer), on threads of this process:
  such jobs end with it (``local``), like the local simulators'.
- **Credentials**: ``token=`` (or ``token_env=`` naming a variable), the targets file's
  ``[targets.NAME]`` (``kind = "ibm"``), then the client's own discovery:
  ``$QISKIT_IBM_TOKEN`` / ``$QISKIT_IBM_INSTANCE``, or Qiskit's saved account (``account=``
  names one). The token goes to the client only; a missing or refused one raises here.
- **Exactly once.** The job carries its qnb name as its IBM tag; the client's own
  retries are turned off (it retries a POST after a 5xx), so a creation in doubt is
  looked for by tag before any second POST.
- **Statuses** are the client's (``QUEUED``, ``RUNNING``, ``DONE``, ``ERROR``,
  ``CANCELLED``); the quantum seconds IBM charged are kept as the job's usage.
- ``api_url=`` points the client at another deployment of the Runtime API (the tests'
  stand-in); IBM's IAM and search hosts then come from the client's own overrides
  (``$IAM_URL``, ``$GLOBAL_SEARCH_URL``, ``$GLOBAL_CATALOG_URL``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import cirq

from .. import _config
from .._errors import (
    InvalidOptionError, NotAuthenticatedError, QnbError, ServerUnreachableError, VendorRejectedError,
)  # fmt: skip
from .._secrets import Secret
from .._status import JobStatus
from . import _ibm_convert as convert
from ._base import ItemOutcome, TargetJob
from ._calls import DeadlineCalls
from ._queue_eta import QueueFigures
from ._remote import VendorJobState, VendorTarget

FINISHED = ("DONE", "ERROR", "CANCELLED")
#: Followed jobs read one by one up to this many; more, through the listing.
READ_EACH_UP_TO = 3
LIST_AT_MOST = 20_000
SAVED_ACCOUNTS = "~/.qiskit/qiskit-ibm.json"
logger = logging.getLogger("qnb")


class IBMTarget(VendorTarget):
    """An IBM Quantum backend (or a fake one, locally) as a qnb target.

    ``optimization_level``: of Qiskit's preset pass manager. ``seed``: the local
    simulator's (rehearsal only)."""

    vendor = "IBM Quantum"
    STATUS = {
        "INITIALIZING": JobStatus.QUEUED, "VALIDATING": JobStatus.QUEUED, "QUEUED": JobStatus.QUEUED,
        "RUNNING": JobStatus.RUNNING, "DONE": JobStatus.COMPLETED, "ERROR": JobStatus.FAILED,
        "CANCELLED": JobStatus.CANCELLED, "DELETED": JobStatus.CANCELLED,
    }  # fmt: skip

    def __init__(
        self, name: str, *, backend: Any = None, token: str | None = None, token_env: str | None = None,
        instance: str | None = None, url: str | None = None, api_url: str | None = None,
        account: str | None = None, optimization_level: int = 1, seed: int | None = None,
        max_batch: int | None = None, poll_seconds: float = 1.0, call_timeout: float = 30.0, threads: int = 4,
    ):  # fmt: skip
        given = dict(backend=backend, token=token, token_env=token_env, instance=instance, url=url,
                     api_url=api_url, account=account)  # fmt: skip
        options = _with_targets_file(name, given)
        super().__init__(name, poll_seconds=poll_seconds, call_timeout=call_timeout, threads=threads)
        # Jobs that left the listing are read by id side by side (within read_many's deadline).
        self._readers = DeadlineCalls(f"qnb-{name}-read", threads=threads)
        self.seed = seed
        self._jobs: dict[str, Any] = {}  # IBM's job objects, as created or first read
        self._local_tags: dict[str, str] = {}  # rehearsal: tag -> job id
        try:
            self._set_up(name, options, max_batch, optimization_level)
        except BaseException:
            self.close()  # nothing of a refused target stays, its threads neither
            raise

    def _set_up(self, name: str, options: dict, max_batch: int | None, optimization_level: int) -> None:
        self.backend = convert.fake_backend(options["backend"])
        if self.backend is not None:
            self.local = True  # runs in this process and ends with it
            self.service = None
            where = f"{self.backend.name} in qiskit-ibm-runtime's local testing mode (its noise, on Aer)"
        else:
            self.service = self.blocking_call("the account", _open_service, name, options)
            self.backend = self.blocking_call("the backend", _backend_of, self.service, name, options["backend"])
            _without_client_retries(self.service, self.call_timeout)
            where = f"IBM Quantum {self.backend.name} via qiskit-ibm-runtime (jobs followed after a restart)"
        self.device = self.blocking_call("the device", convert.device_from, name, self.backend, where, max_batch)
        self._transpile = convert.Transpiler(self.backend, optimization_level)

    # -- circuits ------------------------------------------------------------------------------

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        convert.check(label, circuit, self.device.max_qubits, self.name)

    def prepare(self, job: TargetJob, items: list[int]) -> list:
        resolved = super().prepare(job, items)  # sweeps resolved before conversion
        return self._transpile([convert.to_qiskit(job.labels[i], c) for i, c in zip(items, resolved)])

    # -- the hooks -----------------------------------------------------------------------------

    def create(self, program: list, job: TargetJob, items: list[int], name: str) -> str:
        from qiskit_ibm_runtime.executor_sampler import Sampler

        options: dict = {"environment": {"job_tags": [name]}}
        if self.local:
            options = {"simulator": {"seed_simulator": self.seed}}
        ibm_job = Sampler(mode=self.backend, options=options).run(program, shots=job.shots)
        vendor_id = ibm_job.job_id()
        self._jobs[vendor_id] = ibm_job
        if self.local:
            self._local_tags[name] = vendor_id
        return vendor_id

    def find(self, job: TargetJob, items: list[int], name: str) -> str | None:
        if self.local:
            return self._local_tags.get(name)
        found = self.service.jobs(job_tags=[name], limit=1)
        return found[0].job_id() if found else None

    def read(self, vendor_id: str) -> VendorJobState:
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        ibm_job = self._jobs.get(vendor_id)
        if ibm_job is None and self.local:
            return VendorJobState("DELETED", error="a rehearsal's job ends with the process that ran it")
        try:
            if ibm_job is None:
                ibm_job = self._jobs[vendor_id] = self.service.job(vendor_id)
            said = ibm_job.status()  # a word, or (a rehearsal's job) qiskit's JobStatus
            status = str(getattr(said, "name", said)).upper()
        except Exception as exc:
            if not isinstance(exc, RuntimeJobNotFound) and _http_status(exc) != 404:
                raise
            self._jobs.pop(vendor_id, None)
            return VendorJobState("DELETED", error="IBM Quantum no longer knows this job (deleted there?)")
        if status not in FINISHED:
            return VendorJobState(status, raw=ibm_job, run_seconds=None if self.local else _usage_estimate(ibm_job))
        self._jobs.pop(vendor_id, None)  # the state carries it to outcomes()
        return VendorJobState(status, error=_reason(ibm_job, status), raw=ibm_job,
                              usage={"quantum_seconds": float(ibm_job.usage() or 0)})  # fmt: skip

    def read_many(self, vendor_ids: list[str]) -> dict[str, VendorJobState]:
        """Up to a few jobs one by one; more through IBM's listing of the account's
        unfinished jobs (one request a round), reading by id only those that left it."""
        client = getattr(self.service, "_active_api_client", None)  # the listing without decoding each job
        if self.local or len(vendor_ids) <= READ_EACH_UP_TO or not hasattr(client, "jobs_get"):
            return {vendor_id: self.read(vendor_id) for vendor_id in vendor_ids}
        from qiskit_ibm_runtime.runtime_job_v2 import API_TO_JOB_STATUS

        unfinished, total = {}, None
        while total is None or len(unfinished) < min(total, LIST_AT_MOST):
            page = client.jobs_get(limit=1000, skip=len(unfinished), pending=True)
            unfinished.update((raw["id"], raw) for raw in page["jobs"])
            total = 0 if not page["jobs"] else page["count"]
        states = {}
        for vendor_id, raw in ((i, unfinished.get(i)) for i in vendor_ids):
            if raw is not None:
                word = raw["state"]["status"].upper()
                estimate = raw.get("estimated_running_time_seconds")
                states[vendor_id] = VendorJobState(str(API_TO_JOB_STATUS.get(word, word)),
                                                   run_seconds=_seconds(estimate))  # fmt: skip
        left = [i for i in vendor_ids if i not in states]  # finished, or too new to be listed
        futures = [self._readers.submit(self.read, vendor_id) for vendor_id in left]
        deadline = time.monotonic() + self.call_timeout
        states.update(zip(left, (f.result(max(0.0, deadline - time.monotonic())) for f in futures)))
        return states

    def outcomes(
        self, vendor_id: str, state: VendorJobState, items: list[int], params: list
    ) -> dict[int, ItemOutcome]:
        result = state.raw.result()
        engine = f"ibm {self.backend.name}"
        return {
            i: ItemOutcome(JobStatus.COMPLETED, result=convert.to_cirq_json(result[k], params[k]), engine=engine)
            for k, i in enumerate(items)
            if k < len(result)
        }

    def queue_figures(self) -> QueueFigures | None:
        """The jobs pending on the backend (its status); a rehearsal has no queue."""
        if self.local:
            return None
        pending = self.backend.status().pending_jobs
        return QueueFigures(depth=int(pending), source=f"IBM {self.backend.name}") if pending is not None else None

    def cancel_remote(self, vendor_id: str) -> None:
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        ibm_job = self._jobs.get(vendor_id) or self.service.job(vendor_id)
        try:
            ibm_job.cancel()
        except RuntimeInvalidStateError:
            pass  # finished meanwhile: the read that follows says how

    def close(self) -> None:
        super().close()
        self._readers.close()

    def as_error(self, exc: Exception, what: str) -> QnbError:
        """401: the token; another 4xx: a refusal with IBM's reason; an answer that cannot
        be used (no HTTP error, a ValueError-like failure in the client or in qnb's
        conversion): a refusal too, or it would be read again for ever; the rest
        (429, 5xx, no connection, timeouts): IBM away for now."""
        chain, status = _chain(exc), _http_status(exc)
        text = str(exc)[:600]
        if status == 401 or any(type(e).__name__ == "IBMNotAuthorizedError" for e in chain):
            return NotAuthenticatedError(
                f"IBM Quantum refused the token (401) on {what}: check token= or $QISKIT_IBM_TOKEN"
            )
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return VendorRejectedError(f"IBM Quantum refused {what} ({status}): {text}", status=status)
        if not _away(exc, status) and isinstance(exc, (ValueError, KeyError, TypeError)):
            return VendorRejectedError(f"IBM Quantum's answer to {what} cannot be used: {type(exc).__name__}: {text}")
        said = f" ({status})" if status else ""
        return ServerUnreachableError(f"IBM Quantum did not answer {what}{said}: {text}")


def _reason(ibm_job: Any, status: str) -> str | None:
    if status == "DONE":
        return None
    reason = getattr(ibm_job, "_reason", None)
    if reason or status == "CANCELLED":
        return reason
    future = getattr(ibm_job, "_future", None)  # a local job: its exception is the reason
    if future is not None and future.done() and not future.cancelled() and future.exception():
        return f"{type(future.exception()).__name__}: {future.exception()}"
    return ibm_job.error_message() or None


def _usage_estimate(ibm_job: Any) -> float | None:
    """IBM's estimate of the job's quantum seconds (``job.usage_estimation``: one read
    the first time, kept on the job object). An ETA is not worth a failed read: None."""
    try:
        return _seconds((ibm_job.usage_estimation or {}).get("quantum_seconds"))
    except Exception as exc:  # noqa: BLE001 - whatever the client raises, the job's read stands
        logger.debug("qnb: IBM usage estimation not read: %s", exc)
        return None


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and those behind it (the client re-raises ``from None``: the
    answer's status is on the exception it was handling, its ``__context__``)."""
    found: list[BaseException] = []
    while exc is not None and len(found) < 8:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an exception (the client's and IBM Cloud SDK's ``status_code``)."""
    for found in _chain(exc):
        value = getattr(found, "status_code", None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def _away(exc: BaseException, status: int | None) -> bool:
    """IBM busy or out of reach (429, 5xx, no connection, a timeout): worth asking again."""
    if status is not None:
        return status >= 500 or status in (408, 429)
    network = (OSError, TimeoutError)  # requests' errors are OSErrors; -1: the client's "no answer"
    return any(isinstance(e, network) or type(e).__name__ == "RequestsApiError" for e in _chain(exc))


# -- the account -----------------------------------------------------------------------------------


def _with_targets_file(name: str, given: dict) -> dict:
    kind, configured = _config.configured_kinds().get(name, ("", {}))
    table = configured if kind == "ibm" else {}
    options = {key: value if value is not None else table.get(key) for key, value in given.items()}
    token_env = options.pop("token_env")
    options["where"] = "token=" if given["token"] else f"[targets.{name}] in {_config.targets_file()}"
    if token_env and not options["token"]:
        options["token"], options["where"] = os.getenv(token_env) or None, f"${token_env}"
        if not options["token"]:
            raise NotAuthenticatedError(f"IBM target {name!r} reads its token from ${token_env}, which is not set")
    if options["token"] is not None and not isinstance(options["token"], Secret):
        options["token"] = Secret(options["token"])
    if options["backend"] is None:
        raise InvalidOptionError(
            f"IBM target {name!r} needs backend=: an IBM backend's name (e.g. 'ibm_brisbane') or a "
            "fake one of qiskit_ibm_runtime.fake_provider (e.g. 'fake_brisbane': no account needed)"
        )
    return options


def _not_the_given_token_note(record: logging.LogRecord) -> bool:
    """The client warns "Loading account with the given token. A saved account will not
    be used." whenever a token is passed, which is qnb's plain intent: not shown."""
    return not str(record.msg).startswith("Loading account with the given token")


def _open_service(name: str, options: dict):
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountNotFoundError

    client_log = logging.getLogger("qiskit_ibm_runtime.qiskit_runtime_service")
    if _not_the_given_token_note not in client_log.filters:
        client_log.addFilter(_not_the_given_token_note)

    token = options["token"]
    kwargs: dict[str, Any] = {"instance": options["instance"]}
    if options["api_url"]:
        api_url = options["api_url"]
        kwargs["url_resolver"] = lambda *_: api_url
    if token is not None:
        where = options["where"]
        kwargs.update(channel="ibm_quantum_platform", token=token.reveal(), url=options["url"])
    else:
        where = f"$QISKIT_IBM_TOKEN or Qiskit's saved account ({SAVED_ACCOUNTS})"
        if options["account"]:
            kwargs["name"] = options["account"]
    try:
        return QiskitRuntimeService(**{k: v for k, v in kwargs.items() if v is not None})
    except AccountNotFoundError:
        raise NotAuthenticatedError(
            f"IBM target {name!r} has no account: pass token=..., set $QISKIT_IBM_TOKEN, save one "
            f"with QiskitRuntimeService.save_account(...) ({SAVED_ACCOUNTS}), or add token_env to "
            f"[targets.{name}] (kind = \"ibm\") in {_config.targets_file()}"
        ) from None
    except Exception as exc:
        status = _http_status(exc)
        if _away(exc, status):
            raise ServerUnreachableError(
                f"IBM Quantum could not be reached to check the account from {where} for target "
                f"{name!r}: {type(exc).__name__}: {exc}"
            ) from None
        text = str(exc).replace(token.reveal(), "********") if token else str(exc)
        raise NotAuthenticatedError(
            f"IBM Quantum refused the account from {where} for target {name!r}"
            + (f" ({status})" if status else "") + f": {text}"
        ) from None


def _backend_of(service, name: str, backend: str):
    try:
        return service.backend(backend)
    except Exception as exc:
        if type(exc).__name__ != "QiskitBackendNotFoundError":
            raise
        known = ", ".join(b.name for b in service.backends())
        raise InvalidOptionError(
            f"IBM target {name!r}: no backend {backend!r} in this account (it has: {known})"
        ) from None


def _without_client_retries(service, call_timeout: float) -> None:
    """The client retries a POST after a 5xx by itself, which could create a job twice
    when the first POST was taken: qnb retries instead, looking before it posts. Reads
    get a read deadline too (the client sets none), so an abandoned call ends."""
    from requests.adapters import HTTPAdapter

    try:
        clients = {id(c): c for c in [service._active_api_client, *service._api_clients.values()]}
        for session in (client._session for client in clients.values()):
            for prefix in ("http://", "https://"):
                session.mount(prefix, HTTPAdapter(max_retries=0))
            session._timeout = (5.0, call_timeout)
    except AttributeError:  # a client that keeps its HTTP session elsewhere
        logger.warning("qnb: this qiskit-ibm-runtime's own retries could not be turned off; a job "
                       "whose creation IBM answers with a 5xx may be created twice")  # fmt: skip
