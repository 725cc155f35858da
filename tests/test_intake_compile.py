"""Compiling for the emulator keeps terminal measurements terminal (so it simulates once
and samples) and keeps what the circuit computes."""

from __future__ import annotations

import random

import cirq
import pytest

import qnb
from qnb._results import counts_of
from qnb._targets._simulators import EmulatorTarget

EMULATOR = EmulatorTarget()
Q = cirq.LineQubit.range(6)


def _classical(seed: int) -> tuple[cirq.Circuit, dict[str, str]]:
    """A random reversible classical circuit on 3-5 qubits, measured under several keys
    (idle qubits are measured in the first moment), and the bits each key must read."""
    rng = random.Random(seed)
    n = rng.randint(3, 5)
    qubits = Q[:n]
    state = [rng.randint(0, 1) for _ in qubits]
    ops = [cirq.X(q) for q, bit in zip(qubits, state) if bit]
    for _ in range(rng.randint(2, 8)):
        kind = rng.choice(["cx", "ccx", "swap"])
        if kind == "cx":
            a, b = rng.sample(range(n), 2)
            ops.append(cirq.CNOT(qubits[a], qubits[b]))
            state[b] ^= state[a]
        elif kind == "ccx":
            a, b, c = rng.sample(range(n), 3)
            ops.append(cirq.CCX(qubits[a], qubits[b], qubits[c]))
            state[c] ^= state[a] & state[b]
        else:
            a, b = rng.sample(range(n), 2)
            ops.append(cirq.SWAP(qubits[a], qubits[b]))
            state[a], state[b] = state[b], state[a]
    order = list(range(n))
    rng.shuffle(order)
    groups = [order[:1], order[1:3], order[3:]]
    expected = {}
    for k, group in enumerate(g for g in groups if g):
        ops.append(cirq.measure(*(qubits[i] for i in group), key=f"k{k}"))
        expected[f"k{k}"] = "".join(str(state[i]) for i in group)
    return cirq.Circuit(ops), expected


# 25 random circuits (about a second of routing each): 8 in the quick tier, all 25 in the full one.
@pytest.mark.parametrize("seed", [*range(8), *(pytest.param(s, marks=pytest.mark.slow) for s in range(8, 25))])
def test_compiled_circuits_keep_terminal_measurements_and_their_answer(seed):
    circuit, expected = _classical(seed)
    compiled = EMULATOR.compile(circuit)
    EMULATOR.check("c", compiled)  # native gates on connected pairs only
    assert compiled.are_all_measurements_terminal()
    result = cirq.Simulator().run(compiled, repetitions=3)
    assert {key: next(iter(counts_of(result, key))) for key in expected} == expected


def test_toffoli_on_110_gives_111_compiled_on_the_emulator(manager):
    toffoli = cirq.Circuit(cirq.X(Q[0]), cirq.X(Q[1]), cirq.CCX(Q[0], Q[1], Q[2]), cirq.measure(*Q[:3], key="m"))
    compiled = qnb.compile(toffoli)["0"]
    assert compiled.are_all_measurements_terminal()
    counts = qnb.run(toffoli, target="emulator", compile=True, shots=400, timeout=120).counts()
    assert max(counts, key=counts.get) == "111" and counts["111"] > 300  # the emulator is noisy


def test_a_wide_measurement_with_its_own_key_is_routed():
    # Measured first thing, Cirq's router calls it intermediate and refuses it.
    circuit = cirq.Circuit(cirq.measure(*Q[3:6], key="idle"), cirq.X(Q[0]), cirq.CNOT(Q[0], Q[2]),
                           cirq.measure(Q[0], Q[2], key="m"))
    compiled = EMULATOR.compile(circuit)
    assert compiled.are_all_measurements_terminal()
    result = cirq.Simulator().run(compiled, repetitions=2)
    assert counts_of(result) == {"00011": 2}  # "idle" then "m"


def test_mid_circuit_measurements_are_still_routed():
    circuit = cirq.Circuit(cirq.X(Q[0]), cirq.measure(Q[0], key="a"), cirq.CNOT(Q[0], Q[2]),
                           cirq.measure(Q[2], key="b"))
    compiled = EMULATOR.compile(circuit)
    EMULATOR.check("c", compiled)
    assert counts_of(cirq.Simulator().run(compiled, repetitions=2)) == {"11": 2}
