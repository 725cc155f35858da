"""OpenQASM 2.0 as people write it: Cirq's own output, published-style programs, and
clear refusals (line and construct) for what Cirq's importer cannot take."""

from __future__ import annotations

import cirq
import numpy as np
import pytest
import sympy

import qnb
from qnb import _circuits, _results
from qnb._errors import InvalidCircuitError

Q = cirq.LineQubit.range(5)


def _ghz(n: int) -> cirq.Circuit:
    return cirq.Circuit(
        cirq.H(Q[0]), *(cirq.CNOT(Q[i], Q[i + 1]) for i in range(n - 1)), cirq.measure(*Q[:n], key="m")
    )


def _random(seed: int) -> cirq.Circuit:
    body = cirq.testing.random_circuit(Q[:4], n_moments=8, op_density=0.8, random_state=seed)
    return body + cirq.Circuit(cirq.measure(*Q[:4], key="m"))


def _resolved() -> cirq.Circuit:
    theta, phi = sympy.Symbol("theta"), sympy.Symbol("phi")
    circuit = cirq.Circuit(
        cirq.rx(theta)(Q[0]), cirq.ry(phi)(Q[1]), cirq.CZ(Q[0], Q[1]) ** 0.5,
        cirq.rz(theta / 2)(Q[1]), cirq.measure(Q[0], Q[1], key="m"),
    )
    return cirq.resolve_parameters(circuit, {"theta": 0.7, "phi": -1.3})


CIRQ_CIRCUITS = {
    "ghz3": _ghz(3),
    "ghz5": _ghz(5),
    "qft4": cirq.Circuit(cirq.X(Q[0]), cirq.qft(*Q[:4]), cirq.measure(*Q[:4], key="m")),
    "inverse qft": cirq.Circuit(cirq.X(Q[1]), cirq.qft(*Q[:3], inverse=True), cirq.measure(*Q[:3], key="m")),
    **{f"random{seed}": _random(seed) for seed in range(6)},
    "resolved": _resolved(),
    "two keys": cirq.Circuit(cirq.ISWAP(Q[0], Q[1]) ** 0.3, cirq.FSimGate(0.1, 0.2)(Q[1], Q[2]),
                             cirq.measure(Q[0], key="a"), cirq.measure(Q[1], Q[2], key="b")),
}


def _without_measurements(circuit: cirq.Circuit) -> cirq.Circuit:
    return cirq.Circuit(op for op in circuit.all_operations() if not cirq.is_measurement(op))


@pytest.mark.parametrize("name", list(CIRQ_CIRCUITS))
def test_cirqs_own_qasm_round_trips(name):
    original = CIRQ_CIRCUITS[name]
    text = cirq.qasm(original)
    assert text.startswith("// Generated from Cirq")
    parsed = _circuits.normalize(text)["0"]
    # OpenQASM names qubit i of the sorted qubits q[i]; Cirq's importer calls it q_i.
    order = sorted(original.all_qubits())
    mapped = parsed.transform_qubits({cirq.NamedQubit(f"q_{i}"): q for i, q in enumerate(order)})
    # OpenQASM 2.0 has no global phase: the same operator up to one.
    cirq.testing.assert_allclose_up_to_global_phase(
        _without_measurements(mapped).unitary(qubit_order=order),
        _without_measurements(original).unitary(qubit_order=order),
        atol=1e-6,
    )
    measured = sorted(q for op in mapped.all_operations() if cirq.is_measurement(op) for q in op.qubits)
    assert measured == sorted(q for op in original.all_operations() if cirq.is_measurement(op) for q in op.qubits)


def test_cirqs_own_qasm_runs_through_submit(manager):
    text = cirq.qasm(_ghz(3))
    counts = qnb.run(text, shots=200, timeout=60).counts()
    assert set(counts) == {"000", "111"} and sum(counts.values()) == 200


# A Bernstein-Vazirani program written the way published benchmark files are: header
# comments, custom gates with parameters and gate calls inside, barriers (also inside a
# gate), comments at line ends, whole-register operations, U/CX/u1/u2/u3, Windows line
# endings, tabs and blank lines. The oracle marks q[0], q[1], q[3]: c reads 1101 every time.
BERNSTEIN_VAZIRANI = """\
// Name of Experiment: Bernstein-Vazirani, secret 1101
// Published in the usual style; the first line is a comment.

OPENQASM 2.0;
include "qelib1.inc";   // the standard gates

/* a block comment
   over two lines */
gate myh a { u2(0, pi) a; }
gate oracle a, b, c, d, anc
{
\tCX a, anc;
\tbarrier a, b;
\tcx b, anc; // bit 1
\tcx d, anc;
}
gate rot(theta, phi) a { U(theta, phi, -phi) a; u1(-theta/2) a; u1(theta / 2) a; }
opaque vendor_pulse q;

qreg q[4];
qreg anc[1];
creg c[4];

x anc[0];
myh anc[0];
h q;
barrier q, anc;
oracle q[0], q[1], q[2], q[3], anc[0];
rot(0, 0) q[2];
u3(pi/2, 0, pi) q;   // h on the whole register, written as u3
barrier q;
measure q -> c;
""".replace("\n", "\r\n")


def test_published_style_program():
    circuit = _circuits.normalize(BERNSTEIN_VAZIRANI)["0"]
    result = cirq.Simulator(seed=1).run(circuit, repetitions=50)
    assert _results.counts_of(result) == {"1101": 50}  # c[0] is the leftmost bit


def test_u_cx_and_qelib_gates_match_cirq():
    program = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg c[3];
U(pi/2, 0, pi) q[0];          // H
CX q[0], q[1];
ccx q[0], q[1], q[2];
cu1(pi) q[1], q[2];
cswap q[0], q[1], q[2];
rzz(0.25) q[0], q[2];
sx q[1]; sxdg q[1];
measure q[0] -> c[0];
measure q[1] -> c[1];
measure q[2] -> c[2];
"""
    circuit = _circuits.normalize(program)["0"]
    counts = _results.counts_of(cirq.Simulator(seed=2).run(circuit, repetitions=200))
    assert set(counts) == {"000", "111"}


def test_cirq_keeps_the_program_lines_in_its_messages():
    # Comments and barriers removed before the importer sees the text keep the lines.
    program = "// one\n// two\nOPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\nbarrier q;\nfoo q[0];\n"
    with pytest.raises(InvalidCircuitError, match='Unknown gate "foo" at line 7'):
        _circuits.normalize(program)


@pytest.mark.parametrize(
    "program, message",
    [
        ('OPENQASM 2.0;\ninclude "qelib1.inc";\nopaque magic a;\nqreg q[1];\ncreg c[1];\nmagic q[0];\n',
         "line 6: gate 'magic' is declared opaque \\(line 3\\)"),
        ('OPENQASM 2.0;\ninclude "mine.inc";\nqreg q[1];\n', 'line 2: include "mine.inc"'),
        ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nmeasure q[0] -> c[0];\n'
         'if (c==1) measure q[0] -> c[0];\n', "line 6: 'if \\(c==1\\) measure ...'"),
        ('OPENQASM 2.0;\nqreg q[1];\nh q[0];\n', 'Unknown gate "h" at line 3, did you forget'),
        ("// just a comment\n\nqreg q[1];\n", "found 'qreg q\\[1\\];'"),
        ("hello", "is a string that is not OpenQASM 2.0.*found 'hello'"),
        ('{"cirq_type": "Circuit", "moments": []}', "looks like Cirq JSON"),
    ],
)
def test_what_cannot_be_taken_is_named_with_its_line(program, message):
    with pytest.raises(InvalidCircuitError, match=message):
        _circuits.normalize({"x": program})


def test_looks_like_qasm_reads_past_comments():
    assert _circuits.looks_like_qasm("// Generated from Cirq\n\nOPENQASM 2.0;")
    assert _circuits.looks_like_qasm("\ufeff/* licence\n text */\r\n  OPENQASM 2.0;")
    assert not _circuits.looks_like_qasm('{"cirq_type": "Circuit"}')
    assert not _circuits.looks_like_qasm("hello OPENQASM")


def test_if_on_a_whole_register_conditions_every_qubit():
    program = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg c[1];
x q[0];
measure q[0] -> c[0];
if (c==1) x q;
creg d[3];
measure q -> d;
"""
    circuit = _circuits.normalize(program)["0"]
    assert len(list(circuit.findall_operations(lambda op: isinstance(op, cirq.ClassicallyControlledOperation)))) == 3
    result = cirq.Simulator().run(circuit, repetitions=20)
    assert _results.counts_of(result, key=["d_0", "d_1", "d_2"]) == {"011": 20}


def test_if_reads_unmeasured_bits_as_zero():
    # c[1] is never measured before the if: OpenQASM registers start at 0.
    program = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
x q[0];
measure q[0] -> c[0];
if (c==1) x q[1];
if (c==3) x q[0];
measure q[1] -> c[1];
"""
    circuit = _circuits.normalize(program)["0"]
    result = cirq.Simulator().run(circuit, repetitions=20)
    assert _results.counts_of(result) == {"11": 20}


def test_one_parse_per_submit(manager, monkeypatch):
    import cirq.contrib.qasm_import as qasm_import

    calls = []
    real = qasm_import.circuit_from_qasm
    monkeypatch.setattr(qasm_import, "circuit_from_qasm", lambda text: calls.append(text) or real(text))
    job = qnb.submit({"bv": BERNSTEIN_VAZIRANI}, shots=10)
    assert len(calls) == 1
    assert job.result(timeout=60).counts("bv") == {"1101": 10}


def test_custom_gates_are_spelled_out_and_storable_also_under_if():
    program = """OPENQASM 2.0;
include "qelib1.inc";
gate flip(theta) a { u3(theta, 0, pi) a; }
gate pair(theta) a, b { flip(theta) a; cx a, b; }
qreg q[3];
creg c[1];
creg d[3];
pair(pi) q[0], q[1];
measure q[0] -> c[0];
if (c == 1) flip(pi) q[2];
measure q -> d;
"""
    circuit = _circuits.normalize(program)["0"]
    assert not any(isinstance(op.untagged, cirq.CircuitOperation) for op in circuit.all_operations())
    _circuits.check_serializable("custom", circuit)
    stored = _circuits.from_json(_circuits.to_json(circuit))
    result = cirq.Simulator().run(stored, repetitions=5)
    assert _results.counts_of(result, key=["d_0", "d_1", "d_2"]) == {"111": 5}


def test_parameters_cirq_json_cannot_write_are_refused_at_submit():
    t = sympy.Symbol("t")
    fine = cirq.Circuit(cirq.rx(2 * t + 1)(Q[0]), cirq.measure(Q[0]))
    _circuits.check_serializable("fine", fine)
    # Same gate type, but an expression (Mod) Cirq's JSON does not write.
    modular = cirq.Circuit(cirq.rx(sympy.Mod(t, 2))(Q[0]), cirq.measure(Q[0]))
    with pytest.raises(InvalidCircuitError, match="cannot be stored as Cirq JSON"):
        _circuits.check_serializable("mod", modular)
