"""The kernel's quick paths give what the slow ones gave ("A kernel that can feed a
cluster"):

- a job that starts as soon as the loop schedules it keeps its parsed circuits past its
  insert (parsing them again from the store cost ~2 ms of kernel CPU a circuit); a job
  that really waits keeps only its stored text (tests/test_server_memory.py);
- the store writes a circuit that several items share once, by identity;
- one walk (``_circuits.scan``) checks a circuit and writes its text: the text is Cirq's
  document, and the walk refuses exactly what the separate checks refuse;
- the store's log is copied into its file by a thread of its own.
"""

from __future__ import annotations

import json
import threading
import time

import cirq
import numpy as np
import pytest
import sympy

import qnb
from conftest import wait_until
from qnb import _circuits
from qnb._api import prepare_items
from qnb._device import DeviceSpec
from qnb._manager import is_done
from qnb._records import ItemRecord, JobRecord
from qnb._store import CHECKPOINT_BYTES, Store
from qnb._targets import SimulatorTarget, registry
from test_kernel_feed import _assorted, _brickwork

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
    target = SimulatorTarget(name, engine="qsim", device=DeviceSpec(name, max_qubits=12), executor=answers)
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


# -- one walk for the checks and the text (_circuits.scan) ------------------------------


class _Unstorable(cirq.Gate):
    """A gate Cirq's JSON cannot write (no _json_dict_)."""

    def _num_qubits_(self):
        return 1

    def _unitary_(self):
        return np.eye(2)


A, B, C = cirq.LineQubit.range(3)
T = sympy.Symbol("t")


def _odd_circuits() -> dict[str, cirq.Circuit]:
    """What the text writer must leave to the tree, or write with care."""
    return {
        "percent in names": cirq.Circuit(cirq.X(cirq.NamedQubit("q%s%%")), cirq.measure(cirq.NamedQubit("q%s%%"), key="m%d")),
        "nan": cirq.Circuit(cirq.X(A) ** float("nan"), cirq.measure(A)),
        "huge int": cirq.Circuit(cirq.CZ(A, B) ** (2**70), cirq.measure(A, B)),
        "numpy numbers": cirq.Circuit(cirq.PhasedXZGate(x_exponent=np.float64(0.5), z_exponent=np.int64(1),
                                                        axis_phase_exponent=np.float32(0.25))(A), cirq.measure(A)),
        "bools": cirq.Circuit(cirq.CZPowGate(exponent=True)(A, B), cirq.measure(A, B)),
        "symbols": cirq.Circuit(cirq.PhasedXZGate(x_exponent=T, z_exponent=2 * T + 1, axis_phase_exponent=0.5)(A),
                                cirq.CZ(A, B) ** T, cirq.measure(A, B)),
        "qutrit X": cirq.Circuit(cirq.XPowGate(dimension=3, exponent=1)(cirq.LineQid(0, 3)), cirq.measure(cirq.LineQid(0, 3))),
        "tagged moment": cirq.Circuit(cirq.Moment(cirq.H(A)).with_tags("t"), cirq.measure(A)),
        "tagged measurement only": cirq.Circuit(cirq.H(A), cirq.measure(A, key="m").with_tags("t")),
        "empty": cirq.Circuit(),
        "empty moments": cirq.Circuit(cirq.Moment(), cirq.Moment(cirq.H(A)), cirq.Moment()),
    }  # fmt: skip


_REFUSED_ODD_ONES = ("symbols", "empty", "empty moments")  # unresolved, unmeasured


def _all_circuits() -> list[cirq.Circuit]:
    return _assorted() + list(_odd_circuits().values()) + [_brickwork(seed, n=12, depth=20) for seed in range(3)]


@pytest.mark.parametrize("index", range(len(_all_circuits())))
def test_the_text_writer_writes_cirqs_document(index):
    circuit = _all_circuits()[index]
    expected = json.loads(cirq.to_json(circuit))
    assert json.loads(_circuits.to_json(circuit)) == expected
    try:
        scanned = _circuits.scan("c", circuit)
    except qnb.InvalidCircuitError:
        return  # (unmeasured: compared with check_measured below)
    if scanned is not None:
        assert scanned.text == _circuits.to_json(circuit)
        assert _circuits.from_json(scanned.text) == circuit


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as exc:  # noqa: BLE001 - compared whole: type and message
        return type(exc).__name__, str(exc)


def _bad_batches() -> dict[str, tuple[dict[str, cirq.Circuit], dict | None]]:
    unmeasured = cirq.Circuit(cirq.X(A))
    widths = cirq.Circuit(cirq.measure(A, key="m"), cirq.measure(A, B, key="m"))
    unstorable = cirq.Circuit(_Unstorable()(A), cirq.measure(A))
    free = cirq.Circuit(cirq.PhasedXZGate(x_exponent=T, z_exponent=0, axis_phase_exponent=0)(A), cirq.measure(A))
    free_other = cirq.Circuit(cirq.rx(T)(A), cirq.measure(A))
    mod = cirq.Circuit(cirq.X(A) ** sympy.Mod(T, 2), cirq.measure(A))
    good = _brickwork(0)
    return {
        "unmeasured": ({"g": good, "u": unmeasured}, None),
        "unmeasured, of written gates only": ({"g": good, "u": cirq.Circuit(cirq.H(A), cirq.CZ(A, B) ** 0.5)}, None),
        "key widths": ({"w": widths, "g": good}, None),
        "unstorable": ({"g": good, "s": unstorable}, None),
        "unstorable, then unmeasured": ({"s": unstorable, "u": unmeasured}, None),
        "free symbol": ({"f": free}, None),
        "free symbol of another gate": ({"g": good, "f": free_other}, None),
        "Mod in a sweep": ({"m": mod}, {"m": [cirq.ParamResolver({T: 0.5})]}),
        "swept, fine": ({"f": free, "o": free_other}, {"f": [cirq.ParamResolver({T: 0.5})], "o": [cirq.ParamResolver({T: 1})]}),
        "odd ones, fine": ({k: v for k, v in _odd_circuits().items() if k not in _REFUSED_ODD_ONES}, None),
        "odd ones refused": ({k: v for k, v in _odd_circuits().items() if k in _REFUSED_ODD_ONES}, None),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(_bad_batches()))
def test_the_one_walk_refuses_what_the_separate_checks_refuse(name):
    circuits, sweeps = _bad_batches()[name]
    target = registry.get("cirq")  # takes qudits, any gate

    def checked(write: bool):
        items = prepare_items(circuits, target, shots=10, sweeps=sweeps, write=write)
        return items.circuits, items.resolvers

    walked_once, walked_apart = _outcome(lambda: checked(True)), _outcome(lambda: checked(False))
    assert walked_once == walked_apart
    if name.endswith("fine"):
        assert walked_once[0] == "ok"
        items = prepare_items(circuits, target, shots=10, sweeps=sweeps)
        assert items.texts is not None and len(items.texts) == len(items.circuits)
        for text, circuit in zip(items.texts, items.circuits.values()):
            assert text is None or text == _circuits.to_json(circuit)
    else:
        assert walked_once[0] in ("InvalidCircuitError", "DeviceValidationError"), walked_once


def test_a_bad_batch_leaves_nothing_stored_and_a_good_one_stores_the_checked_text(manager):
    before = manager.store._query("SELECT count(*) FROM jobs")
    for name, (circuits, sweeps) in _bad_batches().items():
        if name.endswith("fine"):
            continue
        params = None if sweeps is None else next(iter(sweeps.values()))
        with pytest.raises(qnb.InvalidCircuitError):
            qnb.submit(circuits, target="cirq", shots=10, params=params)
    assert manager.store._query("SELECT count(*) FROM jobs") == before
    target, _ = _target()
    circuits = {str(seed): _brickwork(seed) for seed in range(4)}
    job = qnb.submit(circuits, target=target.name, shots=5)
    job.result(timeout=30)
    assert manager.store.load_circuits(job.id) == [_circuits.to_json(c) for c in circuits.values()]


# -- checkpoints of the store's log, off the writing thread -----------------------------


def _job_of(texts: list[str]) -> JobRecord:
    return JobRecord(id=f"job{len(texts)}-{time.monotonic_ns()}", name="n", target="t", user="u", shots=1,
                     items=[ItemRecord(str(i)) for i in range(len(texts))], time_added=time.time())  # fmt: skip


def test_the_log_is_copied_into_the_store_by_a_thread_of_its_own(tmp_path):
    store = Store(tmp_path / "qnb.sqlite3")
    try:
        text = _circuits.to_json(_brickwork(0, n=12, depth=20))  # ~70 KB
        small = [text] * 2  # (one stored text: the same object)
        store.insert_job(_job_of(small), small, {})
        assert not [t for t in threading.enumerate() if t.name == "qnb-store-checkpoints"]
        size = store.path.stat().st_size
        big = [text + " " * i for i in range(CHECKPOINT_BYTES // len(text) + 2)]  # distinct texts
        job = _job_of(big)
        writer = threading.get_ident()
        store.insert_job(job, big, {})
        checkpointer = next(t for t in threading.enumerate() if t.name == "qnb-store-checkpoints")
        assert checkpointer.ident != writer and checkpointer.daemon
        # The store file grows by what the log held: copied there by that thread (SQLite
        # itself would copy it only past WAL_BACKSTOP_PAGES).
        wait_until(lambda: store.path.stat().st_size > size + CHECKPOINT_BYTES, what="the log copied")
        assert store.load_circuits(job.id) == big
    finally:
        store.close()
    assert not checkpointer.is_alive()
    again = Store(tmp_path / "qnb.sqlite3")
    try:
        assert again.load_circuits(job.id) == big
    finally:
        again.close()
