"""The ``qnb`` command against a real store (jobs made by other processes) and a real
``qnb serve``. Each test's commands run in a process of their own, apart from the
processes that made the jobs: ``python -m qnb`` itself where its start is the point (exit
codes, Ctrl-C, what it imports), else a ``qnb`` session (`CliSession`) that runs each
command through the CLI's ``main`` in turn, as ``python -m qnb`` does, sparing an
interpreter and a Cirq import per command."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import textwrap

import httpx
import pytest

from conftest import BELL_QASM, SHARED_SERVE_GROUP, wait_until
from test_server_support import auth

pytestmark = pytest.mark.slow

HEAVY = ("cirq", "qsimcirq", "fastapi", "uvicorn", "numpy")
JSON_FIELDS = {"id", "name", "target", "user", "status", "shots", "items", "items_done",
               "time_added", "time_started", "time_finished", "error", "parent_id"}
LONG_NAME = "a Bell pair with a name far too long for any terminal column at all"

MAKE_JOBS = textwrap.dedent(
    f"""
    import json, qnb
    bell = qnb.submit({BELL_QASM!r}, shots=100, name={LONG_NAME!r})
    batch = qnb.submit({{"x": {BELL_QASM!r}, "y": {BELL_QASM!r}}}, shots=10, user="bob")
    # ~50 s of emulated device time: cancelled long before it ends.
    slow = qnb.submit({BELL_QASM!r}, target="emulator", shots=100_000, name="slow",
                    compile=True)
    bell.result(timeout=120), batch.result(timeout=120)
    slow.cancel()
    try:
        slow.result(timeout=60)
    except qnb.JobCancelledError:
        pass
    print(json.dumps({{"bell": bell.id, "batch": batch.id, "slow": slow.id}}))
    """
)


def environment(home, **extra) -> dict:
    return {**os.environ, "QNB_HOME": str(home), "QNB_USER": "alice",
            "QNB_TARGETS": str(home / "targets.toml"), "COLUMNS": "80", **extra}


def qnb_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qnb", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


#: Runs commands read from stdin (a JSON list of arguments a line) one after another, and
#: answers each with its exit code and what it printed, as ``python -m qnb`` would exit,
#: and which of HEAVY the interpreter has imported by then.
SESSION = textwrap.dedent(
    f"""
    import contextlib, io, json, sys
    from qnb._cli import main
    for line in sys.stdin:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(json.loads(line))
            except SystemExit as exit:  # argparse's usage errors, --help, --version
                code = exit.code
        heavy = [name for name in {HEAVY!r} if name in sys.modules]
        print(json.dumps([code or 0, out.getvalue(), err.getvalue(), heavy]), flush=True)
    """
)


@dataclasses.dataclass
class CliAnswer:
    """A command's answer in a `CliSession`: what ``qnb_cli``'s ``CompletedProcess``
    holds, and the heavy modules its interpreter had imported by its end."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    heavy: list[str]


class CliSession:
    """One interpreter running ``qnb`` commands in turn with one environment."""

    def __init__(self, env: dict):
        self.process = subprocess.Popen([sys.executable, "-c", SESSION], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def __call__(self, *args: str, timeout: float = 120) -> CliAnswer:
        self.process.stdin.write(json.dumps(list(args)) + "\n")
        self.process.stdin.flush()
        # One answer a command: nothing of the next is buffered, so the pipe says when.
        if not select.select([self.process.stdout], [], [], timeout)[0]:
            self.process.kill()
            raise AssertionError(f"qnb {' '.join(args)} gave no answer in {timeout} s")
        answer = self.process.stdout.readline()
        assert answer, f"the qnb session ended: {self.process.stderr.read()}"
        return CliAnswer(["qnb", *args], *json.loads(answer))

    def close(self) -> None:
        self.process.stdin.close()
        try:
            assert self.process.wait(timeout=60) == 0, self.process.stderr.read()
        finally:
            self.process.kill()
            self.process.stdout.close()
            self.process.stderr.close()


@pytest.fixture
def session():
    """``session(env)``: a `CliSession`, closed after the test."""
    opened: list[CliSession] = []

    def open_session(env: dict) -> CliSession:
        opened.append(CliSession(env))
        return opened[-1]

    yield open_session
    for cli in opened:
        cli.close()


def assert_one_line_error(done: subprocess.CompletedProcess | CliAnswer, *words: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-home")
    env = environment(home)
    made = subprocess.run([sys.executable, "-c", MAKE_JOBS], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    return env, json.loads(made.stdout)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["jobs", "--limit", "many"],
                                  ["serve", "--help"], ["nonsense"]])
def test_help_version_and_usage_errors_import_nothing_heavy(args, session):
    done = session(dict(os.environ))(*args)  # a fresh interpreter: nothing imported before
    assert done.heavy == [], done
    if args == ["serve", "--help"]:
        assert "(default: 8765)" in done.stdout and "(default: emulator)" in done.stdout


def test_python_dash_m_qnb_shows_version_and_help():
    version = subprocess.run([sys.executable, "-m", "qnb", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("qnb ")
    usage = subprocess.run([sys.executable, "-m", "qnb", "jobs", "--limit", "x"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "invalid int value" in usage.stderr and "Traceback" not in usage.stderr


def test_jobs_lists_in_80_columns_and_filters(store, session):
    env, ids = store
    cli = session(env)
    done = cli("jobs")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "TARGET", "USER", "ITEMS", "ADDED", "NAME"]
    assert all(len(line) <= 80 for line in lines), lines
    assert len(lines) == 4 and {line[:8] for line in lines[1:]} == {v[:8] for v in ids.values()}
    assert any(line.endswith("…") and LONG_NAME[:10] in line for line in lines)

    listed = json.loads(cli("jobs", "--json").stdout)
    # A local job's cost is known at submit (none): cost and currency are there.
    assert all(set(view) == JSON_FIELDS | {"cost", "currency"} for view in listed)
    assert {view["cost"] for view in listed} == {0.0}
    by_id = {view["id"]: view for view in listed}
    assert by_id[ids["bell"]]["name"] == LONG_NAME and by_id[ids["bell"]]["status"] == "completed"
    assert by_id[ids["batch"]]["items"] == 2 and by_id[ids["batch"]]["user"] == "bob"
    assert by_id[ids["slow"]]["status"] == "cancelled"

    def listed_ids(*args: str) -> set[str]:
        return {view["id"] for view in json.loads(cli("jobs", "--json", *args).stdout)}

    assert listed_ids("--status", "cancelled") == {ids["slow"]}
    assert listed_ids("--status", "cancelled", "--status", "completed") == set(ids.values())
    assert listed_ids("--target", "emulator") == {ids["slow"]}
    assert listed_ids("--user", "bob") == {ids["batch"]}
    assert len(listed_ids("--limit", "1")) == 1
    assert_one_line_error(cli("jobs", "--status", "finished"), "unknown status")


def test_show_and_result_by_prefix(store, session):
    env, ids = store
    cli = session(env)
    shown = cli("show", ids["batch"][:6])
    assert shown.returncode == 0, shown.stderr
    assert f"job      {ids['batch']}" in shown.stdout and "completed (2/2 items finished)" in shown.stdout
    view = json.loads(cli("show", ids["batch"], "--json").stdout)
    assert set(view) == JSON_FIELDS | {"item_list", "usage", "cost", "currency"}
    assert "cost     no cost (estimated at submit)" in shown.stdout
    assert view["usage"] is None  # a local job: no vendor said what it used
    assert [item["label"] for item in view["item_list"]] == ["x", "y"]

    text = cli("result", ids["bell"][:6])
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == "c:" or text.stdout.splitlines()[0].endswith(":")
    counted = json.loads(cli("result", ids["batch"], "--json").stdout)
    assert counted["id"] == ids["batch"] and counted["missing"] == {}
    assert {label: sum(c.values()) for label, c in counted["counts"].items()} == {"x": 10, "y": 10}
    assert set(counted["counts"]["x"]) <= {"00", "11"}

    assert_one_line_error(cli("result", ids["slow"]), "cancelled")
    assert_one_line_error(cli("show", "ffffffffff"), "no job id starts with")
    assert_one_line_error(cli("result", "ffffffffff"), "no job id starts with")
    assert_one_line_error(cli("show", ""))


def test_cancel_and_resubmit(store, session):
    env, ids = store
    cli = session(env)
    again = cli("cancel", ids["bell"], ids["slow"][:6])
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [ids["bell"][:8], "completed", ids["slow"][:8], "cancelled"]
    nothing = cli("cancel", "--all")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert_one_line_error(cli("cancel"), "--all")

    redo = cli("resubmit", ids["batch"][:8])
    assert redo.returncode == 0, redo.stderr
    new_id, status_line = redo.stdout.splitlines()
    assert status_line == f"{new_id[:8]}  completed"
    child = json.loads(cli("show", new_id, "--json").stdout)
    assert child["parent_id"] == ids["batch"] and child["items"] == 2 and child["user"] == "bob"
    assert_one_line_error(cli("resubmit", ids["batch"], "--failed-only"), "nothing to resubmit")


def test_targets_and_the_queue_of_a_local_target(store, session):
    env, _ = store
    cli = session(env)
    listed = json.loads(cli("targets", "--json").stdout)
    assert {"sim", "cirq", "density", "emulator"} <= {t["name"] for t in listed}
    table = cli("targets")
    assert table.returncode == 0 and all(len(line) <= 80 for line in table.stdout.splitlines())
    assert json.loads(cli("queue", "sim", "--json").stdout) == []
    assert_one_line_error(cli("queue", "nowhere"), "unknown target")


def test_ctrl_c_while_waiting_exits_130_quietly(store):
    env, _ = store
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, qnb
            job = qnb.submit({BELL_QASM!r}, target="emulator", shots=100_000, name="held", compile=True)
            print(job.id, flush=True)
            sys.stdin.read()  # runs until the test closes stdin
            job.cancel()
            """)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        job_id = holder.stdout.readline().strip()
        assert job_id, holder.stderr.read()
        # (Cancelling it from here is tested in test_cross_process.py: the owner does it.)
        assert_one_line_error(qnb_cli("result", job_id[:8], env=env), "is still", "qnb result --wait")
        waiting = subprocess.Popen([sys.executable, "-m", "qnb", "result", "--wait", job_id[:8]],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert waiting.stderr.readline().startswith(f"waiting for job {job_id[:8]}")
        waiting.send_signal(signal.SIGINT)
        assert waiting.wait(timeout=30) == 130
        assert "Traceback" not in waiting.stderr.read()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@SHARED_SERVE_GROUP
def test_a_queue_server_target_from_the_targets_file(tmp_path, shared_serve, session):
    server, tokens = shared_serve
    made_ids: list[str] = []
    home = tmp_path / "client"
    home.mkdir()
    env = environment(home, LAB_TOKEN=tokens["alice"])
    (home / "targets.toml").write_text(f'[targets.lab]\nurl = "{server.url}"\ntoken_env = "LAB_TOKEN"\n')
    cli = session(env)
    try:
        listed = {t["name"]: t for t in json.loads(cli("targets", "--json").stdout)}
        assert listed["lab"]["kind"] == "remote" and listed["lab"]["url"] == server.url

        made = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import json, qnb
            qnb.connect("lab")
            quick = qnb.submit({BELL_QASM!r}, target="lab", shots=20, name="quick", compile=True)
            quick.result(timeout=120)
            busy = qnb.submit({BELL_QASM!r}, target="lab", shots=60_000, name="busy", compile=True)
            waiting = qnb.submit({BELL_QASM!r}, target="lab", shots=20, name="waiting", compile=True)
            print(json.dumps([quick.id, busy.id, waiting.id]))
            """)], env=env, capture_output=True, text=True, timeout=300, check=True)
        made_ids += json.loads(made.stdout)
        quick, busy, waiting = made_ids

        def in_servers_queue() -> bool:  # asked of the server itself (an interpreter a poll would cost seconds)
            answer = http.get(f"{server.url}/v1/queue", headers=auth(tokens["alice"])).json()
            return any(e["id"] == waiting for e in answer["entries"])

        with httpx.Client(timeout=30) as http:
            wait_until(in_servers_queue, timeout=60, interval=0.05, what="the waiting job in the server's queue")
        entries = [e for e in json.loads(cli("queue", "lab", "--json").stdout) if e["id"] == waiting]
        assert entries[0]["user"] == "alice" and entries[0]["position"] >= 1
        table = cli("queue", "lab")
        assert waiting[:8] in table.stdout and table.stdout.splitlines()[0].split()[0] == "POS"

        counted = json.loads(cli("result", quick[:8], "--json").stdout)
        assert sum(counted["counts"]["0"].values()) == 20

        cancelled = cli("cancel", waiting, busy)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.split() == [waiting[:8], "cancelled", busy[:8], "cancelled"]

        redo = cli("resubmit", waiting)
        assert redo.returncode == 0, redo.stderr
        new_id = redo.stdout.strip()
        waited = cli("result", new_id, "--wait", "--timeout", "120", "--json")
        assert waited.returncode == 0, waited.stderr
        assert sum(json.loads(waited.stdout)["counts"]["0"].values()) == 20
    finally:
        # The server is shared: a failed run leaves its device free for the next test.
        for job_id in made_ids:
            httpx.post(f"{server.url}/v1/jobs/{job_id}/cancel", headers=auth(tokens["root"]), timeout=30)


# -- estimates (issue 20) ---------------------------------------------------------------------


def test_estimate_of_a_qasm_file_prints_it_and_submits_nothing(tmp_path, session):
    env = environment(tmp_path)
    cli = session(env)
    qasm = tmp_path / "bell.qasm"
    qasm.write_text(BELL_QASM)
    done = cli("estimate", str(qasm), "--shots", "500")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{qasm} on sim, 500 shots:"
    assert [line.split()[0] for line in lines[1:5]] == ["run", "wait", "finish", "cost"]
    assert "  cost    no cost" in lines  # a local target
    as_json = json.loads(cli("estimate", str(qasm), "--json", "--target", "emulator", "--compile").stdout)
    assert set(as_json) == {"run_seconds", "wait_seconds", "finish", "cost", "currency", "basis"}
    assert as_json["cost"] == 0.0
    assert json.loads(cli("jobs", "--json").stdout) == []  # nothing submitted
    assert_one_line_error(cli("estimate", str(qasm), "--max-cost", "-1"), "max_cost must be")
    assert_one_line_error(cli("estimate", str(tmp_path / "none.qasm")), "cannot read")
    assert_one_line_error(cli("estimate", str(qasm), "--target", "nowhere"), "unknown target")
    bad = tmp_path / "bad.qasm"
    bad.write_text("OPENQASM 2.0;\nqreg q[1];\nnonsense q[0];\n")
    assert_one_line_error(cli("estimate", str(bad)))


def test_show_and_jobs_say_what_is_left_and_the_cost(capsys):
    """The lines ``qnb show`` and the ETA column ``qnb jobs`` print from a job's view
    while it is estimated (the view of a job whose process estimates it)."""
    from qnb import _cli

    now = 1_800_000_000.0
    view = {"estimate": {"run_seconds": 70.0, "wait_seconds": 120.0, "finish": now + 190,
                         "cost": 4.2, "currency": "USD", "basis": "queue position 3 (Braket)"},
            "cost": 4.2, "currency": "USD"}
    clock = _cli.time.strftime("%H:%M", _cli.time.localtime(now + 190))
    assert _cli._eta(view["estimate"], now=now) == f"{clock} (~3 min)"
    assert _cli._eta(view["estimate"], now=now + 200) == f"{clock} (due)"
    assert _cli._eta(None) == "-" and _cli._eta({"finish": None}) == "-"
    lines = dict(_cli._outlook(view))
    assert lines["eta"].startswith(f"{clock} (") and "starts in ~2 min, runs ~1 min" in lines["eta"]
    assert lines["basis"] == "queue position 3 (Braket)"
    assert lines["cost"] == "$4.20 (estimated at submit)"
    assert _cli._outlook({}) == []  # a finished job of an unpriced target: nothing to say
    assert _cli._item_status({"status": "running", "attempts": 1, "retries": 3}) == "running, retrying (1/3)"
    assert _cli._item_status({"status": "failed", "attempts": 3, "retries": 3}) == "failed"
