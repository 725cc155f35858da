"""A job's views are written once (qnb/_views.py) and each face sends its own as before:
these pin the fields, their order and their values, face by face (clients read them)."""

from __future__ import annotations

import json

import pytest

from qnb import _views
from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus

FIELDS = {
    "id": "ab" * 16, "name": "n<b>&", "target": "sim", "user": "ada", "shots": 5,
    "status": "failed", "time_added": 1.0, "time_started": 2.0, "time_finished": 3.5,
    "error": "1 of 2 circuits failed", "parent_id": "p" * 32, "priority": -3, "done": 2,
    "total": 2, "unit": "points",
}


@pytest.fixture
def rec() -> JobRecord:
    return JobRecord(
        id="ab" * 16, name="n<b>&", target="sim", user="ada", shots=5,
        items=[ItemRecord("t[0]", JobStatus.COMPLETED, params='{"x": 1}'),
               ItemRecord("t[1]", JobStatus.FAILED, error="boom", params='{"x": 2}', engine="qsim")],
        time_added=1.0, status=JobStatus.FAILED, time_started=2.0, time_finished=3.5,
        error="1 of 2 circuits failed", parent_id="p" * 32, priority=-3, queue_seq=7.0,
    )  # fmt: skip


def test_job_fields(rec):
    view = _views.job_fields(rec)
    assert list(view.items()) == list(FIELDS.items())
    json.dumps(view)


def test_the_servers_job_view_its_items_and_its_queue_entry(rec):
    assert list(_views.server_job(rec).items()) == [*FIELDS.items(), ("position", None)]
    full = _views.server_job(rec, items=True, position=4)
    assert list(full) == [*FIELDS, "position", "items"] and full["position"] == 4
    assert full["items"] == [
        {"label": "t[0]", "status": "completed", "error": None, "params": '{"x": 1}'},
        {"label": "t[1]", "status": "failed", "error": "boom", "params": '{"x": 2}'},
    ]
    rec.items[0].params = None  # not swept: no params key at all
    assert list(_views.server_job(rec, items=True)["items"][0]) == ["label", "status", "error"]
    assert list(_views.queue_entry(rec, 2).items()) == [
        ("position", 2), ("id", "ab" * 16), ("user", "ada"), ("name", "n<b>&"),
        ("time_added", 1.0), ("status", "failed"),
    ]  # fmt: skip


def test_the_event_feeds_views(rec, manager):
    from qnb.server._auth import User
    from qnb.server._events import EventFeed, _take

    fields = _take(rec)[0]
    assert list(fields.items()) == [*FIELDS.items(), ("position", None)]
    assert _views.public_part(fields) == {
        "id": "ab" * 16, "user": "ada", "name": "n<b>&", "status": "failed", "time_added": 1.0,
    }
    feed = EventFeed(manager)
    try:
        with feed._lock:
            feed._append(*_take(rec))
        [mine], _, _ = feed.since(0, User("ada"))
        assert list(mine) == ["seq", *FIELDS, "position", "changed_items", "items"]
        [theirs], _, _ = feed.since(0, User("bob"))
        assert list(theirs) == ["seq", "id", "user", "name", "status", "time_added"]
    finally:
        feed.close()


def test_the_widgets_row(rec):
    row = _views.widget_row(rec, position=3, queue_seq=7.0, connection=None)
    assert list(row.items()) == [*FIELDS.items(), ("queue_seq", 7.0), ("position", 3), ("connection", None),
                                 ("completed", 1), ("failed", 1), ("cancelled", 0)]
    # Progress by outcome: a failed or cancelled item never counts as done.
    assert _views.progress_text(row) == "1 done · 1 failed"
    assert _views.job_html(row, position=None).endswith("(1 done · 1 failed)<br><span style='color:#b00020'>1 of 2 circuits failed</span></div>")
    cancelled = {**row, "done": 150, "total": 150, "completed": 12, "failed": 0, "cancelled": 138, "unit": "circuits"}
    assert _views.progress_text(cancelled) == "12 done · 138 cancelled"
    assert _views.progress_text({**cancelled, "done": 20, "cancelled": 8}) == "12 done · 8 cancelled of 150"
    assert _views.progress_text({**cancelled, "done": 12, "cancelled": 0}) == "12/150"


def test_the_command_lines_json(rec):
    assert list(_views.cli_job(rec).items()) == [
        ("id", "ab" * 16), ("name", "n<b>&"), ("target", "sim"), ("user", "ada"), ("status", "failed"),
        ("shots", 5), ("items", 2), ("items_done", 2), ("time_added", 1.0), ("time_started", 2.0),
        ("time_finished", 3.5), ("error", "1 of 2 circuits failed"), ("parent_id", "p" * 32),
    ]  # fmt: skip
    assert _views.item_view(rec.items[1]) == {"label": "t[1]", "status": "failed", "error": "boom"}


def test_one_html_for_a_job_and_its_card(rec):
    text = _views.job_html(_views.job_fields(rec), position=None)
    assert text == (
        "<div class='qnb-job'><b>n&lt;b&gt;&amp;</b> <code>abababab</code> on sim: "
        "<b>failed</b> (2/2 points)<br><span style='color:#b00020'>1 of 2 circuits failed</span></div>"
    )
    row = {**_views.job_fields(rec), "connection": "reconnecting", "error": None, "status": "queued"}
    assert _views.job_html(row, position=2).endswith("<b>queued (reconnecting)</b> (2/2 points, position 2)</div>")


def test_every_face_uses_these_views():
    """No face builds a job's view of its own (the reviewer found four copies)."""
    import inspect

    import qnb._cli
    import qnb._job
    import qnb._records
    import qnb.notebook._stream
    import qnb.notebook._widgets
    import qnb.server._events
    import qnb.server._service

    assert not hasattr(JobRecord, "public_dict")
    for module in (qnb._cli, qnb.server._service, qnb.server._events, qnb.notebook._stream,
                   qnb.notebook._widgets, qnb._job):  # fmt: skip
        source = inspect.getsource(module)
        assert '"items_done"' not in source and '"unit"' not in source, module.__name__
        assert "class='qnb-job'" not in source, module.__name__
