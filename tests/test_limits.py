"""Limits checked at submit (nothing stored when refused) and the waits a script needs:
repeated subcircuits that expand beyond any run, states the machine cannot hold, a
per-target time limit for one circuit, and qnb.wait_all()."""

from __future__ import annotations

import cirq
import pytest

import qnb
from qnb import JobStatus
from qnb._device import DeviceSpec
from qnb._targets import _simulators
from qnb._targets._simulators import SimulatorTarget
from conftest import BELL_QASM

Q = cirq.LineQubit(0)


def nested(depth: int, repetitions: int = 2) -> cirq.Circuit:
    circuit = cirq.Circuit(cirq.X(Q))
    for _ in range(depth):
        circuit = cirq.Circuit(cirq.CircuitOperation(circuit.freeze(), repetitions=repetitions))
    return circuit + cirq.measure(Q, key="m")


def test_repetitions_that_expand_too_far_are_refused_at_submit(manager):
    with pytest.raises(qnb.LimitExceededError, match="expands to more than"):
        qnb.submit(nested(30))  # 2**30 runs of its body, in 12 KB
    assert manager.store.find_jobs() == []
    assert qnb.run(nested(4), shots=10, timeout=60).counts() == {"0": 10}  # 16 X gates


def test_a_state_the_machine_cannot_hold_is_refused(manager, monkeypatch):
    monkeypatch.setattr(_simulators, "available_memory", lambda: 100 << 20)  # 100 MiB left
    qubits = cirq.LineQubit.range(24)  # 128 MiB of amplitudes
    with pytest.raises(qnb.LimitExceededError, match=r"needs about .* GiB .* state vector"):
        qnb.submit(cirq.Circuit(cirq.H.on_each(*qubits), cirq.measure(*qubits)))
    assert manager.store.find_jobs() == []
    assert qnb.run(BELL_QASM, shots=5, timeout=60).counts()  # small ones still run


@pytest.mark.slow  # runs past a 3 s limit
def test_a_target_bounds_the_time_of_one_circuit(manager):
    qnb.register_target(
        "quick", SimulatorTarget("quick", engine="qsim", device=DeviceSpec("quick", max_qubits=30),
                                 item_time_limit=3)  # fmt: skip
    )
    qubits = cirq.LineQubit.range(22)
    slow = cirq.Circuit([cirq.H.on_each(*qubits), cirq.measure(*qubits, key="m")] * 50)
    job = qnb.submit({"slow": slow, "fast": cirq.Circuit(cirq.X(Q), cirq.measure(Q))},
                     target="quick", shots=2_000)  # fmt: skip
    result = job.result(timeout=120)
    assert job.status is JobStatus.FAILED and "time limit" in result.missing["slow"]
    assert manager.load(job.id).items[0].retryable is False  # it would take as long again
    assert result.counts("fast") == {"1": 2_000}


def test_wait_all_waits_for_every_unfinished_job(manager):
    jobs = [qnb.submit(BELL_QASM, target="emulator", compile=True, shots=200) for _ in range(3)]
    finished = qnb.wait_all(timeout=120)
    assert {j.id for j in jobs} <= {j.id for j in finished}
    assert all(j.done() for j in jobs)
    assert {j.id for j in qnb.wait_all(timeout=5)} >= {j.id for j in jobs}  # ended ones too
    slow = qnb.submit(BELL_QASM, target="emulator", compile=True, shots=100_000)
    with pytest.raises(TimeoutError, match="carry on"):
        qnb.wait_all(timeout=0.2)
    assert not slow.done()
    slow.cancel()


@pytest.mark.parametrize(
    "bad, words",
    [
        (b"OPENQASM 2.0;", "got bytes.*decode"),
        (cirq.Circuit(cirq.X(Q) ** __import__("sympy").Integer(10**5000), cirq.measure(Q)),
         "too large to print"),
        (object(), "expected a cirq.Circuit"),
    ],
    ids=["bytes", "huge-exponent", "object"],
)
def test_inputs_that_used_to_slip_through_get_a_clear_error(manager, bad, words):
    with pytest.raises(qnb.InvalidCircuitError, match=words):
        qnb.submit(bad)
    assert manager.store.find_jobs() == []


@pytest.mark.parametrize(
    "options, words",
    [
        ({"front": "no"}, "front must be True or False"),
        ({"compile": "yes"}, "compile must be True or False"),
        ({"name": object()}, "name must be text"),
        ({"name": "x" * 10_000_000}, "at most 200"),
    ],
    ids=["front", "compile", "name-object", "name-10MB"],
)
def test_options_are_checked_at_submit(manager, options, words):
    with pytest.raises(qnb.InvalidOptionError, match=words):
        qnb.submit(BELL_QASM, **options)
    assert manager.store.find_jobs() == []
