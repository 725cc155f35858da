"""A submission's options are checked once (qnb/_options.py): ``qnb.submit`` and a queue
server refuse the same values with the same words, naming the field; the HTTP body
model checks only shapes and types."""

from __future__ import annotations

import inspect

import pytest

import qnb
from conftest import BELL_QASM
from qnb import _options
from qnb._errors import InvalidCircuitError, InvalidOptionError, RemoteAuthError
from qnb.server import _routes, _service
from qnb.server._auth import User
from qnb.server._service import QueueService, Submission
from test_server_support import BELL_JSON

ADMIN = User("root", "admin")

BAD = [
    ("shots", 0, "shots must be a positive whole number"),
    ("shots", True, "shots must be a positive whole number"),
    ("shots", 10**12, "above the maximum of target"),
    ("name", "x" * 201, "at most 200 are kept"),
    ("name", 5, "name must be text"),
    ("priority", 101, "priority must be a whole number from -100 to 100"),
    ("priority", 1.5, "priority must be a whole number from -100 to 100"),
    ("compile", "yes", "compile must be True or False"),
]


@pytest.mark.parametrize(("option", "value", "words"), BAD, ids=[f"{o}={v!r}"[:20] for o, v, _ in BAD])
def test_the_api_and_the_server_refuse_the_same_values_with_the_same_words(manager, option, value, words):
    with pytest.raises(InvalidOptionError, match=words) as api:
        qnb.submit(BELL_QASM, target="emulator", **{option: value})
    service = QueueService(manager, device="emulator")
    try:
        with pytest.raises(InvalidOptionError, match=words) as server:
            service.accept(ADMIN, Submission({"c": BELL_JSON}, **{option: value}))
    finally:
        service.close()
    assert str(api.value) == str(server.value)
    assert api.value.field == server.value.field == (option,)
    assert manager.store.find_jobs() == []


def test_a_name_of_exactly_the_limit_is_kept_and_one_more_is_refused():
    assert _options.check_name("x" * _options.MAX_NAME_LENGTH) == "x" * 200
    with pytest.raises(InvalidOptionError, match="201 characters long"):
        _options.check_name("x" * 201)
    with pytest.raises(InvalidOptionError, match="user must be text"):
        _options.check_name(3, what="user")


def test_server_only_options_position_labels_and_admin_rights(manager):
    assert _options.check_position("start") is True and _options.check_position("end") is False
    with pytest.raises(InvalidOptionError, match="'end' or 'start'") as bad:
        _options.check_position("middle")
    assert bad.value.field == ("position",)
    with pytest.raises(InvalidCircuitError, match="labels are 1 to 200 characters"):
        _options.check_labels(["ok", "y" * 201])
    service = QueueService(manager, device="emulator")
    try:
        with pytest.raises(RemoteAuthError, match="priority above 0"):
            service.accept(User("alice"), Submission({"c": BELL_JSON}, priority=5))
        with pytest.raises(RemoteAuthError, match="head of the queue"):
            service.accept(User("alice"), Submission({"c": BELL_JSON}, position="start"))
    finally:
        service.close()


def test_the_limits_are_written_once():
    """The body model documents the limits but does not check them again, and the
    service and the API have no limits of their own."""
    constrained = {
        name: [m for m in field.metadata if type(m).__name__ in ("Ge", "Le", "Gt", "Lt", "MaxLen", "MinLen")]
        for name, field in _routes.SubmitBody.model_fields.items()
    }
    assert constrained == {name: [] for name in constrained}
    sources = inspect.getsource(_service) + inspect.getsource(qnb._api) + inspect.getsource(_routes)
    for written in ("MAX_NAME =", "MAX_NAME_LENGTH =", "= 200\n", "max_length=200", "-100", "le=100"):
        assert written not in sources.replace("SLOW_OPERATIONS = 200", ""), written
    assert _routes.SubmitBody.model_json_schema()["properties"]["name"]["description"] == (
        "at most 200 characters"
    )


def test_default_names():
    assert _options.default_name(["0"]) == "circuit"
    assert _options.default_name(["bell"]) == "bell"
    assert _options.default_name(["a", "b"]) == "batch of 2"
    assert _options.default_name(["t[0]", "t[1]"], swept=True) == "t, sweep of 2"
