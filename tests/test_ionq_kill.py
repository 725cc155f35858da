"""The kill test: a process submits a job to the IonQ stand-in and is SIGKILLed; a new
process (a fresh JobManager on the same QNB_HOME) lists the job, follows it again once the
target is registered, and gets its results, with no second job created at IonQ."""

from __future__ import annotations

import pytest

import qnb
from qnb import JobStatus
from ionq_standin import StandIn
from vendor_support import (assert_nowhere_in, kill_once, new_process_manager, result_through, served, start_child,
                            submitter_script)  # fmt: skip

pytestmark = pytest.mark.slow

KEY = "sk-standin-kill-test-4242"

SUBMITTER = submitter_script(
    """
    url, key = sys.argv[1:3]
    qnb.register_target("qpu", "ionq", backend="qpu.aria-1", api_key=key, remote_host=url,
                        poll_seconds=0.05)
    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    flip = cirq.Circuit(cirq.X(q[1]), cirq.measure(*q, key="m"))
    job = qnb.submit({"bell": bell, "flip": flip}, target="qpu", shots=100, name="paid for")
    """
)


@pytest.fixture
def standin():
    stand = StandIn(KEY)
    stand.hold = True  # the job is still running at IonQ when its kernel dies
    yield from served(stand)


def test_a_killed_kernels_ionq_job_is_followed_again_without_a_rerun(tmp_path, standin, monkeypatch):
    home = tmp_path / "home"
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    child = start_child(SUBMITTER, home, standin.url, KEY)
    _, job_id, remote_id = kill_once(
        child, lambda line: standin.status_of(line[2].partition("|")[0]) == "running", what="IonQ to run it")
    assert remote_id.endswith("|batch|qpu.aria-1")

    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    with new_process_manager(home) as fresh:
        listed = qnb.jobs()
        assert [j.id for j in listed] == [job_id]
        assert listed[0].status in (JobStatus.QUEUED, JobStatus.RUNNING)  # not "interrupted"
        standin.release()
        target = qnb.register_target("qpu", "ionq", backend="qpu.aria-1", api_key=KEY,
                                     remote_host=standin.url, poll_seconds=0.05)  # fmt: skip
        result = result_through(target, job_id)
        assert result.counts(label="bell") == {"00": 50, "11": 50}
        assert result.counts(label="flip") == {"01": 100}
        assert standin.created == 1  # followed, not run again
        fresh.flush()
        assert_nowhere_in(home, KEY)
