"""Fuzz the queue server from its own OpenAPI description (schemathesis, bounded
examples per operation): whatever a client sends, the server never answers 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from qnb.server._auth import User, Users, hash_token

# One worker runs this file (loadgroup): its module-scoped fixtures start once.
pytestmark = [pytest.mark.load, pytest.mark.xdist_group("server-fuzz")]

TOKENS = {"fuzz-admin-token": User("root", "admin"), "fuzz-user-token": User("alice", "user")}


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory):
    from qnb._manager import JobManager
    from qnb.server._app import create_app

    manager = JobManager(tmp_path_factory.mktemp("fuzz-server"), requeue_interrupted=True)
    users = Users({hash_token(token): user for token, user in TOKENS.items()})
    app = create_app(manager, device="emulator", users=users, max_body_bytes=64 * 1024)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        app.state.close()
        manager.close()


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def call(case, token: str) -> None:
    if case.path == "/v1/events":
        # A long-poll may wait a minute (20 s by default); the answer is what counts.
        case.query = {**(case.query or {}), "timeout": 0}
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_admin(case):
    call(case, "fuzz-admin-token")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_user(case):
    call(case, "fuzz-user-token")
