"""Tags and search (issue 20): ``tags=`` at submit, ``job.tags``, ``qnb.jobs(tag=, name=,
since=)`` searching the store in SQL, ``%%qsubmit --tag``, ``qnb jobs --tag``, and tags
travelling to a queue server and back."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
import textwrap

import cirq
import httpx
import pytest
from IPython.core.error import UsageError

import qnb
from conftest import BELL_QASM, SHARED_SERVE_GROUP, ipython_shell
from qnb import _store
from qnb._errors import InvalidOptionError
from qnb._records import ItemRecord, JobRecord
from test_cli import environment, qnb_cli, session  # noqa: F401 (a fixture)
from test_server_support import auth, submit_body

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))


def ids(jobs) -> set[str]:
    return {job.id for job in jobs}


# -- the Python API ---------------------------------------------------------------------------


def test_tags_are_kept_in_order_and_jobs_are_found_by_tag_name_and_time(manager):
    before = datetime.datetime.now()
    calib = qnb.submit(BELL, shots=10, name="Calibration of Q0", tags=["calib", "run-3", "calib"])
    plain = qnb.submit(BELL, shots=10, name="plain")
    one = qnb.submit(BELL, shots=10, name="sweep b", tags="run-3")  # one text is one tag
    for job in (calib, plain, one):
        job.result(timeout=60)
    assert calib.tags == ("calib", "run-3") and plain.tags == () and one.tags == ("run-3",)

    assert ids(qnb.jobs(tag="calib")) == {calib.id}
    assert ids(qnb.jobs(tag="run-3")) == {calib.id, one.id}
    assert ids(qnb.jobs(tag=["run-3", "calib"])) == {calib.id}  # every tag given
    assert qnb.jobs(tag="nobody-uses-this") == []
    assert ids(qnb.jobs(name="calibration")) == {calib.id}  # a part of the name, any case
    assert ids(qnb.jobs(tag="run-3", name="SWEEP")) == {one.id}
    assert ids(qnb.jobs(tag="run-3", status="completed", target="sim")) == {calib.id, one.id}
    assert qnb.jobs(tag="run-3", target="emulator") == []
    assert ids(qnb.jobs(since=before)) == {calib.id, plain.id, one.id}
    assert qnb.jobs(since=datetime.datetime.now() + datetime.timedelta(minutes=1)) == []
    assert ids(qnb.jobs(since=one.time_added)) == {one.id}  # epoch seconds, inclusive

    again = calib.resubmit()
    again.result(timeout=60)
    assert again.tags == ("calib", "run-3")  # a resubmission keeps them
    assert ids(qnb.jobs(tag="calib")) == {calib.id, again.id}


def test_run_and_the_sampler_pass_tags_through(manager):
    assert qnb.run(BELL, shots=10, tags=["by-run"], timeout=60).counts()
    sampler = qnb.Sampler(tags=["by-sampler"])
    sampler.run(BELL, repetitions=10)
    assert sampler.last_job.tags == ("by-sampler",)
    assert len(qnb.jobs(tag="by-run")) == 1 and ids(qnb.jobs(tag="by-sampler")) == {sampler.last_job.id}
    with pytest.raises(InvalidOptionError, match="at most 20 tags"):
        qnb.Sampler(tags=[str(i) for i in range(30)]).run(BELL, repetitions=10)


def test_tags_survive_a_new_process_reading_the_store(manager):
    job = qnb.submit(BELL, shots=10, tags=["kept", "on disk"])
    job.result(timeout=60)
    manager.flush()
    fresh = _store.Store(manager.store.path)
    try:
        assert fresh.load_job(job.id).tags == ("kept", "on disk")
        assert [r.id for r in fresh.find_jobs(tags=["on disk"])] == [job.id]
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        (5, "tags must be a list of text"),
        ({"a", "b"}, "tags must be a list of text"),
        ([""], "1 to 64 printable characters"),
        ([" padded"], "without spaces at their ends"),
        (["a\nb"], "printable"),
        (["x" * 65], "1 to 64"),
        ([1], "each tag must be text"),
        (["ok", None], "each tag must be text"),
        ([f"t{i}" for i in range(21)], "at most 20 tags"),
    ],
)
def test_bad_tags_are_refused_at_submit_and_nothing_is_stored(manager, tags, words):
    with pytest.raises(InvalidOptionError, match=words) as refused:
        qnb.submit(BELL, shots=10, tags=tags)
    assert refused.value.field == ("tags",)
    assert manager.find(limit=10) == []


def test_twenty_tags_of_64_characters_are_fine(manager):
    tags = [f"{i:02d}" + "x" * 62 for i in range(20)]
    job = qnb.submit(BELL, shots=10, tags=tags)
    assert list(job.tags) == tags


def test_bad_search_options_say_what_they_take(manager):
    with pytest.raises(InvalidOptionError, match="since must be a datetime or epoch seconds"):
        qnb.jobs(since="yesterday")
    with pytest.raises(InvalidOptionError, match="1 to 64"):
        qnb.jobs(tag="")


# -- the store ---------------------------------------------------------------------------------


def record(job_id: str, tags: tuple[str, ...] = ()) -> JobRecord:
    return JobRecord(id=job_id, name=job_id, target="sim", user="ada", shots=1,
                     items=[ItemRecord("0")], time_added=1.0, tags=tags)  # fmt: skip


def test_a_tag_search_is_answered_by_the_tags_index(tmp_path):
    store = _store.Store(tmp_path / "jobs.sqlite3")
    try:
        for i in range(200):
            store.insert_job(record(f"{i:032x}", ("even",) if i % 2 == 0 else ()), ["{}"], {})
        found = store.find_jobs(tags=["even"], limit=1000)
        assert len(found) == 100 and all(r.tags == ("even",) for r in found)
        where, params = _store._search(status=None, target=None, user=None, tags=["even"],
                                       name=None, since=None)  # fmt: skip
        plan = store._query(f"EXPLAIN QUERY PLAN SELECT id FROM jobs{where}", params)
        assert any("job_tags_by_tag" in row[-1] for row in plan), plan
    finally:
        store.close()


def test_an_older_store_gains_the_tags_table_and_its_jobs_have_none(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = _store.Store(path)
    store.insert_job(record("a" * 32), ["{}"], {})
    store.close()
    with sqlite3.connect(path) as db:  # as a store written before tags existed
        db.execute("DROP TABLE job_tags")
    store = _store.Store(path)
    try:
        assert store.load_job("a" * 32).tags == ()
        store.insert_job(record("b" * 32, ("new",)), ["{}"], {})
        assert [r.id for r in store.find_jobs(tags=["new"])] == ["b" * 32]
        store.delete_job("b" * 32)  # its tags go with it
        assert store._query("SELECT COUNT(*) FROM job_tags") == [(0,)]
    finally:
        store.close()


# -- the magics ---------------------------------------------------------------------------------


@pytest.fixture
def ip(manager):
    shell = ipython_shell()
    shell.user_ns["bell"] = BELL
    return shell


def test_qsubmit_tag_is_repeatable_and_qjobs_finds_by_tag(ip, manager):
    job = ip.run_cell_magic("qsubmit", '--shots 10 --tag calib --tag "run 3"', "bell")
    assert job.tags == ("calib", "run 3")
    job.result(timeout=60)
    other = ip.run_cell_magic("qsubmit", "--shots 10", "bell")
    other.result(timeout=60)
    table = ip.run_line_magic("qjobs", "--tag calib")
    assert job.id[:8] in repr(table) and other.id[:8] not in repr(table)


def test_qsubmit_refuses_a_bad_tag_as_a_usage_error(ip, manager):
    with pytest.raises(UsageError, match="1 to 64 printable"):
        ip.run_cell_magic("qsubmit", f"--shots 10 --tag {'y' * 65}", "bell")
    assert manager.find(limit=10) == []


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_qnb_jobs_tag_filters_and_shows_tags_without_importing_cirq(tmp_path, session):
    env = environment(tmp_path)
    made = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import json, qnb
        a = qnb.submit({BELL_QASM!r}, shots=10, name="tagged", tags=["calib", "run-3"])
        b = qnb.submit({BELL_QASM!r}, shots=10, name="untagged")
        a.result(timeout=120), b.result(timeout=120)
        print(json.dumps([a.id, b.id]))
        """)], env=env, capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    tagged, untagged = json.loads(made.stdout)

    listed = json.loads(qnb_cli("jobs", "--tag", "calib", "--json", env=env).stdout)
    assert [v["id"] for v in listed] == [tagged] and listed[0]["tags"] == ["calib", "run-3"]
    both = json.loads(qnb_cli("jobs", "--tag", "calib", "--tag", "run-3", "--json", env=env).stdout)
    assert [v["id"] for v in both] == [tagged]
    by_name = json.loads(qnb_cli("jobs", "--name", "UNTAG", "--json", env=env).stdout)
    assert [v["id"] for v in by_name] == [untagged] and "tags" not in by_name[0]
    table = qnb_cli("jobs", env=env).stdout.splitlines()
    assert table[0].split()[-1] == "TAGS"
    assert any(line.startswith(tagged[:8]) and line.endswith("calib, run-3") for line in table), table
    nothing = qnb_cli("jobs", "--tag", "absent", env=env)
    assert nothing.returncode == 0 and nothing.stdout == "" and "no jobs" in nothing.stderr
    shown = qnb_cli("show", tagged[:8], env=env).stdout
    assert "tags     calib, run-3" in shown

    light = session(env)("jobs", "--tag", "calib")  # a fresh interpreter: nothing imported before
    assert tagged[:8] in light.stdout and light.heavy == [], light


# -- a queue server -----------------------------------------------------------------------------


@pytest.mark.slow
@SHARED_SERVE_GROUP
def test_tags_travel_to_a_queue_server_and_are_searched_there(shared_serve, manager):
    server, tokens = shared_serve
    qnb.connect("tagged-lab", server.url, token=tokens["alice"])
    job = qnb.submit(BELL_QASM, target="tagged-lab", shots=20, compile=True, tags=["remote", "lab-7"])
    job.result(timeout=120)
    assert job.tags == ("remote", "lab-7")
    headers = auth(tokens["alice"])
    view = httpx.get(f"{server.url}/v1/jobs/{job.id}", headers=headers, timeout=30).json()
    assert view["tags"] == ["remote", "lab-7"]
    found = httpx.get(f"{server.url}/v1/jobs", params={"tag": "lab-7"}, headers=headers, timeout=30)
    assert [v["id"] for v in found.json()["jobs"]] == [job.id]
    both = httpx.get(f"{server.url}/v1/jobs", params=[("tag", "lab-7"), ("tag", "other")],
                     headers=headers, timeout=30)  # fmt: skip
    assert both.json()["jobs"] == []
    assert ids(qnb.jobs(tag="lab-7")) == {job.id}  # the local record has them too

    again = httpx.post(f"{server.url}/v1/jobs/{job.id}/resubmit", json={}, headers=headers, timeout=30)
    assert again.status_code in (200, 201) and again.json()["tags"] == ["remote", "lab-7"], again.text
    httpx.post(f"{server.url}/v1/jobs/{again.json()['id']}/cancel", headers=headers, timeout=30)


@pytest.mark.slow
@SHARED_SERVE_GROUP
@pytest.mark.parametrize(("tags", "words"), [(["x" * 65], "1 to 64"), ([""], "1 to 64"),
                                             ("one", "valid array"), ([3], "valid string")])
def test_a_queue_server_refuses_bad_tags_naming_the_field(shared_serve, tags, words):
    server, tokens = shared_serve
    headers = auth(tokens["carol"])
    before = httpx.get(f"{server.url}/v1/jobs", headers=headers, timeout=30).json()["jobs"]
    answer = httpx.post(f"{server.url}/v1/jobs", json=submit_body(tags=tags), headers=headers, timeout=30)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(d["loc"][:2] == ["body", "tags"] and words in d["msg"] for d in detail), detail
    assert httpx.get(f"{server.url}/v1/jobs", headers=headers, timeout=30).json()["jobs"] == before
