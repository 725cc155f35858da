"""``%%qsubmit --estimate`` (prints ``qnb.estimate`` of the cell, submits nothing) and the
submit options of issue 20 on the magic: ``--notify``, ``--retries``, ``--max-cost``,
``%qqueue --tag``, through a real IPython shell."""

from __future__ import annotations

import datetime

import pytest
from IPython.core.error import UsageError

import qnb
from qnb import _api
from qnb._views import estimate_text
from conftest import wait_until
from test_magics import ip, shell  # noqa: F401 (fixtures: the IPython shell, a fresh manager)
from test_notify import Listener, no_defaults  # noqa: F401 (a fixture)

CELL = """
import cirq
q = cirq.LineQubit.range(2)
bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
flip = cirq.Circuit(cirq.X(q[0]), cirq.measure(*q, key="m"))
"""


@pytest.fixture
def listener():
    made = Listener()
    yield made
    made.close()


def stored(manager) -> int:
    return len(manager.find(limit=1000))


def test_estimate_prints_run_wait_finish_and_cost_and_submits_nothing(ip, manager, capsys):
    assert ip.run_cell_magic("qsubmit", "--estimate --shots 300 --out guess", CELL) is None
    out = capsys.readouterr().out
    assert stored(manager) == 0 and "_qjob" not in ip.user_ns
    assert out.startswith("estimate on sim, 300 shots (nothing submitted):")
    for word in ("run", "wait", "finish", "cost"):
        assert f"\n  {word} " in out, out
    guess = ip.user_ns["guess"]
    assert isinstance(guess, qnb.Estimate)
    # The same answer as the API's for the same circuits and options.
    direct = qnb.estimate(
        {"bell": ip.user_ns["bell"], "flip": ip.user_ns["flip"]}, target="sim", shots=300
    )
    assert (guess.cost, guess.currency) == (direct.cost, direct.currency)
    assert guess.cost == 0.0 and "  cost    no cost" in out  # a local target costs nothing
    # A sweep and --compile reach the estimate as they would reach a submit.
    ip.run_cell_magic("qsubmit", "--estimate --compile --target emulator --sweep \"t=[0, 1]\"", CELL)
    assert "estimate on emulator, 1000 shots" in capsys.readouterr().out
    assert stored(manager) == 0


def test_estimate_text_says_each_figure_and_what_is_not_known():
    now = 1_000_000.0
    finish = datetime.datetime.fromtimestamp(now + 190, tz=datetime.timezone.utc)
    known = qnb.Estimate(70.0, 120.0, finish, 4.2, "USD", "pool of 4; 12 runs seen")
    text = estimate_text(known, heading="estimate on ionq", max_cost=3.0, over="--max-cost", now=now)
    clock = finish.astimezone().strftime("%H:%M:%S")
    assert "  run     ~1 min" in text and "  wait    ~2 min" in text
    assert f"  finish  {clock} (in ~3 min)" in text
    assert "  cost    $4.20" in text and "over --max-cost 3: submitting would be refused" in text
    assert text.endswith("  basis   pool of 4; 12 runs seen")
    unknown = estimate_text(qnb.Estimate(None, 0.2, None), heading="estimate on sim", now=now)
    assert "run     not known" in unknown and "wait    starts now" in unknown
    assert "finish  not known" in unknown and "cost    cost unknown" in unknown
    assert "basis" not in unknown


@pytest.mark.parametrize(
    "line, message",
    [
        ("--estimate --wait", "--estimate submits nothing"),
        ("--estimate --max-cost -1", "max_cost must be a number from 0"),
        ("--estimate --target nowhere", "nowhere"),
        ("--max-cost lots", "max_cost must be a number from 0"),
        ("--max-cost nan", "max_cost must be a number from 0"),
        ("--retries -1", "retries must be a whole number"),
        ("--retries 1.5", "retries must be a whole number"),
        ("--notify nonsense-without-scheme", "notify"),
    ],
)
def test_bad_values_are_refused_as_the_api_refuses_them_and_nothing_is_stored(
    ip, manager, no_defaults, line, message  # noqa: F811
):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("qsubmit", line, CELL)
    assert stored(manager) == 0


def test_notify_retries_and_max_cost_reach_the_job(ip, manager, listener, no_defaults, monkeypatch):  # noqa: F811
    seen = {}
    real_submit = _api.submit

    def recording_submit(circuits, **options):  # the real submit, its options noted
        seen.update(options)
        return real_submit(circuits, **options)

    monkeypatch.setattr(_api, "submit", recording_submit)
    line = f"--shots 50 --retries 2 --max-cost 5 --notify {listener.url('a')} --notify '{listener.url('b')}'"
    job = ip.run_cell_magic("qsubmit", line, CELL)
    assert (seen["retries"], seen["max_cost"]) == (2, 5.0)
    assert seen["notify"] == [listener.url("a"), listener.url("b")]
    assert manager.load(job.id).retries == 2  # kept on the job
    job.result(timeout=60)
    wait_until(lambda: len(listener.about(job.id)) == 2, what="one message per --notify URL")
    # Without the flags: the API's defaults (no retries, no ceiling, default URLs).
    ip.run_cell_magic("qsubmit", "--shots 10", CELL)
    assert (seen["retries"], seen["max_cost"], seen["notify"]) == (0, None, None)


def test_qqueue_and_monitor_filter_by_tag(ip, manager):
    from qnb.notebook._widgets import monitor

    ip.run_cell_magic("qsubmit", "--shots 10 --tag calib", CELL).result(timeout=60)
    ip.run_cell_magic("qsubmit", "--shots 10 --tag other", CELL).result(timeout=60)
    shown = ip.run_line_magic("qqueue", "--tag calib")
    assert shown.tag_filter == "calib"
    assert [row["tags"] for row in shown._rows_for_text()] == [["calib"]]
    assert qnb.monitor(tag="other").tag_filter == "other"
    assert monitor().tag_filter == ""  # a new call sets every filter again
    with pytest.raises(UsageError, match="tag"):
        ip.run_line_magic("qqueue", "--tag ' '")
