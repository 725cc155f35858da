"""The magics through a real IPython shell (``run_cell_magic`` / ``run_line_magic``)."""

from __future__ import annotations

import _thread
import threading

import cirq
import pytest
from IPython.core.error import UsageError

import qnb
from qnb import JobStatus
from conftest import BELL_QASM, ipython_shell, wait_until

BELL_CELL = """
import cirq
q = cirq.LineQubit.range(2)
bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
flip = cirq.Circuit(cirq.X(q[0]), cirq.measure(*q, key="m"))
not_a_circuit = 42
"""
Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))


@pytest.fixture(scope="module")
def shell():
    return ipython_shell()


@pytest.fixture
def ip(shell, manager):
    """The shell, with a fresh JobManager behind qnb's API."""
    shell.user_ns.pop("_qjob", None)
    return shell


def long_emulator_job(**options) -> qnb.Job:
    # ~10 s of device time with the tests' QNB_EMULATOR_SECONDS_PER_SHOT.
    return qnb.submit(BELL, target="emulator", compile=True, shots=20_000, **options)


def submitted(manager) -> int:
    return len(manager.find(limit=1000))


# -- %%qsubmit ------------------------------------------------------------------------------


def test_qsubmit_submits_every_assigned_circuit_as_one_job_in_order(ip, manager):
    job = ip.run_cell_magic("qsubmit", "--shots 200 --name pair --out pair_job", BELL_CELL)
    assert isinstance(job, qnb.Job)
    assert [item.label for item in job.items] == ["bell", "flip"]
    assert job.name == "pair" and job.shots == 200
    assert ip.user_ns["pair_job"] is job and ip.user_ns["_qjob"] is job
    assert ip.user_ns["not_a_circuit"] == 42  # the cell ran in the user namespace
    result = job.result(timeout=60)
    assert set(result.counts("bell")) <= {"00", "11"}
    assert result.counts("flip") == {"10": 200}


def test_qsubmit_prefers_the_last_expression(ip, manager):
    job = ip.run_cell_magic("qsubmit", "--shots 50", BELL_CELL + "[bell, flip, bell]\n")
    assert [item.label for item in job.items] == ["0", "1", "2"]
    job = ip.run_cell_magic("qsubmit", "--shots 50", BELL_CELL + "{'first': flip}\n")
    assert [item.label for item in job.items] == ["first"]
    job = ip.run_cell_magic("qsubmit", "--shots 50", BELL_CELL + "bell\n")
    assert [item.label for item in job.items] == ["0"]
    # A last expression that is not circuits falls back to the assigned names.
    job = ip.run_cell_magic("qsubmit", "--shots 50", BELL_CELL + "not_a_circuit + 1\n")
    assert [item.label for item in job.items] == ["bell", "flip"]


def test_qsubmit_qasm_cell(ip, manager):
    assert ip.run_cell_magic("qsubmit", "--qasm --shots 100 --wait", BELL_QASM) is None
    job = ip.user_ns["_qjob"]
    assert job.status is JobStatus.COMPLETED
    assert set(job.result().counts()) <= {"00", "11"}


def test_qsubmit_wait_blocks_until_the_end(ip, manager):
    # The job is shown (displayed) before the wait, so the cell returns nothing.
    assert ip.run_cell_magic("qsubmit", "--shots 100 --wait --out waited", BELL_CELL) is None
    assert ip.user_ns["waited"].status is JobStatus.COMPLETED


def test_qsubmit_front_puts_the_job_at_the_head_of_the_queue(ip, manager):
    running = long_emulator_job(name="running")
    behind = long_emulator_job(name="behind")
    try:
        urgent = ip.run_cell_magic(
            "qsubmit", "--target emulator --compile --shots 100 --front --name urgent", BELL_CELL
        )
        assert urgent.position_in_queue() == 1
        assert behind.position_in_queue() == 2
    finally:
        ip.run_line_magic("qcancel", "--all")
    wait_until(lambda: running.done(), what="the running emulator job to end cancelled")
    assert running.status is JobStatus.CANCELLED


def test_ctrl_c_during_wait_stops_waiting_but_does_not_cancel(ip, manager, capsys):
    def interrupt_once_running():
        wait_until(
            lambda: (job := ip.user_ns.get("_qjob")) is not None and job.status is JobStatus.RUNNING,
            what="the job to run",
        )
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    ip.run_cell_magic("qsubmit", "--target emulator --compile --shots 20000 --wait", BELL_CELL + "bell\n")
    job = ip.user_ns["_qjob"]
    out = capsys.readouterr().out
    assert "stopped waiting" in out and f"%qcancel {job.id[:8]}" in out
    assert job.status is JobStatus.RUNNING  # still going: Ctrl-C is not a cancel
    assert job.cancel() in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    wait_until(job.done, what="the job to end cancelled")


def test_timeout_stops_waiting_and_says_so(ip, manager, capsys):
    ip.run_cell_magic("qsubmit", "--target emulator --compile --shots 20000 --timeout 0.3", BELL_CELL + "bell\n")
    job = ip.user_ns["_qjob"]
    assert "still" in capsys.readouterr().out
    assert not job.done()
    job.cancel()
    wait_until(job.done, what="the job to end cancelled")


# -- user mistakes: UsageError with one line, nothing submitted -------------------------------


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("--shots lots", BELL_CELL, "argument --shots"),
        ("--bogus", BELL_CELL, "unrecognized arguments"),
        ("--target nowhere", "ran = True\n" + BELL_CELL, "nowhere"),
        ("", "x = 1\ny = 'no circuits here'\n", "no circuit in the %%qsubmit cell"),
        ("", "bell = cirq.Circuit(\n", "syntax error in the %%qsubmit cell, line"),
        ("--shots 0", BELL_CELL, "shots must be a positive"),
        ("--qasm", "OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n", "invalid OpenQASM"),
        ("--target emulator", BELL_CELL, "emulator"),  # H/CNOT need --compile there
        ("--out 2bad", BELL_CELL, "--out needs a variable name"),
        ("--wait --timeout -1", BELL_CELL, "--timeout must be a positive"),
    ],
)
def test_user_mistakes_raise_usage_error_and_submit_nothing(ip, manager, line, cell, message):
    ip.user_ns.pop("ran", None)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("qsubmit", line, cell)
    text = str(info.value)
    assert message in text
    assert "\n" not in text.strip()
    assert submitted(manager) == 0
    assert "ran" not in ip.user_ns  # an unknown target stops before the cell runs


def test_line_magic_mistakes(ip, manager):
    for magic, line, message in [
        ("qstatus", "feedfacecafe", "no job id starts with"),
        ("qcancel", "", "give job ids to %qcancel, or --all"),
        ("qqueue", "--target nowhere", "nowhere"),
        ("qqueue", "--status sleeping", "unknown status"),
        ("qjobs", "--limit many", "argument --limit"),
        ("qtargets", "extra", "takes no arguments"),
        ("qwait", "", "the following arguments are required"),
    ]:
        with pytest.raises(UsageError) as info:
            ip.run_line_magic(magic, line)
        assert message in str(info.value), (magic, str(info.value))
        assert "\n" not in str(info.value).strip()


# -- line magics ------------------------------------------------------------------------------


def test_job_references_id_prefix_and_variable(ip, manager):
    ip.run_cell_magic("qsubmit", "--shots 50 --wait --out mine", BELL_CELL)
    job = ip.user_ns["mine"]
    assert ip.run_line_magic("qstatus", job.id) == job
    assert ip.run_line_magic("qstatus", job.id[:10]) == job
    assert ip.run_line_magic("qstatus", "mine") == job
    assert ip.run_line_magic("qwait", "mine --timeout 5") == job


def test_qcancel_by_reference_and_all(ip, manager, capsys):
    running = long_emulator_job(name="running")
    queued = long_emulator_job(name="queued")
    ip.user_ns["q_job"] = queued
    ip.run_line_magic("qcancel", "q_job")
    assert queued.status is JobStatus.CANCELLED
    assert "cancelled" in capsys.readouterr().out
    ip.run_line_magic("qcancel", "q_job")  # idempotent on a finished job
    ip.run_line_magic("qcancel", "--all")
    wait_until(running.done, what="the running job to end cancelled")
    assert running.status is JobStatus.CANCELLED


def test_qresult_values_labels_and_plots(ip, manager):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ip.run_cell_magic("qsubmit", "--shots 100 --wait", BELL_CELL)
    job = ip.user_ns["_qjob"]
    result = ip.run_line_magic("qresult", job.id[:12])
    assert list(result) == ["bell", "flip"]
    assert isinstance(ip.run_line_magic("qresult", f"{job.id} --label flip"), cirq.Result)
    plt.close("all")
    assert ip.run_line_magic("qresult", f"{job.id} --plot") is None
    assert len([ax for ax in plt.gcf().axes if ax.get_visible()]) == 2  # a grid for a batch
    plt.close("all")
    ip.run_line_magic("qresult", f"{job.id} --plot --label bell --probabilities")
    assert plt.gcf().axes[0].get_ylabel() == "probability"
    with pytest.raises(UsageError, match="no circuit 'nope'"):
        ip.run_line_magic("qresult", f"{job.id} --label nope")


def test_qresult_of_an_unfinished_job(ip, manager):
    job = long_emulator_job()
    try:
        with pytest.raises(UsageError, match="still"):
            ip.run_line_magic("qresult", job.id)
    finally:
        job.cancel()
    wait_until(job.done, what="the job to end cancelled")


def test_qresubmit(ip, manager):
    ip.run_cell_magic("qsubmit", "--shots 50 --wait", BELL_CELL)
    job = ip.user_ns["_qjob"]
    again = ip.run_line_magic("qresubmit", job.id)
    assert again.parent_id == job.id and ip.user_ns["_qjob"] == again
    with pytest.raises(UsageError, match="nothing to resubmit"):
        ip.run_line_magic("qresubmit", f"{job.id} --failed-only")
    again.result(timeout=60)


def test_qjobs_qtargets_and_qqueue(ip, manager):
    ip.run_cell_magic("qsubmit", "--shots 50 --wait --name listed", BELL_CELL)
    job = ip.user_ns["_qjob"]
    table = ip.run_line_magic("qjobs", "--status completed")
    assert job.id[:8] in repr(table) and "listed" in table._repr_html_()
    targets = repr(ip.run_line_magic("qtargets", ""))
    assert "emulator" in targets and "sim" in targets
    monitor = ip.run_line_magic("qqueue", "--target sim --user tester")
    assert monitor is ip.run_line_magic("qqueue", "")  # one instance, updated in place
    assert (monitor.target_filter, monitor.user_filter) == ("", "")


def test_quoted_name(ip, manager):
    job = ip.run_cell_magic("qsubmit", '--name "long run" --shots 10', BELL_CELL)
    assert job.name == "long run"
