"""Serialize once: the Cirq JSON the store keeps is what the workers read.

- ``_circuits.to_json`` writes the document Cirq writes, ``_circuits.from_json`` reads
  what ``cirq.read_json`` reads (and fails as it does);
- ``CircuitTexts`` writes each distinct circuit of a job once, whichever thread asks;
- the local pool and executors that take ``circuit_json`` get the stored text, and
  executors written before it still work.
"""

from __future__ import annotations

import asyncio
import json
import threading

import cirq
import numpy as np
import pytest
import sympy

from qnb import _circuits
from qnb._device import DeviceSpec
from qnb._targets import RunState, SimulatorTarget, TargetJob
from qnb._targets._pool import get_pool


def _brickwork(seed: int, n: int = 6, depth: int = 6) -> cirq.Circuit:
    rng = np.random.default_rng(seed)
    qubits = cirq.LineQubit.range(n)
    moments = []
    for layer in range(depth):
        moments.append(cirq.Moment(
            cirq.PhasedXZGate(x_exponent=rng.random(), z_exponent=rng.random(),
                              axis_phase_exponent=rng.random())(q)
            for q in qubits
        ))  # fmt: skip
        moments.append(cirq.Moment(cirq.CZ(qubits[i], qubits[i + 1]) for i in range(layer % 2, n - 1, 2)))
    moments.append(cirq.Moment(cirq.measure(*qubits, key="m")))
    return cirq.Circuit(moments)


def _assorted() -> list[cirq.Circuit]:
    a, b, c = cirq.LineQubit.range(3)
    g0, g1 = cirq.GridQubit(0, 0), cirq.GridQubit(0, 1)
    n0 = cirq.NamedQubit("n0")
    t = sympy.Symbol("t")
    sub = cirq.FrozenCircuit(cirq.H(a), cirq.CNOT(a, b))
    return [
        _brickwork(0),
        cirq.Circuit(cirq.X(a), cirq.H(b) ** 0.5, cirq.CZ(a, b) ** 0.25, cirq.measure(a, b, key="m")),
        cirq.Circuit(cirq.CZ(g0, g1), cirq.ISWAP(g0, g1) ** 0.5, cirq.FSimGate(0.1, 0.2)(g0, g1),
                     cirq.measure(g0, g1, key="g", invert_mask=(True,))),  # fmt: skip
        cirq.Circuit(cirq.rx(0.3)(n0), cirq.PhasedXPowGate(phase_exponent=0.2)(n0), cirq.measure(n0)),
        cirq.Circuit(cirq.CZ(a, b).with_tags("tag"), cirq.Moment(cirq.Y(c)).with_tags("moment tag"),
                     cirq.measure(a, b, c, key="m")),  # fmt: skip
        cirq.Circuit(cirq.X(a) ** t, cirq.ZPowGate(exponent=2 * t + 1)(b), cirq.measure(a, b, key="m")),
        cirq.Circuit(cirq.CircuitOperation(sub, repetitions=3), cirq.measure(a, b, key="m")),
        cirq.Circuit(cirq.measure(a, key="k"), cirq.X(b).with_classical_controls("k"), cirq.measure(b)),
        cirq.Circuit(cirq.XPowGate(dimension=3, exponent=1)(cirq.LineQid(0, 3)), cirq.measure(cirq.LineQid(0, 3))),
        cirq.Circuit(cirq.CCZ(a, b, c), cirq.CCX(a, b, c), cirq.SWAP(a, b), cirq.XX(a, b) ** 0.3,
                     cirq.IdentityGate(2)(b, c), cirq.MatrixGate(np.eye(2))(a), cirq.measure(a, key="m")),  # fmt: skip
        cirq.Circuit(cirq.CZ(a, b) ** (2**70), cirq.PhasedXZGate(x_exponent=1, z_exponent=0, axis_phase_exponent=-0.5)(c)),
        cirq.Circuit(cirq.Moment(), cirq.Moment(cirq.H(a)), cirq.Moment()),
        cirq.Circuit(cirq.H(a)).with_tags("circuit tag"),
    ] + [cirq.testing.random_circuit(4, 8, 0.8, random_state=seed) for seed in range(10)]


@pytest.mark.parametrize("index", range(len(_assorted())))
def test_to_json_writes_cirqs_document(index):
    circuit = _assorted()[index]
    assert json.loads(_circuits.to_json(circuit)) == json.loads(cirq.to_json(circuit))


@pytest.mark.parametrize("index", range(len(_assorted())))
def test_from_json_reads_what_cirq_reads(index):
    circuit = _assorted()[index]
    for text in (_circuits.to_json(circuit), cirq.to_json(circuit)):
        read = _circuits.from_json(text)
        assert read == cirq.read_json(json_text=text) == circuit
        assert [type(op) for op in read.all_operations()] == [type(op) for op in circuit.all_operations()]
        assert cirq.to_json(read) == cirq.to_json(circuit)


def test_from_json_fails_as_cirq_does():
    a, b = cirq.LineQubit.range(2)
    good = json.loads(_circuits.to_json(cirq.Circuit(cirq.CZ(a, b), cirq.measure(a, b))))
    good_text = json.dumps(good)
    _circuits.from_json(good_text)  # the CZ's shape is now known to the fast reader
    same_qubit = json.loads(good_text)
    same_qubit["moments"][0]["operations"][0]["qubits"][1] = same_qubit["moments"][0]["operations"][0]["qubits"][0]
    one_qubit = json.loads(good_text)
    del one_qubit["moments"][0]["operations"][0]["qubits"][1]
    overlapping = json.loads(good_text)
    overlapping["moments"][0]["operations"].append(overlapping["moments"][1]["operations"][0])
    unknown = json.loads(good_text)
    unknown["moments"][0]["operations"][0]["gate"]["cirq_type"] = "NoSuchGate"
    for doc in (same_qubit, one_qubit, overlapping, unknown):
        text = json.dumps(doc)
        with pytest.raises(Exception) as cirqs:
            cirq.read_json(json_text=text)
        with pytest.raises(type(cirqs.value)) as ours:
            _circuits.from_json(text)
        assert str(ours.value) == str(cirqs.value)
    with pytest.raises(Exception):
        _circuits.from_json("{not json")


def test_from_json_keeps_each_numbers_type():
    """Gates read are shared by equal fields; 1, 1.0 and True are equal but not the same."""
    a, b = cirq.LineQubit.range(2)
    circuits = [cirq.Circuit(cirq.CZPowGate(exponent=e)(a, b)) for e in (1, 1.0, 1.0, 2)]
    texts = [_circuits.to_json(c) for c in circuits]
    for text in texts + [texts[0].replace('"exponent":1,', '"exponent":true,')]:
        assert cirq.to_json(_circuits.from_json(text)) == cirq.to_json(cirq.read_json(json_text=text))


def test_from_json_reads_nan_and_references_through_cirq():
    a = cirq.LineQubit(0)
    text = cirq.to_json(cirq.Circuit(cirq.rx(float("nan"))(a)))
    assert "NaN" in text
    assert np.isnan(_circuits.from_json(text).moments[0].operations[0].gate._rads)


def test_circuit_texts_write_each_circuit_once(monkeypatch):
    circuits = [_brickwork(seed) for seed in range(40)]
    items = circuits + circuits[:10]  # items sharing a circuit, as a sweep's points do
    written = []
    real = _circuits.to_json
    monkeypatch.setattr(_circuits, "to_json", lambda c: written.append(id(c)) or real(c))
    texts = _circuits.CircuitTexts(items)
    thread = threading.Thread(target=texts.written)
    thread.start()
    read_here = [texts[i] for i in reversed(range(len(items)))][::-1]
    thread.join()
    assert read_here == texts.written() == [real(c) for c in items]
    assert sorted(written) == sorted(id(c) for c in circuits)  # once each
    assert len(texts) == 50 and texts[40] is texts[0] and texts[1:3] == read_here[1:3]


def test_circuit_texts_writer_failing_leaves_the_text_to_the_next(monkeypatch):
    circuit = _brickwork(1)
    texts = _circuits.CircuitTexts([circuit])
    monkeypatch.setattr(_circuits, "to_json", lambda c: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        texts[0]
    monkeypatch.undo()
    assert texts[0] == _circuits.to_json(circuit)


def test_the_pool_sends_the_text_to_its_worker():
    """The worker runs the text it is sent: here one that flips the qubit, while the
    circuit object does not (in qnb both are the same circuit)."""
    q = cirq.LineQubit(0)
    plain = cirq.Circuit(cirq.measure(q, key="m"))
    flipped = cirq.Circuit(cirq.X(q), cirq.measure(q, key="m"))
    pool = get_pool()

    async def run():
        as_object = await pool.run("qsim", 0.0, plain, 20)
        as_text = await pool.run("qsim", 0.0, plain, 20, circuit_json=_circuits.to_json(flipped))
        given_late = await pool.run("qsim", 0.0, plain, 20, circuit_json=lambda: _circuits.to_json(flipped))
        return as_object, as_text, given_late

    outcomes = asyncio.run(run())
    assert [ok for ok, _, _ in outcomes] == [True, True, True], outcomes
    ones = [cirq.read_json(json_text=text).measurements["m"].sum() for ok, text, _ in outcomes]
    assert ones == [0, 20, 20]


class _TakesText:
    def __init__(self):
        self.texts = []

    async def run(self, engine, noise, circuit, shots, *, params=None, circuit_json=None):
        self.texts.append(circuit_json)
        return True, "result", None


class _Older:
    """An executor written before ``circuit_json`` (the protocol's optional keyword)."""

    async def run(self, engine, noise, circuit, shots, *, params=None):
        return True, "older", None


@pytest.mark.parametrize("executor", [_TakesText(), _Older()], ids=["takes-text", "older"])
def test_simulator_targets_hand_executors_the_stored_text(executor):
    circuits = [_brickwork(seed) for seed in range(3)]
    texts = _circuits.CircuitTexts(circuits)
    target = SimulatorTarget("t", engine="qsim", device=DeviceSpec("t", max_qubits=10), executor=executor)

    async def run():
        job = TargetJob("job", 10, ["0", "1", "2"], circuits, circuit_json=texts)
        state = await target.submit(job)
        await asyncio.gather(*state.tasks)
        return state

    state: RunState = asyncio.run(run())
    assert all(o.result in ("result", "older") for o in state.outcomes.values())
    if isinstance(executor, _TakesText):
        assert executor.texts == texts.written()
