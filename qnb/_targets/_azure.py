"""Azure Quantum's IonQ and Quantinuum targets, through Microsoft's own client
(``azure-quantum``'s ``Workspace``, target classes and ``Job``; blobs through
``azure-storage-blob``). See docs/hardware/azure.md.

- **Formats**: one Azure job per circuit, in its provider's own input format
  (:mod:`._azure_convert`), with the formats of azure-quantum's own target classes; not
  azure-quantum's ``[cirq]`` extra (it pins an older Cirq).
- **Created exactly once**: Azure job ids are the client's choice (a PUT of ``jobs/{id}``);
  each is derived from qnb's job id and the item, so a creation in doubt is looked up by
  that id, and a second PUT of it cannot make a second job (409).
- **One try per call**: azure-core would retry a request 10 times inside one call (backing
  off up to 2 minutes); the shape retries instead, with its backoff and deadlines.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from typing import Any

import cirq
import cirq_ionq
from azure.core import exceptions as azure_errors
from azure.core.credentials import AzureKeyCredential
from azure.quantum import Job, Workspace
from azure.quantum._workspace_connection_params import WorkspaceConnectionParams
from azure.quantum.storage import remove_sas_token
from azure.quantum.target import IonQ, Quantinuum
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from .._circuits import check_qubits_only
from .._device import DeviceSpec
from .._errors import (
    DeviceValidationError,
    InvalidCircuitError,
    InvalidOptionError,
    NotAuthenticatedError,
    QnbError,
    RemoteError,
    ServerUnreachableError,
    VendorRejectedError,
)
from .._secrets import Secret
from .._status import JobStatus
from . import _azure_convert as convert
from ._base import ItemOutcome, TargetJob
from ._queue_eta import QueueFigures
from ._remote import VendorJobState, VendorTarget

#: Providers qnb sends Cirq circuits to, with azure-quantum's target class of each.
PROVIDERS = {"ionq": IonQ, "quantinuum": Quantinuum}
UNFINISHED = ("Queued", "Waiting", "Executing", "Finishing", "CancellationRequested", "Cancelling")
GET_EACH_UP_TO = 3
#: Sizes azure-quantum's Qiskit backends know, for a workspace that does not say (else 20, as there).
KNOWN_QUBITS = {"ionq.simulator": 29, "ionq.qpu.aria-1": 25, "ionq.qpu.forte": 35, ".h2-": 56, ".helios-": 98}
IONQ_GATES = ("x", "y", "z", "h", "s", "si", "t", "ti", "v", "vi", "rx", "ry", "rz", "cnot", "swap",
              "xx", "yy", "zz", "gpi", "gpi2", "ms", "measure")  # fmt: skip
#: azure-quantum's Quantinuum basis gates (any OpenQASM 2 of qelib1.inc is taken).
QUANTINUUM_GATES = ("x", "y", "z", "rx", "ry", "rz", "h", "cx", "cz", "s", "sdg", "t", "tdg", "v", "vdg",
                    "zz", "measure", "reset")  # fmt: skip
_JOB_IDS = uuid.UUID("5b0e8f52-6a43-4c4e-9d0b-7a51c0a2e9d1")  # namespace of qnb's Azure job ids
CONNECTION_STRING = "AZURE_QUANTUM_CONNECTION_STRING"


def _word(status: Any) -> str:
    return str(getattr(status, "value", status) or "")


def _state(details: Any, raw: Any) -> VendorJobState:
    error = details.error_data
    cost = details.cost_estimate
    usage = None
    if cost and cost.get("estimatedTotal") is not None:
        usage = {f"cost_{str(cost.get('currencyCode') or 'usd').lower()}": float(cost["estimatedTotal"])}
    reason = f"{error.get('code')}: {error.get('message')}" if error else None
    return VendorJobState(_word(details.status), error=reason, usage=usage, raw=raw)


def _reason(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    text = f"{error.code}: {error.message}" if getattr(error, "code", None) else (getattr(exc, "reason", None) or str(exc))
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:300] + " …"


def _workspace(name: str, *, connection_string: Secret | None, resource_id: str | None, location: str | None,
               api_key: Secret | None, credential: Any, endpoint: str | None, storage: str | None) -> Workspace:  # fmt: skip
    """azure-quantum's Workspace: from a connection string (an API key: no Azure AD), or a
    resource id and location (``api_key``, ``credential``, or azure-identity's default).
    ``endpoint``: the data-plane endpoint, where the connection string's cannot point."""
    override = {"_quantum_endpoint": endpoint} if endpoint else {}
    if connection_string:
        try:
            params = WorkspaceConnectionParams(connection_string=connection_string.reveal())
        except ValueError:
            raise InvalidOptionError(
                f"Azure Quantum target {name!r}: the connection string is not one Azure Quantum issues "
                "('SubscriptionId=...;ResourceGroupName=...;WorkspaceName=...;ApiKey=...;QuantumEndpoint="
                "https://<region>.quantum.azure.com/;', under Access keys of the workspace in the Azure portal)"
            ) from None
        return Workspace(
            subscription_id=params.subscription_id, resource_group=params.resource_group, name=params.workspace_name,
            location=params.location, credential=params.credential, storage=storage, _from_connection_string=True,
            _quantum_endpoint=endpoint or params.quantum_endpoint,
        )  # fmt: skip
    credential = AzureKeyCredential(api_key.reveal()) if api_key else credential
    return Workspace(resource_id=resource_id, location=location, credential=credential, storage=storage, **override)


def _settings(name: str, backend, connection_string, variable, resource_id) -> tuple[str, Secret | None]:
    """The provider of ``backend``, and the connection string (``variable`` names where it
    is, else the vendor's own variable); refuses what cannot make a workspace."""
    provider = str(backend or "").split(".")[0].lower()
    if provider not in PROVIDERS:
        raise InvalidOptionError(
            f"Azure Quantum target {name!r}: backend= names an IonQ or Quantinuum target of the workspace "
            f"(e.g. 'ionq.simulator', 'ionq.qpu.aria-1', 'quantinuum.sim.h2-1e'), got {backend!r}"
        )
    connection_string = connection_string or os.environ.get(variable or CONNECTION_STRING)
    if variable and not connection_string:
        raise NotAuthenticatedError(
            f"Azure Quantum target {name!r} reads its connection string from ${variable}, which is not set"
        )
    if not (connection_string or resource_id or os.environ.get("AZURE_QUANTUM_WORKSPACE_NAME")):
        raise NotAuthenticatedError(
            f"Azure Quantum target {name!r} has no workspace: pass connection_string=... (or "
            f"connection_string_env=...), set ${CONNECTION_STRING}, pass resource_id=... and location=..., "
            "or add them to its [targets.NAME] table (kind = \"azure\") in the targets file"
        )
    return provider, Secret(connection_string) if connection_string else None  # never plain in a frame


class AzureTarget(VendorTarget):
    """An Azure Quantum target: ``backend=`` the workspace's target id (``"ionq.simulator"``,
    ``"ionq.qpu.aria-1"``, ``"quantinuum.sim.h2-1e"``, ...; ``target=`` is register_target's own).

    The workspace: ``connection_string=`` (or ``connection_string_env="VAR"``, else
    ``$AZURE_QUANTUM_CONNECTION_STRING``), or ``resource_id=`` + ``location=`` with
    ``api_key=`` / ``credential=`` (else azure-identity's ``DefaultAzureCredential``).
    ``endpoint=``: the workspace's data-plane URL, overriding the connection string's.
    ``seed``: for sampling IonQ simulator probabilities (default: from the job's id).
    """

    vendor = "Azure Quantum"
    STATUS = {
        "Queued": JobStatus.QUEUED, "Waiting": JobStatus.QUEUED, "Executing": JobStatus.RUNNING,
        "Finishing": JobStatus.RUNNING, "Completed": JobStatus.COMPLETED, "Succeeded": JobStatus.COMPLETED,
        "Failed": JobStatus.FAILED, "Cancelled": JobStatus.CANCELLED, "Deleted": JobStatus.CANCELLED,
    }  # fmt: skip  ("CancellationRequested"/"Cancelling": the job keeps its last state until "Cancelled")

    def __init__(self, name: str, *, backend: str | None = None, connection_string: str | None = None,
                 connection_string_env: str | None = None, resource_id: str | None = None,
                 location: str | None = None, api_key: str | None = None, credential: Any = None,
                 endpoint: str | None = None, storage: str | None = None, seed: int | None = None,
                 max_shots: int = 10_000, poll_seconds: float = 1.0, call_timeout: float = 30.0,
                 threads: int = 4):  # fmt: skip
        provider, connection_string = _settings(name, backend, connection_string, connection_string_env, resource_id)
        super().__init__(name, poll_seconds=poll_seconds, call_timeout=call_timeout, threads=threads)
        self.target_name, self.provider, self.seed = str(backend), provider, seed
        make = functools.partial(
            _workspace, name, connection_string=connection_string, resource_id=resource_id, location=location,
            api_key=Secret(api_key) if api_key else None, credential=credential, endpoint=endpoint, storage=storage,
        )  # fmt: skip
        try:
            self.workspace = self.blocking_call("the workspace", make)
            self.workspace._client._config.retry_policy.total_retries = 0  # see "One try per call"
            self.formats = PROVIDERS[provider](self.workspace, name=self.target_name)
            self.device = self._device(max_shots)
        except Exception as exc:
            self.close()  # its threads
            if isinstance(exc, ValueError) and not isinstance(exc, QnbError):  # azure-quantum's checks of ids
                raise InvalidOptionError(f"Azure Quantum target {name!r}: {exc}") from None
            raise

    def _device(self, max_shots: int) -> DeviceSpec:
        """From the workspace's word on the target (this also checks the credential)."""
        found = self.blocking_call("the workspace's targets", self.workspace._get_target_status, self.target_name)
        if not found:
            known = self.blocking_call("the workspace's targets", self.workspace._get_target_status)
            raise InvalidOptionError(
                f"Azure Quantum workspace {self.workspace.name!r} has no target {self.target_name!r}; "
                f"it has: {', '.join(sorted(t.id for _, t in known)) or 'none'}"
            )
        status = found[0][1]
        n = status.num_qubits or next((q for k, q in KNOWN_QUBITS.items() if k in self.target_name), 20)
        ionq = self.provider == "ionq"
        return DeviceSpec(
            name=self.name, max_qubits=n, qubits=tuple(cirq.LineQubit.range(n)) if ionq else None,
            compile_to=cirq_ionq.IonQTargetGateset() if ionq else cirq.CZTargetGateset(),
            native_gates=IONQ_GATES if ionq else QUANTINUUM_GATES, max_shots=max_shots,
            description=(f"Azure Quantum {self.target_name} in workspace {self.workspace.name} ({n} qubits, "
                         f"all-to-all, {_word(status.current_availability)}); jobs are followed again after a restart"),
        )  # fmt: skip

    # -- circuits: the provider's own format decides ----------------------------------------

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        self.device.validate(label, circuit)
        check_qubits_only(label, circuit, target=self.name)
        problem = convert.refusal(self.provider, circuit)
        if problem is not None:
            raise DeviceValidationError(f"circuit {label!r}: {self.target_name}: {problem}; submit with "
                                        f"compile=True to rewrite it into {self.target_name}'s gates")  # fmt: skip

    def compile(self, circuit: cirq.Circuit) -> cirq.Circuit:
        """Onto ``LineQubit(0..n-1)`` (any two couple), then into the provider's gates."""
        check_qubits_only(None, circuit, target=self.name)
        qubits = sorted(circuit.all_qubits())
        if not all(isinstance(q, cirq.LineQubit) and 0 <= q.x < self.device.max_qubits for q in qubits):
            circuit = circuit.transform_qubits(dict(zip(qubits, cirq.LineQubit.range(len(qubits)))))
        compiled = self.device.compile(circuit)
        return cirq.Circuit(cirq.Moment(op for op in m if not isinstance(op.gate, cirq.GlobalPhaseGate)) for m in compiled)

    # -- the hooks ----------------------------------------------------------------------------

    def parts(self, job: TargetJob) -> list[list[int]]:
        return [[i] for i in range(len(job.circuits))]

    def prepare(self, job: TargetJob, items: list[int]) -> convert.Program:
        (circuit,) = super().prepare(job, items)  # resolved at its sweep point
        try:
            return convert.to_program(self.provider, circuit, job.shots)
        except Exception:  # noqa: BLE001 - a converter's refusal (cirq-ionq raises its own kinds too)
            raise InvalidCircuitError(f"{self.target_name}: {convert.refusal(self.provider, circuit)}") from None

    def azure_id(self, job: TargetJob, items: list[int]) -> str:
        """The Azure job id of these items: chosen by the client, derived from qnb's id."""
        return str(uuid.uuid5(_JOB_IDS, f"{job.job_id}/{','.join(map(str, items))}"))

    def create(self, program: convert.Program, job: TargetJob, items: list[int], name: str) -> str:
        azure_id = self.azure_id(job, items)
        container = self.workspace.get_container_uri(job_id=azure_id)
        blob = ContainerClient.from_container_url(container, retry_total=0).get_blob_client("inputData")
        blob.upload_blob(program.data, overwrite=True, content_settings=ContentSettings(content_type=self.formats.content_type))
        try:
            Job.from_storage_uri(
                self.workspace, name=name, target=self.target_name, input_data_uri=remove_sas_token(blob.url),
                provider_id=self.formats.provider_id, input_data_format=self.formats.input_data_format,
                output_data_format=self.formats.output_data_format, container_uri=container, job_id=azure_id,
                input_params={"shots": job.shots}, metadata=program.metadata,
            )  # fmt: skip
        except azure_errors.ResourceExistsError:
            pass  # 409: this id was created by an earlier PUT whose answer was lost
        return azure_id

    def find(self, job: TargetJob, items: list[int], name: str) -> str | None:
        try:
            return self.workspace.get_job(self.azure_id(job, items)).id
        except azure_errors.ResourceNotFoundError:
            return None

    def read(self, vendor_id: str) -> VendorJobState:
        try:
            job = self.workspace.get_job(vendor_id)
        except azure_errors.ResourceNotFoundError:
            return VendorJobState("Deleted", error="Azure Quantum no longer knows this job")
        return _state(job.details, job)

    def read_many(self, vendor_ids: list[str]) -> dict[str, VendorJobState]:
        """A few jobs by id; more through one listing of the target's unfinished jobs (one
        request a page of 100), then each job that left it once by id."""
        if len(vendor_ids) <= GET_EACH_UP_TO:
            return {vendor_id: self.read(vendor_id) for vendor_id in vendor_ids}
        listed = {d.id: d for d in self.workspace.list_jobs_paginated(target=[self.target_name], status=list(UNFINISHED))}
        states = {i: _state(listed[i], None) for i in vendor_ids if i in listed}
        states.update((i, self.read(i)) for i in vendor_ids if i not in listed)
        return states

    def outcomes(self, vendor_id: str, state: VendorJobState, items: list[int],
                 params: list[cirq.ParamResolver | None]) -> dict[int, ItemOutcome]:  # fmt: skip
        job = state.raw if isinstance(state.raw, Job) else self.workspace.get_job(vendor_id)
        # The blob as job.download_data() reads it, but in one try: azure-storage-blob backs
        # off 15 s and more inside the call, past the deadline; the shape retries instead.
        sas_uri = job._get_blob_uri_with_sas_token(job.details.output_data_uri)
        payload = json.loads(BlobClient.from_blob_url(sas_uri, retry_total=0).download_blob().readall())
        seed = self.seed if self.seed is not None else int(hashlib.sha256(vendor_id.encode()).hexdigest(), 16) % 2**32
        simulator = ".sim" in self.target_name
        result = convert.to_result(self.provider, payload, job.details.metadata or {}, params[0],
                                   simulator=simulator, seed=seed)  # fmt: skip
        text = cirq.to_json(result, indent=None)
        return {items[0]: ItemOutcome(JobStatus.COMPLETED, result=text, engine=f"azure {self.target_name}")}

    def queue_figures(self) -> QueueFigures | None:
        """The target's average queue time (seconds), from the workspace's target status."""
        found = self.workspace._get_target_status(self.target_name)
        average = found[0][1].average_queue_time if found else None
        if average is None or average < 0:
            return None
        return QueueFigures(average_wait=float(average), source=f"Azure Quantum {self.target_name}")

    def cancel_remote(self, vendor_id: str) -> None:
        job = self.workspace.get_job(vendor_id)
        if not job.has_completed():
            try:
                self.workspace.cancel_job(job)
            except azure_errors.ResourceExistsError:
                pass  # 409: it finished meanwhile; the next read says how

    def as_error(self, exc: Exception, what: str) -> QnbError:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, azure_errors.ClientAuthenticationError):
            return NotAuthenticatedError(
                f"Azure Quantum refused the credential on {what} ({_reason(exc)}): check the connection string "
                f"(${CONNECTION_STRING}), api_key= or your Azure login"
            )
        if isinstance(exc, azure_errors.HttpResponseError) and status and 400 <= status < 500 and status not in (408, 429):
            return VendorRejectedError(f"Azure Quantum refused {what} ({status}): {_reason(exc)}", status=status)
        if isinstance(exc, (ValueError, KeyError)) and not isinstance(exc, azure_errors.AzureError):
            return VendorRejectedError(f"Azure Quantum's answer to {what} cannot be read: {exc}")
        kind = f"{status}: " if status else f"{type(exc).__name__}: "
        if isinstance(exc, (azure_errors.ServiceRequestError, azure_errors.ServiceResponseError)):
            return ServerUnreachableError(f"Azure Quantum did not answer {what} ({kind}{_reason(exc)})")
        return RemoteError(f"Azure Quantum did not answer {what} ({kind}{_reason(exc)})", status=status)
