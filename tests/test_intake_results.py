"""Counts and plots of results with several keys, keys measured twice, and which
failures a message offers to resubmit."""

from __future__ import annotations

import cirq
import matplotlib
import pytest

matplotlib.use("Agg")

import qnb
from qnb._errors import QnbError
from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus
from qnb._results import JobResult, counts_of, measurement_keys, resubmit_hint

Q = cirq.LineQubit.range(3)

# X, measure "a" (1); X again, measure "a" again (0); q1 and q2 into "b" as 1 0.
TWICE = cirq.Circuit(
    cirq.X(Q[0]), cirq.measure(Q[0], key="a"), cirq.X(Q[0]), cirq.X(Q[1]),
    cirq.measure(Q[0], key="a"), cirq.measure(Q[1], Q[2], key="b"),
)


def _job_result(circuit: cirq.Circuit, shots: int = 10) -> JobResult:
    text = cirq.to_json(cirq.Simulator().run(circuit, repetitions=shots), indent=None)
    return JobResult("0" * 32, ["x"], {"x": text}, {})


def test_a_key_measured_twice_counts_per_key_and_together():
    result = _job_result(TWICE)
    with pytest.raises(ValueError):
        result["x"].measurements  # Cirq's own view refuses repeated keys
    assert result.counts(key="a") == {"10": 10}  # first measurement, then the second
    assert result.counts(key="b") == {"10": 10}
    assert result.counts() == {"1010": 10}  # a (both times), then b
    assert result.counts(key=["b", "a"]) == {"1010": 10}
    assert result.keys_of() == ["a", "b"]


def test_key_order_is_by_name_with_numbers_compared_as_numbers():
    # Measured in the order c_10, c_2, c_1: the bits still read c_1, c_2, c_10.
    qubits = cirq.LineQubit.range(3)
    circuit = cirq.Circuit(
        cirq.X(qubits[0]), cirq.measure(qubits[0], key="c_10"),
        cirq.measure(qubits[1], key="c_2"), cirq.measure(qubits[2], key="c_1"),
    )
    result = cirq.Simulator().run(circuit, repetitions=3)
    assert measurement_keys(result) == ["c_1", "c_2", "c_10"]
    assert counts_of(result) == {"001": 3}


def test_unknown_key_says_which_keys_there_are():
    with pytest.raises(QnbError, match="no measurement key 'c' in this result; its keys: 'a', 'b'"):
        _job_result(TWICE).counts(key="c")


def test_plot_of_a_key_measured_twice():
    result = _job_result(TWICE)
    ax = result.plot(key="a")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10"]
    assert "[a]" in ax.get_title()
    ax = result.plot()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1010"]


def test_repeated_key_runs_through_submit(manager):
    result = qnb.run(TWICE, shots=20, timeout=60)
    assert result.counts(key="a") == {"10": 20}
    assert result.counts() == {"1010": 20}


@pytest.mark.parametrize(
    "status, retryable, hint",
    [
        (JobStatus.CANCELLED, None, True),  # cancelled: running it again is what resubmit is for
        (JobStatus.FAILED, True, True),  # a lost worker, a cluster or vendor away, interrupted
        (JobStatus.FAILED, False, False),  # the circuit's own error, its time limit
        (JobStatus.FAILED, None, False),  # nobody said (a sampler's own error, an old store)
    ],
)
def test_resubmit_is_suggested_only_where_a_rerun_can_help(status, retryable, hint):
    # Decided where the failure happened (ItemOutcome.retryable), never from its words:
    # tests/test_retryable.py follows the flag from each place that sets it.
    rec = JobRecord(id="j", name="j", target="sim", user="u", shots=1, time_added=0.0, status=status,
                    items=[ItemRecord("0", status, error="BrokenProcessPool: words say nothing",
                                      retryable=retryable)])  # fmt: skip
    assert resubmit_hint(rec) == ("; job.resubmit() runs it again" if hint else "")
