"""The queue server in-process (httpx ASGI transport): submit, idempotency, validation,
limits, the queue, events, and the authorization matrix."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from qnb._store import Store
from test_server_support import BELL_JSON, FLIP_JSON, auth, lab, submit_body  # noqa: F401

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lab")


async def wait_for_status(http, job_id, token, statuses, *, timeout=30.0):
    deadline = time.monotonic() + timeout
    after = 0
    while time.monotonic() < deadline:
        view = (await http.get(f"/v1/jobs/{job_id}", headers=auth(token))).json()
        if view["status"] in statuses:
            return view
        page = (await http.get("/v1/events", params={"after": after, "timeout": 2},
                               headers=auth(token))).json()
        after = page["last"]
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout} s")


async def test_submit_is_stored_before_the_answer_and_runs(lab):
    app, manager, tokens = lab
    async with client(app) as http:
        answer = await http.post("/v1/jobs", json=submit_body(name="bell"), headers=auth(tokens["alice"]))
        assert answer.status_code == 201, answer.text
        job = answer.json()
        # A second connection to the SQLite file sees it: it is durable, not just queued.
        other = Store(manager.store.path)
        try:
            stored = other.load_job(job["id"])
        finally:
            other.close()
        assert stored is not None and stored.user == "alice" and stored.name == "bell"
        assert job["position"] in (1, None) and job["items"][0]["label"] == "c"
        done = await wait_for_status(http, job["id"], tokens["alice"], {"completed"})
        assert done["done"] == done["total"] == 1
        results = (await http.get(f"/v1/jobs/{job['id']}/results", headers=auth(tokens["alice"]))).json()
        outcome = results["items"]["0"]
        assert outcome["status"] == "completed" and '"cirq_type": "ResultDict"' in outcome["result"]
        circuits = (await http.get(f"/v1/jobs/{job['id']}/circuits", headers=auth(tokens["alice"]))).json()
        assert circuits["circuits"] == {"c": BELL_JSON}


async def test_openqasm_is_accepted_too(lab):
    app, _, tokens = lab
    qasm = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nx q[0];\nmeasure q[0] -> c[0];\n'
    async with client(app) as http:
        answer = await http.post("/v1/jobs", json={"circuits": {"x": qasm}, "shots": 20, "compile": True},
                                 headers=auth(tokens["bob"]))
        assert answer.status_code == 201, answer.text
        await wait_for_status(http, answer.json()["id"], tokens["bob"], {"completed"})


async def test_a_retried_submit_returns_the_first_job(lab):
    app, manager, tokens = lab
    headers = {**auth(tokens["alice"]), "Idempotency-Key": "try-1"}
    async with client(app) as http:
        first = await http.post("/v1/jobs", json=submit_body(), headers=headers)
        again = await http.post("/v1/jobs", json=submit_body(), headers=headers)
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        # Ten concurrent retries of a new key: still one job.
        headers2 = {**auth(tokens["alice"]), "Idempotency-Key": "try-2"}
        answers = await asyncio.gather(
            *(http.post("/v1/jobs", json=submit_body(), headers=headers2) for _ in range(10))
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        # The same key for a different body is a mistake, not a retry.
        changed = await http.post("/v1/jobs", json=submit_body(shots=51), headers=headers)
        assert changed.status_code == 409 and "different submission" in changed.json()["detail"]
        # Keys are per user: bob's "try-1" is his own.
        bobs = await http.post("/v1/jobs", json=submit_body(),
                               headers={**auth(tokens["bob"]), "Idempotency-Key": "try-1"})
        assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]
    assert len(manager.find(limit=100)) == 3


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (submit_body(shots=0), ["body", "shots"], "positive whole number"),
        (submit_body(shots=10**9), ["body", "shots"], "maximum"),
        (submit_body("not a circuit"), ["body", "circuits", "c"], "neither OpenQASM"),
        (submit_body('{"cirq_type": "LineQubit", "x": 0}'), ["body", "circuits", "c"], "not a Circuit"),
        (submit_body("OPENQASM 2.0; qreg q[1]; bogus q[0];"), ["body", "circuits", "c"], "OpenQASM"),
        ({"circuits": {}, "shots": 5}, ["body", "circuits"], "at least one circuit"),
        ({"shots": 5}, ["body", "circuits"], "required"),
        (submit_body(colour="red"), ["body", "colour"], "not permitted"),
        (submit_body(position="middle"), ["body", "position"], "'end' or 'start'"),
        (submit_body(id="not-hex"), ["body", "id"], "pattern"),
        (submit_body('{"cirq_type": "Circuit", "moments": [{"cirq_type": "NoSuchGate"}]}'),
         ["body", "circuits", "c"], "Cirq JSON"),
        (submit_body(FLIP_JSON.replace('"MeasurementGate"', '"IdentityGate"')),
         ["body", "circuits"], "no measurements"),
    ],
)
async def test_bad_submissions_get_422_naming_the_field_and_store_nothing(lab, body, field, words):
    app, manager, tokens = lab
    async with client(app) as http:
        answer = await http.post("/v1/jobs", json=body, headers=auth(tokens["alice"]))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(d["loc"][: len(field)] == field for d in detail), detail
    assert any(words.lower() in d["msg"].lower() for d in detail), detail
    assert manager.find(limit=10) == []


async def test_unmeasured_and_non_native_circuits_are_refused_with_the_fix(lab):
    import cirq

    app, manager, tokens = lab
    q = cirq.LineQubit.range(2)
    unmeasured = cirq.to_json(cirq.Circuit(cirq.X(q[0])), indent=None)
    non_native = cirq.to_json(cirq.Circuit(cirq.H(q[0]), cirq.measure(q[0])), indent=None)
    async with client(app) as http:
        a = await http.post("/v1/jobs", json=submit_body(unmeasured), headers=auth(tokens["alice"]))
        b = await http.post("/v1/jobs", json=submit_body(non_native), headers=auth(tokens["alice"]))
        c = await http.post("/v1/jobs", json=submit_body(non_native, compile=True), headers=auth(tokens["alice"]))
    assert a.status_code == 422 and "no measurements" in a.text
    assert b.status_code == 422 and "compile=True" in b.text
    assert c.status_code == 201
    assert len(manager.find(limit=10)) == 1


async def test_bodies_above_the_limit_get_413_and_store_nothing(tmp_path):
    from qnb.server._auth import Users
    from qnb._manager import JobManager
    from qnb.server._app import create_app
    from test_server_support import make_users

    tokens = make_users(tmp_path / "users.toml")
    manager = JobManager(tmp_path / "server", requeue_interrupted=True)
    app = create_app(manager, users=Users.from_file(tmp_path / "users.toml"), max_body_bytes=4000)
    try:
        big = {"circuits": {str(i): BELL_JSON for i in range(10)}, "shots": 10}
        async with client(app) as http:
            declared = await http.post("/v1/jobs", json=big, headers=auth(tokens["alice"]))
            assert declared.status_code == 413 and "limit of 4000 bytes" in declared.json()["detail"]

            async def chunks():  # no Content-Length: counted as it arrives
                import json

                text = json.dumps(big).encode()
                for start in range(0, len(text), 1000):
                    yield text[start : start + 1000]

            streamed = await http.post("/v1/jobs", content=chunks(),
                                       headers={**auth(tokens["alice"]), "Content-Type": "application/json"})
            assert streamed.status_code == 413
            small = await http.post("/v1/jobs", json=submit_body(), headers=auth(tokens["alice"]))
            assert small.status_code == 201
        assert len(manager.find(limit=10)) == 1
    finally:
        app.state.close()
        manager.close()


async def test_tokens_are_required(lab):
    app, _, tokens = lab
    async with client(app) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": tokens["alice"]}):
            answer = await http.get("/v1/queue", headers=headers)
            assert answer.status_code == 401, headers
            assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert (await http.get("/v1/health")).status_code == 200
        me = await http.get("/v1/whoami", headers=auth(tokens["root"]))
        assert me.json() == {"user": "root", "role": "admin"}


async def fill_queue(http, tokens, owners):
    """A long job to keep the device busy, then one short job per owner, in order."""
    # 100000 shots: ~50 s of device time, cancelled at the end of each test.
    blocker = await http.post("/v1/jobs", json=submit_body(shots=100_000, name="blocker"),
                              headers=auth(tokens["root"]))
    ids = []
    for i, owner in enumerate(owners):
        answer = await http.post("/v1/jobs", json=submit_body(name=f"{owner}-{i}"), headers=auth(tokens[owner]))
        assert answer.status_code == 201
        ids.append(answer.json()["id"])
    return blocker.json()["id"], ids


async def test_queue_positions_and_remove_by_position_with_expected_id(lab):
    app, manager, tokens = lab
    async with client(app) as http:
        blocker, (a1, b1, a2) = await fill_queue(http, tokens, ["alice", "bob", "alice"])
        queue = (await http.get("/v1/queue", headers=auth(tokens["bob"]))).json()
        entries = [e for e in queue["entries"] if e["id"] != blocker]
        assert [e["id"] for e in entries] == [a1, b1, a2]
        assert [e["position"] for e in queue["entries"]][:2] == [1, 2]
        # Other users' entries: position, id, user, name, time added and status only.
        assert set(entries[0]) == {"position", "id", "user", "name", "time_added", "status"}
        pos_a2 = next(e["position"] for e in queue["entries"] if e["id"] == a2)
        # Alice removes her job at its position, but expects the wrong id: 409, nothing removed.
        wrong = await http.delete(f"/v1/queue/positions/{pos_a2}", params={"expected_id": a1},
                                  headers=auth(tokens["alice"]))
        assert wrong.status_code == 409 and "queue moved" in wrong.json()["detail"]
        assert len((await http.get("/v1/queue", headers=auth(tokens["alice"]))).json()["entries"]) == len(queue["entries"])
        missing = await http.delete(f"/v1/queue/positions/{pos_a2}", headers=auth(tokens["alice"]))
        assert missing.status_code == 422 and "expected_id" in missing.text
        right = await http.delete(f"/v1/queue/positions/{pos_a2}", params={"expected_id": a2},
                                  headers=auth(tokens["alice"]))
        assert right.status_code == 200 and right.json()["status"] == "cancelled"
        # Admin moves bob's job to the front; then removes alice's by id.
        front = await http.post(f"/v1/queue/jobs/{b1}/front", headers=auth(tokens["root"]))
        assert front.status_code == 200 and front.json()["position"] == 1
        gone = await http.delete(f"/v1/queue/jobs/{a1}", headers=auth(tokens["root"]))
        assert gone.status_code == 200
        again = await http.delete(f"/v1/queue/jobs/{a1}", headers=auth(tokens["root"]))
        assert again.status_code == 409 and "not in the" in again.json()["detail"]
        by_user = await http.delete("/v1/queue/users/bob", headers=auth(tokens["bob"]))
        assert by_user.json()["removed"] in ([b1], [])  # [] if it started running already
        await http.post(f"/v1/jobs/{blocker}/cancel", headers=auth(tokens["root"]))


async def test_cancel_is_idempotent_and_resubmit_links_the_parent(lab):
    app, _, tokens = lab
    alice = auth(tokens["alice"])
    async with client(app) as http:
        blocker, (job_id,) = await fill_queue(http, tokens, ["alice"])
        first = await http.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
        second = await http.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
        assert first.json()["status"] == second.json()["status"] == "cancelled"
        redo = await http.post(f"/v1/jobs/{job_id}/resubmit", json={"only_failed": True}, headers=alice)
        assert redo.status_code == 201 and redo.json()["parent_id"] == job_id
        running = await http.post(f"/v1/jobs/{redo.json()['id']}/resubmit", headers=alice)
        assert running.status_code == 409 and "still" in running.json()["detail"]
        await http.post(f"/v1/jobs/{blocker}/cancel", headers=auth(tokens["root"]))
        await wait_for_status(http, redo.json()["id"], tokens["alice"], {"completed"})
        listed = (await http.get("/v1/jobs", params={"status": "completed"}, headers=alice)).json()["jobs"]
        assert [j["id"] for j in listed] == [redo.json()["id"]]


async def test_events_return_at_once_after_a_change_and_wait_otherwise(lab):
    app, _, tokens = lab
    alice, bob = auth(tokens["alice"]), auth(tokens["bob"])
    async with client(app) as http:
        start = (await http.get("/v1/health")).json()["last"]
        t0 = time.monotonic()
        quiet = (await http.get("/v1/events", params={"after": start, "timeout": 0.3}, headers=alice)).json()
        assert quiet["events"] == [] and time.monotonic() - t0 >= 0.28

        waiting = asyncio.ensure_future(http.get("/v1/events", params={"after": start, "timeout": 20}, headers=bob))
        await asyncio.sleep(0)  # let it start waiting; the submit must wake it
        t1 = time.monotonic()
        job = (await http.post("/v1/jobs", json=submit_body(name="secret"), headers=alice)).json()
        page = (await waiting).json()
        assert time.monotonic() - t1 < 5
        seen = [e for e in page["events"] if e["id"] == job["id"]]
        assert seen and all(set(e) == {"seq", "id", "user", "name", "status", "time_added"} for e in seen)
        mine = (await http.get("/v1/events", params={"after": start, "timeout": 0}, headers=alice)).json()
        assert any("items" in e for e in mine["events"] if e["id"] == job["id"])
        only_bobs = (await http.get("/v1/events", params={"after": start, "timeout": 0, "only_mine": True},
                                    headers=bob)).json()
        assert only_bobs["events"] == [] and only_bobs["last"] > start
        ahead = (await http.get("/v1/events", params={"after": 10**9, "timeout": 5}, headers=alice)).json()
        assert ahead["reset"] is True


async def test_device_and_compile(lab):
    app, _, tokens = lab
    async with client(app) as http:
        device = (await http.get("/v1/device", headers=auth(tokens["bob"]))).json()
        assert device["name"] == "emulator" and device["max_qubits"] == 6 and device["cirq_json"]["gateset"]
        h = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n'
        compiled = await http.post("/v1/compile", json={"circuits": {"bell": h}}, headers=auth(tokens["bob"]))
        assert compiled.status_code == 200 and "CZ" in compiled.json()["circuits"]["bell"]


# -- the authorization matrix -------------------------------------------------------------

OWNER, OTHER, ADMIN = "alice", "bob", "root"

# (name, method, path template, body, expected status for owner, other user, admin).
# {job}: a finished job of alice; {queued}: a queued job of alice (fresh per caller).
MATRIX = [
    ("get job", "GET", "/v1/jobs/{job}", None, (200, 403, 200)),
    ("results", "GET", "/v1/jobs/{job}/results", None, (200, 403, 200)),
    ("circuits", "GET", "/v1/jobs/{job}/circuits", None, (200, 403, 200)),
    ("cancel", "POST", "/v1/jobs/{queued}/cancel", None, (200, 403, 200)),
    ("resubmit", "POST", "/v1/jobs/{job}/resubmit", {}, (201, 403, 201)),
    ("remove by id", "DELETE", "/v1/queue/jobs/{queued}", None, (200, 403, 200)),
    ("remove by position", "DELETE", "/v1/queue/positions/{position}?expected_id={queued}", None, (200, 403, 200)),
    ("remove by user", "DELETE", "/v1/queue/users/alice", None, (200, 403, 200)),
    ("move to front", "POST", "/v1/queue/jobs/{queued}/front", None, (403, 403, 200)),
    ("list alice's jobs", "GET", "/v1/jobs?user=alice", None, (200, 403, 200)),
    ("list own jobs", "GET", "/v1/jobs", None, (200, 200, 200)),
    ("submit", "POST", "/v1/jobs", submit_body(), (201, 201, 201)),
    ("submit at start", "POST", "/v1/jobs", submit_body(position="start"), (403, 403, 201)),
    ("queue", "GET", "/v1/queue", None, (200, 200, 200)),
    ("device", "GET", "/v1/device", None, (200, 200, 200)),
    ("compile", "POST", "/v1/compile", {"circuits": {"a": BELL_JSON}}, (200, 200, 200)),
    ("events", "GET", "/v1/events?timeout=0", None, (200, 200, 200)),
    ("whoami", "GET", "/v1/whoami", None, (200, 200, 200)),
]


async def test_authorization_matrix(lab):
    app, _, tokens = lab
    async with client(app) as http:
        finished = (await http.post("/v1/jobs", json=submit_body(), headers=auth(tokens[OWNER]))).json()["id"]
        await wait_for_status(http, finished, tokens[OWNER], {"completed"}, timeout=60)
        blocker, _ = await fill_queue(http, tokens, [])
        failures = []
        for name, method, template, body, expected in MATRIX:
            for caller, want in zip((OWNER, OTHER, ADMIN), expected):
                queued = (await http.post("/v1/jobs", json=submit_body(), headers=auth(tokens[OWNER]))).json()
                queue = (await http.get("/v1/queue", headers=auth(tokens[OWNER]))).json()["entries"]
                position = next(e["position"] for e in queue if e["id"] == queued["id"])
                path = template.format(job=finished, queued=queued["id"], position=position)
                answer = await http.request(method, path, json=body, headers=auth(tokens[caller]))
                if answer.status_code != want:
                    failures.append(f"{name} as {caller}: {answer.status_code} (want {want}) {answer.text[:120]}")
                if answer.status_code == 403:
                    assert "admin" in answer.json()["detail"]
                # Without a token every endpoint but health answers 401.
                anonymous = await http.request(method, path, json=body)
                if anonymous.status_code != 401:
                    failures.append(f"{name} without a token: {anonymous.status_code}")
                await http.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth(tokens[ADMIN]))
        await http.post(f"/v1/jobs/{blocker}/cancel", headers=auth(tokens[ADMIN]))
    assert not failures, "\n".join(failures)
