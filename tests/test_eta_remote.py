"""ETAs of jobs on targets that own their queue (issue 20).

A queue server (real uvicorn on 127.0.0.1, its own JobManager) estimates every job in
its queue and sends the estimate with the job's view, queue entry and events; a kernel
connected to it shows the server's estimate as the job's; ``POST /v1/estimate`` answers
before anything is stored. Vendors (their real clients against the stand-ins): a Braket
task's queue position and the device's queue depth, IonQ's and Azure's average queue
times, IBM's pending jobs and usage estimation flow into the ETA, combined with qnb's
history of the target; ``basis`` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import threading

import cirq
import httpx
import pytest
import uvicorn

import qnb
from qnb import _manager, _prices
from qnb._estimate import Estimate, TargetHistory
from qnb._features import features_of
from qnb._targets._queue_eta import JobFigures, QueueFigures, estimate_left
from conftest import wait_until
from ionq_standin import StandIn, free_port
from test_server_support import BELL, BELL_JSON, FLIP, auth, make_users, submit_body
from vendor_support import served

Q = cirq.LineQubit.range(2)
VENDOR_BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(*Q, key="m"))
#: Past runs on a target: 2 s for 10 item-shots (0.2 s each), waits of 30 s and 50 s.
HISTORY = TargetHistory(waits=(30.0, 50.0), runs=((2.0, 10),))


def on_loop(coroutine, timeout: float = 30.0):
    """Run a target's coroutine on the process manager's loop (where its I/O lives)."""
    return asyncio.run_coroutine_threadsafe(coroutine, _manager.get_manager().loop).result(timeout)


def handle_of(job):
    return wait_until(lambda: _manager.get_manager().record(job.id).live.handle, what="the job's handle")


# -- the combination, on its own ------------------------------------------------------------------


def test_the_most_specific_figure_decides_the_wait_and_basis_says_which():
    braket = QueueFigures(depth=40, source="Braket")
    positioned = JobFigures(shots=10, items=1, position=7, drain=0.5)
    found = estimate_left("Amazon Braket", braket, positioned, HISTORY)
    assert found.wait_seconds == pytest.approx(14.0) and found.run_seconds == pytest.approx(2.0)
    assert found.basis.startswith("Braket queue position 7 of 40, moving a place every ~2 s")
    assert "run time from 1 past jobs on this target" in found.basis
    # Not moved yet: the run pace of past jobs stands for each task ahead.
    paced = estimate_left("Amazon Braket", braket, dataclasses.replace(positioned, drain=None), HISTORY)
    assert paced.wait_seconds == pytest.approx(7 * 2.0) and "at ~2 s a task" in paced.basis
    # An average queue time, less what the job has waited already.
    ionq = QueueFigures(average_wait=600.0, source="IonQ qpu.aria-1")
    waited = estimate_left("IonQ", ionq, JobFigures(shots=10, items=3, waited=100.0), HISTORY)
    assert waited.wait_seconds == pytest.approx(500.0) and waited.run_seconds == pytest.approx(6.0)
    assert waited.basis.startswith("IonQ qpu.aria-1's average queue time ~10 min")
    # Nothing from the vendor: qnb's median wait on the target.
    bare = estimate_left("IBM Quantum", None, JobFigures(shots=10, items=1), HISTORY)
    assert bare.wait_seconds == pytest.approx(40.0) and "median wait of 2 past jobs" in bare.basis
    # Running: no wait, what is left of the run; the vendor's own run estimate first.
    running = JobFigures(shots=10, items=1, vendor_run=9.0, running_for=4.0)
    left = estimate_left("IBM Quantum", QueueFigures(depth=3), running, HISTORY)
    assert (left.wait_seconds, left.run_seconds) == (0.0, pytest.approx(5.0))
    assert "the vendor's own estimate" in left.basis
    # Nothing known at all: no estimate rather than a guess.
    assert estimate_left("IonQ", None, JobFigures(shots=None, items=1), TargetHistory()) is None


# -- a queue server -----------------------------------------------------------------------------


class Served:
    """A queue server app under uvicorn on a thread, on a free loopback port."""

    def __init__(self, app):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, name="eta-queue-server", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=20, what="the queue server to listen")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def queue_server(folder, device: str = "emulator"):
    """A queue server of ``device`` (users alice, bob, root) under uvicorn, its store in
    ``folder``: (url, its JobManager, tokens)."""
    from qnb.server._app import create_app
    from qnb.server._auth import Users

    users_file = folder / "users.toml"
    tokens = make_users(users_file)
    server_manager = _manager.JobManager(folder / "server", requeue_interrupted=True)
    app = create_app(server_manager, device=device, users=Users.from_file(users_file))
    served = Served(app)
    try:
        yield served.url, server_manager, tokens
    finally:
        app.state.close()
        served.stop()
        server_manager.close()


@pytest.fixture
def lab(tmp_path):
    with queue_server(tmp_path) as found:
        yield found


def block_device(server_manager, name="blocker", shots=100_000):
    """A long job of root's on the server's device, so that later jobs wait."""
    from qnb._targets._simulators import registry

    return server_manager.submit(registry.get("emulator"), {"b": BELL}, shots=shots, name=name, user="root")


def test_post_estimate_answers_before_anything_is_stored(lab):
    url, server, tokens = lab
    headers = auth(tokens["alice"])
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        answer = http.post("/v1/estimate", json=submit_body(BELL_JSON, shots=200))
        assert answer.status_code == 200, answer.text
        said = answer.json()
        assert set(said) == {"run_seconds", "wait_seconds", "finish", "cost", "currency", "basis"}
        assert Estimate.from_json(said).cost == said["cost"]
        # Features alone (what a kernel's qnb.estimate sends): the same answer's shape.
        features = dataclasses.asdict(features_of(BELL))
        by_features = http.post("/v1/estimate", json={"features": [features, features], "shots": 200})
        assert by_features.status_code == 200, by_features.text
        assert set(by_features.json()) == set(said)
        # Bad input: refused, naming what is wrong.
        for body, words in [
            ({"shots": 10}, "either circuits or features"),
            ({**submit_body(), "features": [features]}, "either circuits or features"),
            ({"features": [{**features, "qubits": 99}]}, "does not fit"),
            ({"features": [{**features, "qubits": -1}]}, "greater than or equal"),
            ({"features": [{**features, "depth": "3"}]}, "integer"),
            ({"features": []}, "1 to"),
            ({"features": [features] * 400}, "1 to"),  # more than a batch may have
            ({"features": [features] * 10_001}, "at most 10000"),  # refused as it is read
            ({"features": [features], "shots": 0}, "shots"),
            (submit_body("not a circuit"), "circuit"),
        ]:
            refused = http.post("/v1/estimate", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert words in refused.text, (words, refused.text)
        assert http.post("/v1/estimate", json={"features": [features]}, headers={"Authorization": "Bearer x"}
                         ).status_code == 401  # fmt: skip
    assert server.find(limit=10) == []  # nothing stored, by any of them


def test_the_servers_estimates_reach_its_views_queue_events_and_the_kernel(manager, lab):
    url, server, tokens = lab
    running = block_device(server, name="running")
    queued = block_device(server, name="queued")  # waits behind it, ahead of alice's job
    target = qnb.connect("lab", url, token=tokens["alice"], retry_for=10)
    job = qnb.submit(FLIP, target="lab", shots=20, name="behind")
    with httpx.Client(base_url=url, headers=auth(tokens["alice"]), timeout=30) as http:
        view = wait_until(lambda: _with_estimate(http.get(f"/v1/jobs/{job.id}").json()), what="the server's estimate")
        said = Estimate.from_json(view["estimate"])
        assert said.wait_seconds > 20 and said.finish is not None  # behind two long jobs
        entry = next(e for e in http.get("/v1/queue").json()["entries"] if e["id"] == job.id)
        assert _close(Estimate.from_json(entry["estimate"]), said)
        # Another user's entry keeps to the public fields; an admin sees every ETA.
        for who, shows in (("bob", False), ("root", True)):
            listed = http.get("/v1/queue", headers=auth(tokens[who])).json()["entries"]
            assert ("estimate" in next(e for e in listed if e["id"] == job.id)) is shows
        events = http.get("/v1/events", params={"after": 0, "timeout": 0}).json()["events"]
        assert any(e["id"] == job.id and "estimate" in e for e in events)
    # The kernel's job shows the server's estimate, heard on the feed.
    shown = wait_until(lambda: job.estimate if _served(job) else None, what="job.estimate from the server")
    assert _close(shown, said) and shown.basis == f"the queue server's estimate ({said.basis})"
    handle = handle_of(job)
    assert _close(target.job_estimate(handle, TargetHistory()), shown)
    # The job ahead leaves: the server announces an earlier finish and the kernel follows.
    server.cancel(queued.id)
    half = said.wait_seconds / 4  # (each long job is about half of the wait)
    wait_until(lambda: _served(job) and job.estimate.finish.timestamp() < shown.finish.timestamp() - half,
               what="the earlier finish on the kernel's feed")  # fmt: skip
    server.cancel(running.id)
    job.result(timeout=60)
    assert job.estimate is None and target.job_estimate(handle, TargetHistory()) is None


def _with_estimate(view: dict) -> dict | None:
    return view if "estimate" in view else None


def _close(a: Estimate, b: Estimate, seconds: float = 5.0) -> bool:
    """The same estimate, taken a moment apart (the server forecasts again as time goes)."""
    return abs(a.finish.timestamp() - b.finish.timestamp()) <= seconds


def _served(job) -> bool:
    return job.estimate is not None and job.estimate.basis.startswith("the queue server's estimate (")


def test_a_job_behind_others_on_the_server_finishes_later(manager, lab):
    url, server, tokens = lab
    blocker = block_device(server, shots=200_000)
    qnb.connect("lab", url, token=tokens["alice"], retry_for=10)
    first = qnb.submit(FLIP, target="lab", shots=2_000, name="first")
    second = qnb.submit(FLIP, target="lab", shots=2_000, name="second")
    wait_until(lambda: _served(first) and _served(second), what="both jobs estimated by the server")
    assert second.estimate.finish > first.estimate.finish
    # Before submitting, the server's estimate counts every user's jobs ahead.
    ahead = qnb.estimate(FLIP, target="lab", shots=2_000)
    assert ahead.basis.startswith("the queue server's estimate (")
    assert ahead.finish.timestamp() >= second.estimate.finish.timestamp() - 1.0
    server.cancel(blocker.id)
    for job in (first, second):
        job.result(timeout=120)


def test_a_queue_server_prices_its_device_and_checks_max_cost(manager, lab):
    """The kernel knows no price for a server's device: the server estimates the cost,
    refuses a job over max_cost (nothing kept on either side) and keeps it with the job."""
    url, server, tokens = lab
    device = server.targets.get("emulator")
    _prices.configure(device, _prices.check_settings({"per_shot": 0.01}, None, None,
                                                     target="emulator", where="in this test"))  # fmt: skip
    try:
        qnb.connect("lab", url, token=tokens["alice"], retry_for=10)
        with pytest.raises(qnb.CostLimitError, match=r"\$10.00, above max_cost=5"):
            qnb.submit(FLIP, target="lab", shots=1_000, max_cost=5)  # 1,000 shots at $0.01
        assert server.store.find_jobs() == [] and manager.store.find_jobs() == []
        assert qnb.estimate(FLIP, target="lab", shots=1_000).cost == pytest.approx(10.0)
        job = qnb.submit(FLIP, target="lab", shots=200, max_cost=5)
        assert server.load(job.id).cost == pytest.approx(2.0)
        job.result(timeout=60)
    finally:
        _prices.configure(device, None)


def test_a_retried_submit_finds_its_job_even_when_the_budget_is_spent(lab):
    """The budget counts the job a first POST created: its retry (same Idempotency-Key,
    its answer lost) gets that job back, not a cost refusal; a new job over it is refused."""
    url, server, tokens = lab
    device = server.targets.get("emulator")
    _prices.configure(device, _prices.check_settings({"per_shot": 0.01}, 3.0, None,
                                                     target="emulator", where="in this test"))  # fmt: skip
    try:
        headers = {**auth(tokens["alice"]), "Idempotency-Key": "once"}
        body = submit_body(shots=200)  # $2.00 of a $3.00 budget
        with httpx.Client(base_url=url, timeout=30) as http:
            first = http.post("/v1/jobs", json=body, headers=headers)
            again = http.post("/v1/jobs", json=body, headers=headers)
            assert first.status_code in (200, 201) and again.status_code in (200, 201), again.text
            assert again.json()["id"] == first.json()["id"] and again.json()["cost"] == pytest.approx(2.0)
            over = http.post("/v1/jobs", json=body, headers={**auth(tokens["alice"]), "Idempotency-Key": "two"})
            assert over.status_code == 402 and over.json()["code"] == "cost_limit", over.text
            assert "budget" in over.json()["detail"]
        assert len(server.store.find_jobs()) == 1
    finally:
        _prices.configure(device, None)


def test_estimate_submission_asks_the_server_and_falls_back_to_history(manager, lab):
    url, server, tokens = lab
    target = qnb.connect("lab", url, token=tokens["alice"], retry_for=10)
    features = [features_of(FLIP)]
    found = on_loop(target.estimate_submission(features, 100, HISTORY))
    assert isinstance(found, Estimate) and found.basis.startswith("the queue server's estimate")
    assert server.find(limit=10) == []
    # A server older than estimates answers 404: qnb's history of the target instead.
    old = qnb.connect("old-lab", url, token=tokens["alice"], retry_for=10,
                      transport=_Without("/v1/estimate"))  # fmt: skip
    fallback = on_loop(old.estimate_submission(features, 100, HISTORY))
    assert fallback.wait_seconds == pytest.approx(40.0) and fallback.run_seconds == pytest.approx(20.0)
    assert fallback.basis.endswith("(the server gives no estimates)")
    assert on_loop(old.estimate_submission(features, 100, TargetHistory())) is None  # nothing to go by


class _Without(httpx.AsyncBaseTransport):
    """A transport to the real server that answers 404 for one path (an older server)."""

    def __init__(self, path: str):
        self.path = path
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        if request.url.path == self.path:
            return httpx.Response(404, json={"detail": "Not Found", "code": "qnb"})
        return await self.inner.handle_async_request(request)


# -- vendors, through their real clients against the stand-ins ------------------------------------


@pytest.fixture
def braket(monkeypatch, tmp_path):
    """The Braket stand-in, boto3 pointed at it (and nothing of the machine's AWS set-up)."""
    from braket_standin import BraketStandIn

    for variable in [v for v in os.environ if v.startswith("AWS_") or v.startswith("AMZN_BRAKET")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))
    yield from served(BraketStandIn(), monkeypatch, BraketStandIn.env)


def register(kind: str, **options):
    import uuid

    return qnb.register_target(f"eta-{kind}-{uuid.uuid4().hex[:6]}", kind, poll_seconds=0.05, call_timeout=5.0,
                               **options)  # fmt: skip


@pytest.mark.slow
def test_a_braket_tasks_queue_position_and_the_devices_depth_flow_into_its_eta(manager, braket):
    from braket_standin import SV1

    target = register("braket", device=SV1, s3_destination="s3://qnb-results/eta")
    try:
        braket.queue_others(8, seconds_each=0.6)  # other accounts' tasks ahead, one leaving every 0.6 s
        job = qnb.submit(VENDOR_BELL, target=target.name, shots=10)
        handle = handle_of(job)
        # The task's position (GetQuantumTask) of the device's depth (GetDevice's deviceQueueInfo).
        first = wait_until(lambda: _estimate_with(target, handle, r"^Braket queue position \d of \d"),
                           what="a queue position and depth")  # fmt: skip
        place = re.match(r"Braket queue position (\d) of (\d)", first.basis)
        assert place and 1 < int(place[1]) <= int(place[2]) <= 9, first.basis
        assert "run time from 1 past jobs on this target" in first.basis and first.run_seconds == pytest.approx(2.0)
        # Once the position has moved, the queue's own pace turns it into a time.
        moving = wait_until(lambda: _estimate_with(target, handle, "moving a place every"), timeout=20,
                            what="the position to move")  # fmt: skip
        position = int(moving.basis.split("queue position ")[1].split()[0])
        # The job's own ETA (the core asks job_estimate after each report, with the
        # target's history in the store: none yet, so the queue's pace alone).
        wait_until(lambda: job.estimate is not None and re.match(r"Braket queue position \d of \d, moving",
                                                                 job.estimate.basis), what="job.estimate")  # fmt: skip
        assert position < int(place[1]) and 0.3 * 0.6 * position <= moving.wait_seconds <= 3 * 0.6 * position
        # The stand-in's figures are Braket's: the SDK's own reading of them.
        from braket.aws import AwsDevice
        from braket.aws.queue_information import QueueType

        depth = AwsDevice(SV1, target.session).queue_depth()
        assert set(depth.quantum_tasks) == {QueueType.NORMAL, QueueType.PRIORITY} and depth.jobs == "0"
        # Before submitting: the device's depth at the pace the queue moved.
        ahead = on_loop(target.estimate_submission([features_of(VENDOR_BELL)], 10, HISTORY))
        assert "waiting at Braket" in ahead.basis and ahead.wait_seconds > 0
        assert job.result(timeout=60).counts()
        assert target.job_estimate(handle, HISTORY).wait_seconds == 0.0  # it ran: nothing to wait for
    finally:
        target.close()


def _estimate_with(target, handle, pattern: str) -> Estimate | None:
    """The job's estimate once its basis has ``pattern`` (a regular expression)."""
    found = target.job_estimate(handle, HISTORY)
    return found if found is not None and re.search(pattern, found.basis) else None


@pytest.fixture
def ionq(monkeypatch, tmp_path):
    """IonQ's stand-in, whose jobs wait 30 s in its queue."""
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))
    yield from served(StandIn("eta-key", queue_seconds=30.0))


def test_ionqs_average_queue_time_flows_into_the_eta(manager, ionq):
    ionq.average_queue_seconds = 600.0  # GET /backends says 600,000 ms
    target = register("ionq", api_key="eta-key", remote_host=ionq.url)
    try:
        ahead = on_loop(target.estimate_submission([features_of(VENDOR_BELL)], 10, HISTORY))
        assert ahead.wait_seconds == pytest.approx(600.0)
        assert ahead.basis == "IonQ simulator's average queue time ~10 min; run time from 1 past jobs on this target"
        job = qnb.submit(VENDOR_BELL, target=target.name, shots=10)
        handle = handle_of(job)
        waiting = wait_until(lambda: _estimate_with(target, handle, "average queue time"), what="the job's ETA")
        assert 590.0 <= waiting.wait_seconds <= 600.0  # less what it has waited
        wait_until(lambda: job.estimate is not None and job.estimate.basis.startswith(
            "IonQ simulator's average queue time ~10 min"), what="job.estimate")  # fmt: skip
        assert ionq.requests["GET /v0.4/backends"] == 1  # once a minute at most, not per job or poll
        job.cancel()
    finally:
        target.close()


def test_figures_a_vendor_cannot_give_leave_the_history_and_the_job_alone(manager, ionq, monkeypatch):
    from qnb._targets import _queue_eta

    monkeypatch.setattr(_queue_eta, "FIGURES_MAX_AGE", 0.0)  # read them every time: each failure is seen
    ionq.queue_seconds = 0.05
    target = register("ionq", api_key="eta-key", remote_host=ionq.url, max_retry_seconds=0)
    try:
        ionq.inject(200, 1, path="/backends", garbage=True)  # a proxy's page instead of the listing
        ahead = on_loop(target.estimate_submission([features_of(VENDOR_BELL)], 10, HISTORY))
        assert ahead.wait_seconds == pytest.approx(40.0) and ahead.basis.startswith("median wait of 2 past jobs")
        ionq.inject(503, 10_000, path="/backends")  # then IonQ cannot answer it at all
        job = qnb.submit(VENDOR_BELL, target=target.name, shots=10)
        assert sum(job.result(timeout=60).counts().values()) == 10  # the job never waits on its ETA
        assert ionq.requests["GET /v0.4/backends"] >= 2 and target.connected  # the follower asked, in vain
    finally:
        target.close()


@pytest.fixture
def azure(monkeypatch, tmp_path):
    """Azure's stand-in, whose jobs wait 30 s in its queue."""
    from azure_standin import AzureStandIn

    for variable in ("AZURE_QUANTUM_CONNECTION_STRING", "AZURE_QUANTUM_WORKSPACE_NAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))
    yield from served(AzureStandIn("eta-azure-key", queue_seconds=30.0))


def test_azures_average_queue_time_flows_into_the_eta(manager, azure):
    from azure_standin import GROUP, LOCATION, SUBSCRIPTION, WORKSPACE

    azure.average_queue_seconds = 45  # the target's averageQueueTime, in seconds
    workspace = (f"SubscriptionId={SUBSCRIPTION};ResourceGroupName={GROUP};WorkspaceName={WORKSPACE};"
                 f"ApiKey=eta-azure-key;QuantumEndpoint=https://{LOCATION}.quantum.azure.com/;")  # fmt: skip
    target = register("azure", backend="ionq.simulator", connection_string=workspace, endpoint=azure.url + "/")
    try:
        assert target.workspace.get_targets("ionq.simulator").average_queue_time == 45  # azure-quantum's reading
        ahead = on_loop(target.estimate_submission([features_of(VENDOR_BELL)], 10, TargetHistory()))
        assert (ahead.wait_seconds, ahead.run_seconds) == (45.0, None) and ahead.finish is None
        assert ahead.basis == "Azure Quantum ionq.simulator's average queue time ~45 s"
        job = qnb.submit(VENDOR_BELL, target=target.name, shots=10)
        handle = handle_of(job)
        waiting = wait_until(lambda: _estimate_with(target, handle, "average queue time"), what="the job's ETA")
        assert 35.0 <= waiting.wait_seconds <= 45.0 and waiting.run_seconds == pytest.approx(2.0)
        job.cancel()
    finally:
        target.close()


@pytest.fixture
def ibm(monkeypatch, tmp_path):
    """IBM's stand-in (IAM, the Runtime API), whose jobs wait 30 s in its queue."""
    from qiskit_ibm_runtime.accounts import management

    from ibm_standin import IBMStandIn, client_env

    for variable in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_URL", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "qiskit-ibm.json"))
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))
    yield from served(IBMStandIn("eta-ibm-key", queue_seconds=30.0), monkeypatch, lambda s: client_env(s.url))


def test_ibms_pending_jobs_and_usage_estimation_flow_into_the_eta(manager, ibm):
    from ibm_standin import BACKEND, CRN, QUANTUM_SECONDS

    ibm.others_pending = 4  # other users' jobs pending on the backend
    target = register("ibm", backend=BACKEND, token="eta-ibm-key", instance=CRN, api_url=f"{ibm.url}/api/v1")
    try:
        assert target.backend.status().pending_jobs == 4  # qiskit-ibm-runtime's reading of the stand-in
        ahead = on_loop(target.estimate_submission([features_of(VENDOR_BELL)], 10, HISTORY))
        assert ahead.basis.startswith(f"4 waiting at IBM {BACKEND} at ~2 s each") and ahead.wait_seconds == 8.0
        job = qnb.submit(VENDOR_BELL, target=target.name, shots=10)
        handle = handle_of(job)
        # IBM's usage estimation is the job's run time; the backend's pending jobs as read
        # a moment ago (a minute old figures do) its wait.
        waiting = wait_until(lambda: _estimate_with(target, handle, "vendor's own estimate"), what="the job's ETA")
        assert waiting.run_seconds == QUANTUM_SECONDS and waiting.basis.startswith(f"4 waiting at IBM {BACKEND}")
        job.cancel()
    finally:
        target.close()
