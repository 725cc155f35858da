"""The "dask" target kind on a real ``distributed.LocalCluster`` (2 worker processes):
chunked tasks with their own keys, cancel, a lost worker, an address that does not
answer, the targets file, and ``qnb serve --executor dask://``."""

from __future__ import annotations

import os
import signal
import socket
import time

import cirq
import distributed
import httpx
import pytest

import qnb
from qnb import JobStatus
from qnb._core import _runner
from qnb._targets import registry
from qnb._targets._dask import DaskExecutor, scheduler_address
from conftest import wait_until
from test_server_support import ServeProcess

# One worker runs this file (loadgroup): its module-scoped fixtures start once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask")]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
        silence_logs=50,  # a killed worker is expected here, not worth a page of logs
    ) as local, distributed.Client(local) as client:  # fmt: skip
        # Cirq and qsimcirq load once per worker, here, not in the first test's time.
        client.run(__import__, "qnb._targets._worker")
        yield local, client


@pytest.fixture
def cluster_target(manager, cluster):
    local, _ = cluster
    target = qnb.register_target("cluster", "dask", address=local.scheduler_address, engine="qsim")
    yield target
    registry._targets.pop("cluster", None)


def bell() -> cirq.Circuit:
    a, b = cirq.LineQubit.range(2)
    return cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))


def heavy(seed: int, n_qubits: int = 20, layers: int = 30) -> cirq.Circuit:
    """A circuit that keeps a worker busy for a fraction of a second."""
    qubits = cirq.LineQubit.range(n_qubits)
    circuit = cirq.Circuit()
    for layer in range(layers):
        circuit += cirq.Moment(cirq.rx(0.1 * (seed + layer + i))(q) for i, q in enumerate(qubits))
        circuit += cirq.Moment(cirq.CZ(qubits[i], qubits[i + 1]) for i in range(layer % 2, n_qubits - 1, 2))
    return circuit + cirq.measure(*qubits, key="m")


def qnb_tasks(client: distributed.Client) -> list[str]:
    """qnb's tasks the scheduler still holds."""
    return client.run_on_scheduler(
        lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks if str(k).startswith("qnb-")]
    )


def test_a_batch_runs_on_the_cluster_in_chunks(cluster_target):
    executor = cluster_target.executor
    job = qnb.submit({f"bell{i}": bell() for i in range(200)}, target="cluster", shots=100)
    result = job.result(timeout=120)
    assert job.status is JobStatus.COMPLETED and len(result) == 200
    assert all(sum(result[f"bell{i}"].histogram(key="m").values()) == 100 for i in range(200))
    assert all(set(result.counts(label=f"bell{i}")) <= {"00", "11"} for i in range(200))
    # Bell pairs cost far less than Dask's ~1 ms a task: they leave in a few chunks.
    assert 2 <= executor.sent_chunks <= 20, executor.sent_chunks
    assert "Dask cluster" in qnb.targets()["cluster"].description


def test_sampling_is_not_cached_by_key(cluster_target):
    qubits = cirq.LineQubit.range(6)
    circuit = cirq.Circuit(cirq.H.on_each(*qubits), cirq.measure(*qubits, key="m"))
    first = qnb.run(circuit, target="cluster", shots=200, timeout=60)
    second = qnb.run(circuit, target="cluster", shots=200, timeout=60)
    assert first.counts() != second.counts()  # pure=True would return the same sample


def test_sweeps_and_fallback_engines_run_on_workers(cluster_target):
    import sympy

    q = cirq.LineQubit(0)
    theta = sympy.Symbol("theta")
    circuit = cirq.Circuit(cirq.rx(theta)(q), cirq.measure(q, key="m"))
    job = qnb.submit(circuit, target="cluster", params=cirq.Points("theta", [0.0, 3.141592653589793]), shots=50)
    points = job.result(timeout=60).sweep()
    assert [dict(p.histogram(key="m")) for p in points] == [{0: 50}, {1: 50}]
    # Classical control: qsim hands it to cirq.Simulator on the worker, which says so.
    a, b = cirq.LineQubit.range(2)
    controlled = cirq.Circuit(cirq.X(a), cirq.measure(a, key="a"), cirq.X(b).with_classical_controls("a"),
                              cirq.measure(b, key="b"))  # fmt: skip
    job = qnb.submit(controlled, target="cluster", shots=20)
    job.result(timeout=60)
    assert any("cirq.Simulator" in engine for engine in job.engines), job.engines


def test_cancel_stops_the_cluster_work(cluster_target, cluster):
    _, client = cluster
    job = qnb.submit({f"c{i}": heavy(i) for i in range(40)}, target="cluster", shots=10)
    wait_until(lambda: job.status is JobStatus.RUNNING, timeout=30, what="the job to run")
    wait_until(lambda: qnb_tasks(client), timeout=30, what="qnb tasks on the scheduler")
    start = time.monotonic()
    job.cancel()
    wait_until(lambda: job.status is JobStatus.CANCELLED, timeout=10, what="the job cancelled")
    assert time.monotonic() - start < 5
    # Nothing of the job is left on the cluster (a running chunk finishes and is dropped).
    wait_until(lambda: not qnb_tasks(client), timeout=30, what="the cluster to let go of the job's tasks")
    assert len(job.items) == 40 and not all(item.status is JobStatus.COMPLETED for item in job.items)


def test_a_lost_worker_s_tasks_run_again_elsewhere(cluster_target, cluster):
    _, client = cluster
    job = qnb.submit({f"h{i}": heavy(i, layers=40) for i in range(8)}, target="cluster", shots=10)

    victim = wait_until(lambda: busy_worker(client), timeout=30, interval=0.02, what="a worker running qnb's task")
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    result = job.result(timeout=180)  # Dask runs the lost tasks on the other worker
    assert job.status is JobStatus.COMPLETED and len(result) == 8
    two_workers_again(client)


def busy_worker(client: distributed.Client) -> str | None:
    """The address of a worker running a task, if one is."""
    processing = client.run_on_scheduler(
        lambda dask_scheduler: {ws.address: len(ws.processing) for ws in dask_scheduler.workers.values()}
    )
    return next((address for address, n in processing.items() if n), None)


def two_workers_again(client: distributed.Client) -> None:
    """After a worker was killed: the nanny brings a new one up, so the next test has two
    again (and closing the cluster does not wait on a worker still starting). Two that
    answer: for a moment the scheduler may still list the dead one."""
    def two_answer() -> bool:
        answers = client.run(__import__, "qnb._targets._worker", on_error="return")
        return len(answers) == 2 and not any(isinstance(a, BaseException) for a in answers.values())

    wait_until(two_answer, timeout=120, interval=0.2, what="the nanny to restart the worker")


def test_a_worker_s_death_the_cluster_gives_up_on_is_run_again_by_qnb(manager, cluster, monkeypatch):
    """With Dask's own retries off (``allowed-failures`` 0: the scheduler gives up on a
    task at its first worker death), ``retries=`` runs the item again (issue 20)."""
    local, client = cluster
    monkeypatch.setattr(_runner, "RETRY_FIRST_SECONDS", 0.05)
    q = cirq.LineQubit.range(3)
    slow = cirq.Circuit(cirq.H.on_each(*q), cirq.measure(q[0], key="mid"), cirq.CNOT(q[0], q[1]),
                        cirq.measure(*q, key="m"))  # fmt: skip

    def allow_failures(count: int) -> int:  # on the running scheduler; answers the old value
        def swap(dask_scheduler):
            old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, count
            return old

        return client.run_on_scheduler(swap)

    allowed = allow_failures(0)
    try:
        qnb.register_target("dask-once", "dask", address=local.scheduler_address, engine="cirq", retries=0)
        job = qnb.submit({"slow": slow}, target="dask-once", shots=1000, retries=2)
        victim = wait_until(lambda: busy_worker(client), timeout=60, interval=0.02, what="a worker running the item")
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        assert sum(job.result(timeout=180).counts("slow").values()) == 1000
        item = job.items[0]
        assert item.attempts >= 1 and "could not run it" in item.history[0], item.history
    finally:
        allow_failures(allowed)
        registry._targets.pop("dask-once", None)
    two_workers_again(client)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_does_not_answer_is_a_clear_error_at_once(manager):
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(qnb.ServerUnreachableError, match=f"no Dask scheduler answers at tcp://127.0.0.1:{port}"):
        qnb.register_target("nowhere", "dask", address=f"127.0.0.1:{port}", connect_timeout=2)
    assert time.monotonic() - start < 3
    assert "nowhere" not in qnb.targets()
    with pytest.raises(qnb.InvalidOptionError, match="not a Dask scheduler address"):
        qnb.register_target("nowhere", "dask", address="http://example.org/")
    with pytest.raises(qnb.InvalidOptionError, match="engine must be one of"):
        qnb.register_target("nowhere", "dask", address="127.0.0.1:1", engine="gpu")
    assert scheduler_address("dask://10.0.0.1:9000") == "tcp://10.0.0.1:9000"


def test_a_scheduler_that_accepts_but_never_answers_fails_the_items_in_bounded_time(manager):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the TCP handshake completes; no Dask handshake ever comes
    try:
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        qnb.register_target("silent", "dask", address=address, connect_timeout=1.5)
        start = time.monotonic()
        job = qnb.submit(bell(), target="silent", shots=10)
        wait_until(job.done, timeout=20, what="the job to fail")
        assert time.monotonic() - start < 10
        assert job.status is JobStatus.FAILED
        assert f"no Dask scheduler answers at {address}" in job.items[0].error
    finally:
        silent.close()
        registry._targets.pop("silent", None)


def test_a_targets_file_table_with_kind_dask(manager, cluster, tmp_path, monkeypatch):
    local, _ = cluster
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.farm]\nkind = "dask"\naddress = "{local.scheduler_address}"\nengine = "cirq"\n')
    monkeypatch.setenv("QNB_TARGETS", str(path))
    registry.rescan()
    try:
        listed = qnb.targets()["farm"]
        assert listed.max_qubits is None and "kind 'dask'" in listed.description
        counts = qnb.run(bell(), target="farm", shots=50, timeout=60).counts()
        assert set(counts) <= {"00", "11"}
        assert "cirq.Simulator state vector on the Dask cluster" in qnb.targets()["farm"].description
    finally:
        registry._targets.pop("farm", None)
        monkeypatch.delenv("QNB_TARGETS")
        registry.rescan()


def test_executor_keeps_one_client_per_loop(cluster):
    import asyncio

    local, _ = cluster
    executor = DaskExecutor(local.scheduler_address)

    async def one() -> tuple:
        outcome = await executor.run("qsim", 0.0, bell(), 10)
        await executor.close()
        return outcome

    for _ in range(2):  # a new loop each time, as a new JobManager has
        ok, payload, engine = asyncio.run(one())
        assert ok and engine == "qsim" and cirq.read_json(json_text=payload).repetitions == 10


class DaskServe(ServeProcess):
    def __init__(self, *args, executor: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.executor = executor

    def command(self) -> list[str]:
        return super().command() + ["--executor", self.executor]


def test_serve_with_a_dask_executor_runs_the_device_work_on_the_cluster(manager, cluster, tmp_path):
    local, client = cluster
    address = local.scheduler_address.replace("tcp://", "dask://")
    server = DaskServe(tmp_path, users_file=None, device="sim", executor=address).start()
    try:
        with distributed.get_task_stream(client) as stream:
            qnb.connect("lab-dask", server.url)
            job = qnb.submit({f"b{i}": bell() for i in range(20)}, target="lab-dask", shots=100)
            result = job.result(timeout=120)
            assert len(result) == 20 and set(result.counts(label="b7")) <= {"00", "11"}
        assert any(str(task["key"]).startswith("qnb-") for task in stream.data)
        assert "circuits run on Dask" in httpx.get(f"{server.url}/v1/device", timeout=5).text
    finally:
        server.stop()
        registry._targets.pop("lab-dask", None)


def test_serve_with_a_dask_executor_that_does_not_answer_exits_with_a_clear_error(tmp_path):
    import subprocess
    import sys

    port = _closed_port()
    done = subprocess.run(
        [sys.executable, "-m", "qnb._cli", "serve", "--device", "sim", "--db", str(tmp_path / "q.db"),
         "--executor", f"dask://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"no Dask scheduler answers at tcp://127.0.0.1:{port}" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "qnb._cli", "serve", "--db", str(tmp_path / "q.db"), "--executor", "spark://x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "unknown executor" in done.stderr
