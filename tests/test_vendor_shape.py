"""The remote-job shape every vendor adapter subclasses (``qnb.VendorTarget``), tested
through an in-memory vendor: exactly one creation under faults, refusals that leave
nothing behind, failed vendor jobs, a vendor away and back, re-attach in a new manager,
queue positions, usage, cancel, and jobs split into one vendor job per item."""

from __future__ import annotations

import itertools
import json
import threading
import time

import cirq
import pytest

import qnb
from qnb import JobStatus, _manager
from qnb._device import DeviceSpec
from qnb._errors import ServerUnreachableError, VendorRejectedError
from qnb._targets import ItemOutcome, registry
from qnb._targets._remote import VendorJobState, VendorTarget, parts_from, stored_id
from qnb.notebook._stream import connection_state
from conftest import wait_until

pytestmark = pytest.mark.usefixtures("quick_vendor_backoff")

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))
FLIP = cirq.Circuit(cirq.X(Q[1]), cirq.measure(*Q, key="m"))


class Refusal(Exception):
    """The fake vendor's 4xx."""


class FakeCloud:
    """A vendor's cloud in memory. Its jobs stay QUEUED until the test moves them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: dict[str, dict] = {}
        self.ids = (f"v-{n}" for n in itertools.count(1))
        self.creates = self.finds = self.cancels = 0
        self.away = False  # every call fails as if the network were down
        self.create_faults: list[str] = []  # "before" / "after" creating: a retryable error
        self.refuse: str | None = None  # the reason of a 4xx on create
        self.result_faults = 0  # outcome reads that fail (retryable) before one succeeds

    def _reach(self) -> None:
        if self.away:
            raise ConnectionError("no route to the fake cloud")

    def create(self, program, shots: int, name: str) -> str:
        self._reach()
        with self.lock:
            fault = self.create_faults.pop(0) if self.create_faults else None
            if self.refuse:
                raise Refusal(self.refuse)
            if fault == "before":
                raise ConnectionError("reset before the request arrived")
            vendor_id = next(self.ids)
            self.jobs[vendor_id] = {"name": name, "program": program, "shots": shots, "status": "QUEUED"}
            self.creates += 1
        if fault == "after":
            raise TimeoutError("the answer was lost")
        return vendor_id

    def find(self, name: str) -> str | None:
        self._reach()
        with self.lock:
            self.finds += 1
            return next((i for i, j in self.jobs.items() if j["name"] == name), None)

    def set(self, vendor_id: str, status: str, **fields) -> None:
        with self.lock:
            self.jobs[vendor_id].update(status=status, **fields)

    def set_all(self, status: str, **fields) -> None:
        for vendor_id in list(self.jobs):
            self.set(vendor_id, status, **fields)

    def read(self, vendor_id: str) -> VendorJobState:
        self._reach()
        with self.lock:
            job = dict(self.jobs[vendor_id])
        return VendorJobState(job["status"], job.get("error"), job.get("position"), job.get("usage"), raw=job)

    def results(self, vendor_id: str) -> list[cirq.Result]:
        self._reach()
        with self.lock:
            if self.result_faults:
                self.result_faults -= 1
                raise ConnectionError("results not reachable yet")
            job = self.jobs[vendor_id]
        return [cirq.Simulator(seed=1).run(c, repetitions=job["shots"]) for c in job["program"]]

    def cancel(self, vendor_id: str) -> None:
        self._reach()
        with self.lock:
            self.cancels += 1
            self.jobs[vendor_id]["status"] = "CANCELLED"


class FakeTarget(VendorTarget):
    vendor = "FakeCloud"
    STATUS = {
        "QUEUED": JobStatus.QUEUED, "RUNNING": JobStatus.RUNNING, "DONE": JobStatus.COMPLETED,
        "ERROR": JobStatus.FAILED, "CANCELLED": JobStatus.CANCELLED,
    }  # fmt: skip

    def __init__(self, name: str, cloud: FakeCloud, *, per_item: bool = False, **options):
        self.cloud = cloud
        self.per_item = per_item
        self.device = DeviceSpec(name=name, max_qubits=2, description="an in-memory vendor")
        super().__init__(name, poll_seconds=0.02, call_timeout=2.0, **options)

    def parts(self, job):
        return [[i] for i in range(len(job.circuits))] if self.per_item else super().parts(job)

    def create(self, program, job, items, name):
        return self.cloud.create(program, job.shots, name)

    def find(self, job, items, name):
        return self.cloud.find(name)

    def read(self, vendor_id):
        return self.cloud.read(vendor_id)

    def outcomes(self, vendor_id, state, items, params):
        found = self.cloud.results(vendor_id)
        return {i: ItemOutcome(JobStatus.COMPLETED, result=cirq.to_json(r, indent=None))
                for i, r in zip(items, found)}  # fmt: skip

    def cancel_remote(self, vendor_id):
        self.cloud.cancel(vendor_id)

    def as_error(self, exc, what):
        if isinstance(exc, Refusal):
            return VendorRejectedError(f"FakeCloud refused {what}: {exc}", status=400)
        return ServerUnreachableError(f"FakeCloud did not answer {what}: {exc}")


@pytest.fixture
def cloud():
    return FakeCloud()


def _register(cloud: FakeCloud, name: str = "fake", **options) -> FakeTarget:
    return qnb.register_target(name, FakeTarget(name, cloud, **options))


def _vendor_id(manager, job) -> str:
    return wait_until(lambda: manager.record(job.id).remote_id, what="the vendor's id stored")


def test_retryable_create_errors_make_one_vendor_job_found_before_any_second_create(manager, cloud):
    target = _register(cloud)
    cloud.create_faults = ["before", "after", "after"]  # lost, then created twice unheard
    job = qnb.submit(BELL, target=target.name, shots=20, name="paid")
    wait_until(lambda: cloud.creates == 1, what="the job created at the vendor")
    cloud.set_all("DONE")
    counts = job.result(timeout=30).counts()
    assert sum(counts.values()) == 20 and set(counts) <= {"00", "11"}
    assert cloud.creates == 1 and cloud.finds >= 2  # looked for after each failure
    (vendor_job,) = cloud.jobs.values()
    assert vendor_job["name"] == f"paid (qnb {job.id})"
    assert manager.record(job.id).remote_id == "v-1"


def test_a_refusal_fails_the_submit_and_stores_nothing(manager, cloud):
    target = _register(cloud)
    cloud.refuse = "gate 'foo' is not supported"
    with pytest.raises(VendorRejectedError, match="gate 'foo' is not supported"):
        qnb.submit(BELL, target=target.name, shots=10)
    assert qnb.jobs() == [] and cloud.jobs == {}


def test_a_failed_vendor_job_fails_its_items_with_the_vendors_reason_and_id(manager, cloud):
    target = _register(cloud)
    job = qnb.submit({"a": BELL, "b": FLIP}, target=target.name, shots=10)
    vendor_id = _vendor_id(manager, job)
    cloud.set(vendor_id, "RUNNING")
    wait_until(lambda: job.status is JobStatus.RUNNING, what="the job to run")
    cloud.set(vendor_id, "ERROR", error="ion chain lost")
    wait_until(lambda: job.status.is_terminal, what="the job to end")
    assert job.status is JobStatus.FAILED
    expected = f"FakeCloud status 'ERROR': ion chain lost (FakeCloud job {vendor_id})"
    assert [item.error for item in job.items] == [expected, expected]


def test_a_vendor_away_shows_reconnecting_and_never_fails_the_job(manager, cloud):
    target = _register(cloud)
    job = qnb.submit(FLIP, target=target.name, shots=10)
    vendor_id = _vendor_id(manager, job)
    cloud.away = True
    wait_until(lambda: not target.connected, what="the target to see the vendor away")
    assert connection_state(target.name, manager=manager) == "reconnecting"
    cloud.set(vendor_id, "DONE")
    cloud.result_faults = 2  # and its results are not there at once when it is back
    assert not job.status.is_terminal
    cloud.away = False
    assert job.result(timeout=60).counts() == {"01": 10}
    assert target.connected and connection_state(target.name, manager=manager) == "connected"
    assert cloud.creates == 1


def test_an_unknown_status_word_leaves_the_job_as_it_was(manager, cloud):
    target = _register(cloud)
    job = qnb.submit(FLIP, target=target.name, shots=10)
    vendor_id = _vendor_id(manager, job)
    cloud.set(vendor_id, "RUNNING")
    wait_until(lambda: job.status is JobStatus.RUNNING, what="the job to run")
    cloud.set(vendor_id, "CALIBRATING")
    handle = manager.record(job.id).live.handle
    wait_until(lambda: handle.vendor_status == "CALIBRATING", what="the new word to be read")
    assert job.status is JobStatus.RUNNING
    cloud.set(vendor_id, "DONE")
    assert job.result(timeout=30).counts() == {"01": 10}
    assert target.connected


def test_a_new_manager_reattaches_without_io_and_follows_the_job(tmp_path, cloud):
    home = tmp_path / "home"
    first = _manager.JobManager(home)
    previous = _manager.set_manager(first)
    try:
        target = _register(cloud, "fake-restart", per_item=True)
        job = qnb.submit({"a": BELL, "b": FLIP}, target=target.name, shots=10)
        remote_id = _vendor_id(first, job)
        assert json.loads(remote_id) == ["v-1", "v-2"]
        first.close()
        target.close()
        registry.unregister(target.name)
        second = _manager.JobManager(home)
        _manager.set_manager(second)
        try:
            cloud.away = True  # registering and re-attaching ask the vendor nothing
            again = _register(cloud, "fake-restart", per_item=True)
            wait_until(lambda: not again.connected, what="the follower to find the vendor away")
            cloud.set_all("DONE")
            cloud.away = False
            result = qnb.get_job(job.id).result(timeout=30)
            assert result.counts(label="b") == {"01": 10}
            assert cloud.creates == 2  # one vendor job per item, each created once
            again.close()
        finally:
            second.close()
            registry.unregister("fake-restart")
    finally:
        _manager.set_manager(previous)


def test_positions_come_from_the_vendor_and_its_queue_cannot_be_reordered(manager, cloud):
    target = _register(cloud)
    job = qnb.submit(FLIP, target=target.name, shots=10)
    vendor_id = _vendor_id(manager, job)
    cloud.set(vendor_id, "QUEUED", position=7)
    backend = target.queue_backend()
    wait_until(lambda: backend.known_positions().get(vendor_id) == 7, what="the position read")
    assert job.position_in_queue() == 7
    assert [e.id for e in backend.entries()] == [vendor_id]
    assert backend.entry(job.id).position == 7
    with pytest.raises(qnb.QueueError, match="FakeCloud's queue cannot be reordered"):
        qnb.queue(target.name).move_to_front(job.id)
    with pytest.raises(qnb.QueueError, match="cannot be reordered"):
        qnb.queue(target.name).remove_by_id(job.id)
    cloud.set(vendor_id, "RUNNING", position=None)
    wait_until(lambda: vendor_id not in backend.known_positions(), what="the job to leave the queue")
    assert job.position_in_queue() is None
    cloud.set(vendor_id, "DONE", usage={"quantum_seconds": 2.5})
    assert job.result(timeout=30).counts() == {"01": 10}
    assert target.usage(vendor_id) == {"quantum_seconds": 2.5}


def test_one_vendor_job_per_item_ends_each_item_as_its_vendor_job_did(manager, cloud):
    target = _register(cloud, per_item=True)
    job = qnb.submit({"a": BELL, "b": FLIP, "c": FLIP}, target=target.name, shots=10, name="split")
    remote_id = _vendor_id(manager, job)
    ids = json.loads(remote_id)
    assert [cloud.jobs[i]["name"] for i in ids] == [f"split (qnb {job.id}) #{k}" for k in (1, 2, 3)]
    cloud.set(ids[1], "DONE", usage={"quantum_seconds": 1.0})
    wait_until(lambda: job.items[1].status is JobStatus.COMPLETED, what="item b to complete")
    assert [it.status for it in job.items] == [JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.QUEUED]
    cloud.set(ids[0], "ERROR", error="too deep")
    cloud.set(ids[2], "DONE", usage={"quantum_seconds": 2.0})
    wait_until(lambda: job.status.is_terminal, what="the job to end")
    assert job.status is JobStatus.FAILED  # partial results kept
    assert [it.status for it in job.items] == [JobStatus.FAILED, JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert job.items[0].error == f"FakeCloud status 'ERROR': too deep (FakeCloud job {ids[0]})"
    assert job.result().counts(label="c") == {"01": 10}
    assert target.usage(remote_id) == {"quantum_seconds": 3.0}
    # Kept on the job, in the store: a process that comes later reads it too.
    assert job.usage == {"quantum_seconds": 3.0}
    manager.flush()
    assert manager.store.load_job(job.id).usage == {"quantum_seconds": 3.0}


def test_a_refused_part_cancels_the_parts_already_created(manager, cloud):
    target = _register(cloud, per_item=True, threads=1)  # parts created one after another
    original = cloud.create

    def refuse_the_second(program, shots, name):
        if name.endswith("#2"):
            raise Refusal("circuit b is too wide")
        return original(program, shots, name)

    cloud.create = refuse_the_second
    with pytest.raises(VendorRejectedError, match="too wide"):
        qnb.submit({"a": BELL, "b": FLIP}, target=target.name, shots=10)
    assert qnb.jobs() == []
    assert [j["status"] for j in cloud.jobs.values()] == ["CANCELLED"]


def test_cancel_reads_first_and_keeps_a_finished_vendor_job(manager, cloud):
    target = _register(cloud)
    job = qnb.submit(FLIP, target=target.name, shots=10)
    vendor_id = _vendor_id(manager, job)
    cloud.set(vendor_id, "RUNNING")
    wait_until(lambda: job.status is JobStatus.RUNNING, what="the job to run")
    job.cancel()
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="the job to be cancelled")
    assert cloud.cancels == 1 and "FakeCloud status 'CANCELLED'" in job.items[0].error

    slow = _register(cloud, "fake-slow")
    slow.poll_seconds = 3600  # the vendor finishes it; qnb has not read it yet
    done = qnb.submit(FLIP, target=slow.name, shots=10)
    done_id = _vendor_id(manager, done)
    cloud.set(done_id, "RUNNING")
    wait_until(lambda: manager.record(done.id).live.handle is not None, what="the handle")
    cloud.set(done_id, "DONE")
    done.cancel()
    assert done.result(timeout=30).counts() == {"01": 10}
    assert done.status is JobStatus.COMPLETED and cloud.cancels == 1


def test_stored_ids_round_trip():
    from qnb._targets._remote import VendorPart

    one = [VendorPart("abc|single|x", [0, 1])]
    assert stored_id(one, 2) == "abc|single|x"  # a vendor's own id form, as it was
    per_item = [VendorPart("a", [0]), VendorPart("b", [1])]
    assert stored_id(per_item, 2) == '["a", "b"]'
    grouped = [VendorPart("a", [0, 2]), VendorPart("b", [1])]
    for parts, n in ((one, 2), (per_item, 2), (grouped, 3)):
        again = parts_from(stored_id(parts, n), n)
        assert [(p.vendor_id, p.items) for p in again] == [(p.vendor_id, p.items) for p in parts]
    with pytest.raises(qnb.QnbError, match="names 2 vendor jobs for 3 items"):
        parts_from('["a", "b"]', 3)


@pytest.mark.slow  # ~8 s: 60 jobs
def test_many_jobs_read_one_by_one_keep_each_calls_deadline_to_its_own_run(manager, cloud, caplog):
    """60 reads of 50 ms on 2 threads take 1.5 s a round: each call's 1 s deadline
    must count its own run, not its wait for a thread, or the vendor would look away.
    (The margins are wide so that a loaded machine, which may starve a thread for a few
    hundred ms, cannot fail a read by itself.)"""
    target = _register(cloud, threads=2)
    target.call_timeout = 1.0
    slow_read = cloud.read

    def read(vendor_id):
        time.sleep(0.05)  # the vendor's answer takes its time (not a wait for an event)
        return slow_read(vendor_id)

    cloud.read = read
    jobs = [qnb.submit(FLIP, target=target.name, shots=5) for _ in range(60)]
    wait_until(lambda: cloud.creates == 60, what="every job created")
    cloud.set_all("DONE")
    with caplog.at_level("WARNING", logger="qnb"):
        for job in jobs:
            assert job.result(timeout=60).counts() == {"01": 5}
    assert not [r for r in caplog.records if "cannot read its jobs" in r.getMessage()]
    assert target.connected
