"""Notifications (issue 20): ``notify=`` at submit, the ``$QNB_NOTIFY`` and targets-file
defaults, ``qnb wait --notify``: one message a job, received by a real HTTP server on
loopback through Apprise's ``json://`` URL; failing endpoints logged, never raised; bad
URLs refused at submit without echoing them, nothing stored."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading

import cirq
import pytest

import qnb
from conftest import SHARED_SERVE_GROUP, wait_until
from qnb import _notify
from qnb._errors import InvalidOptionError
from test_cli import environment, session  # noqa: F401 (a fixture)

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))


class Listener:
    """An HTTP endpoint on 127.0.0.1 keeping the JSON bodies posted to it (answering
    ``status``), for Apprise's ``json://`` notifications."""

    def __init__(self, status: int = 200):
        self.status = status
        self.messages: list[dict] = []
        received = self.messages
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.server.server_port}/{path}"

    def about(self, job_id: str) -> list[dict]:
        return [m for m in self.messages if job_id in m["message"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    made = Listener()
    yield made
    made.close()


@pytest.fixture
def no_defaults(monkeypatch, tmp_path):
    """No notify defaults from the machine running the tests."""
    monkeypatch.delenv("QNB_NOTIFY", raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "targets.toml"))
    return tmp_path / "targets.toml"


class Broken(cirq.Sampler):
    """Refuses circuits with a Y gate; runs the others."""

    def run_sweep(self, program, params, repetitions=1):
        if any(isinstance(op.gate, cirq.YPowGate) for op in program.all_operations()):
            raise RuntimeError("the vendor refused it")
        return cirq.Simulator().run_sweep(program, params, repetitions=repetitions)


REFUSED = cirq.Circuit(cirq.Y(Q[0]), cirq.measure(Q[0], key="m"))


def free_port() -> int:
    """A loopback port nobody listens on (taken, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- one message a job ------------------------------------------------------------------------


def test_each_job_is_announced_once_with_its_id_name_status_counts_and_time(manager, listener, no_defaults):
    first = qnb.submit(BELL, shots=100, name="bell one", notify=listener.url())
    second = qnb.submit({"a": BELL, "b": BELL}, shots=50, name="bell two", notify=[listener.url()])
    for job in (first, second):
        job.result(timeout=60)
    wait_until(lambda: listener.about(first.id) and listener.about(second.id), what="two messages")
    # A later job's message arriving means the worker has passed the first two's.
    last = qnb.submit(BELL, shots=10, name="last", notify=listener.url())
    last.result(timeout=60)
    wait_until(lambda: listener.about(last.id), what="the last job's message")
    assert len(listener.messages) == 3
    assert [len(listener.about(j.id)) for j in (first, second, last)] == [1, 1, 1]

    (one,) = listener.about(first.id)
    assert one["title"] == "qnb: 'bell one' completed"
    body = one["message"]
    assert f"job {first.id} ('bell one') on sim: completed" in body
    assert "elapsed " in body and " s (ran " in body
    counts = first.result().counts()
    assert "counts of '0': " in body and all(f"{bits}: {n}" in body for bits, n in counts.items())
    (two,) = listener.about(second.id)
    assert "counts of 'a'" in two["message"] and "counts of 'b'" in two["message"]


def test_a_failed_job_says_its_error_and_a_failed_batch_its_partial_counts(manager, listener, no_defaults):
    qnb.register_target("notify-broken", Broken())
    failed = qnb.submit(REFUSED, target="notify-broken", shots=10, name="doomed", notify=listener.url())
    partial = qnb.submit({"ok": BELL, "refused": REFUSED}, target="notify-broken", shots=10,
                         name="half", notify=listener.url())  # fmt: skip
    with pytest.raises(qnb.JobFailedError):
        failed.result(timeout=60)
    assert partial.result(timeout=60).missing
    wait_until(lambda: listener.about(failed.id) and listener.about(partial.id), what="both messages")
    (message,) = listener.about(failed.id)
    assert message["title"] == "qnb: 'doomed' failed"
    assert "error: " in message["message"] and "the vendor refused it" in message["message"]
    assert "counts of" not in message["message"]
    (half,) = listener.about(partial.id)
    assert half["title"] == "qnb: 'half' failed"  # a batch with a failed item fails, keeping the rest
    assert "counts of 'ok'" in half["message"] and "no result for 1 of 2 circuits" in half["message"]


def test_jobs_without_notify_or_with_false_and_sampler_jobs_send_nothing(manager, listener, no_defaults, monkeypatch):
    quiet = qnb.submit(BELL, shots=10, name="quiet")  # no defaults set: none
    quiet.result(timeout=60)
    monkeypatch.setenv("QNB_NOTIFY", listener.url())
    silenced = qnb.submit(BELL, shots=10, name="silenced", notify=False)
    qnb.Sampler("sim").run(BELL, repetitions=5)  # a Sampler's jobs: never announced
    told = qnb.submit(BELL, shots=10, name="told")  # the default applies
    for job in (silenced, told):
        job.result(timeout=60)
    wait_until(lambda: listener.about(told.id), what="the told job's message")
    assert [m["title"] for m in listener.messages] == ["qnb: 'told' completed"]


# -- failures are logged, never raised -----------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["answers 500", "refuses connections"])
def test_a_failing_endpoint_is_logged_and_the_job_is_unaffected(manager, listener, no_defaults, caplog, endpoint):
    if endpoint == "answers 500":
        listener.status = 500
        url = listener.url("secret-token-in-path")
    else:
        url = f"json://127.0.0.1:{free_port()}/secret-token-in-path"
    caplog.set_level(logging.WARNING, logger="qnb")
    job = qnb.submit(BELL, shots=10, name="unheard", notify=url)
    assert job.result(timeout=60).counts()  # the job is unaffected
    warned = wait_until(
        lambda: [r for r in caplog.records if r.name == "qnb" and "could not be sent" in r.getMessage()],
        what="the failed send's log line",
    )
    assert "json://" in warned[0].getMessage()
    assert "secret-token-in-path" not in caplog.text  # only the scheme is named
    if endpoint == "answers 500":
        assert len(listener.about(job.id)) == 1  # tried once: one message a job


def test_a_send_past_its_deadline_is_given_up_on_and_logged(caplog):
    """An endpoint that accepts and never answers: ``send`` returns at its deadline."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"json://127.0.0.1:{silent.getsockname()[1]}/hook"
        caplog.set_level(logging.WARNING, logger="qnb")
        assert _notify.send([url], "title", "body", timeout=0.5) is False
    assert "took over 0.5 s" in caplog.text


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "notify, words",
    [
        ("nonsense://t0ken-abc@host", ["'nonsense://'", "Apprise's documentation"]),
        ("t0ken-abc", ["without a scheme", "ntfy://my-topic"]),
        (["json://127.0.0.1:9/ok", "nonsense://t0ken-abc"], ["'nonsense://'"]),
        (42, ["got int", "notify='ntfy://my-topic'"]),
        (["json://127.0.0.1:9/ok", 7], ["a list of them"]),
    ],
)
def test_a_url_apprise_cannot_use_is_refused_at_submit_naming_its_scheme_only(manager, no_defaults, caplog, notify, words):
    before = len(qnb.jobs())
    with pytest.raises(InvalidOptionError) as refused:
        qnb.submit(BELL, shots=10, notify=notify)
    message = str(refused.value)
    assert all(word in message for word in words), message
    assert "t0ken-abc" not in message and "t0ken-abc" not in caplog.text
    assert refused.value.field == ("notify",)
    assert len(qnb.jobs()) == before  # nothing stored


def test_a_bad_default_url_is_refused_naming_where_it_comes_from(manager, no_defaults, monkeypatch):
    monkeypatch.setenv("QNB_NOTIFY", "json://127.0.0.1:9/ok, nonsense://t0ken")
    with pytest.raises(InvalidOptionError, match=r"'nonsense://' \(from \$QNB_NOTIFY\)"):
        qnb.submit(BELL, shots=10)
    monkeypatch.delenv("QNB_NOTIFY")
    no_defaults.write_text("[notify]\nurls = 3\n")
    with pytest.raises(InvalidOptionError, match=r"\[notify\] urls in .*targets.toml must be a list"):
        qnb.submit(BELL, shots=10)
    assert qnb.jobs() == []


# -- defaults ---------------------------------------------------------------------------------------


def test_defaults_from_the_targets_file_and_qnb_notify_which_wins(manager, no_defaults, monkeypatch):
    from_file, from_env = Listener(), Listener()
    try:
        no_defaults.write_text(f'[notify]\nurls = ["{from_file.url()}"]\n')
        by_file = qnb.submit(BELL, shots=10, name="by file")
        by_file.result(timeout=60)
        wait_until(lambda: from_file.about(by_file.id), what="the file's default")

        # Comma- or space-separated; it replaces the file's list.
        monkeypatch.setenv("QNB_NOTIFY", f" {from_env.url('a')}, {from_env.url('b')} ")
        by_env = qnb.submit(BELL, shots=10, name="by env")
        by_env.result(timeout=60)
        wait_until(lambda: len(from_env.about(by_env.id)) == 2, what="both $QNB_NOTIFY URLs")

        monkeypatch.setenv("QNB_NOTIFY", "")  # set and empty: none
        quiet = qnb.submit(BELL, shots=10, name="quiet")
        own = qnb.submit(BELL, shots=10, name="own", notify=from_file.url())  # a job's own wins
        for job in (quiet, own):
            job.result(timeout=60)
        wait_until(lambda: from_file.about(own.id), what="the job's own URL")
        assert [m["title"] for m in from_file.messages] == ["qnb: 'by file' completed", "qnb: 'own' completed"]
        assert len(from_env.messages) == 2
    finally:
        from_file.close()
        from_env.close()


# -- processes: a script's exit, the CLI ---------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys, cirq, qnb
    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    job = qnb.submit(bell, shots=20, name="from a script", notify=sys.argv[1])
    job.result(timeout=120)
    print(job.id)
    """
)


@pytest.mark.slow
def test_a_script_that_exits_right_after_its_job_still_announces_it(listener, tmp_path):
    env = environment(tmp_path)
    env.pop("QNB_NOTIFY", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, listener.url()], env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    # The process has exited: what it sent has arrived (the server answered it).
    assert [m["title"] for m in listener.about(job_id)] == ["qnb: 'from a script' completed"]


@pytest.mark.slow
def test_qnb_wait_notify_sends_one_message_and_refuses_bad_urls(listener, tmp_path, session):
    env = environment(tmp_path)
    env.pop("QNB_NOTIFY", None)
    cli = session(env)
    made = subprocess.run([sys.executable, "-c", SCRIPT, "json://127.0.0.1:9/unused"], env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    job_id = made.stdout.strip()
    assert made.returncode == 0 and job_id, made.stderr

    waited = cli("wait", job_id[:8], "--notify", listener.url())
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == f"{job_id[:8]}  completed"
    (message,) = listener.about(job_id)
    assert message["title"] == "qnb: 'from a script' completed" and "counts of '0'" in message["message"]

    bad = cli("wait", job_id[:8], "--notify", "nonsense://t0ken")
    assert bad.returncode == 1 and "'nonsense://'" in bad.stderr and "t0ken" not in bad.stderr

    unreachable = cli("wait", job_id[:8], "--notify", f"json://127.0.0.1:{free_port()}/x")
    assert unreachable.returncode == 1 and "could not be sent" in unreachable.stderr
    assert len(listener.about(job_id)) == 1


FOLLOWER = textwrap.dedent(
    """
    import sys, cirq, qnb
    url, token = sys.argv[1:3]
    print("ready", flush=True)
    job_id = sys.stdin.readline().strip()
    qnb.connect("notify-lab", url, token=token)  # follows the store's unfinished jobs of it
    job = qnb.get_job(job_id)
    print(job.status.value, flush=True)
    job.result(timeout=120)
    q = cirq.LineQubit.range(1)
    own = qnb.submit(cirq.Circuit(cirq.X(q[0]), cirq.measure(q[0])), shots=5, name="follower's own")
    own.result(timeout=120)  # announced through $QNB_NOTIFY, after anything sent before
    """
)


@pytest.mark.slow
@SHARED_SERVE_GROUP
def test_a_queue_server_job_is_announced_by_its_submitter_only(manager, listener, no_defaults, shared_serve, tmp_path):
    """Two processes follow the same remote job to its end; the one that submitted it
    sends the one message, the other (whose $QNB_NOTIFY points at the same listener)
    sends none: defaults apply at submit, and URLs are not in the store."""
    server, tokens = shared_serve
    qnb.connect("notify-lab", server.url, token=tokens["alice"])
    env = {**environment(manager.home), "QNB_NOTIFY": listener.url("follower")}
    follower = subprocess.Popen([sys.executable, "-c", FOLLOWER, server.url, tokens["alice"]], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
    try:
        assert follower.stdout.readline().strip() == "ready"  # (Cirq imported)
        # A job holds the device until the follower has seen ours waiting behind it
        # (however long the follower takes to start following on a busy machine).
        ahead = qnb.submit(BELL, target="notify-lab", shots=60_000, compile=True, name="ahead", notify=False)
        job = qnb.submit(BELL, target="notify-lab", shots=300, compile=True, name="remote",
                         notify=listener.url())  # fmt: skip
        follower.stdin.write(job.id + "\n")
        follower.stdin.flush()
        seen = follower.stdout.readline().strip()
        ahead.cancel()
        assert job.result(timeout=120).counts()
        out, err = follower.communicate(timeout=180)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert seen == "queued", err  # it followed the job before it ran
    wait_until(lambda: listener.about(job.id), what="the submitter's message")
    assert [m["title"] for m in listener.messages if "follower's own" in m["title"]], err
    assert [m["title"] for m in listener.about(job.id)] == ["qnb: 'remote' completed"]
