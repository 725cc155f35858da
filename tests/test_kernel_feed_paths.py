"""The kernel's quick paths give what the slow ones gave ("A kernel that can feed a
cluster"):

- a job that starts as soon as the loop schedules it keeps its parsed circuits past its
  insert (parsing them again from the store cost ~2 ms of kernel CPU a circuit); a job
  that really waits keeps only its stored text (tests/test_server_memory.py);
- the store writes a circuit that several items share once, by identity.
"""

from __future__ import annotations

import threading

import cirq
import qnb
from qnb import _circuits
from qnb._device import DeviceSpec
from qnb._manager import is_done
from qnb._targets import SimulatorTarget

Q = cirq.LineQubit.range(2)


class _Answers:
    """A no-op executor: every item completes at once with one fixed result."""

    def __init__(self, result: str):
        self.result, self.ran = result, 0

    async def run(self, engine, noise, circuit, shots, *, params=None, circuit_json=None):
        self.ran += 1
        return True, self.result, engine


def _target(name: str = "feed") -> tuple[SimulatorTarget, _Answers]:
    bell = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))
    answers = _Answers(cirq.to_json(cirq.Simulator(seed=1).run(bell, repetitions=5), indent=None))
    target = SimulatorTarget(name, engine="qsim", device=DeviceSpec(name, max_qubits=4), executor=answers)
    qnb.register_target(name, target)
    return target, answers


def _circuits_of(n: int) -> dict[str, cirq.Circuit]:
    return {str(i): cirq.Circuit(cirq.X(Q[0]) ** (i / n), cirq.measure(*Q, key="m")) for i in range(n)}


def test_a_job_stored_before_the_loop_starts_it_keeps_its_parsed_circuits(manager, monkeypatch):
    target, answers = _target()
    parsed = []
    real = _circuits.from_json_many
    monkeypatch.setattr(_circuits, "from_json_many", lambda texts: parsed.append(len(texts)) or real(texts))
    # The loop is held, so the insert (texts given: nothing to write) ends first and the
    # job is still queued then, as the loop has not started it yet.
    held, release = threading.Event(), threading.Event()
    manager.loop.call_soon_threadsafe(lambda: (held.set(), release.wait(10)))
    assert held.wait(10)
    circuits = _circuits_of(5)
    try:
        rec = manager.submit(target, circuits, shots=5, name="quick", user="u",
                             circuit_json=_circuits.to_json_many(circuits.values()))  # fmt: skip
        assert rec.status.value == "queued" and rec.live.circuits == list(circuits.values())
    finally:
        release.set()
    assert manager.when(rec.id, is_done).result(30).value == "completed"
    assert parsed == [] and answers.ran == 5
    assert manager.store.load_circuits(rec.id) == _circuits.to_json_many(circuits.values())


def test_items_of_one_circuit_store_its_text_once_and_read_back_whole(manager):
    target, _ = _target()
    circuit = _circuits_of(1)["0"]
    texts = _circuits.CircuitTexts([circuit, circuit, circuit])  # one circuit, three points
    # ... and a fourth item whose text is equal but not the same: stored again (a value
    # comparison would hash every text)
    equal_copy = _circuits.to_json(circuit)
    labelled = {"a": circuit, "b": circuit, "c": circuit, "d": circuit}
    rec = manager.submit(target, labelled, shots=5, name="shared",
                         user="u", circuit_json=[*texts.written(), equal_copy])  # fmt: skip
    manager.when(rec.id, is_done).result(30)
    rows = manager.store._query("SELECT idx, circuit FROM circuits WHERE job_id=? ORDER BY idx", (rec.id,))
    assert [text if text.startswith("@") else "text" for _, text in rows] == ["text", "@0", "@0", "text"]
    assert manager.store.load_circuits(rec.id) == [equal_copy] * 4
